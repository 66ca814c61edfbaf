"""Tests of analysis/covfit/reader.py against files written by the covfit binary.

Run:  PYTHONPATH=analysis COVFIT_BIN=build/covfit python3 -m unittest discover -s analysis/tests -v
"""

import math
import os
import shutil
import subprocess
import tempfile
import time
import unittest

import h5py
import numpy as np

import covfit

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("COVFIT_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE)))
COVFIT_BIN = os.environ.get("COVFIT_BIN", "/work/main/build/covfit")
JOB = os.path.join(SOURCE_DIR, "jobs", "demo.toml")

PARAMS = ["full", "cholesky", "isotropic"]
KS = [3, 5]
SMALL_SETS = [
    "grid.K=[3,5]", "fit.max_steps=200", 'grid.param=["full","cholesky","isotropic"]',
    "grid.restarts=2", "data.grid=20", "fit.log_every=10", "fit.target_losses=[1e-2,1e-3]",
]
SMALL_TASKS = len(PARAMS) * len(KS) * 2


def covfit_cmd(out, sets, threads=None):
    cmd = [COVFIT_BIN, "run", JOB, "-o", out, "--overwrite", "-q"]
    for s in sets:
        cmd += ["--set", s]
    if threads is not None:
        cmd += ["-t", str(threads)]
    return cmd


def run_covfit(out, sets, threads=None):
    r = subprocess.run(covfit_cmd(out, sets, threads), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"covfit failed ({r.returncode}): {r.stderr}")
    return out


def make_tmpdir(prefix):
    return tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("COVFIT_TEST_TMP"))


_SMALL = {}


def small_results():
    """Path of a small results file (3 params x K in {3,5} x 2 restarts), made once."""
    if "path" not in _SMALL or not os.path.exists(_SMALL["path"]):
        d = make_tmpdir("covfit_reader_")
        _SMALL["dir"] = d
        _SMALL["path"] = run_covfit(os.path.join(d, "small.h5"), SMALL_SETS)
    return _SMALL["path"]


SWEEP_LAMBDAS, SWEEP_FOLDS = 6, 3


def small_sweep(dirpath, extra=()):
    """A small sweep file (free + free_diag, 6 lambdas, 2 lambda_d, 3 folds, n=40, m=24)."""
    out = os.path.join(dirpath, "sweep.h5")
    cmd = [COVFIT_BIN, "run", os.path.join(SOURCE_DIR, "jobs", "sweep_diag.toml"), "-o", out,
           "--overwrite", "-q", "--set", "data.n=40", "--set", "data.m=24", "--set", "data.rank=5",
           "--set", f"sweep.lambda_count={SWEEP_LAMBDAS}", "--set", "sweep.lambda_d=[0.01, 1.0]",
           "--set", f"sweep.folds={SWEEP_FOLDS}", "--set", "sweep.store_lambdas=[0.1]", *extra]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr}")
    return out


def tearDownModule():
    """Remove the small file; test modules importing this share it and may remake it."""
    if "dir" in _SMALL:
        shutil.rmtree(_SMALL["dir"], ignore_errors=True)
    _SMALL.clear()


def check_complete_rows(testcase, path, tasks):
    """Every task row is complete: finite losses, valid status, its curve rows readable."""
    for _, t in tasks.iterrows():
        testcase.assertIn(t["status"], covfit.STATUSES)
        testcase.assertTrue(math.isfinite(t["final_loss"]), t["id"])
        testcase.assertGreater(t["curve_len"], 0)
    curves = covfit.read_curves(path)
    testcase.assertEqual(len(curves), int(tasks["curve_len"].sum()))
    last = curves.groupby("task_id").tail(1).set_index("task_id")
    np.testing.assert_array_equal(last.index.to_numpy(), tasks["id"].to_numpy())
    # final_loss is the best iterate's loss (Adam is not monotone), never above any
    # monitored loss of the task.
    best = curves.groupby("task_id")["loss"].min()
    testcase.assertTrue((tasks["final_loss"].to_numpy() <= best.loc[tasks["id"]].to_numpy()).all())


