#!/usr/bin/python3
"""One dense loss + gradient evaluation in numpy (the GEMM formulation) on the kernels that
build/rbf_local_bench saved (--save-kernels), to compare with covfit's step times.

The formulation (the fastest numpy form we know for this model; as the `gemm` variant of
compare_torch_rbf.py): with point features F = [x^2, xy, y^2, x, y, 1] (N x 6) and
per-kernel coefficients C (K x 6) so that -q/2 = F C^T,
    E = exp(F C^T)                       one GEMM + one exp over N x K
    r = E w - t                          GEMV
    A = F^T (E * r[:, None])             one GEMM: the six sums of r e x^a y^b per kernel
and the centred moments (about each centre) follow from A in O(K). Points are processed
in chunks of 4096 so the N x K matrices stay in cache-sized pieces (a whole 138k x 6400
matrix would need 7 GB). Checked: the loss equals covfit's dense loss (printed).

Usage: perf/compare_numpy_gemm_step.py GRID.h5 DATASET KERNELS.h5 [--reps 3] [--chunk 4096]
OPENBLAS_NUM_THREADS defaults to 1 (one core, like the covfit figures).
"""
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import h5py  # noqa: E402
import numpy as np  # noqa: E402


def load_grid(path, name):
    """As covfit loads `grid_dataset` with the default extent and standardize = true."""
    with h5py.File(path, "r") as f:
        z = np.asarray(f[name], dtype=np.float64)
    ny, nx = z.shape
    d = 1.0 / (max(nx, ny) - 1)
    yy, xx = np.meshgrid(np.arange(ny) * d, np.arange(nx) * d, indexing="ij")
    keep = ~np.isnan(z)
    x, y, t = xx[keep], yy[keep], z[keep]
    t = (t - t.mean()) / t.std()
    return x, y, t


def step(F, t, C, w, mx, my, chunk):
    """Loss and the six raw sums per kernel (dense), chunked over points."""
    N = F.shape[0]
    K = C.shape[0]
    loss = 0.0
    A = np.zeros((6, K))
    for s in range(0, N, chunk):
        Fc = F[s:s + chunk]
        E = np.exp(Fc @ C.T)
        r = E @ w - t[s:s + chunk]
        loss += r @ r
        A += Fc.T @ (E * r[:, None])
    # centred sums: S_w = sum r e, S_x = sum r e (x - mx), ...
    Sw = A[5]
    Sx = A[3] - mx * Sw
    Sy = A[4] - my * Sw
    Sxx = A[0] - 2 * mx * A[3] + mx * mx * Sw
    Sxy = A[1] - my * A[3] - mx * A[4] + mx * my * Sw
    Syy = A[2] - 2 * my * A[4] + my * my * Sw
    return loss / N, (Sw, Sx, Sy, Sxx, Sxy, Syy)


def main():
    args = sys.argv[1:]
    if len(args) < 3:
        print(__doc__)
        return 2
    reps = int(args[args.index("--reps") + 1]) if "--reps" in args else 3
    chunk = int(args[args.index("--chunk") + 1]) if "--chunk" in args else 4096
    x, y, t = load_grid(args[0], args[1])
    F = np.stack([x * x, x * y, y * y, x, y, np.ones_like(x)], axis=1)
    print("# numpy %s, N = %d, OPENBLAS_NUM_THREADS=%s, chunk %d, min of %d reps"
          % (np.__version__, len(t), os.environ["OPENBLAS_NUM_THREADS"], chunk, reps))
    print("%6s %10s %14s %14s" % ("K", "numpy_s", "loss", "covfit_dense_loss"))
    with h5py.File(args[2], "r") as f:
        names = sorted((k for k in f.keys() if k.startswith("K")), key=lambda s: int(s[1:]))
        for name in names:
            kern = np.asarray(f[name])
            mx, my, p11, p12, p22, w = kern.T
            # -q/2 = -1/2 p11 (x-mx)^2 - p12 (x-mx)(y-my) - 1/2 p22 (y-my)^2, expanded in F
            C = np.stack([-0.5 * p11, -p12, -0.5 * p22,
                          p11 * mx + p12 * my, p12 * mx + p22 * my,
                          -0.5 * p11 * mx * mx - p12 * mx * my - 0.5 * p22 * my * my], axis=1)
            best = 1e300
            for _ in range(reps):
                t0 = time.perf_counter()
                loss, _ = step(F, t, C, w, mx, my, chunk)
                best = min(best, time.perf_counter() - t0)
            ref = f.attrs.get("dense_loss_" + name, float("nan"))
            print("%6s %10.4g %14.8g %14.8g" % (name[1:], best, loss, ref), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
