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
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The `LWM2M.xsd` (1.0) form: no LWM2MVersion/ObjectVersion, two objects in one file.
    const DDF_1_0: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<LWM2M xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
       xsi:noNamespaceSchemaLocation="http://openmobilealliance.org/tech/profiles/LWM2M.xsd">
  <Object ObjectType="MODefinition">
    <Name>Test Sensor</Name>
    <Description1><![CDATA[A sensor & its reading.]]></Description1>
    <ObjectID>10999</ObjectID>
    <ObjectURN>urn:oma:lwm2m:x:10999</ObjectURN>
    <MultipleInstances>Multiple</MultipleInstances>
    <Mandatory>Optional</Mandatory>
    <Resources>
      <Item ID="5700">
        <Name>Sensor Value</Name>
        <Operations>R</Operations>
        <MultipleInstances>Single</MultipleInstances>
        <Mandatory>Mandatory</Mandatory>
        <Type>Float</Type>
        <RangeEnumeration></RangeEnumeration>
        <Units>Cel</Units>
        <Description>The value.</Description>
      </Item>
      <Item ID="5605">
        <Name>Reset</Name>
        <Operations>E</Operations>
        <MultipleInstances>Single</MultipleInstances>
        <Mandatory>Optional</Mandatory>
        <Type></Type>
        <RangeEnumeration></RangeEnumeration>
        <Units></Units>
        <Description></Description>
      </Item>
    </Resources>
    <Description2>Second part.</Description2>
  </Object>
  <Object ObjectType="MODefinition">
    <Name>Other</Name><Description1/><ObjectID>11000</ObjectID><ObjectURN/>
    <MultipleInstances>Single</MultipleInstances><Mandatory>Mandatory</Mandatory>
    <Resources/><Description2/>
  </Object>
</LWM2M>"#;

    /// The `LWM2M-v1_1.xsd` form: versions, Unsigned Integer and Corelnk, multiple resources.
    const DDF_1_1: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<LWM2M xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
       xsi:noNamespaceSchemaLocation="http://openmobilealliance.org/tech/profiles/LWM2M-v1_1.xsd">
  <Object ObjectType="MODefinition">
    <Name>LwM2M Server</Name>
    <Description1>Server object.</Description1>
    <ObjectID>1</ObjectID>
    <ObjectURN>urn:oma:lwm2m:oma:1:1.1</ObjectURN>
    <LWM2MVersion>1.1</LWM2MVersion>
    <ObjectVersion>1.1</ObjectVersion>
    <MultipleInstances>Multiple</MultipleInstances>
    <Mandatory>Mandatory</Mandatory>
    <Resources>
      <Item ID="0"><Name>Short Server ID</Name><Operations>R</Operations>
        <MultipleInstances>Single</MultipleInstances><Mandatory>Mandatory</Mandatory>
        <Type>Integer</Type><RangeEnumeration>1..65534</RangeEnumeration><Units/>
        <Description/></Item>
      <Item ID="13"><Name>Registration Priority Order</Name><Operations>R</Operations>
        <MultipleInstances>Single</MultipleInstances><Mandatory>Optional</Mandatory>
        <Type>Unsigned Integer</Type><RangeEnumeration/><Units/><Description/></Item>
      <Item ID="24"><Name>Alternate APN Links</Name><Operations>RW</Operations>
        <MultipleInstances>Multiple</MultipleInstances><Mandatory>Optional</Mandatory>
        <Type>Objlnk</Type><RangeEnumeration/><Units/><Description/></Item>
      <Item ID="30"><Name>Links</Name><Operations>RW</Operations>
        <MultipleInstances>Single</MultipleInstances><Mandatory>Optional</Mandatory>
        <Type>Corelnk</Type><RangeEnumeration/><Units/><Description/></Item>
    </Resources>
    <Description2></Description2>
  </Object>
