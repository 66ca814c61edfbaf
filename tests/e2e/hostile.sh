#!/usr/bin/env bash
# Hostile inputs: the promise "bad input -> exit 2, one message naming the place (file,
# line, dataset, key, value), no file created or changed; no crash, no hang; SIGTERM
# honoured", case by case across job files (TOML), HDF5 inputs, the command line,
# outputs, merge and gen. Every case runs in one work directory; the directory's
# listing and checksums before and after must agree.
# Usage: hostile.sh <covfit binary> <source dir>
set -uo pipefail
bin=$(realpath "$1"); src=$2
py=/usr/bin/python3  # Debian's, with h5py
tmp=$(mktemp -d)
bgpid=
cleanup() { [ -n "$bgpid" ] && kill -KILL "$bgpid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
w=$tmp/w; mkdir -p "$w"
scale=${COVFIT_TEST_TIMEOUT_SCALE:-1}
limit=$((20 * scale))   # seconds: a case that takes longer is a hang
cases=0; failures=0

snapshot() {
  # Every entry's name and type; every file's size, mtime and checksum. (A directory's
  # own mtime is not compared: the transient <output>.lock file changes it.)
  (cd "$w" && find . -printf '%p %y\n' | sort && find . -type f -printf '%p %s %T@\n' | sort &&
     find . -type f -print0 | sort -z | xargs -0 -r md5sum)
}
# hostile NAME RC PATTERN CMD...: CMD (run in $w) exits RC, its output matches PATTERN
# (the place), it prints at most one "covfit: error" line, and $w is unchanged.
hostile() {
  local name=$1 want=$2 pattern=$3; shift 3
  cases=$((cases + 1))
  local before after rc=0 why=""
  before=$(snapshot)
  (cd "$w" && exec timeout -s KILL "$limit" "$@") >"$tmp/out" 2>&1 || rc=$?
  after=$(snapshot)
  [ "$rc" = "$want" ] || why="exit $rc, expected $want"
  grep -qE -- "$pattern" "$tmp/out" || why="$why; output lacks /$pattern/"
  [ "$(grep -c 'covfit: error' "$tmp/out")" -le 1 ] || why="$why; more than one error line"
  [ "$before" = "$after" ] || why="$why; files changed: $(diff <(echo "$before") <(echo "$after") | head -5 | tr '\n' ' ')"
  if [ -n "$why" ]; then
    failures=$((failures + 1))
    echo "FAIL [$name]: $why"
    sed 's/^/    /' "$tmp/out" | head -5
  fi
}
bad() { local name=$1 pattern=$2; shift 2; hostile "$name" 2 "$pattern" "$@"; }

# ---------------------------------------------------------------- fixtures
cd "$w"
"$py" - <<'PY'
import h5py, numpy as np
rng = np.random.default_rng(1)
p = rng.uniform(size=(100, 2)); v = np.sin(3 * p[:, 0]) * np.cos(2 * p[:, 1])
def pts(name, points=p, values=v, **extra):
    with h5py.File(name, "w") as f:
        if points is not None: f["points"] = points
        if values is not None: f["values"] = values
        for k, x in extra.items(): f[k] = x
pts("pts.h5")
pts("big_values.h5", values=v * 1e300)
pts("big_points.h5", points=p * 1e300)
pts("nan_values.h5", values=np.where(np.arange(100) == 7, np.nan, v))
pts("shape3.h5", points=rng.uniform(size=(100, 3)))
pts("short_values.h5", values=v[:50])
pts("no_points.h5", points=np.zeros((0, 2)), values=np.zeros(0))
pts("strings.h5", points=np.array([b"a", b"b"]))
with h5py.File("group.h5", "w") as f:
    f.create_group("points"); f["values"] = v
with h5py.File("huge.h5", "w") as f:  # declares 2^40 x 2 doubles (16 TB), stores nothing
    f.create_dataset("points", shape=(2**40, 2), dtype="f8", chunks=(1024, 2))
    f.create_dataset("values", shape=(2**40,), dtype="f8", chunks=(1024,))
raw = open("pts.h5", "rb").read()
open("pts_trunc.h5", "wb").write(raw[: len(raw) // 2])
# covariance problems: X (n x m), S (m x m)
n, m = 12, 10
X = rng.normal(size=(n, m)); X -= X.mean(axis=0)
S = X.T @ X / n
def cov(name, X=X, S=S):
    with h5py.File(name, "w") as f:
        if X is not None: f["X"] = X
        if S is not None: f["S"] = S
cov("cov.h5")
cov("cov_big.h5", X=X * 1e200)
cov("cov_asym.h5", S=S + np.triu(np.ones((m, m))))
cov("cov_shape.h5", S=S[:5, :5])
cov("cov_1d.h5", X=X[0])
cov("cov_nan.h5", X=np.where(np.arange(n * m).reshape(n, m) == 5, np.nan, X))
with h5py.File("cov_huge.h5", "w") as f:
    f.create_dataset("X", shape=(2**31, 2**20), dtype="f8", chunks=(64, 64)); f["S"] = S
raw = open("cov.h5", "rb").read()
open("cov_trunc.h5", "wb").write(raw[: len(raw) - 700])
PY
cat > fit.toml <<'EOF'
name = "h"
[data]
source = "hdf5"
file = "pts.h5"
[fit]
max_steps = 5
[grid]
K = [2]
EOF
cat > planted.toml <<'EOF'
name = "p"
[data]
source = "planted"
points = 200
kernels = 2
[fit]
max_steps = 5
[grid]
K = [2]
EOF
cat > sweep.toml <<'EOF'
name = "s"
kind = "sweep"
[data]
source = "hdf5"
file = "cov.h5"
[sweep]
lambda = [0.1, 1.0]
folds = 2
exact = false
EOF
printf 'name = "x"\n[data\nsource = "franke"\n' > syntax.toml
printf 'name = "x"\n[data]\nsource = "franke"\n[fit]\nmax_step = 3\n' > typo.toml
printf 'name = "a\\u0000b"\n[data]\nsource = "franke"\n' > nul_name.toml
printf 'name = "x"\n[[data]]\nname = "d"\n[[data]]\nname = "d"\n' > dup.toml
printf 'name = "x"\ndata = [1, 2]\n' > data_array.toml
printf 'this is not toml at all \x01\x02\xff\n' > garbage.toml
: > empty.toml
truncate -s 17M big.toml
echo "just text" > notes.txt
: > zero.h5
mkdir adir
mkfifo fifo.toml fifo.h5
ln -s fit.toml link_to_job.toml
ln pts.h5 hardlink_pts.h5
"$bin" run fit.toml -o results.h5 -q >/dev/null || { echo "FAIL: fixture run"; exit 1; }
"$bin" run fit.toml -o shard0.h5 --shard 0/2 --set 'grid.restarts=4' -q >/dev/null &&
"$bin" run fit.toml -o shard1.h5 --shard 1/2 --set 'grid.restarts=4' -q >/dev/null &&
"$bin" run fit.toml -o partial1.h5 --shard 1/2 --set 'grid.restarts=4' --max-tasks 1 -q >/dev/null ||
  { echo "FAIL: fixture shards"; exit 1; }
"$py" - <<'PY'
raw = bytearray(open("results.h5", "rb").read())
for off in range(2000, len(raw), 997): raw[off] ^= 0xFF       # flipped bytes everywhere
open("damaged.h5", "wb").write(raw)
import h5py
with h5py.File("results.h5", "r") as f:  # the object header of /fit/tasks (checksummed)
    addr = h5py.h5o.get_info(f["fit/tasks"].id).addr
raw2 = bytearray(open("results.h5", "rb").read())
for off in range(addr + 8, addr + 40): raw2[off] ^= 0xFF  # root attributes intact
open("damaged_tables.h5", "wb").write(raw2)
open("results_trunc.h5", "wb").write(bytes(raw2[: len(raw2) // 3]))
PY
cp damaged.h5 damaged_shard.h5

# ---------------------------------------------------------------- job files (TOML)
bad toml.syntax "syntax.toml:[23]" "$bin" validate syntax.toml
bad toml.unknown_key "typo.toml:5: unknown key 'fit.max_step'" "$bin" validate typo.toml
bad toml.garbage "garbage.toml:1" "$bin" validate garbage.toml
bad toml.empty "empty.toml:1: 'name': every job needs a name" "$bin" validate empty.toml
bad toml.nul_name "nul_name.toml:1: 'name': contains the control character U\+0000" "$bin" run nul_name.toml -q
bad toml.slash_name "'name': must not contain '/'" "$bin" run fit.toml --set 'name="../x"' -q
bad toml.newline_name "'name': contains the control character U\+000A" "$bin" run fit.toml --set 'name="a\nb"' -q
bad toml.data_name_nul "'data.name': contains the control character" "$bin" validate fit.toml --set 'data.name="a\u0001"'
bad toml.dup_data "dup.toml: two data sets are named 'd'" "$bin" validate dup.toml
bad toml.data_array "data_array.toml:2: \[\[data\]\] entries must be tables" "$bin" validate data_array.toml
bad toml.kind "'kind': 'bogus' is not a known job kind" "$bin" validate fit.toml --set kind=bogus
bad toml.kind_nul "'kind': 'a\\\\x00b' is not a known job kind" "$bin" validate fit.toml --set 'kind="a\u0000b"'
bad toml.source "'data.source': 'nowhere' is not one of" "$bin" validate fit.toml --set data.source=nowhere
bad toml.wrong_type "'grid.K': expected an integer" "$bin" validate fit.toml --set 'grid.K=["nine"]'
bad toml.grid_range "'data.grid': must be in \[2, 4096\]" "$bin" validate planted.toml --set data.source=franke --set data.grid=1
bad toml.points_zero "'data.points': must be in \[1, " "$bin" validate planted.toml --set data.points=0
bad toml.points_2e9 "'data.points': must be in \[1, 100000000\]" "$bin" run planted.toml --set data.points=2000000000 -q
bad toml.points_float "'data.points': expected an integer" "$bin" validate planted.toml --set data.points=2e9
bad toml.points_int64 "'data.points': integer .* is out of range" "$bin" validate planted.toml --set data.points=99999999999
bad toml.kernels_1e6 "'data.kernels': must be in \[1, 4096\]" "$bin" run planted.toml --set data.kernels=1000000 -q
bad toml.noise_inf "'data.noise': expected a finite number" "$bin" run planted.toml --set data.noise=inf -q
bad toml.noise_nan "'data.noise': expected a finite number" "$bin" run planted.toml --set data.noise=nan -q
bad toml.noise_neg "'data.noise': must be >= 0" "$bin" validate planted.toml --set data.noise=-1
bad toml.anisotropy "'data.anisotropy': must be >= 1" "$bin" validate planted.toml --set data.anisotropy=0.5
bad toml.lr_inf "'fit.lr_weight': expected a finite number" "$bin" run fit.toml --set fit.lr_weight=inf -q
bad toml.lr_centre_ninf "'fit.lr_centre': expected a finite number" "$bin" run fit.toml --set fit.lr_centre=-inf -q
bad toml.width_inf "'fit.width_scale': expected a finite number" "$bin" run fit.toml --set fit.width_scale=inf -q
bad toml.width_zero "'fit.width_scale': must be > 0" "$bin" validate fit.toml --set fit.width_scale=0
bad toml.target_inf "'fit.target_loss': expected a finite number" "$bin" validate fit.toml --set fit.target_loss=inf
bad toml.max_steps_zero "'fit.max_steps': must be >= 1" "$bin" validate fit.toml --set fit.max_steps=0
bad toml.max_steps_huge "'fit.max_steps': integer .* is out of range" "$bin" validate fit.toml --set fit.max_steps=99999999999
bad toml.target_levels_neg "'fit.target_losses': levels must be > 0" "$bin" validate fit.toml --set 'fit.target_losses=[-1]'
bad toml.target_levels_17 "'fit.target_losses': at most 16 levels" "$bin" validate fit.toml --set 'fit.target_losses=[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]'
bad toml.sigma_min "'fit.sigma_min': must be > 0" "$bin" validate fit.toml --set fit.sigma_min=0
bad toml.sigma_order "'fit.sigma_min': must be below sigma_max" "$bin" validate fit.toml --set fit.sigma_min=5 --set fit.sigma_max=1
bad toml.beta1 "'fit.beta1': must be in \[0, 1\)" "$bin" validate fit.toml --set fit.beta1=1
bad toml.eps "'fit.eps': must be > 0" "$bin" validate fit.toml --set fit.eps=0
bad toml.precision "'fit.precision': must be" "$bin" validate fit.toml --set fit.precision=f16
bad toml.init "'fit.init': 'random' is not one of" "$bin" validate fit.toml --set fit.init=random
bad toml.K_zero "'grid.K': values must be in \[1, 65536\]" "$bin" validate fit.toml --set 'grid.K=[0]'
bad toml.K_huge "'grid.K': values must be in \[1, 65536\]" "$bin" validate fit.toml --set 'grid.K=[70000]'
bad toml.K_empty "'grid.K': must not be empty" "$bin" validate fit.toml --set 'grid.K=[]'
bad toml.restarts_max "'grid.restarts': must be in \[1, 1000000\]" "$bin" validate fit.toml --set grid.restarts=2147483647
bad toml.restarts_zero "'grid.restarts': must be in \[1, " "$bin" validate fit.toml --set grid.restarts=0
bad toml.tasks_total "fit.toml: the grid has 4e\+07 tasks; at most 10000000" "$bin" validate fit.toml --set grid.restarts=1000000 --set 'grid.K=[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40]'
bad toml.param "'grid.param': .*bogus" "$bin" validate fit.toml --set 'grid.param=["bogus"]'
bad toml.optimizer "'grid.optimizer': 'sgd' is not one of" "$bin" validate fit.toml --set 'grid.optimizer=["sgd"]'
bad toml.grid_data "'grid.data': no data set named 'nope'" "$bin" validate fit.toml --set 'grid.data=["nope"]'
bad toml.grid_lr_inf "'grid.lr_shape': expected a finite number" "$bin" validate fit.toml --set 'grid.lr_shape=[1e-3, inf]'
bad toml.sweep_in_fit "'sweep': only for kind" "$bin" validate fit.toml --set sweep.folds=2
bad toml.fit_in_sweep "'fit': not used by kind = \"sweep\"" "$bin" validate sweep.toml --set fit.max_steps=2
bad toml.lambda_missing "'sweep.lambda': a lambda grid is required" "$bin" validate sweep.toml --set 'sweep.lambda=[]'
bad toml.lambda_neg "'sweep.lambda': every lambda must be finite and > 0" "$bin" validate sweep.toml --set 'sweep.lambda=[-1]'
bad toml.lambda_inf "'sweep.lambda': expected a finite number" "$bin" validate sweep.toml --set 'sweep.lambda=[inf]'
bad toml.lambda_both "'sweep.lambda': give either" "$bin" validate sweep.toml --set sweep.lambda_from=1
bad toml.lambda_count "'sweep.lambda_count': must be in \[1, 1000000\]" "$bin" validate sweep.toml --set 'sweep.lambda=[]' --set sweep.lambda_from=1 --set sweep.lambda_to=2 --set sweep.lambda_count=0
bad toml.lambda_units "'sweep.lambda_units': must be" "$bin" validate sweep.toml --set sweep.lambda_units=relative
bad toml.folds "'sweep.folds': must be >= 2" "$bin" validate sweep.toml --set sweep.folds=1
bad toml.folds_many "sweep.folds" "$bin" validate sweep.toml --set sweep.folds=1000
bad toml.val_range "sweep.val" "$bin" validate sweep.toml --set 'sweep.val=[1000]'
bad toml.models "'sweep.models': 'x' is not one of" "$bin" validate sweep.toml --set 'sweep.models=["x"]'
bad toml.exact_newton "'sweep.exact_max_newton': must be in" "$bin" validate sweep.toml --set sweep.exact_max_newton=0
bad toml.exact_seconds "'sweep.exact_max_seconds': expected a finite number" "$bin" validate sweep.toml --set sweep.exact_max_seconds=inf
bad toml.store "'sweep.store': must be" "$bin" validate sweep.toml --set sweep.store=some
bad toml.blas_threads "'sweep.blas_threads': must be >= 1" "$bin" validate sweep.toml --set sweep.blas_threads=0
bad toml.cov_n "'data.n': must be in \[2, 100000\]" "$bin" run sweep.toml --set data.source=planted --set data.n=1000000 -q
bad toml.cov_m "'data.m': must be in \[3, 100000\]" "$bin" run sweep.toml --set data.source=planted --set data.m=200000 -q
bad toml.cov_rank "data 'data': rank 300 exceeds min\(n, m\)" "$bin" run sweep.toml --set data.source=planted --set data.n=50 --set data.m=40 --set data.rank=300 -q
bad toml.cov_memory "data 'data': the planted problem .* needs about .* of memory" "$bin" run sweep.toml --set data.source=planted --set data.n=100000 --set data.m=100000 -q
bad toml.set_no_eq "--set fit.max_steps: expected key.path=value" "$bin" validate fit.toml --set fit.max_steps
bad toml.set_not_table "--set name.x=1: 'name' is not a table" "$bin" validate fit.toml --set name.x=1
bad toml.missing_file "no/such.toml: cannot open job file" "$bin" validate no/such.toml
bad toml.job_dir "adir: job file is a directory" "$bin" run adir -q
bad toml.job_fifo "fifo.toml: job file is a FIFO" "$bin" run fifo.toml -q
bad toml.job_fifo_validate "fifo.toml: job file is a FIFO" "$bin" validate fifo.toml
bad toml.job_dev_zero "/dev/zero: job file is a character device" "$bin" run /dev/zero -q
bad toml.job_huge "big.toml: job file is larger than 16 MB" "$bin" validate big.toml
# The documented default written explicitly is accepted.
hostile toml.target_losses_empty_ok 0 "ok: job 'h'" "$bin" validate fit.toml --set 'fit.target_losses=[]'

# ---------------------------------------------------------------- HDF5 inputs
bad h5.missing "nope.h5: cannot open input file .*No such file" "$bin" run fit.toml --set data.file=nope.h5 -q
bad h5.text "notes.txt: not a readable HDF5 file" "$bin" run fit.toml --set data.file=notes.txt -q
bad h5.zero_bytes "zero.h5: not a readable HDF5 file" "$bin" run fit.toml --set data.file=zero.h5 -q
bad h5.truncated "pts_trunc.h5" "$bin" run fit.toml --set data.file=pts_trunc.h5 -q
bad h5.huge_extent "huge.h5:points: the dataset's declared shape \(1099511627776, 2\) needs about" "$bin" run fit.toml --set data.file=huge.h5 -q
bad h5.no_dataset "pts.h5:nope: no such dataset" "$bin" run fit.toml --set data.points_dataset=nope -q
bad h5.group "group.h5:points: is a group" "$bin" run fit.toml --set data.file=group.h5 -q
bad h5.shape "shape3.h5:points: expected shape \(N, 2\)" "$bin" run fit.toml --set data.file=shape3.h5 -q
bad h5.short_values "short_values.h5:values: expected shape \(100,\)" "$bin" run fit.toml --set data.file=short_values.h5 -q
bad h5.strings "strings.h5:points: expected a numeric dataset" "$bin" run fit.toml --set data.file=strings.h5 -q
bad h5.nan "nan_values.h5:values: non-finite value at index 7" "$bin" run fit.toml --set data.file=nan_values.h5 -q
bad h5.values_1e300 "big_values.h5:values: values too large" "$bin" run fit.toml --set data.file=big_values.h5 -q
bad h5.points_1e300 "big_points.h5:points: coordinates too large" "$bin" run fit.toml --set data.file=big_points.h5 -q
bad h5.no_points "no_points.h5:points: no points" "$bin" run fit.toml --set data.file=no_points.h5 -q
bad h5.fifo "fifo.h5: input file .* is a FIFO" "$bin" run fit.toml --set data.file=fifo.h5 -q
bad h5.dev_zero "/dev/zero: input file .* is a character device" "$bin" run fit.toml --set data.file=/dev/zero -q
bad h5.dir "adir: input file .* is a directory" "$bin" run fit.toml --set data.file=adir -q
bad h5.validate_huge "huge.h5:points" "$bin" validate fit.toml --set data.file=huge.h5
bad cov.big_absolute "cov_big.h5:X,S" "$bin" run sweep.toml --set data.file=cov_big.h5 -q
bad cov.big_s_max2 "cov_big.h5:X,S" "$bin" run sweep.toml --set data.file=cov_big.h5 --set sweep.lambda_units=s_max2 -q
bad cov.asymmetric "cov_asym.h5" "$bin" run sweep.toml --set data.file=cov_asym.h5 -q
bad cov.shape "cov_shape.h5" "$bin" run sweep.toml --set data.file=cov_shape.h5 -q
bad cov.one_d "cov_1d.h5:X: expected a 2-D dataset" "$bin" run sweep.toml --set data.file=cov_1d.h5 -q
bad cov.nan "cov_nan.h5" "$bin" run sweep.toml --set data.file=cov_nan.h5 -q
bad cov.huge "cov_huge.h5:X: dimension 2147483648 outside|cov_huge.h5:X: the dataset's declared shape" "$bin" run sweep.toml --set data.file=cov_huge.h5 -q
bad cov.truncated "cov_trunc.h5" "$bin" run sweep.toml --set data.file=cov_trunc.h5 -q
bad cov.no_dataset "cov.h5:Y: no such dataset" "$bin" run sweep.toml --set data.x_dataset=Y -q
bad cov.points_file "pts.h5:X: no such dataset" "$bin" run sweep.toml --set data.file=pts.h5 -q

# ---------------------------------------------------------------- command line
bad cli.threads_100000 "-t 100000: threads must be in 0\.\." "$bin" run fit.toml -t 100000 -q
bad cli.threads_40000 "-t 40000: threads must be in 0\.\." "$bin" run fit.toml -t 40000 -q
bad cli.omp_threads "OMP_NUM_THREADS=100000: threads must be in" env OMP_NUM_THREADS=100000 "$bin" run fit.toml -q
bad cli.threads_validate "-t 100000: threads must be in" "$bin" validate fit.toml -t 100000
bad cli.threads_negative "threads" "$bin" run fit.toml -t -1 -q
bad cli.threads_word "threads" "$bin" run fit.toml -t many -q
bad cli.shard_wrap "--shard 1/4294967298: expected i/N" "$bin" run fit.toml --shard 1/4294967298 -q
bad cli.shard_wrap_index "--shard 4294967297/4: expected i/N" "$bin" run fit.toml --shard 4294967297/4 -q
bad cli.shard_out "--shard 4/4: expected i/N" "$bin" run fit.toml --shard 4/4 -q
bad cli.shard_negative "--shard -1/4: expected i/N" "$bin" run fit.toml --shard -1/4 -q
bad cli.shard_zero "--shard 0/0: expected i/N" "$bin" run fit.toml --shard 0/0 -q
bad cli.shard_words "--shard a/b: expected i/N" "$bin" run fit.toml --shard a/b -q
bad cli.shard_empty_n "--shard 1/: expected i/N" "$bin" run fit.toml --shard 1/ -q
bad cli.shard_empty_i "--shard /4: expected i/N" "$bin" run fit.toml --shard /4 -q
bad cli.shard_noslash "--shard 3: expected i/N" "$bin" run fit.toml --shard 3 -q
bad cli.slurm_word "SLURM_ARRAY_TASK_ID=x: expected an integer" env SLURM_ARRAY_TASK_ID=x "$bin" run fit.toml -q
bad cli.slurm_range "Slurm array .*task id outside" env SLURM_ARRAY_TASK_ID=9 SLURM_ARRAY_TASK_MIN=0 SLURM_ARRAY_TASK_COUNT=4 "$bin" run fit.toml -q
bad cli.flush_zero "--flush-every" "$bin" run fit.toml --flush-every 0 -q
bad cli.flush_nan "--flush-every" "$bin" run fit.toml --flush-every nan -q
bad cli.unknown_command "subcommand" "$bin" frobnicate
bad cli.run_no_job "job is required" "$bin" run
bad cli.unknown_flag "--frob" "$bin" run fit.toml --frob
bad cli.best_zero "--best" "$bin" inspect results.h5 --best 0
bad inspect.fifo "fifo.h5: results file is a FIFO" "$bin" inspect fifo.h5
bad inspect.dev_zero "/dev/zero: results file is a character device" "$bin" inspect /dev/zero
bad inspect.dir "adir: results file is a directory" "$bin" inspect adir
bad inspect.missing "nope.h5: cannot open results file" "$bin" inspect nope.h5
bad inspect.text "notes.txt: not a readable HDF5 file" "$bin" inspect notes.txt
bad inspect.input_file "pts.h5: not a covfit results file" "$bin" inspect pts.h5
bad inspect.damaged "damaged.h5: cannot be read \(damaged file\?\)" "$bin" inspect damaged.h5
bad inspect.damaged_json "damaged.h5: cannot be read \(damaged file\?\)" "$bin" inspect --json damaged.h5
bad inspect.damaged_tables "damaged_tables.h5: cannot be read \(damaged file\?\)" "$bin" inspect damaged_tables.h5
bad inspect.truncated "results_trunc.h5" "$bin" inspect results_trunc.h5

# ---------------------------------------------------------------- outputs
bad out.job_file "fit.toml: is the job file" "$bin" run fit.toml -o fit.toml --overwrite -q
bad out.job_file_path "\./fit.toml: is the job file" "$bin" run fit.toml -o ./fit.toml --overwrite -q
bad out.job_symlink "link_to_job.toml: is the job file" "$bin" run fit.toml -o link_to_job.toml --overwrite -q
bad out.input "pts.h5: is input file of data set 'data'" "$bin" run fit.toml -o pts.h5 --overwrite -q
bad out.input_hardlink "hardlink_pts.h5: is input file of data set 'data'" "$bin" run fit.toml -o hardlink_pts.h5 --overwrite -q
bad out.input_sweep "cov.h5: is input file of data set 'data'" "$bin" run sweep.toml -o cov.h5 --overwrite -q
bad out.dev_null "/dev/null: output is a character device" "$bin" run fit.toml -o /dev/null --overwrite -q
bad out.fifo "fifo.h5: output is a FIFO" "$bin" run fit.toml -o fifo.h5 -q
bad out.no_dir "no/dir/out.h5: directory no/dir does not exist" "$bin" run fit.toml -o no/dir/out.h5 -q
bad out.is_dir "adir: is a directory" "$bin" run fit.toml -o adir -q
bad out.text "notes.txt: exists and is not an HDF5 file" "$bin" run fit.toml -o notes.txt -q
bad out.other_job "results.h5: holds results of a different job" "$bin" run planted.toml -o results.h5 -q
bad out.other_shard "shard0.h5: holds results of a different job|shard0.h5: holds shard" "$bin" run fit.toml --set 'grid.restarts=4' --shard 1/2 -o shard0.h5 -q
bad out.damaged_resume "damaged.h5: cannot be read \(damaged file\?\).*left untouched" "$bin" run fit.toml -o damaged.h5 -q
bad out.damaged_tables_resume "damaged_tables.h5: cannot be read \(damaged file\?\).*left untouched" "$bin" run fit.toml -o damaged_tables.h5 -q
bad out.truncated_resume "results_trunc.h5" "$bin" run fit.toml -o results_trunc.h5 -q
bad out.input_not_results "pts.h5: not a covfit results file" "$bin" run planted.toml -o pts.h5 -q

# ---------------------------------------------------------------- merge
bad merge.no_shards "shards is required|shards: 1 required" "$bin" merge -o all.h5
bad merge.missing "nope.h5: cannot open results file" "$bin" merge -o all.h5 nope.h5
bad merge.text "notes.txt: not a readable HDF5 file" "$bin" merge -o all.h5 notes.txt
bad merge.fifo "fifo.h5: results file is a FIFO" "$bin" merge -o all.h5 fifo.h5
bad merge.input_h5 "pts.h5: not a covfit results file" "$bin" merge -o all.h5 pts.h5
bad merge.one_of_two "merge: shards 1 of 2 are missing" "$bin" merge -o all.h5 shard0.h5
bad merge.twice "shard0.h5: holds shard 0, as does shard0.h5" "$bin" merge -o all.h5 shard0.h5 shard0.h5
bad merge.output_is_input "shard0.h5: is also the output file" "$bin" merge -o shard0.h5 shard0.h5 shard1.h5 --overwrite
bad merge.exists "results.h5: exists; refusing to replace it" "$bin" merge -o results.h5 shard0.h5 shard1.h5
bad merge.damaged "damaged_shard.h5" "$bin" merge -o all.h5 shard0.h5 damaged_shard.h5
bad merge.incomplete "partial1.h5: is incomplete: 1 of 2 tasks" "$bin" merge -o all.h5 shard0.h5 partial1.h5
bad merge.other_job "results.h5: holds results of a different job|results.h5: has shard count" "$bin" merge -o all.h5 shard0.h5 results.h5
bad merge.out_dev_null "/dev/null" "$bin" merge -o /dev/null shard0.h5 shard1.h5 --overwrite

# ---------------------------------------------------------------- gen
bad gen.n_1e6 "--n 1000000: must be in \[2, 100000\]" "$bin" gen planted --n 1000000 --m 1000000 -o g.h5
bad gen.memory "the planted problem .* needs about .* of memory" "$bin" gen planted --n 100000 --m 100000 --rank 5 -o g.h5
bad gen.n_range "--n" "$bin" gen planted --n 1 -o g.h5
bad gen.noise_inf "--noise" "$bin" gen planted --noise inf -o g.h5
bad gen.noise_nan "--noise" "$bin" gen planted --noise nan -o g.h5
bad gen.w0_inf "--w0-scale: must be finite" "$bin" gen planted --w0-scale inf -o g.h5
bad gen.rank_zero "--rank" "$bin" gen planted --rank 0 -o g.h5
bad gen.rank_big "rank 50 exceeds min\(n, m\)" "$bin" gen planted --n 10 --m 10 --rank 50 -o g.h5
bad gen.exists "results.h5: exists; refusing to replace it" "$bin" gen planted --n 10 --m 10 --rank 2 -o results.h5
bad gen.dev_null "/dev/null: output is a character device" "$bin" gen planted --n 10 --m 10 --rank 2 -o /dev/null --overwrite
bad gen.fifo "fifo.h5: output is a FIFO" "$bin" gen planted --n 10 --m 10 --rank 2 -o fifo.h5
bad gen.no_dir "no/dir/g.h5: directory no/dir does not exist" "$bin" gen planted --n 10 --m 10 --rank 2 -o no/dir/g.h5
bad gen.no_output "--output is required|output" "$bin" gen planted --n 10 --m 10

# ---------------------------------------------------------------- live processes
# A second writer through a symlink or a hard link to a file being written is refused,
# and the first run's file stays intact; SIGTERM ends the first run with 143.
live() {  # live NAME CHECK...: a case outside the snapshot rule
  cases=$((cases + 1))
  if ! "$@"; then failures=$((failures + 1)); echo "FAIL [$LIVE_NAME]"; sed 's/^/    /' "$tmp/out" | head -5; fi
}
mkdir -p "$tmp/live" && cd "$tmp/live" || exit 1
cp "$w/pts.h5" .
sed 's/max_steps = 5/max_steps = 200000/' "$w/fit.toml" > slow.toml
"$bin" run slow.toml -o out.h5 -t 1 --set grid.restarts=50 -q >/dev/null 2>"$tmp/bg.err" &
bgpid=$!
for _ in $(seq 100); do [ -f out.h5 ] && [ -f "$(realpath out.h5).lock" ] && break; sleep 0.1; done
sleep 0.5
ln -s out.h5 sym.h5; ln out.h5 hard.h5
LIVE_NAME=two_writers.symlink
live bash -c "timeout $limit '$bin' run slow.toml -o sym.h5 --overwrite -t 1 --set grid.restarts=50 -q >'$tmp/out' 2>&1; rc=\$?; [ \$rc = 2 ] && grep -q 'sym.h5: another covfit process is writing this file' '$tmp/out'"
LIVE_NAME=two_writers.hardlink
live bash -c "timeout $limit '$bin' run slow.toml -o hard.h5 --overwrite -t 1 --set grid.restarts=50 -q >'$tmp/out' 2>&1; rc=\$?; [ \$rc = 2 ] && grep -q 'hard.h5: another covfit process is writing this file' '$tmp/out'"
LIVE_NAME=two_writers.same_path
live bash -c "timeout $limit '$bin' run slow.toml -o out.h5 --overwrite -t 1 --set grid.restarts=50 -q >'$tmp/out' 2>&1; rc=\$?; [ \$rc = 2 ] && grep -q 'out.h5: another covfit process is writing this file' '$tmp/out'"
LIVE_NAME=two_writers.sigterm_first
kill -TERM "$bgpid"
rc=0; wait "$bgpid" || rc=$?; bgpid=
live bash -c "[ $rc = 143 ] || { echo 'first writer exited $rc after SIGTERM' >'$tmp/out'; exit 1; }"
LIVE_NAME=two_writers.file_intact
live bash -c "'$bin' inspect out.h5 >'$tmp/out' 2>&1 && [ ! -e out.h5.lock ] && [ ! -e out.h5.resume-tmp ]"
rm -f sym.h5 hard.h5 out.h5

# SIGTERM while the data are generated (nothing polls the stop flag there): exits at once,
# no output file.
LIVE_NAME=sigterm.loading
"$bin" run "$w/sweep.toml" --set data.source=planted --set data.n=3000 --set data.m=3000 --set data.rank=2000 -o load.h5 -q >"$tmp/out" 2>&1 &
bgpid=$!; sleep 1; kill -TERM "$bgpid"; t0=$(date +%s)
rc=0; wait "$bgpid" || rc=$?; bgpid=; t1=$(date +%s)
live bash -c "[ $rc = 143 ] && [ $((t1 - t0)) -le 2 ] && [ ! -e load.h5 ] && [ ! -e load.h5.lock ] || { echo 'rc $rc after $((t1 - t0)) s; files: $(ls)' >'$tmp/out'; exit 1; }"

# A full disk (a file size limit: EFBIG, as ENOSPC would be): the message names the file
# and the errno; a resume leaves no .resume-tmp behind.
LIVE_NAME=disk_full.new
(trap '' XFSZ; ulimit -f 40; exec "$bin" run "$w/planted.toml" --set data.points=20000 -o full.h5 -q) >"$tmp/out" 2>&1; rc=$?
live bash -c "[ $rc = 1 ] && grep -qE 'full.h5.*errno = 27|full.h5.*File too large' '$tmp/out'"
LIVE_NAME=disk_full.resume
"$bin" run "$w/planted.toml" --set data.points=20000 --set grid.restarts=3 --max-tasks 1 -o res.h5 -q >/dev/null 2>&1
before=$(md5sum res.h5)
(trap '' XFSZ; ulimit -f 40; exec "$bin" run "$w/planted.toml" --set data.points=20000 --set grid.restarts=3 -o res.h5 -q) >"$tmp/out" 2>&1; rc=$?
live bash -c "[ $rc = 1 ] && grep -qE 'res.h5.*(errno = 27|File too large)' '$tmp/out' && [ ! -e res.h5.resume-tmp ] && [ \"$before\" = \"\$(md5sum res.h5)\" ]"

echo "hostile: $cases cases, $failures failed"
[ "$failures" = 0 ] && [ "$cases" -ge 100 ]
