//! Helpers over coap-lite's [`Packet`]: tokens, uint and block options, URI options and
//! message classification (RFC 7252 §3, §5.10; RFC 7959 §2.2).
//!
//! coap-lite parses and serializes the message; these helpers add the typed views the
//! exchange layer needs and that coap-lite leaves to the caller.
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use std::fmt;

/// A CoAP token of 0..=8 bytes, stored inline so it can key hash maps without allocating.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Token {
    len: u8,
    bytes: [u8; 8],
}

impl Token {
    /// The token of `bytes`, or `None` when longer than the 8 bytes CoAP allows.
    pub fn new(bytes: &[u8]) -> Option<Self> {
        let mut t = Token {
            len: u8::try_from(bytes.len()).ok()?,
            bytes: [0; 8],
        };
        t.bytes.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(t)
    }

    /// The token's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// What a message is, from its type and code (RFC 7252 §3, §12.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Code 0.00.
    Empty,
    /// Codes 0.01..0.31.
    Request,
    /// Codes 2.xx, 4.xx, 5.xx.
    Response,
    /// Classes 1, 3, 6 and 7: reserved, silently ignored.
    Reserved,
}

/// The kind of `packet`.
pub(crate) fn kind(packet: &Packet) -> Kind {
    let code: u8 = packet.header.code.into();
    match code >> 5 {
        0 if code == 0 => Kind::Empty,
        0 => Kind::Request,
        2 | 4 | 5 => Kind::Response,
        _ => Kind::Reserved,
    }
}

/// Value of a Block1 or Block2 option (RFC 7959 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockOpt {
    /// Block number.
    pub num: u32,
    /// More blocks follow.
    pub more: bool,
    /// Size exponent: the block holds `2^(szx+4)` bytes; 0..=6.
    pub szx: u8,
}

impl BlockOpt {
    /// Bytes in one block of this size.
    pub fn size(&self) -> usize {
        block_size(self.szx)
    }

    /// Byte offset of this block.
    pub fn offset(&self) -> usize {
        self.num as usize * self.size()
    }

    /// Decodes the option value; `None` for a reserved SZX of 7 or a value over 3 bytes.
    pub fn decode(value: &[u8]) -> Option<Self> {
        if value.len() > 3 {
            return None;
        }
        let v = value.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
        let szx = (v & 0x7) as u8;
        if szx == 7 {
            return None;
        }
        Some(BlockOpt {
            num: v >> 4,
            more: v & 0x8 != 0,
            szx,
        })
    }

    /// Encodes the option value in as few bytes as it needs.
    pub fn encode(&self) -> Vec<u8> {
        let v = (self.num << 4) | (u32::from(self.more) << 3) | u32::from(self.szx & 0x7);
        encode_uint(v)
    }
}

/// Bytes in a block of size exponent `szx`.
pub fn block_size(szx: u8) -> usize {
    16usize << szx.min(6)
}

/// Block `num` of `body` at size `szx`, or 4.02 if it lies past the end (RFC 7959 §2.2).
pub fn slice_block(template: &Packet, body: &[u8], num: u32, szx: u8) -> Packet {
    let size = block_size(szx);
    let start = (num as usize).saturating_mul(size);
    if num > 0 && start >= body.len() {
        return response(ResponseType::BadOption);
    }
    let end = start.saturating_add(size).min(body.len());
    let mut p = template.clone();
    p.payload = body.get(start..end).unwrap_or_default().to_vec();
    set_block_option(
        &mut p,
        CoapOption::Block2,
        BlockOpt {
            num,
            more: end < body.len(),
            szx,
        },
    );
    if num == 0 {
        set_uint_option(&mut p, CoapOption::Size2, body.len() as u32);
    } else {
        // RFC 7959 §2.6: only the first block of a notification carries Observe.
        p.clear_option(CoapOption::Observe);
    }
    p
}

/// The SZX of the largest block size not above `size` (16..=1024 bytes; RFC 7959 §2.2):
/// the inverse of [`block_size`] for powers of two, clamped to the range.
pub fn szx_of(size: usize) -> u8 {
    let exp = usize::BITS - 1 - size.max(16).leading_zeros();
    u8::try_from(exp.saturating_sub(4)).unwrap_or(6).min(6)
}

