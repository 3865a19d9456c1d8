"""A scripted LwM2M device that bootstraps over DTLS with aiocoap and tinydtls (DTLSSocket),
then registers with what it was given (OMA LwM2M TS 1.2 Core §5.2 and §6.1, Transport §5.2).

Usage: aiocoap_bootstrap_device.py coaps://HOST:PORT EP FACTORY_IDENTITY FACTORY_PSK_HEX
           [--lwm2m 1.0|1.1] [--formats tlv,senml-cbor] [--drop-after STEP]

1. Client-initiated bootstrap: POST /bs?ep=EP (Bootstrap-Request) over DTLS with the factory
   PSK.
2. On that same DTLS session it answers the Bootstrap-Server's requests (TS Core §5.2.7):
   Bootstrap-Discover (GET with Accept 40), Bootstrap-Delete (DELETE, never the Bootstrap-Server
   account), Bootstrap-Write (PUT of TLV or SenML CBOR), Bootstrap-Read (GET of /1 or /2, 1.1
   only) and Bootstrap-Finish (POST /bs), keeping objects 0, 1 and 3 in memory. A Write in a
   format not in --formats gets 4.15, a Read asking for one 4.06 (default: TLV only for 1.0;
   SenML CBOR and TLV for 1.1).
3. After Finish it checks its configuration (a non-bootstrap Security instance with a PSK and a
   Server instance with the same Short Server ID; 4.06 otherwise, TS Core §5.2.7.7) and
   registers at that Security instance's URI with its PSK: POST /rd?ep=EP&lt=..&lwm2m=..&b=..

Output, one fact per line on stdout:
    bootstrap-request code 2.04
    op GET / accept=40 -> 2.05          (each request the Bootstrap-Server sent, in order)
    bootstrap finished
    security /0/1 uri=coaps://127.0.0.1:5684 identity=TEXT identity_hex=HEX key_len=16 key=HEX
    server /1/0 ssid=1 lifetime=300 binding=U
    register code 2.01
    register location rd/5dbc0d6e3a9f1b27
    error WHAT                          (any failure, including protocol violations)
Exit status 0 only if the Register got 2.01; 1 on any error; 3 after --drop-after.

--drop-after STEP (discover, delete, write or read): answer the first request of that kind,
then go silent (incoming datagrams are dropped, no alert is sent) and exit after a second, as a
device that loses power mid-sequence. Timeouts: $BOOTSTRAP_TIMEOUT seconds (default 30) from
the Bootstrap-Request to Finish, $REGISTER_TIMEOUT (default 15) for the Register.

aiocoap answers requests on a DTLS session it opened as a client: its tinydtls transport hands
every decrypted datagram to the message manager, which routes requests to the context's
`serversite` (None in a client context, hence the 4.04 "not a server"; set here) and sends the
response back through the same DTLSClientConnection. The connection lives in a weak pool, so
the script holds a reference to it (the Bootstrap-Request's response.remote) until Finish.
"""
import argparse
import asyncio
import os
import sys

import aiocoap
from aiocoap import Code, Message
from aiocoap.resource import Resource
from aiocoap.transports import tinydtls

import lwm2m_codec as codec

BOOTSTRAP_TIMEOUT = float(os.environ.get("BOOTSTRAP_TIMEOUT", "30"))
REGISTER_TIMEOUT = float(os.environ.get("REGISTER_TIMEOUT", "15"))
FORMAT_NAMES = {"tlv": codec.CF_TLV, "senml-cbor": codec.CF_SENML_CBOR}

# Set by --drop-after: from then on every datagram the device receives is ignored.
_DROPPED = False
_original_datagram_received = tinydtls.DTLSClientConnection.SingleConnection.datagram_received


def _datagram_received(self, data, addr):
    if not _DROPPED:
        _original_datagram_received(self, data, addr)


tinydtls.DTLSClientConnection.SingleConnection.datagram_received = _datagram_received


def say(line: str) -> None:
    print(line, flush=True)


