# DTLS helpers for the interop suites (sourced, not run; source lib.sh first). Generates
# throw-away credentials with the openssl CLI, installs aiocoap with tinydtls (DTLSSocket), and
# wraps libcoap's coap-client for coaps. Nothing generated here is ever committed: the files
# live in the suite's $WORK, removed on exit.
#
# Facts these helpers rely on (libcoap 4.3.1 as in Debian 12 libcoap3-bin):
# - `-k KEY` takes the pre-shared key as raw bytes of the argument (no hex decoding, no "0x"):
#   a PSK must be printable text for coap-client, so the suites choose ASCII keys and provision
#   the server with their hex encoding (`psk_hex`).
# - `-u IDENTITY` is sent as the PSK identity as is. The server's identity hint is ignored
#   unless `-h hint_file` is given. In PSK mode both builds send SNI = the URI host, an IP
#   literal ("127.0.0.1") here; in certificate and RPK mode they send SNI "localhost".
# - Certificates: `-c cert.pem -j key.pem -C ca.pem` (PEM). `-C` makes the client verify the
#   server's chain against ca.pem; coap-client's CN callback only logs the server's CN.
# - Raw public keys (RFC 7250): only the GnuTLS build (`coap-client-gnutls -M key.pem`); the
#   file is the EC key as "BEGIN EC PRIVATE KEY" (SEC1, `openssl ecparam -genkey -noout`) or a
#   PKCS#8 "BEGIN PRIVATE KEY" followed by its "BEGIN PUBLIC KEY". The OpenSSL build has no RPK.

# psk_hex TEXT: the hex encoding of TEXT's bytes (lower case, no separators).
psk_hex() {
    printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n'
}

# gen_dtls_credentials DIR ENDPOINT: P-256 test credentials in DIR (created if missing):
#   ca.pem ca.key              self-signed CA (CN=lwm2m-interop-ca), valid 2 days
#   server.pem server.key      server certificate signed by the CA (CN=localhost,
#                              SAN DNS:localhost, IP:127.0.0.1, IP:::1; serverAuth)
#   server-chain.pem           server.pem followed by ca.pem
#   device.pem device.key      device certificate signed by the CA (CN=ENDPOINT; clientAuth)
#   rpk.key                    raw public key pair for coap-client-gnutls -M: SEC1
#                              "EC PRIVATE KEY" (the public key is derived from it)
#   rpk.pub.pem                its public key, PEM SubjectPublicKeyInfo ("PUBLIC KEY"), for
#                              `lwm2m-server device add --rpk`
#   server-rpk.key server-rpk.pub.pem   the same for the server side
# Private keys are PKCS#8 PEM ("BEGIN PRIVATE KEY") except the SEC1 RPK files.
# Returns non-zero (and prints openssl's errors) if any step fails.
gen_dtls_credentials() {
    local dir="$1" ep="$2" who
    local ec=(-algorithm EC -pkeyopt ec_paramgen_curve:P-256)
    # Every step is chained with && (set -e does not apply where the caller tests the status).
    mkdir -p "$dir" &&
        openssl genpkey "${ec[@]}" -out "$dir/ca.key" &&
        openssl req -x509 -new -key "$dir/ca.key" -sha256 -days 2 -subj "/CN=lwm2m-interop-ca" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -addext "subjectKeyIdentifier=hash" -out "$dir/ca.pem" &&
        printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
            "extendedKeyUsage=serverAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
            "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid" >"$dir/server.ext" &&
        openssl genpkey "${ec[@]}" -out "$dir/server.key" &&
        openssl req -new -key "$dir/server.key" -subj "/CN=localhost" -out "$dir/server.csr" &&
        openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
            -CAcreateserial -CAserial "$dir/ca.srl" -sha256 -days 2 -extfile "$dir/server.ext" \
            -out "$dir/server.pem" 2>>"$dir/openssl.log" &&
        cat "$dir/server.pem" "$dir/ca.pem" >"$dir/server-chain.pem" &&
        printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
            "extendedKeyUsage=clientAuth" "subjectKeyIdentifier=hash" \
            "authorityKeyIdentifier=keyid" >"$dir/device.ext" &&
        openssl genpkey "${ec[@]}" -out "$dir/device.key" &&
        openssl req -new -key "$dir/device.key" -subj "/CN=$ep" -out "$dir/device.csr" &&
        openssl x509 -req -in "$dir/device.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
            -CAserial "$dir/ca.srl" -sha256 -days 2 -extfile "$dir/device.ext" \
            -out "$dir/device.pem" 2>>"$dir/openssl.log" &&
        for who in rpk server-rpk; do
            openssl ecparam -name prime256v1 -genkey -noout -out "$dir/$who.key" &&
                openssl ec -in "$dir/$who.key" -pubout -out "$dir/$who.pub.pem" 2>>"$dir/openssl.log" ||
                return 1
        done &&
        rm -f "$dir"/*.csr "$dir"/*.ext "$dir/ca.srl" "$dir/openssl.log" &&
        chmod 600 "$dir"/*.key &&
        openssl verify -CAfile "$dir/ca.pem" "$dir/server.pem" "$dir/device.pem" >/dev/null ||
        {
            echo "gen_dtls_credentials: openssl failed in $dir" >&2
            cat "$dir/openssl.log" >&2 2>/dev/null
            return 1
        }
}

# ensure_aiocoap_dtls VENV: aiocoap and DTLSSocket (tinydtls, built from source with Cython)
# in VENV. DTLSSocket's build runs tinydtls' autogen.sh (autoreconf) and a C compiler, so
# Debian's autoconf and build-essential are installed if missing (needs root). About 20 s.
ensure_aiocoap_dtls() {
    local venv="$1"
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import aiocoap, DTLSSocket.dtls' 2>/dev/null; then
        return 0
    fi
    if ! command -v autoreconf >/dev/null 2>&1 || ! command -v cc >/dev/null 2>&1 \
        || ! command -v make >/dev/null 2>&1; then
        echo "autoreconf or a C compiler missing: installing autoconf build-essential"
        apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y autoconf build-essential ||
            return 1
    fi
    { [ -x "$venv/bin/python" ] || python3 -m venv "$venv"; } &&
        "$venv/bin/pip" install --quiet --disable-pip-version-check 'aiocoap>=0.4.7' DTLSSocket &&
        "$venv/bin/python" -c 'import aiocoap, DTLSSocket.dtls'
}

# coaps_client IMPL ARGS...: runs coap-client-IMPL (openssl or gnutls) with the exchange log
# (-v 6) under a 20 s timeout and a 10 s wait budget (-B), and prints the last received
# response PDU line (e.g. "v:1 t:ACK c:2.01 i:... [ Location-Path:rd, Location-Path:... ]"),
# or nothing if there was none (handshake refused or no answer). The whole log is appended to
# $WORK/coaps_client.log.
coaps_client() {
    local impl="$1"
    shift
    local out
    out="$(timeout 20 "coap-client-$impl" -v 6 -B 10 "$@" 2>&1 || true)"
    {
        echo "=== coap-client-$impl $*"
        echo "$out"
    } >>"$WORK/coaps_client.log"
    echo "$out" | grep -E 't:ACK c:[245]|t:CON c:[245]|t:NON c:[245]' | tail -n 1 || true
}
