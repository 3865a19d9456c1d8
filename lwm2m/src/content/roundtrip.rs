//! What a content format gives back of what it was given (OMA LwM2M TS 1.2 Core §7.4): the
//! normalisations a round trip through a record format applies, as the codecs' property tests
//! and the fuzz targets state their claim "decode(encode(x)) == x up to these". Built only
//! for tests and with the `test-support` feature.
use super::Record;
use crate::model::{Instance, Node, Path, Resource};

/// `node` as a record format gives it back: containers inside it that hold no value vanish,
/// since an empty multiple resource or instance inside a larger node has no record.
pub fn without_empty_children(node: Node) -> Node {
    let prune = |inst: Instance| -> Instance {
        inst.into_iter()
            .filter(|(_, r)| !matches!(r, Resource::Multiple(m) if m.is_empty()))
            .collect()
    };
    match node {
        Node::Object(m) => Node::Object(
            m.into_iter()
                .map(|(i, inst)| (i, prune(inst)))
                .filter(|(_, inst)| !inst.is_empty())
                .collect(),
        ),
        Node::Instance(inst) => Node::Instance(prune(inst)),
        other => other,
    }
}

/// What records look like after a SenML round trip: base times persist, so an untimed
/// record after a timed one reads back with time 0, SenML's "now".
pub fn senml_times(records: &[Record]) -> Vec<Record> {
    let mut timed = false;
    records
        .iter()
        .map(|r| {
            let mut r = r.clone();
            if r.time.is_some() {
                timed = true;
            } else if timed {
                r.time = Some(0.0);
            }
            r
        })
        .collect()
}

/// The records LwM2M CBOR carries as they are: no root, no record inside another one's
/// path, grouped (sorted) by path.
pub fn lwm2m_cbor_representable(mut records: Vec<Record>) -> Vec<Record> {
    records.retain(|r| !r.path.is_root());
    let paths: Vec<Path> = records.iter().map(|r| r.path).collect();
    records.retain(|r| {
        !paths
            .iter()
            .any(|q| *q != r.path && (q.starts_with(&r.path) || r.path.starts_with(q)))
    });
    records.sort_by_key(|r| r.path);
    records
}
