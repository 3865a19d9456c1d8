"""LwM2M content formats for the bootstrap interop scripts: TLV (OMA LwM2M TS 1.2 Core §7.4.3,
content format 11542) and SenML CBOR (RFC 8428 §6 with the LwM2M rules of TS Core §7.4.5,
content format 112), for the Security (0), Server (1) and Device (3) objects.

Test code written from the OMA and IETF texts, independently of the Rust codecs, so that a
disagreement between the two shows up as an interop failure. TLV carries no types, so the
resource types of TS Core Appendix E.1 (Security), E.2 (Server) and E.4 (Device) are listed
here; a resource not listed is kept as raw bytes (TLV) or as its SenML value.

Values in memory: str, int, bool, bytes, or ObjLnk; a multiple-instance resource is a dict
{resource instance id: value}. An object instance is a dict {resource id: value}.
"""
import struct
from typing import Dict, List, Tuple, Union

import cbor2

CF_TEXT = 0
CF_LINK_FORMAT = 40
CF_OPAQUE = 42
CF_SENML_JSON = 110
CF_SENML_CBOR = 112
CF_TLV = 11542
CF_LWM2M_CBOR = 11544

STRING, INTEGER, BOOLEAN, OPAQUE, OBJLNK, TIME, UNSIGNED = (
    "string",
    "integer",
    "boolean",
    "opaque",
    "objlnk",
    "time",
    "unsigned",
)

# Resource types per object (TS Core Appendix E); only readable/writable resources.
SCHEMA = {
    0: {
        0: STRING, 1: BOOLEAN, 2: INTEGER, 3: OPAQUE, 4: OPAQUE, 5: OPAQUE, 6: INTEGER,
        7: OPAQUE, 8: OPAQUE, 9: STRING, 10: INTEGER, 11: INTEGER, 12: INTEGER, 13: UNSIGNED,
        14: STRING, 15: UNSIGNED, 16: UNSIGNED, 17: OBJLNK, 18: OBJLNK,
    },
    1: {
        0: INTEGER, 1: INTEGER, 2: INTEGER, 3: INTEGER, 5: INTEGER, 6: BOOLEAN, 7: STRING,
        10: OBJLNK, 11: UNSIGNED, 12: TIME, 13: UNSIGNED, 14: UNSIGNED, 15: BOOLEAN,
        16: BOOLEAN, 17: UNSIGNED, 18: UNSIGNED, 19: UNSIGNED, 20: UNSIGNED, 21: BOOLEAN,
        22: STRING, 23: BOOLEAN,
    },
    3: {
        0: STRING, 1: STRING, 2: STRING, 3: STRING, 6: INTEGER, 9: INTEGER, 11: INTEGER,
        13: TIME, 14: STRING, 15: STRING, 16: STRING, 17: STRING, 18: STRING, 19: STRING,
    },
}
# Resources that are Multiple in those objects.
MULTIPLE = {(0, 16), (1, 22), (3, 6), (3, 11)}


class CodecError(Exception):
    """The payload does not follow the content format (the device answers 4.00)."""


class ObjLnk(tuple):
    """An Object Link value (object id, instance id)."""

    def __str__(self):
        return f"{self[0]}:{self[1]}"


Value = Union[str, int, bool, bytes, ObjLnk]
# (object, instance, resource, resource instance or None) -> value
Entries = List[Tuple[Tuple[int, int, int, Union[int, None]], Value]]


def res_type(obj: int, res: int) -> Union[str, None]:
    return SCHEMA.get(obj, {}).get(res)


# ---------------------------------------------------------------------------------------------
# TLV (TS Core §7.4.3)

TLV_OBJECT_INSTANCE, TLV_RESOURCE_INSTANCE, TLV_MULTIPLE_RESOURCE, TLV_RESOURCE = 0, 1, 2, 3


