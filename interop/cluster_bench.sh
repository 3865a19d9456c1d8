#!/usr/bin/env bash
# Figures for several nodes (not a test: run by hand, release build). On one machine:
#
#   bash interop/cluster_bench.sh storm [DEVICES]   registrations/s and p99, one node alone
#                                                   vs three nodes behind nginx
#   bash interop/cluster_bench.sh forward [DEVICES] the cost of forwarding: a Send a second
#                                                   per device through three nodes, devices
#                                                   never rebinding vs rebinding every 10 s
#                                                   (then about 2/3 of their records reach
#                                                   another node first); CPU of the nodes
#                                                   and nginx per Send, and per forwarded record
#
# The nodes (and nginx) run on CPU 0 (SERVER_CPUS), the simulator on CPU 1 (SIM_CPUS); each
# node's MQTT bridge is off, so the figures are the nodes' own (and nginx's). Needs nginx and
# libnginx-mod-stream (Debian).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
MODE="${1:-storm}"
SERVER_CPUS="${SERVER_CPUS:-0}"
SIM_CPUS="${SIM_CPUS:-1}"
cargo build --release -p lwm2m-server -p lwm2m-client-sim >/dev/null 2>&1 || { echo "build failed"; exit 1; }
SERVER="$ROOT/target/release/lwm2m-server"
SIM="$ROOT/target/release/lwm2m-client-sim"
WORK="$(mktemp -d)"
PIDS=()
stop_all() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    PIDS=()
}
trap 'stop_all; rm -rf "$WORK"' EXIT

cpu_secs() { # cpu_secs PID...: user+system CPU seconds of the processes
    python3 - "$@" <<'PY'
import os, sys
hz = os.sysconf("SC_CLK_TCK")
total = 0
for pid in sys.argv[1:]:
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        total += int(f[11]) + int(f[12])
    except OSError:
        pass
print(f"{total / hz:.2f}")
PY
}

# start NODES BALANCE: NODES nodes (1 or 3), the balancer if BALANCE=yes; fresh state.
NODE_PIDS=()
NGINX_PID=""
start() {
    rm -rf "$WORK/run" && mkdir -p "$WORK/run"
    python3 -c 'import secrets; print(secrets.token_hex(32))' >"$WORK/run/cluster.secret"
    NODE_PIDS=()
    NGINX_PID=""
    for n in $(seq 1 "$1"); do
        # No shared store (credentials are imported offline; no Redis here): what is measured
        # is the datagrams' path, as the figures in the README say.
        sed -e 's/^\[mqtt\]/[mqtt]\nenabled = false/' -e '/^store = /d' "$ROOT/config/cluster/node$n.toml" >"$WORK/run/node$n.toml"
        if [ "$1" = 1 ]; then
            sed -i -e 's/^enabled = true$/enabled = false/' "$WORK/run/node$n.toml"
        fi
        (cd "$WORK/run" && "$SIM" credentials --scenario "$SCENARIO" --devices "$DEVICES" $SETS --out keys.csv >/dev/null 2>&1 \
            && "$SERVER" --config "node$n.toml" device import keys.csv >/dev/null 2>&1)
        (cd "$WORK/run" && RUST_LOG=warn exec taskset -c "$SERVER_CPUS" "$SERVER" --config "node$n.toml") >"$WORK/run/node$n.out" 2>"$WORK/run/node$n.log" &
        PIDS+=($!)
        NODE_PIDS+=($!)
    done
    for n in $(seq 1 "$1"); do
        for _ in $(seq 1 100); do grep -q "^listening on coaps" "$WORK/run/node$n.out" && break; sleep 0.1; done
    done
    if [ "$2" = yes ]; then
        sed -e "s/listen 127.0.0.1:5684 udp/listen 127.0.0.1:15684 udp/" "$ROOT/config/cluster/nginx.conf" >"$WORK/run/nginx.conf"
        (cd "$WORK/run" && exec taskset -c "$SERVER_CPUS" nginx -p "$WORK/run" -c "$WORK/run/nginx.conf") >"$WORK/run/nginx.out" 2>&1 &
        PIDS+=($!)
        NGINX_PID=$!
        sleep 1
        TARGET=127.0.0.1:15684
    else
        TARGET=127.0.0.11:5684
    fi
}

report() { # report LABEL CPU [EXTRA]: the simulator's figures and the nodes' CPU
    python3 - "$WORK/run/report.json" "$1" "$2" "${3:-}" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
label, cpu, extra = sys.argv[2], float(sys.argv[3]), sys.argv[4]
lat = r["registration_latency_us"]
print(f"{label}: registered {r['registered']}/{r['devices']}, {r['registrations_per_second']:.0f} registrations/s, "
      f"p50 {lat['p50']/1000:.1f} ms p99 {lat['p99']/1000:.1f} ms, sends acknowledged {r['sends_acknowledged']}, "
      f"rebinds {r['rebinds']}, errors {r['errors_total']}, nodes' CPU {cpu:.2f} s {extra}")
PY
}

case "$MODE" in
storm)
    DEVICES="${2:-10000}"
    SCENARIO=storm
    SETS=""
    for layout in "1 no" "3 yes"; do
        # shellcheck disable=SC2086
        start $layout
        taskset -c "$SIM_CPUS" "$SIM" bench --scenario storm --devices "$DEVICES" --duration 20 --server "$TARGET" \
            --json "$WORK/run/report.json" --quiet >/dev/null 2>"$WORK/run/sim.log"
        report "storm, ${layout%% *} node(s)" "$(cpu_secs "${NODE_PIDS[@]}")" "(nginx: $(cpu_secs $(pgrep -f "nginx: worker")) s)"
        stop_all
    done
    ;;
forward)
    DEVICES="${2:-2000}"
    SCENARIO=cluster
    SETS=""
    for rebind in 0 10; do
        start 3 yes
        taskset -c "$SIM_CPUS" "$SIM" bench --scenario cluster --devices "$DEVICES" --duration 60 --server "$TARGET" \
            --set behaviour.send_interval_secs=1 --set behaviour.sensor_interval_ms=0 \
            --set behaviour.rebind_interval_secs=$rebind --set fleet.ramp_rate=500 \
            --json "$WORK/run/report.json" --quiet >/dev/null 2>"$WORK/run/sim.log"
        cpu="$(cpu_secs "${NODE_PIDS[@]}")"
        forwarded="$(for n in 1 2 3; do python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(f"http://127.0.0.1{sys.argv[1]}:8080/metrics", timeout=10).read().decode())' "$n"; done \
            | awk '/^lwm2m_cluster_datagrams_total\{kind="(forwarded|answered_through)"\}/ {s += $2} END {print s + 0}')"
        report "rebind every ${rebind}s" "$cpu" "(nginx: $(cpu_secs $(pgrep -f "nginx: worker")) s; records forwarded + answers relayed: $forwarded)"
        stop_all
    done
    ;;
*)
    echo "usage: $0 storm|forward [DEVICES]"
    exit 2
    ;;
esac
