#!/usr/bin/env bash
# LwM2M over DTLS interop: libcoap's coap-client in its OpenSSL and GnuTLS builds (Debian
# libcoap3-bin) and aiocoap with tinydtls (PyPI aiocoap + DTLSSocket, installed into
# interop/.venv) register with lwm2m-server over coaps on 127.0.0.1, in the PSK, certificate
# and raw-public-key modes (OMA LwM2M TS 1.2 Transport §5.2), and the server's refusals are
# checked: a wrong key, an unknown identity, a device registering under another endpoint name
# (4.03, TS Core §6.2.1: the endpoint is bound to the credential), a revoked device, and a
# provisioned endpoint registering over plain CoAP (NoSec, 4.03). `lwm2m-server audit` must list
# those refusals, and the PSK sessions must have negotiated TLS_PSK_WITH_AES_128_CCM_8 (the
# server's first choice; checked in the server's debug log).
#
# Then the server is stopped with SIGTERM and started again on the same data directory with
# `[dtls] cipher_suites = ["TLS_PSK_WITH_AES_128_CBC_SHA256"]`: both libcoap builds register
# again with the stored (encrypted) PSKs over CBC_SHA256, so both PSK suites they offer are
# proven and the credentials are shown to survive a restart; aiocoap/tinydtls, which has only
# the CCM suites, must then be refused, and so must the revoked device.
#
# Credentials are generated with the openssl CLI into the suite's temporary directory
# (interop/dtls_lib.sh); nothing is committed. Each case prints PASS or FAIL; the last line is
# "N passed, M failed". Exits non-zero if any case failed. Every client call runs under
# `timeout`, so nothing hangs.
#
# Settings from the environment: LWM2M_SERVER, the server binary (default: built here with
# cargo); DTLS_KEEP_WORK=DIR, copy the work directory (server logs, client exchanges, audit
# output, data directory) to DIR at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

source "$ROOT/interop/lib.sh"
source "$ROOT/interop/dtls_lib.sh"

# ---------------------------------------------------------------------------------------------
# The server's side, as config/server.toml and server/src/main.rs document it:
# - `[server] coap_bind` / `coaps_bind` are the plain CoAP and the DTLS listeners (port 0 here:
#   the OS picks free ports); `[security] certificate` / `private_key` the server's certificate
#   chain and key; `[dtls] cipher_suites` the suites it accepts.
# - Once bound, the server prints one line per socket on stdout: "listening on coap://ADDR",
#   then "listening on coaps://ADDR". That is how the suite learns the ports.
# - `lwm2m-server --config FILE device ...` and `... audit` reach the running server through
#   `{data_dir}/admin.sock`.
# - At debug level lwm2m_server::runtime logs "DTLS session established" with the endpoint and
#   the negotiated `suite=...`: the server runs with SERVER_RUST_LOG so the suite can check it.
PLAIN_READY_PREFIX="listening on coap://"
DTLS_READY_PREFIX="listening on coaps://"
SERVER_RUST_LOG="info,dtls=debug,lwm2m_server=debug"

# write_config FILE [EXTRA_TOML]: the server's configuration; EXTRA_TOML is appended as is.
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

# Bootstrap is tried in lwm2m_bootstrap.sh; here its fixed ports would only get in the way.
[bootstrap]
enabled = false

