//! libFuzzer entry point of `content_lwm2m_json` (coverage-guided runs; see the crate doc).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| lwm2m_fuzz::targets::content_lwm2m_json(data));
