//! Which content format to ask for and to send (OMA LwM2M TS 1.2 Core §7.4 "Data formats",
//! Transport §6.2 on the `ct` attribute of the registration).
//!
//! The server knows three things about a client: the LwM2M version it registered with, the
//! formats it advertised (`</>;ct=...`, LwM2M 1.1+), and the kind of node an operation
//! addresses. Rules, in order:
//! - an opaque single resource travels as application/octet-stream (Core §7.4.2);
//! - a composite operation needs a format that carries several paths: LwM2M CBOR (1.2),
//!   SenML CBOR, SenML JSON — none exists for a 1.0 client;
//! - otherwise the richest format the client supports: LwM2M CBOR (1.2) before SenML CBOR
//!   before SenML JSON before TLV before LwM2M JSON (compact binary first, as NB-IoT links
//!   bill by the byte).
//!
//! A client that advertises nothing is assumed to support what its version makes mandatory
//! (TLV for 1.0 and 1.1 as Leshan assumes; SenML CBOR for 1.2, Core §7.4), plus text/plain,
//! opaque and link format, which every version requires.
use super::ContentFormat;
use crate::model::{PathLevel, ResourceType};

/// The LwM2M enabler version a client registered with (`lwm2m=` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lwm2mVersion {
    /// 1.0 (registration without `lwm2m=`).
    V1_0,
    /// 1.1
    V1_1,
    /// 1.2
    V1_2,
}

impl Lwm2mVersion {
    /// Parses the `lwm2m=` value; an absent parameter means 1.0. Unknown later minor
    /// versions are treated as the newest known one.
    pub fn parse(s: Option<&str>) -> Option<Self> {
        match s.map(str::trim) {
            None | Some("1.0") => Some(Lwm2mVersion::V1_0),
            Some("1.1") => Some(Lwm2mVersion::V1_1),
            Some("1.2") => Some(Lwm2mVersion::V1_2),
            Some(v) => {
                let (major, minor) = v.split_once('.')?;
                (major == "1" && minor.parse::<u32>().ok()? > 2).then_some(Lwm2mVersion::V1_2)
            }
        }
    }

    /// The version string.
    pub fn as_str(self) -> &'static str {
        match self {
            Lwm2mVersion::V1_0 => "1.0",
            Lwm2mVersion::V1_1 => "1.1",
            Lwm2mVersion::V1_2 => "1.2",
        }
    }
}

/// What the server knows of one client's formats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFormats {
    version: Lwm2mVersion,
    supported: Vec<ContentFormat>,
}

/// Rich formats from most to least preferred.
const PREFERENCE: [ContentFormat; 5] = [
    ContentFormat::Lwm2mCbor,
    ContentFormat::SenmlCbor,
    ContentFormat::SenmlJson,
    ContentFormat::Tlv,
    ContentFormat::Lwm2mJson,
];

impl ClientFormats {
    /// From the registration: version and the `ct` codes of the root link (unknown codes
    /// are ignored; an empty list means "not advertised").
    pub fn new(version: Lwm2mVersion, advertised: &[u16]) -> Self {
        let mut supported = vec![
            ContentFormat::Text,
            ContentFormat::Opaque,
            ContentFormat::LinkFormat,
        ];
        let known: Vec<ContentFormat> = advertised
            .iter()
            .filter_map(|c| ContentFormat::from_code(*c))
            .collect();
        if known.is_empty() {
            supported.push(match version {
                Lwm2mVersion::V1_0 | Lwm2mVersion::V1_1 => ContentFormat::Tlv,
                Lwm2mVersion::V1_2 => ContentFormat::SenmlCbor,
            });
        } else {
            for f in known {
                // LwM2M CBOR exists from 1.2 on; a 1.1 client advertising it is mistaken.
                if f == ContentFormat::Lwm2mCbor && version < Lwm2mVersion::V1_2 {
                    continue;
                }
                if !supported.contains(&f) {
                    supported.push(f);
                }
            }
        }
        Self { version, supported }
    }

    /// The client's version.
    pub fn version(&self) -> Lwm2mVersion {
        self.version
    }

    /// Whether the client can handle `format`.
    pub fn supports(&self, format: ContentFormat) -> bool {
        self.supported.contains(&format)
    }

