//! libFuzzer entry point of `ddf` (coverage-guided runs; see the crate doc).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| lwm2m_fuzz::targets::ddf(data));
