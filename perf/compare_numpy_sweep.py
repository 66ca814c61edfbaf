#!/usr/bin/python3
"""covfit's λ-sweep vs "re-solve the linearised covariance problem at each λ in numpy".

Problem: a planted case from `covfit gen planted --n N --m M --rank R` (X: n x m, S: m x m).
Work per sweep (identical in all three implementations, /work/shared/MATH.md):
  for each fold (k-fold split of the stimuli) and each λ:
    reduce the train block (thin SVD of X_tr, R = V^T S_tr V), closed-form linearised
    M_ij = 2 sqrt(s_i s_j) (R_ij - s_i δ_ij) / (4 s_i s_j + λ),
    validation R² on the val x val block with the reduced formula
    Ŝ_va = X_va^T X_va + P_va^T Q P_va,  P_va = U^T X_va,
    Q = M + M^T (the linearised model's prediction, covfit's `r2_val`) and
    Q = M + M^T + M^T M (the forward map, covfit's `r2_val_fwd`),
    R² over the upper triangle (diagonal included).
  λ grid: log-spaced, in units of s_max² (s_max = largest squared singular value of the
  full X), as covfit's `lambda_units = "s_max2"`.

Implementations timed:
  numpy-naive   per λ and fold a fresh np.linalg.svd of X_tr (the "independent re-solve"),
                then the closed form; with the default cap it is timed on the first
                --naive-cap λ values and EXTRAPOLATED linearly to the whole grid.
  numpy-smart   one SVD per fold, then the closed form vectorised over λ (chunks).
  covfit        `covfit run sweep.toml -q -t T` (kind = "sweep", exact = false), wall-clock.
                Note covfit does more than the numpy code: it also reduces the full data
                and computes per-λ losses and diagnostics (g, q proxies, diag/off-diag
                magnitudes of W) on it, and writes HDF5.

Agreement check (separate, untimed): folds differ between numpy and covfit (covfit's seeded
permutation), so one explicit validation fold `val = [0, 5, 10, ...]` is given to both and
R² per λ (both kinds) and the best λ are compared.

Usage:  /usr/bin/python3 perf/compare_numpy_sweep.py [--quick] [--n 2000 --m 500 --lambdas 1000]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# numpy's BLAS thread count must be fixed before numpy is imported.
_BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_CHILD_ENV = dict(os.environ)  # covfit runs with the caller's environment, not ours
if "--blas-threads" in sys.argv:
    _bt = sys.argv[sys.argv.index("--blas-threads") + 1]
    for _k in _BLAS_ENV:
        os.environ[_k] = _bt

import h5py  # noqa: E402
import numpy as np  # noqa: E402

RANK_TOL = 1e-10  # covfit's kRankTol: numerical rank r = #{σ_i > 1e-10 σ_1}


from machine_load import loadavg, wait_for_quiet  # noqa: E402,F401


def log_grid(a, b, c):
    """covfit's read_log_grid, bit for bit: exp(log a + (log b - log a) * i / (c - 1))."""
    if c == 1:
        return np.array([a])
    la, lb = np.log(a), np.log(b)
    return np.array([np.exp(la + (lb - la) * i / (c - 1)) for i in range(c)])


# ------------------------------------------------------------------------- numpy pieces
def centre(X):
    """covfit's check_and_centre: subtract column means unless already centred (1e-12 rel)."""
    mean = X.mean(axis=0)
    if np.any(np.abs(mean) > 1e-12 * np.abs(X).max(axis=0)):
        X = X - mean
    return X


