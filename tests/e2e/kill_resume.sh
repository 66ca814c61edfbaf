#!/usr/bin/env bash
# Kill covfit with SIGKILL at random moments (during compute and during flushes), resume
# each time, and check the final file equals an uninterrupted run. Then SIGTERM and
# SIGINT: clean exit (128+N) with a resume hint, and a resumable file.
# Usage: kill_resume.sh <covfit binary> <source dir>
set -euo pipefail
bin=$1; src=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
job="$src/jobs/demo.toml"
# A sanitizer build (scripts/test --sanitize sets COVFIT_TEST_TIMEOUT_SCALE) is ~30x slower:
# fewer steps keep the run minutes long while kills still land mid-run.
steps=$((2500 / ${COVFIT_TEST_TIMEOUT_SCALE:-1}))
sets=(--set fit.max_steps=$steps --set fit.rel_tol=0 --set grid.restarts=6 --set 'grid.K=[9,16]')
run() { "$bin" run "$job" "${sets[@]}" -q --flush-every 0.05 "$@"; }
# Started in the background without a shell function in between, so $! is covfit itself.
start() { "$bin" run "$job" "${sets[@]}" -q --flush-every 0.05 "$@" & pid=$!; }
compare() { /usr/bin/python3 "$src/tests/e2e/compare_results.py" "$@"; }

run -o "$tmp/ref.h5" -t 2 >/dev/null
echo "reference run done"

RANDOM=42
for i in 1 2 3 4 5 6; do
  start -o "$tmp/killed.h5" -t 2 >/dev/null 2>"$tmp/err"
  sleep "0.$((RANDOM % 8 + 2))"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  # The file must stay readable after every kill (h5py, SWMR read).
  if [ -f "$tmp/killed.h5" ]; then
    /usr/bin/python3 -c "import h5py,sys; f=h5py.File(sys.argv[1],'r',libver='latest',swmr=True); print('after kill $i:', len(f['/fit/tasks']), 'tasks')" "$tmp/killed.h5"
  fi
done
run -o "$tmp/killed.h5" -t 1 >/dev/null
compare "$tmp/ref.h5" "$tmp/killed.h5"

# SIGTERM (what Slurm sends at the time limit) and SIGINT (Ctrl-C): flush, exit 128+N,
# say how to resume; the file is marked incomplete and resumes to the reference.
interrupt_and_resume() {  # SIGNAL NUMBER
  local out="$tmp/sig$2.h5" err="$tmp/sig$2.err" rc=0
  start -o "$out" -t 1 >/dev/null 2>"$err"
  sleep 1.0
  kill -"$1" "$pid"
  wait "$pid" || rc=$?
  [ "$rc" = $((128 + $2)) ] || { echo "SIG$1 exit code $rc, expected $((128 + $2))"; cat "$err"; exit 1; }
  grep -q "interrupted by signal $2" "$err" && grep -q "to resume, run the same command again" "$err" ||
    { cat "$err"; exit 1; }
  "$bin" inspect "$out" | grep -q "incomplete: re-run the same command to resume"
  run -o "$out" -t 2 >/dev/null
  compare "$tmp/ref.h5" "$out"
}
interrupt_and_resume TERM 15
interrupt_and_resume INT 2
echo "kill/resume: ok"
