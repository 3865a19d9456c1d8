#!/usr/bin/env bash
# The embedded MQTT broker (rmqtt, `[mqtt] embedded_broker`) against clients we did not write:
# mosquitto's command-line clients (Debian mosquitto-clients) with their defaults (MQTT 3.1.1)
# and with -V 5, paho-mqtt (PyPI, installed into interop/.venv) through
# interop/mqtt_broker_check.py, a raw CoAP device (interop/coap_device.py) whose registration
# the bridge publishes through the same broker, and mosquitto_passwd / mosquitto itself for
# the password file.
#
#   1. Default configuration (no password, no TLS): a 3.1.1 subscriber gets what an MQTT 5
#      publisher sends and the other way round; a device's Register reaches the 3.1.1
#      subscriber on lwm2m/<ep>/up/register.
#   2. The paho-mqtt checks (QoS 0-2 across versions, wildcards, persistent sessions, shared
#      subscriptions, wills, message expiry), one PASS/FAIL line each, and its round-trip
#      latency in MQTT 5 and 3.1.1 (INFO lines, not asserted).
#   3. `embedded_password_file`, made by mosquitto_passwd (alice) and `lwm2m-server
#      mqtt-passwd` (bob): both users get in with 3.1.1 and 5; no password and a wrong one are
#      refused, with the WARN line "embedded MQTT broker refused a client" naming the user;
#      mosquitto itself accepts the line lwm2m-server wrote; the bridge still publishes; the
#      paho checks again as alice, with its refusal checks.
#   4. `embedded_tls_bind`/`_cert`/`_key` with a CA and certificate made here by openssl:
#      3.1.1 and 5 subscribers over TLS get what a plain-port publisher sends; a client that
#      does not trust the CA fails, and the server logs the failed handshake; the paho checks
#      over TLS.
#
# Each phase starts the server anew (SIGTERM, which must end it within 15 s, while clients are
# still connected) on the same ports, as an operator's restart does: that the broker port can
# be bound again at once is a case of its own; if it cannot, the phase runs on fresh ports.
#
# Each case prints PASS or FAIL; the last line is "N passed, M failed". Exits non-zero if any
# case failed. Every client call and background process runs under `timeout`.
#
# Environment: LWM2M_SERVER=path uses that server binary instead of `cargo build`;
# LATENCY_COUNT (1000) round trips per latency probe; KEEP_WORK=dir copies the work directory
# (server logs, subscriber output, certificates) there at the end.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
source "$ROOT/interop/lib.sh"

LATENCY_COUNT="${LATENCY_COUNT:-1000}"

ensure_mosquitto
if ! command -v mosquitto_passwd >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then
    echo "FAIL: mosquitto_passwd (Debian mosquitto) or openssl is missing"
    echo "0 passed, 1 failed"
    exit 1
fi

venv_with paho.mqtt.enums 'paho-mqtt>=2'

server_binary
DEVICE="$ROOT/interop/coap_device.py"
CHECK="$ROOT/interop/mqtt_broker_check.py"

# Background clients (subscribers, devices, mosquitto): the `timeout` processes, ended at exit.
BG_PIDS=()
stop_bg() {
    for p in "${BG_PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${BG_PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    BG_PIDS=()
}
finish() {
    stop_bg
    keep_work
    cleanup
}
trap finish EXIT

PWFILE="$WORK/passwd"
PKI="$WORK/pki"

# The same ports across the restarts.
COAP_PORT="$(free_port)"
MQTT_PORT="$(free_port)"
HTTP_PORT="$(free_port)"
TLS_PORT="$(free_port)"

# write_config [EXTRA_MQTT_LINES]: the embedded defaults, plus the given [mqtt] lines.
write_config() {
    cat >"$WORK/server.toml" <<TOML
[server]
coap_bind = ["127.0.0.1:$COAP_PORT"]
coaps_bind = []
data_dir = "$WORK/data"

[mqtt]
enabled = true
broker = "127.0.0.1:$MQTT_PORT"
${1:-}

# Bootstrap is tried in lwm2m_bootstrap.sh; here its fixed ports would only get in the way.
[bootstrap]
enabled = false

[http]
bind = "127.0.0.1:$HTTP_PORT"

[log]
level = "info"
TOML
}

