//! libFuzzer entry point of `link_format` (coverage-guided runs; see the crate doc).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| lwm2m_fuzz::targets::link_format(data));
