//! Tokens the mutator splices into inputs, per format: what a coverage-guided fuzzer would
//! learn from comparisons, given up front to the deterministic harness.

/// JSON structure, escapes and extreme numbers.
pub(super) const JSON: &[&[u8]] = &[
    b"{", b"}", b"[", b"]", b"\"", b":", b",", b"null", b"true", b"false", b"\"\"", b"\\u0000",
    b"\\ud800", b"1.5", b"-1.7976931348623157e308", b"5e-324", b"[[[[[[[[", b"{\"a\":",
];

/// SenML labels (RFC 8428 §4) and LwM2M names.
pub(super) const SENML: &[&[u8]] = &[
    b"\"bn\":", b"\"n\":", b"\"bt\":", b"\"t\":", b"\"v\":", b"\"vs\":", b"\"vb\":", b"\"vd\":",
    b"\"vlo\":", b"\"bver\":", b"\"/3/0/\"", b"\"0\"", b"\"/65535/\"", b"\"/3/0/7/0\"",
];

/// LwM2M 1.0 JSON labels (TS Core §7.4.4).
pub(super) const LWM2M_JSON: &[&[u8]] = &[
    b"\"bn\":", b"\"e\":", b"\"n\":", b"\"v\":", b"\"sv\":", b"\"bv\":", b"\"ov\":", b"\"t\":",
    b"\"bt\":", b"\"/3/0/\"", b"\"0/1\"",
];

