#!/usr/bin/env bash
# Exact-solver budgets through the CLI: a sweep whose Newton budget is too small finishes,
# marks its rows `budget`, counts them in the summary and in inspect, and a bad budget value
# is rejected with the key named (exit 2, no output file).
# Usage: exact_budget.sh <covfit binary> <source dir>
set -euo pipefail
bin=$1; src=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
sets=(--set data.n=60 --set data.m=40 --set data.rank=40 --set data.noise=0.5
      --set sweep.lambda_from=1e-8 --set sweep.lambda_to=1.0 --set sweep.lambda_count=9
      --set sweep.folds=2 --set sweep.store_lambdas=[1.0])

"$bin" run "$src/jobs/sweep_planted.toml" "${sets[@]}" --set sweep.exact_max_newton=1 \
  -o "$tmp/b.h5" >"$tmp/out" 2>&1 || { cat "$tmp/out"; exit 1; }
grep -q "budget" "$tmp/out" || { echo "summary does not count budget rows"; cat "$tmp/out"; exit 1; }
"$bin" inspect "$tmp/b.h5" | grep -q "budget" || { echo "inspect does not count budget rows"; exit 1; }
/usr/bin/python3 - "$tmp/b.h5" <<'PY'
import sys, h5py
t = h5py.File(sys.argv[1], "r")["sweep/lambda"][()]
st = [s.decode() for s in t["exact_status"]]
assert "budget" in st, st
assert all(s in ("converged", "budget") for s in st), st
assert (t["newton_iters"] <= 1).all(), t["newton_iters"]
PY

# The default budget certifies the same sweep.
"$bin" run "$src/jobs/sweep_planted.toml" "${sets[@]}" -q -o "$tmp/ok.h5" >/dev/null
"$bin" inspect "$tmp/ok.h5" | grep -q "9 certified" || { "$bin" inspect "$tmp/ok.h5"; exit 1; }

rc=0; "$bin" run "$src/jobs/sweep_planted.toml" --set sweep.exact_max_cg=0 -o "$tmp/bad.h5" 2>"$tmp/err" || rc=$?
[ "$rc" = 2 ] && grep -q "exact_max_cg" "$tmp/err" || { echo "bad budget not rejected: rc=$rc"; cat "$tmp/err"; exit 1; }
[ ! -e "$tmp/bad.h5" ]
echo "exact_budget: ok"
