//! LwM2M paths: `/`, `/o`, `/o/i`, `/o/i/r`, `/o/i/r/ri` (OMA LwM2M TS 1.2 Core §7.1,
//! Transport §6.4 for their form in Uri-Path and SenML names).
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// The largest id a path segment may carry; 65535 is reserved (TS Core §7.1).
pub const MAX_ID: u16 = 65534;

/// A path into the object tree. Paths order as the tree does: a parent before its
/// children, siblings by id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Path {
    ids: [u16; 4],
    len: u8,
}

/// How deep a path goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathLevel {
    /// `/`
    Root,
    /// `/o`
    Object,
    /// `/o/i`
    Instance,
    /// `/o/i/r`
    Resource,
    /// `/o/i/r/ri`
    ResourceInstance,
}

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// More than four segments.
    #[error("a path has at most 4 segments")]
    TooDeep,
    /// A segment is not a number in 0..=65534.
    #[error("invalid path segment {0:?}")]
    InvalidSegment(String),
}

impl Path {
    /// The root path `/`.
    pub const ROOT: Path = Path {
        ids: [0; 4],
        len: 0,
    };

    /// A path from its ids (0 to 4 of them).
    pub fn new(ids: &[u16]) -> Result<Self, PathError> {
        if ids.len() > 4 {
            return Err(PathError::TooDeep);
        }
        let mut p = Path::ROOT;
        for id in ids {
            p = p.child(*id)?;
        }
        Ok(p)
    }

    /// `/o`
    pub const fn object(o: u16) -> Self {
        Path {
            ids: [o, 0, 0, 0],
            len: 1,
        }
    }

    /// `/o/i`
    pub const fn instance(o: u16, i: u16) -> Self {
        Path {
            ids: [o, i, 0, 0],
            len: 2,
        }
    }

    /// `/o/i/r`
    pub const fn resource(o: u16, i: u16, r: u16) -> Self {
        Path {
            ids: [o, i, r, 0],
            len: 3,
        }
    }

    /// `/o/i/r/ri`
    pub const fn resource_instance(o: u16, i: u16, r: u16, ri: u16) -> Self {
        Path {
            ids: [o, i, r, ri],
            len: 4,
        }
    }

    /// Parses `/3/0/1`, `3/0/1` or `/`. Empty segments (`//`) are refused.
    pub fn parse(s: &str) -> Result<Self, PathError> {
        let s = s.strip_prefix('/').unwrap_or(s);
        let s = s.strip_suffix('/').unwrap_or(s);
        if s.is_empty() {
            return Ok(Path::ROOT);
        }
        let mut p = Path::ROOT;
        for seg in s.split('/') {
            let id = parse_id(seg)?;
            p = p.child(id)?;
        }
        Ok(p)
    }

    /// Parses the segments of a CoAP Uri-Path.
    pub fn from_segments<S: AsRef<[u8]>>(
        segs: impl IntoIterator<Item = S>,
    ) -> Result<Self, PathError> {
        let mut p = Path::ROOT;
        for seg in segs {
            let seg = std::str::from_utf8(seg.as_ref()).map_err(|_| {
                PathError::InvalidSegment(String::from_utf8_lossy(seg.as_ref()).into_owned())
            })?;
            p = p.child(parse_id(seg)?)?;
        }
        Ok(p)
    }

    /// The path one level deeper.
    pub fn child(&self, id: u16) -> Result<Self, PathError> {
        if id > MAX_ID {
            return Err(PathError::InvalidSegment(id.to_string()));
        }
        let mut p = *self;
        let slot = p
            .ids
            .get_mut(usize::from(p.len))
            .ok_or(PathError::TooDeep)?;
        *slot = id;
        p.len += 1;
        Ok(p)
    }

    /// The path one level up; `None` for the root.
    pub fn parent(&self) -> Option<Self> {
        let len = self.len.checked_sub(1)?;
        let mut p = *self;
        if let Some(slot) = p.ids.get_mut(usize::from(len)) {
            *slot = 0;
        }
        p.len = len;
        Some(p)
    }

