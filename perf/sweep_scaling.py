#!/usr/bin/python3
"""Scaling table of the covariance λ-sweep (issue 11, "Bigger problems").

For each m in --sizes (default 250, 500, 1000, 2000, 5000), n = 4m:
  1. `covfit gen planted --n 4m --m m --rank m/5 --noise 0.2 --w0-scale 0.5 --seed 11`
     (kept in --workdir and reused by later runs; X then has full numerical rank r = m,
     its noise makes every singular value count);
  2. for each entry T or T/B of --threads (default 1,2; T alone means B = T):
     a linearised sweep, `covfit run job.toml -q -t T` with
       [sweep] lambda_from = 1e-3, lambda_to = 1e2, lambda_count = 200 (--lambdas),
               lambda_units = "s_max2", folds = 5, exact = false, blas_threads = B
     (B > 1: the work units run one at a time, each BLAS call on B threads; B = 1: up to T
     units side by side, each on one BLAS thread)
     under `/usr/bin/time -v` (wall clock and peak RSS of the whole process);
  3. where r <= --exact-max-rank (default 400, covfit's exact_max_rank), the same sweep
     with exact = true (exact solutions on every fold and the full data, warm-started
     path), --exact-lambdas λ (default 200) on the same range.

The timing columns come from the results file (/sweep/tasks):
  svd_s    the one full-data thin SVD + R = VᵀSV (blas_threads BLAS threads)
  fold_svd_s  the folds' SVDs (format 3 files; before, they were part of folds_s)
  folds_s  the parts: per fold a thin SVD of the train block and R² per λ, and with
           exact = true every fold's exact path and the full data's exact path; the parts
           run side by side on -t threads, each with one BLAS thread
  rows_s   per-λ rows on all stimuli (losses L(W_lin), L_lin; with exact: the
           diagnostics), parallel over λ on -t threads
  task_s   the whole task (svd + folds + rows + storing the best λ's W, which is n × n)
  wall_s   the whole process (`/usr/bin/time`): loading X, S, the task, writing HDF5
  rss_GB   peak resident set size of the process (`/usr/bin/time -v`)
  exact s/λ  mean (and max) of /sweep/lambda exact_seconds: the full-data exact solve
             per λ (its path runs inside folds_s, next to the folds')

A run that covfit refuses (exit 2, e.g. its memory check), fails, or exceeds --timeout
is reported in the table with its reason instead of numbers. Nothing is extrapolated.

Prints the machine (cores, 1-min load at start and end of each run, OpenBLAS core type)
and a markdown table. On a quiet 2-core machine m <= 1000 takes a minute or two, m = 2000
about 4 minutes per run. m = 5000 (n = 20000): `covfit gen` needs ~7.5 GB (it holds the
n x n W0 and a row-major copy of it) and writes a 4 GB file; at commit bccaa62 `covfit run`
then refuses the sweep (its memory estimate, 23.4 GB, exceeds what a 24 GB machine has
available; perf/README.md, "Sizes not in the table"), which shows as that row's reason.

Usage:
  /usr/bin/python3 perf/sweep_scaling.py                        # everything (long)
  /usr/bin/python3 perf/sweep_scaling.py --sizes 250,500 --threads 1
  /usr/bin/python3 perf/sweep_scaling.py --quick                # m = 100, 200; 20 λ; smoke test
  options: --covfit build/covfit --workdir /tmp/covfit_scaling --lambdas 200
           --exact-lambdas 200 --exact-max-rank 400 --folds 5 --timeout 3600
           --json out.json --no-exact
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def openblas_core(covfit):
    """OpenBLAS' kernel set, as it reports itself with OPENBLAS_VERBOSE=2."""
    env = dict(os.environ, OPENBLAS_VERBOSE="2")
    try:
        out = subprocess.run([covfit, "--version"], env=env, capture_output=True, text=True,
                             timeout=30)
        m = re.search(r"Core:\s*(\S+)", out.stdout + out.stderr)
        return m.group(1) if m else "unknown"
    except Exception:  # noqa: BLE001
        return "unknown"


