//! The OMA DDF XML loader: object definition files as the public OMA LwM2M registry and
//! device vendors publish them (OMA LwM2M TS 1.2 Core §7.1 and Appendix D, schemas
//! `LWM2M.xsd` and `LWM2M-v1_1.xsd`), read into [`ObjectDef`]s.
//!
//! ```text
//! <LWM2M>
//!   <Object ObjectType="MODefinition">
//!     <Name/> <Description1/> <ObjectID/> <ObjectURN/> <LWM2MVersion/> <ObjectVersion/>
//!     <MultipleInstances/> <Mandatory/>
//!     <Resources>
//!       <Item ID="0"> <Name/> <Operations/> <MultipleInstances/> <Mandatory/> <Type/>
//!                     <RangeEnumeration/> <Units/> <Description/> </Item> ...
//!     </Resources>
//!     <Description2/>
//!   </Object> ...
//! </LWM2M>
//! ```
//!
//! Hand-written on roxmltree's tree rather than a schema-generated binding, because the point
//! is tolerance in the places real files differ from the schema, and strictness in the few
//! places that decide what the data means; [`parse_ddf`] lists both. The other XML files of
//! the registry (the object index `DDF.xml`, the reusable resources of `Common.xml`, the
//! SenML units list) are recognised and refused with [`DdfError::RegistryDocument`], so a
//! directory loader can tell them from broken files.
use super::object::{ObjectDef, Operations, ResourceDef, Version};
use super::path::MAX_ID;
use super::value::ResourceType;
use roxmltree::{Document, Node, ParsingOptions};
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::fmt;

/// The most XML nodes one document may have. The largest file of the public registry has
/// about 20 000; the limit bounds the memory a hostile file can take.
const NODES_LIMIT: u32 = 1 << 20;

/// How much of an offending value an error keeps.
const ERROR_VALUE_CHARS: usize = 64;

/// Why a text was not accepted as a DDF document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DdfError {
    /// The text is not well-formed XML.
    #[error("not well-formed XML: {0}")]
    Xml(#[from] roxmltree::Error),
    /// Well-formed XML, but not an object definition document.
    #[error("not an LwM2M object definition: the root element is <{root}>, not <LWM2M>")]
    NotDdf {
        /// The root element's local name, truncated.
        root: String,
    },
    /// A document of the OMA registry that is not an object definition.
    #[error("{0}, not an object definition")]
    RegistryDocument(RegistryDocument),
    /// An `<LWM2M>` document without any `<Object>`.
    #[error("<LWM2M> holds no <Object>")]
    NoObjects,
    /// A required element or attribute is missing.
    #[error("{at}: missing {what}")]
    Missing {
        /// Where.
        at: DdfLocation,
        /// The element or attribute, e.g. `<ObjectID>`.
        what: &'static str,
    },
    /// An element or attribute holds a value that cannot be used.
    #[error("{at}: invalid {what} {value:?}")]
    Invalid {
        /// Where.
        at: DdfLocation,
        /// The element or attribute, e.g. `<Type>`.
        what: &'static str,
        /// The refused value, truncated.
        value: String,
    },
    /// Two resources of one object have the same id.
    #[error("{at}: resource id defined twice")]
    DuplicateResource {
        /// Where the second definition is.
        at: DdfLocation,
    },
}

/// An XML document of the OMA registry that holds no object definitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RegistryDocument {
    /// The list of registered objects, `DDF.xml` (root `<DDFList>`).
    ObjectIndex,
    /// The reusable resources, `Common.xml` (`<Object ObjectType="CommonResources">`).
    ReusableResources,
    /// The additional SenML units, `LWM2M_senml_units.xml` (root `<units>`).
    Units,
}

impl fmt::Display for RegistryDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RegistryDocument::ObjectIndex => "the registry's object index (<DDFList>)",
            RegistryDocument::ReusableResources => {
                "the registry's reusable resources (CommonResources)"
            }
            RegistryDocument::Units => "the registry's SenML units list (<units>)",
        })
    }
}

