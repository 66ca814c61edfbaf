#!/usr/bin/env bash
# Issue 8 measurements on real grids, in one go (about 3 minutes on 2 idle cores):
#   1. one Adam step at K = 25 ... 6400, dense vs local (with / without the recurrence), on
#      the Jacksboro DEM (138,632 points), f64 and f32, one thread;
#   2. the same dense step in numpy (GEMM formulation) on the same kernels;
#   3. greedy initialisation vs a 1000-step Adam fit at K = 1600;
#   4. jobs/real_grid.toml restricted to the 512 x 512 photograph (K = 400, 1000 steps, -t 2).
# Usage: perf/real_grid.sh [BUILD_DIR]   (prints everything; paste into perf/README.md)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
cd "$root"
[ -f perf/data/jacksboro_dem.h5 ] || /usr/bin/python3 perf/make_real_data.py
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "# $(date -u +%FT%TZ)  $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)  nproc $(nproc)"
echo "# SIMD: $(grep -o 'avx[^ ]*' /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo "# load at start: $(cat /proc/loadavg)"
"$build/rbf_local_bench" perf/data/jacksboro_dem.h5 elevation --reps 5 \
  --K 25,100,400,1000,1600,6400 --save-kernels "$tmp/kernels.h5"
OPENBLAS_NUM_THREADS=1 /usr/bin/python3 perf/compare_numpy_gemm_step.py \
  perf/data/jacksboro_dem.h5 elevation "$tmp/kernels.h5" --reps 3
"$build/rbf_local_bench" perf/data/jacksboro_dem.h5 elevation --f32 --reps 5 --K 1000,6400
"$build/rbf_local_bench" perf/data/jacksboro_dem.h5 elevation --reps 3 --K 1600 \
  --dense-max-K 0 --fit-steps 1000
/usr/bin/time -f "# wall %e s, user %U s" "$build/covfit" run jobs/real_grid.toml -o "$tmp/img.h5" \
  -t 2 -q --set 'grid.data=["grace_hopper_512"]'
/usr/bin/python3 - "$tmp/img.h5" <<'PY'
import sys, h5py, numpy as np
g = np.asarray(h5py.File("perf/data/grace_hopper_512.h5", "r")["gray"])
t = h5py.File(sys.argv[1], "r")["fit/tasks"][0]
mse = t["final_loss"] * g.std() ** 2        # back to the [0, 1] pixel scale
print("# grace_hopper_512, K = 400, 1000 Adam steps: %.1f s (task), relative loss %.4f, PSNR %.2f dB"
      % (t["wall_seconds"], t["final_rel_loss"], 10 * np.log10(1 / mse)))
PY
echo "# load at end: $(cat /proc/loadavg)"