# wait_grep PATTERN FILE SECONDS: until PATTERN (grep -E) matches a line of FILE.
wait_grep() {
    local end=$((SECONDS + $3))
    while [ "$SECONDS" -lt "$end" ]; do
        grep -qE -- "$1" "$2" 2>/dev/null && return 0
        sleep 0.1
    done
    grep -qE -- "$1" "$2" 2>/dev/null
}

# try_start: starts the server on $WORK/server.toml in the background and waits until it
# prints "listening on ADDR" (as lib.sh's start_server, but returns 1 instead of ending the
# suite when the server exits at start).
try_start() {
    RUST_LOG="${RUST_LOG:-info}" "$SERVER" --config "$WORK/server.toml" >"$WORK/server.out" 2>"$WORK/server.log" &
    SERVER_PID=$!
    for _ in $(seq 1 300); do
        grep -q '^listening on ' "$WORK/server.out" && break
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    ADDR="$(sed -n 's/^listening on //p' "$WORK/server.out" | head -n 1)"
    if [ -z "$ADDR" ]; then
        kill "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
        SERVER_PID=""
        return 1
    fi
}

# mqtt_lines MODE: the [mqtt] keys beyond the defaults for MODE (plain, passwords, tls).
mqtt_lines() {
    case "$1" in
        passwords) echo "embedded_password_file = \"$PWFILE\"" ;;
        tls) printf '%s\n' "embedded_password_file = \"$PWFILE\"" "embedded_tls_bind = \"127.0.0.1:$TLS_PORT\"" \
            "embedded_tls_cert = \"$PKI/server.pem\"" "embedded_tls_key = \"$PKI/server.key\"" ;;
    esac
}

# boot LABEL MODE: writes the configuration and starts the server, waits for its
# broker and the bridge's connection to it. A restart uses the broker port of the previous run,
# right after that run stopped with clients connected, as a restart by an operator or a
# service manager does; if the port cannot be bound, that is a FAIL and the server is started
# on fresh ports so that the cases after it still run.
RUN=0
boot() {
    local label="$1" mode="$2" name="server restarts on the same broker port right after a stop with MQTT clients connected"
    write_config "$(mqtt_lines "$mode")"
    if ! try_start; then
        if [ "$RUN" -gt 0 ] && grep -q 'Address already in use' "$WORK/server.log"; then
            fail "$name ($label)" "$(grep -m 1 'cannot listen' "$WORK/server.log" | sed 's/^ *//'); $(ss -tan 2>/dev/null | grep -c ":$MQTT_PORT .*TIME-WAIT\|TIME-WAIT.*:$MQTT_PORT ") connections to it in TIME-WAIT"
            mv "$WORK/server.log" "$WORK/server.$RUN-$label-bind-failed.log"
            MQTT_PORT="$(free_port)"
            TLS_PORT="$(free_port)"
            write_config "$(mqtt_lines "$mode")"
            try_start || true
        fi
        if [ -z "$SERVER_PID" ]; then
            fail "server ($label) starts" "$(grep -v '^ ' "$WORK/server.log" | tail -n 5 | tr '\n' '|')"
            return 1
        fi
    elif [ "$RUN" -gt 0 ]; then
        pass "$name ($label)"
    fi
    if ! wait_grep 'MQTT bridge connected' "$WORK/server.log" 20; then
        fail "server ($label): the bridge connects to the embedded broker" "$(tail -n 5 "$WORK/server.log" | tr '\n' '|')"
        return 1
    fi
    echo "server ($label) at $ADDR, embedded broker on 127.0.0.1:$MQTT_PORT"
}

# halt LABEL: SIGTERM to the server, which must be gone within 15 s; then the clients. The
# logs are renamed so that the next start has fresh ones.
halt() {
    local label="$1"
    kill "$SERVER_PID" 2>/dev/null
    for _ in $(seq 1 150); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        fail "server ($label) stops on SIGTERM" "still running after 15 s; $(tail -n 3 "$WORK/server.log" | tr '\n' '|')"
        kill -9 "$SERVER_PID" 2>/dev/null
    fi
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=""
    stop_bg
    RUN=$((RUN + 1))
    mv "$WORK/server.log" "$WORK/server.$RUN-$label.log"
    mv "$WORK/server.out" "$WORK/server.$RUN-$label.out"
}