def run_timed(cmd, timeout, cwd):
    """Runs cmd under /usr/bin/time -v. Returns (rc, wall_s, rss_bytes, stderr_tail)."""
    time_bin = "/usr/bin/time"
    full = [time_bin, "-v"] + cmd if os.path.exists(time_bin) else cmd
    t0 = time.monotonic()
    try:
        p = subprocess.run(full, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        return None, time.monotonic() - t0, None, f"timeout after {timeout} s"
    wall = time.monotonic() - t0
    rss = None
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    if m:
        rss = int(m.group(1)) * 1024
    # covfit's own message is the last line before /usr/bin/time's report.
    lines = [ln for ln in p.stderr.splitlines() if ln.strip() and not ln.startswith("\t")
             and "Command being timed" not in ln and "Command exited" not in ln]
    errors = [ln for ln in lines if "error" in ln.lower()]
    tail = (errors or lines[:1] or [""])[-1].strip()
    if p.returncode and p.returncode < 0:
        tail = f"killed by signal {-p.returncode}" + (f" ({tail})" if tail else "")
    return p.returncode, wall, rss, tail


def write_job(path, data_file, args, exact, blas, count):
    with open(path, "w") as f:
        f.write(f"""# written by perf/sweep_scaling.py
name = "scaling"
kind = "sweep"
seed = 7

[data]
name = "planted"
source = "hdf5"
file = "{data_file}"

[sweep]
models = ["free"]
lambda_from = 1e-3
lambda_to = 1e2
lambda_count = {count}
lambda_units = "s_max2"
folds = {args.folds}
exact = {"true" if exact else "false"}
exact_max_rank = {args.exact_max_rank}
blas_threads = {blas}
""")


def read_result(path):
    import h5py  # only needed here; the rest runs without it
    with h5py.File(path, "r") as f:
        t = f["sweep/tasks"][0]
        lam = f["sweep/lambda"]
        out = {k: float(t[k]) for k in ("svd_seconds", "folds_seconds", "rows_seconds", "seconds")}
        # Format 3 (work units): the folds' SVDs are a column of their own.
        out["fold_svd_seconds"] = float(t["fold_svd_seconds"]) if "fold_svd_seconds" in t.dtype.names else float("nan")
        out["r"] = int(t["r"])
        out["n"] = int(t["n"])
        out["m"] = int(t["m"])
        es = lam["exact_seconds"][:]
        st = [s.decode() if isinstance(s, bytes) else str(s) for s in lam["exact_status"][:]]
        solved = [e for e, s in zip(es, st) if s]
        out["exact_per_lambda"] = sum(solved) / len(solved) if solved else None
        out["exact_max_lambda"] = max(solved) if solved else None
        out["exact_certified"] = sum(1 for s in st if s == "converged")
        out["exact_rows"] = len(solved)
        return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--covfit", default=os.path.join(ROOT, "build", "covfit"))
    ap.add_argument("--sizes", default="250,500,1000,2000,5000", help="m values; n = 4m")
    ap.add_argument("--threads", default="1,2", help="-t values, each T or T/B (B = blas_threads; T alone: B = T)")
    ap.add_argument("--lambdas", type=int, default=200)
    ap.add_argument("--exact-lambdas", type=int, default=200)
    ap.add_argument("--exact-max-rank", type=int, default=400,
                    help="exact runs only where r <= this (also passed as exact_max_rank)")
    ap.add_argument("--no-exact", action="store_true")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per covfit run")
    ap.add_argument("--workdir", default="/tmp/covfit_scaling")
    ap.add_argument("--keep-results", action="store_true", help="keep the results .h5 files")
    ap.add_argument("--json", help="write all measurements here")
    ap.add_argument("--quick", action="store_true", help="m = 100, 200; 20 λ (smoke test)")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.lambdas, args.exact_lambdas = "100,200", 20, 20
    covfit = os.path.abspath(args.covfit)
    if not os.access(covfit, os.X_OK):
        sys.exit(f"no covfit binary at {covfit}; build it or pass --covfit")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    threads = [tuple(int(x) for x in (t.split("/") if "/" in t else (t, t))) for t in args.threads.split(",") if t]
    os.makedirs(args.workdir, exist_ok=True)

    head = subprocess.run([covfit, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"{head}; {os.cpu_count()} cores; OpenBLAS core {openblas_core(covfit)}; "
          f"1-min load {loadavg():.2f} at start; {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", flush=True)

    records = []
    for m in sizes:
        n = 4 * m
        rank = max(1, m // 5)
        data = os.path.join(args.workdir, f"planted_n{n}_m{m}.h5")
        if not os.path.exists(data):
            la0 = loadavg()
            rc, wall, rss, tail = run_timed(
                [covfit, "gen", "planted", "--n", str(n), "--m", str(m), "--rank", str(rank),
                 "--noise", "0.2", "--w0-scale", "0.5", "--seed", "11", "-o", data],
                args.timeout, args.workdir)
            gb = f"{rss / 1e9:.2f} GB" if rss else "?"
            print(f"gen m={m} n={n}: rc {rc}, {wall:.1f} s, peak RSS {gb}, load {la0:.2f}->{loadavg():.2f}"
                  + (f"  [{tail}]" if rc else ""), flush=True)
            if rc != 0:
                records.append({"m": m, "n": n, "threads": None, "kind": "gen", "error": tail or f"rc {rc}"})
                continue
        for T, B in threads:
            plan = [("linearised", False, args.lambdas)]
            if not args.no_exact:
                plan.append(("exact", True, args.exact_lambdas))
            for kind, exact, count in plan:
                if exact and m > args.exact_max_rank:  # r = m for these problems
                    records.append({"m": m, "n": n, "threads": T, "blas": B, "kind": kind,
                                    "error": f"skipped: r = {m} > exact_max_rank {args.exact_max_rank}"})
                    continue
                job = os.path.join(args.workdir, f"job_m{m}_t{T}_b{B}_{kind}.toml")
                out = os.path.join(args.workdir, f"out_m{m}_t{T}_b{B}_{kind}.h5")
                write_job(job, data, args, exact, B, count)
                la0 = loadavg()
                rc, wall, rss, tail = run_timed(
                    [covfit, "run", job, "-o", out, "--overwrite", "-q", "-t", str(T)],
                    args.timeout, args.workdir)
                la1 = loadavg()
                rec = {"m": m, "n": n, "threads": T, "blas": B, "kind": kind, "lambdas": count,
                       "wall_s": wall, "rss_bytes": rss, "load_start": la0, "load_end": la1, "rc": rc}
                if rc == 0:
                    rec.update(read_result(out))
                else:
                    rec["error"] = tail or f"rc {rc}"
                if not args.keep_results and os.path.exists(out):
                    os.remove(out)
                records.append(rec)
                msg = (f"m={m} n={n} -t {T} blas {B} {kind} ({count} λ): "
                       + (f"svd {rec['svd_seconds']:.2f} s, fold svds {rec['fold_svd_seconds']:.2f} s, folds {rec['folds_seconds']:.2f} s, rows "
                          f"{rec['rows_seconds']:.2f} s, task {rec['seconds']:.2f} s, wall {wall:.1f} s"
                          if rc == 0 else f"FAILED ({rec['error']})")
                       + (f", RSS {rss / 1e9:.2f} GB" if rss else "")
                       + f", load {la0:.2f}->{la1:.2f}")
                print(msg, flush=True)

    def f(x, fmt):
        return "–" if x is None else fmt.format(x)

    print()
    print(f"{args.lambdas} λ (linearised) / {args.exact_lambdas} λ (exact), 1e-3..1e2 s_max², "
          f"{args.folds} folds, n = 4m, planted rank m/5, noise 0.2")
    print()
    print("| m | n | r | -t / blas_threads | sweep | λ | svd_s | fold_svd_s | folds_s | rows_s | task_s | wall_s "
          "| peak RSS GB | exact s/λ (full data, mean / max) | certified | load |")
    print("| ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in records:
        if "error" in r:
            tb = f"{r['threads']} / {r['blas']}" if r.get("threads") else ""
            print(f"| {r['m']} | {r['n']} | | {tb} | {r['kind']} | | {r['error']} "
                  "| | | | | | | | | |")
            continue
        ex = ("–" if r["exact_per_lambda"] is None
              else f"{r['exact_per_lambda']:.3f} / {r['exact_max_lambda']:.2f}")
        cert = f"{r['exact_certified']}/{r['exact_rows']}" if r["exact_rows"] else "–"
        print(f"| {r['m']} | {r['n']} | {r['r']} | {r['threads']} / {r['blas']} | {r['kind']} | {r['lambdas']} "
              f"| {r['svd_seconds']:.2f} | {r['fold_svd_seconds']:.2f} | {r['folds_seconds']:.2f} | {r['rows_seconds']:.2f} "
              f"| {r['seconds']:.2f} | {r['wall_s']:.1f} | {f(r['rss_bytes'] and r['rss_bytes'] / 1e9, '{:.2f}')} "
              f"| {ex} | {cert} | {r['load_start']:.2f}→{r['load_end']:.2f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(records, fh, indent=1)


if __name__ == "__main__":
    main()
