#!/usr/bin/env bash
# The web console in a real browser: headless Chromium (Debian chromium and chromium-driver)
# driven by Selenium (PyPI, installed into interop/.venv) against lwm2m-server, with three
# simulated NoSec devices (`lwm2m-client-sim bench`, a temperature sensor moving every second)
# and one in queue mode, mostly asleep, registered over CoAP, and a bearer token on the API.
# console_browser.py does what an operator would: gives the token when the page asks for it,
# finds a device with the search box, reads /3/0/0, writes /3/0/14 and reads it back, executes
# /1/0/8 and sees the Update it triggers, observes /3303/0/5700 and sees the notifications
# arrive live, filters the event panel, cancels the observation, reads from the sleeping device
# (queued, then filled in when it wakes), uploads a firmware package and starts a campaign for
# the device; and checks that the page raised no script error and no Content-Security-Policy
# violation.
#
# Each case prints PASS or FAIL; the last line is "N passed, M failed". Exits non-zero if any
# case failed. Skips (0 passed, 0 failed) only when Chromium or its driver is not installed.
# Screenshots (console.png, console-observe.png, console-firmware.png, and failure-N.png for a
# failed step), the browser's console log, the server's and the simulators' logs go to
# $ARTIFACTS (default target/interop-artifacts).
#
# Settings from the environment: LWM2M_SERVER and LWM2M_CLIENT_SIM, the binaries (default:
# built here with cargo, debug); ARTIFACTS, the artifacts directory.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
source "$ROOT/interop/lib.sh"

ARTIFACTS="${ARTIFACTS:-${CARGO_TARGET_DIR:-$ROOT/target}/interop-artifacts}"
mkdir -p "$ARTIFACTS"

CHROMIUM="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$CHROMIUM" ] || ! command -v chromedriver >/dev/null 2>&1; then
    echo "SKIP: chromium or chromedriver is not installed (Debian: apt-get install chromium chromium-driver)"
    echo "0 passed, 0 failed"
    exit 0
fi

venv_with selenium 'selenium>=4.11'

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ -z "${LWM2M_SERVER:-}" ] || [ -z "${LWM2M_CLIENT_SIM:-}" ]; then
    cargo build -p lwm2m-server -p lwm2m-client-sim
fi
SERVER="${LWM2M_SERVER:-$TARGET/debug/lwm2m-server}"
SIM="${LWM2M_CLIENT_SIM:-$TARGET/debug/lwm2m-client-sim}"

SIM_PID=""
SIMQ_PID=""
finish_all() {
    for pid in $SIM_PID $SIMQ_PID; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    cp "$WORK"/*.log "$ARTIFACTS"/ 2>/dev/null || true
    cleanup
}
trap finish_all EXIT

# A bearer token, so that the page must ask for it (and send it on the event stream too).
TOKEN="console-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s\n' "$TOKEN" >"$WORK/token"
chmod 600 "$WORK/token"

cat >"$WORK/server.toml" <<TOML
[server]
coap_bind = ["127.0.0.1:0"]
coaps_bind = []
data_dir = "$WORK/data"

[mqtt]
enabled = false

[bootstrap]
enabled = false

[http]
bind = "127.0.0.1:0"
token_file = "$WORK/token"

# The queue-mode device below stays awake 2 s after each exchange: the server must not
# assume longer, or it sends to a device already asleep instead of queueing.
[queue]
awake_window_secs = 2
TOML
start_server "$SERVER" --config "$WORK/server.toml"
COAP=""
HTTP=""
for _ in $(seq 1 100); do
    COAP="$(sed -n 's|^listening on coap://||p' "$WORK/server.out" | head -n 1)"
    HTTP="$(sed -n 's|^listening on http://||p' "$WORK/server.out" | head -n 1)"
    [ -n "$COAP" ] && [ -n "$HTTP" ] && break
    sleep 0.1
done
if [ -z "$COAP" ] || [ -z "$HTTP" ]; then
    echo "FAIL: the server printed no CoAP or HTTP address: $(cat "$WORK/server.out")"
    echo "0 passed, 1 failed"
    exit 1
fi
echo "server at coap://$COAP, console at http://$HTTP/"

# Three devices, so that the search has something to leave out; their sensors move every
# second, so that an observation notifies.
cat >"$WORK/console.toml" <<TOML
name = "console"
duration_secs = 900

[server]
address = "$COAP"
security = "nosec"

[fleet]
devices = 3
name_pattern = "console-{n:02}"
lifetime_secs = 300

[behaviour]
sensors = [3303]
sensor_interval_ms = 1000
TOML
"$SIM" bench --scenario "$WORK/console.toml" --quiet >"$WORK/sim.out" 2>"$WORK/sim.log" &
SIM_PID=$!
# And one in queue mode, asleep but for 2 s every 6 s: its commands are queued (202) and
# their results arrive as events when it wakes.
cat >"$WORK/console-queue.toml" <<TOML
name = "console-queue"
duration_secs = 900

[server]
address = "$COAP"
security = "nosec"

[fleet]
devices = 1
name_pattern = "console-q{n}"
lifetime_secs = 300

[behaviour]
sensors = [3303]
queue_mode = true
awake_secs = 2
wake_interval_secs = 6
TOML
"$SIM" bench --scenario "$WORK/console-queue.toml" --quiet >"$WORK/sim-queue.out" 2>"$WORK/sim-queue.log" &
SIMQ_PID=$!

EP="console-01"
QEP="console-q0"
name="the simulated devices register"
registered=""
for _ in $(seq 1 300); do
    if "$VENV/bin/python" - "http://$HTTP/api/clients" "$TOKEN" "$EP" "$QEP" <<'PY' 2>/dev/null; then
import sys, urllib.request
for ep in sys.argv[3:]:
    req = urllib.request.Request(f"{sys.argv[1]}/{ep}", headers={"Authorization": "Bearer " + sys.argv[2]})
    with urllib.request.urlopen(req, timeout=2) as r:
        if r.status != 200:
            sys.exit(1)
PY
        registered=yes
        break
    fi
    { kill -0 "$SIM_PID" && kill -0 "$SIMQ_PID"; } 2>/dev/null || break
    sleep 0.1
done
if [ -n "$registered" ]; then
    pass "$name ($EP and $QEP in GET /api/clients/{ep})"
else
    fail "$name" "$EP or $QEP is not registered after 30 s; simulators: $(tail -n 3 "$WORK/sim.log" "$WORK/sim-queue.log")"
    summary
    exit 1
fi

head -c 4096 /dev/urandom >"$WORK/firmware.bin"
set +e
"$VENV/bin/python" "$ROOT/interop/console_browser.py" --url "http://$HTTP/" --endpoint "$EP" \
    --queue-endpoint "$QEP" --manufacturer "Acme Sensors" --token "$TOKEN" --firmware "$WORK/firmware.bin" \
    --artifacts "$ARTIFACTS" >"$WORK/browser.out" 2>&1
status=$?
set -e
cat "$WORK/browser.out"
PASSED=$((PASSED + $(grep -c '^PASS: ' "$WORK/browser.out" || true)))
FAILED=$((FAILED + $(grep -c '^FAIL: ' "$WORK/browser.out" || true)))
if [ "$status" -ne 0 ] && ! grep -q '^FAIL: ' "$WORK/browser.out"; then
    fail "the browser test" "exited with $status: $(tail -n 5 "$WORK/browser.out")"
fi
summary