def tlv_parse(data: bytes) -> List[Tuple[int, int, object]]:
    """Splits a TLV sequence into (kind, id, value bytes or nested list)."""
    out = []
    pos = 0
    while pos < len(data):
        t = data[pos]
        pos += 1
        kind = t >> 6
        id_len = 2 if t & 0x20 else 1
        len_type = (t >> 3) & 0x03
        if pos + id_len > len(data):
            raise CodecError("TLV identifier runs past the end")
        ident = int.from_bytes(data[pos : pos + id_len], "big")
        pos += id_len
        if len_type == 0:
            length = t & 0x07
        else:
            if pos + len_type > len(data):
                raise CodecError("TLV length runs past the end")
            length = int.from_bytes(data[pos : pos + len_type], "big")
            pos += len_type
        if pos + length > len(data):
            raise CodecError(f"TLV value of id {ident} runs past the end ({length} bytes)")
        value = data[pos : pos + length]
        pos += length
        if kind in (TLV_OBJECT_INSTANCE, TLV_MULTIPLE_RESOURCE):
            out.append((kind, ident, tlv_parse(value)))
        else:
            out.append((kind, ident, value))
    return out


def tlv_value(kind: Union[str, None], raw: bytes) -> Value:
    if kind is None or kind == OPAQUE:
        return bytes(raw)
    if kind == STRING:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CodecError(f"string value is not UTF-8: {e}") from e
    if kind in (INTEGER, TIME):
        if len(raw) not in (1, 2, 4, 8):
            raise CodecError(f"integer of {len(raw)} bytes (1, 2, 4 or 8 expected)")
        return int.from_bytes(raw, "big", signed=True)
    if kind == UNSIGNED:
        if len(raw) not in (1, 2, 4, 8):
            raise CodecError(f"unsigned integer of {len(raw)} bytes")
        return int.from_bytes(raw, "big", signed=False)
    if kind == BOOLEAN:
        if raw not in (b"\x00", b"\x01"):
            raise CodecError(f"boolean value {raw.hex()} (00 or 01 expected)")
        return raw == b"\x01"
    if kind == OBJLNK:
        if len(raw) != 4:
            raise CodecError(f"objlnk of {len(raw)} bytes (4 expected)")
        return ObjLnk(struct.unpack(">HH", raw))
    raise CodecError(f"unknown type {kind}")


def tlv_decode(data: bytes, obj: int, inst: Union[int, None]) -> Entries:
    """Decodes a TLV payload written to /obj (inst None) or /obj/inst."""
    entries: Entries = []

    def resources(items, i):
        for kind, rid, value in items:
            if kind == TLV_RESOURCE:
                if (obj, rid) in MULTIPLE:
                    raise CodecError(f"/{obj}/{i}/{rid} is Multiple but sent as a single resource")
                entries.append(((obj, i, rid, None), tlv_value(res_type(obj, rid), value)))
            elif kind == TLV_MULTIPLE_RESOURCE:
                for k2, riid, v2 in value:
                    if k2 != TLV_RESOURCE_INSTANCE:
                        raise CodecError(f"/{obj}/{i}/{rid}: a multiple resource holds kind {k2}")
                    entries.append(((obj, i, rid, riid), tlv_value(res_type(obj, rid), v2)))
            else:
                raise CodecError(f"TLV kind {kind} where resources are expected")

    top = tlv_parse(data)
    if inst is None:
        for kind, iid, value in top:
            if kind != TLV_OBJECT_INSTANCE:
                raise CodecError("a write to an object must carry object instance TLVs")
            resources(value, iid)
    elif len(top) == 1 and top[0][0] == TLV_OBJECT_INSTANCE:
        if top[0][1] != inst:
            raise CodecError(f"object instance TLV {top[0][1]} written to /{obj}/{inst}")
        resources(top[0][2], inst)
    else:
        resources(top, inst)
    return entries


def _tlv_header(kind: int, ident: int, length: int) -> bytes:
    t = kind << 6
    id_bytes = ident.to_bytes(2 if ident > 0xFF else 1, "big")
    if ident > 0xFF:
        t |= 0x20
    if length < 8:
        return bytes([t | length]) + id_bytes
    n = 1 if length <= 0xFF else 2 if length <= 0xFFFF else 3
    return bytes([t | (n << 3)]) + id_bytes + length.to_bytes(n, "big")