</LWM2M>"#;

    fn only(xml: &str) -> ObjectDef {
        match parse_ddf(xml).as_deref() {
            Ok([def]) => def.clone(),
            other => panic!("expected one object, got {other:?}"),
        }
    }

    #[test]
    fn reads_the_lwm2m_1_0_schema_form() {
        let defs = parse_ddf(DDF_1_0).unwrap_or_default();
        assert_eq!(defs.len(), 2);
        let d = &defs[0];
        assert_eq!(
            (
                d.id,
                d.name.as_str(),
                d.version.as_str(),
                d.lwm2m_version.as_str()
            ),
            (10999, "Test Sensor", "1.0", "1.0")
        );
        assert_eq!(d.description, "A sensor & its reading.\n\nSecond part.");
        assert_eq!(d.urn, "urn:oma:lwm2m:x:10999");
        assert!(d.multiple && !d.mandatory);
        let v = &d.resources[&5700];
        assert_eq!(
            (v.operations, v.multiple, v.mandatory, v.kind),
            (Operations::R, false, true, ResourceType::Float)
        );
        assert_eq!(
            (
                v.units.as_deref(),
                v.range.as_deref(),
                v.description.as_str()
            ),
            (Some("Cel"), None, "The value.")
        );
        let reset = &d.resources[&5605];
        assert_eq!(
            (reset.operations, reset.kind, reset.units.as_deref()),
            (Operations::E, ResourceType::None, None)
        );
        let other = &defs[1];
        assert_eq!(
            (
                other.id,
                other.multiple,
                other.mandatory,
                other.resources.len()
            ),
            (11000, false, true, 0)
        );
    }

    #[test]
    fn reads_the_lwm2m_1_1_schema_form() {
        let d = only(DDF_1_1);
        assert_eq!(
            (d.id, d.version.as_str(), d.lwm2m_version.as_str()),
            (1, "1.1", "1.1")
        );
        assert_eq!(d.description, "Server object.");
        assert_eq!(d.resources[&0].range.as_deref(), Some("1..65534"));
        assert_eq!(d.resources[&13].kind, ResourceType::UnsignedInteger);
        assert_eq!(d.resources[&24].kind, ResourceType::ObjectLink);
        assert!(d.resources[&24].multiple);
        assert_eq!(d.resources[&30].kind, ResourceType::CoreLink);
    }

    #[test]
    fn tolerates_bom_case_whitespace_prefixes_and_missing_optionals() {
        let xml = "\u{feff}<?xml version=\"1.0\"?>\n<d:lwm2m xmlns:d=\"urn:example\"><d:object>\
            <d:name>\n  Light\n  Sensor </d:name><d:objectid> 3301 </d:objectid>\
            <d:objectversion> 1.2 </d:objectversion><d:multipleinstances>multiple</d:multipleinstances>\
            <d:resources><d:item d:id=\" 5700 \"><d:name>Value</d:name><d:operations> rw </d:operations>\
            <d:type>unsigned integer</d:type><d:mandatory>MANDATORY</d:mandatory></d:item>\
            <d:item ID=\"1\"><d:type>UnsignedInt</d:type></d:item>\
            <d:item ID=\"2\"><d:type>ObjLnk</d:type></d:item></d:resources></d:object></d:lwm2m>";
        let d = only(xml);
        assert_eq!(
            (
                d.id,
                d.name.as_str(),
                d.version.as_str(),
                d.lwm2m_version.as_str()
            ),
            (3301, "Light Sensor", "1.2", "1.0")
        );
        assert!(d.multiple && !d.mandatory);
        let r = &d.resources[&5700];
        assert_eq!(
            (r.operations, r.kind, r.mandatory, r.multiple),
            (Operations::RW, ResourceType::UnsignedInteger, true, false)
        );
        let bare = &d.resources[&1];
        assert_eq!(
            (bare.name.as_str(), bare.operations, bare.kind),
            ("", Operations::NONE, ResourceType::UnsignedInteger)
        );
        assert_eq!(d.resources[&2].kind, ResourceType::ObjectLink);
    }

    #[test]
    fn accepts_a_bare_object_root_and_a_dtd() {
        let d = only("<!DOCTYPE Object [<!ENTITY n \"Thing\">]><Object><Name>&n;</Name><ObjectID>42</ObjectID></Object>");
        assert_eq!((d.id, d.name.as_str(), d.resources.len()), (42, "Thing", 0));
    }

    #[test]
    fn rejects_text_that_is_not_xml() {
        for bad in [
            "",
            "not xml",
            "{\"json\": true}",
            "<LWM2M><Object>",
            "<a></b>",
        ] {
            assert!(matches!(parse_ddf(bad), Err(DdfError::Xml(_))), "{bad:?}");
        }
    }

    #[test]
    fn rejects_xml_that_is_not_a_ddf() {
        assert_eq!(
            parse_ddf("<html><body/></html>"),
            Err(DdfError::NotDdf {
                root: "html".into()
            })
        );
        assert_eq!(parse_ddf("<LWM2M/>"), Err(DdfError::NoObjects));
        assert_eq!(
            parse_ddf("<DDFList><Item><ObjectID>0</ObjectID></Item></DDFList>"),
            Err(DdfError::RegistryDocument(RegistryDocument::ObjectIndex))
        );
        assert_eq!(
            parse_ddf("<units><title/></units>"),
            Err(DdfError::RegistryDocument(RegistryDocument::Units))
        );
        let common = r#"<LWM2M><Object ObjectType="CommonResources"><Resources><Item ID="4000"><Name>X</Name></Item></Resources></Object></LWM2M>"#;
        assert_eq!(
            parse_ddf(common),
            Err(DdfError::RegistryDocument(
                RegistryDocument::ReusableResources
            ))
        );
    }

    #[test]
    fn rejects_a_missing_object_id() {
        let err = parse_ddf(
            "<LWM2M><Object ObjectType=\"MODefinition\">\n<Name>X</Name></Object></LWM2M>",
        );
        assert!(
            matches!(
                err,
                Err(DdfError::Missing {
                    what: "<ObjectID>",
                    at: DdfLocation {
                        object: 1,
                        object_id: None,
                        ..
                    }
                })
            ),
            "{err:?}"
        );
    }

    #[test]
    fn rejects_bad_ids_with_their_location() {
        for bad in ["abc", "-1", "65535", "70000", "", "3.0"] {
            let xml = format!("<LWM2M><Object>\n<ObjectID>{bad}</ObjectID></Object></LWM2M>");
            let err = parse_ddf(&xml);
            assert!(
                matches!(
                    &err,
                    Err(DdfError::Invalid {
                        what: "<ObjectID>",
                        at: DdfLocation { line: 2, .. },
                        ..
                    })
                ),
                "{bad}: {err:?}"
            );
        }
        let xml = "<LWM2M><Object><ObjectID>3</ObjectID><Resources>\n<Item ID=\"x\"/></Resources></Object></LWM2M>";
        let err = parse_ddf(xml);
        assert!(
            matches!(
                &err,
                Err(DdfError::Invalid {
                    at: DdfLocation {
                        object_id: Some(3),
                        resource_id: None,
                        line: 2,
                        ..
                    },
                    ..
                })
            ),
            "{err:?}"
        );
        let msg = err.map(|_| String::new()).unwrap_or_else(|e| e.to_string());
        assert_eq!(
            msg,
            "object #1 (/3), line 2: invalid ID attribute of <Item> \"x\""
        );
        let xml =
            "<LWM2M><Object><ObjectID>3</ObjectID><Resources><Item/></Resources></Object></LWM2M>";
        assert!(matches!(parse_ddf(xml), Err(DdfError::Missing { .. })));
    }

    #[test]
    fn rejects_values_that_would_change_the_meaning() {
        let item = |inner: &str| {
            format!("<LWM2M><Object><ObjectID>3</ObjectID><Resources><Item ID=\"7\">{inner}</Item></Resources></Object></LWM2M>")
        };
        for (inner, what) in [
            ("<Type>Quaternion</Type>", "<Type>"),
            ("<Operations>RX</Operations>", "<Operations>"),
            (
                "<MultipleInstances>Many</MultipleInstances>",
                "<MultipleInstances>",
            ),
            ("<Mandatory>Yes</Mandatory>", "<Mandatory>"),
        ] {
            let err = parse_ddf(&item(inner));
            assert!(
                matches!(&err, Err(DdfError::Invalid { what: w, at: DdfLocation { resource_id: Some(7), .. }, .. }) if *w == what),
                "{inner}: {err:?}"
            );
        }
        let dup = "<LWM2M><Object><ObjectID>3</ObjectID><Resources><Item ID=\"1\"/><Item ID=\"1\"/></Resources></Object></LWM2M>";
        assert!(matches!(
            parse_ddf(dup),
            Err(DdfError::DuplicateResource { .. })
        ));
        let bad_version = "<LWM2M><Object><ObjectID>3</ObjectID><ObjectVersion>new</ObjectVersion></Object></LWM2M>";
        assert!(matches!(
            parse_ddf(bad_version),
            Err(DdfError::Invalid {
                what: "<ObjectVersion>",
                ..
            })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,300}") {
            let _ = parse_ddf(&s);
        }

        #[test]
        fn arbitrary_values_in_a_ddf_never_panic(
            id in "\\PC{0,8}", ver in "\\PC{0,6}", ops in "\\PC{0,4}", ty in "\\PC{0,12}", rid in "\\PC{0,6}", multi in "\\PC{0,9}",
        ) {
            let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('"', "&quot;");
            let xml = format!(
                "<LWM2M><Object><ObjectID>{}</ObjectID><ObjectVersion>{}</ObjectVersion><Resources><Item ID=\"{}\">\
                 <Operations>{}</Operations><Type>{}</Type><MultipleInstances>{}</MultipleInstances></Item></Resources></Object></LWM2M>",
                esc(&id), esc(&ver), esc(&rid), esc(&ops), esc(&ty), esc(&multi)
            );
            let _ = parse_ddf(&xml);
        }
    }
}
