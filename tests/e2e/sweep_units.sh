#!/usr/bin/env bash
# A sweep with exact solutions split into work units (part x lambda block):
#  1. 3 shards + merge give the same file content as one process (except timings);
#  2. SIGKILL at 5 random moments, each followed by a resume, gives the same content, and
#     no unit committed before a kill is computed again (each unit records the run that
#     computed it, and a committed unit keeps it through every resume).
# Usage: sweep_units.sh <covfit binary> <source dir>
set -euo pipefail
bin=$1; src=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/job.toml" <<'TOML'
name = "sweep_units"
kind = "sweep"
seed = 3
[data]
name = "p"
source = "planted"
n = 100
m = 80
rank = 80
noise = 0.3
seed = 5
[sweep]
models = ["free"]
lambda_from = 1e-6
lambda_to = 10.0
lambda_count = 24
lambda_units = "s_max2"
folds = 3
exact = true
lambda_block = 4
store_lambdas = [1e-3]
TOML
py() { PYTHONPATH="$src/analysis" /usr/bin/python3 "$@"; }
# Everything but timings, bitwise: tasks, lambda rows, fold rows, every stored matrix.
same() { py "$src/tests/e2e/compare_sweeps.py" "$@"; }

"$bin" validate "$tmp/job.toml" | grep -q "1 tasks in 24 work units"
t0=$(date +%s.%N)
"$bin" run "$tmp/job.toml" -q -t 2 -o "$tmp/single.h5"
t1=$(date +%s.%N)
"$bin" inspect "$tmp/single.h5" | grep -q "24/24 work units done"

# 1. Three shards (one process each), merged.
for i in 0 1 2; do "$bin" run "$tmp/job.toml" -q -t 1 --shard $i/3 -o "$tmp/s$i.h5"; done
"$bin" inspect "$tmp/s1.h5" | grep -q "shard complete"
py -c "import covfit, sys
try:
    covfit.read_sweep(sys.argv[1]); sys.exit('a shard has no summary')
except ValueError as e:
    assert 'work units done' in str(e), e" "$tmp/s1.h5"
"$bin" merge -o "$tmp/merged.h5" "$tmp/s2.h5" "$tmp/s0.h5" "$tmp/s1.h5" >/dev/null
same "$tmp/single.h5" "$tmp/merged.h5"

# 2. SIGKILL at random moments, then resume; record which run committed each unit. A round
# whose kills all came too late (every unit committed by the first run: how long the units
# take against start-up and the summary varies with the machine's load) is repeated with
# earlier kills.
check_units() {  # prints the number of runs that computed units; fails on a recomputed unit
  py - "$tmp/killed.h5" "$tmp/committed.txt" <<'PY'
import sys
import covfit
u = covfit.read_sweep_units(sys.argv[1])
assert sorted(u["id"]) == list(range(24)), sorted(u["id"])
final = dict(zip(u["id"], u["run"]))
seen = [l.split(maxsplit=1) for l in open(sys.argv[2]) if l.strip()]
for i, run in seen:
    assert final[int(i)] == run.strip(), f"unit {i} was computed again after it was committed"
runs = len(set(final.values()))
print(f"kill/resume: {len(set(i for i, _ in seen))} units committed before kills kept; "
      f"{runs} runs computed the 24 units, each once", file=sys.stderr)
print(runs)
PY
}
runs=0
for scale in 0.7 0.3 0.12 0.05; do
  rm -f "$tmp/killed.h5"
  : >"$tmp/committed.txt"
  for k in 1 2 3 4 5; do
    "$bin" run "$tmp/job.toml" -q -t 2 --flush-every 0.05 -o "$tmp/killed.h5" &
    pid=$!
    # A random moment within the first part of an uninterrupted run's time (whatever the
    # machine's speed; later runs have less left to do, so some kills may come too late).
    sleep "$(py -c "import random; print(round(random.uniform(0.05, $scale) * ($t1 - $t0), 3))")"
    kill -9 $pid 2>/dev/null || true
    wait $pid 2>/dev/null || true
    rm -f "$tmp/killed.h5.lock"
    [ -e "$tmp/killed.h5" ] || continue
    py - "$tmp/killed.h5" >>"$tmp/committed.txt" <<'PY' || true
import sys
import covfit
try:
    u = covfit.read_sweep_units(sys.argv[1])
except Exception as e:  # killed before the first commit
    sys.exit(0)
for i, r in zip(u["id"], u["run"]):
    print(i, r)
PY
  done
  "$bin" run "$tmp/job.toml" -q -t 2 -o "$tmp/killed.h5"
  same "$tmp/single.h5" "$tmp/killed.h5"
  runs=$(check_units)
  [ "$runs" -ge 2 ] && break
done
[ "$runs" -ge 2 ] || { echo "no kill landed while units were computing: the test proved nothing"; exit 1; }

# Kills while the file is being created (HDF5 marks a file opened for writing without SWMR;
# covfit only renames a new file into place in SWMR mode): the next run must still work.
for d in 0.01 0.03 0.06 0.1; do
  rm -f "$tmp/early.h5"
  "$bin" run "$tmp/job.toml" -q -t 2 -o "$tmp/early.h5" >/dev/null 2>&1 &
  pid=$!; sleep $d; kill -9 $pid 2>/dev/null || true; wait $pid 2>/dev/null || true
  rm -f "$tmp/early.h5.lock"
  "$bin" run "$tmp/job.toml" -q -t 2 -o "$tmp/early.h5" >/dev/null
done
same "$tmp/single.h5" "$tmp/early.h5"
echo "sweep units: ok"