/// Where in a DDF document a problem was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DdfLocation {
    /// The position of the `<Object>` in the document, from 1.
    pub object: usize,
    /// The object's id, once it has been read.
    pub object_id: Option<u16>,
    /// The resource's id, when the problem is inside a resource whose id was read.
    pub resource_id: Option<u16>,
    /// The line of the offending element, from 1.
    pub line: u32,
}

impl fmt::Display for DdfLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "object #{}", self.object)?;
        if let Some(id) = self.object_id {
            write!(f, " (/{id})")?;
        }
        if let Some(r) = self.resource_id {
            write!(f, " resource {r}")?;
        }
        write!(f, ", line {}", self.line)
    }
}

/// Reads every object definition of an OMA DDF document (`LWM2M.xsd` or `LWM2M-v1_1.xsd`
/// form; a file may hold several `<Object>`s).
///
/// Tolerated: a byte-order mark, a DTD, namespaces and prefixes, element and attribute names
/// in any case, elements in any order, whitespace around and inside values, lower-case
/// enumeration values, unknown extra elements, a bare `<Object>` root, and missing optional
/// or defaultable elements: `Name`, `Description1`/`Description2`, `ObjectURN` default to
/// empty, `LWM2MVersion` and `ObjectVersion` to "1.0", `MultipleInstances` to single,
/// `Mandatory` to optional, `Operations` to none, `Type` to [`ResourceType::None`],
/// `Resources` to no resources. `<Object ObjectType="CommonResources">` entries are passed
/// over.
///
/// Refused with a typed [`DdfError`]: text that is not XML, XML that is not a DDF (with
/// [`DdfError::RegistryDocument`] for the registry's other files), an object or resource
/// without a usable id (decimal, at most [`MAX_ID`]), an `ObjectVersion` that is not
/// `major.minor`, a value of `Operations`, `MultipleInstances`, `Mandatory` or `Type` that
/// is neither empty nor a recognised spelling (guessing would give the resource the wrong
/// meaning), and a resource id used twice in one object.
pub fn parse_ddf(xml: &str) -> Result<Vec<ObjectDef>, DdfError> {
    let xml = xml.strip_prefix('\u{feff}').unwrap_or(xml);
    let options = ParsingOptions {
        allow_dtd: true,
        nodes_limit: NODES_LIMIT,
        ..ParsingOptions::default()
    };
    let doc = Document::parse_with_options(xml, options)?;
    let root = doc.root_element();
    let root_name = root.tag_name().name();
    let objects: Vec<Node<'_, '_>> = if is_named(root, "Object") {
        vec![root]
    } else if root_name.eq_ignore_ascii_case("LWM2M") {
        root.children().filter(|n| is_named(*n, "Object")).collect()
    } else if root_name.eq_ignore_ascii_case("DDFList") {
        return Err(DdfError::RegistryDocument(RegistryDocument::ObjectIndex));
    } else if root_name.eq_ignore_ascii_case("units") {
        return Err(DdfError::RegistryDocument(RegistryDocument::Units));
    } else {
        return Err(DdfError::NotDdf {
            root: truncate(root_name),
        });
    };
    if objects.is_empty() {
        return Err(DdfError::NoObjects);
    }
    let mut defs = Vec::with_capacity(objects.len());
    for (index, obj) in objects.into_iter().enumerate() {
        let common = attribute(obj, "ObjectType")
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("CommonResources"));
        if !common {
            defs.push(parse_object(&doc, obj, index + 1)?);
        }
    }
    if defs.is_empty() {
        return Err(DdfError::RegistryDocument(
            RegistryDocument::ReusableResources,
        ));
    }
    Ok(defs)
}

