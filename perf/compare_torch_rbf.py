#!/usr/bin/python3
"""covfit vs "fit one RBF model at a time in PyTorch" (CPU).

The model, in PyTorch, exactly as covfit defines it (include/covfit/rbf/model.hpp):

    f(x) = sum_k w_k exp(-1/2 d^T P_k d),  d = x - mu_k
    `full` raw parameters per kernel: mu_x, mu_y, log_sx, log_sy, a, w
    P = R(t) diag(1/sx^2, 1/sy^2) R(t)^T,  t = sigmoid(a) * 2 pi
    loss = mean squared error over the points, gradients by loss.backward()

Two measurements:

 (a) kernel throughput: forward + backward kernel-point evaluations per second
     (kpe/s = K * N per evaluation) at K = 25, N = 4096, float32 and float64, with
     torch.set_num_threads(1) and (2), against covfit's Google Benchmark binary
     build/rbf_kernels_bench (BM_LossGradSimd: one evaluation on one core;
     BM_TwoTasks: two independent evaluations on two cores, aggregate rate).
 (b) end to end: F fits (default 20) of `full`, K = 9, Adam (lr weight 0.01,
     centre 0.003, shape 0.003, 500 steps) on Franke's function on a 48 x 48 grid,
     one at a time in PyTorch, against
         covfit run jobs/demo.toml --set 'grid.param=["full"]' --set 'grid.K=[9]'
             --set grid.restarts=F --set fit.max_steps=500 --set fit.rel_tol=0
             --set fit.lr_final_ratio=1.0 --set fit.init="lattice"
             -o <tmp>.h5 --overwrite -q -t {1,2}
     timed as wall-clock of the whole process (start-up, data, HDF5 output included).

Usage:  /usr/bin/python3 perf/compare_torch_rbf.py [--quick] [--json out.json]
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

# torch (Debian build, BLAS_INFO=generic) sends matmuls to OpenBLAS, whose own pthread pool
# spins next to torch's OpenMP threads; on 2 cores, with any other process runnable, that
# oversubscription made 2-thread torch runs 2-5x slower than 1 thread. Keep OpenBLAS
# single-threaded (torch's intra-op parallelism is torch.set_num_threads); --blas-threads N.
_CHILD_ENV = dict(os.environ)  # covfit children get the caller's environment
if "--blas-threads" in sys.argv:
    os.environ["OPENBLAS_NUM_THREADS"] = sys.argv[sys.argv.index("--blas-threads") + 1]
else:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


from machine_load import loadavg, wait_for_quiet  # noqa: E402,F401


# ----------------------------------------------------------------------------- model
def canonical_full(raw):
    """raw (K, 6) -> mu_x, mu_y, P11, P12, P22, w (each (K,))."""
    mx, my, lsx, lsy, a, w = raw.unbind(1)
    t = torch.sigmoid(a) * (2 * math.pi)
    c, s = torch.cos(t), torch.sin(t)
    ix = torch.exp(-2 * lsx)  # 1/sx^2
    iy = torch.exp(-2 * lsy)  # 1/sy^2
    p11 = c * c * ix + s * s * iy
    p12 = c * s * (ix - iy)
    p22 = s * s * ix + c * c * iy
    return mx, my, p11, p12, p22, w


def predict(raw, x, y):
    mx, my, p11, p12, p22, w = canonical_full(raw)
    dx = x[None, :] - mx[:, None]  # (K, N)
    dy = y[None, :] - my[:, None]
    q = p11[:, None] * dx * dx + 2 * p12[:, None] * dx * dy + p22[:, None] * dy * dy
    return w @ torch.exp(-0.5 * q)  # (N,)


def predict_gemm(raw, F):
    """Same model, expanded quadratic: q = F C^T with F = [x^2, xy, y^2, x, y, 1] (N, 6)
    fixed and C (K, 6) from the canonical parameters, so the (N, K) work is one GEMM, one
    exp and one GEMV (fewer elementwise passes than the direct form; a tuned baseline)."""
    mx, my, p11, p12, p22, w = canonical_full(raw)
    C = torch.stack([p11, 2 * p12, p22, -2 * (p11 * mx + p12 * my), -2 * (p12 * mx + p22 * my),
                     p11 * mx * mx + 2 * p12 * mx * my + p22 * my * my], 1)
    return torch.exp(-0.5 * (F @ C.T)) @ w


def mse(raw, x, y, t):
    r = predict(raw, x, y) - t
    return torch.mean(r * r)


# ----------------------------------------------------------------------------- (a)
def bench_problem(n, K, dtype, seed=1):
    """Like perf/rbf_kernels_bench.cpp: points on [-1,1]^2, smooth target, random `full`."""
    g = np.random.default_rng(seed)
    x = g.uniform(-1, 1, n)
    y = g.uniform(-1, 1, n)
    t = np.sin(3 * x) * np.cos(2 * y)
    raw = np.empty((K, 6))
    raw[:, 0] = g.uniform(-1, 1, K)
    raw[:, 1] = g.uniform(-1, 1, K)
    raw[:, 2] = math.log(0.3) + 0.5 * g.uniform(-1, 1, K)
    raw[:, 3] = math.log(0.3) + 0.5 * g.uniform(-1, 1, K)
    raw[:, 4] = 2 * g.uniform(-1, 1, K)
    raw[:, 5] = g.uniform(-1, 1, K)
    T = lambda a: torch.tensor(a, dtype=dtype)
    return T(x), T(y), T(t), T(raw).requires_grad_(True)


def torch_kpe(K, N, dtype, threads, min_time, variant="direct"):
    torch.set_num_threads(threads)
    x, y, t, raw = bench_problem(N, K, dtype)
    F = torch.stack([x * x, x * y, y * y, x, y, torch.ones_like(x)], 1)

    def step():
        raw.grad = None
        if variant == "direct":
            loss = mse(raw, x, y, t)
        else:
            r = predict_gemm(raw, F) - t
            loss = torch.mean(r * r)
        loss.backward()
        return loss

    for _ in range(20):  # warm-up
        step()
    iters, t0 = 0, time.perf_counter()
    batch = 50
    while True:
        for _ in range(batch):
            step()
        iters += batch
        el = time.perf_counter() - t0
        if el >= min_time:
            break
    return K * N * iters / el


def covfit_kpe(bench, min_time):
    """Run rbf_kernels_bench for the K=25 N=4096 SIMD and two-task cases; {name: kpe/s}."""
    filt = r"BM_(LossGradSimd|TwoTasks)<(float|double)>/K:25/N:4096(/real_time)?$"
    cmd = [bench, f"--benchmark_filter={filt}", "--benchmark_format=json",
           f"--benchmark_min_time={min_time}"]
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, env=_CHILD_ENV)
    if out.returncode != 0:  # newer Google Benchmark wants a unit suffix
        cmd[-1] = f"--benchmark_min_time={min_time}s"
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=_CHILD_ENV)
    data = json.loads(out.stdout)
    return {b["name"]: b["kpe/s"] for b in data["benchmarks"]}, data.get("context", {})


# ----------------------------------------------------------------------------- (b)
def franke(x, y):
    return (0.75 * np.exp(-(9 * x - 2) ** 2 / 4 - (9 * y - 2) ** 2 / 4)
            + 0.75 * np.exp(-(9 * x + 1) ** 2 / 49 - (9 * y + 1) / 10)
            + 0.5 * np.exp(-(9 * x - 7) ** 2 / 4 - (9 * y - 3) ** 2 / 4)
            - 0.2 * np.exp(-(9 * x - 4) ** 2 - (9 * y - 7) ** 2))


def franke_grid(g=48):
    # covfit's ordering: row i (y = i/(g-1)), column j (x = j/(g-1))
    jj, ii = np.meshgrid(np.arange(g), np.arange(g))
    x = (jj / (g - 1)).ravel()
    y = (ii / (g - 1)).ravel()
    return x, y, franke(x, y)


LOG_SIG_MIN, LOG_SIG_MAX = math.log(1e-3), math.log(10.0)


def init_raw(K, x, y, t, rng, dtype):
    """covfit's `lattice` initialisation: K of the g x g cells, jittered centres, isotropic
    sigma = spacing * U(0.8, 1.25), a = 0, weights by least squares."""
    g = math.ceil(math.sqrt(K))
    x0, x1, y0, y1 = x.min(), x.max(), y.min(), y.max()
    sx, sy = (x1 - x0) / g, (y1 - y0) / g
    spacing = math.sqrt(sx * sy)
    cells = rng.permutation(g * g)[:K]
    raw = np.zeros((K, 6))
    raw[:, 0] = x0 + sx * (cells % g + 0.5 + rng.uniform(-0.3, 0.3, K))
    raw[:, 1] = y0 + sy * (cells // g + 0.5 + rng.uniform(-0.3, 0.3, K))
    ls = np.log(spacing * rng.uniform(0.8, 1.25, K))
    raw[:, 2] = raw[:, 3] = np.clip(ls, LOG_SIG_MIN, LOG_SIG_MAX)
    raw = torch.tensor(raw, dtype=dtype)
    X, Y, T = (torch.tensor(v, dtype=dtype) for v in (x, y, t))
    with torch.no_grad():
        mx, my, p11, p12, p22, _ = canonical_full(raw)
        dx = X[None, :] - mx[:, None]
        dy = Y[None, :] - my[:, None]
        B = torch.exp(-0.5 * (p11[:, None] * dx * dx + 2 * p12[:, None] * dx * dy
                              + p22[:, None] * dy * dy))  # (K, N)
        A = B @ B.T
        A += 1e-12 * torch.trace(A) / K * torch.eye(K, dtype=dtype)
        raw[:, 5] = torch.linalg.solve(A, B @ T)
    return raw


def torch_fit(raw0, X, Y, T, steps, lrs):
    """One Adam fit of `full`; per-group learning rates, covfit's projection, best iterate."""
    centre = raw0[:, 0:2].clone().requires_grad_(True)
    shape = raw0[:, 2:5].clone().requires_grad_(True)
    weight = raw0[:, 5:6].clone().requires_grad_(True)
    opt = torch.optim.Adam([{"params": [weight], "lr": lrs[0]},
                            {"params": [centre], "lr": lrs[1]},
                            {"params": [shape], "lr": lrs[2]}],
                           betas=(0.9, 0.999), eps=1e-8)
    best = math.inf
    for step in range(steps + 1):  # covfit evaluates steps + 1 times, updates `steps` times
        opt.zero_grad(set_to_none=True)
        raw = torch.cat([centre, shape, weight], dim=1)
        loss = mse(raw, X, Y, T)
        lv = loss.item()
        if lv < best:
            best = lv
        if step == steps:
            break
        loss.backward()
        opt.step()
        with torch.no_grad():  # project: clip log sigmas (model.hpp Bounds)
            shape[:, 0:2].clamp_(LOG_SIG_MIN, LOG_SIG_MAX)
    return best


