//! libFuzzer entry point of `content_tlv` (coverage-guided runs; see the crate doc).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| lwm2m_fuzz::targets::content_tlv(data));
