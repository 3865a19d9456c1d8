//! The layout rules of ARCHITECTURE.md, checked on the sources: no module imports the module
//! that imports it (a cycle between sibling modules, at any depth, in any crate), and module
//! docs stand on their own (no pointer to a document outside the repository or to an issue).
//!
//! A module is a file or a folder under `src/`; an import is any `crate::a::b` path, or a
//! `super::` path resolved against the file's own module, in code outside `#[cfg(test)] mod
//! tests` and outside test files. Two siblings that name each other, or a longer ring of
//! siblings, is a cycle.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: [&str; 7] = [
    "dtls",
    "lwm2m",
    "bootstrap",
    "server",
    "client-sim",
    "tests/fuzz",
    "tests/netsim",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file: `src/a/b.rs` and `src/a/b/mod.rs` are `[a, b]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn is_test_module(parts: &[String]) -> bool {
    parts
        .iter()
        .any(|p| p == "tests" || p == "testutil" || p == "test_support" || p.ends_with("_tests"))
}

/// The code of a file without its comments and its `#[cfg(test)] mod tests` block.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `prefix` + `a::b::c` path in `code`, as segments.
fn paths_after(code: &str, prefix: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    let mut rest = code;
    let mut offset = 0;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        let start = i + prefix.len();
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        let segs: Vec<String> = tail[..end]
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') && !segs.is_empty() {
            out.push((offset + i, segs));
        }
        offset += start;
        rest = &rest[start..];
    }
    out
}

/// Imports of each module: (importer, imported), full module paths.
fn imports(krate: &Path) -> BTreeSet<(Vec<String>, Vec<String>)> {
    let src = krate.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges = BTreeSet::new();
    for f in files {
        let module = module_of(&src, &f);
        if is_test_module(&module) {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("readable source");
        let code = code(&text);
        for (_, target) in paths_after(&code, "crate::") {
            edges.insert((module.clone(), target));
        }
        // `super::super::x`: each `super` climbs one module.
        for (at, segs) in paths_after(&code, "super::") {
            let mut ups = 1;
            let mut before = &code[..at];
            while let Some(stripped) = before.strip_suffix("super::") {
                ups += 1;
                before = stripped;
            }
            if before.ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            // `super::super::x` is also found one `super` in, as `super::x`: counted once.
            if segs.first().is_some_and(|s| s == "super") {
                continue;
            }
            if module.len() < ups {
                continue;
            }
            let mut target = module[..module.len() - ups].to_vec();
            target.extend(segs);
            edges.insert((module.clone(), target));
        }
    }
    edges
}

/// Rings of sibling modules (at any depth) that import each other.
fn cycles(edges: &BTreeSet<(Vec<String>, Vec<String>)>) -> Vec<Vec<String>> {
    let max_depth = edges.iter().map(|(a, _)| a.len()).max().unwrap_or(0);
    let mut found = Vec::new();
    for depth in 1..=max_depth {
        let mut graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
        for (a, b) in edges {
            if a.len() < depth || b.len() < depth || a[..depth - 1] != b[..depth - 1] {
                continue;
            }
            let (x, y) = (a[..depth].to_vec(), b[..depth].to_vec());
            if x != y {
                graph.entry(x).or_default().insert(y);
            }
        }
        // A module is in a cycle if it reaches itself.
        for start in graph.keys() {
            let mut seen = BTreeSet::new();
            let mut stack: Vec<Vec<String>> = graph[start].iter().cloned().collect();
            while let Some(m) = stack.pop() {
                if &m == start {
                    found.push(start.clone());
                    break;
                }
                if seen.insert(m.clone()) {
                    if let Some(next) = graph.get(&m) {
                        stack.extend(next.iter().cloned());
                    }
                }
            }
        }
    }
    found
}

#[test]
fn no_module_imports_its_importer() {
    let root = workspace();
    let mut all = Vec::new();
    for krate in CRATES {
        for m in cycles(&imports(&root.join(krate))) {
            all.push(format!("{krate}: {}", m.join("::")));
        }
    }
    assert!(all.is_empty(), "modules in an import cycle: {all:#?}");
}

#[test]
fn the_check_sees_a_cycle_when_there_is_one() {
    let edge = |a: &str, b: &str| {
        (
            a.split("::").map(str::to_string).collect::<Vec<_>>(),
            b.split("::").map(str::to_string).collect::<Vec<_>>(),
        )
    };
    let ring: BTreeSet<_> = [
        edge("config::mqtt", "bridge::connect::BrokerAddress"),
        edge("bridge::connect", "config::Config"),
        edge("bridge", "store::Store"),
    ]
    .into_iter()
    .collect();
    let found = cycles(&ring);
    assert!(found.contains(&vec!["config".to_string()]), "{found:?}");
    assert!(found.contains(&vec!["bridge".to_string()]), "{found:?}");
    let line: BTreeSet<_> = [edge("a::x", "a::y"), edge("a::y", "b")]
        .into_iter()
        .collect();
    assert!(cycles(&line).is_empty());
}

#[test]
fn module_docs_stand_on_their_own() {
    let root = workspace();
    let mut bad = Vec::new();
    let mut files = Vec::new();
    for krate in CRATES {
        rust_files(&root.join(krate).join("src"), &mut files);
    }
    // The end-to-end tests and the crates' own integration tests are read by newcomers too.
    for dir in [
        "tests/tests",
        "lwm2m/tests",
        "bootstrap/tests",
        "server/tests",
        "client-sim/tests",
    ] {
        rust_files(&root.join(dir), &mut files);
    }
    for f in files {
        let text = std::fs::read_to_string(&f).expect("readable source");
        for (n, line) in text.lines().enumerate() {
            let doc = line.trim_start();
            if !doc.starts_with("//") {
                continue;
            }
            let lower = doc.to_lowercase();
            // The word, a space and a number (or `#` and a number); not a verb before a size
            // such as "16-byte".
            let issue = lower.split("issue ").skip(1).any(|after| {
                let after = after.strip_prefix('#').unwrap_or(after);
                let digits = after.chars().take_while(char::is_ascii_digit).count();
                digits > 0
                    && !after[digits..].starts_with(|c: char| c == '-' || c.is_alphanumeric())
            });
            if doc.contains("DESIGN.md") || doc.contains("STYLE.md") || issue {
                bad.push(format!("{}:{}: {}", f.display(), n + 1, doc));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "comments that point outside the repository: {bad:#?}"
    );
}
