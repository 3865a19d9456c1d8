//! The OMA DDF loader: operators point the server at a directory of object definitions that
//! come from vendors and the public registry, so the file is input like any other. Both the
//! text parser and the file loader (which also decodes UTF-16 and ISO-8859-1) are fed.
use lwm2m::model::{parse_ddf, Registry, Schema};
use std::io::Write as _;

thread_local! {
    /// One scratch file per test thread for the loader.
    static SCRATCH: Option<tempfile::NamedTempFile> = tempfile::Builder::new()
        .prefix("fuzz-ddf-")
        .suffix(".xml")
        .tempfile()
        .ok();
}

/// The fuzz target.
pub fn ddf(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(defs) = parse_ddf(&text) {
        for def in defs {
            let (id, resources): (u16, Vec<u16>) =
                (def.id, def.resources.keys().copied().collect());
            // One registry per definition: a document may hold several versions of an object
            // and lookups answer for the latest.
            let mut registry = Registry::empty();
            if registry.add(def).is_ok() {
                for r in resources {
                    assert!(registry.resource_type(id, r).is_some(), "/{id}/x/{r}");
                    assert!(registry.is_multiple(id, r).is_some(), "/{id}/x/{r}");
                }
            }
        }
    }
    SCRATCH.with(|file| {
        let Some(file) = file else { return };
        let Ok(mut f) = file.reopen() else { return };
        if f.set_len(0).is_err() || f.write_all(data).is_err() {
            return;
        }
        let mut registry = Registry::empty();
        if let Ok(loaded) = registry.load_file(file.path()) {
            for l in loaded {
                assert!(registry.get(l.id).is_some());
            }
        }
    });
}
