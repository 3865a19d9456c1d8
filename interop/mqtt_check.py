#!/usr/bin/env python3
"""Checks on what a subscriber received, for interop/mqtt_bridge.sh. Standard library only.

The input is the output file of `mosquitto_sub -F '%U %t %p'`: one message per line, the
receive time (Unix seconds with nanoseconds), the topic, and the JSON payload. A line that is
not complete yet (or not JSON) is skipped.

  wait FILE --topic T [--msg-type X] [--req-id N] [--since K] [--timeout S]
      Waits until a message on topic T (with that msgType and reqID, if given; only among
      the lines after the first K) arrives; prints its payload and exits 0, else exits 1.
  count FILE --topic T
      Prints how many messages arrived on topic T.
  stream FILE --topic T --acked ACKED [--timeout S]
      The notification stream of one device: every value in ACKED (one per line, as
      coap_device.py logs them) must arrive on T; values arrive in order (a value below the
      highest seen so far must be a duplicate of one already received). Waits up to S
      seconds for missing values, then prints one line of figures and exits 0 if none is
      missing and none is out of order.
"""
import argparse
import json
import sys
import time


def messages(path, topic=None, since=0):
    """(receive time, topic, payload dict) for every complete line of the file after the
    first `since` lines."""
    out = []
    try:
        with open(path, "r", errors="replace") as f:
            for n, line in enumerate(f):
                if not line.endswith("\n"):
                    break
                if n < since:
                    continue
                parts = line.rstrip("\n").split(" ", 2)
                if len(parts) != 3 or (topic is not None and parts[1] != topic):
                    continue
                try:
                    payload = json.loads(parts[2])
                    t = float(parts[0])
                except ValueError:
                    continue
                out.append((t, parts[1], payload))
    except FileNotFoundError:
        pass
    return out


def matches(payload, args):
    if not isinstance(payload, dict):
        return False
    if args.msg_type is not None and payload.get("msgType") != args.msg_type:
        return False
    if args.req_id is not None and payload.get("reqID") != args.req_id:
        return False
    return True


def cmd_wait(args):
    end = time.monotonic() + args.timeout
    while True:
        # --since counts lines over all topics, as `wc -l` counts them.
        for _, _, payload in messages(args.file, args.topic, args.since):
            if matches(payload, args):
                print(json.dumps(payload, sort_keys=True))
                return 0
        if time.monotonic() >= end:
            return 1
        time.sleep(0.1)


def cmd_count(args):
    print(len(messages(args.file, args.topic)))
    return 0


def notify_values(path, topic):
    """(value, msgId) of every notification on topic, in arrival order."""
    out = []
    for _, _, p in messages(path, topic):
        if p.get("msgType") != "notify":
            continue
        for item in p.get("data", {}).get("content", []):
            v = item.get("value")
            if isinstance(v, (int, float)):
                out.append((int(v), p.get("msgId")))
    return out


def cmd_stream(args):
    with open(args.acked) as f:
        acked = [int(x) for x in f.read().split()]
    end = time.monotonic() + args.timeout
    while True:
        got = notify_values(args.file, args.topic)
        seen = {v for v, _ in got}
        missing = [v for v in acked if v not in seen]
        if not missing or time.monotonic() >= end:
            break
        time.sleep(0.2)
    highest, out_of_order, seen_values, seen_ids = None, [], set(), set()
    same_id = 0
    for v, mid in got:
        if highest is not None and v <= highest and v not in seen_values:
            out_of_order.append(v)
        if (v, mid) in seen_ids:
            same_id += 1
        seen_ids.add((v, mid))
        seen_values.add(v)
        highest = v if highest is None else max(highest, v)
    duplicates = len(got) - len(seen_values)
    extra = sorted(seen_values - set(acked))
    print("acked %d, received %d (distinct %d), duplicates %d (%d with the same msgId, %d re-sent under a new msgId), "
          "missing %d%s, out of order %d%s, received but not logged as ACKed %d%s"
          % (len(acked), len(got), len(seen_values), duplicates, same_id, duplicates - same_id,
             len(missing), (" e.g. %s" % missing[:10]) if missing else "",
             len(out_of_order), (" e.g. %s" % out_of_order[:10]) if out_of_order else "",
             len(extra), (" %s" % extra[:10]) if extra else ""))
    # A duplicate must be recognisable: the same msgId as the first copy.
    return 0 if not missing and not out_of_order and acked and duplicates == same_id else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("wait")
    w.add_argument("file")
    w.add_argument("--topic", required=True)
    w.add_argument("--msg-type")
    w.add_argument("--req-id", type=int)
    w.add_argument("--since", type=int, default=0)
    w.add_argument("--timeout", type=float, default=10.0)
    c = sub.add_parser("count")
    c.add_argument("file")
    c.add_argument("--topic", required=True)
    s = sub.add_parser("stream")
    s.add_argument("file")
    s.add_argument("--topic", required=True)
    s.add_argument("--acked", required=True)
    s.add_argument("--timeout", type=float, default=60.0)
    args = p.parse_args()
    return {"wait": cmd_wait, "count": cmd_count, "stream": cmd_stream}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