[http]
bind = "127.0.0.1:0"
${2:-}
TOML
}
# device_cli ARGS...: `lwm2m-server --config FILE device ARGS...` against the running server.
device_cli() {
    "$SERVER" --config "$WORK/server.toml" device "$@" >>"$WORK/device_cli.log" 2>&1
}
# launch_server TAG: starts `$SERVER --config $WORK/server.toml` in the background, stdout in
# $WORK/server-TAG.out and its log in SERVER_LOG=$WORK/server-TAG.log, and waits (30 s at most)
# for both listening lines. Sets SERVER_PID (which lib.sh's cleanup kills), BASE
# (coaps://ADDR) and PLAIN (ADDR of the plain CoAP socket). On failure returns non-zero with
# the reason in LAUNCH_ERROR.
launch_server() {
    local out="$WORK/server-$1.out" coaps=""
    SERVER_LOG="$WORK/server-$1.log"
    BASE=""
    PLAIN=""
    LAUNCH_ERROR=""
    RUST_LOG="$SERVER_RUST_LOG" "$SERVER" --config "$WORK/server.toml" >"$out" 2>"$SERVER_LOG" &
    SERVER_PID=$!
    for _ in $(seq 1 300); do
        coaps="$(sed -n "s|^$DTLS_READY_PREFIX||p" "$out" | head -n 1)"
        PLAIN="$(sed -n "s|^$PLAIN_READY_PREFIX||p" "$out" | head -n 1)"
        [ -n "$coaps" ] && [ -n "$PLAIN" ] && break
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            LAUNCH_ERROR="the server exited at start: $(tail -n 10 "$SERVER_LOG")"
            return 1
        fi
        sleep 0.1
    done
    if [ -z "$coaps" ] || [ -z "$PLAIN" ]; then
        LAUNCH_ERROR="no '$PLAIN_READY_PREFIX' and '$DTLS_READY_PREFIX' lines within 30 s: $(cat "$out")"
        return 1
    fi
    BASE="coaps://$coaps"
}
# stop_server: SIGTERM, then waits up to 20 s for the server to exit (SIGKILL after that).
# Sets STOP_STATUS to its exit status and clears SERVER_PID.
stop_server() {
    STOP_STATUS=0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 200); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$SERVER_PID" 2>/dev/null && kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null || STOP_STATUS=$?
    SERVER_PID=""
}
# session_suites ENDPOINT: the distinct suites of the "DTLS session established" lines that the
# current server logged for ENDPOINT, space-separated.
session_suites() {
    grep 'DTLS session established' "$SERVER_LOG" | grep -E "endpoint=\"?$1\"?( |$)" |
        sed -n 's/.*suite="\{0,1\}\([A-Z0-9_]*\).*/\1/p' | sort -u | tr '\n' ' ' | sed 's/ $//' || true
}
# check_suite NAME ENDPOINT SUITE: PASS if the server logged sessions for ENDPOINT and all of
# them negotiated SUITE.
check_suite() {
    local got
    got="$(session_suites "$2")"
    if [ "$got" = "$3" ]; then
        pass "$1"
    else
        fail "$1" "the sessions of $2 used '$got' (see the 'DTLS session established' lines)"
    fi
}
# ---------------------------------------------------------------------------------------------

ensure_libcoap
VENV="$ROOT/interop/.venv"
AIOCOAP_OK=1
ensure_aiocoap_dtls "$VENV" || AIOCOAP_OK=0

if [ -n "${LWM2M_SERVER:-}" ]; then
    SERVER="$LWM2M_SERVER"
else
    cargo build -p lwm2m-server
    SERVER="${CARGO_TARGET_DIR:-$ROOT/target}/debug/lwm2m-server"
fi

CREDS="$WORK/creds"
if ! gen_dtls_credentials "$CREDS" dtls-openssl-cert; then
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
echo "server at $BASE and coap://$PLAIN"

LINKS='</>;rt="oma.lwm2m";ct=11542,</1/0>,</3/0>'
rd_uri() { # ENDPOINT
    echo "$BASE/rd?ep=$1&lt=300&lwm2m=1.1&b=U"
}
# The PSKs are text because coap-client's -k passes its argument's bytes as the key (libcoap
# 4.3.1 has no hex form); the server is given their hex encoding. 16 bytes each: tinydtls
# takes keys of at most 16 bytes (DTLS_PSK_MAX_KEY_LEN) and identities of at most 32.
OSSL_ID="id-openssl-psk"
OSSL_KEY="openssl-psk-0001"
GNUTLS_ID="id-gnutls-psk"
GNUTLS_KEY="gnutls-psk-00002"
AIO_ID="id-aiocoap-psk"
AIO_KEY="aiocoap-psk-0003"
REVOKED_ID="id-revoked-psk"
REVOKED_KEY="revoked-psk-0004"

# check_created NAME REPLY: PASS if REPLY is a 2.01 with Location-Path rd/{16 hex digits}.
check_created() {
    local loc
    loc="$(echo "$2" | sed -n 's/.*Location-Path:rd, Location-Path:\([0-9a-f]*\).*/\1/p')"
    if echo "$2" | grep -q 'c:2.01' && [ "${#loc}" -eq 16 ]; then
        pass "$1 (location /rd/$loc)"
    else
        fail "$1" "got '$2'"
    fi
}
# check_refused NAME REPLY: PASS if there was no answer at all (the handshake did not complete).
check_refused() {
    if [ -z "$2" ]; then pass "$1"; else fail "$1" "the handshake completed: got '$2'"; fi
}
server_alive() {
    kill -0 "$SERVER_PID" 2>/dev/null
}

