//! libFuzzer entry point of `dtls_record` (coverage-guided runs; see the crate doc).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| lwm2m_fuzz::targets::dtls_record(data));
