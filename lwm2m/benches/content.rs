//! Encode and decode throughput of the LwM2M content formats for one Device object instance
//! (/3/0, the OMA TS example values), typed through the bundled object model.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lwm2m::content::{decode, encode, ContentFormat};
use lwm2m::model::{Instance, Node, Path, Registry, Resource, Value};
use std::collections::BTreeMap;
use std::hint::black_box;

fn device() -> Node {
    let mut i = Instance::new();
    let s = |v: &str| Resource::Single(Value::String(v.into()));
    let multi = |vs: &[i64]| {
        Resource::Multiple(
            vs.iter()
                .enumerate()
                .map(|(k, v)| (k as u16, Value::Integer(*v)))
                .collect::<BTreeMap<_, _>>(),
        )
    };
    i.insert(0, s("Open Mobile Alliance"));
    i.insert(1, s("Lightweight M2M Client"));
    i.insert(2, s("345000123"));
    i.insert(3, s("1.0"));
    i.insert(6, multi(&[1, 5]));
    i.insert(7, multi(&[3800, 5000]));
    i.insert(8, multi(&[125, 900]));
    i.insert(9, Resource::Single(Value::Integer(100)));
    i.insert(10, Resource::Single(Value::Integer(15)));
    i.insert(11, multi(&[0]));
    i.insert(13, Resource::Single(Value::Time(1_367_491_215)));
    i.insert(14, s("+02:00"));
    i.insert(16, s("U"));
    Node::Instance(i)
}

fn formats(c: &mut Criterion) {
    let schema = Registry::bundled();
    let path = Path::instance(3, 0);
    let node = device();
    for format in [
        ContentFormat::Tlv,
        ContentFormat::SenmlJson,
        ContentFormat::SenmlCbor,
        ContentFormat::Lwm2mCbor,
    ] {
        let bytes = encode(format, &path, &node).expect("encodes");
        let mut g = c.benchmark_group(format!("{format:?}"));
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function("encode_device_instance", |b| {
            b.iter(|| encode(format, black_box(&path), black_box(&node)))
        });
        g.bench_function("decode_device_instance", |b| {
            b.iter(|| decode(format, black_box(&path), black_box(&bytes), &schema))
        });
        g.finish();
        assert_eq!(
            decode(format, &path, &bytes, &schema).expect("decodes"),
            node
        );
    }
}

criterion_group!(benches, formats);
criterion_main!(benches);
