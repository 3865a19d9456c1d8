//! One test per fuzz target: the corpus, then `FUZZ_ITERATIONS` (default 2,000) generated
//! inputs from `FUZZ_SEED`; see the crate documentation.
use lwm2m_fuzz::harness::{self, Target};
use lwm2m_fuzz::targets::ALL;

fn target(name: &str) -> &'static Target {
    ALL.iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no target {name}"))
}

macro_rules! fuzz_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                harness::check(target(stringify!($name)));
            }
        )*

        #[test]
        fn every_target_has_a_test_a_corpus_and_a_binary() {
            let tested = [$(stringify!($name)),*];
            let listed: Vec<&str> = ALL.iter().map(|t| t.name).collect();
            assert_eq!(tested.to_vec(), listed);
            for name in listed {
                assert!(
                    !harness::load_corpus(name).is_empty(),
                    "corpus/{name} is empty"
                );
                let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("fuzz_targets")
                    .join(format!("{name}.rs"));
                assert!(bin.is_file(), "{} is missing", bin.display());
            }
        }
    };
}

fuzz_tests!(
    coap_message,
    dtls_record,
    dtls_handshake,
    dtls_server,
    content_text,
    content_opaque,
    content_cbor,
    content_tlv,
    content_lwm2m_json,
    content_senml_json,
    content_senml_cbor,
    content_lwm2m_cbor,
    content_link,
    link_format,
    command_envelope,
    ddf,
);
