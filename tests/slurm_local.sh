#!/usr/bin/env bash
# Opt-in end-to-end test on a real single-node Slurm (root; packages slurmctld slurmd
# slurm-client munge): bring it up, submit 4-shard arrays + merge with
# scripts/slurm-submit (the fit demo, and jobs/sweep_cluster.toml: one exact sweep split
# into 36 work units), wait, compare with single-machine runs, bring it down.
# Not part of ctest (it starts system daemons). Usage: tests/slurm_local.sh [build dir]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
tmp=$(mktemp -d)
"$root/scripts/slurm-local" up
trap '"$root/scripts/slurm-local" down; rm -rf "$tmp"' EXIT
cd "$tmp"
COVFIT="$build/covfit" "$root/scripts/slurm-submit" "$root/jobs/demo.toml" 4 "$tmp/out" --cpus-per-task=1
for _ in $(seq 1 600); do [ -z "$(squeue -h)" ] && break; sleep 0.5; done
"$build/covfit" run "$root/jobs/demo.toml" -o "$tmp/single.h5" -q >/dev/null
/usr/bin/python3 "$root/tests/e2e/compare_results.py" "$tmp/single.h5" "$tmp/out/demo.h5"
echo "slurm array + merge: ok"

# One sweep with exact solutions (n = 600, m = 300, 60 lambdas, 5 folds: 36 work units)
# over a 4-task array; the merge assembles the summary. Equal to one process but timings.
t0=$(date +%s)
COVFIT="$build/covfit" "$root/scripts/slurm-submit" "$root/jobs/sweep_cluster.toml" 4 "$tmp/sw" --cpus-per-task=1
for _ in $(seq 1 7200); do [ -z "$(squeue -h)" ] && break; sleep 0.5; done
t1=$(date +%s)
"$build/covfit" run "$root/jobs/sweep_cluster.toml" -t 2 -o "$tmp/sw_single.h5" -q >/dev/null
t2=$(date +%s)
"$build/covfit" inspect "$tmp/sw/sweep_cluster.h5" | grep -q "36/36 work units done"
PYTHONPATH="$root/analysis" /usr/bin/python3 "$root/tests/e2e/compare_sweeps.py" "$tmp/sw_single.h5" "$tmp/sw/sweep_cluster.h5"
echo "slurm sweep array (4 tasks, 36 units) + merge: ok ($((t1 - t0)) s on the array, $((t2 - t1)) s in one process with -t 2)"