def _tlv_bytes(kind: Union[str, None], value: Value) -> bytes:
    if isinstance(value, bool):
        return b"\x01" if value else b"\x00"
    if isinstance(value, ObjLnk):
        return struct.pack(">HH", value[0], value[1])
    if isinstance(value, int):
        for n in (1, 2, 4, 8):
            try:
                return value.to_bytes(n, "big", signed=kind != UNSIGNED)
            except OverflowError:
                continue
        raise CodecError(f"integer {value} too large")
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


def tlv_encode_instance(obj: int, inst: Dict[int, object]) -> bytes:
    """The resources of one instance, as a Read of /obj/inst returns them."""
    out = b""
    for rid in sorted(inst):
        value = inst[rid]
        if isinstance(value, dict):
            body = b""
            for riid in sorted(value):
                v = _tlv_bytes(res_type(obj, rid), value[riid])
                body += _tlv_header(TLV_RESOURCE_INSTANCE, riid, len(v)) + v
            out += _tlv_header(TLV_MULTIPLE_RESOURCE, rid, len(body)) + body
        else:
            v = _tlv_bytes(res_type(obj, rid), value)
            out += _tlv_header(TLV_RESOURCE, rid, len(v)) + v
    return out


def tlv_encode_object_instance(obj: int, iid: int, inst: Dict[int, object]) -> bytes:
    body = tlv_encode_instance(obj, inst)
    return _tlv_header(TLV_OBJECT_INSTANCE, iid, len(body)) + body


# ---------------------------------------------------------------------------------------------
# SenML CBOR (RFC 8428 §6: labels bn=-2, bt=-3, n=0, v=2, vs=3, vb=4, vd=8; LwM2M adds
# "vlo" for object links, TS Core §7.4.5)

BN, BT, N, V, VS, VB, VD, VLO = -2, -3, 0, 2, 3, 4, 8, "vlo"


def _parse_path(name: str) -> Tuple[int, ...]:
    if not name.startswith("/"):
        raise CodecError(f"SenML name {name!r} is not an absolute path")
    parts = [p for p in name.split("/")[1:]]
    if parts and parts[-1] == "":
        parts.pop()
    try:
        ids = tuple(int(p) for p in parts)
    except ValueError as e:
        raise CodecError(f"SenML name {name!r} is not a path of numbers") from e
    if not 3 <= len(ids) <= 4 or any(not 0 <= i <= 65535 for i in ids):
        raise CodecError(f"SenML name {name!r} does not name a resource (instance)")
    return ids


def senml_cbor_decode(data: bytes) -> Entries:
    """Decodes a SenML CBOR pack; the types are checked against the schema."""
    try:
        pack = cbor2.loads(data)
    except Exception as e:  # noqa: BLE001 - cbor2 raises several kinds
        raise CodecError(f"not CBOR: {e}") from e
    if not isinstance(pack, list):
        raise CodecError("a SenML pack is a CBOR array")
    entries: Entries = []
    bn = ""
    for rec in pack:
        if not isinstance(rec, dict):
            raise CodecError("a SenML record is a CBOR map")
        if BN in rec:
            if not isinstance(rec[BN], str):
                raise CodecError("bn is not a text string")
            bn = rec[BN]
        n = rec.get(N, "")
        if not isinstance(n, str):
            raise CodecError("n is not a text string")
        path = _parse_path(bn + n)
        kind = res_type(path[0], path[2])
        values = [k for k in (V, VS, VB, VD, VLO) if k in rec]
        if len(values) != 1:
            raise CodecError(f"{bn + n}: {len(values)} values in one record")
        label = values[0]
        value = rec[label]
        expected = {
            STRING: VS, OPAQUE: VD, BOOLEAN: VB, OBJLNK: VLO,
            INTEGER: V, UNSIGNED: V, TIME: V,
        }.get(kind)
        if expected is not None and label != expected:
            raise CodecError(f"{bn + n}: {kind} resource sent with label {label} ({value!r})")
        if label == V:
            if not isinstance(value, int) or isinstance(value, bool):
                if isinstance(value, float) and value.is_integer() and kind is not None:
                    value = int(value)
                elif kind is not None:
                    raise CodecError(f"{bn + n}: v is {value!r}, an integer was expected")
        elif label == VS and not isinstance(value, str):
            raise CodecError(f"{bn + n}: vs is not a text string")
        elif label == VB and not isinstance(value, bool):
            raise CodecError(f"{bn + n}: vb is not a boolean")
        elif label == VD:
            if not isinstance(value, bytes):
                raise CodecError(f"{bn + n}: vd is not a byte string")
        elif label == VLO:
            try:
                a, b = value.split(":")
                value = ObjLnk((int(a), int(b)))
            except (AttributeError, ValueError) as e:
                raise CodecError(f"{bn + n}: vlo {value!r} is not 'object:instance'") from e
        riid = path[3] if len(path) == 4 else None
        if riid is None and (path[0], path[2]) in MULTIPLE:
            raise CodecError(f"{bn + n} is Multiple but has no resource instance id")
        entries.append(((path[0], path[1], path[2], riid), value))
    return entries


