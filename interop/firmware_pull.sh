#!/usr/bin/env bash
# Firmware pull interop (OMA LwM2M TS 1.2 Core Appendix E.6, RFC 7959 §2.4 Block2): libcoap's
# coap-client (OpenSSL build, Debian libcoap3-bin) downloads a package lwm2m-server hosts, as a
# device pulls the Package URI written to /5/0/1, block by block at 512 bytes (`-b 512`), and
# the bytes it reassembles must be the package's (cmp).
#
# The package (300 KB of random bytes) is stored with `lwm2m-server fw add` through the running
# server's admin socket; adding it again must print the same id. Then:
# - over plain CoAP (NoSec: anyone may download) the download matches;
# - an unknown package id is 4.04;
# - over CoAPs with a device's PSK (`device add`), the download is 4.03 until a campaign targets
#   the device with the package (`lwm2m-server fw update --package ID --endpoint EP`, the
#   campaigns' command), then it matches;
# - after a restart the package is still served (loaded from the data directory);
# - `fw remove` makes it 4.04.
#
# Each case prints PASS or FAIL; the last line is "N passed, M failed". Exits non-zero if any
# case failed. Every client call runs under `timeout`, so nothing hangs.
#
# Settings from the environment: LWM2M_SERVER, the server binary (default: built here with
# cargo); FW_KEEP_WORK=DIR, copy the work directory (server logs, client logs) to DIR at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

source "$ROOT/interop/lib.sh"
source "$ROOT/interop/dtls_lib.sh"

PLAIN_READY_PREFIX="listening on coap://"
DTLS_READY_PREFIX="listening on coaps://"

# write_config FILE: plain CoAP and CoAPs on free ports, packages served under /fw.
write_config() {
    cat >"$1" <<TOML
[server]
coap_bind = ["127.0.0.1:0"]
coaps_bind = ["127.0.0.1:0"]
data_dir = "$WORK/data"

[security]
certificate = "$CREDS/server-chain.pem"
private_key = "$CREDS/server.key"

[mqtt]
enabled = false

[bootstrap]
enabled = false

[http]
bind = "127.0.0.1:0"

[firmware]
path = "fw"
TOML
}
# cli ARGS...: `lwm2m-server --config FILE ARGS...`, its output on stdout, also logged.
cli() {
    "$SERVER" --config "$WORK/server.toml" "$@" 2>>"$WORK/cli.log" | tee -a "$WORK/cli.log"
}
# launch_server TAG: starts the server, waits (30 s at most) for both listening lines; sets
# SERVER_PID, PLAIN (ADDR) and SECURE (ADDR). Returns non-zero with LAUNCH_ERROR on failure.
launch_server() {
    local out="$WORK/server-$1.out"
    SERVER_LOG="$WORK/server-$1.log"
    PLAIN=""
    SECURE=""
    LAUNCH_ERROR=""
    RUST_LOG=info "$SERVER" --config "$WORK/server.toml" >"$out" 2>"$SERVER_LOG" &
    SERVER_PID=$!
    for _ in $(seq 1 300); do
        SECURE="$(sed -n "s|^$DTLS_READY_PREFIX||p" "$out" | head -n 1)"
        PLAIN="$(sed -n "s|^$PLAIN_READY_PREFIX||p" "$out" | head -n 1)"
        [ -n "$SECURE" ] && [ -n "$PLAIN" ] && return 0
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            LAUNCH_ERROR="the server exited at start: $(tail -n 10 "$SERVER_LOG")"
            return 1
        fi
        sleep 0.1
    done
    LAUNCH_ERROR="no listening lines within 30 s: $(cat "$out")"
    return 1
}
stop_server() {
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 200); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$SERVER_PID" 2>/dev/null && kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}
# download OUT URI [coap-client options...]: GET URI with Block2 at 512 bytes into OUT; prints
# the response code of the last response seen (e.g. 2.05, 4.03), empty if none. The client's
# log goes to $WORK/client.log.
download() {
    local out="$1" uri="$2" log
    shift 2
    rm -f "$out"
    log="$(timeout 120 coap-client-openssl -v 6 -B 60 -b 512 -m get -o "$out" "$@" "$uri" 2>&1 || true)"
    {
        echo "=== coap-client-openssl $* $uri"
        echo "$log" | grep -v 'data:' | tail -n 40
    } >>"$WORK/client.log"
    echo "$log" | sed -n 's/.* c:\([245]\.[0-9][0-9]\) .*/\1/p' | tail -n 1
}
# check_download NAME CODE OUT: PASS if CODE is 2.05 and OUT is the package byte for byte.
check_download() {
    if [ "$2" = "2.05" ] && [ -f "$3" ] && cmp -s "$PKG" "$3"; then
        pass "$1 ($(wc -c <"$3") bytes, identical)"
    else
        fail "$1" "code '$2', $(wc -c <"$3" 2>/dev/null || echo no) bytes received (see client.log)"
    fi
}
check_code() { # NAME WANT GOT
    if [ "$3" = "$2" ]; then pass "$1"; else fail "$1" "expected $2, got '$3'"; fi
}
finish() {
    if [ -n "${FW_KEEP_WORK:-}" ]; then
        mkdir -p "$FW_KEEP_WORK" && cp -r "$WORK"/. "$FW_KEEP_WORK"/
    fi
    summary
}