fn parse_object(
    doc: &Document<'_>,
    obj: Node<'_, '_>,
    index: usize,
) -> Result<ObjectDef, DdfError> {
    let mut at = DdfLocation {
        object: index,
        object_id: None,
        resource_id: None,
        line: line_of(doc, obj),
    };
    let id_node = child(obj, "ObjectID").ok_or(DdfError::Missing {
        at,
        what: "<ObjectID>",
    })?;
    let id_text = text_of(id_node);
    let id = parse_id(&id_text).ok_or_else(|| invalid(doc, at, id_node, "<ObjectID>", &id_text))?;
    at.object_id = Some(id);

    let version = match child(obj, "ObjectVersion") {
        Some(n) => {
            let t = text_of(n);
            if t.trim().is_empty() {
                "1.0".to_string()
            } else {
                Version::parse(&t)
                    .ok_or_else(|| invalid(doc, at, n, "<ObjectVersion>", &t))?
                    .to_string()
            }
        }
        None => "1.0".to_string(),
    };
    let lwm2m_version = child_text(obj, "LWM2MVersion")
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "1.0".to_string());
    let mut description = child_text(obj, "Description1")
        .or_else(|| child_text(obj, "Description"))
        .unwrap_or_default();
    if let Some(d2) = child_text(obj, "Description2").filter(|t| !t.is_empty()) {
        if !description.is_empty() {
            description.push_str("\n\n");
        }
        description.push_str(&d2);
    }

    let mut resources = BTreeMap::new();
    if let Some(list) = child(obj, "Resources") {
        for item in list.children().filter(|n| is_named(*n, "Item")) {
            let res = parse_resource(doc, at, item)?;
            match resources.entry(res.id) {
                Entry::Vacant(e) => {
                    e.insert(res);
                }
                Entry::Occupied(e) => {
                    let at = DdfLocation {
                        resource_id: Some(*e.key()),
                        line: line_of(doc, item),
                        ..at
                    };
                    return Err(DdfError::DuplicateResource { at });
                }
            }
        }
    }

    Ok(ObjectDef {
        id,
        name: child_text(obj, "Name")
            .map(|t| collapse_spaces(&t))
            .unwrap_or_default(),
        description,
        version,
        lwm2m_version,
        urn: child_text(obj, "ObjectURN")
            .or_else(|| child_text(obj, "URN"))
            .unwrap_or_default(),
        multiple: flag(doc, at, obj, Flag::Multiple)?,
        mandatory: flag(doc, at, obj, Flag::Mandatory)?,
        resources,
    })
}

fn parse_resource(
    doc: &Document<'_>,
    object_at: DdfLocation,
    item: Node<'_, '_>,
) -> Result<ResourceDef, DdfError> {
    let mut at = DdfLocation {
        line: line_of(doc, item),
        ..object_at
    };
    let id_text = attribute(item, "ID").ok_or(DdfError::Missing {
        at,
        what: "ID attribute of <Item>",
    })?;
    let id = parse_id(id_text).ok_or_else(|| DdfError::Invalid {
        at,
        what: "ID attribute of <Item>",
        value: truncate(id_text),
    })?;
    at.resource_id = Some(id);

    let operations = match child(item, "Operations") {
        Some(n) => {
            let t = text_of(n);
            Operations::parse(&t).map_err(|_| invalid(doc, at, n, "<Operations>", &t))?
        }
        None => Operations::NONE,
    };
    let kind = match child(item, "Type") {
        Some(n) => {
            let t = text_of(n);
            resource_type(&t).ok_or_else(|| invalid(doc, at, n, "<Type>", &t))?
        }
        None => ResourceType::None,
    };
    Ok(ResourceDef {
        id,
        name: child_text(item, "Name")
            .map(|t| collapse_spaces(&t))
            .unwrap_or_default(),
        operations,
        multiple: flag(doc, at, item, Flag::Multiple)?,
        mandatory: flag(doc, at, item, Flag::Mandatory)?,
        kind,
        range: child_text(item, "RangeEnumeration").filter(|t| !t.is_empty()),
        units: child_text(item, "Units").filter(|t| !t.is_empty()),
        description: child_text(item, "Description").unwrap_or_default(),
    })
}

/// The two-valued elements of objects and resources.
#[derive(Clone, Copy)]
enum Flag {
    /// `<MultipleInstances>`: `Multiple` or `Single`.
    Multiple,
    /// `<Mandatory>`: `Mandatory` or `Optional`.
    Mandatory,
}

