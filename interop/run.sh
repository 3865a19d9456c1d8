#!/usr/bin/env bash
# Interop tests against software this project did not write. Runs every suite below, each of
# which prints PASS/FAIL per case and ends with "N passed, M failed"; this script sums them and
# ends with the same line. Exits non-zero if any case failed or a suite could not run.
#
#   coap_core.sh          libcoap's coap-client against the CoAP core (lwm2m example server)
#   lwm2m_registration.sh libcoap's coap-client and aiocoap against lwm2m-server: Register,
#                         Update, De-register
#   lwm2m_dtls.sh         libcoap's coap-client (OpenSSL and GnuTLS) and aiocoap/tinydtls
#                         against lwm2m-server over DTLS: PSK, certificate, raw public key,
#                         refusals, audit log, restart
#   lwm2m_bootstrap.sh    a scripted aiocoap/tinydtls device bootstraps from lwm2m-server's
#                         bootstrap server over DTLS (LwM2M 1.1 SenML CBOR, 1.0 TLV), then
#                         registers with the PSK it was written; re-bootstrap, a device silent
#                         mid-sequence, refused factory credentials
#   firmware_pull.sh      libcoap's coap-client downloads a firmware package lwm2m-server hosts,
#                         Block2 at 512 bytes, over CoAP and CoAPs (PSK, a targeted device),
#                         and compares the bytes; 4.03 untargeted, 4.04 unknown, restart, remove
#   mqtt_bridge.sh        mosquitto and its clients against the MQTT bridge: registration,
#                         read, observe, queue mode, message expiry, malformed commands, a
#                         broker outage and kill -9 of the server during notification streams
#   mqtt_broker.sh        the embedded MQTT broker against clients we did not write: mosquitto's
#                         clients (MQTT 3.1.1 and 5) and paho-mqtt, persistent sessions, shared
#                         subscriptions, wills, expiry; a password file from mosquitto_passwd and
#                         lwm2m-server mqtt-passwd, refusals and their log line; TLS with an
#                         openssl-made CA; the bridge's uplink through it
#   console_browser.sh    the web console in headless Chromium (Selenium) against lwm2m-server and
#                         simulated devices: search, read, write and read back, observe with live
#                         notifications, the event panel; no script error, no CSP violation
#   cluster.sh            three lwm2m-server nodes behind nginx's UDP balancer (stream module),
#                         devices rebinding mid-session: records forwarded to their session's
#                         node, one handshake and one registration per device, Sends to MQTT
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
TOTAL_PASSED=0
TOTAL_FAILED=0
for suite in coap_core.sh lwm2m_registration.sh lwm2m_dtls.sh lwm2m_bootstrap.sh firmware_pull.sh mqtt_bridge.sh mqtt_broker.sh console_browser.sh cluster.sh; do
    echo "== $suite"
    out="$(bash "$HERE/$suite" 2>&1)"
    status=$?
    echo "$out"
    line="$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n 1)"
    if [ -z "$line" ]; then
        echo "FAIL: $suite printed no summary (exit $status)"
        TOTAL_FAILED=$((TOTAL_FAILED + 1))
        continue
    fi
    p="${line%% passed*}"
    f="${line#*passed, }"
    f="${f%% failed*}"
    TOTAL_PASSED=$((TOTAL_PASSED + p))
    TOTAL_FAILED=$((TOTAL_FAILED + f))
    if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL: $suite exited with $status"
        TOTAL_FAILED=$((TOTAL_FAILED + 1))
    fi
done
echo "interop: $TOTAL_PASSED passed, $TOTAL_FAILED failed"
[ "$TOTAL_FAILED" -eq 0 ]
