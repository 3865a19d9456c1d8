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
# Then the nodes fail under a queue-mode fleet (scenario `cluster-failover`: 3,000 devices
# waking every 20 s, rebinding every 30 s, commands over MQTT throughout): node 2 is killed
# (kill -9) at 60 s and restarted at 120 s, node 3 is stopped (SIGSTOP) at 130 s for 30 s.
#   5. Every device stayed registered: through the kill and the restart no error, no second
#      Register, no Update answered 4.04 (the devices of the dead node were taken over by
#      the others); after the stop, no Update refused (a device whose balancer path led to the
#      stopped node may register again: nginx has no health check for UDP).
#   6. Every command published was answered once (one in flight on a node that lost its
#      device, 5.04) or is still queued; none twice (a result delivered again by MQTT keeps its
#      msgId); commands went to one node each (shared subscription).
#   7. Every Send a device saw acknowledged reached MQTT.
#   8. The stopped node, resumed, acted on none of the devices taken over meanwhile: it
#      handed them over, and every write it tried for them was refused.
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
FAILOVER_DEVICES="${FAILOVER_DEVICES:-3000}"
FAILOVER_DURATION="${FAILOVER_DURATION:-200}"

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
timeout -k 10 1800 "$MOSQUITTO" -c "$WORK/mosquitto.conf" >>"$WORK/mosquitto.out" 2>&1 &
PIDS+=($!)
timeout -k 10 1800 "$REDIS" --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$WORK" >"$WORK/redis.log" 2>&1 &
PIDS+=($!)

