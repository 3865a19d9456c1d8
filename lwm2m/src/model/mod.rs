//! The LwM2M object model (OMA LwM2M TS 1.2 Core §7): paths, values and the value tree, and
//! the object definitions that give resources their types.
//!
//! Codecs in [`crate::content`] read and write [`Node`]s; where a format does not carry
//! types (TLV, text), they ask a [`Schema`] what type a resource has. A [`Registry`] is the
//! schema a server uses: the bundled core objects plus whatever OMA DDF files
//! ([`parse_ddf`]) it is given.
//!
//! # Layout
//! - `path`, `value`, `node`: [`Path`], [`Value`] and [`ResourceType`], the [`Node`] tree.
//! - `object`: [`ObjectDef`], [`ResourceDef`] and [`Operations`], the definitions as data.
//! - `ddf`: [`parse_ddf`], the OMA DDF XML loader.
//! - `registry`: [`Registry`], definitions by id and version, loaded from files.
//! - `bundled`: the crate's own tables for objects 0-7 and common IPSO objects.
mod bundled;
mod ddf;
mod node;
mod object;
mod path;
mod registry;
mod value;

pub use ddf::{parse_ddf, DdfError, DdfLocation, RegistryDocument};
pub use node::{Instance, Node, NodeError, Resource};
pub use object::{ObjectDef, Operations, OperationsError, ResourceDef};
pub use path::{Path, PathError, PathLevel, MAX_ID};
pub use registry::{
    LoadReport, LoadedObject, Registry, RegistryError, SkippedFile, MAX_DDF_FILE_BYTES,
};
pub use value::{format_float, ObjectLink, ResourceType, Value, ValueError};

/// What decoders need to know of the object model.
pub trait Schema {
    /// The declared type of resource `resource` of object `object`, if the object is known.
    fn resource_type(&self, object: u16, resource: u16) -> Option<ResourceType>;
    /// Whether the resource is multiple-instance, if the object is known.
    fn is_multiple(&self, object: u16, resource: u16) -> Option<bool>;
}

/// A schema that knows no object: decoders keep raw values.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSchema;

impl Schema for NoSchema {
    fn resource_type(&self, _: u16, _: u16) -> Option<ResourceType> {
        None
    }
    fn is_multiple(&self, _: u16, _: u16) -> Option<bool> {
        None
    }
}
