#!/usr/bin/env python3
"""A minimal LwM2M device over raw CoAP/UDP (RFC 7252), Python 3 standard library only, for the
MQTT bridge interop tests (interop/mqtt_bridge.sh, interop/mqtt_bench.sh).

Everything is hand-encoded: the 4-byte header, the token, options with delta encoding
(RFC 7252 §3.1), the 0xFF payload marker. What it does:

- Registers with `POST /rd?ep=NAME&lt=300&lwm2m=1.1[&b=UQ]`, payload
  `</1/0>,</3/0>,</3303/0>` (content format 40), retransmitting until answered, and keeps the
  Location-Path it gets.
- Answers `GET /3/0/0` ("Acme"), `GET /3/0/1` ("Model-1"), `GET /3303/0/5700`, `PUT /3/0/14`
  (text/plain or a one-resource TLV, kept), anything else 4.04; duplicate requests get the cached answer again.
- `GET /3303/0/5700` with Observe=0: remembers the token, answers 2.05 with an Observe option
  and text/plain "0", then sends CON notifications (text/plain, increasing Observe numbers)
  ONE AT A TIME: each is retransmitted every 0.3-0.5 s until ACKed (up to --max-retries), and
  every ACKed value is appended to --acked. Values are 1, 2, 3, ... (or, with --time-values,
  time.time_ns() at the first transmission, for latency measurements). Observe=1 or an RST
  ends the observation.
- Queue mode (--queue): registers with b=UQ and then sleeps: it does not read its socket.
  SIGUSR1 wakes it: it throws away what arrived while asleep (counted, printed), sends an
  Update `POST /rd/LOC`, answers requests for --awake seconds, and sleeps again.

Progress goes to stdout, one line per event, flushed: "pid N" (to send SIGUSR1 to, since
the process usually runs under `timeout`), "registered /rd/LOC", "observed",
"done N", "woke", "asleep", "update 2.04", "request GET /3/0/0", "drained N", ...
The process ends on SIGTERM, after --max-time seconds, or when a notification is never
ACKed (exit 3).
"""
import argparse
import os
import random
import select
import signal
import socket
import struct
import sys
import time

CON, NON, ACK, RST = 0, 1, 2, 3
GET, POST, PUT, DELETE = 1, 2, 3, 4
OPT_OBSERVE, OPT_LOCATION_PATH, OPT_URI_PATH, OPT_CONTENT_FORMAT, OPT_URI_QUERY = 6, 8, 11, 12, 15


def code(c, dd):
    return (c << 5) | dd


def code_text(c):
    return "%d.%02d" % (c >> 5, c & 31)


CREATED, DELETED, CHANGED, CONTENT = code(2, 1), code(2, 2), code(2, 4), code(2, 5)
BAD_REQUEST, NOT_FOUND, METHOD_NOT_ALLOWED = code(4, 0), code(4, 4), code(4, 5)
UNSUPPORTED_FORMAT = code(4, 15)
TEXT, TLV = 0, 11542


def encode_uint(v):
    """An option's uint value: big-endian, no leading zero bytes (0 is empty)."""
    out = b""
    while v:
        out = bytes([v & 0xFF]) + out
        v >>= 8
    return out


def decode_uint(b):
    v = 0
    for x in b:
        v = (v << 8) | x
    return v


def ext(n):
    """The nibble and extension bytes of an option delta or length (RFC 7252 §3.1)."""
    if n < 13:
        return n, b""
    if n < 269:
        return 13, bytes([n - 13])
    return 14, struct.pack("!H", n - 269)


def tlv_value(payload):
    """The value of a single-resource OMA-TLV payload (TS Core §7.4.3): type byte, 8- or
    16-bit identifier, length in the type byte or in 1-3 more bytes, value. None if it is not
    one resource with a value."""
    if not payload or payload[0] >> 6 != 3:
        return None
    t, i = payload[0], 1
    i += 2 if t & 0x20 else 1
    length_bytes = (t >> 3) & 3
    if length_bytes:
        length = decode_uint(payload[i:i + length_bytes])
        i += length_bytes
    else:
        length = t & 7
    value = payload[i:i + length]
    return value if len(value) == length else None


