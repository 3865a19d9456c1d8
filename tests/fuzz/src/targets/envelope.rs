//! The MQTT command envelope (EMQX's JSON), the one input a backend we do not control sends:
//! with the default limits and with limits small enough that the refusal path before the JSON
//! parse runs too.
use super::registry;
use lwm2m::content::ContentFormat;
use lwm2m_server::bridge::envelope::{
    parse_command, parse_command_with, Action, CommandLimits, COMMAND_TYPES,
};
use lwm2m_server::core::types::{COMMAND_TIMEOUT_RANGE, COMMAND_TTL_RANGE};

/// The fuzz target.
pub fn command_envelope(data: &[u8]) {
    let schema = registry();
    match parse_command("dev-1", data, schema) {
        Ok(parsed) => {
            assert!(COMMAND_TYPES.contains(&parsed.msg_type.as_str()));
            if let Action::Command(cmd) = &parsed.action {
                assert_eq!(cmd.endpoint, "dev-1");
                // Range-checked where parsed (core::types documents both ranges).
                if let Some(t) = cmd.timeout {
                    assert!(COMMAND_TIMEOUT_RANGE.contains(&t), "timeout {t:?}");
                }
                if let Some(t) = cmd.ttl {
                    assert!(COMMAND_TTL_RANGE.contains(&t), "ttl {t:?}");
                }
                // What parses, the core can encode (or refuse) without panicking.
                for f in [
                    ContentFormat::Tlv,
                    ContentFormat::SenmlJson,
                    ContentFormat::Text,
                ] {
                    let _ = cmd.request.to_coap(f);
                }
                if let Some(f) = cmd.format {
                    let _ = cmd.request.to_coap(f);
                }
            }
        }
        Err(e) => refusal(&e),
    }
    let small = CommandLimits {
        max_bytes: 48,
        max_depth: 2,
    };
    if let Err(e) = parse_command_with("dev-1", data, schema, &small) {
        refusal(&e);
    }
}

/// Every refusal says why and answers `4.00` (envelope's tests).
fn refusal(e: &lwm2m_server::bridge::envelope::EnvelopeError) {
    assert!(!e.message.is_empty());
    let response = e.to_response();
    assert!(response["msgType"].is_string(), "{response}");
    assert_eq!(response["data"]["code"], "4.00", "{response}");
}
