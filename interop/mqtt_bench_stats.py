#!/usr/bin/env python3
"""Figures for interop/mqtt_bench.sh, standard library only.

  mqtt_bench_stats.py SUBFILE T0 T1 ACKED...

SUBFILE is the output of `mosquitto_sub -F '%U %p'` on lwm2m/+/up/notify: the receive time
(Unix seconds with nanoseconds) and the payload, whose value is the device's time.time_ns()
when it first sent the notification. T0..T1 (Unix seconds) is the measurement window: the
notifications sent in it count. ACKED are the devices' logs of ACKed values (the same
send times), to check that every ACKed notification of the window arrived.

Prints notifications/s (sent in the window and received, divided by the window), the
latency from the device's send to the subscriber's receive (p50, p90, p99, max), and how
many ACKed notifications of the window never arrived.
"""
import bisect
import json
import sys


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def main():
    path, t0, t1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    lo, hi = int(t0 * 1e9), int(t1 * 1e9)
    latencies, received, total = [], [], 0
    with open(path, errors="replace") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            parts = line.split(" ", 1)
            try:
                recv = int(parts[0].replace(".", ""))  # %U: seconds.nanoseconds, 9 digits
                msg = json.loads(parts[1])
                sent = int(msg["data"]["content"][0]["value"])
            except (ValueError, KeyError, IndexError, TypeError):
                continue
            total += 1
            # The value went through the server as a Float (f64): within ~256 ns of the
            # device's integer nanoseconds, far below the latencies measured.
            if lo <= sent < hi:
                latencies.append((recv - sent) / 1e6)
                received.append(sent)
    received.sort()

    def arrived(v):
        # The f64 on the way rounds to a multiple of 256 ns at today's time_ns.
        i = bisect.bisect_left(received, v - 512)
        return i < len(received) and received[i] <= v + 512

    acked = 0
    missing = 0
    for name in sys.argv[4:]:
        with open(name) as f:
            for v in f.read().split():
                v = int(v)
                if lo <= v < hi:
                    acked += 1
                    if not arrived(v):
                        missing += 1
    latencies.sort()
    window = t1 - t0
    print("window %.1f s: %d notifications sent and received, %.0f notifications/s end to end"
          % (window, len(latencies), len(latencies) / window))
    print("latency device send -> subscriber receive: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms"
          % (percentile(latencies, 50), percentile(latencies, 90), percentile(latencies, 99),
             latencies[-1] if latencies else float("nan")))
    print("ACKed by the server in the window: %d, of which never received: %d (messages received in all: %d)"
          % (acked, missing, total))
    return 0 if latencies and missing == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
