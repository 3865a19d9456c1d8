# Shared by the interop suites (sourced, not run): installing libcoap, a work directory, one
# server process started and waited for, mosquitto, and PASS/FAIL bookkeeping. Each suite ends with
# `summary`, which prints "N passed, M failed" and sets the exit status.

# libcoap's command-line tools (Debian libcoap3-bin), installed if missing.
ensure_libcoap() {
    if ! command -v coap-client-openssl >/dev/null 2>&1; then
        echo "coap-client-openssl missing: installing libcoap3-bin"
        apt-get update
        apt-get install -y libcoap3-bin
    fi
}

# mosquitto and its clients (Debian mosquitto, mosquitto-clients), installed if missing; sets
# MOSQUITTO to the broker, which lives in /usr/sbin, not on every user's PATH.
ensure_mosquitto() {
    MOSQUITTO="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
    if [ ! -x "$MOSQUITTO" ] || ! command -v mosquitto_sub >/dev/null 2>&1 || ! command -v mosquitto_pub >/dev/null 2>&1; then
        echo "mosquitto missing: installing mosquitto mosquitto-clients"
        apt-get update && apt-get install -y mosquitto mosquitto-clients
        MOSQUITTO="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
    fi
}

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# start_server CMD...: runs CMD in the background and waits until it prints
# "listening on ADDR" (bind to port 0 so it picks a free port). Sets ADDR, or exits the suite
# with a failure if the server dies or prints nothing within 30 s.
start_server() {
    RUST_LOG="${RUST_LOG:-info}" "$@" >"$WORK/server.out" 2>"$WORK/server.log" &
    SERVER_PID=$!
    for _ in $(seq 1 300); do
        grep -q '^listening on ' "$WORK/server.out" && break
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "FAIL: the server exited at start"
            cat "$WORK/server.log"
            echo "0 passed, 1 failed"
            exit 1
        fi
        sleep 0.1
    done
    ADDR="$(sed -n 's/^listening on //p' "$WORK/server.out" | head -n 1)"
    if [ -z "$ADDR" ]; then
        echo "FAIL: the server printed no address within 30 s"
        echo "0 passed, 1 failed"
        exit 1
    fi
}

PASSED=0
FAILED=0
pass() {
    echo "PASS: $1"
    PASSED=$((PASSED + 1))
}
fail() {
    echo "FAIL: $1: $2"
    FAILED=$((FAILED + 1))
}
summary() {
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
}

# A TCP port on 127.0.0.1 free right now.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# free_udp_port: a UDP port on 127.0.0.1 that nothing holds right now.
free_udp_port() {
    python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Copies the work directory (logs, outputs) to $KEEP_WORK, if set, before it is removed.
keep_work() {
    if [ -n "${KEEP_WORK:-}" ]; then
        mkdir -p "$KEEP_WORK" && cp -r "$WORK/." "$KEEP_WORK/"
    fi
}

# venv_with MODULE SPEC: interop/.venv, with SPEC pip-installed unless MODULE imports already;
# sets VENV and PY.
venv_with() {
    VENV="$ROOT/interop/.venv"
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import $1" 2>/dev/null; then
        [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check "$2"
    fi
    PY="$VENV/bin/python"
}

# server_binary: SERVER is $LWM2M_SERVER, or the debug build (built now); a failed build ends
# the suite with one FAIL.
server_binary() {
    if [ -n "${LWM2M_SERVER:-}" ]; then
        SERVER="$LWM2M_SERVER"
    else
        cargo build -p lwm2m-server || { echo "FAIL: cargo build"; echo "0 passed, 1 failed"; exit 1; }
        SERVER="${CARGO_TARGET_DIR:-$ROOT/target}/debug/lwm2m-server"
    fi
}
