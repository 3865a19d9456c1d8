"""LwM2M registration life cycle with aiocoap against lwm2m-server.

Usage: aiocoap_registration.py coap://127.0.0.1:PORT

Prints one PASS/FAIL line per step (Register, Update, De-register, Update after De-register).
"""
import asyncio
import sys

import aiocoap
from aiocoap import Code, Message


async def main(base: str) -> int:
    ctx = await aiocoap.Context.create_client_context()
    failures = 0

    def report(ok: bool, name: str, detail: str) -> None:
        nonlocal failures
        if ok:
            print(f"PASS: aiocoap {name}")
        else:
            failures += 1
            print(f"FAIL: aiocoap {name}: {detail}")

    links = b'</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>,</3303/0>'
    req = Message(code=Code.POST, uri=f"{base}/rd?ep=aiocoap-1&lt=300&lwm2m=1.1&b=U", payload=links)
    req.opt.content_format = 40
    resp = await ctx.request(req).response
    loc = list(resp.opt.location_path)
    ok = resp.code == Code.CREATED and len(loc) == 2 and loc[0] == "rd" and len(loc[1]) == 16
    report(ok, "Register", f"{resp.code} {loc}")
    if not ok:
        return 1
    location = "/".join(loc)

    resp = await ctx.request(Message(code=Code.POST, uri=f"{base}/{location}?lt=600")).response
    report(resp.code == Code.CHANGED, "Update", str(resp.code))

    resp = await ctx.request(Message(code=Code.DELETE, uri=f"{base}/{location}")).response
    report(resp.code == Code.DELETED, "De-register", str(resp.code))

    resp = await ctx.request(Message(code=Code.POST, uri=f"{base}/{location}")).response
    report(resp.code == Code.NOT_FOUND, "Update after De-register", str(resp.code))

    await ctx.shutdown()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
