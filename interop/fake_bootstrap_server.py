"""A minimal LwM2M Bootstrap-Server and LwM2M Server written with aiocoap's tinydtls server
transport, to check the interop harness itself (interop/aiocoap_bootstrap_device.py) without
lwm2m-server: if the scripted device fails against this too, the fault is in the harness or
in aiocoap/tinydtls, not in the server under test.

Usage: fake_bootstrap_server.py PORT EP FACTORY_IDENTITY FACTORY_PSK_HEX

Listens on coaps://127.0.0.1:PORT with the factory PSK. On POST /bs?ep=EP (TS 1.2 Core
§5.2.7.1) it answers 2.04 and then, on the same DTLS session, plays the server side of the
bootstrap sequence (§5.2.7): Bootstrap-Discover (GET / Accept 40), Bootstrap-Delete of /0 and
/1, Bootstrap-Write of /0/1 and /1/0 (SenML CBOR to a device whose Discover says lwm2m=1.1,
else TLV; after a 4.15 the other format), Bootstrap-Read of /1/0 (1.1 only) and
Bootstrap-Finish. The Security instance points back at this same port with a fresh PSK, which
it then accepts for POST /rd (2.01; 4.03 for the factory identity). Prints "listening on
coaps://127.0.0.1:PORT", then one line per step; "bootstrap done" after Finish got 2.04, and
"registered EP identity=..." on the Register. Stops after a Register or 60 s.
"""
import asyncio
import os
import sys

import aiocoap
from aiocoap import Code, Message
from aiocoap.resource import Resource, Site
from aiocoap.transports import tinydtls_server

import lwm2m_codec as codec


def _recognize_remote(self, remote):
    # aiocoap 0.4.x checks for a plain-UDP address here, so requests to a DTLS peer that
    # reached us would not find their transport; the session's address object is the remote.
    async def check():
        return isinstance(remote, tinydtls_server._AddressDTLS)

    return check()


tinydtls_server.MessageInterfaceTinyDTLSServer.recognize_remote = _recognize_remote


def say(line: str) -> None:
    print(line, flush=True)


class Bootstrap(Resource):
    def __init__(self, srv):
        super().__init__()
        self.srv = srv

    async def render_post(self, request):
        query = dict(q.split("=", 1) for q in request.opt.uri_query if "=" in q)
        ep = query.get("ep")
        if ep != self.srv.ep:
            say(f"bootstrap-request from unknown endpoint {ep}")
            return Message(code=Code.BAD_REQUEST)
        asyncio.get_running_loop().create_task(self.srv.sequence(request.remote))
        return Message(code=Code.CHANGED)


class Registration(Resource):
    def __init__(self, srv):
        super().__init__()
        self.srv = srv

    async def render_post(self, request):
        claims = request.remote.authenticated_claims
        if claims != [":generated"]:
            say(f"register refused: claims {claims}")
            return Message(code=Code.FORBIDDEN)
        say(f"registered {self.srv.ep} identity={self.srv.identity.decode()}")
        self.srv.done.set_result(True)
        return Message(code=Code.CREATED, location_path=["rd", "0123456789abcdef"])


class Server:
    def __init__(self, port, ep, ctx):
        self.port = port
        self.ep = ep
        self.ctx = ctx
        self.identity = b"generated-" + os.urandom(4).hex().encode()
        self.key = os.urandom(16)
        self.done = asyncio.get_running_loop().create_future()

    async def call(self, remote, code, path, payload=b"", cf=None, accept=None):
        m = Message(code=code, payload=payload, uri_path=path)
        m.remote = remote
        if cf is not None:
            m.opt.content_format = cf
        if accept is not None:
            m.opt.accept = accept
        resp = await asyncio.wait_for(self.ctx.request(m).response, timeout=10)
        say(f"sent {code} /{'/'.join(path)} -> {resp.code.dotted}")
        return resp

    async def write(self, remote, obj, iid, inst, formats):
        for cf in formats:
            if cf == codec.CF_SENML_CBOR:
                body = codec.senml_cbor_encode_instance(obj, iid, inst)
            else:
                body = codec.tlv_encode_object_instance(obj, iid, inst)
            resp = await self.call(remote, Code.PUT, [str(obj), str(iid)], body, cf=cf)
            if resp.code != Code.UNSUPPORTED_CONTENT_FORMAT:
                return cf if resp.code == Code.CHANGED else None
        return None

    async def sequence(self, remote):
        try:
            await asyncio.sleep(0.1)
            resp = await self.call(remote, Code.GET, [], accept=codec.CF_LINK_FORMAT)
            v11 = b"lwm2m=1.1" in resp.payload or b'lwm2m="1.1"' in resp.payload
            say(f"discover {resp.payload.decode()}")
            for obj in ("0", "1"):
                await self.call(remote, Code.DELETE, [obj])
            formats = [codec.CF_SENML_CBOR, codec.CF_TLV] if v11 else [codec.CF_TLV]
            sec = {
                0: f"coaps://127.0.0.1:{self.port}", 1: False, 2: 0, 3: self.identity,
                4: b"", 5: self.key, 10: 101,
            }
            cf = await self.write(remote, 0, 1, sec, formats)
            srv = {0: 101, 1: 300, 6: False, 7: "U"}
            cf = cf and await self.write(remote, 1, 0, srv, [cf])
            if not cf:
                say("error a Bootstrap-Write failed")
                return
            if v11:
                resp = await self.call(remote, Code.GET, ["1", "0"], accept=cf)
                got = codec.decode(cf, resp.payload, 1, 0)
                if got != {(1, 0): srv}:
                    say(f"error Bootstrap-Read of /1/0 gave {got}")
                    return
            self.ctx.server_credentials.load_from_dict(
                {":generated": {"dtls": {"psk": self.key, "client-identity": self.identity}}}
            )
            resp = await self.call(remote, Code.POST, ["bs"])
            if resp.code == Code.CHANGED:
                say("bootstrap done")
        except Exception as e:  # noqa: BLE001 - reported, the device's side then times out
            say(f"error {type(e).__name__}: {e}")


async def run(port, ep, identity, psk_hex):
    site = Site()
    # aiocoap adds the CoAPS-CoAP port offset (5684 - 5683) to an explicit port.
    ctx = await aiocoap.Context.create_server_context(
        None, bind=("127.0.0.1", port - 1), transports=["tinydtls_server"]
    )
    ctx.server_credentials.load_from_dict(
        {":factory": {"dtls": {"psk": bytes.fromhex(psk_hex), "client-identity": identity.encode()}}}
    )
    srv = Server(port, ep, ctx)
    site.add_resource(["bs"], Bootstrap(srv))
    site.add_resource(["rd"], Registration(srv))
    ctx.serversite = site
    say(f"listening on coaps://127.0.0.1:{port}")
    try:
        await asyncio.wait_for(srv.done, timeout=60)
    except asyncio.TimeoutError:
        say("error no Register within 60 s")
        return 1
    await asyncio.sleep(0.5)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 5:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        sys.exit(2)
    sys.exit(asyncio.run(run(int(sys.argv[1]), *sys.argv[2:5])))
