#!/usr/bin/env python3
"""thread_cpu.py PID SECONDS: CPU seconds spent by each thread (by name) of process PID over
the next SECONDS, from /proc/PID/task/*/stat; for interop/telemetry_bench.sh. Standard library
only."""
import os, sys, time
pid, secs = int(sys.argv[1]), float(sys.argv[2])
tick = os.sysconf("SC_CLK_TCK")
def sample():
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                s = f.read()
        except OSError:
            continue
        name = s[s.index("(") + 1:s.rindex(")")]
        fields = s[s.rindex(")") + 2:].split()
        out[(tid, name)] = (int(fields[11]) + int(fields[12])) / tick
    return out
a = sample(); time.sleep(secs); b = sample()
by = {}
for k, v in b.items():
    by[k[1]] = by.get(k[1], 0) + v - a.get(k, 0)
total = sum(by.values())
for n, v in sorted(by.items(), key=lambda x: -x[1]):
    if v > 0.005:
        print("%-20s %7.2f s  %5.1f %%" % (n, v, 100 * v / total if total else 0))
print("%-20s %7.2f s" % ("total", total))