    /// The formats the client handles.
    pub fn supported(&self) -> &[ContentFormat] {
        &self.supported
    }

    /// The richest multi-value format the client supports, if any.
    fn rich(&self) -> Option<ContentFormat> {
        PREFERENCE.into_iter().find(|f| self.supports(*f))
    }

    /// The format to request (Accept) when reading a node at `level`. `resource` is the
    /// resource's declared type and multiplicity when the object model knows it.
    pub fn for_read(
        &self,
        level: PathLevel,
        resource: Option<(ResourceType, bool)>,
    ) -> ContentFormat {
        self.for_single(level, resource)
            .or_else(|| self.rich())
            .unwrap_or(ContentFormat::Text)
    }

    /// The format to send a node at `level` in (Write, Create).
    pub fn for_write(
        &self,
        level: PathLevel,
        resource: Option<(ResourceType, bool)>,
    ) -> ContentFormat {
        self.for_read(level, resource)
    }

    /// The format for composite operations and Send, or `None` for a 1.0 client or one that
    /// supports no composite format.
    pub fn for_composite(&self) -> Option<ContentFormat> {
        if self.version == Lwm2mVersion::V1_0 {
            return None;
        }
        PREFERENCE
            .into_iter()
            .find(|f| f.supports_composite() && self.supports(*f))
    }

    fn for_single(
        &self,
        level: PathLevel,
        resource: Option<(ResourceType, bool)>,
    ) -> Option<ContentFormat> {
        match (level, resource) {
            (PathLevel::Resource, Some((ResourceType::Opaque, false)))
            | (PathLevel::ResourceInstance, Some((ResourceType::Opaque, _))) => {
                Some(ContentFormat::Opaque)
            }
            // Without a rich format, single values still go as text.
            (PathLevel::Resource, Some((_, false))) | (PathLevel::ResourceInstance, _)
                if self.rich().is_none() =>
            {
                Some(ContentFormat::Text)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ContentFormat::*;

    #[test]
    fn version_parsing() {
        assert_eq!(Lwm2mVersion::parse(None), Some(Lwm2mVersion::V1_0));
        assert_eq!(Lwm2mVersion::parse(Some("1.1")), Some(Lwm2mVersion::V1_1));
        assert_eq!(Lwm2mVersion::parse(Some("1.3")), Some(Lwm2mVersion::V1_2));
        assert_eq!(Lwm2mVersion::parse(Some("2.0")), None);
        assert_eq!(Lwm2mVersion::parse(Some("x")), None);
    }

    #[test]
    fn silent_1_0_client_gets_tlv_and_no_composite() {
        let c = ClientFormats::new(Lwm2mVersion::V1_0, &[]);
        assert_eq!(c.for_read(PathLevel::Instance, None), Tlv);
        assert_eq!(
            c.for_read(PathLevel::Resource, Some((ResourceType::Opaque, false))),
            Opaque
        );
        assert_eq!(c.for_composite(), None);
    }

    #[test]
    fn advertised_formats_pick_the_most_compact() {
        let c = ClientFormats::new(Lwm2mVersion::V1_1, &[110, 112, 11542]);
        assert_eq!(c.for_read(PathLevel::Object, None), SenmlCbor);
        assert_eq!(c.for_composite(), Some(SenmlCbor));
        let c = ClientFormats::new(Lwm2mVersion::V1_2, &[110, 11544]);
        assert_eq!(c.for_write(PathLevel::Instance, None), Lwm2mCbor);
        assert_eq!(c.for_composite(), Some(Lwm2mCbor));
        let c = ClientFormats::new(Lwm2mVersion::V1_1, &[11544, 110]);
        assert_eq!(
            c.for_read(PathLevel::Object, None),
            SenmlJson,
            "1.1 cannot speak LwM2M CBOR"
        );
    }

    #[test]
    fn client_without_rich_format_reads_single_values_as_text() {
        let c = ClientFormats::new(Lwm2mVersion::V1_1, &[0, 42]);
        assert_eq!(
            c.for_read(PathLevel::Resource, Some((ResourceType::Integer, false))),
            Text
        );
        assert_eq!(c.for_composite(), None);
    }
}