    /// The ids, outermost first.
    pub fn ids(&self) -> &[u16] {
        self.ids.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// How deep the path goes.
    pub fn level(&self) -> PathLevel {
        match self.len {
            0 => PathLevel::Root,
            1 => PathLevel::Object,
            2 => PathLevel::Instance,
            3 => PathLevel::Resource,
            _ => PathLevel::ResourceInstance,
        }
    }

    /// The object id, if the path has one.
    pub fn object_id(&self) -> Option<u16> {
        self.ids().first().copied()
    }

    /// The object instance id, if the path has one.
    pub fn instance_id(&self) -> Option<u16> {
        self.ids().get(1).copied()
    }

    /// The resource id, if the path has one.
    pub fn resource_id(&self) -> Option<u16> {
        self.ids().get(2).copied()
    }

    /// The resource instance id, if the path has one.
    pub fn resource_instance_id(&self) -> Option<u16> {
        self.ids().get(3).copied()
    }

    /// Whether `self` is `prefix` or lies below it.
    pub fn starts_with(&self, prefix: &Path) -> bool {
        self.ids().starts_with(prefix.ids())
    }

    /// Whether this is the root path.
    pub fn is_root(&self) -> bool {
        self.len == 0
    }
}

fn parse_id(seg: &str) -> Result<u16, PathError> {
    let bad = || PathError::InvalidSegment(seg.to_string());
    if seg.is_empty() || seg.len() > 5 || !seg.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let v: u32 = seg.parse().map_err(|_| bad())?;
    u16::try_from(v)
        .ok()
        .filter(|v| *v <= MAX_ID)
        .ok_or_else(bad)
}

impl Ord for Path {
    fn cmp(&self, other: &Self) -> Ordering {
        self.ids().cmp(other.ids())
    }
}

impl PartialOrd for Path {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len == 0 {
            return f.write_str("/");
        }
        for id in self.ids() {
            write!(f, "/{id}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Path {
    type Err = PathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Path::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_formats_every_level() {
        for s in ["/", "/3", "/3/0", "/3/0/1", "/3/0/7/1"] {
            assert_eq!(Path::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(Path::parse("3/0/").unwrap(), Path::instance(3, 0));
        assert_eq!(
            Path::parse("/3/0/7/1").unwrap().level(),
            PathLevel::ResourceInstance
        );
    }

    #[test]
    fn rejects_bad_paths() {
        for s in [
            "/3/0/1/2/3",
            "/a",
            "/3//1",
            "/65535",
            "/-1",
            "/+1",
            "/99999999",
        ] {
            assert!(Path::parse(s).is_err(), "{s}");
        }
        assert_eq!(Path::parse("/65534").unwrap().object_id(), Some(65534));
    }

    #[test]
    fn orders_parents_before_children() {
        let mut v = [
            Path::resource(3, 0, 1),
            Path::object(3),
            Path::instance(1, 0),
            Path::ROOT,
            Path::instance(3, 0),
        ];
        v.sort();
        let s: Vec<_> = v.iter().map(|p| p.to_string()).collect();
        assert_eq!(s, ["/", "/1/0", "/3", "/3/0", "/3/0/1"]);
    }

    #[test]
    fn prefix_and_parent() {
        let p = Path::resource_instance(3, 0, 7, 1);
        assert!(p.starts_with(&Path::instance(3, 0)));
        assert!(!p.starts_with(&Path::instance(3, 1)));
        assert!(p.starts_with(&Path::ROOT));
        assert_eq!(p.parent(), Some(Path::resource(3, 0, 7)));
        assert_eq!(Path::ROOT.parent(), None);
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,40}") {
            let _ = Path::parse(&s);
        }

        #[test]
        fn display_parse_round_trip(ids in proptest::collection::vec(0u16..=MAX_ID, 0..=4)) {
            let p = Path::new(&ids).unwrap();
            prop_assert_eq!(Path::parse(&p.to_string()).unwrap(), p);
        }
    }
}
