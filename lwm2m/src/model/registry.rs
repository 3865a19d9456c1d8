//! The object registry: the object definitions a server knows, by object id and version
//! (OMA LwM2M TS 1.2 Core §7.1, §7.2 on object versions), and the [`Schema`] that content
//! decoders ask for resource types.
//!
//! A server starts from [`Registry::bundled`] (the core objects the crate defines itself) and
//! adds DDF files from a directory its configuration names. Several versions of one object
//! coexist (a fleet has devices on Device 1.0, 1.1 and 1.2); lookups without a version give
//! the latest. Loading a directory never stops at a bad file: it reports it and goes on.
//!
//! File reading is here rather than in `net` because it is configuration loading, done once
//! at start-up by the caller's choice; the rest of the crate never touches the file system.
use super::bundled;
use super::ddf::{parse_ddf, DdfError, RegistryDocument};
use super::object::{ObjectDef, ResourceDef, Version};
use super::path::Path;
use super::value::ResourceType;
use super::Schema;
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path as FsPath, PathBuf};

/// The largest DDF file [`Registry::load_file`] reads. The largest object definition of the
/// public OMA registry is about 100 KB; the limit keeps a wrong path (a log, a disk image)
/// from being read into memory.
pub const MAX_DDF_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Object definitions by object id and version.
///
/// Lookups are `O(log n)` map look-ups and hand out references; nothing is cloned. Adding a
/// definition with the id and version of one already held replaces it, so loaded files
/// override the bundled definitions and, within a directory, files later in name order
/// override earlier ones.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// By object id, then by version in numeric order: the last entry is the latest version.
    objects: BTreeMap<u16, BTreeMap<Version, ObjectDef>>,
}

/// What [`Registry::load_dir`] did, file by file.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Every definition loaded, in file name order.
    pub loaded: Vec<LoadedObject>,
    /// Registry files that hold no object definitions (the OMA registry's `DDF.xml`,
    /// `Common.xml` and SenML units list), recognised and passed over.
    pub skipped: Vec<SkippedFile>,
    /// Files that could not be loaded, each error naming its file. Nothing of a failed file
    /// was added.
    pub failures: Vec<RegistryError>,
}

impl LoadReport {
    /// The object ids loaded, in file order (an id appears once per version loaded).
    pub fn ids(&self) -> impl Iterator<Item = u16> + '_ {
        self.loaded.iter().map(|l| l.id)
    }
}

/// One object definition loaded from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedObject {
    /// The file it came from.
    pub path: PathBuf,
    /// The object id.
    pub id: u16,
    /// The object version.
    pub version: String,
    /// Whether it replaced a definition of the same id and version (bundled, or from an
    /// earlier file).
    pub replaced: bool,
}

/// A file of the OMA registry that holds no object definitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedFile {
    /// The file.
    pub path: PathBuf,
    /// What it holds instead.
    pub document: RegistryDocument,
}

/// Why a definition or file could not be added.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The file or directory could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_DDF_FILE_BYTES`].
    #[error("{}: larger than the {limit}-byte limit for a DDF file", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// The file is not text in UTF-8, UTF-16 with a byte-order mark, or ISO-8859-1 declared
    /// in its XML declaration.
    #[error("{}: not text in UTF-8, UTF-16 (with BOM) or declared ISO-8859-1", path.display())]
    Encoding {
        /// The file.
        path: PathBuf,
    },
    /// The file is not a usable DDF document.
    #[error("{}: {source}", path.display())]
    Ddf {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: DdfError,
    },
    /// A definition's version is not `major.minor`.
    #[error("object /{id}: version {version:?} is not major.minor")]
    InvalidVersion {
        /// The object id.
        id: u16,
        /// The refused version, truncated.
        version: String,
    },
}

impl RegistryError {
    /// The file or directory the error is about, if it is about one.
    pub fn path(&self) -> Option<&FsPath> {
        match self {
            RegistryError::Io { path, .. }
            | RegistryError::TooLarge { path, .. }
            | RegistryError::Encoding { path }
            | RegistryError::Ddf { path, .. } => Some(path),
            RegistryError::InvalidVersion { .. } => None,
        }
    }
}

