#!/usr/bin/env bash
# End-to-end test of the Python reader and plots (analysis/covfit) against the covfit binary.
# Usage (ctest): bash tests/e2e/python_reader.sh <path-to-covfit-binary> <source-dir>
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 <covfit-binary> <source-dir>" >&2
  exit 2
fi
bin=$(realpath "$1")
src=$(realpath "$2")
python=/usr/bin/python3

if [[ ! -x "$bin" ]]; then
  echo "python_reader: covfit binary '$bin' is missing or not executable" >&2
  exit 1
fi
if ! "$python" -c 'import h5py, numpy, pandas, matplotlib' 2>/dev/null; then
  echo "python_reader: $python lacks h5py/numpy/pandas/matplotlib" \
       "(apt-get install python3-h5py python3-numpy python3-pandas python3-matplotlib)" >&2
  exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/covfit_python_reader.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

cd "$tmp"
export PYTHONPATH="$src/analysis" COVFIT_BIN="$bin" COVFIT_SOURCE_DIR="$src" \
       COVFIT_TEST_TMP="$tmp" MPLBACKEND=Agg MPLCONFIGDIR="$tmp/mpl" PYTHONDONTWRITEBYTECODE=1
"$python" -m unittest discover -s "$src/analysis/tests" -v
