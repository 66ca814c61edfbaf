"""Compare the deterministic content of two covfit result files, task by task.

Usage: compare_results.py A.h5 B.h5   (exit 0 if equal, 1 with a message if not)
Timing columns (wall_seconds, seconds, seconds_to_target) are excluded; everything else
covfit computes must be bitwise equal, whatever the order rows were appended in.
"""
import sys

import h5py
import numpy as np

TIMING = {"wall_seconds", "seconds", "seconds_to_target"}
POINTERS = {"curve_offset", "kernel_offset", "raw_offset"}


def load(path):
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        tasks = f["/fit/tasks"][()]
        curves = f["/fit/curves"][()]
        kernels = f["/fit/kernels"][()]
        raw = f["/fit/raw"][()]
        out = {}
        for t in tasks:
            tid = int(t["id"])
            row = {n: t[n] for n in tasks.dtype.names if n not in TIMING | POINTERS}
            c = curves[t["curve_offset"]: t["curve_offset"] + t["curve_len"]]
            row["curves"] = {n: c[n] for n in c.dtype.names if n not in TIMING}
            k = kernels[t["kernel_offset"]: t["kernel_offset"] + t["K"]]
            row["kernels"] = {n: k[n] for n in k.dtype.names}
            row["raw"] = raw[t["raw_offset"]: t["raw_offset"] + t["raw_len"]]
            if tid in out:
                sys.exit(f"{path}: task {tid} appears twice")
            out[tid] = row
        return out, len(tasks), len(curves), len(kernels), len(raw)


def same(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind == "f":
        return a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
    return a.shape == b.shape and np.array_equal(a, b)


def main():
    a, *sa = load(sys.argv[1])
    b, *sb = load(sys.argv[2])
    if sa != sb:
        sys.exit(f"table sizes differ: {sa} vs {sb} (tasks, curves, kernels, raw)")
    if a.keys() != b.keys():
        sys.exit(f"task ids differ: {sorted(set(a) ^ set(b))[:10]}")
    for tid in sorted(a):
        for key in a[tid]:
            if not same(a[tid][key], b[tid][key]):
                sys.exit(f"task {tid}: '{key}' differs")
    print(f"equal: {len(a)} tasks")


if __name__ == "__main__":
    main()
