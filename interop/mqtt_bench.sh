#!/usr/bin/env bash
# MQTT bridge throughput and latency: notifications/s from
# devices to an MQTT subscriber end to end through lwm2m-server and a real mosquitto, and
# p50/p99 latency from the device's send to the subscriber's receive. Not a pass/fail test;
# not part of interop/run.sh.
#
#   bash interop/mqtt_bench.sh [DEVICES] [SECONDS]      (default 4 devices, 10 s)
#
# DEVICES raw CoAP devices (interop/coap_device.py, one process each) are observed through
# MQTT and then send CON notifications in a closed loop: each sends its next notification as
# soon as the previous one is ACKed. The value of each notification is the device's
# time.time_ns() when it first sent it. The subscriber is mosquitto_sub -F '%U %p' (receive
# time and payload); interop/mqtt_bench_stats.py takes the notifications sent during the
# window and prints notifications/s, latency percentiles, and how many ACKed notifications
# never arrived (0 expected).
#
# Why CON in a closed loop rather than NON at a fixed rate: a CON notification is what the
# "nothing lost" guarantee covers (the server ACKs it only after the MQTT message is in the
# durable outbox), so it measures the path that matters; and a closed loop cannot offer more
# than the system carries, so the latency is the system's, not that of a queue growing behind
# an offered rate above capacity (and NON notifications above capacity would be dropped, not
# measured). RATE=n caps each device at n notifications/s (still CON) to measure latency
# below saturation.
#
# Environment: LWM2M_SERVER=path uses that server binary instead of `cargo build`
# (e.g. a release build); RATE as above. Loopback only; everything under `timeout`.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
source "$ROOT/interop/lib.sh"

DEVICES="${1:-4}"
DURATION="${2:-10}"
RATE="${RATE:-0}"
case "$DEVICES$DURATION" in *[!0-9]*)
    echo "usage: $0 [DEVICES] [SECONDS]"
    exit 2
    ;;
esac
if [ "$DEVICES" -lt 1 ] || [ "$DEVICES" -gt 200 ] || [ "$DURATION" -lt 1 ] || [ "$DURATION" -gt 300 ]; then
    echo "DEVICES must be 1..200 and SECONDS 1..300"
    exit 2
fi

ensure_mosquitto
if [ -n "${LWM2M_SERVER:-}" ]; then
    SERVER="$LWM2M_SERVER"
else
    cargo build -p lwm2m-server || exit 1
    SERVER="${CARGO_TARGET_DIR:-$ROOT/target}/debug/lwm2m-server"
fi

PIDS=()
finish() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    cleanup
}
trap finish EXIT

MQTT_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cat >"$WORK/mosquitto.conf" <<CONF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
user $(id -un)
max_queued_messages 1000000
log_dest file $WORK/mosquitto.log
CONF
timeout $((DURATION + 300)) "$MOSQUITTO" -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$MQTT_PORT") 2>/dev/null && break
    sleep 0.1
done

SUB="$WORK/sub.out"
timeout $((DURATION + 300)) mosquitto_sub -V mqttv5 -h 127.0.0.1 -p "$MQTT_PORT" -q 1 \
    -t 'lwm2m/+/up/notify' -F '%U %p' >"$SUB" 2>"$WORK/sub.err" &
PIDS+=($!)
sleep 0.5

cat >"$WORK/server.toml" <<TOML
[server]
coap_bind = ["127.0.0.1:0"]
coaps_bind = []
data_dir = "$WORK/data"

[mqtt]
enabled = true
broker = "127.0.0.1:$MQTT_PORT"
embedded_broker = false
version = 5
client_id = "lwm2m-bench"
qos = 1

# Bootstrap is tried in lwm2m_bootstrap.sh; here its fixed ports would only get in the way.
[bootstrap]
enabled = false

[http]
bind = "127.0.0.1:0"
TOML
RUST_LOG=warn start_server "$SERVER" --config "$WORK/server.toml"
COAP="${ADDR#coap://}"

rate_args=()
[ "$RATE" != 0 ] && rate_args=(--rate "$RATE")
for i in $(seq 1 "$DEVICES"); do
    timeout $((DURATION + 120)) python3 "$ROOT/interop/coap_device.py" --server "$COAP" \
        --endpoint "bench-$i" --time-values --acked "$WORK/bench-$i.acked" \
        --max-time $((DURATION + 60)) "${rate_args[@]}" >"$WORK/bench-$i.out" 2>&1 &
    PIDS+=($!)
done
for i in $(seq 1 "$DEVICES"); do
    for _ in $(seq 1 100); do
        grep -q '^registered' "$WORK/bench-$i.out" && break
        sleep 0.1
    done
    timeout 10 mosquitto_pub -V mqttv5 -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "lwm2m/bench-$i/dn/cmd" \
        -m "{\"reqID\": $i, \"msgType\": \"observe\", \"data\": {\"path\": \"/3303/0/5700\"}}"
done
observed=0
for _ in $(seq 1 100); do
    observed="$(cat "$WORK"/bench-*.out | grep -c '^observed')"
    [ "$observed" -ge "$DEVICES" ] && break
    sleep 0.1
done
echo "$observed/$DEVICES devices observed; warming up 1 s, measuring $DURATION s"
sleep 1
t0="$(date +%s.%N)"
sleep "$DURATION"
t1="$(date +%s.%N)"
# Stop the devices, then give the last notifications time to arrive.
for p in "${PIDS[@]:2}"; do kill "$p" 2>/dev/null || true; done
sleep 2
echo "lwm2m-server $SERVER; mosquitto $("$MOSQUITTO" -h 2>&1 | head -n 1 | sed 's/^mosquitto version //'); $DEVICES devices, CON closed loop$([ "$RATE" != 0 ] && echo " capped at ${RATE}/s per device"); $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
timeout 60 python3 "$ROOT/interop/mqtt_bench_stats.py" "$SUB" "$t0" "$t1" "$WORK"/bench-*.acked