def _senml_records(prefix: str, inst: Dict[int, object]) -> List[dict]:
    records = []
    for rid in sorted(inst):
        value = inst[rid]
        items = (
            [(f"{prefix}{rid}/{riid}", value[riid]) for riid in sorted(value)]
            if isinstance(value, dict)
            else [(f"{prefix}{rid}", value)]
        )
        for name, v in items:
            rec = {N: name}
            if isinstance(v, bool):
                rec[VB] = v
            elif isinstance(v, ObjLnk):
                rec[VLO] = str(v)
            elif isinstance(v, int):
                rec[V] = v
            elif isinstance(v, str):
                rec[VS] = v
            else:
                rec[VD] = bytes(v)
            records.append(rec)
    return records


def senml_cbor_encode_instance(obj: int, iid: int, inst: Dict[int, object]) -> bytes:
    """One instance, as a Read of /obj/iid returns it: bn "/obj/iid/", n "rid"."""
    records = _senml_records("", inst)
    if records:
        records[0] = {BN: f"/{obj}/{iid}/", **records[0]}
    return cbor2.dumps(records)


def senml_cbor_encode_object(obj: int, insts: Dict[int, Dict[int, object]]) -> bytes:
    """Every instance of an object: bn "/obj/", n "iid/rid"."""
    records = []
    for iid in sorted(insts):
        records += _senml_records(f"{iid}/", insts[iid])
    if records:
        records[0] = {BN: f"/{obj}/", **records[0]}
    return cbor2.dumps(records)


# ---------------------------------------------------------------------------------------------


def entries_to_instances(entries: Entries) -> Dict[Tuple[int, int], Dict[int, object]]:
    """Groups decoded entries by (object, instance)."""
    out: Dict[Tuple[int, int], Dict[int, object]] = {}
    for (obj, iid, rid, riid), value in entries:
        inst = out.setdefault((obj, iid), {})
        if riid is None:
            inst[rid] = value
        else:
            multi = inst.setdefault(rid, {})
            if not isinstance(multi, dict):
                raise CodecError(f"/{obj}/{iid}/{rid} sent both single and multiple")
            multi[riid] = value
    return out


def decode(cf: Union[int, None], data: bytes, obj: int, inst: Union[int, None]):
    """Decodes a Write payload to /obj or /obj/inst; None for a format this module lacks."""
    if cf == CF_TLV:
        entries = tlv_decode(data, obj, inst)
    elif cf == CF_SENML_CBOR:
        entries = senml_cbor_decode(data)
    else:
        return None
    for (o, i, _r, _ri), _v in entries:
        if o != obj or (inst is not None and i != inst):
            raise CodecError(f"/{o}/{i} written through /{obj}" + ("" if inst is None else f"/{inst}"))
    return entries_to_instances(entries)