/// Encodes an unsigned option value without leading zero bytes (RFC 7252 §3.2).
pub fn encode_uint(v: u32) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    bytes.iter().skip(skip).copied().collect()
}

/// Decodes an unsigned option value of up to 4 bytes.
pub fn decode_uint(value: &[u8]) -> Option<u32> {
    if value.len() > 4 {
        return None;
    }
    Some(value.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
}

/// The first value of option `opt` as an unsigned integer.
pub fn uint_option(packet: &Packet, opt: CoapOption) -> Option<u32> {
    packet.get_first_option(opt).and_then(|v| decode_uint(v))
}

/// Replaces option `opt` with one unsigned value.
pub fn set_uint_option(packet: &mut Packet, opt: CoapOption, v: u32) {
    packet.clear_option(opt);
    packet.add_option(opt, encode_uint(v));
}

/// The Block1 or Block2 option of `packet`, if present and valid.
pub fn block_option(packet: &Packet, opt: CoapOption) -> Option<BlockOpt> {
    packet
        .get_first_option(opt)
        .and_then(|v| BlockOpt::decode(v))
}

/// Replaces the Block1 or Block2 option of `packet`.
pub fn set_block_option(packet: &mut Packet, opt: CoapOption, block: BlockOpt) {
    packet.clear_option(opt);
    packet.add_option(opt, block.encode());
}

/// The Observe option value (RFC 7641 §2), if present.
pub fn observe(packet: &Packet) -> Option<u32> {
    uint_option(packet, CoapOption::Observe)
}

/// Builds a request for `path` (`/3/0/1` style; an empty path or `/` means the root).
/// Query parameters after `?` become Uri-Query options, split on `&`.
pub fn request(method: RequestType, path: &str) -> Packet {
    let mut p = Packet::new();
    p.header.code = MessageClass::Request(method);
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    for q in query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|s| !s.is_empty())
    {
        p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
    }
    p
}

/// Builds a response with `code` and no payload.
pub fn response(code: ResponseType) -> Packet {
    let mut p = Packet::new();
    p.header.code = MessageClass::Response(code);
    p
}

