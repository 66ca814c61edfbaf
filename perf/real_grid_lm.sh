#!/usr/bin/env bash
# Issue 8, last item: Adam vs VarPro vs LM at K = 25 on the Jacksboro DEM (138,632 points,
# `full`, f64, standardised: loss = relative loss), same greedy initialisation (task 0 of
# jobs/real_grid_lm.toml), same bounds, one thread each, one after another in one process
# (perf/rbf_lm_bench.cpp). Prints relative loss, iterations, seconds and seconds to each
# level, with the machine load before and after (the machine is shared: compare rows of
# one run only). About 6-10 minutes.
# Usage: perf/real_grid_lm.sh [BUILD_DIR] [extra rbf_lm_bench options]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
shift || true
cd "$root"
[ -f perf/data/jacksboro_dem.h5 ] || /usr/bin/python3 perf/make_real_data.py
echo "# $(date -u +%FT%TZ)  commit $(git rev-parse --short HEAD)  $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)  nproc $(nproc)"

echo "# load at start: $(cat /proc/loadavg)"
"$build/rbf_lm_bench" perf/data/jacksboro_dem.h5 elevation --K 25 --opt adam,varpro,lm \
  --adam-steps 20000 --lm-steps 200 --rel-tol 1e-4 --patience 10 "$@"
echo "# load at end: $(cat /proc/loadavg)"