ensure_libcoap
if [ -n "${LWM2M_SERVER:-}" ]; then
    SERVER="$LWM2M_SERVER"
else
    cargo build -p lwm2m-server
    SERVER="${CARGO_TARGET_DIR:-$ROOT/target}/debug/lwm2m-server"
fi

CREDS="$WORK/creds"
if ! gen_dtls_credentials "$CREDS" fw-device >"$WORK/openssl.log" 2>&1; then
    echo "FAIL: could not generate the test credentials with openssl"
    echo "0 passed, 1 failed"
    exit 1
fi
write_config "$WORK/server.toml"
if ! launch_server 1; then
    echo "FAIL: $LAUNCH_ERROR"
    echo "0 passed, 1 failed"
    exit 1
fi
echo "server at coap://$PLAIN and coaps://$SECURE"

PKG="$WORK/package.bin"
head -c 307200 /dev/urandom >"$PKG"

# 1. fw add: "package ID", the same id again for the same bytes.
name="fw add, and again (idempotent)"
first="$(cli fw add "$PKG" --version 1.0.0 --name interop || true)"
ID="$(echo "$first" | sed -n 's/^package \([0-9a-f]\{16\}\)$/\1/p')"
second="$(cli fw add "$PKG" --version 9.9.9 || true)"
if [ -n "$ID" ] && echo "$second" | grep -q "^package $ID$" && echo "$second" | grep -q 'already stored'; then
    pass "$name (package $ID)"
else
    fail "$name" "first '$first', second '$second'"
fi
name="fw list"
listing="$(cli fw list || true)"
if echo "$listing" | grep -qE "^$ID +1\.0\.0 +307200 .*interop$"; then
    pass "$name"
else
    fail "$name" "got '$listing'"
fi

# 2. Plain CoAP: anyone may download.
code="$(download "$WORK/coap.bin" "coap://$PLAIN/fw/$ID")"
check_download "CoAP download, Block2 512" "$code" "$WORK/coap.bin"

# 3. An unknown package.
code="$(download "$WORK/unknown.bin" "coap://$PLAIN/fw/0000000000000000")"
check_code "unknown package is 4.04" "4.04" "$code"

# 4. CoAPs with a device's PSK: refused until a campaign targets the device with the package.
EP="fw-device"
PSK_ID="id-fw-device"
PSK_KEY="fw-device-psk-01"
if cli device add --endpoint "$EP" --psk-identity "$PSK_ID" --psk-key "$(psk_hex "$PSK_KEY")" >/dev/null; then
    pass "device add"
else
    fail "device add" "$(tail -n 3 "$WORK/cli.log")"
fi
code="$(download "$WORK/untargeted.bin" "coaps://$SECURE/fw/$ID" -u "$PSK_ID" -k "$PSK_KEY")"
check_code "CoAPs download by a device no campaign targets is 4.03" "4.03" "$code"
# `fw update` is the campaigns' command: a campaign targets a registered device with the
# package once its download phase starts (it writes the Package URI, which this scripted
# client does not answer: only the download, on a second DTLS session, is checked).
name="CoAPs download by a targeted device, Block2 512"
timeout 60 coap-client-openssl -B 20 -m post -u "$PSK_ID" -k "$PSK_KEY" -e '</5/0>,</3/0>' \
    "coaps://$SECURE/rd?ep=$EP&lt=300&lwm2m=1.1&b=U" >>"$WORK/client.log" 2>&1 || true
if cli fw update --package "$ID" --endpoint "$EP" >/dev/null; then
    code="$(download "$WORK/coaps.bin" "coaps://$SECURE/fw/$ID" -u "$PSK_ID" -k "$PSK_KEY")"
    check_download "$name" "$code" "$WORK/coaps.bin"
else
    fail "$name" "lwm2m-server fw update failed: $(tail -n 2 "$WORK/cli.log")"
fi

# 5. A restart: the package is loaded again from the data directory.
stop_server
name="served after a restart"
if launch_server 2; then
    code="$(download "$WORK/restart.bin" "coap://$PLAIN/fw/$ID")"
    check_download "$name" "$code" "$WORK/restart.bin"
else
    fail "$name" "$LAUNCH_ERROR"
    finish
    exit 1
fi

# 6. fw remove (no campaign runs after the restart unless the campaigns keep it: then it
# must be refused, and that is checked instead).
removed="$(cli fw remove "$ID" || true)"
if echo "$removed" | grep -q "^removed package $ID"; then
    code="$(download "$WORK/removed.bin" "coap://$PLAIN/fw/$ID")"
    check_code "fw remove, then 4.04" "4.04" "$code"
elif grep -q 'used by a campaign' "$WORK/cli.log"; then
    pass "fw remove refused while a campaign uses the package"
else
    fail "fw remove" "got '$removed': $(tail -n 2 "$WORK/cli.log")"
fi

stop_server
finish
