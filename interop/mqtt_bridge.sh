#!/usr/bin/env bash
# MQTT bridge interop: lwm2m-server's bridge against a real mosquitto (Debian
# mosquitto, started here on a free loopback port with persistence in the work directory),
# observed and driven with mosquitto_sub/mosquitto_pub (MQTT 5), with a raw CoAP device in
# Python (interop/coap_device.py, standard library only) on the other side.
#
#   1. Register appears on up/register.
#   2. A read published on dn/ comes back on up/resp with its reqID and the value.
#   3. An observe gives up/notify messages with the device's values.
#   4. Queue mode: a command for a sleeping device is answered only after it wakes; a command
#      published with MQTT 5 Message Expiry 1 s for the sleeping device gets "expired" and
#      never reaches the device.
#   5. Broker outage: mosquitto stopped for a few seconds and restarted (same port, same
#      persistence) while two devices send 10,000 CON notifications each: the persistent
#      subscriber gets every value the devices logged as ACKed, in order, none missing.
#   6. kill -9 of the server mid-stream, restart on the same data dir and port: every ACKed
#      value arrives, none missing.
#   7. Every malformed command shape (absurd numbers, 1000-deep nesting, 100 KB) gets an error
#      on up/resp, and the server keeps working: the device is read and a new one registers.
#
# mosquitto is stopped with SIGTERM, so it saves its persistence file (the subscriber's
# session and its queued messages) as a broker configured this way does on a restart. The
# bridge's own guarantee (its durable outbox) is what case 5 tests; what mosquitto itself
# keeps across a SIGKILL is mosquitto's business.
#
# Each case prints PASS or FAIL; the last line is "N passed, M failed". Exits non-zero if any
# case failed. Every client call and background process runs under `timeout`.
#
# Environment: LWM2M_SERVER=path uses that server binary instead of `cargo build`;
# OUTAGE_COUNT (10000) notifications per device in case 5, CRASH_COUNT (3000) in case 6;
# KEEP_WORK=dir copies the work directory (logs, subscriber output) there at the end.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
source "$ROOT/interop/lib.sh"

OUTAGE_COUNT="${OUTAGE_COUNT:-10000}"
CRASH_COUNT="${CRASH_COUNT:-3000}"

ensure_mosquitto

server_binary
DEVICE="$ROOT/interop/coap_device.py"
CHECK="$ROOT/interop/mqtt_check.py"

BROKER_PID=""
SUB_PID=""
DEVICE_PIDS=()
finish() {
    for p in "${DEVICE_PIDS[@]}" $SUB_PID $BROKER_PID; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${DEVICE_PIDS[@]}" $SUB_PID $BROKER_PID; do
        wait "$p" 2>/dev/null || true
    done
    keep_work
    cleanup
}
trap finish EXIT

# --- the broker -----------------------------------------------------------------------------
MQTT_PORT="$(free_port)"
mkdir -p "$WORK/mosquitto"
# `user`: mosquitto started as root switches to the user "mosquitto", which could not write
# the persistence file in this private work directory; stay the user we are.
cat >"$WORK/mosquitto.conf" <<CONF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
user $(id -un)
persistence true
persistence_location $WORK/mosquitto/
max_queued_messages 100000
log_dest file $WORK/mosquitto.log
CONF

