#!/usr/bin/env bash
# SIGKILL a sweep run at random moments, resume it each time, and compare the result with
# an uninterrupted run; count the work units each run computed (every unit records the run
# that computed it, and a resume copies committed units, never recomputes them).
#   perf/kill_resume.sh [JOB.toml] [kills] [min seconds] [max seconds] [-t threads]
# Default: jobs/sweep_cluster.toml, 5 kills, each 2-12 s after its run started, -t 2.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
job=${1:-$root/jobs/sweep_cluster.toml}; kills=${2:-5}; lo=${3:-2}; hi=${4:-12}; threads=${5:-2}
bin=${COVFIT:-$root/build/covfit}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
py() { PYTHONPATH="$root/analysis" /usr/bin/python3 "$@"; }
units() {  # "id run" per committed unit of a (possibly killed) file
  py - "$1" <<'PY' 2>/dev/null || true
import sys
import covfit
try:
    u = covfit.read_sweep_units(sys.argv[1])
except Exception:
    sys.exit(0)
for i, r in zip(u["id"], u["run"]):
    print(i, r)
PY
}
t0=$(date +%s.%N)
"$bin" run "$job" -q -t "$threads" -o "$tmp/whole.h5" >/dev/null
t1=$(date +%s.%N)
echo "uninterrupted: $(py -c "print(f'{$t1 - $t0:.1f}')") s wall"
: >"$tmp/seen.txt"
for k in $(seq 1 "$kills"); do
  "$bin" run "$job" -q -t "$threads" -o "$tmp/killed.h5" >/dev/null 2>&1 &
  pid=$!
  wait_s=$(py -c "import random; print(round(random.uniform($lo, $hi), 1))")
  sleep "$wait_s"
  kill -9 $pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
  rm -f "$tmp/killed.h5.lock"
  units "$tmp/killed.h5" >"$tmp/after$k.txt"
  cat "$tmp/after$k.txt" >>"$tmp/seen.txt"
  echo "kill $k after $wait_s s: $(wc -l <"$tmp/after$k.txt") units committed"
done
"$bin" run "$job" -q -t "$threads" -o "$tmp/killed.h5" >/dev/null
PYTHONPATH="$root/analysis" /usr/bin/python3 "$root/tests/e2e/compare_sweeps.py" "$tmp/whole.h5" "$tmp/killed.h5"
py - "$tmp/killed.h5" "$tmp/seen.txt" <<'PY'
import collections
import sys
import covfit
u = covfit.read_sweep_units(sys.argv[1])
final = dict(zip(u["id"], u["run"]))
assert len(final) == len(u), "a unit appears twice"
seen = {}
for line in open(sys.argv[2]):
    if line.strip():
        i, run = line.split(maxsplit=1)
        seen[int(i)] = run.strip()
again = [i for i, r in seen.items() if final[i] != r]
assert not again, f"units computed again after they were committed: {again}"
by_run = collections.Counter(final.values())
print(f"{len(final)} units, each computed once, by {len(by_run)} runs: "
      + ", ".join(str(n) for n in by_run.values()) + f"; {len(seen)} committed before the last kill kept")
PY
