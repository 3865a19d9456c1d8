#!/usr/bin/env bash
# LwM2M bootstrap interop (OMA LwM2M TS 1.2 Core §5.2, §6.1; Transport §5.2): a scripted device
# made with aiocoap and tinydtls (interop/aiocoap_bootstrap_device.py, PyPI aiocoap +
# DTLSSocket + cbor2 in interop/.venv) asks lwm2m-server's bootstrap server for its account
# over DTLS with a factory PSK, answers the server's Discover, Delete, Write, Read and Finish
# on that same DTLS session, then registers with the LwM2M server using the PSK it was
# written. The device decodes TLV and SenML CBOR with its own codecs (interop/lwm2m_codec.py),
# written from the OMA text, and flags any request a device must refuse (a Delete of its
# Bootstrap-Server account, a Bootstrap-Read of /0, a Bootstrap-Read sent to LwM2M 1.0...).
#
# Cases:
#   0. harness check: the scripted device against an aiocoap bootstrap server
#      (interop/fake_bootstrap_server.py), so a broken harness is not blamed on the server
#   a. LwM2M 1.1 device: SenML CBOR writes, Bootstrap-Read of /1, Register with the generated
#      PSK; `device list` shows that identity, not the factory one
#   b. LwM2M 1.0 device: TLV writes, no Bootstrap-Read; Register
#   c. the device of (a) bootstraps again: a fresh identity and key, and the old ones no longer
#      complete a handshake with the LwM2M server
#   d. a device that goes silent after the first Write gets no credential; bootstrapping it
#      again works
#   e. a wrong factory key, an unknown factory identity, and a factory credential used under
#      another endpoint name are refused; none gets a credential
#   f. a LwM2M 1.1 device that takes only TLV: the server falls back after 4.15
#
# The server is given a temporary config with explicit free ports (`[server] coaps_bind`,
# `[bootstrap] coaps_bind`, `[bootstrap] server_uri` pointing at the former) and plain CoAP
# off (allow_nosec = false). Factory credentials are added with
# `lwm2m-server --config F bootstrap add --endpoint EP --psk-identity ID --psk-key HEX`.
# Keys are 16 bytes: tinydtls takes no longer PSK (DTLS_PSK_MAX_KEY_LEN).
#
# Each case prints PASS or FAIL; the last line is "N passed, M failed". Exits non-zero if any
# case failed. Every client call runs under `timeout`, so nothing hangs.
#
# Settings from the environment: LWM2M_SERVER, the server binary (default: built here with
# cargo); BOOTSTRAP_KEEP_WORK=DIR, copy the work directory (server log, device transcripts,
# CLI output) to DIR at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

source "$ROOT/interop/lib.sh"
source "$ROOT/interop/dtls_lib.sh"

VENV="$ROOT/interop/.venv"
if ! ensure_aiocoap_dtls "$VENV" ||
    ! { "$VENV/bin/python" -c 'import cbor2' 2>/dev/null ||
        "$VENV/bin/pip" install --quiet --disable-pip-version-check cbor2; }; then
    echo "FAIL: could not install aiocoap, DTLSSocket and cbor2 into $VENV"
    echo "0 passed, 1 failed"
    exit 1
fi
PY="$VENV/bin/python"
# The scripts import interop/lwm2m_codec.py: no __pycache__ left in the source tree.
export PYTHONDONTWRITEBYTECODE=1
DEVICE="$ROOT/interop/aiocoap_bootstrap_device.py"

if [ -n "${LWM2M_SERVER:-}" ]; then
    SERVER="$LWM2M_SERVER"
else
    cargo build -p lwm2m-server
    SERVER="${CARGO_TARGET_DIR:-$ROOT/target}/debug/lwm2m-server"
fi