# Provisioning (through the running server).
name="device add (PSK, certificate, raw public key)"
if device_cli add --endpoint dtls-openssl-psk --psk-identity "$OSSL_ID" --psk-key "$(psk_hex "$OSSL_KEY")" &&
    device_cli add --endpoint dtls-gnutls-psk --psk-identity "$GNUTLS_ID" --psk-key "$(psk_hex "$GNUTLS_KEY")" &&
    device_cli add --endpoint dtls-aiocoap-psk --psk-identity "$AIO_ID" --psk-key "$(psk_hex "$AIO_KEY")" &&
    device_cli add --endpoint dtls-revoked --psk-identity "$REVOKED_ID" --psk-key "$(psk_hex "$REVOKED_KEY")" &&
    device_cli add --endpoint dtls-openssl-cert --cert "$CREDS/device.pem" &&
    device_cli add --endpoint dtls-gnutls-rpk --rpk "$CREDS/rpk.pub.pem"; then
    pass "$name"
else
    fail "$name" "$(tail -n 5 "$WORK/device_cli.log")"
fi

# 1. OpenSSL build, PSK: 2.01 and a Location-Path.
reply="$(coaps_client openssl -u "$OSSL_ID" -k "$OSSL_KEY" -m post -t 40 -e "$LINKS" "$(rd_uri dtls-openssl-psk)")"
check_created "libcoap/OpenSSL PSK Register" "$reply"

# 2. GnuTLS build, PSK.
reply="$(coaps_client gnutls -u "$GNUTLS_ID" -k "$GNUTLS_KEY" -m post -t 40 -e "$LINKS" "$(rd_uri dtls-gnutls-psk)")"
check_created "libcoap/GnuTLS PSK Register" "$reply"

# 3. OpenSSL build, certificate (CN = endpoint), verifying the server's chain against the CA.
reply="$(coaps_client openssl -c "$CREDS/device.pem" -j "$CREDS/device.key" -C "$CREDS/ca.pem" \
    -m post -t 40 -e "$LINKS" "$(rd_uri dtls-openssl-cert)")"
check_created "libcoap/OpenSSL certificate Register" "$reply"

# 4. GnuTLS build, raw public key (RFC 7250; the OpenSSL build has no RPK).
reply="$(coaps_client gnutls -M "$CREDS/rpk.key" -m post -t 40 -e "$LINKS" "$(rd_uri dtls-gnutls-rpk)")"
check_created "libcoap/GnuTLS raw public key Register" "$reply"

# 5. aiocoap with tinydtls, PSK (TLS_PSK_WITH_AES_128_CCM_8; tinydtls requires the server to
# answer extended_master_secret and renegotiation_info).
name="aiocoap/tinydtls PSK Register"
if [ "$AIOCOAP_OK" -eq 1 ]; then
    out="$(AIOCOAP_DTLS_TIMEOUT=15 timeout 30 "$VENV/bin/python" "$ROOT/interop/aiocoap_dtls_registration.py" \
        "$BASE" dtls-aiocoap-psk "$AIO_ID" "$(psk_hex "$AIO_KEY")" 2>>"$WORK/aiocoap.log" || true)"
    loc="$(echo "$out" | sed -n 's|^location-path rd/||p')"
    if echo "$out" | grep -q '^code 2.01' && [ "${#loc}" -eq 16 ]; then
        pass "$name (location /rd/$loc)"
    else
        fail "$name" "got '$(echo "$out" | tr '\n' ' ')'"
    fi
else
    fail "$name" "could not install aiocoap and DTLSSocket into $VENV"
fi

# 6. Wrong key for a known identity: no session; the server stays up and the right key still
# registers afterwards.
name="wrong PSK refused, server unharmed"
bad="$(coaps_client openssl -u "$OSSL_ID" -k "wrong-psk-000001" -m post -t 40 -e "$LINKS" "$(rd_uri dtls-openssl-psk)")"
good="$(coaps_client openssl -u "$OSSL_ID" -k "$OSSL_KEY" -m post -t 40 -e "$LINKS" "$(rd_uri dtls-openssl-psk)")"
if [ -n "$bad" ]; then
    fail "$name" "the handshake with the wrong key completed: got '$bad'"
elif ! server_alive; then
    fail "$name" "the server exited: $(tail -n 5 "$SERVER_LOG")"
elif ! echo "$good" | grep -q 'c:2.01'; then
    fail "$name" "the right key no longer registers: got '$good'"
else
    pass "$name"
fi

# 7. An identity the server has never heard of.
reply="$(coaps_client gnutls -u "id-nobody-knows" -k "some-key-0000000" -m post -t 40 -e "$LINKS" "$(rd_uri dtls-nobody)")"
check_refused "unknown PSK identity refused" "$reply"