def torch_e2e(fits, K, steps, dtype, threads, seed=2026):
    torch.set_num_threads(threads)
    x, y, t = franke_grid(48)
    X, Y, T = (torch.tensor(v, dtype=dtype) for v in (x, y, t))
    rng = np.random.default_rng(seed)
    lrs = (0.01, 0.003, 0.003)
    # warm-up (first-call overheads), not timed
    torch_fit(init_raw(K, x, y, t, rng, dtype), X, Y, T, 5, lrs)
    losses = []
    t0 = time.perf_counter()
    for _ in range(fits):
        raw0 = init_raw(K, x, y, t, rng, dtype)
        losses.append(torch_fit(raw0, X, Y, T, steps, lrs))
    el = time.perf_counter() - t0
    return el, losses, float(np.var(t))


def covfit_e2e(covfit, fits, steps, threads, precision, tmpdir):
    out = os.path.join(tmpdir, f"e2e_t{threads}_{precision}.h5")
    cmd = [covfit, "run", os.path.join(ROOT, "jobs", "demo.toml"),
           "--set", 'grid.param=["full"]', "--set", "grid.K=[9]",
           "--set", f"grid.restarts={fits}", "--set", f"fit.max_steps={steps}",
           "--set", "fit.rel_tol=0", "--set", f'fit.precision="{precision}"',
           # same Adam as the torch side: constant learning rates, lattice start
           "--set", "fit.lr_final_ratio=1.0", "--set", 'fit.init="lattice"',
           "-o", out, "--overwrite", "-q", "-t", str(threads)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=_CHILD_ENV)
    el = time.perf_counter() - t0
    info = {"cmd": " ".join(cmd)}
    try:
        import h5py
        with h5py.File(out, "r") as f:
            tk = f["/fit/tasks"][...]
            info["tasks"] = len(tk)
            info["status"] = sorted({s.decode().rstrip("\0") for s in tk["status"]})
            info["steps"] = [int(tk["steps"].min()), int(tk["steps"].max())]
            info["final_rel_loss_median"] = float(np.median(tk["final_rel_loss"]))
            info["sum_task_seconds"] = float(tk["wall_seconds"].sum())
            # Same model? Map covfit's final raw parameters through the torch code and
            # compare with covfit's canonical kernels and its final loss.
            row = tk[0]
            raw = f["/fit/raw"][row["raw_offset"]:row["raw_offset"] + row["raw_len"]].reshape(-1, 6)
            kern = f["/fit/kernels"][row["kernel_offset"]:row["kernel_offset"] + row["kernel_len"]]
            raw_t = torch.tensor(raw, dtype=torch.float64)
            can = torch.stack(canonical_full(raw_t), 1).numpy()
            ref = np.stack([kern[c] for c in ("mu_x", "mu_y", "P11", "P12", "P22", "w")], 1)
            info["max_rel_diff_canonical"] = float(np.max(np.abs(can - ref) / (np.abs(ref) + 1e-300)))
            x, y, t = franke_grid(48)
            X, Y, T = (torch.tensor(v, dtype=torch.float64) for v in (x, y, t))
            lt = float(mse(raw_t, X, Y, T))
            info["rel_diff_loss_at_covfit_raw"] = abs(lt - row["final_loss"]) / row["final_loss"]
    except Exception as e:  # noqa: BLE001  (h5py missing or format change: timing still valid)
        info["h5_error"] = repr(e)
    return el, info


