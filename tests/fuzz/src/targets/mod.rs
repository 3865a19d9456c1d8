//! The fuzz targets, one function over arbitrary bytes per input surface, and the list the
//! tests and the libFuzzer binaries share.
//!
//! Each function must not panic on any input; the assertions in them are the properties the
//! code under test already claims in its own tests (round trips, bounds), so a failure is a
//! bug in the code under test, not a new requirement.
mod coap;
mod content;
mod ddf;
// Token tables read better one group per line than one token per line.
#[rustfmt::skip]
mod dict;
pub mod dtls;
mod envelope;
mod link;

pub use self::coap::coap_message;
pub use self::content::{
    content_cbor, content_link, content_lwm2m_cbor, content_lwm2m_json, content_opaque,
    content_senml_cbor, content_senml_json, content_text, content_tlv,
};
pub use self::ddf::ddf;
pub use self::dtls::{dtls_handshake, dtls_record, dtls_server};
pub use self::envelope::command_envelope;
pub use self::link::link_format;
use crate::harness::Target;
use dict::*;
use lwm2m::model::Registry;
use std::sync::OnceLock;

/// The bundled object registry, the schema the server decodes with; built once.
fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::bundled)
}

/// Asserts that a value read back equals the one expected. NaN is a value the binary
/// formats carry and never equals itself, so values that differ under `==` are compared
/// again by their `Debug` form, which prints every NaN alike and every other float exactly.
fn same<T: PartialEq + std::fmt::Debug, E: std::fmt::Debug>(
    again: &Result<T, E>,
    first: &T,
    context: impl Fn() -> String,
) {
    let equal = match again {
        Ok(v) => v == first || format!("{v:?}") == format!("{first:?}"),
        Err(_) => false,
    };
    assert!(equal, "{}\n  read back as {again:?}", context());
}

/// Every target.
pub const ALL: [Target; 16] = [
    Target {
        name: "coap_message",
        run: coap_message,
        dict: &[COAP],
        max_len: 1_500,
    },
    Target {
        name: "dtls_record",
        run: dtls_record,
        dict: &[DTLS],
        max_len: 2_048,
    },
    Target {
        name: "dtls_handshake",
        run: dtls_handshake,
        dict: &[DTLS],
        max_len: 2_048,
    },
    Target {
        name: "dtls_server",
        run: dtls_server,
        dict: &[SERVER_CHUNKS],
        max_len: 4_096,
    },
    Target {
        name: "content_text",
        run: content_text,
        dict: &[TEXT],
        max_len: 256,
    },
    Target {
        name: "content_opaque",
        run: content_opaque,
        dict: &[TEXT],
        max_len: 256,
    },
    Target {
        name: "content_cbor",
        run: content_cbor,
        dict: &[CBOR],
        max_len: 256,
    },
    Target {
        name: "content_tlv",
        run: content_tlv,
        dict: &[TLV],
        max_len: 1_024,
    },
    Target {
        name: "content_lwm2m_json",
        run: content_lwm2m_json,
        dict: &[JSON, LWM2M_JSON],
        max_len: 2_048,
    },
    Target {
        name: "content_senml_json",
        run: content_senml_json,
        dict: &[JSON, SENML],
        max_len: 2_048,
    },
    Target {
        name: "content_senml_cbor",
        run: content_senml_cbor,
        dict: &[CBOR],
        max_len: 1_024,
    },
    Target {
        name: "content_lwm2m_cbor",
        run: content_lwm2m_cbor,
        dict: &[CBOR],
        max_len: 1_024,
    },
    Target {
        name: "content_link",
        run: content_link,
        dict: &[LINK],
        max_len: 1_024,
    },
    Target {
        name: "link_format",
        run: link_format,
        dict: &[LINK],
        max_len: 2_048,
    },
    Target {
        name: "command_envelope",
        run: command_envelope,
        dict: &[JSON, ENVELOPE],
        max_len: 2_048,
    },
    Target {
        name: "ddf",
        run: ddf,
        dict: &[DDF],
        max_len: 8_192,
    },
];
