//! application/link-format (Content-Format 40) as LwM2M uses it: Discover and
//! Bootstrap-Discover answers (OMA LwM2M TS 1.2 Core §5.2.7.3, §5.4.2 and §6.3.4), and the
//! object links of Register and Update payloads (Core §6.2.1, Transport §6.2).
//!
//! The RFC 6690 grammar (quoting, escapes, `ct="60 110"` lists, caps on hostile input) is
//! [`crate::coap::link_format`]'s job; this module adds the LwM2M meaning on top: link
//! targets are object-model [`Path`]s, and a registration's `rt="oma.lwm2m"` link carries
//! the alternate root path and the supported content formats.
//!
//! ```text
//! Discover /3/0        </3/0>;pmax=60,</3/0/1>,</3/0/6>;dim=8,</3/0/7>;dim=8;gt=50;lt=42.2
//! Bootstrap-Discover   </>;lwm2m=1.1,</0/0>;ssid=101;uri="coaps://s1",</1/0>;ssid=101,</3/0>
//! Register payload     </>;rt="oma.lwm2m";ct=11543,</1/0>,</3>;ver=1.1,</3/0>
//! ```
#![deny(clippy::indexing_slicing)]

use super::{CodecError, ContentFormat};
use crate::attributes::NotificationAttributes;
use crate::coap::link_format::{self, Link, LinkAttribute, LinkFormatError};
use crate::model::{Path, PathLevel};

fn malformed(reason: impl Into<String>) -> CodecError {
    CodecError::malformed(ContentFormat::LinkFormat, reason)
}

/// RFC 6690 syntax errors are malformed link-format payloads.
fn syntax(e: LinkFormatError) -> CodecError {
    malformed(e.to_string())
}

/// One link of a Discover or Bootstrap-Discover answer: a path and its attributes
/// (`</3/0/7>;dim=8;gt=50`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverEntry {
    /// The object, instance, resource or (Bootstrap-Discover) root the link names.
    pub path: Path,
    /// The attributes in payload order: `dim`, `ver`, notification attributes, `ssid`,
    /// `uri`, `lwm2m`, or any other the peer sent.
    pub attributes: Vec<LinkAttribute>,
}

impl DiscoverEntry {
    /// An entry for `path` without attributes.
    pub fn new(path: Path) -> Self {
        DiscoverEntry {
            path,
            attributes: Vec::new(),
        }
    }

    /// Appends an attribute (builder style); `None` makes a bare attribute.
    pub fn with_attr(mut self, name: &str, value: Option<&str>) -> Self {
        self.attributes.push(LinkAttribute::new(name, value));
        self
    }

    /// The value of the first attribute called `name` (ASCII case-insensitive).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
            .and_then(|a| a.value.as_deref())
    }

    /// `dim`: how many instances a multiple resource has (Core §5.4.2); `None` when absent
    /// or not a number.
    pub fn dim(&self) -> Option<u16> {
        self.attr("dim")?.parse().ok()
    }

    /// `ver`: the object's version (Core §5.4.2); `None` when absent.
    pub fn version(&self) -> Option<&str> {
        self.attr("ver")
    }

    /// `ssid`: the Short Server ID of a Bootstrap-Discover Security or Server instance
    /// (Core §5.2.7.3).
    pub fn ssid(&self) -> Option<u16> {
        self.attr("ssid")?.parse().ok()
    }

    /// The notification attributes attached to the path (Core §5.1.2).
    ///
    /// # Errors
    ///
    /// A malformed, valueless or repeated notification attribute.
    pub fn notification_attributes(&self) -> Result<NotificationAttributes, CodecError> {
        NotificationAttributes::from_link(&self.to_link()).map_err(|e| malformed(e.to_string()))
    }

    fn to_link(&self) -> Link {
        Link {
            target: self.path.to_string(),
            attributes: self.attributes.clone(),
        }
    }
}

/// Writes a Discover or Bootstrap-Discover answer.
pub fn encode_discover(entries: &[DiscoverEntry]) -> String {
    link_format::serialize(
        &entries
            .iter()
            .map(DiscoverEntry::to_link)
            .collect::<Vec<_>>(),
    )
}

/// Reads a Discover or Bootstrap-Discover answer.
///
/// # Errors
///
/// Link-format syntax errors, and targets that are not object-model paths.
pub fn decode_discover(bytes: &[u8]) -> Result<Vec<DiscoverEntry>, CodecError> {
    link_format::parse(bytes)
        .map_err(syntax)?
        .into_iter()
        .map(|link| {
            Ok(DiscoverEntry {
                path: Path::parse(&link.target)?,
                attributes: link.attributes,
            })
        })
        .collect()
}

