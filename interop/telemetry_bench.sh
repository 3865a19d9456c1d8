#!/usr/bin/env bash
# The MQTT path under telemetry, for the figures in README.md (a benchmark, not a test: it
# asserts nothing). Release builds, the server on core 0 and the simulator on core 1:
#
#   bash interop/telemetry_bench.sh embedded [DEVICES]   # the embedded broker (in the server)
#   bash interop/telemetry_bench.sh mosquitto [DEVICES]  # mosquitto, set_tcp_nodelay true
#   bash interop/telemetry_bench.sh stall                # 250 devices through mosquitto, which
#                                                        # is stopped (SIGSTOP) for 60 s at 15 s
#
# Prints the simulator's report (notifications sent and delivered, latency, the server's CPU
# and memory), the store's writes and commits, and the CPU seconds of each server thread (and
# mosquitto's) over 12 s of the steady state; for `stall`, the outbox depth and the age of its
# oldest message every 5 s. Everything runs on loopback on free ports and stops by itself.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/interop/lib.sh"
MODE="${1:-embedded}"
DEVICES="${2:-300}"
BIN="${BIN:-$ROOT/target/release}"
[ -x "$BIN/lwm2m-server" ] && [ -x "$BIN/lwm2m-client-sim" ] \
    || cargo build --release -p lwm2m-server -p lwm2m-client-sim || exit 1
[ "$MODE" = embedded ] || ensure_mosquitto

PIDS=()
finish() {
    for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null; kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    cleanup
}
trap finish EXIT

MQTT_PORT="$(free_port)"
HTTP_PORT="$(free_port)"
COAP_PORT="$(python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
{
    printf '[server]\ncoap_bind = ["127.0.0.1:%s"]\ncoaps_bind = []\ndata_dir = "%s/data"\n' "$COAP_PORT" "$WORK"
    printf '[bootstrap]\nenabled = false\n[http]\nbind = "127.0.0.1:%s"\n[log]\nlevel = "warn"\n' "$HTTP_PORT"
    printf '[mqtt]\nbroker = "127.0.0.1:%s"\n' "$MQTT_PORT"
    [ "$MODE" = embedded ] || printf 'embedded_broker = false\n'
} >"$WORK/server.toml"
if [ "$MODE" != embedded ]; then
    # mosquitto's default would drop a slow subscriber's messages past 1,000 queued.
    printf 'listener %s 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\nmax_queued_messages 2000000\nmax_inflight_messages 0\n' \
        "$MQTT_PORT" >"$WORK/mosquitto.conf"
    taskset -c 0 "$MOSQUITTO" -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
    MQ=$!
    PIDS+=("$MQ")
fi
taskset -c "${SERVER_CPUS:-0}" "$BIN/lwm2m-server" --config "$WORK/server.toml" >"$WORK/server.log" 2>&1 &
SERVER=$!
PIDS+=("$SERVER")
sleep 2

metrics() { curl -s "127.0.0.1:$HTTP_PORT/metrics"; }
ARGS=(--scenario telemetry --devices "$DEVICES" --server "127.0.0.1:$COAP_PORT" --broker "127.0.0.1:$MQTT_PORT" --server-pid "$SERVER" --quiet)
if [ "$MODE" = stall ]; then
    ARGS=(--scenario telemetry --devices 250 --duration 110 --server "127.0.0.1:$COAP_PORT" --broker "127.0.0.1:$MQTT_PORT" --server-pid "$SERVER" --quiet)
    ( for i in $(seq 0 5 115); do
        m="$(metrics)"
        echo "t=${i}s outbox=$(echo "$m" | awk '/^lwm2m_mqtt_outbox_messages /{print $2}') oldest=$(echo "$m" | awk '/^lwm2m_mqtt_outbox_oldest_age_seconds /{print $2}')s"
        sleep 5
      done >"$WORK/outbox.txt" ) &
    PIDS+=("$!")
    ( sleep 15; kill -STOP "$MQ"; sleep 60; kill -CONT "$MQ" ) &
    PIDS+=("$!")
else
    ( sleep 4; python3 "$ROOT/interop/thread_cpu.py" "$SERVER" 12 >"$WORK/threads.txt" ) &
    ( sleep 4; SIM="$(pgrep -n -f 'lwm2m-client-sim bench')" && python3 "$ROOT/interop/thread_cpu.py" "$SIM" 12 | tail -1 | sed 's/^total */simulator total /' >"$WORK/simulator.txt" ) &
    [ "$MODE" = mosquitto ] && ( sleep 4; python3 "$ROOT/interop/thread_cpu.py" "$MQ" 12 >"$WORK/mosquitto_threads.txt" ) &
fi
timeout 300 taskset -c "${SIM_CPUS:-1}" "$BIN/lwm2m-client-sim" bench "${ARGS[@]}" 2>&1 | grep -v ' INFO '
sleep 1
metrics | grep -E '^lwm2m_store_(writes|commits)_total'
# The server's own share of the latency: a notification's arrival to the broker's
# acknowledgement (the hand-off to the embedded broker), cumulative.
metrics | grep -E '^lwm2m_notification_to_mqtt_seconds_(bucket|count)' | grep -vE 'le="(0\.25|0\.5|1\.0|2\.5|5\.0|10\.0|30\.0)"'
for f in threads.txt simulator.txt mosquitto_threads.txt outbox.txt; do
    [ -f "$WORK/$f" ] && { echo "-- $f"; cat "$WORK/$f"; }
done