def kfold(m, k, rng):
    perm = rng.permutation(m)
    return [np.sort(perm[f * m // k:(f + 1) * m // k]) for f in range(k)]


def reduce_(X_tr, S_tr):
    U, sig, Vt = np.linalg.svd(X_tr, full_matrices=False)
    r = int(np.sum(sig > RANK_TOL * sig[0]))
    U, sig, V = U[:, :r], sig[:r], Vt[:r].T
    R = V.T @ S_tr @ V
    R = 0.5 * (R + R.T)
    return U, sig, R


class FoldPrep:
    """λ-independent part of one fold (what covfit's prepare_fold computes)."""

    def __init__(self, X, S, val, U=None, sig=None, R=None):
        m = X.shape[1]
        tr = np.setdiff1d(np.arange(m), val)
        if U is None:
            U, sig, R = reduce_(X[:, tr], S[np.ix_(tr, tr)])
        self.sig, self.s = sig, sig * sig
        a = np.outer(sig, sig)
        self.A = a                          # sqrt(s_i s_j)
        self.A2x4 = 4.0 * a * a
        self.T2a = 2.0 * a * (R - np.diag(self.s))
        X_va = X[:, val]
        self.P = U.T @ X_va                 # (r, m_va)
        self.K = X_va.T @ X_va
        S_va = S[np.ix_(val, val)]
        iu = np.triu_indices(len(val))
        self.iu = iu
        self.E0 = (S_va - self.K)[iu]       # residual of the W = 0 prediction (upper tri)
        sv = S_va[iu]
        self.ss_tot = float(np.sum((sv - sv.mean()) ** 2))


def r2_single(fp, lam):
    """Both R² for one λ (used by the naive path)."""
    M = fp.T2a / (fp.A2x4 + lam)
    Y = M @ fp.P
    Z = fp.P.T @ Y
    e = fp.E0 - (Z + Z.T)[fp.iu]
    e2 = e - (Y.T @ Y)[fp.iu]
    return 1 - (e @ e) / fp.ss_tot, 1 - (e2 @ e2) / fp.ss_tot


def r2_vectorised(fp, lams, chunk):
    """Both R² for every λ: M for a chunk of λ at once, batched matmuls."""
    L = len(lams)
    lin, fwd = np.empty(L), np.empty(L)
    for lo in range(0, L, chunk):
        lc = lams[lo:lo + chunk]
        M = fp.T2a[None] / (fp.A2x4[None] + lc[:, None, None])      # (c, r, r)
        Y = M @ fp.P                                                 # (c, r, mv)
        Z = np.swapaxes(Y, 1, 2) @ fp.P                              # (c, mv, mv) = Y^T P = (P^T Y)^T
        YY = np.swapaxes(Y, 1, 2) @ Y
        e = fp.E0[None] - (Z + np.swapaxes(Z, 1, 2))[:, fp.iu[0], fp.iu[1]]
        e2 = e - YY[:, fp.iu[0], fp.iu[1]]
        lin[lo:lo + chunk] = 1 - np.einsum("ij,ij->i", e, e) / fp.ss_tot
        fwd[lo:lo + chunk] = 1 - np.einsum("ij,ij->i", e2, e2) / fp.ss_tot
    return lin, fwd


def s_max(X):
    return float(np.linalg.svd(X, compute_uv=False)[0] ** 2)


def numpy_naive(X, S, folds, lam_rel, cap):
    """Per λ (and fold): fresh SVD of the train block + closed form. Returns (seconds for
    the λ done, λ done, lin (F, done), fwd)."""
    t0 = time.perf_counter()
    scale = s_max(X) ** 2
    done = len(lam_rel) if cap is None else min(cap, len(lam_rel))
    lin = np.empty((len(folds), done))
    fwd = np.empty_like(lin)
    for li in range(done):
        lam = lam_rel[li] * scale
        for f, val in enumerate(folds):
            fp = FoldPrep(X, S, val)          # fresh SVD for this λ
            lin[f, li], fwd[f, li] = r2_single(fp, lam)
    return time.perf_counter() - t0, done, lin, fwd


def numpy_smart(X, S, folds, lam_rel, chunk):
    t0 = time.perf_counter()
    lams = lam_rel * s_max(X) ** 2
    out = [r2_vectorised(FoldPrep(X, S, val), lams, chunk) for val in folds]
    el = time.perf_counter() - t0
    return el, np.array([o[0] for o in out]), np.array([o[1] for o in out])


def best_index(lams, mean):
    """covfit's summarise(): argmax of the mean R², ties to the larger λ."""
    b = -1
    for l in range(len(lams)):
        if np.isfinite(mean[l]) and (b < 0 or mean[l] > mean[b] or (mean[l] == mean[b] and lams[l] > lams[b])):
            b = l
    return b


# ------------------------------------------------------------------------- covfit
def write_job(path, case, lam_from, lam_to, count, folds=None, val=None, name="perf_sweep", losses=True):
    lines = [f'name = "{name}"', 'kind = "sweep"', "seed = 7", "", "[data]", 'name = "case"',
             'source = "hdf5"', f'file = "{case}"', "", "[sweep]", 'models = ["free"]',
             f"lambda_from = {lam_from!r}", f"lambda_to = {lam_to!r}", f"lambda_count = {count}",
             'lambda_units = "s_max2"', "exact = false", f"losses = {'true' if losses else 'false'}"]
    if val is not None:
        lines.append("val = [" + ", ".join(str(int(v)) for v in val) + "]")
    else:
        lines.append(f"folds = {folds}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def run_covfit(covfit, job, out, threads):
    cmd = [covfit, "run", job, "-o", out, "--overwrite", "-q", "-t", str(threads)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=_CHILD_ENV)
    el = time.perf_counter() - t0
    with h5py.File(out, "r") as f:
        t = f["/sweep/tasks"][0]
        lam = f["/sweep/lambda"][t["lambda_offset"]:t["lambda_offset"] + t["lambda_len"]]
    return el, t, lam, " ".join(cmd)


# ------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="n=500, m=200, 200 λ")
    ap.add_argument("--n", type=int)
    ap.add_argument("--m", type=int)
    ap.add_argument("--rank", type=int)
    ap.add_argument("--lambdas", type=int)
    ap.add_argument("--lambda-from", type=float, default=1e-3, help="× s_max²")
    ap.add_argument("--lambda-to", type=float, default=1e2, help="× s_max²")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--naive-cap", type=int, default=20,
                    help="time the naive baseline on this many λ and extrapolate (0: all)")
    ap.add_argument("--chunk", type=int, default=32, help="λ per vectorised batch (smart numpy)")
    ap.add_argument("--threads", default="1,2", help="covfit -t values")
    ap.add_argument("--covfit", default=os.path.join(ROOT, "build", "covfit"))
    ap.add_argument("--case", help="existing planted HDF5 file (X, S) instead of generating one")
    ap.add_argument("--max-load", type=float, default=1.0)
    ap.add_argument("--blas-threads", help="numpy's OpenBLAS threads (default: OpenBLAS default = all cores)")
    ap.add_argument("--no-losses", action="store_true",
                    help="covfit with sweep.losses = false (no exact loss L(W_lin) per λ)")
    ap.add_argument("--json")
    args = ap.parse_args()
    n = args.n or (500 if args.quick else 2000)
    m = args.m or (200 if args.quick else 500)
    rank = args.rank or (40 if args.quick else 100)
    L = args.lambdas or (200 if args.quick else 1000)
    cap = None if args.naive_cap <= 0 or args.naive_cap >= L else args.naive_cap
    threads = [int(t) for t in args.threads.split(",")]
    tmp = tempfile.mkdtemp(prefix="covfit_sweep_perf_")
    res = {"n": n, "m": m, "rank": rank, "lambdas": L, "folds": args.folds, "numpy": np.__version__,
           "blas_threads": args.blas_threads}

    case = args.case or os.path.join(tmp, "case.h5")
    if not args.case:
        subprocess.run([args.covfit, "gen", "planted", "--n", str(n), "--m", str(m), "--rank", str(rank),
                        "-o", case, "--overwrite"], check=True, stdout=subprocess.DEVNULL)
    with h5py.File(case, "r") as f:
        X = centre(np.array(f["X"], dtype=np.float64))
        S = np.array(f["S"], dtype=np.float64)
        S = 0.5 * (S + S.T)
    n, m = X.shape
    res.update(n=n, m=m)
    lam_rel = log_grid(args.lambda_from, args.lambda_to, L)
    print(f"case {case}: X {n} x {m}, S {m} x {m}; {L} λ in [{args.lambda_from:g}, {args.lambda_to:g}] s_max², "
          f"{args.folds} folds", flush=True)

    # ---- agreement check (one explicit fold, both sides), not timed
    val = np.arange(0, m, 5)
    jobv = os.path.join(tmp, "sweep_val.toml")
    write_job(jobv, case, args.lambda_from, args.lambda_to, L, val=val, name="perf_sweep_val")
    _, tv, lamv, _ = run_covfit(args.covfit, jobv, os.path.join(tmp, "val.h5"), max(threads))
    smax2 = s_max(X) ** 2
    lams_np = lam_rel * smax2
    fp = FoldPrep(X, S, val)
    lin_np, fwd_np = r2_vectorised(fp, lams_np, args.chunk)
    ncheck = min(L, 20)
    naive_pairs = np.array([r2_single(FoldPrep(X, S, val), lams_np[i]) for i in range(ncheck)])
    b_np = best_index(lams_np, lin_np)
    agree = {
        "covfit_s_max": float(tv["s_max"]), "numpy_s_max": float(np.sqrt(smax2)),
        "max_rel_diff_lambda": float(np.max(np.abs(lamv["lambda"] - lams_np) / lams_np)),
        "max_abs_diff_r2_val": float(np.max(np.abs(lamv["r2_val"] - lin_np))),
        "max_abs_diff_r2_val_fwd": float(np.max(np.abs(lamv["r2_val_fwd"] - fwd_np))),
        "max_abs_diff_naive_vs_smart": float(np.max(np.abs(naive_pairs - np.stack([lin_np, fwd_np], 1)[:ncheck]))),
        "covfit_best_lambda": float(tv["best_lambda"]), "numpy_best_lambda": float(lams_np[b_np]),
        "covfit_best_r2_val": float(tv["best_r2_val"]), "numpy_best_r2_val": float(lin_np[b_np]),
    }
    agree["best_lambda_rel_diff"] = abs(agree["covfit_best_lambda"] - agree["numpy_best_lambda"]) / agree["numpy_best_lambda"]
    agree["ok"] = bool(agree["max_abs_diff_r2_val"] < 1e-8 and agree["max_abs_diff_r2_val_fwd"] < 1e-8
                       and agree["best_lambda_rel_diff"] < 1e-9)
    res["agreement"] = agree
    print("agreement (val = every 5th stimulus, one fold):")
    for k, v in agree.items():
        print(f"   {k:30s} {v}")

    # ---- timings
    la0 = wait_for_quiet(args.max_load, 6, 20)
    res["load_start"] = la0
    print(f"timing at 1-min load {la0:.2f} ...", flush=True)
    folds = kfold(m, args.folds, np.random.default_rng(7))
    t_smart, lin_s, _ = numpy_smart(X, S, folds, lam_rel, args.chunk)
    print(f"   numpy smart: {t_smart:.2f} s", flush=True)
    t_naive, done, lin_n, _ = numpy_naive(X, S, folds, lam_rel, cap)
    t_naive_full = t_naive * L / done
    print(f"   numpy naive: {t_naive:.2f} s for {done} λ" +
          (f" -> {t_naive_full:.1f} s for {L} λ (extrapolated)" if done < L else ""), flush=True)
    res["naive_vs_smart_max_abs_diff"] = float(np.max(np.abs(lin_n - lin_s[:, :done])))
    jobk = os.path.join(tmp, "sweep_kfold.toml")
    write_job(jobk, case, args.lambda_from, args.lambda_to, L, folds=args.folds, losses=not args.no_losses)
    cov = {}
    for th in threads:
        el, t, _, cmd = run_covfit(args.covfit, jobk, os.path.join(tmp, f"kfold_t{th}.h5"), th)
        svds = float(t["svd_seconds"]) + float(t["fold_svd_seconds"]) if "fold_svd_seconds" in t.dtype.names else float("nan")
        cov[th] = {"wall": el, "task_seconds": float(t["seconds"]), "svd_seconds": float(t["svd_seconds"]),
                   "all_svds_seconds": svds, "r": int(t["r"]), "cmd": cmd}
        # The per-λ floor (issue 11): all of the sweep's thread seconds (its work units and
        # the summary) over those of its SVDs (full data + every fold's), from the file.
        print(f"   covfit -t {th}: {el:.2f} s wall; thread seconds: sweep {t['seconds']:.3f}, its SVDs {svds:.3f} "
              f"(full data {t['svd_seconds']:.3f}) -> sweep / SVDs = {t['seconds'] / svds:.2f}"
              f"{'' if not args.no_losses else ' (losses = false)'}", flush=True)
    la1 = loadavg()
    res.update(load_end=la1, numpy_smart_s=t_smart, numpy_naive_s=t_naive, numpy_naive_lambdas_timed=done,
               numpy_naive_s_full=t_naive_full, naive_extrapolated=done < L, covfit=cov)

    print()
    print(f"n={n} m={m} rank={rank}: {L} λ x {args.folds} folds, numpy BLAS threads: {args.blas_threads or 'default'}")
    print(f"{'implementation':34s} {'seconds':>10s} {'vs covfit -t ' + str(threads[0]):>16s}")
    base = cov[threads[0]]["wall"]
    label = f"numpy naive (fresh SVD per λ){' *' if done < L else ''}"
    for name, sec in ((label, t_naive_full), ("numpy smart (1 SVD/fold, vectorised)", t_smart)):
        print(f"{name:34s} {sec:10.2f} {sec / base:15.1f}x")
    for th in threads:
        print(f"{'covfit run -t ' + str(th):34s} {cov[th]['wall']:10.2f} {cov[th]['wall'] / base:15.2f}x")
    if done < L:
        print(f"* extrapolated from {done} λ ({t_naive:.2f} s measured)")
    print(f"agreement: {'OK' if agree['ok'] else 'MISMATCH'} (max |ΔR²| {agree['max_abs_diff_r2_val']:.1e}, "
          f"best λ rel diff {agree['best_lambda_rel_diff']:.1e}); 1-min load {la0:.2f} at start, {la1:.2f} at end")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1, default=str)
    return 0 if agree["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