# run_device NAME URI EP IDENTITY PSK_HEX [ARGS...]: runs the scripted device; its stdout in
# OUT (and $WORK/device-NAME.out), its exit status in STATUS.
run_device() {
    local name="$1"
    shift
    STATUS=0
    BOOTSTRAP_TIMEOUT=30 REGISTER_TIMEOUT=15 timeout 90 "$PY" "$DEVICE" "$@" \
        >"$WORK/device-$name.out" 2>"$WORK/device-$name.err" || STATUS=$?
    OUT="$(cat "$WORK/device-$name.out")"
}
# written FIELD: FIELD (uri, identity, identity_hex, key, key_len, ssid) of the non-bootstrap
# Security instance the last device was written.
written() {
    echo "$OUT" | grep '^security ' | grep ' bootstrap=false ' | head -n 1 |
        tr ' ' '\n' | sed -n "s/^$1=//p" || true
}
# device_errors: the device's error lines, on one line.
device_errors() {
    echo "$OUT" | grep '^error' | tr '\n' ';' || true
}
# listed_identities EP: the PSK identities `device list` shows for EP, space-separated.
# Prints "device-list-failed" when `device list` itself fails, so no check passes on it.
listed_identities() {
    if ! "$SERVER" --config "$WORK/server.toml" device list >"$WORK/device-list.out" 2>>"$WORK/cli.log"; then
        echo "device-list-failed"
        return
    fi
    awk -v ep="$1" '$1 == ep && $2 == "psk" { print $3 }' "$WORK/device-list.out" | tr '\n' ' ' | sed 's/ $//'
}
bootstrap_add() { # EP IDENTITY PSK_HEX
    "$SERVER" --config "$WORK/server.toml" bootstrap add --endpoint "$1" --psk-identity "$2" \
        --psk-key "$3" >>"$WORK/cli.log" 2>&1
}
server_alive() {
    kill -0 "$SERVER_PID" 2>/dev/null
}
# check_bootstrapped NAME EP FACTORY_ID: PASS if the last device finished the bootstrap and
# registered (2.01) with a 16-byte PSK under an identity that is not the factory one, and
# `device list` shows EP with exactly that identity.
check_bootstrapped() {
    local id listed
    id="$(written identity)"
    listed="$(listed_identities "$2")"
    if [ "$STATUS" -ne 0 ] || ! echo "$OUT" | grep -q '^register code 2.01$'; then
        fail "$1" "exit $STATUS, errors: $(device_errors)"
    elif [ "$(written key_len)" != 16 ]; then
        fail "$1" "written PSK is $(written key_len) bytes, 16 expected"
    elif [ -z "$id" ] || [ "$id" = "$3" ]; then
        fail "$1" "written PSK identity '$id' is empty or the factory one"
    elif [ "$listed" != "$id" ]; then
        fail "$1" "device list shows '$listed' for $2, the device was written '$id'"
    else
        pass "$1 (identity $id)"
    fi
}
# check_ops NAME PATTERN [absent]: PASS if one of the last device's "op ..." lines matches the
# extended regex PATTERN (with "absent": if none does, in a sequence that reached Finish).
check_ops() {
    local found=0
    echo "$OUT" | grep '^op ' | grep -qE "$2" && found=1
    if [ "${3:-}" = absent ]; then
        found=$((1 - found))
        echo "$OUT" | grep -q '^op POST /bs -> 2\.04$' || found=0
    fi
    if [ "$found" -eq 1 ]; then
        pass "$1"
    else
        fail "$1" "the server's requests were: $(echo "$OUT" | grep '^op ' | sed 's/^op //' | tr '\n' ';')"
    fi
}
# check_no_credential NAME EP FACTORY_ID: PASS if `device list` shows no credential for EP
# other than the factory one.
check_no_credential() {
    local listed
    listed="$(listed_identities "$2" | tr ' ' '\n' | grep -vxF -- "$3" || true)"
    if [ -z "$listed" ]; then pass "$1"; else fail "$1" "device list shows $2 with '$listed'"; fi
}