class Device:
    """Objects 0, 1 and 3 of the device and what happened during the bootstrap."""

    def __init__(self, args):
        self.args = args
        self.version = args.lwm2m
        self.formats = [FORMAT_NAMES[f] for f in args.formats.split(",")]
        self.objects = {
            0: {
                0: {
                    0: args.uri,
                    1: True,
                    2: 0,
                    3: args.identity.encode("utf-8"),
                    4: b"",
                    5: bytes.fromhex(args.psk_hex),
                }
            },
            1: {},
            3: {0: {0: "interop", 1: "aiocoap-bootstrap-device", 2: "0001", 3: "1.0"}},
        }
        self.errors = []
        self.finished = asyncio.get_running_loop().create_future()
        self.drop_task = None

    def violation(self, what: str) -> None:
        self.errors.append(what)
        say(f"error {what}")

    def bootstrap_instance(self):
        for iid, inst in self.objects[0].items():
            if inst.get(1) is True:
                return iid
        return None

    def discover(self, obj) -> bytes:
        links = []
        if obj is None and self.version == "1.1":
            links.append("</>;lwm2m=1.1")
        for o in sorted(self.objects) if obj is None else [obj]:
            insts = self.objects.get(o, {})
            if not insts:
                links.append(f"</{o}>")
            for iid in sorted(insts):
                link = f"</{o}/{iid}>"
                inst = insts[iid]
                if self.version == "1.1":
                    if o == 0 and inst.get(1) is not True and 10 in inst:
                        link += f";ssid={inst[10]}"
                    if o == 0 and 0 in inst:
                        link += f';uri="{inst[0]}"'
                    if o == 1 and 0 in inst:
                        link += f";ssid={inst[0]}"
                links.append(link)
        return ",".join(links).encode("utf-8")

    def check_finish(self):
        """The configuration after Finish: (security iid, its instance, server instance) or an
        error string."""
        bs = self.bootstrap_instance()
        if bs is None:
            return "the Bootstrap-Server account /0 instance is gone"
        if self.objects[0][bs].get(3) != self.args.identity.encode("utf-8"):
            return f"the Bootstrap-Server account /0/{bs} was overwritten"
        for iid, sec in sorted(self.objects[0].items()):
            if sec.get(1) is True:
                continue
            ssid = sec.get(10)
            servers = [s for s in self.objects[1].values() if s.get(0) == ssid]
            if not servers:
                return f"/0/{iid} has ssid {ssid} but no Server instance has it"
            if sec.get(2) != 0:
                return f"/0/{iid} security mode {sec.get(2)} (PSK = 0 expected)"
            if not sec.get(3) or not sec.get(5) or not isinstance(sec.get(0), str):
                return f"/0/{iid} lacks a URI, a PSK identity or a PSK"
            return iid, sec, servers[0]
        return "no LwM2M Server account was written"