/// The object links of a Register or Update payload (Core §6.2.1, Transport §6.2):
/// `</>;rt="oma.lwm2m";ct=11543,</1/0>,</3>;ver=1.1,</3/0>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectLinks {
    /// The alternate root path the client serves its objects under (`/lwm2m`), from the
    /// `rt="oma.lwm2m"` link; `/` when there is none. Requests to the client prefix it.
    pub root_path: String,
    /// The content formats from the root link's `ct` (LwM2M 1.1+), in payload order; empty
    /// when the client did not say, which means the LwM2M 1.0 defaults.
    pub content_formats: Vec<u16>,
    /// The objects and object instances the client has, in payload order, each with the
    /// object version from its `ver` attribute when given.
    pub objects: Vec<(Path, Option<String>)>,
}

impl Default for ObjectLinks {
    fn default() -> Self {
        ObjectLinks {
            root_path: "/".to_owned(),
            content_formats: Vec::new(),
            objects: Vec::new(),
        }
    }
}

/// The `rt` value that marks the LwM2M root link (Core §6.2.1).
const LWM2M_RT: &str = "oma.lwm2m";

/// Reads the object links of a Register or Update payload.
///
/// The root link is the one with `rt="oma.lwm2m"`; when no link has it, a `</>` link is
/// (some LwM2M 1.0 clients send `</>;ct=11543`). Every other link must be an object or
/// object instance under the root path.
///
/// # Errors
///
/// Link-format syntax errors, two root links, a malformed `ct` entry, and links that are
/// not objects or object instances under the root path.
pub fn parse_registration_links(bytes: &[u8]) -> Result<ObjectLinks, CodecError> {
    let links = link_format::parse(bytes).map_err(syntax)?;
    let is_lwm2m_root = |l: &Link| {
        l.attr("rt")
            .is_some_and(|rt| rt.split_ascii_whitespace().any(|t| t == LWM2M_RT))
    };
    let mut roots = links.iter().filter(|l| is_lwm2m_root(l));
    let root = match (roots.next(), roots.next()) {
        (Some(_), Some(_)) => return Err(malformed("two links carry rt=\"oma.lwm2m\"")),
        (Some(root), None) => Some(root),
        (None, _) => links.iter().find(|l| l.target == "/"),
    };
    let mut out = ObjectLinks::default();
    if let Some(root) = root {
        out.root_path = root.target.clone();
        for a in root
            .attributes
            .iter()
            .filter(|a| a.name.eq_ignore_ascii_case("ct"))
        {
            for entry in a
                .value
                .as_deref()
                .unwrap_or_default()
                .split_ascii_whitespace()
            {
                out.content_formats.push(entry.parse().map_err(|_| {
                    malformed(format!("ct entry {entry:?} is not a content format"))
                })?);
            }
        }
    }
    let prefix = out.root_path.trim_end_matches('/');
    for link in &links {
        if root.is_some_and(|r| std::ptr::eq(r, link)) {
            continue;
        }
        let path = link
            .target
            .strip_prefix(prefix)
            .filter(|rest| rest.starts_with('/'))
            .ok_or_else(|| {
                malformed(format!(
                    "link <{}> is not under the root path {:?}",
                    link.target, out.root_path
                ))
            })
            .and_then(|rest| Ok(Path::parse(rest)?))?;
        if !matches!(path.level(), PathLevel::Object | PathLevel::Instance) {
            return Err(malformed(format!(
                "link <{}> is not an object or object instance",
                link.target
            )));
        }
        out.objects
            .push((path, link.lwm2m_version().map(str::to_owned)));
    }
    // A server keeps one of these per registered device for the registration's life: no
    // spare capacity (it would be up to half the list again, per device).
    out.objects.shrink_to_fit();
    out.content_formats.shrink_to_fit();
    Ok(out)
}

impl ObjectLinks {
    /// Writes the payload. The root link is written when it says something: an alternate
    /// root path or content formats (`ct=11543`, or `ct="60 110"` for several).
    pub fn to_link_format(&self) -> String {
        let mut links = Vec::with_capacity(self.objects.len() + 1);
        if self.root_path != "/" || !self.content_formats.is_empty() {
            let mut root = Link::new(self.root_path.clone()).with_attr("rt", Some(LWM2M_RT));
            if !self.content_formats.is_empty() {
                let ct: Vec<String> = self.content_formats.iter().map(u16::to_string).collect();
                root = root.with_attr("ct", Some(&ct.join(" ")));
            }
            links.push(root);
        }
        let prefix = self.root_path.trim_end_matches('/');
        for (path, version) in &self.objects {
            let mut link = Link::new(format!("{prefix}{path}"));
            if let Some(v) = version {
                link = link.with_attr("ver", Some(v));
            }
            links.push(link);
        }
        link_format::serialize(&links)
    }