impl Registry {
    /// A registry with no definitions.
    pub fn empty() -> Self {
        Registry::default()
    }

    /// A registry with the crate's own definitions of the core objects (0 to 7) and of the
    /// common IPSO objects 3303, 3304, 3311, 3313 and 3323.
    pub fn bundled() -> Self {
        let mut r = Registry::empty();
        for def in bundled::definitions() {
            // The bundled versions are literals that a unit test checks; none is refused.
            let _ = r.add(def);
        }
        r
    }

    /// Adds a definition, replacing and returning one of the same id and version.
    pub fn add(&mut self, def: ObjectDef) -> Result<Option<ObjectDef>, RegistryError> {
        let version = version_of(&def)?;
        Ok(self.objects.entry(def.id).or_default().insert(version, def))
    }

    /// Loads every object definition of one DDF file. Either all of them are added or, on
    /// an error, none.
    pub fn load_file(
        &mut self,
        path: impl AsRef<FsPath>,
    ) -> Result<Vec<LoadedObject>, RegistryError> {
        let path = path.as_ref();
        let text = read_text(path)?;
        let defs = parse_ddf(&text).map_err(|source| RegistryError::Ddf {
            path: path.to_path_buf(),
            source,
        })?;
        // Check every version before adding anything, so that a file loads whole or not at all.
        let keyed = defs
            .into_iter()
            .map(|def| Ok((version_of(&def)?, def)))
            .collect::<Result<Vec<_>, RegistryError>>()?;
        let mut loaded = Vec::with_capacity(keyed.len());
        for (version, def) in keyed {
            let (id, version_text) = (def.id, def.version.clone());
            let replaced = self
                .objects
                .entry(id)
                .or_default()
                .insert(version, def)
                .is_some();
            loaded.push(LoadedObject {
                path: path.to_path_buf(),
                id,
                version: version_text,
                replaced,
            });
        }
        Ok(loaded)
    }

    /// Loads every `*.xml` file directly in `dir` (not in subdirectories), in file name
    /// order. A file that fails is listed in the report and does not stop the others; only
    /// an unreadable directory is an error.
    pub fn load_dir(&mut self, dir: impl AsRef<FsPath>) -> Result<LoadReport, RegistryError> {
        let dir = dir.as_ref();
        let io = |source| RegistryError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut report = LoadReport::default();
        let mut files = Vec::new();
        for entry in fs::read_dir(dir).map_err(io)? {
            match entry {
                Ok(entry) => {
                    let path = entry.path();
                    let is_xml = path
                        .extension()
                        .is_some_and(|e| e.eq_ignore_ascii_case("xml"));
                    // fs::metadata follows symbolic links, so a linked file counts as a file.
                    if is_xml && fs::metadata(&path).map(|m| m.is_file()).unwrap_or(true) {
                        files.push(path);
                    }
                }
                Err(e) => report.failures.push(io(e)),
            }
        }
        files.sort();
        for path in files {
            match self.load_file(&path) {
                Ok(loaded) => report.loaded.extend(loaded),
                Err(RegistryError::Ddf {
                    path,
                    source: DdfError::RegistryDocument(document),
                }) => report.skipped.push(SkippedFile { path, document }),
                Err(e) => report.failures.push(e),
            }
        }
        Ok(report)
    }

    /// The latest version of object `id`.
    pub fn get(&self, id: u16) -> Option<&ObjectDef> {
        self.objects.get(&id)?.last_key_value().map(|(_, def)| def)
    }

    /// Version `version` (`"1.1"`; `"1"` means 1.0) of object `id`.
    pub fn get_version(&self, id: u16, version: &str) -> Option<&ObjectDef> {
        self.objects.get(&id)?.get(&Version::parse(version)?)
    }