# The example's configuration, on the ports chosen above.
ports() {
    sed -e "s/127.0.0.1:1883/127.0.0.1:$MQTT_PORT/" -e "s/127.0.0.1:6379/127.0.0.1:$REDIS_PORT/" -e "s/:5684\([\";]\)/:$COAPS_PORT\1/g" \
        -e "s/:5690\"/:$INTERNAL_PORT\"/g" -e "s/:8080\"/:$HTTP_PORT\"/g" "$@"
}
for n in 1 2 3; do
    ports "$ROOT/config/cluster/node$n.toml" >"$WORK/node$n.toml"
    # The failover fleet's devices stay awake 5 s after their last exchange.
    printf '\n[queue]\nawake_window_secs = 5\n' >>"$WORK/node$n.toml"
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
declare -A NODE_PID
start_node() { # start_node N: starts node N and waits until it serves DTLS
    local n="$1"
    (cd "$WORK" && RUST_LOG="${RUST_LOG:-info}" exec timeout -k 10 1800 "$SERVER" --config "node$n.toml") >"$WORK/node$n.out" 2>"$WORK/node$n.log" &
    local pid=$!
    PIDS+=($pid)
    NODE_PIDS+=($pid)
    NODE_PID[$n]=$pid
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
listed() { # listed NODE [PREFIX]: the devices (named PREFIX..., cluster- by default) the node holds credentials for
    (cd "$WORK" && timeout 60 "$SERVER" --config "node$1.toml" device list 2>>"$WORK/list.err" | grep -v '^denied' | grep -c "${2:-cluster-}")
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
(cd "$WORK" && exec timeout -k 10 1800 "$NGINX" -p "$WORK" -c "$WORK/nginx.conf") >"$WORK/nginx.out" 2>&1 &
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

PYTHONPATH="$ROOT/interop" python3 - "$WORK" "$DEVICES" "$SIM_STATUS" "$LISTED_BEFORE" "$LISTED_AFTER" "$REVOKE_STATUS" <<'PY'
import sys
from cluster_checks import Checks, value, report
work, devices, sim_status = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
before, after = sys.argv[4].split(), sys.argv[5].split()
revoke_status = int(sys.argv[6])
checks = Checks()
check = checks.check
m = {n: open(f"{work}/metrics{n}.txt").read() for n in (1, 2, 3)}
r = report(f"{work}/report.json", sim_status, "the simulator's report", checks)
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
open(f"{work}/phase_a", "w").write(f"{checks.passed} {checks.failed}\n")
PY
read -r PASSED_A FAILED_A <"$WORK/phase_a" 2>/dev/null || { PASSED_A=0; FAILED_A=1; }

# --- failover: a node killed and restarted, another stopped and resumed ----------------------
node_pids() { # node_pids N: the processes of node N this suite started (its timeout wrapper and the server)
    echo "${NODE_PID[$1]}" $(pgrep -P "${NODE_PID[$1]}" || true)
}
(cd "$WORK" && "$SIM" credentials --scenario cluster-failover --devices "$FAILOVER_DEVICES" --out failover.csv) >>"$WORK/credentials.log" 2>&1
(cd "$WORK" && timeout 300 "$SERVER" --config node1.toml device import failover.csv) >"$WORK/import-failover.log" 2>&1
for _ in $(seq 1 300); do
    [ "$(listed 2 failover-)" = "$FAILOVER_DEVICES" ] && [ "$(listed 3 failover-)" = "$FAILOVER_DEVICES" ] && break
    sleep 0.2
done
timeout -k 10 $((FAILOVER_DURATION + 300)) mosquitto_sub -p "$MQTT_PORT" -V mqttv5 -q 1 -t 'lwm2m/+/up/send' \
    >"$WORK/failover-sends.txt" 2>>"$WORK/sub.log" &
PIDS+=($!)
# The commands and their results as the broker carried them.
timeout -k 10 $((FAILOVER_DURATION + 300)) mosquitto_sub -p "$MQTT_PORT" -V mqttv5 -q 1 -v \
    -t 'lwm2m/+/dn/#' -t 'lwm2m/+/up/resp' >"$WORK/failover-commands.txt" 2>>"$WORK/sub.log" &
PIDS+=($!)
sleep 0.5
RUST_LOG=info timeout -k 10 $((FAILOVER_DURATION + 300)) "$SIM" bench --scenario cluster-failover --devices "$FAILOVER_DEVICES" \
    --duration "$FAILOVER_DURATION" --server "127.0.0.1:$BALANCER_PORT" --set "backend.broker=\"127.0.0.1:$MQTT_PORT\"" \
    --json "$WORK/failover.json" --quiet >"$WORK/failover-sim.out" 2>"$WORK/failover-sim.log" &
FLEET=$!
PIDS+=($FLEET)
T0=$(date +%s.%N)
at() { # at SECONDS: sleeps until SECONDS after the fleet started
    python3 -c 'import sys, time; time.sleep(max(0.0, float(sys.argv[1]) + float(sys.argv[2]) - time.time()))' "$T0" "$1"
}
at 60
KILLED_AT=$(date +%s.%N)
for p in $(node_pids 2); do kill -9 "$p" 2>/dev/null; done
echo "node 2 killed (kill -9) at 60 s" >>"$WORK/failover-events.log"
at 120
mv "$WORK/node2.out" "$WORK/node2-first.out"
mv "$WORK/node2.log" "$WORK/node2-first.log"
start_node 2
echo "node 2 restarted at 120 s" >>"$WORK/failover-events.log"
at 130
for p in $(node_pids 3); do kill -STOP "$p" 2>/dev/null; done
STOPPED_AT=$(date +%s.%N)
at 160
for p in $(node_pids 3); do kill -CONT "$p" 2>/dev/null; done
echo "node 3 stopped (SIGSTOP) from 130 s to 160 s" >>"$WORK/failover-events.log"
wait "$FLEET"
FLEET_STATUS=$?
sleep 3 # the bridges' last messages
for n in 1 2 3; do
    metrics "$n" >"$WORK/failover-metrics$n.txt" 2>>"$WORK/metrics.err"
done
# Commands still waiting in Redis for their devices' owner.
WAITING="$(python3 - "$REDIS_PORT" <<'PY'
import socket, sys
def cmd(s, *args):
    s.sendall(b"".join([b"*%d\r\n" % len(args)] + [b"$%d\r\n%s\r\n" % (len(a), a) for a in args]))
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
f = s.makefile("rb")
def reply():
    line = f.readline()
    t, rest = line[:1], line[1:].strip()
    if t in (b"+", b"-"): return rest
    if t == b":": return int(rest)
    if t == b"$":
        n = int(rest)
        if n < 0: return None
        data = f.read(n + 2)[:-2]
        return data
    if t == b"*":
        return [reply() for _ in range(int(rest))]
total, cursor = 0, b"0"
while True:
    cmd(s, b"SCAN", cursor, b"MATCH", b"lwm2m:{*}:cmds", b"COUNT", b"1000")
    cursor, keys = reply()
    for k in keys:
        cmd(s, b"LLEN", k)
        total += reply()
    if cursor == b"0":
        break
print(total)
PY
)"

PYTHONPATH="$ROOT/interop" python3 - "$WORK" "$FAILOVER_DEVICES" "$FLEET_STATUS" "$KILLED_AT" "$STOPPED_AT" "${WAITING:-0}" "$PASSED_A" "$FAILED_A" <<'PY'
import json, re, sys, datetime
from cluster_checks import Checks, value, report
work, devices, status = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
killed_at, stopped_at, waiting = float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
checks = Checks(int(sys.argv[7]), int(sys.argv[8]))
check = checks.check
m = {n: open(f"{work}/failover-metrics{n}.txt").read() for n in (1, 2, 3)}
r = report(f"{work}/failover.json", status, "the failover run's report", checks)
get = lambda k: r.get(k, -1)
dev = lambda n, k: value(m[n], "lwm2m_cluster_devices_total", f'kind="{k}"')
taken = {n: dev(n, "taken_over") for n in m}
handed = {n: dev(n, "handed_over") for n in m}
refused = {n: dev(n, "writes_refused") for n in m}
registered = sum(value(m[n], "lwm2m_registered_clients") for n in m)
# The devices' errors until the stop, from the simulator's progress lines (every 5 s).
errors_before_stop, progress_lines = 0, 0
for line in open(f"{work}/failover-sim.log", errors="replace"):
    mm = re.match(r"^\S*?(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z.* errors (\d+)", re.sub(r"\x1b\[[0-9;]*m", "", line))
    if mm and datetime.datetime.fromisoformat(mm.group(1)).replace(tzinfo=datetime.timezone.utc).timestamp() < stopped_at:
        errors_before_stop = int(mm.group(2))
        progress_lines += 1
errors = r.get("errors", {})
refused_updates = sum(v for k, v in errors.items() if k.startswith("update: the server answered"))
again = errors.get("registered_again", 0)
check(status == 0 and progress_lines > 0 and errors_before_stop == 0 and refused_updates == 0 and get("registered") == devices
      and get("registrations") == devices and registered == devices
      and taken[1] + taken[3] > 0 and get("updates") > 0,
      f"{devices} devices stayed registered: through the kill and the restart no error, no second Register, no Update "
      f"refused; {sum(taken.values())} taken over (by node {taken}), registered now {registered}; after the stop, "
      f"{again} devices whose balancer path led to the stopped node registered again when it came back",
      {k: get(k) for k in ("errors_total", "errors", "registered", "registrations", "updates", "timeouts", "handshakes")}
      | {"taken_over": taken, "registered_by_nodes": registered, "device_errors_before_the_stop": errors_before_stop})

sent = get("commands_sent")
pending = sum(value(m[n], "lwm2m_commands_pending") for n in m)
# The broker's view: each command's reqID, and the results carrying it (a result the
# broker or a restarted node delivered again has the same msgId: MQTT's at-least-once).
asked, results = {}, {}
for line in open(f"{work}/failover-commands.txt", errors="replace"):
    topic, _, payload = line.rstrip("\n").partition(" ")
    try:
        body = json.loads(payload)
    except ValueError:
        continue
    req = body.get("reqID")
    if "/dn" in topic:
        asked[req] = topic.split("/")[1]
    elif topic.endswith("/up/resp"):
        results.setdefault(req, {})[body.get("msgId")] = body.get("data", {}).get("code")
twice = {r: (asked.get(r), list(c.values())) for r, c in results.items() if len(c) > 1}
never = {r: ep for r, ep in asked.items() if r not in results}
codes = [c for by_msg in results.values() for c in by_msg.values()]
timed_out = sum(1 for c in codes if c == "5.04")
other = [c for c in codes if not (c or "").startswith("2.") and c != "5.04"]
print(f"commands at the broker: {len(asked)} published, {len(results)} answered, "
      f"answered twice {list(twice.items())[:8]}, never answered {list(never.items())[:8]}")
check(sent > 0 and len(asked) == sent and not twice and not other and len(never) <= pending + waiting,
      f"{len(asked)} commands published: each answered once ({timed_out} of them 5.04: in flight on a node that "
      f"lost its device), none twice, {len(never)} still queued (at the nodes: {pending}, in Redis: {waiting}); "
      f"{get('results_redelivered')} results delivered again under the same msgId",
      {"sent": sent, "at the broker": len(asked), "twice": list(twice.items())[:10], "other codes": other[:10],
       "never answered": list(never.items())[:10], "pending": pending, "waiting": waiting})

lines = [l for l in open(f"{work}/failover-sends.txt").read().splitlines() if "failover-" in l]
check(get("sends_acknowledged") > 0 and len(lines) >= get("sends_acknowledged"),
      f"every Send a device saw acknowledged reached MQTT: {len(lines)} for {get('sends_acknowledged')}",
      {"acknowledged": get("sends_acknowledged"), "mqtt": len(lines)})

fenced = any("stopped for a while" in l for l in open(f"{work}/node3.log", errors="replace"))
check(fenced and handed[3] > 0 and taken[1] + taken[2] > 0,
      f"the node stopped for 30 s acted on no device until it had checked which were still its own, and let go of "
      f"the {handed[3]} taken over meanwhile ({refused[3]} of its writes refused)",
      {"fenced": fenced, "handed_over": handed, "writes_refused": refused, "taken_over": taken})

# Figures: when each node took over its last device after the kill, from the nodes' logs.
def takeovers(n):
    out = []
    for line in open(f"{work}/node{n}.log", errors="replace"):
        if "taken over from the shared store" in line:
            t = re.match(r"^\S*?(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z", re.sub(r"\x1b\[[0-9;]*m", "", line))
            if t:
                out.append(datetime.datetime.fromisoformat(t.group(1)).replace(tzinfo=datetime.timezone.utc).timestamp())
    return out
after_kill = [t for n in (1, 3) for t in takeovers(n) if killed_at <= t < killed_at + 60]
after_stop = [t for n in (1, 2) for t in takeovers(n) if stopped_at <= t < stopped_at + 30]
print(f"figures: after the kill {len(after_kill)} devices taken over, the last {max(after_kill) - killed_at if after_kill else -1:.1f} s after it; "
      f"during the stop {len(after_stop)}, the last {max(after_stop) - stopped_at if after_stop else -1:.1f} s after it; "
      f"handshakes {get('handshakes')} for {devices} devices; registration p99 {r.get('registration_latency_us', {}).get('p99')} us; "
      f"command p99 {r.get('command_latency_us', {}).get('p99')} us")
print(f"{checks.passed} passed, {checks.failed} failed")
sys.exit(1 if checks.failed else 0)
PY
