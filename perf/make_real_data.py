#!/usr/bin/python3
"""Real grids from Debian packages, as HDF5 inputs for covfit (not committed; rerun this).

  jacksboro_dem.h5: /elevation (344, 403) float64, metres. The Jacksboro fault digital
      elevation model shipped by python-matplotlib-data
      (/usr/share/matplotlib/mpl-data/sample_data/jacksboro_fault_dem.npz), 138,632 cells;
      attribute extent = [x_first, x_last, y_first, y_last] in degrees (row 0 is north).
  grace_hopper_512.h5: /gray (512, 512) float64 in [0, 1]. The Grace Hopper photograph
      shipped by python-matplotlib-data (sample_data/grace_hopper.jpg, 600 x 512 RGB),
      rows 44..555 (a centred 512 x 512 crop), ITU-R BT.601 luma; 262,144 pixels.
  hopper_patches.h5: a covariance-sweep problem from the same photograph. m = 300 random
      16 x 16 patches (seed 0) are the stimuli; /X (256, 300) their pixel values (n = 256
      channels, a natural-image spectrum: s_min / s_max ~ 1e-9 over the numerical rank),
      /S (300, 300) the Gram matrix of the same patches' gradient magnitudes (centred
      per patch): "which pixel mixing W makes pixel similarity look like edge similarity".

  face_patches.h5: the same construction at the sizes users have (issue 11): m = 4000 random
      30 x 30 patches (seed 1) of the raccoon photograph shipped by python3-scipy
      (scipy/misc/face.dat, 768 x 1024 grayscale, values / 255): /X (900, 4000), rank 900;
      /S (4000, 4000) the centred gradient-magnitude Gram matrix.

Usage: perf/make_real_data.py [OUT_DIR]   (default perf/data)
"""
import os
import sys

import h5py
import matplotlib.image
import numpy as np

SAMPLE = "/usr/share/matplotlib/mpl-data/sample_data"


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "data")
    os.makedirs(out, exist_ok=True)
    dem = np.load(os.path.join(SAMPLE, "jacksboro_fault_dem.npz"))
    z = dem["elevation"].astype(np.float64)
    ny, nx = z.shape
    dx, dy = float(dem["dx"]), float(dem["dy"])
    x0, y0 = float(dem["xmin"]), float(dem["ymin"])
    # The npz names the north edge ymin; rows run south at dy per row.
    extent = [x0, x0 + (nx - 1) * dx, y0, y0 - (ny - 1) * dy]
    with h5py.File(os.path.join(out, "jacksboro_dem.h5"), "w") as f:
        d = f.create_dataset("elevation", data=z)
        d.attrs["extent"] = extent
        d.attrs["source"] = SAMPLE + "/jacksboro_fault_dem.npz (python-matplotlib-data)"
    img = matplotlib.image.imread(os.path.join(SAMPLE, "grace_hopper.jpg")).astype(np.float64) / 255.0
    gray = img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114
    top = (gray.shape[0] - 512) // 2
    gray = gray[top:top + 512, :512]
    with h5py.File(os.path.join(out, "grace_hopper_512.h5"), "w") as f:
        d = f.create_dataset("gray", data=gray)
        d.attrs["source"] = SAMPLE + "/grace_hopper.jpg (python-matplotlib-data), rows %d..%d, luma" % (top, top + 511)
    rng = np.random.default_rng(0)
    m, p = 300, 16
    ys, xs = rng.integers(0, 512 - p, m), rng.integers(0, 512 - p, m)
    X = np.stack([gray[y:y + p, x:x + p].ravel() for y, x in zip(ys, xs)], axis=1)
    gy, gx = np.gradient(gray)
    g = np.hypot(gx, gy)
    G = np.stack([g[y:y + p, x:x + p].ravel() for y, x in zip(ys, xs)], axis=1)
    G = G - G.mean(axis=0, keepdims=True)
    with h5py.File(os.path.join(out, "hopper_patches.h5"), "w") as f:
        f["X"] = X
        f["S"] = G.T @ G
        f.attrs["source"] = "grace_hopper_512 patches (16 x 16, 300, seed 0); S = Gram of gradient magnitudes"
    Xf = face_patches(out)
    print("wrote", out, "dem", z.shape, "extent", extent, "image", gray.shape, "patches X", X.shape,
          "face patches X", Xf.shape)


def patch_problem(gray, m, p, seed):
    """X: m random p x p patches of gray as columns; S: the Gram matrix of the same patches'
    gradient magnitudes, each patch centred."""
    rng = np.random.default_rng(seed)
    ys = rng.integers(0, gray.shape[0] - p, m)
    xs = rng.integers(0, gray.shape[1] - p, m)
    X = np.stack([gray[y:y + p, x:x + p].ravel() for y, x in zip(ys, xs)], axis=1)
    gy, gx = np.gradient(gray)
    g = np.hypot(gx, gy)
    G = np.stack([g[y:y + p, x:x + p].ravel() for y, x in zip(ys, xs)], axis=1)
    G = G - G.mean(axis=0, keepdims=True)
    return X, G.T @ G


def face_patches(out):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy 1.10 deprecates misc.face for scipy.datasets
        import scipy.misc
        face = scipy.misc.face(gray=True).astype(np.float64) / 255.0
    X, S = patch_problem(face, 4000, 30, 1)
    with h5py.File(os.path.join(out, "face_patches.h5"), "w") as f:
        f["X"] = X
        f["S"] = S
        f.attrs["source"] = ("scipy/misc/face.dat (python3-scipy) grayscale / 255; 4000 random "
                             "30 x 30 patches (seed 1); S = Gram of centred gradient magnitudes")
    return X


if __name__ == "__main__":
    main()