# 8. Endpoint mismatch: the OpenSSL device's credential, registering as another device that
# exists, then as a name nobody holds: 4.03 Forbidden over an established session.
name="endpoint mismatch: another device's endpoint gets 4.03"
reply="$(coaps_client openssl -u "$OSSL_ID" -k "$OSSL_KEY" -m post -t 40 -e "$LINKS" "$(rd_uri dtls-gnutls-psk)")"
if echo "$reply" | grep -q 'c:4.03'; then pass "$name"; else fail "$name" "got '$reply'"; fi
name="endpoint mismatch: an unprovisioned endpoint gets 4.03"
reply="$(coaps_client openssl -u "$OSSL_ID" -k "$OSSL_KEY" -m post -t 40 -e "$LINKS" "$(rd_uri dtls-unprovisioned)")"
if echo "$reply" | grep -q 'c:4.03'; then pass "$name"; else fail "$name" "got '$reply'"; fi
name="endpoint mismatch: certificate device under another name gets 4.03"
reply="$(coaps_client openssl -c "$CREDS/device.pem" -j "$CREDS/device.key" -C "$CREDS/ca.pem" \
    -m post -t 40 -e "$LINKS" "$(rd_uri dtls-openssl-psk)")"
if echo "$reply" | grep -q 'c:4.03'; then pass "$name"; else fail "$name" "got '$reply'"; fi

# 9. Revocation: the device registers, is revoked, and its next handshake is refused.
name="revoked device refused"
before="$(coaps_client openssl -u "$REVOKED_ID" -k "$REVOKED_KEY" -m post -t 40 -e "$LINKS" "$(rd_uri dtls-revoked)")"
if ! echo "$before" | grep -q 'c:2.01'; then
    fail "$name" "it did not register before revocation: got '$before'"
elif ! device_cli revoke --endpoint dtls-revoked; then
    fail "$name" "device revoke failed: $(tail -n 5 "$WORK/device_cli.log")"
else
    after="$(coaps_client openssl -u "$REVOKED_ID" -k "$REVOKED_KEY" -m post -t 40 -e "$LINKS" "$(rd_uri dtls-revoked)")"
    if [ -z "$after" ]; then pass "$name"; else fail "$name" "after revocation got '$after'"; fi
fi

name="server still running"
if server_alive; then pass "$name"; else fail "$name" "$(tail -n 5 "$SERVER_LOG")"; fi

# 10. NoSec: over plain CoAP an endpoint that has a credential is refused with 4.03 (it must
# come over DTLS), while an endpoint without one still registers (allow_nosec is on by default).
name="NoSec Register of a provisioned endpoint gets 4.03"
reply="$(coaps_client openssl -m post -e '</1/0>' "coap://$PLAIN/rd?ep=dtls-openssl-psk&lt=300&lwm2m=1.1")"
if echo "$reply" | grep -q 'c:4.03'; then pass "$name"; else fail "$name" "got '$reply'"; fi
reply="$(coaps_client openssl -m post -e '</1/0>' "coap://$PLAIN/rd?ep=nosec-unprovisioned&lt=300&lwm2m=1.1")"
check_created "NoSec Register of an endpoint without a credential" "$reply"

# 11. The audit log, read through the running server's admin socket, lists this run's refusals.
# Its lines are "TIME  KIND  ENDPOINT  PEER  DETAIL"; a refused handshake is "auth-failed" with
# the PSK identity in the endpoint column.
"$SERVER" --config "$WORK/server.toml" audit --limit 100 >"$WORK/audit.out" 2>>"$WORK/device_cli.log" || true
# audit_has KIND WORD: the audit output has a KIND line that mentions WORD.
audit_has() {
    awk -v k="$1" '$2 == k' "$WORK/audit.out" | grep -qF -- "$2"
}
name="audit log lists the refusals"
missing=""
audit_has auth-failed "id-nobody-knows" || missing+=" auth-failed(unknown identity)"
audit_has auth-failed "$OSSL_ID" || missing+=" auth-failed(wrong key)"
audit_has endpoint-mismatch "dtls-gnutls-psk" || missing+=" endpoint-mismatch(dtls-gnutls-psk)"
audit_has endpoint-mismatch "dtls-unprovisioned" || missing+=" endpoint-mismatch(dtls-unprovisioned)"
audit_has endpoint-mismatch "dtls-openssl-cert" || missing+=" endpoint-mismatch(certificate)"
audit_has credential-revoked "dtls-revoked" || missing+=" credential-revoked"
audit_has auth-failed "$REVOKED_ID" || missing+=" auth-failed(revoked identity)"
audit_has no-sec-refused "dtls-openssl-psk" || missing+=" no-sec-refused"
if [ -z "$missing" ]; then
    pass "$name ($(awk '{print $2}' "$WORK/audit.out" | sort | uniq -c | awk '{printf "%s%s x%s", (NR > 1 ? ", " : ""), $2, $1}'))"
