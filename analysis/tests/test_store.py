"""Stored sweep matrices (issue 11): in a format 4 file each matrix of the summary is in the
file once, as a slab of /sweep/matrices/<task id>/<name> (format 3 also had it in
/sweep/values, and units kept the n x n matrices at store_lambdas in /sweep_units/values),
and it holds the numbers covfit stored before the change.

analysis/tests/data/format3_sweep.h5 was written by covfit at commit e5b6d11 (format 3) with
jobs/sweep_diag.toml and the overrides of SETS below (-t 1); these tests run the same job
with the binary under test.

Run:  PYTHONPATH=analysis COVFIT_BIN=build/covfit python3 -m unittest analysis/tests/test_store.py -v
"""

import os
import shutil
import unittest

import h5py
import numpy as np

import covfit
from test_reader import HERE, make_tmpdir, small_sweep

FORMAT3 = os.path.join(HERE, "data", "format3_sweep.h5")
# small_sweep's job with these overrides (the later --set wins): the job of FORMAT3.
SETS = ["data.n=16", "data.m=10", "data.rank=3", "sweep.lambda_count=4", "sweep.lambda_d=[0.1]",
        "sweep.folds=2", "sweep.store_lambdas=[0.001, 0.1]"]
# Another build (AVX2 against AVX-512, another OpenBLAS core, -O1 with sanitizers) changes
# the last bits of the closed forms, and the iterates of the iterative solvers (W, d: the
# exact solution and free_diag's) within their stopping tolerance: seen 3e-6 relative in
# free_diag's d between the Release and the sanitizer build. Still far below the difference
# between two λ's matrices, which a wrong slab would show.
MATRIX_ATOL = {"W": 1e-4, "d": 1e-4}
CLOSED_FORM_ATOL = 1e-10


def matrix_atol(name, a):
    return MATRIX_ATOL.get(name, CLOSED_FORM_ATOL) * max(1.0, np.abs(a).max())


class StoredOnceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = make_tmpdir("covfit_store_")
        cls.path = small_sweep(cls.dir, [a for s in SETS for a in ("--set", s)])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_each_summary_matrix_is_in_the_file_once(self):
        m = covfit.read_matrices(self.path)
        self.assertGreater(len(m), 0)
        with h5py.File(self.path, "r") as f:
            self.assertEqual(int(f.attrs["format_version"]), 4)
            self.assertEqual(int(f.attrs["complete"]), 1)
            self.assertNotIn("values", f["sweep"])
            self.assertNotIn("values_offset", f["sweep/tasks"].dtype.names)
            # Every float64 array under /sweep is a matrix stack, and its slabs are exactly
            # the index rows: each matrix once, nothing else.
            stacks = {}
            f["sweep"].visititems(lambda name, o: stacks.__setitem__(name, o.shape)
                                  if isinstance(o, h5py.Dataset) and o.dtype.names is None else None)
            self.assertTrue(all(k.startswith("matrices/") for k in stacks), stacks)
            slabs = sorted((f"matrices/{t}/{n}", int(i)) for t, n, i in zip(m["task_id"], m["name"], m["index"]))
            self.assertEqual(len(slabs), len(set(slabs)))
            self.assertEqual(slabs, sorted((k, i) for k, s in stacks.items() for i in range(s[0])))
            elements = sum(int(np.prod(s)) for s in stacks.values())
            self.assertEqual(elements, int((m["rows"] * m["cols"]).sum()))

    def test_units_keep_no_n_by_n_matrix(self):
        # Units keep the r x r exact solutions at the stored lambdas (and their path ends):
        # the n x n matrices are in the summary only. Format 3 units kept W, d, ... too.
        units = covfit.read_sweep_units(self.path)
        with h5py.File(self.path, "r") as f:
            idx = f["sweep_units/matrix_index"][()]
            names = {n.decode() for n in idx["name"]}
            self.assertEqual(names, {"M", "P_end", "logP_end", "logP_prev"})
            self.assertTrue((idx["rows"] == idx["cols"]).all())
            self.assertLessEqual(int(idx["rows"].max()), int(units["r"].max()))
            self.assertEqual(f["sweep_units/values"].shape[0], int((idx["rows"] * idx["cols"]).sum()))
        with h5py.File(FORMAT3, "r") as f:
            self.assertIn("W", {n.decode() for n in f["sweep_units/matrix_index"]["name"]})

    def test_same_matrices_as_format_3(self):
        old, new = covfit.read_matrices(FORMAT3), covfit.read_matrices(self.path)
        cols = ["task_id", "name", "lambda", "lambda_d", "rows", "cols"]
        self.assertEqual(len(old), len(new))
        for c in cols:
            u, v = old[c].to_numpy(), new[c].to_numpy()
            if u.dtype.kind == "f":
                np.testing.assert_allclose(u, v, rtol=1e-12, err_msg=c)
            else:
                self.assertTrue((u == v).all(), c)
        for _, r in new.iterrows():
            lam_d = None if np.isnan(r["lambda_d"]) else r["lambda_d"]
            a = covfit.read_matrix(FORMAT3, r["task_id"], r["name"], r["lambda"], lam_d)
            b = covfit.read_matrix(self.path, r["task_id"], r["name"], r["lambda"], lam_d)
            self.assertEqual(a.shape, b.shape)
            np.testing.assert_allclose(b, a, rtol=0, atol=matrix_atol(r["name"], a),
                                       err_msg=f"{r['task_id']}/{r['name']}")
        # read_matrix's default (the best lambda) agrees too, and the datasets' attributes.
        with h5py.File(FORMAT3, "r") as fa, h5py.File(self.path, "r") as fb:
            for t in fa["sweep/matrices"]:
                for n in fa["sweep/matrices"][t]:
                    x, y = fa[f"sweep/matrices/{t}/{n}"], fb[f"sweep/matrices/{t}/{n}"]
                    self.assertEqual(x.shape, y.shape)
                    self.assertEqual(int(x.attrs["best_index"]), int(y.attrs["best_index"]))
                    np.testing.assert_allclose(x.attrs["lambda_job"], y.attrs["lambda_job"], rtol=1e-12)
                    np.testing.assert_allclose(covfit.read_matrix(self.path, int(t), n),
                                               covfit.read_matrix(FORMAT3, int(t), n),
                                               rtol=0, atol=matrix_atol(n, x[()]))

    def test_format_3_file_stays_readable(self):
        self.assertEqual(covfit.read_attrs(FORMAT3)["format_version"], 3)
        m = covfit.read_matrices(FORMAT3)
        self.assertIn("start", m)
        with h5py.File(FORMAT3, "r") as f:
            for _, r in m.iterrows():
                ds = f[f"sweep/matrices/{r['task_id']}/{r['name']}"]
                i = int(np.flatnonzero(ds.attrs["lambda"] == r["lambda"])[0])
                lam_d = None if np.isnan(r["lambda_d"]) else r["lambda_d"]
                np.testing.assert_array_equal(
                    ds[i], covfit.read_matrix(FORMAT3, r["task_id"], r["name"], r["lambda"], lam_d))


if __name__ == "__main__":
    unittest.main()
