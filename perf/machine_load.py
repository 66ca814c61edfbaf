"""Shared by the perf/ comparison scripts: read and wait on the machine's load, since a
timing taken while something else runs means little on a 2-core machine."""
import time


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def wait_for_quiet(limit, tries, sleep):
    """Wait (a few times) for the 1-minute load to drop below `limit`; return it."""
    la = loadavg()
    for _ in range(tries):
        if la < limit:
            break
        print(f"  load {la:.2f} >= {limit}; waiting {sleep:.0f} s ...", flush=True)
        time.sleep(sleep)
        la = loadavg()
    return la
