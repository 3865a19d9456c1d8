#!/usr/bin/env bash
# Several nodes: three lwm2m-server nodes (config/cluster/node{1,2,3}.toml, on 127.0.0.11-13)
# sharing one Redis (Debian redis-server) behind nginx's UDP balancer (config/cluster/nginx.conf: `hash $remote_addr$remote_port
# consistent`, Debian nginx + libnginx-mod-stream), bridged to one mosquitto, with the
# simulator's `cluster` scenario: DTLS PSK devices with Connection IDs that change their
# source port every 5 s, so the balancer moves them between nodes mid-session.
#
#   0. Credentials imported through node 1 reach every node (the admin log in Redis), node 3
#      started only afterwards included; a revocation asked of node 2 too.
#   1. The balancer spread the handshakes over the three nodes.
#   2. Every device registered once and kept its session: one handshake per device, no
#      error, no timeout, no second Register, although its records reached other nodes.
#   3. Records reached other nodes and were forwarded to their session's node (each
#      forwarded record taken there; no internal datagram refused).
#   4. Every Send a device saw acknowledged reached MQTT, whichever node it went through.
#
# Each case prints PASS or FAIL; the last line is "N passed, M failed".
# Environment: LWM2M_SERVER=path uses that server binary instead of `cargo build`;
# LWM2M_CLIENT_SIM=path the simulator; DEVICES (300) and DURATION (40) override the
# scenario's; KEEP_WORK=dir keeps the logs.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
source "$ROOT/interop/lib.sh"

DEVICES="${DEVICES:-300}"
DURATION="${DURATION:-40}"

ensure_mosquitto
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
# The stream module: built in, or a dynamic module in nginx's modules directory (Debian:
# libnginx-mod-stream). Sets LOAD_STREAM to the load_module line nginx.conf needs, if any.
find_stream() {
    local v modules
    v="$("$NGINX" -V 2>&1)" || return 1
    if echo "$v" | grep -q -- '--with-stream\( \|$\)'; then
        LOAD_STREAM=""
        return 0
    fi
    modules="$(echo "$v" | sed -n 's/.*--modules-path=\([^ ]*\).*/\1/p')"
    [ -f "${modules:-/usr/lib/nginx/modules}/ngx_stream_module.so" ] || return 1
    LOAD_STREAM="load_module ${modules:-/usr/lib/nginx/modules}/ngx_stream_module.so;"
}
if [ ! -x "$NGINX" ] || ! find_stream; then
    echo "nginx or its stream module missing: installing nginx libnginx-mod-stream"
    apt-get update && RUNLEVEL=1 apt-get install -y nginx libnginx-mod-stream
    NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
    find_stream || { echo "FAIL: nginx with its stream module"; echo "0 passed, 1 failed"; exit 1; }
fi

REDIS="$(command -v redis-server || echo /usr/bin/redis-server)"
if [ ! -x "$REDIS" ]; then
    echo "redis-server missing: installing redis-server"
    apt-get update && RUNLEVEL=1 apt-get install -y redis-server
    REDIS="$(command -v redis-server || echo /usr/bin/redis-server)"
fi

server_binary
if [ -n "${LWM2M_CLIENT_SIM:-}" ]; then
    SIM="$LWM2M_CLIENT_SIM"
else
    cargo build -p lwm2m-client-sim || { echo "FAIL: cargo build"; echo "0 passed, 1 failed"; exit 1; }
    SIM="${CARGO_TARGET_DIR:-$ROOT/target}/debug/lwm2m-client-sim"
fi

PIDS=()
finish() {
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    keep_work
    cleanup
}
trap finish EXIT

# --- the broker, the configuration, the credentials ------------------------------------------
# UDP ports free now (the balancer, the nodes' DTLS and internal ports), and TCP ones.
MQTT_PORT="$(free_port)"
REDIS_PORT="$(free_port)"
HTTP_PORT="$(free_port)"
BALANCER_PORT="$(free_udp_port)"
COAPS_PORT="$(free_udp_port)"
INTERNAL_PORT="$(free_udp_port)"
cat >"$WORK/mosquitto.conf" <<CONF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
user $(id -un)
log_dest file $WORK/mosquitto.log
CONF
timeout -k 10 900 "$MOSQUITTO" -c "$WORK/mosquitto.conf" >>"$WORK/mosquitto.out" 2>&1 &
PIDS+=($!)
timeout -k 10 900 "$REDIS" --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$WORK" >"$WORK/redis.log" 2>&1 &
PIDS+=($!)

