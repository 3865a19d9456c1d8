"""LwM2M Register over DTLS with a pre-shared key, with aiocoap and tinydtls (DTLSSocket).

Usage: aiocoap_dtls_registration.py coaps://127.0.0.1:PORT ENDPOINT IDENTITY PSK_HEX

Sends one Register (POST /rd?ep=ENDPOINT&lt=300&lwm2m=1.1&b=U, link format) and prints

    code 2.01
    location-path rd/5dbc0d6e3a9f1b27

(the location line only if the answer has one). Exits 0 when an answer came back, whatever
its code, and 1 with "error ..." when there was none (handshake refused, DTLS alert, or no
answer within $AIOCOAP_DTLS_TIMEOUT seconds, default 15): the DTLS handshake succeeded if and
only if the exit status is 0.

tinydtls (DTLSSocket 0.2.3) offers TLS_PSK_WITH_AES_128_CCM_8 (0xC0A8), TLS_PSK_WITH_AES_128_CCM
(0xC0A4) and the renegotiation SCSV, with extended_master_secret as its only extension, and
aborts the handshake unless the ServerHello carries both extended_master_secret and
renegotiation_info. Its PSK may be at most 16 bytes (DTLS_PSK_MAX_KEY_LEN; a longer one ends
in an internal_error alert after the ClientKeyExchange) and the identity at most 32. aiocoap's client credentials for DTLS are
{'dtls': {'psk': bytes, 'client-identity': bytes}} (each also as {'hex': '...'} or
{'ascii': '...'}), keyed by a URI pattern with '*'.
"""
import asyncio
import os
import sys

import aiocoap
from aiocoap import Code, Message

# Seconds to wait for the answer (handshake included); a refused handshake often gets no alert.
TIMEOUT = float(os.environ.get("AIOCOAP_DTLS_TIMEOUT", "15"))


async def register(base: str, ep: str, identity: str, psk_hex: str) -> int:
    ctx = await aiocoap.Context.create_client_context()
    ctx.client_credentials.load_from_dict(
        {
            f"{base}/*": {
                "dtls": {
                    "psk": {"hex": psk_hex},
                    "client-identity": identity.encode("utf-8"),
                }
            }
        }
    )
    links = b'</>;rt="oma.lwm2m";ct=11542,</1/0>,</3/0>'
    req = Message(code=Code.POST, uri=f"{base}/rd?ep={ep}&lt=300&lwm2m=1.1&b=U", payload=links)
    req.opt.content_format = 40
    status = 0
    try:
        resp = await asyncio.wait_for(ctx.request(req).response, timeout=TIMEOUT)
        print(f"code {resp.code.dotted}")
        loc = "/".join(resp.opt.location_path)
        if loc:
            print(f"location-path {loc}")
    except Exception as e:  # noqa: BLE001 - any failure means no answer
        print(f"error {type(e).__name__}: {e}")
        status = 1
    try:
        await asyncio.wait_for(ctx.shutdown(), timeout=5)
    except Exception:  # noqa: BLE001 - tinydtls shutdown noise is not the test's business
        pass
    return status


if __name__ == "__main__":
    if len(sys.argv) != 5:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        sys.exit(2)
    sys.exit(asyncio.run(register(*sys.argv[1:5])))
