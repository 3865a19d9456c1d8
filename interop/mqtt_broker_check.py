#!/usr/bin/env python3
"""What an MQTT client expects of a broker, checked with paho-mqtt (PyPI) in MQTT 3.1.1 and 5,
for interop/mqtt_broker.sh. Prints one PASS or FAIL line per check; exits non-zero if any
failed.

  check --port P [--user U --password W] [--cafile F --tls-port T]
      Publish and subscribe at QoS 0, 1 and 2, across protocol versions, wildcards, a
      persistent session that gets what was published while it was away, a shared
      subscription, a will message; with --user, that a client without the password (or with
      a wrong one) is refused and one with it is let in; with --cafile, the same over TLS.
  latency --port P [--count N] [--version 3|5]
      N QoS 1 round trips (publish, then receive it back on a subscription of the same
      client), one at a time: prints "p50 X ms p99 Y ms" (for the note; never asserted).
"""
import argparse
import socket
import ssl
import sys
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

RESULTS = []


def report(ok, what, detail=""):
    RESULTS.append(ok)
    print("%s: %s%s" % ("PASS" if ok else "FAIL", what, (" (%s)" % detail) if detail else ""), flush=True)


class Client:
    """A paho client that records what it receives and how its CONNECT was answered."""

    def __init__(self, args, version, client_id=None, clean=True, user=None, password=None, tls=False,
                 will=None, session_expiry=None):
        self.version = version
        self.proto = mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311
        cid = client_id or ("chk-" + uuid.uuid4().hex[:10])
        if self.proto == mqtt.MQTTv5:
            self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=self.proto)
        else:
            self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=self.proto,
                                 clean_session=clean)
        self.clean = clean
        self.session_expiry = session_expiry
        self.messages = []
        self.cond = threading.Condition()
        self.connack = None
        self.session_present = None
        if user is not None:
            self.c.username_pw_set(user, password)
        if tls:
            ctx = ssl.create_default_context(cafile=args.cafile)
            ctx.check_hostname = False
            self.c.tls_set_context(ctx)
        if will:
            self.c.will_set(will[0], will[1], qos=1)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.port = args.tls_port if tls else args.port

    def _on_connect(self, client, userdata, flags, reason, properties):
        with self.cond:
            self.connack = reason
            self.session_present = flags.session_present
            self.cond.notify_all()

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.messages.append((msg.topic, msg.payload, msg.qos, msg.retain))
            self.cond.notify_all()

    def connect(self, timeout=5.0):
        kw = {}
        if self.proto == mqtt.MQTTv5:
            kw["clean_start"] = self.clean
            if self.session_expiry is not None:
                p = Properties(PacketTypes.CONNECT)
                p.SessionExpiryInterval = self.session_expiry
                kw["properties"] = p
        try:
            self.c.connect("127.0.0.1", self.port, keepalive=30, **kw)
        except OSError as e:
            self.connack = "socket error: %s" % e
            return False
        # Nagle off on our side too, as a backend that cares about latency does: else a
        # client's PUBACK followed by its next PUBLISH waits for the broker's delayed ACK.
        sock = self.c.socket()
        if sock is not None and hasattr(sock, "setsockopt"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.c.loop_start()
        with self.cond:
            self.cond.wait_for(lambda: self.connack is not None, timeout)
        return self.connack is not None and not isinstance(self.connack, str) and not self.connack.is_failure

    def subscribe(self, topic, qos=1):
        self.c.subscribe(topic, qos=qos)
        time.sleep(0.2)

    def publish(self, topic, payload, qos=1, retain=False):
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        if qos > 0:
            info.wait_for_publish(5)
        return info

    def wait(self, n, timeout=5.0):
        with self.cond:
            self.cond.wait_for(lambda: len(self.messages) >= n, timeout)
            return list(self.messages)

    def close(self, clean_disconnect=True):
        if clean_disconnect:
            self.c.disconnect()
        else:
            # A lost connection: the will is published.
            sock = self.c.socket()
            if sock is not None:
                sock.close()
        self.c.loop_stop()


def version_name(v):
    return "MQTT 5" if v == 5 else "MQTT 3.1.1"


def check_pubsub(args, tls=False):
    base = "chk/%s" % uuid.uuid4().hex[:8]
    over = " over TLS" if tls else ""
    for v in (3, 5):
        sub = Client(args, v, user=args.user, password=args.password, tls=tls)
        pub = Client(args, 5 if v == 3 else 3, user=args.user, password=args.password, tls=tls)
        if not sub.connect() or not pub.connect():
            report(False, "%s client connects%s" % (version_name(v), over), "CONNACK %s / %s" % (sub.connack, pub.connack))
            continue
        sub.subscribe("%s/%d/+/x/#" % (base, v), qos=2)
        for qos in (0, 1, 2):
            pub.publish("%s/%d/q%d/x/y" % (base, v, qos), b"v%d-qos%d" % (v, qos), qos=qos)
        got = sub.wait(3)
        payloads = sorted(m[1] for m in got)
        want = sorted(b"v%d-qos%d" % (v, q) for q in (0, 1, 2))
        report(payloads == want, "%s subscriber gets QoS 0, 1 and 2 from a %s publisher through +/# wildcards%s"
               % (version_name(v), version_name(pub.version), over), "got %s" % payloads)
        sub.close()
        pub.close()


def check_persistent_session(args):
    topic = "chk/%s/persist" % uuid.uuid4().hex[:8]
    for v in (3, 5):
        cid = "chk-persist-%d-%s" % (v, uuid.uuid4().hex[:6])
        a = Client(args, v, client_id=cid, clean=False, session_expiry=600, user=args.user, password=args.password)
        if not a.connect():
            report(False, "%s persistent session" % version_name(v), "CONNACK %s" % a.connack)
            continue
        a.subscribe(topic + "/%d" % v, qos=1)
        a.close()
        p = Client(args, v, user=args.user, password=args.password)
        p.connect()
        p.publish(topic + "/%d" % v, b"while-away", qos=1)
        p.close()
        b = Client(args, v, client_id=cid, clean=False, session_expiry=600, user=args.user, password=args.password)
        b.connect()
        got = b.wait(1)
        report(b.session_present and [m[1] for m in got] == [b"while-away"],
               "%s persistent session: the broker keeps the subscription and queues a QoS 1 message for the client while it is away" % version_name(v),
               "session present %s, got %s" % (b.session_present, [m[1] for m in got]))
        b.close()


def check_shared_subscription(args):
    topic = "chk/%s/shared" % uuid.uuid4().hex[:8]
    a = Client(args, 5, user=args.user, password=args.password)
    b = Client(args, 5, user=args.user, password=args.password)
    p = Client(args, 5, user=args.user, password=args.password)
    for c in (a, b, p):
        c.connect()
    a.subscribe("$share/g/" + topic, qos=1)
    b.subscribe("$share/g/" + topic, qos=1)
    for i in range(20):
        p.publish(topic, b"%d" % i, qos=1)
    time.sleep(1.0)
    total = len(a.messages) + len(b.messages)
    report(total == 20, "MQTT 5 shared subscription: each message goes to exactly one member of the group",
           "%d and %d of 20" % (len(a.messages), len(b.messages)))
    for c in (a, b, p):
        c.close()


def check_expiry(args):
    """MQTT 5 §3.3.2.3.3: the subscriber gets the Message Expiry Interval the publisher set
    (less the time the message waited), and a message without one gets none."""
    topic = "chk/%s/expiry" % uuid.uuid4().hex[:8]
    s = Client(args, 5, user=args.user, password=args.password)
    p = Client(args, 5, user=args.user, password=args.password)
    s.connect()
    p.connect()
    got = []
    s.c.on_message = lambda c, u, m: got.append((m.payload, getattr(m.properties, "MessageExpiryInterval", None)))
    s.subscribe(topic, qos=1)
    for payload, expiry in ((b"one", 1), (b"long", 120), (b"none", None)):
        props = None
        if expiry is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.MessageExpiryInterval = expiry
        p.c.publish(topic, payload, qos=1, properties=props).wait_for_publish(5)
    deadline = time.monotonic() + 5
    while len(got) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    report(sorted(got, key=lambda g: g[0]) == [(b"long", 120), (b"none", None), (b"one", 1)],
           "MQTT 5 message expiry reaches the subscriber as the publisher set it (1 s, 120 s, none)", "got %s" % got)
    s.close()
    p.close()


def check_will(args):
    topic = "chk/%s/will" % uuid.uuid4().hex[:8]
    for v in (3, 5):
        w = Client(args, v, user=args.user, password=args.password)
        w.connect()
        s = Client(args, v, user=args.user, password=args.password)
        s.connect()
        s.subscribe(topic, qos=1)
        dying = Client(args, v, will=(topic, b"gone-%d" % v), user=args.user, password=args.password)
        dying.connect()
        dying.close(clean_disconnect=False)
        got = s.wait(1, timeout=5)
        report([m[1] for m in got] == [b"gone-%d" % v], "%s will message published when a client's connection drops"
               % version_name(v), "got %s" % [m[1] for m in got])
        s.close()
        w.close()


def check_auth(args):
    for v in (3, 5):
        none = Client(args, v)
        ok_none = none.connect()
        wrong = Client(args, v, user=args.user, password=args.password + "x")
        ok_wrong = wrong.connect()
        right = Client(args, v, user=args.user, password=args.password)
        ok_right = right.connect()
        report(not ok_none and not ok_wrong and ok_right,
               "%s: refused without a password (%s) and with a wrong one (%s), let in with the right one (%s)"
               % (version_name(v), none.connack, wrong.connack, right.connack))
        for c in (none, wrong, right):
            try:
                c.close()
            except Exception:
                pass


def cmd_check(args):
    check_pubsub(args)
    check_persistent_session(args)
    check_shared_subscription(args)
    check_will(args)
    check_expiry(args)
    if args.user:
        check_auth(args)
    if args.cafile:
        check_pubsub(args, tls=True)
    failed = RESULTS.count(False)
    print("%d passed, %d failed" % (len(RESULTS) - failed, failed))
    return 1 if failed else 0


def cmd_latency(args):
    c = Client(args, args.version, user=args.user, password=args.password)
    if not c.connect():
        print("cannot connect: %s" % c.connack)
        return 1
    topic = "lat/%s" % uuid.uuid4().hex[:8]
    c.subscribe(topic, qos=1)
    times = []
    for i in range(args.count):
        t0 = time.perf_counter()
        c.publish(topic, b"%d" % i, qos=1)
        c.wait(i + 1)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    print("p50 %.2f ms p99 %.2f ms over %d round trips" % (times[len(times) // 2], times[int(len(times) * 0.99)], len(times)))
    c.close()
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["check", "latency"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tls-port", type=int)
    ap.add_argument("--cafile")
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--version", type=int, default=5)
    args = ap.parse_args()
    return cmd_check(args) if args.cmd == "check" else cmd_latency(args)


if __name__ == "__main__":
    sys.exit(main())