# The example's configuration, on the ports chosen above.
ports() {
    sed -e "s/127.0.0.1:1883/127.0.0.1:$MQTT_PORT/" -e "s/127.0.0.1:6379/127.0.0.1:$REDIS_PORT/" -e "s/:5684\([\";]\)/:$COAPS_PORT\1/g" \
        -e "s/:5690\"/:$INTERNAL_PORT\"/g" -e "s/:8080\"/:$HTTP_PORT\"/g" "$@"
}
for n in 1 2 3; do
    ports "$ROOT/config/cluster/node$n.toml" >"$WORK/node$n.toml"
done
ports -e "s/listen 127.0.0.1:5684 udp/listen 127.0.0.1:$BALANCER_PORT udp/" \
    -e "s#^load_module .*#$LOAD_STREAM#" "$ROOT/config/cluster/nginx.conf" >"$WORK/nginx.conf"
python3 -c 'import secrets; print(secrets.token_hex(32))' >"$WORK/cluster.secret"
python3 -c 'import secrets; print(secrets.token_hex(32))' >"$WORK/secrets.key"
chmod 600 "$WORK/secrets.key"

for port in "$MQTT_PORT" "$REDIS_PORT"; do
    for _ in $(seq 1 100); do
        python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$port" 2>/dev/null && break
        sleep 0.1
    done
done
timeout -k 10 300 mosquitto_sub -p "$MQTT_PORT" -V mqttv5 -q 1 -t 'lwm2m/+/up/send' >"$WORK/sends.txt" 2>>"$WORK/sub.log" &
PIDS+=($!)

(cd "$WORK" && "$SIM" credentials --scenario cluster --devices "$DEVICES" --out keys.csv) >"$WORK/credentials.log" 2>&1 \
    || { cat "$WORK/credentials.log"; echo "FAIL: credentials"; echo "0 passed, 1 failed"; exit 1; }

# --- the nodes and the balancer ------------------------------------------------------------
NODE_PIDS=()
start_node() { # start_node N: starts node N and waits until it serves DTLS
    local n="$1"
    (cd "$WORK" && RUST_LOG="${RUST_LOG:-info}" exec timeout -k 10 900 "$SERVER" --config "node$n.toml") >"$WORK/node$n.out" 2>"$WORK/node$n.log" &
    local pid=$!
    PIDS+=($pid)
    NODE_PIDS+=($pid)
    for _ in $(seq 1 300); do
        grep -q "^listening on coaps://127.0.0.1$n:$COAPS_PORT" "$WORK/node$n.out" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if ! grep -q "^listening on coaps://127.0.0.1$n:$COAPS_PORT" "$WORK/node$n.out"; then
        echo "FAIL: node $n did not start"
        tail -20 "$WORK/node$n.log"
        echo "0 passed, 1 failed"
        exit 1
    fi
}
listed() { # listed NODE: the devices the node holds credentials for
    (cd "$WORK" && timeout 60 "$SERVER" --config "node$1.toml" device list 2>>"$WORK/list.err" | grep -v '^denied' | grep -c 'cluster-')
}
start_node 1
start_node 2
# The fleet's credentials, given to node 1 only (through its admin socket): the cluster's
# admin log in Redis takes them to node 2, running, and to node 3 when it starts.
(cd "$WORK" && timeout 120 "$SERVER" --config node1.toml device import keys.csv) >"$WORK/import.log" 2>&1 \
    || { cat "$WORK/import.log"; echo "FAIL: device import through node 1"; echo "0 passed, 1 failed"; exit 1; }
start_node 3
for _ in $(seq 1 100); do
    [ "$(listed 3)" = "$DEVICES" ] && [ "$(listed 2)" = "$DEVICES" ] && break
    sleep 0.1
done
LISTED_BEFORE="$(listed 1) $(listed 2) $(listed 3)"
(cd "$WORK" && exec timeout -k 10 900 "$NGINX" -p "$WORK" -c "$WORK/nginx.conf") >"$WORK/nginx.out" 2>&1 &
NGINX_PID=$!
PIDS+=($NGINX_PID)
sleep 1
if ! kill -0 "$NGINX_PID" 2>/dev/null; then
    echo "FAIL: nginx did not start"; cat "$WORK/nginx.out" "$WORK/nginx-error.log" 2>/dev/null; echo "0 passed, 1 failed"; exit 1
fi

# --- the fleet -----------------------------------------------------------------------------
timeout -k 10 $((DURATION + 180)) "$SIM" bench --scenario cluster --devices "$DEVICES" --duration "$DURATION" \
    --server "127.0.0.1:$BALANCER_PORT" --json "$WORK/report.json" --quiet >"$WORK/sim.out" 2>"$WORK/sim.log"
SIM_STATUS=$?
sleep 2 # the bridges' last messages
# A revocation asked of node 2 reaches every node.
(cd "$WORK" && timeout 60 "$SERVER" --config node2.toml device revoke --endpoint cluster-00001) >"$WORK/revoke.log" 2>&1
REVOKE_STATUS=$?
sleep 1
LISTED_AFTER="$(listed 1) $(listed 2) $(listed 3)"

