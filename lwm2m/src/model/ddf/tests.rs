//! DDF files in the 1.0 and 1.1 schema forms, the deviations real files show, and the
//! errors that name what and where.
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
    let err =
        parse_ddf("<LWM2M><Object ObjectType=\"MODefinition\">\n<Name>X</Name></Object></LWM2M>");
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
    let bad_version =
        "<LWM2M><Object><ObjectID>3</ObjectID><ObjectVersion>new</ObjectVersion></Object></LWM2M>";
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