# sub NAME PORT ARGS...: mosquitto_sub on lwm2m/# (-v: "topic payload" lines) in the
# background, its output in $WORK/NAME.sub.
sub() {
    local name="$1" port="$2"
    shift 2
    timeout 300 mosquitto_sub -h 127.0.0.1 -p "$port" -i "$name" -t 'lwm2m/#' -v "$@" >"$WORK/$name.sub" 2>"$WORK/$name.err" &
    BG_PIDS+=($!)
}

# pub ARGS...: one mosquitto_pub; its exit status.
pub() {
    timeout 10 mosquitto_pub -h 127.0.0.1 -q 1 "$@" >>"$WORK/pub.out" 2>&1
}

# delivered NAME TAG PUB_ARGS...: publishes "TAG-i" on lwm2m/probe/NAME with the given
# mosquitto_pub options until subscriber NAME has one (the first ones may precede its
# SUBSCRIBE), then checks that the next one, "TAG-final", arrives too.
delivered() {
    local name="$1" tag="$2" i
    shift 2
    for i in $(seq 1 40); do
        pub -t "lwm2m/probe/$name" -m "$tag-$i" "$@"
        sleep 0.25
        grep -q "^lwm2m/probe/$name $tag-" "$WORK/$name.sub" && break
    done
    grep -q "^lwm2m/probe/$name $tag-" "$WORK/$name.sub" || return 1
    pub -t "lwm2m/probe/$name" -m "$tag-final" "$@" || return 1
    wait_grep "^lwm2m/probe/$name $tag-final\$" "$WORK/$name.sub" 5
}

sub_error() { # NAME: why a subscriber got nothing
    echo "subscriber: $(tr '\n' '|' <"$WORK/$1.err" | cut -c1-300); got $(wc -l <"$WORK/$1.sub") lines; pub: $(tail -n 2 "$WORK/pub.out" | tr '\n' '|')"
}

# device EP: a LwM2M device under `timeout` that registers (and then just answers); true
# once it says it registered.
device() {
    timeout 60 python3 "$DEVICE" --server "127.0.0.1:$COAP_PORT" --endpoint "$1" --count 0 --max-time 55 >"$WORK/$1.out" 2>&1 &
    BG_PIDS+=($!)
    wait_grep '^registered ' "$WORK/$1.out" 10
}

# register_reaches SUB EP: a device EP registers and its register message reaches SUB.
register_reaches() {
    local name="a LwM2M device's register reaches $1 on lwm2m/$2/up/register (the bridge publishes through the embedded broker)"
    device "$2" || true
    if wait_grep "^lwm2m/$2/up/register \{.*\"ep\":\"$2\"" "$WORK/$1.sub" 10; then
        pass "$name"
    else
        fail "$name" "device: $(tr '\n' '|' <"$WORK/$2.out"); $(sub_error "$1")"
    fi
}

# paho LABEL ARGS...: interop/mqtt_broker_check.py check; each of its PASS/FAIL lines is a
# case here.
paho() {
    local label="$1" out status line n=0
    shift
    out="$(timeout 150 "$PY" "$CHECK" check --port "$MQTT_PORT" "$@" 2>&1)"
    status=$?
    while IFS= read -r line; do
        case "$line" in
            PASS:*) echo "PASS: paho ($label):${line#PASS:}"; PASSED=$((PASSED + 1)); n=$((n + 1)) ;;
            FAIL:*) echo "FAIL: paho ($label):${line#FAIL:}"; FAILED=$((FAILED + 1)); n=$((n + 1)) ;;
            *[0-9]\ passed,\ [0-9]*\ failed) ;;
            *) echo "INFO: paho ($label): $line" ;;
        esac
    done <<<"$out"
    if [ "$n" -eq 0 ] || { [ "$status" -ne 0 ] && ! grep -q '^FAIL:' <<<"$out"; }; then
        fail "paho ($label) checks ran" "exit $status after $n checks"
    fi
}

latency() { # LABEL ARGS...
    local label="$1" out
    shift
    out="$(timeout 120 "$PY" "$CHECK" latency --port "$MQTT_PORT" --count "$LATENCY_COUNT" "$@" 2>&1 | tail -n 1)"
    echo "INFO: paho QoS 1 round trip ($label): $out"
}

# refusal_logged PATTERN: a refusal line in the current server log matching PATTERN.
refusal_logged() {
    wait_grep "WARN.*embedded MQTT broker refused a client.*$1|WARN.*$1.*embedded MQTT broker refused a client" "$WORK/server.log" 5
}