    /// Every version of object `id`, oldest first.
    pub fn versions(&self, id: u16) -> impl Iterator<Item = &ObjectDef> + '_ {
        self.objects.get(&id).into_iter().flat_map(|v| v.values())
    }

    /// The definition (latest object version) of the resource a path at resource or
    /// resource-instance level points to.
    pub fn resource(&self, path: &Path) -> Option<&ResourceDef> {
        self.get(path.object_id()?)?.resource(path.resource_id()?)
    }

    /// The object ids known, in increasing order.
    pub fn ids(&self) -> impl Iterator<Item = u16> + '_ {
        self.objects.keys().copied()
    }

    /// The latest version of every object, by increasing id.
    pub fn latest(&self) -> impl Iterator<Item = &ObjectDef> + '_ {
        self.objects
            .values()
            .filter_map(|v| v.last_key_value().map(|(_, def)| def))
    }

    /// How many objects (not versions) are known.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether no object is known.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

impl Schema for Registry {
    /// The type declared by the latest version of the object.
    fn resource_type(&self, object: u16, resource: u16) -> Option<ResourceType> {
        self.get(object)?.resource(resource).map(|r| r.kind)
    }

    /// Multiplicity as declared by the latest version of the object.
    fn is_multiple(&self, object: u16, resource: u16) -> Option<bool> {
        self.get(object)?.resource(resource).map(|r| r.multiple)
    }
}

/// The registry key of a definition's version.
fn version_of(def: &ObjectDef) -> Result<Version, RegistryError> {
    Version::parse(&def.version).ok_or_else(|| RegistryError::InvalidVersion {
        id: def.id,
        version: def.version.chars().take(64).collect(),
    })
}

/// Reads a file of at most [`MAX_DDF_FILE_BYTES`] as text.
fn read_text(path: &FsPath) -> Result<String, RegistryError> {
    let io = |source| RegistryError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_DDF_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if u64::try_from(bytes.len()).map_or(true, |n| n > MAX_DDF_FILE_BYTES) {
        return Err(RegistryError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_DDF_FILE_BYTES,
        });
    }
    decode_text(bytes).ok_or_else(|| RegistryError::Encoding {
        path: path.to_path_buf(),
    })
}