start_broker() {
    timeout 900 "$MOSQUITTO" -c "$WORK/mosquitto.conf" >>"$WORK/mosquitto.out" 2>&1 &
    BROKER_PID=$!
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$MQTT_PORT") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# SIGTERM to `timeout`, which passes it on: mosquitto saves its persistence file and exits.
stop_broker() {
    kill "$BROKER_PID" 2>/dev/null
    wait "$BROKER_PID" 2>/dev/null
    BROKER_PID=""
}

if ! start_broker; then
    echo "FAIL: mosquitto did not start"
    cat "$WORK/mosquitto.out" "$WORK/mosquitto.log" 2>/dev/null
    echo "0 passed, 1 failed"
    exit 1
fi
echo "mosquitto $("$MOSQUITTO" -h 2>&1 | head -n 1 | sed 's/^mosquitto version //') on 127.0.0.1:$MQTT_PORT"

publish() {
    local topic="$1" payload="$2"
    shift 2
    timeout 10 mosquitto_pub -V mqttv5 -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "$topic" -m "$payload" "$@"
}

# One subscriber for the whole run, with a persistent session (-c, fixed id): it reconnects
# by itself after the outage and gets what the broker queued for it meanwhile. Each line:
# receive time, topic, payload.
SUB="$WORK/sub.out"
timeout 900 mosquitto_sub -V mqttv5 -h 127.0.0.1 -p "$MQTT_PORT" -c -i interop-sub -q 1 \
    -t 'lwm2m/+/up/#' -F '%U %t %p' >"$SUB" 2>"$WORK/sub.err" &
SUB_PID=$!
# Subscribed once a probe comes back.
for i in $(seq 1 50); do
    publish lwm2m/probe/up/probe "{\"probe\":$i}" >/dev/null 2>&1
    sleep 0.2
    grep -q ' lwm2m/probe/up/probe ' "$SUB" && break
done
if ! grep -q ' lwm2m/probe/up/probe ' "$SUB"; then
    echo "FAIL: mosquitto_sub did not subscribe"
    cat "$WORK/sub.err"
    echo "0 passed, 1 failed"
    exit 1
fi

lines() { wc -l <"$SUB"; }

# wait_msg TOPIC [--msg-type X] [--req-id N] [--since K] [--timeout S]: prints the payload.
wait_msg() {
    local topic="$1"
    shift
    timeout 120 python3 "$CHECK" wait "$SUB" --topic "$topic" "$@"
}

# jcheck JSON EXPR: true if the Python expression EXPR holds for the message m.
jcheck() {
    printf '%s' "$1" | python3 -c '
import json, sys
m = json.load(sys.stdin)
d = m.get("data", {}) if isinstance(m, dict) else {}
try:
    ok = eval(sys.argv[1])
except Exception:
    ok = False
sys.exit(0 if ok else 1)' "$2"
}

# --- the server -----------------------------------------------------------------------------
write_config() {
    cat >"$WORK/server.toml" <<TOML
[server]
coap_bind = ["127.0.0.1:$1"]
coaps_bind = []
data_dir = "$WORK/data"

[queue]
awake_window_secs = 2

[mqtt]
enabled = true
broker = "127.0.0.1:$MQTT_PORT"
embedded_broker = false
version = 5
client_id = "lwm2m-interop"
topic_prefix = "lwm2m"
qos = 1
session_expiry_secs = 3600
reconnect_min_ms = 200
reconnect_max_ms = 1000

# Bootstrap is tried in lwm2m_bootstrap.sh; here its fixed ports would only get in the way.
[bootstrap]
enabled = false

[http]
bind = "127.0.0.1:0"
TOML
}
write_config 0
start_server "$SERVER" --config "$WORK/server.toml"
COAP="${ADDR#coap://}"
# Restarts use the same port, so that devices keep talking to the same address.
write_config "${COAP##*:}"
echo "server at $ADDR"
for _ in $(seq 1 100); do
    grep -q 'MQTT bridge connected' "$WORK/server.log" && break
    sleep 0.1
done

# start_device NAME ARGS...: a device under `timeout`, its output in $WORK/NAME.out; waits
# until it registered. Sets DEV_PID (the Python process, for SIGUSR1).
declare -A DEV_TIMEOUT_PID
start_device() {
    local name="$1"
    shift
    timeout 600 python3 "$DEVICE" --server "$COAP" --endpoint "$name" "$@" >"$WORK/$name.out" 2>&1 &
    DEVICE_PIDS+=($!)
    DEV_TIMEOUT_PID[$name]=$!
    DEV_PID=""
    for _ in $(seq 1 100); do
        grep -q '^registered ' "$WORK/$name.out" && break
        sleep 0.1
    done
    DEV_PID="$(sed -n 's/^pid //p' "$WORK/$name.out")"
    grep -q '^registered ' "$WORK/$name.out"
}

server_alive() { [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; }

# Why the server is not there, for a FAIL line.
server_gone() {
    if server_alive; then
        echo "server running"
    elif grep -q 'shutting down' "$WORK/server.log"; then
        echo "the server was stopped by a signal from outside this script: $(grep 'shutting down' "$WORK/server.log" | tail -n 1 | cut -c1-30)"
    else
        echo "the server died: $(tail -n 3 "$WORK/server.log" | tr '\n' '|')"
    fi
}

# wait_done NAME COUNT SECONDS: until the device has had COUNT notifications ACKed; gives up
# early if the device or the server is gone.
wait_done() {
    local end=$((SECONDS + $3))
    while [ "$SECONDS" -lt "$end" ]; do
        grep -q "^done $2 " "$WORK/$1.out" && return 0
        kill -0 "${DEV_TIMEOUT_PID[$1]}" 2>/dev/null || return 1
        server_alive || return 1
        sleep 0.2
    done
    return 1
}

# wait_file_lines FILE N SECONDS: until FILE has at least N lines.
wait_file_lines() {
    local end=$((SECONDS + $3))
    while [ "$SECONDS" -lt "$end" ]; do
        [ "$(wc -l <"$1" 2>/dev/null || echo 0)" -ge "$2" ] && return 0
        sleep 0.1
    done
    return 1
}

# wait_grep_count PATTERN FILE N SECONDS: until PATTERN matches N lines of FILE.
wait_grep_count() {
    local end=$((SECONDS + $4))
    while [ "$SECONDS" -lt "$end" ]; do
        [ "$(grep -c "$1" "$2" 2>/dev/null)" -ge "$3" ] && return 0
        sleep 0.1
    done
    return 1
}

now() { date +%s.%N; }

# ============================================================================================
# 1. Register appears on up/register.
name="register appears on up/register"
start_device dev-1 --count 5 --rate 20 --acked "$WORK/dev-1.acked" --max-time 550 || true
msg="$(wait_msg lwm2m/dev-1/up/register --msg-type register --timeout 10)"
if jcheck "$msg" 'd["ep"] == "dev-1" and d["lt"] == 300 and d["lwm2m"] == "1.1" and "/3303/0" in d["objectList"] and isinstance(m["msgId"], str)'; then
    pass "$name"
else
    fail "$name" "got '$msg'; device: $(tail -n 3 "$WORK/dev-1.out")"
fi

# 2. A read on dn/ is answered on up/resp with the same reqID.
name="read on dn/cmd answered on up/resp"
since="$(lines)"
publish lwm2m/dev-1/dn/cmd '{"reqID": 2, "msgType": "read", "data": {"path": "/3/0/0"}}'
msg="$(wait_msg lwm2m/dev-1/up/resp --req-id 2 --since "$since" --timeout 10)"
if jcheck "$msg" 'm["msgType"] == "read" and d["code"] == "2.05" and d["content"][0]["value"] == "Acme" and d["content"][0]["path"] == "/3/0/0"'; then
    pass "$name"
else
    fail "$name" "got '$msg'"
fi

# 3. An observe gives up/notify with the values 1..5 the device sends.
name="observe gives up/notify messages"
since="$(lines)"
publish lwm2m/dev-1/dn/cmd '{"reqID": 3, "msgType": "observe", "data": {"path": "/3303/0/5700"}}'
resp="$(wait_msg lwm2m/dev-1/up/resp --req-id 3 --since "$since" --timeout 10)"
wait_done dev-1 5 15 || true
note="$(timeout 30 python3 "$CHECK" stream "$SUB" --topic lwm2m/dev-1/up/notify --acked "$WORK/dev-1.acked" --timeout 10)"
ok=$?
last="$(wait_msg lwm2m/dev-1/up/notify --msg-type notify --req-id 3 --timeout 1)"
if [ $ok -eq 0 ] && [ "$(wc -l <"$WORK/dev-1.acked")" -eq 5 ] \
    && jcheck "$resp" 'd["code"] == "2.05" and m["msgType"] == "observe"' \
    && jcheck "$last" 'd["reqPath"] == "/3303/0/5700" and isinstance(m["seqNum"], int) and d["content"][0]["type"] == "Float"'; then
    pass "$name ($note)"
else
    fail "$name" "observe answer '$resp', first notify '$last', $note; device: $(tail -n 3 "$WORK/dev-1.out")"
fi

# ============================================================================================
# 4. Queue mode. The device registers with b=UQ and sleeps (stops reading its socket); the
# server counts it awake for 2 s after that.
name="queue mode: command answered only after the device wakes"
start_device dev-q --queue --awake 3 || true
QPID="$DEV_PID"
wait_msg lwm2m/dev-q/up/register --timeout 10 >/dev/null
sleep 2.5
since="$(lines)"
publish lwm2m/dev-q/dn/cmd '{"reqID": 41, "msgType": "read", "data": {"path": "/3/0/0"}}'
sleep 3
early="$(wait_msg lwm2m/dev-q/up/resp --req-id 41 --since "$since" --timeout 0)"
woke_at="$(now)"
kill -USR1 "$QPID" 2>/dev/null
msg="$(wait_msg lwm2m/dev-q/up/resp --req-id 41 --since "$since" --timeout 10)"
at="$(grep ' lwm2m/dev-q/up/resp ' "$SUB" | grep '"reqID":41' | head -n 1 | cut -d' ' -f1)"
if [ -z "$early" ] && jcheck "$msg" 'd["code"] == "2.05" and d["content"][0]["value"] == "Acme"' \
    && [ -n "$at" ] && python3 -c "import sys; sys.exit(0 if $at >= $woke_at else 1)" \
    && grep -q '^woke (drained 0 ' "$WORK/dev-q.out"; then
    pass "$name ($(python3 -c "print('%.0f ms' % (($at - $woke_at) * 1000))") after the wake-up, nothing sent to it asleep)"
else
    fail "$name" "while asleep: '$early'; after: '$msg'; device: $(tr '\n' '|' <"$WORK/dev-q.out")"
fi

# The device sleeps again after 3 s awake; 2 s later the server counts it asleep too. A
# command with Message Expiry 1 s then expires before the next wake-up.
name="queue mode: command with MQTT 5 message expiry 1 s expires"
wait_grep_count '^asleep' "$WORK/dev-q.out" 2 10 || true
sleep 2.5
since="$(lines)"
sent_at="$(now)"
publish lwm2m/dev-q/dn/cmd '{"reqID": 42, "msgType": "read", "data": {"path": "/3/0/1"}}' -D publish message-expiry-interval 1
sleep 3
woke_at="$(now)"
kill -USR1 "$QPID" 2>/dev/null
wait_grep_count '^update ' "$WORK/dev-q.out" 2 10 || true
msg="$(wait_msg lwm2m/dev-q/up/resp --req-id 42 --since "$since" --timeout 10)"
sleep 1
at="$(grep ' lwm2m/dev-q/up/resp ' "$SUB" | grep '"reqID":42' | head -n 1 | cut -d' ' -f1)"
if jcheck "$msg" 'd["code"] == "5.04" and d["error"] == "expired"' && ! grep -q 'request 0.01 /3/0/1' "$WORK/dev-q.out"; then
    when="$(python3 -c "
s, a, w = $sent_at, ${at:-0}, $woke_at
print('%.1f s after publishing, %s' % (a - s, 'before the wake-up' if a < w else '%.1f s after the wake-up' % (a - w)))")"
    pass "$name (result $when; the device never got it)"
else
    fail "$name" "got '$msg'; device: $(tr '\n' '|' <"$WORK/dev-q.out")"
fi

# ============================================================================================
# 5. Broker outage during 2 x $OUTAGE_COUNT notifications.
name="broker outage: every ACKed notification arrives, in order"
for d in dev-out-a dev-out-b; do
    start_device "$d" --count "$OUTAGE_COUNT" --acked "$WORK/$d.acked" --max-time 500 || true
done
since="$(lines)"
publish lwm2m/dev-out-a/dn/cmd '{"reqID": 51, "msgType": "observe", "data": {"path": "/3303/0/5700"}}'
publish lwm2m/dev-out-b/dn/cmd '{"reqID": 52, "msgType": "observe", "data": {"path": "/3303/0/5700"}}'
wait_msg lwm2m/dev-out-a/up/resp --req-id 51 --since "$since" --timeout 10 >/dev/null
wait_msg lwm2m/dev-out-b/up/resp --req-id 52 --since "$since" --timeout 10 >/dev/null
wait_file_lines "$WORK/dev-out-a.acked" $((OUTAGE_COUNT / 5)) 120 || true
acked_at_stop=$(($(wc -l <"$WORK/dev-out-a.acked") + $(wc -l <"$WORK/dev-out-b.acked")))
stop_broker
sleep 4
acked_at_start=$(($(wc -l <"$WORK/dev-out-a.acked") + $(wc -l <"$WORK/dev-out-b.acked")))
broker_ok=1
start_broker || broker_ok=0
for d in dev-out-a dev-out-b; do
    wait_done "$d" "$OUTAGE_COUNT" 300 || true
done
ok=$broker_ok
notes=""
for d in dev-out-a dev-out-b; do
    n="$(timeout 200 python3 "$CHECK" stream "$SUB" --topic "lwm2m/$d/up/notify" --acked "$WORK/$d.acked" --timeout 120)" || ok=0
    [ "$(wc -l <"$WORK/$d.acked")" -eq "$OUTAGE_COUNT" ] || ok=0
    notes="$notes; $d: $n"
done
summary_note="broker down 4 s, devices ACKed $((acked_at_start - acked_at_stop)) notifications meanwhile$notes"
if [ $ok -eq 1 ]; then
    pass "$name ($summary_note)"
else
    fail "$name" "$summary_note; $(server_gone); devices: $(tail -n 1 "$WORK/dev-out-a.out" | tr '\n' '|') $(tail -n 1 "$WORK/dev-out-b.out" | tr '\n' '|')"
fi

# ============================================================================================
# 6. kill -9 of the server mid-stream; restart on the same data dir and port.
name="server kill -9: every ACKed notification arrives"
start_device dev-crash --count "$CRASH_COUNT" --acked "$WORK/dev-crash.acked" --max-time 400 || true
since="$(lines)"
publish lwm2m/dev-crash/dn/cmd '{"reqID": 61, "msgType": "observe", "data": {"path": "/3303/0/5700"}}'
wait_msg lwm2m/dev-crash/up/resp --req-id 61 --since "$since" --timeout 10 >/dev/null
wait_file_lines "$WORK/dev-crash.acked" $((CRASH_COUNT / 3)) 120 || true
before_kill="$(server_gone)"
kill -9 "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null
acked_at_kill="$(wc -l <"$WORK/dev-crash.acked")"
SERVER_PID=""
sleep 1
mv "$WORK/server.log" "$WORK/server.1.log"
start_server "$SERVER" --config "$WORK/server.toml"
restarted_at="$ADDR"
restored="$(grep -o 'state restored report=.*' "$WORK/server.log" | head -n 1)"
wait_done dev-crash "$CRASH_COUNT" 200 || true
n="$(timeout 200 python3 "$CHECK" stream "$SUB" --topic lwm2m/dev-crash/up/notify --acked "$WORK/dev-crash.acked" --timeout 60)"
ok=$?
if [ $ok -eq 0 ] && [ "$(wc -l <"$WORK/dev-crash.acked")" -eq "$CRASH_COUNT" ] && [ "$restarted_at" = "coap://$COAP" ]; then
    pass "$name (killed after $acked_at_kill ACKs; $n; $restored)"
else
    fail "$name" "before the kill: $before_kill; restarted at $restarted_at; $n; device: $(tail -n 2 "$WORK/dev-crash.out" | tr '\n' '|')"
fi

# ============================================================================================
# 7. Malformed commands: each gets an error on up/resp. Sent one at a time and matched by
# arrival, since some have no reqID to match on.
malformed() { # NAME TOPIC PAYLOAD EXPR
    local name="malformed command: $1" since msg
    since="$(lines)"
    publish "$2" "$3"
    msg="$(wait_msg "${2%/dn/cmd}/up/resp" --since "$since" --timeout 10)"
    if jcheck "$msg" "$4"; then
        pass "$name ($(printf '%s' "$msg" | python3 -c 'import json, sys; m = json.load(sys.stdin); d = m["data"]; print(" ".join(x for x in (d["code"], d.get("error"), d["message"]) if x))'))"
    else
        fail "$name" "got '$msg'"
    fi
}
bad='d["code"] == "4.00" and d["codeMsg"] == "bad_request" and d["message"] != ""'
T=lwm2m/dev-1/dn/cmd
malformed "not JSON" $T 'read /3/0/0 please' "$bad"
malformed "JSON array" $T '[{"reqID": 70, "msgType": "read", "data": {"path": "/3/0/0"}}]' "$bad"
malformed "missing msgType" $T '{"reqID": 71, "data": {"path": "/3/0/0"}}' "$bad and m['reqID'] == 71"
malformed "unknown msgType" $T '{"reqID": 72, "msgType": "reboot-now", "data": {"path": "/3/0/0"}}' "$bad and m['reqID'] == 72"
malformed "missing reqID" $T '{"msgType": "read", "data": {"path": "/3/0/0"}}' "$bad"
malformed "missing data" $T '{"reqID": 74, "msgType": "read"}' "$bad and m['reqID'] == 74"
malformed "bad path /x" $T '{"reqID": 75, "msgType": "read", "data": {"path": "/x"}}' "$bad and m['reqID'] == 75"
malformed "write without value" $T '{"reqID": 76, "msgType": "write", "data": {"path": "/3/0/14", "type": "String"}}' "$bad and m['reqID'] == 76"
malformed "write with the wrong type" $T '{"reqID": 77, "msgType": "write", "data": {"path": "/3/0/9", "type": "String", "value": "full"}}' "$bad and m['reqID'] == 77"
malformed "unknown device" lwm2m/no-such-device/dn/cmd '{"reqID": 78, "msgType": "read", "data": {"path": "/3/0/0"}}' \
    'd["code"] == "4.04" and d["error"] == "unknown_device" and m["reqID"] == 78'
# Absurd numbers: a timeout of 1e19 s once stopped the server (an Instant overflow in a
# worker); every duration is now range-checked where it is parsed.
malformed "timeout 1e19" $T '{"reqID": 81, "msgType": "read", "timeout": 1e19, "data": {"path": "/3/0/0"}}' "$bad and m['reqID'] == 81 and 'timeout' in d['message']"
malformed "ttl 1e19" $T '{"reqID": 82, "msgType": "read", "ttl": 1e19, "data": {"path": "/3/0/0"}}' "$bad and m['reqID'] == 82 and 'ttl' in d['message']"
malformed "negative timeout" $T '{"reqID": 83, "msgType": "read", "timeout": -5, "data": {"path": "/3/0/0"}}' "$bad and m['reqID'] == 83"
malformed "nesting 1000 deep" $T "{\"reqID\": 84, \"msgType\": \"read\", \"data\": {\"path\": \"/3/0/0\", \"x\": $(printf '[%.0s' $(seq 1 1000))$(printf ']%.0s' $(seq 1 1000))}}" "$bad and 'limit of 32' in d['message']"
malformed "100 KB command" $T "{\"reqID\": 85, \"msgType\": \"write\", \"data\": {\"path\": \"/3/0/14\", \"type\": \"String\", \"value\": \"$(head -c 100000 /dev/zero | tr '\0' x)\"}}" "$bad and m['reqID'] == 85 and 'over the limit of 65536 bytes' in d['message']"
# The MQTT 5 Message Expiry a broker allows (up to 136 years) is capped at the longest ttl.
name="command with the largest MQTT message expiry is answered"
since="$(lines)"
publish $T '{"reqID": 86, "msgType": "read", "data": {"path": "/3/0/0"}}' -D publish message-expiry-interval 4294967295
msg="$(wait_msg lwm2m/dev-1/up/resp --req-id 86 --since "$since" --timeout 10)"
if jcheck "$msg" 'd["code"] == "2.05"'; then
    pass "$name"
else
    fail "$name" "got '$msg'; $(server_gone)"
fi

name="server still running and answering after the malformed commands"
since="$(lines)"
publish lwm2m/dev-1/dn/cmd '{"reqID": 79, "msgType": "write", "data": {"path": "/3/0/14", "type": "String", "value": "+02:00"}}'
w="$(wait_msg lwm2m/dev-1/up/resp --req-id 79 --since "$since" --timeout 10)"
publish lwm2m/dev-1/dn/cmd '{"reqID": 80, "msgType": "read", "data": {"path": "/3/0/14"}}'
r="$(wait_msg lwm2m/dev-1/up/resp --req-id 80 --since "$since" --timeout 10)"
if kill -0 "$SERVER_PID" 2>/dev/null && jcheck "$w" 'd["code"] == "2.04"' && jcheck "$r" 'd["content"][0]["value"] == "+02:00"'; then
    pass "$name"
else
    fail "$name" "write '$w', read '$r'; $(server_gone)"
fi

name="a new device registers after the malformed commands"
if start_device dev-late --count 0 --max-time 60; then
    pass "$name"
else
    fail "$name" "device: $(tail -n 3 "$WORK/dev-late.out"); $(server_gone)"
fi

name="no panic in the server logs"
if ! grep -qi 'panicked' "$WORK/server.1.log" "$WORK/server.log" 2>/dev/null; then
    pass "$name"
else
    fail "$name" "$(grep -i -m 3 'panicked' "$WORK/server.1.log" "$WORK/server.log")"
fi

summary