class DeviceSite(Resource):
    """Every path of the device: aiocoap's context hands each incoming request here."""

    def __init__(self, device: Device):
        super().__init__()
        self.d = device

    async def needs_blockwise_assembly(self, request):
        return True

    async def render(self, request):
        d = self.d
        path = list(request.opt.uri_path)
        if path and path[-1] == "":
            path.pop()
        name = "/" + "/".join(path)
        try:
            ids = [int(p) for p in path]
        except ValueError:
            ids = None
        code, payload, cf, kind = await self.handle(request, path, ids, name)
        accept = request.opt.accept
        cfin = request.opt.content_format
        say(
            f"op {request.code} {name}"
            + (f" cf={int(cfin)}" if cfin is not None else "")
            + (f" accept={int(accept)}" if accept is not None else "")
            + f" -> {code.dotted}"
        )
        resp = Message(code=code, payload=payload)
        if cf is not None:
            resp.opt.content_format = cf
        if kind is not None and d.args.drop_after == kind and d.drop_task is None:
            d.drop_task = asyncio.get_running_loop().create_task(drop(d))
        return resp

    async def handle(self, request, path, ids, name):
        d = self.d
        method = request.code
        if d.finished.done():
            return Code.SERVICE_UNAVAILABLE, b"bootstrap already finished", None, None
        if method == Code.POST and path == ["bs"]:
            check = d.check_finish()
            if isinstance(check, str):
                d.violation(f"Bootstrap-Finish with an unusable configuration: {check}")
                d.finished.set_result(None)
                return Code.NOT_ACCEPTABLE, check.encode(), None, "finish"
            d.finished.set_result(check)
            return Code.CHANGED, b"", None, "finish"
        if ids is None or len(ids) > 2:
            d.violation(f"{method} {name}: not a bootstrap target")
            return Code.BAD_REQUEST, b"", None, None
        obj = ids[0] if ids else None
        inst = ids[1] if len(ids) == 2 else None
        if method == Code.GET:
            accept = request.opt.accept
            if accept is not None and int(accept) == codec.CF_LINK_FORMAT or (
                accept is None and obj is None
            ):
                if inst is not None:
                    return Code.BAD_REQUEST, b"Discover targets / or an object", None, "discover"
                return Code.CONTENT, d.discover(obj), codec.CF_LINK_FORMAT, "discover"
            return self.read(obj, inst, accept, name)
        if method == Code.DELETE:
            return self.delete(obj, inst, name)
        if method == Code.PUT:
            return self.write(request, obj, inst, name)
        d.violation(f"{method} {name}: not a bootstrap operation")
        return Code.METHOD_NOT_ALLOWED, b"", None, None

    def read(self, obj, inst, accept, name):
        d = self.d
        if d.version == "1.0":
            d.violation(f"Bootstrap-Read of {name} sent to a LwM2M 1.0 device")
            return Code.METHOD_NOT_ALLOWED, b"", None, "read"
        if obj not in (1, 2):
            # TS Core §5.2.7.3: Bootstrap-Read targets the Server and Access Control objects.
            d.violation(f"Bootstrap-Read of {name} (only /1 and /2 may be read)")
            return Code.UNAUTHORIZED, b"", None, "read"
        insts = d.objects.get(obj, {})
        if inst is not None and inst not in insts:
            return Code.NOT_FOUND, b"", None, "read"
        cf = int(accept) if accept is not None else d.formats[0]
        if cf not in d.formats:
            return Code.NOT_ACCEPTABLE, b"", None, "read"
        if cf == codec.CF_SENML_CBOR:
            if inst is not None:
                body = codec.senml_cbor_encode_instance(obj, inst, insts[inst])
            else:
                body = codec.senml_cbor_encode_object(obj, insts)
        elif cf == codec.CF_TLV:
            if inst is not None:
                body = codec.tlv_encode_instance(obj, insts[inst])
            else:
                body = b"".join(
                    codec.tlv_encode_object_instance(obj, i, insts[i]) for i in sorted(insts)
                )
        else:
            return Code.NOT_ACCEPTABLE, b"", None, "read"
        return Code.CONTENT, body, cf, "read"

    def delete(self, obj, inst, name):
        d = self.d
        bs = d.bootstrap_instance()
        if obj is None:
            targets = [(o, i) for o in (0, 1) for i in list(d.objects[o])]
        elif obj not in (0, 1):
            return Code.DELETED, b"", None, "delete"
        elif inst is None:
            targets = [(obj, i) for i in list(d.objects[obj])]
        else:
            targets = [(obj, inst)]
        for o, i in targets:
            if o == 0 and i == bs:
                if inst is not None:
                    # TS Core §5.2.7.5: the Bootstrap-Server account is never deleted.
                    d.violation(f"Bootstrap-Delete of the Bootstrap-Server account {name}")
                    return Code.BAD_REQUEST, b"", None, "delete"
                continue
            d.objects[o].pop(i, None)
        return Code.DELETED, b"", None, "delete"

    def write(self, request, obj, inst, name):
        d = self.d
        if obj is None:
            d.violation("Bootstrap-Write to /")
            return Code.METHOD_NOT_ALLOWED, b"", None, "write"
        cf = request.opt.content_format
        cf = int(cf) if cf is not None else None
        if cf not in d.formats:
            return Code.UNSUPPORTED_CONTENT_FORMAT, b"", None, None
        try:
            written = codec.decode(cf, request.payload, obj, inst)
        except codec.CodecError as e:
            d.violation(f"Bootstrap-Write {name} cf={cf}: {e}")
            return Code.BAD_REQUEST, str(e).encode(), None, "write"
        if written is None:
            return Code.UNSUPPORTED_CONTENT_FORMAT, b"", None, None
        for (o, i), resources in written.items():
            d.objects.setdefault(o, {}).setdefault(i, {}).update(resources)
        return Code.CHANGED, b"", None, "write"


async def drop(d: Device) -> None:
    global _DROPPED
    _DROPPED = True
    await asyncio.sleep(1)
    say(f"error dropped after {d.args.drop_after} (stopped answering)")
    # No destructors: a device that loses power sends no close_notify.
    sys.stdout.flush()
    os._exit(3)


def hexid(b: bytes):
    text = b.decode("utf-8", errors="backslashreplace")
    return text, b.hex()


