"""What interop/cluster.sh's two phases check with: PASS/FAIL lines and their count, a value
from a node's /metrics text (Prometheus), the simulator's JSON report."""
import json
import re


class Checks:
    """Counts and prints each case as PASS or FAIL."""

    def __init__(self, passed=0, failed=0):
        self.passed, self.failed = passed, failed

    def check(self, ok, name, detail):
        if ok:
            print(f"PASS: {name}")
            self.passed += 1
        else:
            print(f"FAIL: {name}: {detail}")
            self.failed += 1


def value(text, name, labels=""):
    """The sum of metric `name`'s samples whose labels contain `labels`."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(r'^(\w+)(\{[^}]*\})? ([0-9.e+-]+)$', line)
        if m and m.group(1) == name and labels in (m.group(2) or ""):
            total += float(m.group(3))
    return int(total)


def report(path, status, what, checks):
    """The simulator's report at `path`, or {} and a FAIL naming `what`."""
    try:
        return json.load(open(path))
    except Exception as e:
        checks.check(False, what, f"exit {status}: {e}")
        return {}
