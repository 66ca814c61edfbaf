#!/usr/bin/env bash
# Shards (as a Slurm array would run them, via SLURM_ARRAY_TASK_ID/COUNT) merged into one
# file equal to a single-machine run; incomplete or missing shards are refused (exit 2).
# Usage: shard_merge.sh <covfit binary> <source dir>
set -euo pipefail
bin=$1; src=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
compare() { /usr/bin/python3 "$src/tests/e2e/compare_results.py" "$@"; }
sets=(--set fit.max_steps=200 --set grid.restarts=3)

"$bin" run "$src/jobs/demo.toml" "${sets[@]}" -q -o "$tmp/single.h5" >/dev/null
for i in 0 1 2 3; do
  SLURM_ARRAY_TASK_ID=$i SLURM_ARRAY_TASK_COUNT=4 "$bin" run "$src/jobs/demo.toml" "${sets[@]}" -q \
    -o "$tmp/shard$i.h5" -t 1 >/dev/null
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
echo "shard/merge: ok"