# refusal_lines CLIENT_ID: what the log says about that client's refusal, for a FAIL line:
# our line, else rmqtt's own (INFO).
refusal_lines() {
    local ours
    ours="$(grep 'refused a client' "$WORK/server.log" | grep -- "$1" | sed 's/^[^ ]* *//' | cut -c1-250 | tr '\n' '|')"
    if [ -n "$ours" ]; then
        echo "refusal lines: $ours"
    else
        echo "no \"refused a client\" line for $1 ($(grep -c 'refused a client' "$WORK/server.log") for others); rmqtt's own: $(grep -m 1 -- "$1.*Connection Refused" "$WORK/server.log" | sed 's/^[^ ]* *//' | cut -c1-250)"
    fi
}

# ============================================================================================
# 1. Default embedded configuration: no password, no TLS.
boot "default config" plain || { summary; exit 1; }

name="mosquitto_sub (MQTT 3.1.1, its default) gets what mosquitto_pub -V 5 publishes"
sub sub311 "$MQTT_PORT"
if delivered sub311 from-v5 -p "$MQTT_PORT" -V 5; then
    pass "$name"
else
    fail "$name" "$(sub_error sub311)"
fi

name="mosquitto_sub -V 5 gets what mosquitto_pub (MQTT 3.1.1) publishes"
sub sub5 "$MQTT_PORT" -V 5
if delivered sub5 from-v311 -p "$MQTT_PORT"; then
    pass "$name"
else
    fail "$name" "$(sub_error sub5)"
fi

register_reaches sub311 dev-plain

# ============================================================================================
# 2. paho-mqtt, MQTT 3.1.1 and 5.
paho "no password"
latency "MQTT 5, $LATENCY_COUNT" --version 5
latency "MQTT 3.1.1, $LATENCY_COUNT" --version 3

name="no panic in the server log (default config)"
if ! grep -qi 'panicked' "$WORK/server.log"; then pass "$name"; else fail "$name" "$(grep -i -m 3 'panicked' "$WORK/server.log")"; fi
halt default

# ============================================================================================
# 3. A password file: alice by mosquitto_passwd, bob by lwm2m-server mqtt-passwd.
mosquitto_passwd -c -b "$PWFILE" alice secret1
name="lwm2m-server mqtt-passwd adds a user to a mosquitto_passwd file"
if printf 'secret2\n' | timeout 30 "$SERVER" mqtt-passwd "$PWFILE" bob >"$WORK/mqtt-passwd.out" 2>&1 \
    && grep -q '^alice:\$7\$' "$PWFILE" && grep -q '^bob:\$7\$' "$PWFILE"; then
    pass "$name"
else
    fail "$name" "$(tr '\n' '|' <"$WORK/mqtt-passwd.out"); file: $(cut -d: -f1 "$PWFILE" | tr '\n' ' ')"
fi

# mosquitto itself reads the file lwm2m-server wrote.
name="mosquitto 2 logs bob in with the line lwm2m-server mqtt-passwd wrote"
MOSQ_PORT="$(free_port)"
cat >"$WORK/mosquitto.conf" <<CONF
listener $MOSQ_PORT 127.0.0.1
allow_anonymous false
password_file $PWFILE
user $(id -un)
log_dest file $WORK/mosquitto.log
CONF
timeout 60 "$MOSQUITTO" -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.out" 2>&1 &
MOSQ_PID=$!
BG_PIDS+=($MOSQ_PID)
for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$MOSQ_PORT") 2>/dev/null && break
    sleep 0.1
done
pub -p "$MOSQ_PORT" -u bob -P secret2 -t t -m bob
bob_rc=$?
pub -p "$MOSQ_PORT" -u bob -P wrong -t t -m bob
bob_wrong_rc=$?
kill "$MOSQ_PID" 2>/dev/null
wait "$MOSQ_PID" 2>/dev/null
if [ "$bob_rc" -eq 0 ] && [ "$bob_wrong_rc" -ne 0 ]; then
    pass "$name"
else
    fail "$name" "right password: exit $bob_rc, wrong one: exit $bob_wrong_rc; $(tr '\n' '|' <"$WORK/mosquitto.log" 2>/dev/null | cut -c1-300)"
fi

boot "password file" passwords || { summary; exit 1; }