/// UTF-8 (a BOM is left for the parser to skip), UTF-16 with a BOM, or bytes the XML
/// declaration says are ISO-8859-1 (whose bytes are the first 256 code points).
fn decode_text(bytes: Vec<u8>) -> Option<String> {
    let utf16 = |rest: &[u8], from: fn([u8; 2]) -> u16| -> Option<String> {
        let units = rest.chunks_exact(2).filter_map(|c| match c {
            [a, b] => Some(from([*a, *b])),
            _ => None,
        });
        char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .ok()
    };
    match bytes.as_slice() {
        [0xFF, 0xFE, rest @ ..] => return utf16(rest, u16::from_le_bytes),
        [0xFE, 0xFF, rest @ ..] => return utf16(rest, u16::from_be_bytes),
        _ => {}
    }
    match String::from_utf8(bytes) {
        Ok(s) => Some(s),
        Err(e) => {
            let bytes = e.into_bytes();
            let head =
                String::from_utf8_lossy(bytes.get(..200).unwrap_or(&bytes)).to_ascii_lowercase();
            let declaration = head
                .trim_start()
                .strip_prefix("<?xml")
                .and_then(|d| d.split_once("?>"))
                .map(|(d, _)| d)
                .unwrap_or("");
            let latin1 = ["iso-8859-1", "iso8859-1", "latin1", "latin-1"]
                .iter()
                .any(|name| declaration.contains(name));
            latin1.then(|| bytes.iter().map(|b| char::from(*b)).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(id: u16, version: &str, resource_kind: ResourceType) -> ObjectDef {
        let res = ResourceDef {
            id: 0,
            name: "R".into(),
            operations: super::super::Operations::R,
            multiple: false,
            mandatory: true,
            kind: resource_kind,
            range: None,
            units: None,
            description: String::new(),
        };
        ObjectDef {
            id,
            name: format!("Object {id}"),
            description: String::new(),
            version: version.into(),
            lwm2m_version: "1.1".into(),
            urn: String::new(),
            multiple: true,
            mandatory: false,
            resources: BTreeMap::from([(0, res)]),
        }
    }

    /// A scratch directory under the target dir's temp area, removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(name: &str) -> TempDir {
            let p = std::env::temp_dir()
                .join(format!("lwm2m-registry-test-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            let _ = fs::create_dir_all(&p);
            TempDir(p)
        }
        fn write(&self, name: &str, bytes: &[u8]) {
            let _ = fs::write(self.0.join(name), bytes);
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const OBJECT_9000_V1_1: &str = "<LWM2M><Object ObjectType=\"MODefinition\"><Name>T</Name><ObjectID>9000</ObjectID>\
        <ObjectVersion>1.1</ObjectVersion><Resources><Item ID=\"1\"><Operations>RW</Operations><Type>Integer</Type>\
        <MultipleInstances>Multiple</MultipleInstances></Item></Resources></Object></LWM2M>";

    #[test]
    fn versions_coexist_and_the_latest_wins_lookups() {
        let mut r = Registry::empty();
        for v in ["1.0", "1.10", "1.2"] {
            assert!(matches!(r.add(def(3, v, ResourceType::Integer)), Ok(None)));
        }
        assert_eq!(r.get(3).map(|d| d.version.as_str()), Some("1.10"));
        assert_eq!(
            r.get_version(3, "1.2").map(|d| d.version.as_str()),
            Some("1.2")
        );
        assert_eq!(
            r.get_version(3, "1").map(|d| d.version.as_str()),
            Some("1.0")
        );
        assert!(r.get_version(3, "1.1").is_none());
        assert!(r.get_version(3, "x").is_none());
        assert_eq!(
            r.versions(3)
                .map(|d| d.version.as_str())
                .collect::<Vec<_>>(),
            ["1.0", "1.2", "1.10"]
        );
        assert_eq!((r.len(), r.ids().collect::<Vec<_>>()), (1, vec![3]));
        assert!(
            matches!(r.add(def(3, "1.2", ResourceType::Float)), Ok(Some(old)) if old.resources[&0].kind == ResourceType::Integer)
        );
        assert!(matches!(
            r.add(def(3, "latest", ResourceType::Float)),
            Err(RegistryError::InvalidVersion { id: 3, .. })
        ));
    }

    #[test]
    fn resolves_paths_and_serves_as_schema() {
        let mut r = Registry::empty();
        let _ = r.add(def(3, "1.0", ResourceType::Integer));
        let _ = r.add(def(3, "1.1", ResourceType::Time));
        assert_eq!(
            r.resource(&Path::resource(3, 0, 0)).map(|d| d.kind),
            Some(ResourceType::Time)
        );
        assert_eq!(
            r.resource(&Path::resource_instance(3, 0, 0, 1))
                .map(|d| d.name.as_str()),
            Some("R")
        );
        assert!(r.resource(&Path::instance(3, 0)).is_none());
        assert!(r.resource(&Path::resource(3, 0, 9)).is_none());
        assert!(r.resource(&Path::resource(4, 0, 0)).is_none());
        let s: &dyn Schema = &r;
        assert_eq!(s.resource_type(3, 0), Some(ResourceType::Time));
        assert_eq!(s.is_multiple(3, 0), Some(false));
        assert_eq!(s.resource_type(3, 1), None);
        assert_eq!(s.is_multiple(5, 0), None);
    }

    #[test]
    fn bundled_holds_the_core_and_ipso_objects() {
        let r = Registry::bundled();
        assert_eq!(
            r.ids().collect::<Vec<_>>(),
            [0, 1, 2, 3, 4, 5, 6, 7, 3303, 3304, 3311, 3313, 3323]
        );
        assert_eq!(r.resource_type(3, 13), Some(ResourceType::Time));
        assert_eq!(r.is_multiple(3, 11), Some(true));
        assert_eq!(
            r.resource(&Path::resource(3303, 0, 5700)).map(|d| d.kind),
            Some(ResourceType::Float)
        );
    }

    #[test]
    fn load_dir_reports_each_file_and_never_aborts() {
        let dir = TempDir::new("load-dir");
        dir.write("9000.xml", OBJECT_9000_V1_1.as_bytes());
        dir.write("a-broken.xml", b"<LWM2M><Object>");
        dir.write(
            "b-no-id.xml",
            b"<LWM2M><Object><Name>X</Name></Object></LWM2M>",
        );
        dir.write("DDF.xml", b"<DDFList><Item/></DDFList>");
        dir.write("notes.txt", b"not loaded");
        dir.write("3.XML", b"<LWM2M><Object><ObjectID>3</ObjectID><ObjectVersion>1.2</ObjectVersion></Object></LWM2M>");
        let mut r = Registry::bundled();
        let report = match r.load_dir(&dir.0) {
            Ok(report) => report,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(report.ids().collect::<Vec<_>>(), [3, 9000]);
        assert_eq!(
            report.loaded.iter().map(|l| l.replaced).collect::<Vec<_>>(),
            [true, false]
        );
        assert_eq!(report.skipped.len(), 1);
        assert_eq!(report.skipped[0].document, RegistryDocument::ObjectIndex);
        let failed: Vec<_> = report
            .failures
            .iter()
            .filter_map(|e| e.path()?.file_name()?.to_str())
            .collect();
        assert_eq!(failed, ["a-broken.xml", "b-no-id.xml"]);
        assert!(report
            .failures
            .iter()
            .all(|e| matches!(e, RegistryError::Ddf { .. })));
        assert_eq!(r.get(9000).map(|d| d.version.as_str()), Some("1.1"));
        assert_eq!(r.is_multiple(9000, 1), Some(true));
        // The loaded /3 1.2 replaced the bundled one.
        assert_eq!(r.get(3).map(|d| d.resources.len()), Some(0));
        assert!(matches!(
            r.load_dir(dir.0.join("missing")),
            Err(RegistryError::Io { .. })
        ));
    }

    #[test]
    fn load_file_is_all_or_nothing_and_bounded() {
        let dir = TempDir::new("load-file");
        let two = "<LWM2M><Object><ObjectID>9001</ObjectID></Object><Object><ObjectID>9002</ObjectID><Type>x</Type>\
            <Resources><Item ID=\"1\"><Type>Quaternion</Type></Item></Resources></Object></LWM2M>";
        dir.write("two.xml", two.as_bytes());
        let mut r = Registry::empty();
        assert!(matches!(
            r.load_file(dir.0.join("two.xml")),
            Err(RegistryError::Ddf { .. })
        ));
        assert!(r.is_empty());
        let big = vec![
            b' ';
            usize::try_from(MAX_DDF_FILE_BYTES)
                .unwrap_or(usize::MAX)
                .saturating_add(1)
        ];
        dir.write("big.xml", &big);
        assert!(matches!(
            r.load_file(dir.0.join("big.xml")),
            Err(RegistryError::TooLarge { .. })
        ));
    }

    #[test]
    fn decodes_utf16_and_declared_latin1() {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-16\"?><LWM2M><Object><ObjectID>9003</ObjectID><Name>Gr\u{fc}n</Name></Object></LWM2M>";
        let le: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain(xml.encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        let be: Vec<u8> = [0xFE, 0xFF]
            .into_iter()
            .chain(xml.encode_utf16().flat_map(u16::to_be_bytes))
            .collect();
        let latin1 = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><LWM2M><Object><ObjectID>9003</ObjectID><Name>Gr\xfcn</Name></Object></LWM2M>";
        for bytes in [le, be, latin1.to_vec()] {
            let text = decode_text(bytes);
            let name = text
                .as_deref()
                .map(parse_ddf)
                .and_then(Result::ok)
                .and_then(|d| d.first().map(|d| d.name.clone()));
            assert_eq!(name.as_deref(), Some("Gr\u{fc}n"));
        }
        assert_eq!(decode_text(b"<LWM2M>\xff</LWM2M>".to_vec()), None);
    }
}