/// The Uri-Path options joined with `/`, starting with `/`. Segments that are not UTF-8 are
/// replaced lossily: this is for routing and logs, not for echoing bytes back.
pub fn uri_path(packet: &Packet) -> String {
    let mut s = String::new();
    if let Some(segs) = packet.get_option(CoapOption::UriPath) {
        for seg in segs {
            s.push('/');
            s.push_str(&String::from_utf8_lossy(seg));
        }
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

/// The Uri-Query options as strings.
pub fn uri_query(packet: &Packet) -> Vec<String> {
    packet
        .get_option(CoapOption::UriQuery)
        .map(|qs| {
            qs.iter()
                .map(|q| String::from_utf8_lossy(q).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The Location-Path options joined with `/`, starting with `/`.
pub fn location_path(packet: &Packet) -> String {
    let mut s = String::new();
    if let Some(segs) = packet.get_option(CoapOption::LocationPath) {
        for seg in segs {
            s.push('/');
            s.push_str(&String::from_utf8_lossy(seg));
        }
    }
    s
}

/// Options this endpoint understands (RFC 7252 §5.10, RFC 7641, RFC 7959, RFC 7967).
const KNOWN_OPTIONS: &[u16] = &[
    1, 3, 4, 5, 6, 7, 8, 11, 12, 14, 15, 17, 20, 23, 27, 28, 60, 258, 292,
];

/// Whether `packet` carries option `opt`. coap-lite's `clear_option` leaves an empty list
/// behind, so `get_option(..).is_some()` is not a reliable test; this is.
pub fn has_option(packet: &Packet, opt: CoapOption) -> bool {
    packet.get_option(opt).is_some_and(|l| !l.is_empty())
}

/// The first critical option (odd number, RFC 7252 §5.4.1) this endpoint does not know.
pub(crate) fn unknown_critical_option(packet: &Packet) -> Option<u16> {
    packet
        .options()
        .filter(|(_, values)| !values.is_empty())
        .map(|(n, _)| *n)
        .find(|n| n & 1 == 1 && !KNOWN_OPTIONS.contains(n))
}

/// Is this response code a success (2.xx)?
pub fn is_success(packet: &Packet) -> bool {
    let code: u8 = packet.header.code.into();
    code >> 5 == 2
}

/// An empty message (ACK or RST) for `mid`.
#[cfg(test)]
pub(crate) fn empty(t: MessageType, mid: u16) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(t);
    p.header.message_id = mid;
    p.header.code = MessageClass::Empty;
    p
}

/// Serializes the fixed 4-byte empty ACK or RST for `mid`, without going through `Packet`.
pub(crate) fn empty_bytes(t: MessageType, mid: u16) -> Vec<u8> {
    let t = match t {
        MessageType::Confirmable => 0u8,
        MessageType::NonConfirmable => 1,
        MessageType::Acknowledgement => 2,
        MessageType::Reset => 3,
    };
    let [hi, lo] = mid.to_be_bytes();
    vec![0x40 | (t << 4), 0, hi, lo]
}

/// Response code as the familiar "4.04" string, for logs and errors.
pub fn code_string(packet: &Packet) -> String {
    packet.header.code.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn szx_of_inverts_block_size() {
        for szx in 0..=6 {
            assert_eq!(szx_of(block_size(szx)), szx);
        }
        assert_eq!((szx_of(0), szx_of(4096), szx_of(1000)), (0, 6, 5));
    }

    #[test]
    fn block_option_vectors_from_rfc7959() {
        // RFC 7959 §2.2: NUM=0, M=0, SZX=6 encodes as one byte 0x06; NUM=1, M=1, SZX=6 as 0x1e.
        assert_eq!(
            BlockOpt {
                num: 0,
                more: false,
                szx: 6
            }
            .encode(),
            vec![0x06]
        );
        assert_eq!(
            BlockOpt {
                num: 1,
                more: true,
                szx: 6
            }
            .encode(),
            vec![0x1e]
        );
        assert_eq!(
            BlockOpt::decode(&[0x1e]),
            Some(BlockOpt {
                num: 1,
                more: true,
                szx: 6
            })
        );
        // Three-byte form, largest number.
        let b = BlockOpt {
            num: (1 << 20) - 1,
            more: true,
            szx: 2,
        };
        assert_eq!(BlockOpt::decode(&b.encode()), Some(b));
        // SZX 7 is reserved.
        assert_eq!(BlockOpt::decode(&[0x07]), None);
        assert_eq!(BlockOpt::decode(&[1, 2, 3, 4]), None);
        // The empty value is NUM=0, M=0, SZX=0.
        assert_eq!(
            BlockOpt::decode(&[]),
            Some(BlockOpt {
                num: 0,
                more: false,
                szx: 0
            })
        );
    }

    #[test]
    fn uint_encoding_drops_leading_zeros() {
        assert_eq!(encode_uint(0), Vec::<u8>::new());
        assert_eq!(encode_uint(60), vec![60]);
        assert_eq!(encode_uint(0x1_0000), vec![1, 0, 0]);
        assert_eq!(decode_uint(&[1, 0, 0]), Some(0x1_0000));
        assert_eq!(decode_uint(&[1, 0, 0, 0, 0]), None);
    }

    #[test]
    fn request_builder_splits_path_and_query() {
        let p = request(RequestType::Post, "/rd?ep=dev1&lt=300");
        assert_eq!(uri_path(&p), "/rd");
        assert_eq!(uri_query(&p), vec!["ep=dev1", "lt=300"]);
        assert_eq!(uri_path(&request(RequestType::Get, "/")), "/");
    }

    #[test]
    fn token_rejects_more_than_eight_bytes() {
        assert!(Token::new(&[0; 9]).is_none());
        assert_eq!(
            Token::new(&[1, 2]).map(|t| t.as_bytes().to_vec()),
            Some(vec![1, 2])
        );
    }

    #[test]
    fn empty_bytes_match_codec() {
        let p = empty(MessageType::Reset, 0x1234);
        assert_eq!(
            p.to_bytes().ok(),
            Some(empty_bytes(MessageType::Reset, 0x1234))
        );
    }

    #[test]
    fn critical_options_are_odd() {
        let mut p = request(RequestType::Get, "/a");
        assert_eq!(unknown_critical_option(&p), None);
        p.add_option(CoapOption::Unknown(2049), vec![]);
        assert_eq!(unknown_critical_option(&p), Some(2049));
    }
}
