#!/usr/bin/env bash
# LwM2M registration interop: libcoap's coap-client (Debian libcoap3-bin) and aiocoap (PyPI,
# installed into interop/.venv) register, update and de-register with lwm2m-server over
# CoAP/UDP on 127.0.0.1, and the codes and Location-Path they get back are checked
# (OMA LwM2M TS 1.2 Transport §6.2: 2.01 + Location-Path, 2.04, 2.02, 4.04, 4.00).
#
# Each case prints PASS or FAIL; the last line is "N passed, M failed". Exits non-zero if any
# case failed. Every client call runs under `timeout`, so nothing hangs.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

source "$ROOT/interop/lib.sh"
ensure_libcoap
VENV="$ROOT/interop/.venv"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import aiocoap' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check 'aiocoap>=0.4.7'
fi

cargo build -p lwm2m-server
SERVER="${CARGO_TARGET_DIR:-$ROOT/target}/debug/lwm2m-server"

cat >"$WORK/server.toml" <<TOML
[server]
coap_bind = ["127.0.0.1:0"]
coaps_bind = []
data_dir = "$WORK/data"

[mqtt]
enabled = false

# Bootstrap is tried in lwm2m_bootstrap.sh; here its fixed ports would only get in the way.
[bootstrap]
enabled = false

[http]
bind = "127.0.0.1:0"
TOML
start_server "$SERVER" --config "$WORK/server.toml"
BASE="$ADDR"
echo "server at $BASE"

# coap-client with its exchange log (-v 6): the received PDU line carries the code and
# options, e.g. "v:1 t:ACK c:2.01 i:cbdc {01} [ Location-Path:rd, Location-Path:5dbc... ]".
client() {
    timeout 30 coap-client-openssl -v 6 "$@" 2>&1 | grep -E 't:ACK|t:CON c:[245]|t:NON c:[245]' | tail -n 1 || true
}

# 1. Register: 2.01 and a Location-Path /rd/{16 hex digits}.
name="libcoap Register"
reply="$(client -m post -t 40 -e '</>;rt="oma.lwm2m";ct=11542,</1/0>,</3/0>' "$BASE/rd?ep=libcoap-1&lt=60&lwm2m=1.1&b=U")"
LOC="$(echo "$reply" | sed -n 's/.*Location-Path:rd, Location-Path:\([0-9a-f]*\).*/\1/p')"
if echo "$reply" | grep -q 'c:2.01' && [ "${#LOC}" -eq 16 ]; then
    pass "$name (location /rd/$LOC)"
else
    fail "$name" "got '$reply'"
fi

# 2. Update with a new lifetime: 2.04.
name="libcoap Update"
reply="$(client -m post "$BASE/rd/$LOC?lt=120")"
if echo "$reply" | grep -q 'c:2.04'; then pass "$name"; else fail "$name" "got '$reply'"; fi

# 3. Update of a location that does not exist: 4.04.
name="libcoap Update of an unknown registration"
reply="$(client -m post "$BASE/rd/0000000000000000?lt=120")"
if echo "$reply" | grep -q 'c:4.04'; then pass "$name"; else fail "$name" "got '$reply'"; fi

# 4. Register without an endpoint name: 4.00.
name="libcoap Register without ep"
reply="$(client -m post -t 40 -e '</1/0>' "$BASE/rd?lt=60")"
if echo "$reply" | grep -q 'c:4.00'; then pass "$name"; else fail "$name" "got '$reply'"; fi

# 5. De-register: 2.02, and the location is gone afterwards.
name="libcoap De-register"
reply="$(client -m delete "$BASE/rd/$LOC")"
again="$(client -m post "$BASE/rd/$LOC")"
if echo "$reply" | grep -q 'c:2.02' && echo "$again" | grep -q 'c:4.04'; then
    pass "$name"
else
    fail "$name" "got '$reply' then '$again'"
fi

# 6. aiocoap: the same life cycle from another implementation (it prints its own PASS/FAIL).
out="$(timeout 60 "$VENV/bin/python" "$ROOT/interop/aiocoap_registration.py" "$BASE" 2>&1 || true)"
echo "$out" | grep -E '^(PASS|FAIL)' || true
PASSED=$((PASSED + $(echo "$out" | grep -c '^PASS' || true)))
aio_failed=$(echo "$out" | grep -c '^FAIL' || true)
FAILED=$((FAILED + aio_failed))
if ! echo "$out" | grep -q '^PASS'; then
    fail "aiocoap" "no result: $out"
fi

# The server saw all of it.
name="server log shows the registrations"
if grep -q 'registered.*libcoap-1' "$WORK/server.log" && grep -q 'registered.*aiocoap-1' "$WORK/server.log"; then
    pass "$name"
else
    fail "$name" "$(tail -n 5 "$WORK/server.log")"
fi

summary