# ----------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short run (smoke test)")
    ap.add_argument("--covfit", default=os.path.join(ROOT, "build", "covfit"))
    ap.add_argument("--bench", default=os.path.join(ROOT, "build", "rbf_kernels_bench"))
    ap.add_argument("--fits", type=int, default=None, help="fits in (b) (default 20, quick 4)")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--min-time", type=float, default=None, help="seconds per kernel measurement")
    ap.add_argument("--max-load", type=float, default=1.0)
    ap.add_argument("--skip-a", action="store_true")
    ap.add_argument("--skip-b", action="store_true")
    ap.add_argument("--blas-threads", help="OpenBLAS threads under torch (default 1)")
    ap.add_argument("--json", help="also write the numbers to this file")
    args = ap.parse_args()
    fits = args.fits or (4 if args.quick else 20)
    min_time = args.min_time or (0.3 if args.quick else 2.0)
    precisions = ["f64"] if args.quick else ["f64", "f32"]
    res = {"torch": torch.__version__, "quick": args.quick,
           "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS")}

    la0 = wait_for_quiet(args.max_load, 0 if args.quick else 6, 20)
    res["load_start"] = la0
    print(f"torch {torch.__version__}; 1-min load at start {la0:.2f}", flush=True)

    rows = []
    if not args.skip_a:
        K, N = 25, 4096
        print(f"(a) kernel throughput, K={K} N={N}, forward+backward ...", flush=True)
        cf, ctx = covfit_kpe(args.bench, min_time)
        res["covfit_kpe"] = cf
        tk = {}
        for prec, dt, tname in (("f32", torch.float32, "float"), ("f64", torch.float64, "double")):
            for th in (1, 2):
                for var in ("direct", "gemm"):
                    tk[(prec, th, var)] = torch_kpe(K, N, dt, th, min_time, var)
            c1 = cf[f"BM_LossGradSimd<{tname}>/K:25/N:4096"]
            c2 = cf[f"BM_TwoTasks<{tname}>/K:25/N:4096/real_time"]
            for var in ("direct", "gemm"):
                rows.append((f"(a) kpe/s {prec} 1 core {var}", tk[(prec, 1, var)], c1,
                             "torch 1 thread vs BM_LossGradSimd"))
                rows.append((f"(a) kpe/s {prec} 2 cores {var}", tk[(prec, 2, var)], c2,
                             "torch 2 threads vs BM_TwoTasks (aggregate)"))
        res["torch_kpe"] = {f"{p}_t{t}_{v}": val for (p, t, v), val in tk.items()}

    if not args.skip_b:
        print(f"(b) end to end: {fits} fits of full, K=9, {args.steps} Adam steps, Franke 48x48 ...", flush=True)
        tmpdir = tempfile.mkdtemp(prefix="covfit_perf_")
        res["e2e"] = {}
        for prec in precisions:
            dt = torch.float64 if prec == "f64" else torch.float32
            for th in (1, 2):
                tt, losses, var = torch_e2e(fits, 9, args.steps, dt, th)
                ct, info = covfit_e2e(args.covfit, fits, args.steps, th, prec, tmpdir)
                tf, cfps = fits / tt, fits / ct
                rows.append((f"(b) fits/s {prec}, -t {th}", tf, cfps,
                             f"torch {tt:.2f} s vs covfit {ct:.2f} s wall"))
                res["e2e"][f"{prec}_t{th}"] = {
                    "torch_seconds": tt, "covfit_seconds": ct, "fits": fits,
                    "torch_rel_loss_median": float(np.median(losses)) / var, "covfit": info}
                print(f"   {prec} -t {th}: torch {tt:.2f} s (median rel loss "
                      f"{np.median(losses) / var:.2e}), covfit {ct:.2f} s "
                      f"(tasks {info.get('tasks')}, steps {info.get('steps')}, status "
                      f"{info.get('status')}, median rel loss {info.get('final_rel_loss_median', float('nan')):.2e})",
                      flush=True)

    la1 = loadavg()
    res["load_end"] = la1
    res["rows"] = [dict(zip(("what", "torch", "covfit", "note"), r)) for r in rows]
    print()
    print(f"{'measurement':32s} {'torch':>12s} {'covfit':>12s} {'covfit/torch':>13s}  note")
    for what, tv, cv, note in rows:
        print(f"{what:32s} {tv:12.4g} {cv:12.4g} {cv / tv:12.1f}x  {note}")
    print(f"1-min load: {la0:.2f} at start, {la1:.2f} at end "
          f"(covfit bench context: {ctx.get('num_cpus', '?') if not args.skip_a else '-'} cpus)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
