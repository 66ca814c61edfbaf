#!/usr/bin/env bash
# The command-line contract: exit codes (0 ok, 2 bad input), messages that name the
# place, --json that parses, gen planted -> sweep on HDF5 input, validate.
# Usage: cli.sh <covfit binary> <source dir>
set -euo pipefail
bin=$1; src=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
expect_rc() {  # expect_rc RC PATTERN CMD...: exit code RC and stderr+stdout matching PATTERN
  local want=$1 pattern=$2; shift 2
  local rc=0; "$@" >"$tmp/out" 2>&1 || rc=$?
  [ "$rc" = "$want" ] || { cat "$tmp/out"; fail "'$*' exited $rc, expected $want"; }
  grep -qE -- "$pattern" "$tmp/out" || { cat "$tmp/out"; fail "'$*' output lacks /$pattern/"; }
}

expect_rc 0 "Subcommands" "$bin" --help
expect_rc 0 "covfit [0-9]" "$bin" --version
expect_rc 2 "" "$bin" frobnicate
expect_rc 2 "" "$bin" run
expect_rc 0 "ok: job 'demo' \(fit\), 20 tasks" "$bin" validate "$src/jobs/demo.toml"
expect_rc 0 "ok: job 'sweep_planted' \(sweep\), 1 tasks in 120 work units" "$bin" validate "$src/jobs/sweep_planted.toml"
expect_rc 2 "no/such.toml: cannot open job file" "$bin" validate no/such.toml
printf 'name = "x"\n[data]\nsource = "franke"\n[fit]\nmax_step = 3\n' > "$tmp/typo.toml"
expect_rc 2 "typo.toml:5: unknown key 'fit.max_step'" "$bin" validate "$tmp/typo.toml"
expect_rc 2 "'grid.K': expected an integer" "$bin" validate "$src/jobs/demo.toml" --set 'grid.K=["nine"]'
expect_rc 2 "directory .* does not exist" "$bin" run "$src/jobs/demo.toml" -o "$tmp/no/dir/out.h5" -q
expect_rc 2 "not a readable HDF5 file" "$bin" inspect "$src/README.md"
expect_rc 2 "--shard 4/4" "$bin" run "$src/jobs/demo.toml" --shard 4/4 -o "$tmp/s.h5" -q

# A small fit; inspect text and JSON.
"$bin" run "$src/jobs/demo.toml" --set fit.max_steps=50 --set 'grid.K=[4]' -o "$tmp/fit.h5" -q >/dev/null
expect_rc 0 "progress   10/10 done" "$bin" inspect "$tmp/fit.h5"
"$bin" inspect --json "$tmp/fit.h5" | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["format"] == "covfit-results" and d["tasks_done"] == 10, d
assert len(d["best"]) == 5 and all(b["final_loss"] >= 0 for b in d["best"]), d["best"]'
# The same output path again with another job: refused, file untouched.
before=$(md5sum "$tmp/fit.h5")
expect_rc 2 "different job" "$bin" run "$src/jobs/demo.toml" --set fit.max_steps=51 --set 'grid.K=[4]' -o "$tmp/fit.h5" -q
[ "$before" = "$(md5sum "$tmp/fit.h5")" ] || fail "refused file was modified"

# Provenance: build, machine, run and the resolved job; a resume adds a writer line.
"$bin" run "$src/jobs/demo.toml" --set fit.max_steps=20 --max-tasks 3 -o "$tmp/prov.h5" -q >/dev/null
"$bin" run "$src/jobs/demo.toml" --set fit.max_steps=20 -t 1 -o "$tmp/prov.h5" -q >/dev/null
/usr/bin/python3 - "$tmp/prov.h5" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    a = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
for k in ("git_commit", "git_dirty", "compiler", "cxx_flags", "march", "simd_arch", "cpu_simd",
          "blas", "blas_threads", "threads", "hdf5_version", "host", "command_line", "job_resolved_toml"):
    assert isinstance(a.get(k), str) and a[k], (k, a.get(k))
assert len(a["git_commit"]) == 40 or a["git_commit"].startswith("unknown"), a["git_commit"]
assert a["threads"] == "1" and "-t 1" in a["command_line"], (a["threads"], a["command_line"])
assert "max_steps = 20" in a["job_resolved_toml"] and "beta1 = " in a["job_resolved_toml"]  # defaults too
w = [x.decode() for x in a["writers"]]
assert len(w) == 2 and "--max-tasks 3" in w[0] and "-t 1" in w[1], w
assert int(a["complete"]) == 1
PY

# gen planted -> sweep with HDF5 input; bad dataset names are named.
expect_rc 0 "X \(60 x 30\)" "$bin" gen planted --n 60 --m 30 --rank 5 --seed 2 -o "$tmp/case.h5"
expect_rc 2 "exists" "$bin" gen planted --n 60 --m 30 -o "$tmp/case.h5"
cat > "$tmp/sw.toml" <<TOML
name = "sw"
kind = "sweep"
[data]
source = "hdf5"
file = "case.h5"
[sweep]
lambda_from = 1e-3
lambda_to = 10.0
lambda_count = 20
lambda_units = "s_max2"
folds = 3
TOML
# file = "case.h5" names the file next to the job file, from any working directory.
cd /
expect_rc 0 "planted|data  *free  *ok" "$bin" run "$tmp/sw.toml" -o "$tmp/sw.h5"
expect_rc 2 "case.h5:W: expected a 2-D|case.h5:nope: no such dataset" "$bin" run "$tmp/sw.toml" --set data.s_dataset=nope -o "$tmp/sw2.h5" -q
[ ! -e "$tmp/sw2.h5" ] || fail "a file was written for bad input"
# validate opens the inputs (it used to say "ok" without): bad dataset, missing file.
expect_rc 0 "input    data: X 60 x 30, S 30 x 30" "$bin" validate "$tmp/sw.toml"
/usr/bin/python3 - "$tmp/sw.h5" "$tmp/case.h5" <<'PY'
import sys, h5py
t = h5py.File(sys.argv[1], "r").attrs["job_resolved_toml"]
t = t.decode() if isinstance(t, bytes) else t
assert f"file = '{sys.argv[2]}'" in t, t  # the input path as resolved against the job file
PY
expect_rc 0 "output   about [0-9.]+ MB" "$bin" validate "$tmp/sw.toml"
expect_rc 2 "case.h5:nope: no such dataset" "$bin" validate "$tmp/sw.toml" --set data.s_dataset=nope
# store = "all": every W as a dataset (many lambda attributes: dense attribute storage),
# finalised without a warning.
expect_rc 0 "results:" "$bin" run "$tmp/sw.toml" --set 'sweep.store="all"' --set sweep.exact=false -o "$tmp/all.h5"
if grep -q warning "$tmp/out"; then cat "$tmp/out"; fail "finalize warned"; fi
/usr/bin/python3 - "$tmp/all.h5" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    W = f["sweep/matrices/0/W_lin"]
    assert W.shape == (20, 60, 60) and len(W.attrs["lambda_job"]) == 20, W.shape
    assert int(f.attrs["complete"]) == 1
PY
[ ! -e "$tmp/all.h5.finalize-tmp" ] || fail "finalize left its copy"
mv "$tmp/case.h5" "$tmp/moved.h5"
expect_rc 2 "$tmp/case.h5" "$bin" validate "$tmp/sw.toml"
cd "$tmp"
echo "cli: ok"