def encode(mtype, c, mid, token=b"", options=(), payload=b""):
    """One CoAP message. options: (number, bytes) pairs, in any order."""
    out = bytearray([0x40 | (mtype << 4) | len(token), c]) + struct.pack("!H", mid) + token
    last = 0
    for number, value in sorted(options, key=lambda o: o[0]):
        dn, dx = ext(number - last)
        ln, lx = ext(len(value))
        out += bytes([(dn << 4) | ln]) + dx + lx + value
        last = number
    if payload:
        out += b"\xff" + payload
    return bytes(out)


class Message:
    def __init__(self, mtype, c, mid, token, options, payload):
        self.type, self.code, self.mid, self.token = mtype, c, mid, token
        self.options, self.payload = options, payload

    def opt(self, number):
        return [v for n, v in self.options if n == number]

    def path(self):
        return "/" + "/".join(v.decode("utf-8", "replace") for v in self.opt(OPT_URI_PATH))

    def observe(self):
        o = self.opt(OPT_OBSERVE)
        return decode_uint(o[0]) if o else None


def decode(data):
    """Parses one datagram; None if it is not a well-formed CoAP message."""
    if len(data) < 4 or data[0] >> 6 != 1:
        return None
    mtype, tkl = (data[0] >> 4) & 3, data[0] & 15
    if tkl > 8 or len(data) < 4 + tkl:
        return None
    c, mid = data[1], struct.unpack("!H", data[2:4])[0]
    token = data[4:4 + tkl]
    i, number, options = 4 + tkl, 0, []
    while i < len(data):
        if data[i] == 0xFF:
            i += 1
            break
        delta, length = data[i] >> 4, data[i] & 15
        i += 1
        vals = []
        for nib in (delta, length):
            if nib == 13:
                vals.append(data[i] + 13)
                i += 1
            elif nib == 14:
                vals.append(struct.unpack("!H", data[i:i + 2])[0] + 269)
                i += 2
            elif nib == 15:
                return None
            else:
                vals.append(nib)
        number += vals[0]
        options.append((number, bytes(data[i:i + vals[1]])))
        i += vals[1]
    return Message(mtype, c, mid, token, options, bytes(data[i:]))