metrics() { # metrics NODE: the node's /metrics text
    python3 - "$1" "$HTTP_PORT" <<'PY'
import sys, urllib.request
print(urllib.request.urlopen(f"http://127.0.0.1{sys.argv[1]}:{sys.argv[2]}/metrics", timeout=10).read().decode())
PY
}
for n in 1 2 3; do
    metrics "$n" >"$WORK/metrics$n.txt" 2>>"$WORK/metrics.err"
done

python3 - "$WORK" "$DEVICES" "$SIM_STATUS" "$LISTED_BEFORE" "$LISTED_AFTER" "$REVOKE_STATUS" <<'PY'
import json, re, sys
work, devices, sim_status = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
before, after = sys.argv[4].split(), sys.argv[5].split()
revoke_status = int(sys.argv[6])
passed = failed = 0
def check(ok, name, detail):
    global passed, failed
    if ok:
        print(f"PASS: {name}"); passed += 1
    else:
        print(f"FAIL: {name}: {detail}"); failed += 1
def value(text, name, labels=""):
    total = 0.0
    for line in text.splitlines():
        m = re.match(r'^(\w+)(\{[^}]*\})? ([0-9.e+-]+)$', line)
        if m and m.group(1) == name and labels in (m.group(2) or ""):
            total += float(m.group(3))
    return int(total)
m = {n: open(f"{work}/metrics{n}.txt").read() for n in (1, 2, 3)}
try:
    r = json.load(open(f"{work}/report.json"))
except Exception as e:
    r = {}
    check(False, "the simulator's report", f"exit {sim_status}: {e}")
get = lambda k: r.get(k, -1)

check(before == [str(devices)] * 3,
      f"credentials imported through node 1 reached every node through the Redis admin log (node 3 started after the import): {before}",
      open(f"{work}/import.log").read()[-500:])
check(revoke_status == 0 and after == [str(devices - 1)] * 3,
      f"a revocation asked of node 2 reached every node: {after}",
      open(f"{work}/revoke.log").read()[-500:])

hs = {n: value(m[n], "dtls_handshakes_total", 'result="ok"') for n in m}
check(all(v > 0 for v in hs.values()), "the balancer spread the handshakes over the three nodes", hs)

check(sim_status == 0 and get("errors_total") == 0 and get("timeouts") == 0
      and get("registered") == devices and get("registrations") == devices
      and get("handshakes") == devices and sum(hs.values()) == devices and get("rebinds") > 0,
      f"{devices} devices registered once, one handshake each, no error across {get('rebinds')} rebindings",
      {k: get(k) for k in ("errors_total", "timeouts", "registered", "registrations", "handshakes", "rebinds", "updates")} | {"handshakes_by_node": hs})

kind = lambda n, k: value(m[n], "lwm2m_cluster_datagrams_total", f'kind="{k}"')
fwd = {n: kind(n, "forwarded") for n in m}
taken = {n: kind(n, "taken") for n in m}
rejected = sum(kind(n, "rejected") for n in m)
through = {n: kind(n, "answered_through") for n in m}
sent_for = {n: kind(n, "sent_for") for n in m}
# Loopback UDP may drop a datagram now and then (a device retransmits): allow 1 %.
near = lambda got, sent: sent > 0 and 0.99 * sent <= got <= sent
check(near(sum(taken.values()), sum(fwd.values())) and rejected == 0
      and near(sum(sent_for.values()), sum(through.values())),
      f"records forwarded to their session's node: {sum(fwd.values())} (by node {fwd}), answers sent back through the receiving node: {sum(through.values())}",
      {"forwarded": fwd, "taken": taken, "answered_through": through, "sent_for": sent_for, "rejected": rejected})

sends_server = sum(value(m[n], "lwm2m_send_total") for n in m)
lines = [l for l in open(f"{work}/sends.txt").read().splitlines() if l.strip()]
check(get("sends_acknowledged") > 0 and sends_server == get("sends_acknowledged") and len(lines) == sends_server,
      f"every acknowledged Send reached MQTT: {len(lines)} of {get('sends_acknowledged')}",
      {"acknowledged": get("sends_acknowledged"), "server": sends_server, "mqtt": len(lines)})
dtls_in = [value(m[n], "coap_datagrams_received_total", 'transport="dtls"') for n in m]
print(f"figures: registration p99 {r.get('registration_latency_us', {}).get('p99')} us, "
      f"forwarded {sum(fwd.values())}, answered through {sum(through.values())}, "
      f"DTLS datagrams in by node {dtls_in}")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