# ---------------------------------------------------------------------------------------------
# 0. The harness against aiocoap's own DTLS server playing the Bootstrap-Server.
name="harness: scripted device bootstraps and registers with an aiocoap bootstrap server"
port="$(free_udp_port)"
timeout 60 "$PY" "$ROOT/interop/fake_bootstrap_server.py" "$port" harness-ep harness-factory \
    "$(psk_hex harness-psk-0000)" >"$WORK/fake-server.out" 2>"$WORK/fake-server.err" &
FAKE_PID=$!
for _ in $(seq 1 100); do
    grep -qs '^listening on ' "$WORK/fake-server.out" && break
    sleep 0.1
done
run_device harness "coaps://127.0.0.1:$port" harness-ep harness-factory "$(psk_hex harness-psk-0000)"
kill "$FAKE_PID" 2>/dev/null || true
wait "$FAKE_PID" 2>/dev/null || true
if [ "$STATUS" -eq 0 ] && grep -q '^registered harness-ep ' "$WORK/fake-server.out"; then
    pass "$name"
else
    fail "$name" "device exit $STATUS ($(device_errors)); server: $(tr '\n' ';' <"$WORK/fake-server.out")"
fi

# ---------------------------------------------------------------------------------------------
SERVER_PORT="$(free_udp_port)"
BS_PORT="$(free_udp_port)"
while [ "$BS_PORT" = "$SERVER_PORT" ]; do BS_PORT="$(free_udp_port)"; done
cat >"$WORK/server.toml" <<TOML
[server]
coap_bind = []
coaps_bind = ["127.0.0.1:$SERVER_PORT"]
data_dir = "$WORK/data"

[security]
allow_nosec = false

[bootstrap]
enabled = true
coap_bind = []
coaps_bind = ["127.0.0.1:$BS_PORT"]
server_uri = "coaps://127.0.0.1:$SERVER_PORT"
lifetime = 300
binding = "U"
server_security = "psk"

[mqtt]
enabled = false

[http]
bind = "127.0.0.1:0"
TOML

RUST_LOG="${RUST_LOG:-info,lwm2m_server=debug,lwm2m_bootstrap=debug}" \
    "$SERVER" --config "$WORK/server.toml" >"$WORK/server.out" 2>"$WORK/server.log" &
SERVER_PID=$!
ready=0
for _ in $(seq 1 300); do
    if grep -qsF "listening on coaps://127.0.0.1:$SERVER_PORT" "$WORK/server.out"; then
        ready=1
        break
    fi
    if ! server_alive; then break; fi
    sleep 0.1
done
if [ "$ready" -ne 1 ]; then
    echo "FAIL: the server did not start: $(tail -n 10 "$WORK/server.log") $(cat "$WORK/server.out")"
    echo "$PASSED passed, $((FAILED + 1)) failed"
    exit 1
fi
# The bootstrap listener's own line, if the server prints one (any line naming its port).
for _ in $(seq 1 50); do
    grep -qF ":$BS_PORT" "$WORK/server.out" && break
    sleep 0.1
done
grep -qF ":$BS_PORT" "$WORK/server.out" ||
    echo "note: the server printed no line naming the bootstrap port $BS_PORT; going on"
BS="coaps://127.0.0.1:$BS_PORT"
echo "server at coaps://127.0.0.1:$SERVER_PORT, bootstrap server at $BS"

F11_ID="factory-aio-11"
F11_KEY="$(psk_hex factory-key-0011)"
F10_ID="factory-aio-10"
F10_KEY="$(psk_hex factory-key-0010)"
FDROP_ID="factory-aio-drop"
FDROP_KEY="$(psk_hex factory-key-drop)"
FREF_ID="factory-aio-ref"
FREF_KEY="$(psk_hex factory-key-0ref)"
FTLV_ID="factory-aio-tlv"
FTLV_KEY="$(psk_hex factory-key-0tlv)"