impl Flag {
    /// Element name, error label, the word for `true`, the word for `false`.
    fn spec(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Flag::Multiple => (
                "MultipleInstances",
                "<MultipleInstances>",
                "Multiple",
                "Single",
            ),
            Flag::Mandatory => ("Mandatory", "<Mandatory>", "Mandatory", "Optional"),
        }
    }
}

/// A two-valued element: missing or empty is `false`, the two words in any case are
/// `true`/`false`, anything else is refused.
fn flag(
    doc: &Document<'_>,
    at: DdfLocation,
    parent: Node<'_, '_>,
    which: Flag,
) -> Result<bool, DdfError> {
    let (element, what, yes, no) = which.spec();
    let Some(n) = child(parent, element) else {
        return Ok(false);
    };
    let t = text_of(n);
    let v = t.trim();
    if v.eq_ignore_ascii_case(yes) {
        Ok(true)
    } else if v.is_empty() || v.eq_ignore_ascii_case(no) {
        Ok(false)
    } else {
        Err(invalid(doc, at, n, what, &t))
    }
}

/// A `<Type>` value: the schema's spellings in any case (via [`ResourceType::from_ddf`]),
/// and the spellings tools produce without the schema at hand (`UnsignedInteger`,
/// `Unsigned_Int`, `ObjLnk`, `Object Link`, `CoreLnk`, `Core Link`, `Int`, `Bool`).
fn resource_type(text: &str) -> Option<ResourceType> {
    if let Some(t) = ResourceType::from_ddf(text) {
        return Some(t);
    }
    let squashed: String = text
        .chars()
        .filter(|c| !(c.is_whitespace() || *c == '_' || *c == '-'))
        .flat_map(char::to_lowercase)
        .collect();
    Some(match squashed.as_str() {
        "unsignedinteger" | "unsignedint" | "uint" => ResourceType::UnsignedInteger,
        "objlnk" | "objlink" | "objectlink" => ResourceType::ObjectLink,
        "corelnk" | "corelink" => ResourceType::CoreLink,
        "int" => ResourceType::Integer,
        "bool" => ResourceType::Boolean,
        _ => return None,
    })
}

/// An object or resource id: a decimal number in 0..=65534, whitespace around it allowed.
fn parse_id(text: &str) -> Option<u16> {
    let t = text.trim();
    if t.is_empty() || t.len() > 5 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse::<u16>().ok().filter(|id| *id <= MAX_ID)
}

fn invalid(
    doc: &Document<'_>,
    at: DdfLocation,
    node: Node<'_, '_>,
    what: &'static str,
    value: &str,
) -> DdfError {
    DdfError::Invalid {
        at: DdfLocation {
            line: line_of(doc, node),
            ..at
        },
        what,
        value: truncate(value),
    }
}

fn is_named(node: Node<'_, '_>, name: &str) -> bool {
    node.is_element() && node.tag_name().name().eq_ignore_ascii_case(name)
}

/// The first child element called `name` (local name, any case).
fn child<'a, 'i>(parent: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    parent.children().find(|n| is_named(*n, name))
}

/// The text of the first child element called `name`, trimmed.
fn child_text(parent: Node<'_, '_>, name: &str) -> Option<String> {
    child(parent, name).map(|n| text_of(n).trim().to_string())
}

/// An attribute by local name, any case.
fn attribute<'a>(node: Node<'a, '_>, name: &str) -> Option<&'a str> {
    node.attributes()
        .find(|a| a.name().eq_ignore_ascii_case(name))
        .map(|a| a.value())
}

/// All text inside an element (CDATA included, comments and markup left out), untrimmed.
fn text_of(node: Node<'_, '_>) -> String {
    node.descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect()
}

fn collapse_spaces(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn line_of(doc: &Document<'_>, node: Node<'_, '_>) -> u32 {
    doc.text_pos_at(node.range().start).row
}

fn truncate(s: &str) -> String {
    s.trim().chars().take(ERROR_VALUE_CHARS).collect()
}

#[cfg(test)]
mod tests;