else
    fail "$name" "missing:$missing; got: $(cat "$WORK/audit.out")"
fi

# 12. The PSK suite of phase 1: both libcoap builds offer TLS_PSK_WITH_AES_128_CCM_8 and
# TLS_PSK_WITH_AES_128_CBC_SHA256, and the server prefers CCM_8 (the default cipher_suites).
check_suite "libcoap/OpenSSL PSK negotiated TLS_PSK_WITH_AES_128_CCM_8" dtls-openssl-psk TLS_PSK_WITH_AES_128_CCM_8
check_suite "libcoap/GnuTLS PSK negotiated TLS_PSK_WITH_AES_128_CCM_8" dtls-gnutls-psk TLS_PSK_WITH_AES_128_CCM_8

# Phase 2: the same data directory, only TLS_PSK_WITH_AES_128_CBC_SHA256 accepted. The PSKs
# come back from the store (encrypted at rest with {data_dir}/secrets.key), so this also shows
# that credentials survive a restart.
name="server stops cleanly on SIGTERM"
stop_server
if [ "$STOP_STATUS" -eq 0 ]; then pass "$name"; else fail "$name" "exit status $STOP_STATUS: $(tail -n 5 "$SERVER_LOG")"; fi
write_config "$WORK/server.toml" '[dtls]
cipher_suites = ["TLS_PSK_WITH_AES_128_CBC_SHA256"]'
name="restart on the same data directory with cipher_suites = CBC_SHA256 only"
if launch_server 2; then
    pass "$name"
    echo "server at $BASE and coap://$PLAIN"
    reply="$(coaps_client openssl -u "$OSSL_ID" -k "$OSSL_KEY" -m post -t 40 -e "$LINKS" "$(rd_uri dtls-openssl-psk)")"
    check_created "after restart: libcoap/OpenSSL PSK Register" "$reply"
    reply="$(coaps_client gnutls -u "$GNUTLS_ID" -k "$GNUTLS_KEY" -m post -t 40 -e "$LINKS" "$(rd_uri dtls-gnutls-psk)")"
    check_created "after restart: libcoap/GnuTLS PSK Register" "$reply"
    check_suite "libcoap/OpenSSL PSK negotiated TLS_PSK_WITH_AES_128_CBC_SHA256" dtls-openssl-psk TLS_PSK_WITH_AES_128_CBC_SHA256
    check_suite "libcoap/GnuTLS PSK negotiated TLS_PSK_WITH_AES_128_CBC_SHA256" dtls-gnutls-psk TLS_PSK_WITH_AES_128_CBC_SHA256
    # tinydtls offers only the CCM suites: with CBC_SHA256 alone it must find no common suite.
    name="after restart: aiocoap/tinydtls (CCM_8 only) finds no common suite"
    if [ "$AIOCOAP_OK" -eq 1 ]; then
        out="$(AIOCOAP_DTLS_TIMEOUT=15 timeout 30 "$VENV/bin/python" "$ROOT/interop/aiocoap_dtls_registration.py" \
            "$BASE" dtls-aiocoap-psk "$AIO_ID" "$(psk_hex "$AIO_KEY")" 2>>"$WORK/aiocoap.log" || true)"
        if ! echo "$out" | grep -q '^error'; then
            fail "$name" "got '$(echo "$out" | tr '\n' ' ')'"
        elif ! grep -q 'no cipher suite in common' "$SERVER_LOG"; then
            fail "$name" "refused, but the server logged no 'no cipher suite in common'"
        else
            pass "$name"
        fi
    else
        fail "$name" "could not install aiocoap and DTLSSocket into $VENV"
    fi
    name="after restart: the revoked device is still refused"
    reply="$(coaps_client openssl -u "$REVOKED_ID" -k "$REVOKED_KEY" -m post -t 40 -e "$LINKS" "$(rd_uri dtls-revoked)")"
    check_refused "$name" "$reply"
    name="server still running after phase 2"
    if server_alive; then pass "$name"; else fail "$name" "$(tail -n 5 "$SERVER_LOG")"; fi
else
    fail "$name" "$LAUNCH_ERROR"
fi

if [ "$FAILED" -ne 0 ]; then
    echo "--- last client exchanges ($WORK/coaps_client.log)"
    tail -n 40 "$WORK/coaps_client.log"
    echo "--- server log ($SERVER_LOG)"
    tail -n 40 "$SERVER_LOG"
fi
[ -n "${DTLS_KEEP_WORK:-}" ] && cp -r "$WORK" "$DTLS_KEEP_WORK"
summary
