//! Object and resource definitions (OMA LwM2M TS 1.2 Core §7.1 and Appendix D, the object
//! template): what an object is called, which version it is, and for every resource its
//! id, name, type, allowed operations and whether it is multiple-instance or mandatory.
//!
//! These are plain data. [`parse_ddf`](super::parse_ddf) builds them from OMA DDF XML, the
//! bundled tables build the core objects, and [`Registry`](super::Registry) indexes them.
use super::value::ResourceType;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The definition of one version of one LwM2M object.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectDef {
    /// The object id (`<ObjectID>`), at most [`MAX_ID`](super::MAX_ID).
    pub id: u16,
    /// The object name (`<Name>`), e.g. `Device`.
    pub name: String,
    /// Free text (`<Description1>`, followed by `<Description2>` when that is not empty);
    /// empty when the definition gives none.
    pub description: String,
    /// The object version (`<ObjectVersion>`, `major.minor`); "1.0" when the DDF has none.
    pub version: String,
    /// The LwM2M enabler version the object was written for (`<LWM2MVersion>`); "1.0" when
    /// the DDF has none.
    pub lwm2m_version: String,
    /// The object URN (`<ObjectURN>`, Core §7.2), e.g. `urn:oma:lwm2m:oma:3:1.2`; empty
    /// when the DDF has none.
    pub urn: String,
    /// Whether a client may hold several instances of the object.
    pub multiple: bool,
    /// Whether every client must implement the object.
    pub mandatory: bool,
    /// The resources, by id.
    pub resources: BTreeMap<u16, ResourceDef>,
}

impl ObjectDef {
    /// The definition of resource `id`, if the object has one.
    pub fn resource(&self, id: u16) -> Option<&ResourceDef> {
        self.resources.get(&id)
    }
}

/// The definition of one resource of an object.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceDef {
    /// The resource id (`<Item ID="..">`).
    pub id: u16,
    /// The resource name, e.g. `Manufacturer`.
    pub name: String,
    /// What a LwM2M Server may do with the resource. Resources of the Security object
    /// (and other bootstrap-only resources) allow nothing.
    pub operations: Operations,
    /// Whether the resource holds resource instances (`/o/i/r/ri`).
    pub multiple: bool,
    /// Whether an instance of the object must carry the resource.
    pub mandatory: bool,
    /// The data type; [`ResourceType::None`] for executable resources.
    pub kind: ResourceType,
    /// The `<RangeEnumeration>` text as written (`0..100`, `1..65534`, `16,32,48`, free
    /// text); `None` when empty.
    pub range: Option<String>,
    /// The unit (a SenML unit symbol such as `s`, `dBm`, `/100`); `None` when empty.
    pub units: Option<String>,
    /// Free text; empty when the definition gives none (the bundled tables carry none).
    pub description: String,
}

/// The operations a LwM2M Server may perform on a resource (DDF `<Operations>`: `R`, `W`,
/// `RW`, `E` or empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Operations {
    /// Read (and Observe, Discover's value side).
    pub read: bool,
    /// Write.
    pub write: bool,
    /// Execute.
    pub execute: bool,
}

/// Why an `<Operations>` text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid operations {text:?}: expected a combination of R, W and E, or nothing")]
pub struct OperationsError {
    /// The refused text, truncated.
    pub text: String,
}

impl Operations {
    /// No operation: the resource is only reachable through bootstrap.
    pub const NONE: Operations = Operations {
        read: false,
        write: false,
        execute: false,
    };
    /// Read only.
    pub const R: Operations = Operations {
        read: true,
        write: false,
        execute: false,
    };
    /// Write only.
    pub const W: Operations = Operations {
        read: false,
        write: true,
        execute: false,
    };
    /// Read and write.
    pub const RW: Operations = Operations {
        read: true,
        write: true,
        execute: false,
    };
    /// Execute only.
    pub const E: Operations = Operations {
        read: false,
        write: false,
        execute: true,
    };