/// CBOR heads: arrays, maps, indefinite lengths, breaks, floats, tags, huge lengths.
pub(super) const CBOR: &[&[u8]] = &[
    &[0x80], &[0x9f], &[0xff], &[0xa0], &[0xbf],
    &[0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    &[0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], &[0xf9, 0x7e, 0x00],
    &[0xfa, 0x7f, 0x80, 0, 0], &[0xfb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0], &[0xf4], &[0xf5], &[0xf6],
    &[0xf7], &[0xc1], &[0x21], &[0x00], &[0x61, 0x30], &[0x40], &[0x5f], &[0x7f],
    &[0x5a, 0xff, 0xff, 0xff, 0xff], &[0x9a, 0xff, 0xff, 0xff, 0xff], &[0x19, 0xff, 0xff],
    &[0xd8, 0x18],
];

/// TLV type bytes of every kind and length width, and lying lengths.
pub(super) const TLV: &[&[u8]] = &[
    &[0x08], &[0x88], &[0xc8], &[0x48], &[0x38, 0xff, 0xff, 0xff], &[0xc1, 0x00, 0x01],
    &[0xe8, 0xff, 0xff], &[0x18, 0xff, 0xff, 0x00], &[0x03, 0x00], &[0x28, 0x00, 0x00],
    &[0xc4, 0x00, 0x7f, 0xff, 0xff, 0xff],
];

/// Values of every text/plain type and near misses.
pub(super) const TEXT: &[&[u8]] = &[
    b"true", b"false", b"1", b"0.5", b"-9223372036854775809", b"1970-01-01T00:00:00Z", b"3:0",
    b"65535:65535", b"AAEC", b"====", b" ", b"\xc3\x28", b"1_000",
];

/// Link-format delimiters and the LwM2M attributes.
pub(super) const LINK: &[&[u8]] = &[
    b"<", b">", b";", b",", b"=", b"\"", b"\\", b"</>", b"</3/0>", b"</1/0>", b"<//>",
    b"rt=\"oma.lwm2m\"", b"ct=", b"ct=\"60 110 112 11542 11543\"", b"ver=", b"ver=1.1", b"pmin=",
    b"pmax=", b"gt=", b"lt=", b"st=", b"epmin=", b"epmax=", b"dim=", b"ssid=", b"uri=",
    b"</3/0/7>;dim=", b"&", b"\xc3\xa9",
];

/// CoAP headers, option headers with extended deltas and lengths, LwM2M queries.
pub(super) const COAP: &[&[u8]] = &[
    &[0x40, 0x01], &[0x40, 0x02], &[0x60, 0x45], &[0x50, 0x03], &[0x70, 0x00], &[0x44, 0x01],
    &[0x48, 0x02], &[0xb2, 0x72, 0x64], &[0x0d, 0x00], &[0x0e, 0xff, 0xff], &[0xd1, 0x0e],
    &[0xd1, 0x0a], &[0x61, 0x06], &[0xff], &[0x3f], b"ep=", b"lt=", b"b=UQ", b"lwm2m=1.1", b"Q",
    b"pmin=", b"epmax=", b"</3/0>",
];

/// DTLS record headers, handshake types, suites, extensions and the known PSK identities.
pub(super) const DTLS: &[&[u8]] = &[
    &[0x16, 0xfe, 0xfd], &[0x16, 0xfe, 0xff], &[0x14, 0xfe, 0xfd], &[0x15, 0xfe, 0xfd],
    &[0x17, 0xfe, 0xfd], &[0x19, 0xfe, 0xfd], &[0x00, 0x01], &[0x01], &[0x03], &[0x10], &[0x14],
    &[0xc0, 0xa8], &[0x00, 0xae], &[0xc0, 0xae], &[0xc0, 0x2b], &[0x00, 0xff], &[0x00, 0x36],
    &[0x00, 0x17, 0x00, 0x00], &[0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x17],
    &[0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04, 0x03], &[0xff, 0x01, 0x00, 0x01, 0x00],
    &[0x00, 0x13, 0x00, 0x02, 0x01, 0x02], &[0x00, 0x14, 0x00, 0x02, 0x01, 0x02],
    &[0x03, 0x00, 0x17], b"myid", b"dev-0",
];

/// `dtls_server` chunk headers for every mode (see `dtls::chunk`).
pub(super) const SERVER_CHUNKS: &[&[u8]] = &[
    &[0x00, 0x00, 0x00], &[0x20, 0x00, 0x00], &[0x40, 0x00, 0x10], &[0x60, 0x00, 0x04],
    &[0x80, 0x00, 0x40], &[0xe0, 0x00, 0x08], &[0x18, 0x00, 0x00], &[0x5c, 0x00, 0x00],
];

/// The command envelope's keys, message types and value types.
pub(super) const ENVELOPE: &[&[u8]] = &[
    b"\"reqID\":", b"\"msgType\":", b"\"data\":", b"\"path\":", b"\"value\":", b"\"type\":",
    b"\"timeout\":", b"\"ttl\":", b"\"format\":", b"\"encoding\":\"hex\"", b"\"content\":",
    b"\"basePath\":", b"\"paths\":", b"\"args\":", b"\"read\"", b"\"write\"", b"\"write-attr\"",
    b"\"execute\"", b"\"create\"", b"\"observe\"", b"\"cancel-observe\"", b"\"read-composite\"",
    b"\"write-composite\"", b"\"discover\"", b"\"delete\"", b"\"/3/0/1\"", b"\"/31024/0\"",
    b"\"Integer\"", b"\"Float\"", b"\"Opaque\"", b"\"Time\"", b"\"Objlnk\"", b"\"Boolean\"",
    b"\"String\"", b"\"pmin\":", b"\"gt\":",
];

/// DDF elements, values, entities and byte-order marks.
pub(super) const DDF: &[&[u8]] = &[
    b"<LWM2M>", b"</LWM2M>", b"<Object ObjectType=\"MODefinition\">", b"</Object>", b"<ObjectID>",
    b"</ObjectID>", b"<Resources>", b"<Item ID=\"", b"\">", b"</Item>", b"<Type>Integer</Type>",
    b"<Type>Opaque</Type>", b"<Operations>RW</Operations>",
    b"<MultipleInstances>Multiple</MultipleInstances>", b"<Mandatory>Mandatory</Mandatory>",
    b"<ObjectVersion>1.1</ObjectVersion>", b"<RangeEnumeration>",
    b"<!DOCTYPE x [<!ENTITY a \"aaaaaaaa\">]>", b"&a;", b"&#x0;", b"<![CDATA[", b"]]>",
    b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>", b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf",
    b"65536", b"xmlns:x=\"u\"",
];
