#!/usr/bin/python3
"""Compare two complete covfit sweep result files: every column of /sweep/tasks,
/sweep/lambda and /sweep/folds except timings, and every stored matrix, bitwise.

Usage: compare_sweeps.py A.h5 B.h5   (exit 0 if equal, an AssertionError if not)
"""
import sys
import h5py
import numpy as np
import covfit
a, b = sys.argv[1:3]
def rows(read, p, keys):
    return read(p).sort_values(keys).reset_index(drop=True)
for read, keys in ((covfit.read_sweep_tasks, ["id"]), (covfit.read_sweep, ["task_id", "lambda_index"]),
                   (covfit.read_folds, ["task_id", "lambda_index", "fold"])):
    x, y = rows(read, a, keys), rows(read, b, keys)
    assert len(x) == len(y) > 0, (read.__name__, len(x), len(y))
    for c in x.columns:
        if "seconds" in c:
            continue
        u, v = x[c].to_numpy(), y[c].to_numpy()
        ok = np.array_equal(u, v, equal_nan=True) if u.dtype.kind == "f" else (u == v).all()
        assert ok, f"{read.__name__}: column {c} differs"
with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
    names = sorted(f"{t}/{n}" for t in fa["sweep/matrices"] for n in fa["sweep/matrices"][t])
    assert names and names == sorted(f"{t}/{n}" for t in fb["sweep/matrices"] for n in fb["sweep/matrices"][t])
    for n in names:
        np.testing.assert_array_equal(fa["sweep/matrices/" + n][()], fb["sweep/matrices/" + n][()])
print(f"equal: {a} {b}")