name="bootstrap add (factory PSKs)"
if bootstrap_add bs-aio-11 "$F11_ID" "$F11_KEY" &&
    bootstrap_add bs-aio-10 "$F10_ID" "$F10_KEY" &&
    bootstrap_add bs-aio-drop "$FDROP_ID" "$FDROP_KEY" &&
    bootstrap_add bs-aio-refused "$FREF_ID" "$FREF_KEY" &&
    bootstrap_add bs-aio-tlv "$FTLV_ID" "$FTLV_KEY"; then
    pass "$name"
else
    fail "$name" "$(tail -n 5 "$WORK/cli.log")"
fi

# a. LwM2M 1.1.
run_device a "$BS" bs-aio-11 "$F11_ID" "$F11_KEY" --lwm2m 1.1
check_bootstrapped "1.1 device bootstraps over DTLS and registers with the generated PSK" bs-aio-11 "$F11_ID"
check_ops "1.1 device: Bootstrap-Discover of / with Accept 40" '^op GET / accept=40 -> 2\.05$'
check_ops "1.1 device: Bootstrap-Delete of /0 and /1" '^op DELETE /0 -> 2\.02$'
check_ops "1.1 device: Security and Server instances written in SenML CBOR" '^op PUT /1/[0-9]+ cf=112 -> 2\.04$'
check_ops "1.1 device: Bootstrap-Read of the Server instance" '^op GET /1/[0-9]+ accept=(112|11542) -> 2\.05$'
check_ops "1.1 device: Bootstrap-Finish" '^op POST /bs -> 2\.04$'
A_ID="$(written identity)"
A_ID_HEX="$(written identity_hex)"
A_KEY="$(written key)"

# b. LwM2M 1.0.
run_device b "$BS" bs-aio-10 "$F10_ID" "$F10_KEY" --lwm2m 1.0
check_bootstrapped "1.0 device (TLV) bootstraps and registers" bs-aio-10 "$F10_ID"
check_ops "1.0 device: Security and Server instances written in TLV" '^op PUT /0/[0-9]+ cf=11542 -> 2\.04$'
check_ops "1.0 device: no Bootstrap-Read (LwM2M 1.0 has none)" '^op GET /[0-9]' absent
B_ID="$(written identity)"

# c. The device of (a) again.
run_device c "$BS" bs-aio-11 "$F11_ID" "$F11_KEY" --lwm2m 1.1
check_bootstrapped "bootstrap again: registers with its new PSK" bs-aio-11 "$F11_ID"
name="bootstrap again: a fresh identity and key"
if [ -z "$A_ID" ] || [ -z "$A_KEY" ]; then
    fail "$name" "case (a) wrote no credential to compare with"
elif [ "$(written identity)" = "$A_ID" ] || [ "$(written key)" = "$A_KEY" ]; then
    fail "$name" "identity '$(written identity)' (was '$A_ID'); the key is $([ "$(written key)" = "$A_KEY" ] && echo the same || echo new)"
else
    pass "$name"
fi
name="bootstrap again: the old PSK no longer registers"
# aiocoap_dtls_registration.py takes the identity as text: it must be the same bytes.
if [ -n "$A_ID" ] && [ -n "$A_KEY" ] && [ "$(psk_hex "$A_ID")" = "$A_ID_HEX" ]; then
    old="$(AIOCOAP_DTLS_TIMEOUT=10 timeout 30 "$PY" "$ROOT/interop/aiocoap_dtls_registration.py" \
        "coaps://127.0.0.1:$SERVER_PORT" bs-aio-11 "$A_ID" "$A_KEY" 2>>"$WORK/aiocoap.log")" && st=0 || st=$?
    if [ "$st" -eq 1 ] && echo "$old" | grep -q '^error'; then
        pass "$name"
    else
        fail "$name" "exit $st, got '$(echo "$old" | tr '\n' ' ')'"
    fi
else
    fail "$name" "no UTF-8 identity from case (a): '$A_ID' ($A_ID_HEX)"
fi