    /// Parses a DDF `<Operations>` value. The schema allows `R`, `W`, `RW`, `E` and the
    /// empty string; this also takes lower case, any order (`WR`), whitespace, `,` or `/`
    /// between letters (`R/W`) and `None`. Other letters are refused.
    pub fn parse(s: &str) -> Result<Self, OperationsError> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("none") {
            return Ok(Operations::NONE);
        }
        let mut ops = Operations::NONE;
        for c in t.chars() {
            match c.to_ascii_uppercase() {
                'R' => ops.read = true,
                'W' => ops.write = true,
                'E' => ops.execute = true,
                c if c.is_whitespace() || c == ',' || c == '/' => {}
                _ => {
                    return Err(OperationsError {
                        text: s.chars().take(64).collect(),
                    })
                }
            }
        }
        Ok(ops)
    }

    /// Whether a server may read (and observe) the resource.
    pub fn is_readable(&self) -> bool {
        self.read
    }

    /// Whether a server may write the resource.
    pub fn is_writable(&self) -> bool {
        self.write
    }

    /// Whether a server may execute the resource.
    pub fn is_executable(&self) -> bool {
        self.execute
    }

    /// Whether no operation is allowed (bootstrap-only resources).
    pub fn is_none(&self) -> bool {
        !(self.read || self.write || self.execute)
    }
}

impl fmt::Display for Operations {
    /// The DDF form: `R`, `W`, `RW`, `E`, or nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (on, c) in [(self.read, "R"), (self.write, "W"), (self.execute, "E")] {
            if on {
                f.write_str(c)?;
            }
        }
        Ok(())
    }
}

impl FromStr for Operations {
    type Err = OperationsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Operations::parse(s)
    }
}

/// An object version as the registry orders it: `major.minor`, compared numerically (so
/// 1.10 comes after 1.9). `1` reads as 1.0; a leading `v` and surrounding whitespace are
/// ignored. Anything else is not a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Version {
    major: u32,
    minor: u32,
}

impl Version {
    pub(crate) fn parse(s: &str) -> Option<Version> {
        let s = s.trim();
        let s = s.strip_prefix(['v', 'V']).unwrap_or(s);
        let (major, minor) = s.split_once('.').unwrap_or((s, "0"));
        let num = |p: &str| -> Option<u32> {
            if p.is_empty() || p.len() > 9 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            p.parse().ok()
        };
        Some(Version {
            major: num(major)?,
            minor: num(minor)?,
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_ddf_operations_form() {
        assert_eq!(Operations::parse("R"), Ok(Operations::R));
        assert_eq!(Operations::parse("W"), Ok(Operations::W));
        assert_eq!(Operations::parse("RW"), Ok(Operations::RW));
        assert_eq!(Operations::parse("E"), Ok(Operations::E));
        assert_eq!(Operations::parse(""), Ok(Operations::NONE));
        assert_eq!(Operations::parse(" rw \n"), Ok(Operations::RW));
        assert_eq!(Operations::parse("WR"), Ok(Operations::RW));
        assert_eq!(Operations::parse("None"), Ok(Operations::NONE));
        assert!(Operations::parse("RX").is_err());
        assert!(Operations::parse("Read").is_err());
    }

    #[test]
    fn operations_predicates_and_display() {
        let rw: Operations = "RW".parse().unwrap_or_default();
        assert!(rw.is_readable() && rw.is_writable() && !rw.is_executable() && !rw.is_none());
        assert!(Operations::E.is_executable());
        assert!(Operations::NONE.is_none());
        assert_eq!(rw.to_string(), "RW");
        assert_eq!(Operations::NONE.to_string(), "");
        for s in ["R", "W", "RW", "E", ""] {
            assert_eq!(
                Operations::parse(s).map(|o| o.to_string()).as_deref(),
                Ok(s)
            );
        }
    }

    #[test]
    fn versions_order_numerically() {
        let v = |s| Version::parse(s);
        assert!(v("1.10") > v("1.9"));
        assert!(v("2.0") > v("1.12"));
        assert_eq!(v("1"), v("1.0"));
        assert_eq!(v(" v1.1 "), v("1.1"));
        for bad in ["", "1.", ".1", "1.0.1", "a.b", "1.-1", "99999999999.0"] {
            assert_eq!(v(bad), None, "{bad}");
        }
    }
}
