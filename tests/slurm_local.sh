#!/usr/bin/env bash
# Opt-in end-to-end test on a real single-node Slurm (root; packages slurmctld slurmd
# slurm-client munge): bring it up, submit a 4-shard array + merge with
# scripts/slurm-submit, wait, compare with a single-machine run, bring it down.
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