class OpenResultsTest(unittest.TestCase):
    def setUp(self):
        self.dir = make_tmpdir("covfit_open_")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def _h5(self, name, **attrs):
        p = os.path.join(self.dir, name)
        with h5py.File(p, "w") as f:
            for k, v in attrs.items():
                f.attrs[k] = v
        return p

    def test_opens_covfit_file_swmr(self):
        with covfit.open_results(small_results()) as f:
            self.assertEqual(f.attrs["format"], b"covfit-results")
            self.assertTrue(f.swmr_mode)

    def test_rejects_missing_file(self):
        with self.assertRaises(FileNotFoundError):
            covfit.open_results(os.path.join(self.dir, "nope.h5"))

    def test_rejects_non_hdf5(self):
        p = os.path.join(self.dir, "text.h5")
        with open(p, "w") as fh:
            fh.write("not hdf5\n")
        with self.assertRaisesRegex(ValueError, "not an HDF5 file"):
            covfit.open_results(p)

    def test_rejects_wrong_format(self):
        p = self._h5("other.h5", format=b"something-else", format_version=1)
        with self.assertRaisesRegex(ValueError, "not a covfit results file"):
            covfit.open_results(p)
        p = self._h5("noattr.h5")
        with self.assertRaisesRegex(ValueError, "not a covfit results file"):
            covfit.read_tasks(p)

    def test_rejects_newer_version(self):
        p = self._h5("v3.h5", format=b"covfit-results", format_version=np.int64(covfit.FORMAT_VERSION + 1))
        with self.assertRaisesRegex(ValueError, f"format_version {covfit.FORMAT_VERSION + 1}"):
            covfit.open_results(p)


class ReaderTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.path = small_results()
        cls.tasks = covfit.read_tasks(cls.path)
        cls.curves = covfit.read_curves(cls.path)
        cls.attrs = covfit.read_attrs(cls.path)

    def test_attrs_decoded(self):
        a = self.attrs
        self.assertEqual(a["format"], "covfit-results")
        self.assertEqual(a["format_version"], covfit.FORMAT_VERSION)
        self.assertEqual(a["job_name"], "demo")
        self.assertIsInstance(a["job_toml"], str)
        self.assertIn("max_steps = 200", a["job_toml"])
        self.assertEqual(a["tasks_in_file"], SMALL_TASKS)
        self.assertEqual(len(a["job_hash"]), 16)

    def test_one_row_per_task(self):
        t = self.tasks
        self.assertEqual(len(t), self.attrs["tasks_in_file"])
        np.testing.assert_array_equal(t["id"].to_numpy(), np.arange(len(t)))
        self.assertTrue(t["id"].is_unique)

    def test_strings_decoded_and_valid(self):
        t = self.tasks
        for col in ("data", "param", "optimizer", "status", "message"):
            self.assertTrue(all(isinstance(v, str) for v in t[col]), col)
        self.assertTrue(set(t["status"]) <= set(covfit.STATUSES), set(t["status"]))
        self.assertEqual(sorted(set(t["param"])), sorted(PARAMS))
        self.assertEqual(sorted(set(t["K"])), KS)
        self.assertEqual(set(t["optimizer"]), {"adam"})
        for _, r in t.iterrows():
            self.assertNotIn("\0", r["param"] + r["status"] + r["data"])

    def test_target_columns(self):
        t = self.tasks
        self.assertEqual(t.attrs["target_losses"], [1e-2, 1e-3])
        for lvl in ("1e-02", "1e-03"):
            self.assertIn(f"steps_to_{lvl}", t)
            self.assertIn(f"seconds_to_{lvl}", t)
            never = t[f"steps_to_{lvl}"] < 0
            np.testing.assert_array_equal(never.to_numpy(),
                                          t[f"seconds_to_{lvl}"].isna().to_numpy())
        self.assertNotIn("steps_to_target", t)
        self.assertNotIn("seconds_to_target", t)
        self.assertTrue((t["steps_to_1e-02"] >= 0).any(), "no task reached 1e-2")

    def test_level_label(self):
        self.assertEqual(covfit.level_label(1e-4), "1e-04")
        self.assertEqual(covfit.level_label(3e-5), "3e-05")
        self.assertEqual(covfit.level_label(2.5e-4), "2.5e-04")

    def test_losses(self):
        t = self.tasks
        self.assertTrue(np.isfinite(t["final_loss"]).all())
        self.assertTrue((t["final_loss"] > 0).all())
        self.assertTrue((t["final_loss"] < t["initial_loss"]).all())
        var = covfit.read_data(self.path, "data")["variance"]
        np.testing.assert_allclose(t["final_rel_loss"], t["final_loss"] / var, rtol=1e-12)

    def test_final_loss_is_best_of_curve(self):
        for _, r in self.tasks.iterrows():
            c = covfit.read_curves(self.path, int(r["id"]))
            self.assertEqual(len(c), r["curve_len"])
            self.assertLessEqual(r["final_loss"], c["loss"].min(), r["id"])
            self.assertEqual(c["loss"].iloc[0], r["initial_loss"], r["id"])
            self.assertEqual(c["step"].iloc[-1], r["steps"], r["id"])

    def test_curves_belong_to_tasks(self):
        c, t = self.curves, self.tasks.set_index("id")
        self.assertEqual(len(c), int(t["curve_len"].sum()))
        with h5py.File(self.path, "r") as f:  # complete file: no orphan rows
            self.assertEqual(len(c), f["fit/curves"].shape[0])
        for col in ("param", "K", "optimizer", "restart", "data"):
            np.testing.assert_array_equal(c[col].to_numpy(),
                                          t.loc[c["task_id"], col].to_numpy(), col)
        for tid, g in c.groupby("task_id"):
            steps = g["step"].to_numpy()
            self.assertEqual(steps[0], 0)
            self.assertTrue((np.diff(steps) > 0).all(), tid)
            self.assertTrue((np.diff(g["seconds"].to_numpy()) >= 0).all(), tid)
        self.assertEqual(set(c["task_id"]), set(t.index))

    def test_single_task_curves_equal_subset(self):
        tid = int(self.tasks["id"].iloc[len(self.tasks) // 2])
        one = covfit.read_curves(self.path, tid)
        sub = self.curves[self.curves["task_id"] == tid].reset_index(drop=True)
        self.assertTrue(one.equals(sub))
        with self.assertRaises(KeyError):
            covfit.read_curves(self.path, 10_000)

    def test_predict_reproduces_final_loss(self):
        data = covfit.read_data(self.path, "data")
        self.assertEqual(set(("x", "y", "values")) - set(data), set())
        self.assertEqual(len(data["x"]), 400)
        for _, r in self.tasks.iterrows():
            k = covfit.read_kernels(self.path, int(r["id"]))
            self.assertEqual(list(k.columns), ["k", "mu_x", "mu_y", "P11", "P12", "P22", "w"])
            self.assertEqual(len(k), r["K"])
            np.testing.assert_array_equal(k["k"].to_numpy(), np.arange(r["K"]))
            mse = np.mean((covfit.predict(k, data["x"], data["y"]) - data["values"]) ** 2)
            self.assertLess(abs(mse / r["final_loss"] - 1), 1e-6, r["id"])

    def test_predict_single_kernel(self):
        import pandas as pd
        k = pd.DataFrame({"mu_x": [0.5], "mu_y": [0.0], "P11": [2.0], "P12": [0.5],
                          "P22": [1.0], "w": [3.0]})
        x, y = np.array([0.5, 1.5]), np.array([0.0, -1.0])
        d = np.array([1.0, -1.0])
        q = d @ np.array([[2.0, 0.5], [0.5, 1.0]]) @ d
        np.testing.assert_allclose(covfit.predict(k, x, y), [3.0, 3.0 * np.exp(-0.5 * q)])

    def test_table_generic(self):
        with covfit.open_results(self.path) as f:
            df = covfit.table(f["fit/kernels"])
            raw = f["fit/kernels"][()]
            self.assertEqual(list(df.columns), list(raw.dtype.names))
            np.testing.assert_array_equal(df["w"].to_numpy(), raw["w"])
            t = covfit.table(f["fit/tasks"])
            self.assertIn("steps_to_target_1", t)
            self.assertIsInstance(t["param"].iloc[0], str)


class DamagedFileTest(unittest.TestCase):
    """Rows not referenced by a task row, and task rows whose rows are missing."""

    def setUp(self):
        self.dir = make_tmpdir("covfit_damaged_")
        self.path = os.path.join(self.dir, "damaged.h5")
        shutil.copy(small_results(), self.path)
        self.before_tasks = covfit.read_tasks(self.path)
        self.before_curves = covfit.read_curves(self.path)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def _append(self, f, name, rows):
        ds = f[name]
        n = ds.shape[0]
        ds.resize((n + len(rows),))
        ds[n:] = rows
        return n

    def test_orphan_rows_and_incomplete_task_ignored(self):
        with h5py.File(self.path, "a") as f:
            cur = f["fit/curves"]
            orphan = np.zeros(3, dtype=cur.dtype)
            orphan["task_id"] = 0
            orphan["loss"] = -1.0
            self._append(f, "fit/curves", orphan)
            # A task row pointing past the end of /fit/curves: not complete.
            row = f["fit/tasks"][0:1].copy()
            row["id"] = 999
            row["curve_offset"] = f["fit/curves"].shape[0] - 1
            row["curve_len"] = 5
            self._append(f, "fit/tasks", row)
            # A zero-filled (not yet written) task row.
            self._append(f, "fit/tasks", np.zeros(1, dtype=f["fit/tasks"].dtype))
        t = covfit.read_tasks(self.path)
        self.assertTrue(t.equals(self.before_tasks))
        c = covfit.read_curves(self.path)
        self.assertTrue(c.equals(self.before_curves))
        self.assertFalse((c["loss"] < 0).any())

    def test_offset_mismatch_detected(self):
        with h5py.File(self.path, "a") as f:
            ds = f["fit/tasks"]
            arr = ds[()]
            i = int(np.flatnonzero(arr["id"] == 1)[0])
            j = int(np.flatnonzero(arr["id"] == 2)[0])
            arr["curve_offset"][i] = arr["curve_offset"][j]
            arr["curve_len"][i] = min(arr["curve_len"][i], arr["curve_len"][j])
            ds[()] = arr
        with self.assertRaisesRegex(ValueError, "belongs to task"):
            covfit.read_curves(self.path)


class SweepTest(unittest.TestCase):
    def setUp(self):
        self.dir = make_tmpdir("covfit_sweep_")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_no_sweep(self):
        with self.assertRaisesRegex(ValueError, "no sweep results in .*small.h5"):
            covfit.read_sweep(small_results())

    def test_sweep_tables(self):
        p = small_sweep(self.dir)
        s = covfit.read_sweep(p)
        self.assertIn("lambda", s.columns)
        self.assertIn("r2_val", s.columns)
        self.assertEqual(len(s), SWEEP_LAMBDAS + SWEEP_LAMBDAS * 2)  # free + free_diag x 2
        self.assertEqual(set(s["model"]), {"free", "free_diag"})
        tasks = covfit.read_sweep_tasks(p)
        self.assertEqual(list(tasks["id"]), [0, 1])
        for _, t in tasks.iterrows():
            g = s[s["task_id"] == t["id"]]
            self.assertIn(t["best_lambda"], set(g["lambda"]))
        # The means in /sweep/lambda are the means of /sweep/folds.
        folds = covfit.read_folds(p)
        self.assertEqual(len(folds), SWEEP_FOLDS * len(s))
        folds = folds.assign(lambda_d=folds["lambda_d"].fillna(-1.0))
        mean = folds.groupby(["task_id", "lambda", "lambda_d"])["r2_val"].mean()
        for _, r in s.iterrows():
            ld = -1.0 if np.isnan(r["lambda_d"]) else r["lambda_d"]
            self.assertAlmostEqual(mean.loc[(r["task_id"], r["lambda"], ld)], r["r2_val"], 12)
        # Stored matrices: W symmetric, d its diagonal.
        W = covfit.read_matrix(p, 0, "W")
        self.assertEqual(W.shape, (40, 40))
        np.testing.assert_allclose(W, W.T, atol=1e-12 * np.abs(W).max())
        # d and W come from separate computations: equal to rounding (they differ by ~3e-17
        # between Debug and Release builds), not bitwise.
        np.testing.assert_allclose(covfit.read_matrix(p, 0, "d").ravel(), np.diag(W),
                                   rtol=0, atol=1e-12 * np.abs(W).max())

class BestLambdaTest(unittest.TestCase):
    """One "best": the file's best_lambda is what best(), read_matrix's default, the figures
    and an idxmax over the column the file names (best_by) all give."""

    @classmethod
    def setUpClass(cls):
        cls.dir = make_tmpdir("covfit_best_")
        # W also stored at the grid's first lambda, so "the first stored" is not the best.
        cls.path = small_sweep(cls.dir, ["--set", "sweep.store_lambdas=[0.001, 0.1]"])
        cls.tasks = covfit.read_sweep_tasks(cls.path)
        cls.sweep = covfit.read_sweep(cls.path)
        cls.best = covfit.best(cls.path)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_best_is_the_files_best_lambda(self):
        self.assertEqual(len(self.best), len(self.tasks))
        for (_, t), (_, b) in zip(self.tasks.iterrows(), self.best.iterrows()):
            self.assertEqual(b["task_id"], t["id"])
            self.assertEqual(b["lambda"], t["best_lambda"])
            self.assertEqual(b["best_by"], t["best_by"])
            self.assertEqual(b["best_r2"], t["best_r2_val"])
            # The obvious pandas line, on the column the file names, gives the same row.
            g = self.sweep[self.sweep["task_id"] == t["id"]]
            row = g.loc[g[t["best_by"]].idxmax()]
            self.assertEqual(row["lambda"], t["best_lambda"])
            if np.isfinite(t["best_lambda_d"]):
                self.assertEqual(row["lambda_d"], t["best_lambda_d"])
        # free with exact solutions is decided by the exact solution's R^2, as inspect says.
        free = self.tasks[self.tasks["model"] == "free"].iloc[0]
        self.assertEqual(free["best_by"], "r2_val_exact")
        self.assertEqual(self.tasks[self.tasks["model"] == "free_diag"].iloc[0]["best_by"], "r2_val")

    def test_read_matrix_defaults_to_best_lambda(self):
        m = covfit.read_matrices(self.path)
        w = m[(m["task_id"] == 0) & (m["name"] == "W")]
        self.assertGreater(len(w), 1)  # best plus store_lambdas: the default matters
        best = self.tasks.iloc[0]["best_lambda"]
        self.assertNotEqual(w["lambda"].min(), best)  # the old default (smallest) is wrong
        np.testing.assert_array_equal(covfit.read_matrix(self.path, 0, "W"),
                                      covfit.read_matrix(self.path, 0, "W", best))

    def test_matrices_are_plain_datasets(self):
        m = covfit.read_matrices(self.path)
        with h5py.File(self.path, "r") as f:
            self.assertEqual(int(f.attrs["complete"]), 1)
            for (tid, name), g in m.groupby(["task_id", "name"]):
                ds = f[f"sweep/matrices/{tid}/{name}"]
                self.assertEqual(ds.shape, (len(g), int(g["rows"].iloc[0]), int(g["cols"].iloc[0])))
                lams = np.asarray(ds.attrs["lambda"])
                self.assertTrue((np.diff(lams) >= 0).all())
                for i, lam in enumerate(lams):
                    lam_d = ds.attrs["lambda_d"][i]
                    np.testing.assert_array_equal(
                        ds[i], covfit.read_matrix(self.path, tid, name, lam,
                                                  None if np.isnan(lam_d) else lam_d))
                bi = int(ds.attrs["best_index"])
                t = self.tasks[self.tasks["id"] == tid].iloc[0]
                self.assertEqual(lams[bi], t["best_lambda"])
                np.testing.assert_array_equal(ds[bi], covfit.read_matrix(self.path, tid, name))
                np.testing.assert_allclose(np.asarray(ds.attrs["lambda_job"]) * t["lambda_unit"], lams,
                                           rtol=1e-12)

    def test_lambda_in_job_units_and_column_units(self):
        s = self.sweep
        unit = self.tasks.set_index("id")["lambda_unit"]
        self.assertEqual(set(self.tasks["lambda_units"]), {"s_max2"})
        np.testing.assert_allclose(s["lambda_job"] * unit.loc[s["task_id"]].to_numpy(), s["lambda"],
                                   rtol=1e-12)
        np.testing.assert_allclose(sorted(set(s["lambda_job"])),
                                   np.geomspace(s["lambda_job"].min(), s["lambda_job"].max(),
                                                s["lambda_job"].nunique()), rtol=1e-9)
        with h5py.File(self.path, "r") as f:
            for table in ("sweep/tasks", "sweep/lambda", "sweep/folds", "sweep/matrix_index"):
                ds = f[table]
                names = covfit.reader._decode(np.asarray(ds.attrs["column_names"]))
                self.assertEqual(names, list(ds.dtype.names))
                descs = covfit.reader._decode(np.asarray(ds.attrs["column_descriptions"]))
                self.assertTrue(all(descs), (table, names, descs))
            self.assertEqual(covfit.units(f["sweep/lambda"])["lambda"], "S^2")
            self.assertEqual(int(f["sweep/lambda"].attrs["sd_ddof"]), 1)
            self.assertEqual(covfit.units(f["sweep/tasks"])["seconds"], "s")


class FormatOneTest(unittest.TestCase):
    """Files written by covfit before format 2 (tests/data/format1_*.h5) stay readable."""
    FIT = os.path.join(HERE, "data", "format1_fit.h5")
    SWEEP = os.path.join(HERE, "data", "format1_sweep.h5")

    def test_fit(self):
        self.assertEqual(covfit.read_attrs(self.FIT)["format_version"], 1)
        t = covfit.read_tasks(self.FIT)
        self.assertEqual(len(t), 4)
        self.assertTrue(np.isfinite(t["final_loss"]).all())
        self.assertEqual(len(covfit.read_kernels(self.FIT, 0)), 3)

    def test_sweep(self):
        tasks = covfit.read_sweep_tasks(self.SWEEP)
        self.assertEqual(list(tasks["best_by"]), ["r2_val_exact", "r2_val"])
        s = covfit.read_sweep(self.SWEEP)
        np.testing.assert_allclose(sorted(set(s["lambda_job"])), np.geomspace(1e-3, 10, 5), rtol=1e-9)
        b = covfit.best(self.SWEEP)
        np.testing.assert_array_equal(b["lambda"].to_numpy(), tasks["best_lambda"].to_numpy())
        self.assertEqual(covfit.read_matrix(self.SWEEP, 0, "W").shape, (20, 20))

    def test_inspect(self):
        for p, expect in ((self.FIT, "progress   4/4 done"), (self.SWEEP, "r2_val_exact")):
            r = subprocess.run([COVFIT_BIN, "inspect", p], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("v1", r.stdout)
            self.assertIn(expect, r.stdout)

    def test_plots(self):
        from covfit import plot
        d = make_tmpdir("covfit_v1plot_")
        try:
            self.assertEqual(len(plot.plot_all(self.SWEEP, d)), 4)
            data = {}
            # no summary.png: a format 1 file has no stored /fit/summary (never recomputed)
            self.assertEqual(len(plot.plot_all(self.FIT, d, data=data)), 4)
            self.assertIn("predates the stored summary (format 1", data["summary_unavailable"])
        finally:
            shutil.rmtree(d, ignore_errors=True)


class LiveSwmrTest(unittest.TestCase):
    """Read a file with read_tasks while covfit is still writing it."""

    # covfit makes appended rows visible to SWMR readers when it flushes (every 0.25 s
    # here, --flush-every), so a run of a few seconds shows several counts.
    RESTARTS = 4
    # scripts/test --sanitize runs a ~30x slower covfit: fewer steps, a later deadline.
    SCALE = max(1, int(os.environ.get("COVFIT_TEST_TIMEOUT_SCALE", "1")))
    LIVE_SETS = [f"fit.max_steps={3000 // SCALE}", "fit.rel_tol=0", f"grid.restarts={RESTARTS}"]

    def setUp(self):
        self.dir = make_tmpdir("covfit_live_")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_live_read(self):
        path = os.path.join(self.dir, "live.h5")
        proc = subprocess.Popen(covfit_cmd(path, self.LIVE_SETS, threads=1) + ["--flush-every", "0.25"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        counts, times, errors, checked = [], [], [], set()
        start = time.monotonic()
        deadline = start + 90 * self.SCALE
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    t = covfit.read_tasks(path)
                except (OSError, ValueError) as e:  # not created yet / before SWMR starts
                    errors.append(repr(e))
                    time.sleep(0.05)
                    continue
                if proc.poll() is not None:
                    break  # the writer finished: this read does not count as live
                counts.append(len(t))
                times.append(round(time.monotonic() - start, 2))
                if len(t) and len(t) not in checked:
                    checked.add(len(t))
                    self.assertEqual(len(t), t["id"].nunique())
                    self.assertTrue(t["id"].is_monotonic_increasing)
                    check_complete_rows(self, path, t)
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                proc.kill()
            _, err = proc.communicate(timeout=30)
        self.assertEqual(proc.returncode, 0, err)
        nonzero = sorted({c for c in counts if c > 0})
        self.assertGreaterEqual(len(nonzero), 2,
                                f"saw row counts {sorted(set(counts))} while covfit ran "
                                f"(first at {times[:1]} s, last at {times[-1:]} s, exit after "
                                f"{time.monotonic() - start:.1f} s); errors: {errors[:3]}")
        self.assertTrue(all(b >= a for a, b in zip(counts, counts[1:])), counts)
        final = covfit.read_tasks(path)
        total = covfit.read_attrs(path)["tasks_in_file"]
        self.assertEqual(total, 5 * 2 * self.RESTARTS)
        self.assertEqual(len(final), total)
        # (all rows may already be visible while the writer is still closing the file)
        np.testing.assert_array_equal(final["id"].to_numpy(), np.arange(total))
        check_complete_rows(self, path, final)


if __name__ == "__main__":
    unittest.main()