name="alice: mosquitto_sub (MQTT 3.1.1) gets what mosquitto_pub -V 5 publishes"
sub alice311 "$MQTT_PORT" -u alice -P secret1
if delivered alice311 alice-v5 -p "$MQTT_PORT" -V 5 -u alice -P secret1; then
    pass "$name"
else
    fail "$name" "$(sub_error alice311)"
fi

name="alice: mosquitto_sub -V 5 gets what bob publishes with MQTT 3.1.1 and with -V 5"
sub alice5 "$MQTT_PORT" -V 5 -u alice -P secret1
if delivered alice5 bob-v311 -p "$MQTT_PORT" -u bob -P secret2 && delivered alice5 bob-v5 -p "$MQTT_PORT" -V 5 -u bob -P secret2; then
    pass "$name"
else
    fail "$name" "$(sub_error alice5)"
fi

name="bob: mosquitto_sub (MQTT 3.1.1) gets what alice publishes"
sub bob311 "$MQTT_PORT" -u bob -P secret2
if delivered bob311 alice-v311 -p "$MQTT_PORT" -u alice -P secret1; then
    pass "$name"
else
    fail "$name" "$(sub_error bob311)"
fi

# mosquitto_pub exits with the CONNACK's return code when the broker refuses it: 5 "not
# authorised" or 4 "bad user name or password" (MQTT 3.1.1 §3.2.2.3; mosquitto itself answers
# 5), and 128 + the reason code with MQTT 5 (0x86 bad user name or password, 0x87 not
# authorized). Anything else (1, 124 for our timeout) is not a refusal by the broker.
refused311() { [ "$1" -eq 4 ] || [ "$1" -eq 5 ]; }
refused5() { [ "$1" -eq 134 ] || [ "$1" -eq 135 ]; }
name="no password: refused (mosquitto_pub exits with the CONNACK refusal, MQTT 3.1.1 and -V 5)"
pub -p "$MQTT_PORT" -i nopass-311 -t lwm2m/probe/x -m x
rc311=$?
pub -p "$MQTT_PORT" -i nopass-5 -V 5 -t lwm2m/probe/x -m x
rc5=$?
if refused311 "$rc311" && refused5 "$rc5"; then
    pass "$name (exit $rc311 and $rc5)"
else
    fail "$name" "MQTT 3.1.1 exit $rc311, MQTT 5 exit $rc5 (124: timed out); $(tail -n 2 "$WORK/pub.out" | tr '\n' '|')"
fi

name="wrong password: refused (MQTT 3.1.1 and 5), bob with alice's password too"
pub -p "$MQTT_PORT" -i wrongpw-311 -u alice -P secret1x -t lwm2m/probe/x -m x
rc311=$?
pub -p "$MQTT_PORT" -i wrongpw-5 -V 5 -u alice -P nope -t lwm2m/probe/x -m x
rc5=$?
pub -p "$MQTT_PORT" -i swapped -u bob -P secret1 -t lwm2m/probe/x -m x
rcbob=$?
pub -p "$MQTT_PORT" -i nobody -u mallory -P secret1 -t lwm2m/probe/x -m x
rcnobody=$?
if refused311 "$rc311" && refused5 "$rc5" && refused311 "$rcbob" && refused311 "$rcnobody"; then
    pass "$name (exits $rc311, $rc5, $rcbob, unknown user $rcnobody)"
else
    fail "$name" "alice wrong 3.1.1 exit $rc311, alice wrong MQTT 5 exit $rc5, bob with alice's exit $rcbob, unknown user exit $rcnobody (124: timed out)"
fi

name="the server logs each refusal at WARN: \"embedded MQTT broker refused a client\" with client_id, username, peer, reason"
if refusal_logged 'client_id="?wrongpw-311.*username="?alice' \
    && refusal_logged 'client_id="?wrongpw-5.*username="?alice' \
    && refusal_logged 'client_id="?nopass-311' \
    && refusal_logged 'client_id="?nobody.*username="?mallory' \
    && refusal_logged 'client_id="?wrongpw-311.*peer=127\.0\.0\.1:[0-9]+.*reason=' \
    && ! grep -q 'secret1x' "$WORK/server.log"; then
    pass "$name ($(grep -m 1 -E 'refused a client.*client_id="?wrongpw-311' "$WORK/server.log" | sed 's/.*WARN //' | cut -c1-200))"
else
    fail "$name" "$(refusal_lines wrongpw-311)"
fi

register_reaches alice311 dev-pw