async def register(ctx, d: Device, sec, server) -> int:
    uri = sec[0].rstrip("/")
    ctx.client_credentials.load_from_dict(
        {f"{uri}/*": {"dtls": {"psk": bytes(sec[5]), "client-identity": bytes(sec[3])}}}
    )
    lt = server.get(1, 86400)
    binding = server.get(7, "U")
    links = ",".join(f"</{o}/{i}>" for o in (1, 3) for i in sorted(d.objects[o]))
    links = '</>;rt="oma.lwm2m";ct=11542,' + links
    req = Message(
        code=Code.POST,
        uri=f"{uri}/rd?ep={d.args.endpoint}&lt={lt}&lwm2m={d.version}&b={binding}",
        payload=links.encode(),
    )
    req.opt.content_format = codec.CF_LINK_FORMAT
    try:
        resp = await asyncio.wait_for(ctx.request(req).response, timeout=REGISTER_TIMEOUT)
    except Exception as e:  # noqa: BLE001 - any failure means no registration
        say(f"error register: no answer from {uri}: {type(e).__name__}: {e}")
        return 1
    say(f"register code {resp.code.dotted}")
    loc = "/".join(resp.opt.location_path)
    if loc:
        say(f"register location {loc}")
    return 0 if resp.code == Code.CREATED else 1


async def run(args) -> int:
    ctx = await aiocoap.Context.create_client_context(transports=["tinydtls"])
    d = Device(args)
    ctx.serversite = DeviceSite(d)
    ctx.client_credentials.load_from_dict(
        {
            f"{args.uri}/*": {
                "dtls": {"psk": {"hex": args.psk_hex}, "client-identity": args.identity.encode()}
            }
        }
    )
    req = Message(code=Code.POST, uri=f"{args.uri}/bs?ep={args.endpoint}")
    try:
        resp = await asyncio.wait_for(ctx.request(req).response, timeout=BOOTSTRAP_TIMEOUT)
    except Exception as e:  # noqa: BLE001
        say(f"error bootstrap-request: no answer: {type(e).__name__}: {e}")
        return 1
    say(f"bootstrap-request code {resp.code.dotted}")
    if resp.code != Code.CHANGED:
        say("error bootstrap-request refused")
        return 1
    # Keeps the DTLS session (weakly pooled by aiocoap) open for the server's requests.
    session = resp.remote
    try:
        result = await asyncio.wait_for(d.finished, timeout=BOOTSTRAP_TIMEOUT)
    except asyncio.TimeoutError:
        say(f"error no Bootstrap-Finish within {BOOTSTRAP_TIMEOUT:g} s")
        return 1
    if result is None:
        return 1
    # Let the 2.04 to Finish go out before the session is closed.
    await asyncio.sleep(0.2)
    session.shutdown()
    del session
    say("bootstrap finished")
    iid, sec, server = result
    for i, s in sorted(d.objects[0].items()):
        text, hx = hexid(bytes(s.get(3, b"")))
        say(
            f"security /0/{i} uri={s.get(0)} bootstrap={str(s.get(1)).lower()} ssid={s.get(10)} "
            f"identity={text} identity_hex={hx} key_len={len(s.get(5, b''))} "
            f"key={bytes(s.get(5, b'')).hex()}"
        )
    for i, s in sorted(d.objects[1].items()):
        say(f"server /1/{i} ssid={s.get(0)} lifetime={s.get(1)} binding={s.get(7)}")
    if d.errors:
        say(f"error {len(d.errors)} protocol violation(s) during the bootstrap")
        return 1
    status = await register(ctx, d, sec, server)
    try:
        await asyncio.wait_for(ctx.shutdown(), timeout=5)
    except Exception:  # noqa: BLE001 - tinydtls shutdown noise is not the test's business
        pass
    return status


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("uri", help="the Bootstrap-Server, coaps://HOST:PORT")
    p.add_argument("endpoint")
    p.add_argument("identity", help="factory PSK identity (text)")
    p.add_argument("psk_hex", help="factory PSK, hex (at most 16 bytes for tinydtls)")
    p.add_argument("--lwm2m", choices=["1.0", "1.1"], default="1.1")
    p.add_argument("--formats", help="Write formats taken: tlv, senml-cbor (comma-separated)")
    p.add_argument("--drop-after", choices=["discover", "delete", "write", "read"])
    args = p.parse_args()
    args.uri = args.uri.rstrip("/")
    if args.formats is None:
        args.formats = "tlv" if args.lwm2m == "1.0" else "senml-cbor,tlv"
    if any(f not in FORMAT_NAMES for f in args.formats.split(",")):
        p.error(f"--formats takes {', '.join(FORMAT_NAMES)}")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