class Device:
    def __init__(self, args):
        self.args = args
        host, port = args.server.rsplit(":", 1)
        self.server = (host.strip("[]"), int(port))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.mid = random.randrange(0x10000)
        self.location = None
        self.queue = args.queue
        self.asleep = False
        self.awake_until = None
        self.wake_requested = False
        self.stop = False
        self.cache = {}  # request MID -> answer bytes (duplicate detection)
        self.cache_order = []
        self.timezone = b"+01:00"
        # The observation and its notifications.
        self.obs_token = None
        self.obs_seq = 1
        self.value = 0
        self.sent = 0
        self.pending = None  # [mid, datagram, value, next_retransmit, retries]
        self.next_send = 0.0
        self.acked_file = open(args.acked, "a") if args.acked else None
        self.acked = 0
        self.retransmissions = 0
        signal.signal(signal.SIGUSR1, self.on_wake_signal)
        signal.signal(signal.SIGTERM, self.on_term)

    def say(self, text):
        print(text, flush=True)

    def on_wake_signal(self, *_):
        self.wake_requested = True

    def on_term(self, *_):
        self.stop = True

    def next_mid(self):
        self.mid = (self.mid + 1) & 0xFFFF
        return self.mid

    def send(self, data):
        self.sock.sendto(data, self.server)

    # -- client role: Register and Update ---------------------------------------------------

    def request(self, c, options, payload=b"", deadline=30.0):
        """Sends a CON request and waits for its answer (piggybacked or separate), answering
        requests that arrive meanwhile. Returns the response Message, or None."""
        mid, token = self.next_mid(), os.urandom(4)
        data = encode(CON, c, mid, token, options, payload)
        end = time.monotonic() + deadline
        timeout = 0.5
        self.send(data)
        next_tx = time.monotonic() + timeout
        while time.monotonic() < end and not self.stop:
            wait = max(0.0, min(next_tx, end) - time.monotonic())
            r, _, _ = select.select([self.sock], [], [], wait)
            if not r:
                if time.monotonic() >= next_tx:
                    self.send(data)
                    timeout = min(timeout * 2, 4.0)
                    next_tx = time.monotonic() + timeout
                continue
            msg = decode(self.sock.recv(2048))
            if msg is None:
                continue
            if msg.type == ACK and msg.mid == mid:
                if msg.code != 0:
                    return msg
                next_tx = end  # empty ACK: a separate response follows
            elif msg.code >= 64 and msg.token == token:  # separate response
                if msg.type == CON:
                    self.send(encode(ACK, 0, msg.mid))
                return msg
            else:
                self.handle(msg)
        return None

    def register(self):
        query = ["ep=" + self.args.endpoint, "lt=%d" % self.args.lifetime, "lwm2m=1.1"]
        if self.queue:
            query.append("b=UQ")
        options = [(OPT_URI_PATH, b"rd"), (OPT_CONTENT_FORMAT, encode_uint(40))]
        options += [(OPT_URI_QUERY, q.encode()) for q in query]
        resp = self.request(POST, options, b"</1/0>,</3/0>,</3303/0>")
        if resp is None or resp.code != CREATED:
            self.say("register failed: %s" % (code_text(resp.code) if resp else "no answer"))
            return False
        self.location = [v for v in resp.opt(OPT_LOCATION_PATH)]
        self.say("registered /" + "/".join(v.decode() for v in self.location))
        return True

    def update(self):
        options = [(OPT_URI_PATH, v) for v in self.location]
        resp = self.request(POST, options)
        self.say("update %s" % (code_text(resp.code) if resp else "no answer"))

    # -- server role: requests from the LwM2M server ----------------------------------------

    def handle(self, msg):
        if msg.type in (ACK, RST):
            if self.pending and msg.mid == self.pending[0]:
                if msg.type == RST:
                    self.say("observation reset by the server")
                    self.obs_token, self.pending = None, None
                else:
                    self.on_acked(self.pending[2])
                    self.pending = None
            return
        if not 1 <= msg.code <= 31:
            if msg.type == CON:  # a response we do not wait for: reject it
                self.send(encode(RST, 0, msg.mid))
            return
        if msg.mid in self.cache:
            self.send(self.cache[msg.mid])
            return
        c, options, payload = self.answer(msg)
        if msg.type == CON:
            data = encode(ACK, c, msg.mid, msg.token, options, payload)
        else:
            data = encode(NON, c, self.next_mid(), msg.token, options, payload)
        self.cache[msg.mid] = data
        self.cache_order.append(msg.mid)
        if len(self.cache_order) > 256:
            self.cache.pop(self.cache_order.pop(0), None)
        self.send(data)

    def answer(self, msg):
        path, text = msg.path(), [(OPT_CONTENT_FORMAT, b"")]  # content format 0: text/plain
        self.say("request %s %s%s" % (code_text(msg.code), path,
                                      "" if msg.observe() is None else " observe=%d" % msg.observe()))
        if self.queue:
            self.awake_until = time.monotonic() + self.args.awake
        if msg.code == GET and path == "/3/0/0":
            return CONTENT, text, b"Acme"
        if msg.code == GET and path == "/3/0/1":
            return CONTENT, text, b"Model-1"
        if msg.code == GET and path == "/3/0/14":
            return CONTENT, text, self.timezone
        if msg.code == PUT and path == "/3/0/14":
            ct = msg.opt(OPT_CONTENT_FORMAT)
            ct = decode_uint(ct[0]) if ct else TEXT
            value = msg.payload if ct == TEXT else tlv_value(msg.payload) if ct == TLV else None
            if ct not in (TEXT, TLV):
                return UNSUPPORTED_FORMAT, [], b""
            if value is None:
                return BAD_REQUEST, [], b""
            self.timezone = value
            return CHANGED, [], b""
        if msg.code == GET and path == "/3303/0/5700":
            obs = msg.observe()
            current = str(self.value).encode()
            if obs == 0:
                self.obs_token = msg.token
                self.say("observed")
                self.next_send = time.monotonic() + self.args.first_delay
                return CONTENT, text + [(OPT_OBSERVE, encode_uint(self.bump_seq()))], current
            if obs == 1 and msg.token == self.obs_token:
                self.obs_token, self.pending = None, None
                self.say("observation cancelled")
            return CONTENT, text, current
        if msg.code in (GET, PUT, POST, DELETE):
            return NOT_FOUND, [], b""
        return METHOD_NOT_ALLOWED, [], b""

    def bump_seq(self):
        s = self.obs_seq
        self.obs_seq = (self.obs_seq + 1) & 0xFFFFFF
        return s

    # -- notifications ---------------------------------------------------------------------

    def on_acked(self, value):
        self.acked += 1
        if self.acked_file:
            self.acked_file.write("%d\n" % value)
            self.acked_file.flush()
        if self.acked == self.args.count:
            self.say("done %d (retransmissions %d)" % (self.acked, self.retransmissions))

    def notify_due(self, now):
        return (self.obs_token is not None and self.pending is None
                and (self.args.count == 0 or self.sent < self.args.count)
                and now >= self.next_send and not self.asleep)

    def send_notification(self, now):
        self.sent += 1
        self.value = time.time_ns() if self.args.time_values else self.sent
        mid = self.next_mid()
        data = encode(CON, CONTENT, mid, self.obs_token,
                      [(OPT_OBSERVE, encode_uint(self.bump_seq())), (OPT_CONTENT_FORMAT, b"")],
                      str(self.value).encode())
        self.send(data)
        self.pending = [mid, data, self.value, now + random.uniform(0.3, 0.5), 0]
        if self.args.rate > 0:
            self.next_send = max(self.next_send + 1.0 / self.args.rate, now - 1.0)

    def retransmit(self, now):
        p = self.pending
        if p[4] >= self.args.max_retries:
            self.say("notification %d never acknowledged after %d retransmissions" % (p[2], p[4]))
            sys.exit(3)
        p[4] += 1
        self.retransmissions += 1
        self.send(p[1])
        p[3] = now + random.uniform(0.3, 0.5)

    # -- sleeping and waking ---------------------------------------------------------------

    def sleep(self):
        self.asleep, self.awake_until = True, None
        self.say("asleep")

    def wake(self):
        self.wake_requested = False
        drained = 0
        self.sock.setblocking(False)
        try:
            while True:
                self.sock.recv(2048)
                drained += 1
        except BlockingIOError:
            pass
        self.sock.setblocking(True)
        self.say("woke (drained %d datagrams received while asleep)" % drained)
        self.asleep = False
        self.awake_until = time.monotonic() + self.args.awake
        self.update()

    def run(self):
        end = time.monotonic() + self.args.max_time
        self.say("pid %d" % os.getpid())
        if not self.register():
            return 2
        if self.queue:
            self.sleep()
        while not self.stop and time.monotonic() < end:
            now = time.monotonic()
            if self.asleep:
                if self.wake_requested:
                    self.wake()
                else:
                    time.sleep(0.02)
                continue
            if self.awake_until is not None and now >= self.awake_until:
                self.sleep()
                continue
            if self.wake_requested:  # already awake: just send the Update
                self.wake_requested = False
                self.update()
            if self.pending and now >= self.pending[3]:
                self.retransmit(now)
            if self.notify_due(now):
                self.send_notification(now)
            deadlines = [end, now + 0.1]
            if self.pending:
                deadlines.append(self.pending[3])
            elif self.obs_token is not None and (self.args.count == 0 or self.sent < self.args.count):
                deadlines.append(self.next_send)
            if self.awake_until is not None:
                deadlines.append(self.awake_until)
            wait = max(0.0, min(deadlines) - time.monotonic())
            try:
                r, _, _ = select.select([self.sock], [], [], wait)
            except InterruptedError:
                continue
            if r:
                msg = decode(self.sock.recv(2048))
                if msg is not None:
                    self.handle(msg)
        return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", required=True, help="HOST:PORT of the LwM2M server (CoAP)")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--lifetime", type=int, default=300)
    p.add_argument("--queue", action="store_true", help="queue mode: b=UQ, sleep until SIGUSR1")
    p.add_argument("--awake", type=float, default=3.0, help="seconds awake after a wake-up")
    p.add_argument("--count", type=int, default=0, help="notifications to send (0: no limit)")
    p.add_argument("--rate", type=float, default=0.0, help="notifications per second at most (0: as fast as ACKs come)")
    p.add_argument("--first-delay", type=float, default=0.05, help="seconds between the observe answer and the first notification")
    p.add_argument("--time-values", action="store_true", help="values are time.time_ns() at first transmission")
    p.add_argument("--acked", help="file to append every ACKed notification value to")
    p.add_argument("--max-retries", type=int, default=150, help="retransmissions of one notification before giving up")
    p.add_argument("--max-time", type=float, default=300.0, help="seconds to run at most")
    args = p.parse_args()
    sys.exit(Device(args).run())


if __name__ == "__main__":
    main()
