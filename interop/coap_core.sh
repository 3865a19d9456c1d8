#!/usr/bin/env bash
# CoAP core interop with libcoap: its coap-client (Debian libcoap3-bin) against our example server
# lwm2m/examples/coap_test_server.rs, over CoAP/UDP on 127.0.0.1.
#
# Each case prints PASS or FAIL; the last line is "N passed, M failed". Exits non-zero if
# any case failed. Every client call runs under `timeout 30`, so nothing hangs.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

source "$ROOT/interop/lib.sh"
ensure_libcoap

cargo build -p lwm2m --example coap_test_server
SERVER="${CARGO_TARGET_DIR:-$ROOT/target}/debug/examples/coap_test_server"

# Port 0: the server picks a free port and prints it in its "listening on" line.
start_server "$SERVER" --bind 127.0.0.1:0 --notify-interval-ms 200
BASE="coap://$ADDR"
echo "server at $BASE"

client() {
    timeout 30 coap-client-openssl "$@" 2>>"$WORK/client.log"
}

# 1. Piggybacked 2.05.
name="GET /hello"
if out="$(client -m get "$BASE/hello")"; then
    if [ "$out" = "Hello from lwm2m-rs" ]; then pass "$name"; else fail "$name" "got '$out'"; fi
else
    fail "$name" "coap-client exited with $?"
fi

# 2. Confirmable POST echoed back.
name="CON POST /echo"
if out="$(client -m post -e "ping-payload" "$BASE/echo")"; then
    if [ "$out" = "ping-payload" ]; then pass "$name"; else fail "$name" "got '$out'"; fi
else
    fail "$name" "coap-client exited with $?"
fi

# 3. Block2 download in 64-byte blocks (1600 of them), byte for byte.
name="Block2 GET /large (-b 64)"
"$SERVER" --print-large >"$WORK/large.expected"
if client -b 64 -m get -o "$WORK/large.got" "$BASE/large"; then
    if cmp -s "$WORK/large.expected" "$WORK/large.got"; then
        pass "$name"
    else
        fail "$name" "body differs ($(wc -c <"$WORK/large.got") bytes, expected 102400)"
    fi
else
    fail "$name" "coap-client exited with $?"
fi

# 4. Observe for 4 s: at least 3 distinct, increasing counter values.
name="Observe /obs (-s 4)"
if client -s 4 -w -m get -o "$WORK/obs.got" "$BASE/obs"; then
    counts="$(grep -o 'count=[0-9]*' "$WORK/obs.got" | cut -d= -f2 || true)"
    distinct="$(printf '%s\n' "$counts" | sed '/^$/d' | sort -un | wc -l)"
    if [ "$distinct" -ge 3 ] && printf '%s\n' "$counts" | awk 'NR > 1 && $1 <= prev { bad = 1 } { prev = $1 } END { exit bad }'; then
        pass "$name ($distinct values)"
    else
        fail "$name" "values: $(echo $counts)"
    fi
else
    fail "$name" "coap-client exited with $?"
fi

# 5. Resource discovery (RFC 6690).
name="GET /.well-known/core"
if out="$(client -m get "$BASE/.well-known/core")"; then
    case "$out" in
    *"</hello>"*) pass "$name" ;;
    *) fail "$name" "got '$out'" ;;
    esac
else
    fail "$name" "coap-client exited with $?"
fi

# 6. Block1 upload of 5000 bytes, echoed back with Block2.
name="Block1 PUT /echo (-b 256, 5000 bytes)"
head -c 5000 "$WORK/large.expected" >"$WORK/upload"
if client -b 256 -m put -f "$WORK/upload" -o "$WORK/upload.got" "$BASE/echo"; then
    if cmp -s "$WORK/upload" "$WORK/upload.got"; then
        pass "$name"
    else
        fail "$name" "echo differs ($(wc -c <"$WORK/upload.got") bytes)"
    fi
else
    fail "$name" "coap-client exited with $?"
fi

# 7. Non-confirmable request.
name="NON GET /hello"
if out="$(client -N -m get "$BASE/hello")"; then
    if [ "$out" = "Hello from lwm2m-rs" ]; then pass "$name"; else fail "$name" "got '$out'"; fi
else
    fail "$name" "coap-client exited with $?"
fi

if [ "$FAILED" -gt 0 ]; then
    echo "--- coap-client stderr ---"
    cat "$WORK/client.log" || true
    echo "--- server log ---"
    tail -n 50 "$WORK/server.log" || true
fi
summary