    /// Whether the client registered instance `instance` of object `object`.
    pub fn has_instance(&self, object: u16, instance: u16) -> bool {
        self.objects
            .iter()
            .any(|(p, _)| *p == Path::instance(object, instance))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests may unwrap and index
mod tests {
    use super::*;
    use crate::model::MAX_ID;
    use proptest::prelude::*;

    /// The Discover example of TS 1.0 §5.4.2 / 1.1 Core §5.4.2 (Device object instance; the
    /// spec prints `<3/0/2>` without its slash, corrected here).
    const DISCOVER_DEVICE: &str = "</3/0>;pmax=60,</3/0/1>,</3/0/2>,</3/0/3>,</3/0/4>,</3/0/6>;dim=8,</3/0/7>;dim=8;gt=50;lt=42.2,</3/0/8>;dim=8,</3/0/11>,</3/0/16>";

    #[test]
    fn discover_spec_example_round_trips() {
        let entries = decode_discover(DISCOVER_DEVICE.as_bytes()).unwrap();
        assert_eq!(entries.len(), 10);
        assert_eq!(entries[0].path, Path::instance(3, 0));
        assert_eq!(entries[0].notification_attributes().unwrap().pmax, Some(60));
        let r7 = &entries[6];
        assert_eq!(r7.path, Path::resource(3, 0, 7));
        assert_eq!(r7.dim(), Some(8));
        let n = r7.notification_attributes().unwrap();
        assert_eq!((n.gt, n.lt), (Some(50.0), Some(42.2)));
        assert_eq!(entries[9].dim(), None);
        assert_eq!(encode_discover(&entries), DISCOVER_DEVICE);
    }

    /// Bootstrap-Discover answer shape of Core §5.2.7.3 (as Anjay's tests print it).
    #[test]
    fn bootstrap_discover_round_trips() {
        let text = r#"</>;lwm2m=1.1,</0/0>;ssid=101;uri="coaps://server_1.example.com",</0/1>,</0/2>;ssid=102;uri="coaps://server_2.example.com""#;
        let entries = decode_discover(text.as_bytes()).unwrap();
        assert_eq!(entries[0].path, Path::ROOT);
        assert_eq!(entries[0].attr("lwm2m"), Some("1.1"));
        assert_eq!(entries[1].ssid(), Some(101));
        assert_eq!(entries[1].attr("uri"), Some("coaps://server_1.example.com"));
        assert_eq!(entries[3].path, Path::instance(0, 2));
        // Written back byte for byte: `uri` is quoted as the TS prints it.
        let written = encode_discover(&entries);
        assert_eq!(written, text);
        assert_eq!(decode_discover(written.as_bytes()).unwrap(), entries);
    }

    #[test]
    fn discover_rejects_non_paths_and_bad_syntax() {
        assert!(matches!(
            decode_discover(b"</a/b>"),
            Err(CodecError::Path(_))
        ));
        assert!(matches!(
            decode_discover(b"</3/0/1/2/3>"),
            Err(CodecError::Path(_))
        ));
        assert!(matches!(
            decode_discover(b"</3/0"),
            Err(CodecError::Malformed {
                format: ContentFormat::LinkFormat,
                ..
            })
        ));
        let bad_attr = decode_discover(b"</3/0/7>;pmin=x").unwrap();
        assert!(bad_attr[0].notification_attributes().is_err());
        assert_eq!(decode_discover(b"").unwrap(), vec![]);
    }

    #[test]
    fn registration_payload_from_the_brief() {
        let text = r#"</>;rt="oma.lwm2m";ct=11543,</1/0>,</3/0>;ver=1.1"#;
        let links = parse_registration_links(text.as_bytes()).unwrap();
        assert_eq!(
            links,
            ObjectLinks {
                root_path: "/".into(),
                content_formats: vec![11543],
                objects: vec![
                    (Path::instance(1, 0), None),
                    (Path::instance(3, 0), Some("1.1".into()))
                ],
            }
        );
        assert!(links.has_instance(3, 0));
        assert_eq!(links.to_link_format(), text);
    }

    /// The registration payload inside Leshan's `ENCODED_OBJ3442` TLV test vector.
    #[test]
    fn registration_payload_with_content_format_list_and_object_versions() {
        let text = r#"</>;rt="oma.lwm2m";ct="60 110 112 1542 1543 11542 11543",</1>;ver=1.1,</1/0>,</2>,</3>;ver=1.1,</3/0>,</3442/0>"#;
        let links = parse_registration_links(text.as_bytes()).unwrap();
        assert_eq!(
            links.content_formats,
            vec![60, 110, 112, 1542, 1543, 11542, 11543]
        );
        assert_eq!(links.objects[0], (Path::object(1), Some("1.1".into())));
        assert_eq!(links.objects[5], (Path::instance(3442, 0), None));
        assert_eq!(links.to_link_format(), text);
    }

    /// LwM2M 1.0 payloads: no root link, and an alternate path (TS 1.0 §5.3.1 examples).
    #[test]
    fn registration_payload_without_root_link_or_with_alternate_path() {
        let plain = "</1/101>,</1/102>,</2/0>,</2/1>,</2/2>,</3/0>,</4/0>,</5>";
        let links = parse_registration_links(plain.as_bytes()).unwrap();
        assert_eq!(links.root_path, "/");
        assert_eq!(links.objects.len(), 8);
        assert_eq!(links.objects[7].0, Path::object(5));
        assert_eq!(links.to_link_format(), plain);

        let alt = r#"</lwm2m>;rt="oma.lwm2m",</lwm2m/1/101>,</lwm2m/3/0>,</lwm2m/5>"#;
        let links = parse_registration_links(alt.as_bytes()).unwrap();
        assert_eq!(links.root_path, "/lwm2m");
        assert_eq!(
            links.objects.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
            [
                Path::instance(1, 101),
                Path::instance(3, 0),
                Path::object(5)
            ]
        );
        assert_eq!(links.to_link_format(), alt);

        // A bare `</>;ct=...` root, as some 1.0 clients write it.
        let links = parse_registration_links(b"</>;ct=11543,</3/0>").unwrap();
        assert_eq!(links.content_formats, vec![11543]);
        assert_eq!(links.objects, vec![(Path::instance(3, 0), None)]);
    }

    #[test]
    fn registration_payload_errors() {
        for bad in [
            r#"</>;rt="oma.lwm2m",</a>;rt="oma.lwm2m""#,
            r#"</>;rt="oma.lwm2m";ct=json,</3/0>"#,
            r#"</lwm2m>;rt="oma.lwm2m",</3/0>"#,
            r#"</lwm2m>;rt="oma.lwm2m",</lwm2mx/3/0>"#,
            "</3/0/1>",
            "</x>",
            "</3/0",
        ] {
            assert!(parse_registration_links(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    fn arb_object_path() -> impl Strategy<Value = Path> {
        (0..=MAX_ID, proptest::option::of(0..=MAX_ID)).prop_map(|(o, i)| match i {
            Some(i) => Path::instance(o, i),
            None => Path::object(o),
        })
    }

    fn arb_object_links() -> impl Strategy<Value = ObjectLinks> {
        (
            prop_oneof![Just("/".to_owned()), "/[a-z]{1,8}"],
            proptest::collection::vec(any::<u16>(), 0..4),
            proptest::collection::vec((arb_object_path(), proptest::option::of("1\\.[0-9]")), 0..6),
        )
            .prop_map(|(root_path, content_formats, objects)| ObjectLinks {
                root_path,
                content_formats,
                objects,
            })
    }

    proptest! {
        #[test]
        fn registration_links_round_trip(links in arb_object_links()) {
            prop_assert_eq!(parse_registration_links(links.to_link_format().as_bytes()).unwrap(), links);
        }

        #[test]
        fn discover_round_trips(
            entries in proptest::collection::vec(
                (crate::content::testutil::arb_path(), proptest::collection::vec(("[a-z]{1,5}", proptest::option::of("[ -~]{0,8}")), 0..3)),
                0..5,
            ),
        ) {
            let entries: Vec<DiscoverEntry> = entries
                .into_iter()
                .map(|(path, attrs)| DiscoverEntry {
                    path,
                    attributes: attrs.into_iter().map(|(n, v)| LinkAttribute { name: n, value: v }).collect(),
                })
                .collect();
            prop_assert_eq!(decode_discover(encode_discover(&entries).as_bytes()).unwrap(), entries);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = decode_discover(&bytes);
            let _ = parse_registration_links(&bytes);
        }

        #[test]
        fn link_like_text_never_panics(text in r#"[</>;=,"0-9a-z .]{0,64}"#) {
            let _ = decode_discover(text.as_bytes());
            let _ = parse_registration_links(text.as_bytes());
        }
    }
}