paho "alice's password" --user alice --password secret1

name="no panic in the server log (password file)"
if ! grep -qi 'panicked' "$WORK/server.log"; then pass "$name"; else fail "$name" "$(grep -i -m 3 'panicked' "$WORK/server.log")"; fi
halt passwords

# ============================================================================================
# 4. TLS: a CA and a server certificate for 127.0.0.1 and localhost; a second CA that signed
# nothing the server has, for a client that does not trust the server.
mkdir -p "$PKI"
make_pki() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -keyout "$PKI/ca.key" -out "$PKI/ca.pem" -subj "/CN=interop test CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" &&
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
            -keyout "$PKI/other-ca.key" -out "$PKI/other-ca.pem" -subj "/CN=some other CA" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" &&
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout "$PKI/server.key" -out "$PKI/server.csr" -subj "/CN=127.0.0.1" &&
        cat >"$PKI/server.ext" <<EXT &&
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EXT
        openssl x509 -req -in "$PKI/server.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" -CAcreateserial \
            -days 2 -extfile "$PKI/server.ext" -out "$PKI/server.pem"
}
if ! make_pki >"$WORK/openssl.out" 2>&1; then
    fail "openssl makes the test certificates" "$(tail -n 5 "$WORK/openssl.out" | tr '\n' '|')"
    summary
    exit 1
fi

boot "password file and TLS" tls || { summary; exit 1; }
wait_grep "embedded MQTT broker listening.*tls=Some" "$WORK/server.log" 5 || true

name="TLS: mosquitto_sub --cafile (MQTT 3.1.1, alice) gets what a plain-port publisher sends"
sub tls311 "$TLS_PORT" --cafile "$PKI/ca.pem" -u alice -P secret1
if delivered tls311 plain-to-tls -p "$MQTT_PORT" -u bob -P secret2; then
    pass "$name"
else
    fail "$name" "$(sub_error tls311)"
fi

name="TLS: mosquitto_sub --cafile -V 5 (alice) gets what a plain-port publisher sends"
sub tls5 "$TLS_PORT" --cafile "$PKI/ca.pem" -V 5 -u alice -P secret1
if delivered tls5 plain-to-tls5 -p "$MQTT_PORT" -V 5 -u bob -P secret2; then
    pass "$name"
else
    fail "$name" "$(sub_error tls5)"
fi

name="TLS: a publisher over TLS reaches a plain-port subscriber"
sub plain-of-tls "$MQTT_PORT" -u bob -P secret2
if delivered plain-of-tls tls-to-plain -p "$TLS_PORT" --cafile "$PKI/ca.pem" -V 5 -u alice -P secret1; then
    pass "$name"
else
    fail "$name" "$(sub_error plain-of-tls)"
fi

name="TLS: a client that does not trust the server's CA fails, and the server logs the failed handshake"
pub -p "$TLS_PORT" --cafile "$PKI/other-ca.pem" -u alice -P secret1 -t lwm2m/probe/x -m untrusted
rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && refusal_logged '\(TLS handshake\).*peer=127\.0\.0\.1:[0-9]+|peer=127\.0\.0\.1:[0-9]+.*\(TLS handshake\)'; then
    pass "$name (exit $rc; $(grep -m 1 'refused a client (TLS handshake)' "$WORK/server.log" | sed 's/.*WARN //' | cut -c1-200))"
else
    fail "$name" "mosquitto_pub exit $rc (124: timed out); $(refusal_lines 'TLS handshake')"
fi

name="TLS: a client without a password is refused over TLS too, with the refusal line"
pub -p "$TLS_PORT" --cafile "$PKI/ca.pem" -i tls-nopass -t lwm2m/probe/x -m x
rc=$?
if refused311 "$rc" && refusal_logged 'client_id="?tls-nopass'; then
    pass "$name (exit $rc, logged)"
else
    fail "$name" "mosquitto_pub exit $rc (124: timed out); $(refusal_lines tls-nopass)"
fi

register_reaches tls311 dev-tls

paho "alice's password, TLS" --user alice --password secret1 --cafile "$PKI/ca.pem" --tls-port "$TLS_PORT"

name="no panic in the server log (TLS)"
if ! grep -qi 'panicked' "$WORK/server.log"; then pass "$name"; else fail "$name" "$(grep -i -m 3 'panicked' "$WORK/server.log")"; fi
halt tls

summary