# d. Silent after the first Write, then again.
run_device d1 "$BS" bs-aio-drop "$FDROP_ID" "$FDROP_KEY" --lwm2m 1.1 --drop-after write
name="device silent after the first Write"
if [ "$STATUS" -eq 3 ] && echo "$OUT" | grep -qE '^op PUT /[01]/[0-9]+ cf=[0-9]+ -> 2\.04$'; then
    pass "$name"
else
    fail "$name" "exit $STATUS (3 expected after a Write), errors: $(device_errors)"
fi
check_no_credential "device silent after the first Write gets no credential" bs-aio-drop "$FDROP_ID"
run_device d2 "$BS" bs-aio-drop "$FDROP_ID" "$FDROP_KEY" --lwm2m 1.1
check_bootstrapped "the device silent mid-sequence bootstraps on its next attempt" bs-aio-drop "$FDROP_ID"

# e. Refusals.
run_device e1 "$BS" bs-aio-refused "$FREF_ID" "$(psk_hex wrong-factory-00)" --lwm2m 1.1
name="wrong factory PSK refused"
if [ "$STATUS" -eq 1 ] && echo "$OUT" | grep -q '^error bootstrap-request: no answer'; then
    pass "$name"
else
    fail "$name" "exit $STATUS, got '$(echo "$OUT" | tr '\n' ';')'"
fi
run_device e2 "$BS" bs-aio-refused "factory-nobody" "$FREF_KEY" --lwm2m 1.1
name="unknown factory identity refused"
if [ "$STATUS" -eq 1 ] && echo "$OUT" | grep -q '^error bootstrap-request: no answer'; then
    pass "$name"
else
    fail "$name" "exit $STATUS, got '$(echo "$OUT" | tr '\n' ';')'"
fi
# The factory credential of bs-aio-refused, asking for another endpoint's account.
run_device e3 "$BS" bs-aio-10 "$FREF_ID" "$FREF_KEY" --lwm2m 1.1
name="factory PSK of one endpoint asking for another's account refused"
if [ "$STATUS" -eq 1 ] && echo "$OUT" | grep -qE '^bootstrap-request code 4\.0[0-9]$'; then
    pass "$name ($(echo "$OUT" | sed -n 's/^bootstrap-request code //p'))"
else
    fail "$name" "exit $STATUS, got '$(echo "$OUT" | tr '\n' ';')'"
fi
check_no_credential "refused devices get no credential" bs-aio-refused "$FREF_ID"
name="the other endpoint keeps its own credential"
if [ -n "$B_ID" ] && [ "$(listed_identities bs-aio-10)" = "$B_ID" ]; then
    pass "$name"
else
    fail "$name" "device list shows '$(listed_identities bs-aio-10)' for bs-aio-10"
fi

# f. A 1.1 device that takes only TLV.
run_device f "$BS" bs-aio-tlv "$FTLV_ID" "$FTLV_KEY" --lwm2m 1.1 --formats tlv
check_bootstrapped "1.1 device taking only TLV bootstraps after 4.15" bs-aio-tlv "$FTLV_ID"
check_ops "1.1 device taking only TLV: the writes are retried in TLV" '^op PUT /0/[0-9]+ cf=11542 -> 2\.04$'

name="server still running"
if server_alive; then pass "$name"; else fail "$name" "$(tail -n 5 "$WORK/server.log")"; fi

if [ "$FAILED" -ne 0 ]; then
    for f in "$WORK"/device-*.out; do
        echo "--- $f"
        cat "$f"
    done
    echo "--- server log ($WORK/server.log)"
    tail -n 60 "$WORK/server.log"
    echo "--- CLI ($WORK/cli.log)"
    tail -n 20 "$WORK/cli.log" 2>/dev/null || true
fi
[ -n "${BOOTSTRAP_KEEP_WORK:-}" ] && cp -r "$WORK" "$BOOTSTRAP_KEEP_WORK"
summary
