"""Tests of analysis/covfit/plot.py: files written, and the plotted numbers come from the file."""

import os
import shutil
import subprocess
import sys
import unittest

import h5py
import numpy as np

import covfit
from covfit import plot

from test_reader import PARAMS, KS, make_tmpdir, small_results, small_sweep, tearDownModule  # noqa: F401

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ANALYSIS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(covfit.__file__)))


def direct_median(curves, param, K, x, grid):
    """Median over the tasks of (param, K) of the last loss at or before each grid point,
    computed row by row (independently of plot.loss_bands)."""
    per_task = []
    for tid in sorted(set(curves.loc[(curves["param"] == param) & (curves["K"] == K),
                                     "task_id"])):
        c = curves[curves["task_id"] == tid]
        xs, losses = list(c[x]), list(c["loss"])
        vals = []
        for g in grid:
            v = losses[0]
            for xi, li in zip(xs, losses):
                if xi <= g:
                    v = li
            vals.append(v)
        per_task.append(vals)
    return np.median(np.array(per_task), axis=0), len(per_task)


def assert_png(testcase, path):
    testcase.assertTrue(os.path.isfile(path), path)
    testcase.assertGreater(os.path.getsize(path), 1000, path)
    with open(path, "rb") as fh:
        testcase.assertEqual(fh.read(8), PNG_SIGNATURE, path)


class PlotAllTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.path = small_results()
        cls.out = make_tmpdir("covfit_plots_")
        cls.data = {}
        cls.written = plot.plot_all(cls.path, cls.out, data=cls.data)
        cls.tasks = covfit.read_tasks(cls.path)
        cls.curves = covfit.read_curves(cls.path)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.out, ignore_errors=True)

    def test_pngs_written(self):
        names = ["loss_vs_steps.png", "loss_vs_seconds.png", "best_fit.png", "summary.png"]
        self.assertEqual(self.written, [os.path.join(self.out, n) for n in names])
        for p in self.written:
            assert_png(self, p)
        self.assertFalse(os.path.exists(os.path.join(self.out, "sweep_r2.png")))

    def test_loss_vs_steps_median_from_file(self):
        bands = self.data["loss_vs_steps"]
        self.assertEqual(set(bands), {(p, k) for p in PARAMS for k in KS})
        grid = np.unique(self.curves["step"])
        for param, K in (("full", 3), ("cholesky", 5)):
            b = bands[(param, K)]
            np.testing.assert_array_equal(b["x"], grid)
            med, n = direct_median(self.curves, param, K, "step", grid)
            self.assertEqual(b["n"], n)
            self.assertEqual(n, 2)
            np.testing.assert_allclose(b["median"], med, rtol=1e-12)
            self.assertTrue((b["q25"] <= b["median"]).all() and (b["median"] <= b["q75"]).all())

    def test_loss_vs_seconds_median_from_file(self):
        b = self.data["loss_vs_seconds"][("isotropic", 3)]
        grid = np.linspace(0, self.curves["seconds"].max(), 200)
        np.testing.assert_allclose(b["x"], grid)
        med, _ = direct_median(self.curves, "isotropic", 3, "seconds", grid)
        np.testing.assert_allclose(b["median"], med, rtol=1e-12)

    def test_best_fit_is_best_task(self):
        best = self.data["best_fit"]
        t = self.tasks
        self.assertEqual(best["task_id"], int(t.loc[t["final_loss"].idxmin(), "id"]))
        self.assertEqual(best["final_loss"], t["final_loss"].min())
        self.assertLess(abs(best["mse"] / best["final_loss"] - 1), 1e-6)

    def test_summary_from_file(self):
        s = self.data["summary"]
        t = self.tasks
        self.assertEqual(len(s), len(PARAMS) * len(KS))
        self.assertEqual(s.attrs["tightest_level"], 1e-3)
        for _, r in s.iterrows():
            g = t[(t["param"] == r["param"]) & (t["K"] == r["K"])]
            self.assertEqual(r["tasks"], len(g))
            self.assertAlmostEqual(r["median_final_rel_loss"], float(np.median(g["final_rel_loss"])))
            self.assertAlmostEqual(r["frac_reached"], float((g["steps_to_1e-03"] >= 0).mean()))


class SweepPlotTest(unittest.TestCase):
    def setUp(self):
        self.dir = make_tmpdir("covfit_sweepplot_")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_sweep_plot(self):
        p = small_sweep(self.dir)
        data = {}
        written = plot.plot_all(p, os.path.join(self.dir, "out"), data=data)
        names = [os.path.basename(w) for w in written]
        self.assertEqual(names, ["sweep_r2.png", "sweep_linearisation.png", "sweep_w_hist.png"])
        for w in written:
            assert_png(self, w)
        # The plotted curve is the file's: free model of data set "planted".
        s = covfit.read_sweep(p)
        g = s[s["model"] == "free"].sort_values("lambda")
        lam, r2 = data["sweep"][("planted", "free")]
        np.testing.assert_array_equal(lam, g["lambda"].to_numpy())
        np.testing.assert_array_equal(r2, g["r2_val"].to_numpy())
        # Equation-1 pairs come from the stored matrices.
        lin = data["linearisation"]
        a, b = lin[lin["lambdas"][0]]
        np.testing.assert_array_equal(a, covfit.read_matrix(p, lin["task_id"], "eq1_lhs", lin["lambdas"][0]).ravel())
        self.assertEqual(len(data["w_hist"]["diag"]), 40)

class CliTest(unittest.TestCase):
    def setUp(self):
        self.dir = make_tmpdir("covfit_cli_")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def run_cli(self, *args):
        env = dict(os.environ, PYTHONPATH=ANALYSIS_DIR)
        return subprocess.run([sys.executable, "-m", "covfit.plot", *args], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=120)

    def test_cli_writes_and_prints_paths(self):
        out = os.path.join(self.dir, "plots")
        r = self.run_cli(small_results(), "-o", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.split()
        self.assertEqual(len(lines), 4)
        for p in lines:
            self.assertTrue(p.startswith(out))
            assert_png(self, p)

    def test_summary_cli_for_fits_and_sweeps(self):
        env = dict(os.environ, PYTHONPATH=ANALYSIS_DIR)
        for path, expect in ((small_results(), "median_rel"), (small_sweep(self.dir), "best_r2_val")):
            r = subprocess.run([sys.executable, "-m", "covfit", path], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(expect, r.stdout)

    def test_cli_missing_file(self):
        r = self.run_cli(os.path.join(self.dir, "missing.h5"), "-o", self.dir)
        self.assertEqual(r.returncode, 2)
        self.assertIn("no such file", r.stderr)

    def test_cli_not_covfit(self):
        p = os.path.join(self.dir, "other.h5")
        with h5py.File(p, "w") as f:
            f.attrs["format"] = "something"
        r = self.run_cli(p, "-o", self.dir)
        self.assertEqual(r.returncode, 2)
        self.assertIn("not a covfit results file", r.stderr)
        self.assertNotIn("Traceback", r.stderr)


if __name__ == "__main__":
    unittest.main()
