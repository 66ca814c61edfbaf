#!/usr/bin/env bash
# Shards (as a 1-based Slurm array would run them, via SLURM_ARRAY_TASK_ID/MIN/MAX/COUNT) merged into one
# file equal to a single-machine run; incomplete or missing shards are refused (exit 2).
# Usage: shard_merge.sh <covfit binary> <source dir>
set -euo pipefail
bin=$1; src=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
compare() { /usr/bin/python3 "$src/tests/e2e/compare_results.py" "$@"; }
sets=(--set fit.max_steps=200 --set grid.restarts=3)

"$bin" run "$src/jobs/demo.toml" "${sets[@]}" -q -o "$tmp/single.h5" >/dev/null
# A 1-based array (sbatch --array=1-4): task id t runs shard t - 1 of 4.
for t in 1 2 3 4; do
  SLURM_ARRAY_TASK_ID=$t SLURM_ARRAY_TASK_MIN=1 SLURM_ARRAY_TASK_MAX=4 SLURM_ARRAY_TASK_COUNT=4 \
    "$bin" run "$src/jobs/demo.toml" "${sets[@]}" -q -o "$tmp/shard$((t - 1)).h5" -t 1 >/dev/null
done
"$bin" inspect "$tmp/shard2.h5" | grep -q "shard      2/4"

rc=0; "$bin" merge -o "$tmp/m.h5" "$tmp/shard0.h5" "$tmp/shard1.h5" "$tmp/shard3.h5" 2>"$tmp/err" || rc=$?
[ "$rc" = 2 ] && grep -q "shards 2 of 4 are missing" "$tmp/err" || { echo "missing shard not refused: rc=$rc"; cat "$tmp/err"; exit 1; }
[ ! -e "$tmp/m.h5" ]

"$bin" merge -o "$tmp/m.h5" "$tmp"/shard{3,1,0,2}.h5
compare "$tmp/single.h5" "$tmp/m.h5"

# An incomplete shard is refused.
"$bin" run "$src/jobs/demo.toml" "${sets[@]}" -q --shard 1/4 --max-tasks 2 -o "$tmp/part1.h5" >/dev/null
rc=0; "$bin" merge -o "$tmp/m2.h5" "$tmp/shard0.h5" "$tmp/part1.h5" "$tmp/shard2.h5" "$tmp/shard3.h5" 2>"$tmp/err" || rc=$?
[ "$rc" = 2 ] && grep -q "is incomplete: 2 of" "$tmp/err" || { echo "incomplete shard not refused: rc=$rc"; cat "$tmp/err"; exit 1; }

# Shards of a different job are refused.
"$bin" run "$src/jobs/demo.toml" --set fit.max_steps=201 --set grid.restarts=3 -q --shard 2/4 -o "$tmp/other2.h5" >/dev/null
rc=0; "$bin" merge -o "$tmp/m3.h5" "$tmp/shard0.h5" "$tmp/shard1.h5" "$tmp/other2.h5" "$tmp/shard3.h5" 2>"$tmp/err" || rc=$?
[ "$rc" = 2 ] && grep -q "different job" "$tmp/err" || { echo "foreign shard not refused: rc=$rc"; cat "$tmp/err"; exit 1; }
# Sweep jobs shard and merge the same way (2 tasks: free and free_diag).
ssets=(--set data.n=40 --set data.m=24 --set data.rank=5 --set sweep.lambda_count=6 --set sweep.folds=3)
"$bin" run "$src/jobs/sweep_diag.toml" "${ssets[@]}" -q -o "$tmp/sw_single.h5" >/dev/null
for i in 0 1; do
  "$bin" run "$src/jobs/sweep_diag.toml" "${ssets[@]}" -q --shard $i/2 -o "$tmp/sw_shard$i.h5" >/dev/null
done
"$bin" merge -o "$tmp/sw_merged.h5" "$tmp/sw_shard1.h5" "$tmp/sw_shard0.h5" >/dev/null
PYTHONPATH="$src/analysis" /usr/bin/python3 - "$tmp/sw_single.h5" "$tmp/sw_merged.h5" <<'PY'
import sys
import numpy as np
import covfit
a, b = (covfit.read_sweep(p).sort_values(["task_id", "lambda", "lambda_d"]).reset_index(drop=True)
        for p in sys.argv[1:3])
assert len(a) == len(b) > 0, (len(a), len(b))
for c in a.columns:
    if "seconds" in c:
        continue
    x, y = a[c].to_numpy(), b[c].to_numpy()
    same = np.array_equal(x, y, equal_nan=True) if x.dtype.kind == "f" else (x == y).all()
    assert same, c
print(f"sweep merge: equal ({len(a)} rows)")
# Every stored matrix is a plain dataset in the merged file too, equal to the single run's.
import h5py
with h5py.File(sys.argv[1], "r") as fa, h5py.File(sys.argv[2], "r") as fb:
    names = sorted(f"{t}/{n}" for t in fa["sweep/matrices"] for n in fa["sweep/matrices"][t])
    assert names and names == sorted(f"{t}/{n}" for t in fb["sweep/matrices"] for n in fb["sweep/matrices"][t])
    for n in names:
        np.testing.assert_array_equal(fa["sweep/matrices/" + n][()], fb["sweep/matrices/" + n][()])
    assert int(fb.attrs["complete"]) == 1 and len(fb.attrs["writers"]) == 3, fb.attrs["writers"]
PY
echo "shard/merge: ok"
