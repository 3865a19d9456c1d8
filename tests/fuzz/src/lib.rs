//! Fuzz targets for every parser that reads bytes from outside the server: devices (CoAP,
//! DTLS, every content format, link format), backends (the MQTT command envelope) and
//! operators' files (OMA DDF object definitions).
//!
//! # Targets
//!
//! | target | input | covers |
//! | --- | --- | --- |
//! | `coap_message` | one CoAP datagram | coap-lite's `Packet::from_bytes`; `lwm2m::coap::msg` option helpers (uint options, Block1/Block2, Observe, Uri-Path/Query, Location-Path, token); Register/Update and Write-Attributes query parsing; `DownlinkRequest::from_coap` and `SendRequest::from_coap`; `DownlinkRequest::parse_response` for eight request shapes (the server reading device answers); the datagram fed twice into an `Endpoint` in virtual time |
//! | `dtls_record` | one datagram | `dtls::record::split_records` at CID lengths 0, 4, 6, 16; `DirectionKeys::open` with all three ciphers; `write_plaintext` and `seal`/`open` round trips |
//! | `dtls_handshake` | a message body, and a record payload | every `dtls::handshake::messages` parser and the hello extensions; `parse_fragments`, the `Reassembler`, and the parsers again on each reassembled message |
//! | `dtls_server` | a sequence of chunks | `dtls::Server` (PSK and ECDHE with a raw public key) in virtual time: raw datagrams from four addresses, the harness's cookie echo, a genuine PSK client's handshake, data, replays and corruptions, and saved sessions restored (see [`targets::dtls::chunk`] for the encoding) |
//! | `content_text`, `content_opaque`, `content_cbor`, `content_tlv`, `content_lwm2m_json`, `content_senml_json`, `content_senml_cbor`, `content_lwm2m_cbor` | a payload | `lwm2m::content::decode` (the dispatch by `ContentFormat`) at twelve paths of every level, with the bundled registry and without a schema, and `decode_composite` |
//! | `content_link` | a Discover answer | `lwm2m::content::link::decode_discover` and the attribute accessors |
//! | `link_format` | link-format text | `lwm2m::coap::link_format::parse`, `parse_registration_links`, `lwm2m::attributes::NotificationAttributes` from links and from a query |
//! | `command_envelope` | an MQTT payload | `lwm2m_server::bridge::envelope::parse_command` (and `parse_command_with` under small limits), with the bundled registry as schema |
//! | `ddf` | a file | `lwm2m::model::parse_ddf` and `Registry::load_file` (which also decodes UTF-16 and ISO-8859-1) |
//!
//! Every target asserts that nothing panics, and checks the properties the code already
//! claims in its own tests: decode -> encode -> decode gives the same value for every
//! content format, link format, registration links, CoAP requests and answers, Block and
//! uint options, and DTLS records and handshake messages; parsed command timeouts and TTLs
//! lie in their documented ranges; the DTLS server stays within its configured handshake
//! and session bounds, sends no datagram over `max_datagram`, and its saved sessions
//! restore.
//!
//! # Running
//!
//! `cargo test -p lwm2m-fuzz` runs each target as one `#[test]`: first every file of
//! `corpus/<target>/`, then [`harness::DEFAULT_ITERATIONS`] (10,000) inputs generated from
//! a fixed seed, mostly by mutating the corpus. All sixteen take about 20 s of CPU in a
//! debug build (11 to 25 s of wall time on this machine's two shared cores); `dtls_record`
//! (AES in a debug build), `dtls_server` and `ddf` take most of it. Environment variables:
//!
//! - `FUZZ_ITERATIONS=n`: generated inputs per target (run longer: `FUZZ_ITERATIONS=1000000
//!   cargo test -p lwm2m-fuzz -- content_tlv`).
//! - `FUZZ_SEED=n` (decimal or `0x` hex): explore other inputs; the default keeps CI
//!   reproducible.
//! - `FUZZ_CRASH_DIR=dir`: where crashing inputs are written, minimized, as
//!   `<target>/crash-<hash>` (default `$TMPDIR/fuzz-crashes`). They are kept out of the
//!   corpus so the suite stays green until the owner of the code fixes the bug; the failing
//!   test prints the input in hex with the panic message and location.
//! - `FUZZ_INPUT=file`: run only that input, without catching its panic, to see the
//!   backtrace (`FUZZ_INPUT=/tmp/fuzz-crashes/ddf/crash-... cargo test -p lwm2m-fuzz -- ddf`).
//!
//! Stay in the debug profile for long runs (or set
//! `CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true` with `--release`): arithmetic overflow is
//! one of the panics being looked for.
//!
//! The inputs of the two round-trip bugs these targets found (an Update to no objects
//! written as no payload; a Create answer's root Location-Path taken as the new instance)
//! are in the `coap_message` corpus, so they run on every `cargo test`.
//!
//! # Coverage-guided fuzzing on stable
//!
//! The `#[test]` runs are deterministic mutation fuzzing without coverage feedback. For
//! coverage-guided runs, the same functions are libFuzzer targets (`fuzz_targets/`, behind
//! the `libfuzzer` feature), which `cargo fuzz` builds on stable Rust once the sanitizer is
//! off (`-Zsanitizer` is the only nightly-only flag it passes):
//!
//! ```sh
//! cargo install cargo-fuzz
//! cargo fuzz run --fuzz-dir tests/fuzz --sanitizer none --features libfuzzer \
//!     --target-dir target/fuzz content_tlv /tmp/corpus/content_tlv tests/fuzz/corpus/content_tlv \
//!     -- -max_total_time=600
//! ```
//!
//! libFuzzer reads every corpus directory given and writes what it finds into the first, a
//! scratch one here; minimize before copying anything into `corpus/` (`cargo fuzz cmin`),
//! and keep the corpus small. Crashes go to `tests/fuzz/artifacts/<target>/` (not to be
//! committed); add `-fork=1 -ignore_crashes=1` after `--` to keep going past a known one.
//! The first build instruments every dependency (the server's included) and took 14
//! minutes here; later builds take seconds. In 75 s the text and link targets then run 2
//! to 4 million inputs, the record formats and DTLS ones 0.35 to 0.6 million, `ddf` 65
//! thousand. Without a sanitizer,
//! libFuzzer finds panics, aborts, hangs and out-of-memory, not undefined behaviour, which
//! `unsafe_code = "forbid"` rules out in this workspace's code anyway.
//!
//! # Why not bolero
//!
//! bolero was the first choice (one `check!()` for `cargo test` and for its engines), but
//! it does not fit here: `bolero-generator-derive` pins exact versions (`indexmap =2.11.2`;
//! through `proc-macro-crate 2`, `toml_datetime =0.6.3`), so bolero 0.13.7 does not resolve
//! against this workspace's lock file, and 0.13.4 resolves only by downgrading the `toml`
//! that the embedded MQTT broker's `config` uses, changing the server's dependencies for a
//! test crate. Its plain `cargo test` mode also seeds its random inputs from the operating
//! system, so a CI failure could not be replayed, and reads the corpus from
//! `__fuzz__/<test>/corpus` beside the test file. Hence the small harness in [`harness`] on
//! `rand`, and cargo-fuzz for coverage feedback.
//!
//! # Adding a target
//!
//! Write `fn(&[u8])` in [`targets`], list it in [`targets::ALL`] with a dictionary, add its
//! name to `tests/targets.rs`, a `fuzz_targets/<name>.rs` and a `[[bin]]` in `Cargo.toml`,
//! and seed `corpus/<name>/` with a few small, real, valid inputs.
pub mod harness;
pub mod targets;
