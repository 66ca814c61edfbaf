#!/usr/bin/env bash
# Kill covfit with SIGKILL at random moments (during compute and during flushes), resume
# each time, and check the final file equals an uninterrupted run. Then SIGTERM and
# SIGINT: clean exit (128+N) with a resume hint, and a resumable file.
# Usage: kill_resume.sh <covfit binary> <source dir>
set -euo pipefail
bin=$1; src=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
job="$src/jobs/demo.toml"
sets=(--set fit.max_steps=2500 --set fit.rel_tol=0 --set grid.restarts=6 --set 'grid.K=[9,16]')
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

# SIGTERM: flush, exit 128+15, say how to resume.
start -o "$tmp/term.h5" -t 1 >/dev/null 2>"$tmp/term.err"
sleep 1.0
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
[ "$rc" = 143 ] || { echo "SIGTERM exit code $rc, expected 143"; cat "$tmp/term.err"; exit 1; }
grep -q "to resume, run the same command again" "$tmp/term.err" || { cat "$tmp/term.err"; exit 1; }
"$bin" inspect "$tmp/term.h5" | grep -q "incomplete: re-run the same command to resume"
run -o "$tmp/term.h5" -t 2 >/dev/null
compare "$tmp/ref.h5" "$tmp/term.h5"

# SIGINT (Ctrl-C): the same, exit 128+2.
start -o "$tmp/int.h5" -t 1 >/dev/null 2>"$tmp/int.err"
sleep 1.0
kill -INT "$pid"
rc=0; wait "$pid" || rc=$?
[ "$rc" = 130 ] || { echo "SIGINT exit code $rc, expected 130"; cat "$tmp/int.err"; exit 1; }
grep -q "interrupted by signal 2" "$tmp/int.err" || { cat "$tmp/int.err"; exit 1; }
run -o "$tmp/int.h5" -t 2 >/dev/null
compare "$tmp/ref.h5" "$tmp/int.h5"
echo "kill/resume: ok"
