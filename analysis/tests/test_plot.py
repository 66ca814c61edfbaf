"""Tests of analysis/covfit/plot.py: files written, and the plotted numbers come from the file."""

import os
import shutil
import subprocess
import sys
import unittest

import json

import h5py
import numpy as np

import covfit
from covfit import plot

from test_reader import (  # noqa: F401
    COVFIT_BIN, KS, PARAMS, SOURCE_DIR, make_tmpdir, small_results, small_sweep, tearDownModule,
)

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
        names = ["loss_vs_steps.png", "loss_vs_seconds.png", "best_fit.png", "time_to_target.png",
                 "summary.png"]
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
            self.assertEqual(r["level"], 1e-3)  # no stop target: the tightest level
            self.assertAlmostEqual(r["frac_reached"], float((g["steps_to_1e-03"] >= 0).mean()))

    def test_time_to_target_from_file(self):
        t = self.tasks
        ttt = self.data["time_to_target"]
        for (level, param, K), (times, frac) in ttt.items():
            g = t[(t["param"] == param) & (t["K"] == K)]
            col = g[f"seconds_to_{covfit.level_label(level)}"]
            np.testing.assert_array_equal(times, np.sort(col[np.isfinite(col)].to_numpy()))
            if len(frac):
                self.assertAlmostEqual(frac[-1], float(np.isfinite(col).mean()))

    def test_one_panel_per_parameterisation_and_K(self):
        layout = self.data["loss_vs_steps_layout"]
        self.assertEqual(sorted(layout["panels"]), sorted((p, K) for p in PARAMS for K in KS))


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
        self.assertEqual(names, ["sweep_r2.png", "sweep_linearisation.png", "sweep_w_hist.png",
                                 "sweep_diag.png"])
        dm = data["diag_model"]
        np.testing.assert_array_equal(dm["d"], covfit.read_matrix(p, dm["task_id"], "d").ravel())
        for w in written:
            assert_png(self, w)
        # The plotted curve is the file's: free model of data set "planted".
        s = covfit.read_sweep(p)
        g = s[s["model"] == "free"].sort_values("lambda")
        lam, r2 = data["sweep"][("planted", "free")]
        np.testing.assert_array_equal(lam, g["lambda"].to_numpy())
        np.testing.assert_array_equal(r2, g["r2_val"].to_numpy())
        # Exactly one best point per task, at the file's best lambda (not the argmax of
        # r2_val, and not one per lambda_d curve), with the value of the column that chose it.
        tasks = covfit.read_sweep_tasks(p)
        self.assertEqual(set(data["sweep_best"]), {("planted", "free"), ("planted", "free_diag")})
        for _, t in tasks.iterrows():
            lam, lam_d, val = data["sweep_best"][(t["data"], t["model"])]
            self.assertEqual(lam, t["best_lambda"])
            np.testing.assert_equal(lam_d, t["best_lambda_d"])
            self.assertEqual(val, t["best_r2_val"])
        # The W histogram is of W at the best lambda (it used to take the first stored W).
        w = data["w_hist"]
        self.assertEqual(w["lambda"], tasks.set_index("id").loc[w["task_id"], "best_lambda"])
        self.assertTrue(w["W0"])  # planted data: W against W0
        # Equation-1 pairs come from the stored matrices.
        lin = data["linearisation"]
        a, b = lin[lin["lambdas"][0]]
        np.testing.assert_array_equal(a, covfit.read_matrix(p, lin["task_id"], "eq1_lhs", lin["lambdas"][0]).ravel())
        self.assertEqual(len(data["w_hist"]["diag"]), 40)

class ComparisonAndSummaryTest(unittest.TestCase):
    """The figures of a comparison job: LM next to Adam gets a log step axis; the success
    panel counts what covfit inspect counts."""

    @classmethod
    def setUpClass(cls):
        cls.dir = make_tmpdir("covfit_cmp_")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_lm_and_adam_get_a_log_step_axis(self):
        from test_reader import run_covfit
        p = run_covfit(os.path.join(self.dir, "cmp.h5"), [
            "grid.K=[3]", 'grid.param=["full","cholesky"]', 'grid.optimizer=["adam","lm"]',
            "fit.max_steps=300", "data.grid=20", "fit.log_every=10"])
        data = {}
        plot.plot_all(p, os.path.join(self.dir, "out"), data=data)
        self.assertTrue(data["loss_vs_steps_layout"]["log_x"])
        self.assertEqual(sorted(data["loss_vs_steps_layout"]["panels"]), [("cholesky", 3), ("full", 3)])

    def test_success_panel_counts_what_inspect_counts(self):
        # planted_cholesky stops at target_rel_variance (1.8e-5 here) above the tightest
        # level (1e-5): the panel used to show 0/N reached while inspect counted the
        # restarts that stopped on target.
        p = os.path.join(self.dir, "pc.h5")
        job = os.path.join(SOURCE_DIR, "jobs", "planted_cholesky.toml")
        subprocess.run([COVFIT_BIN, "run", job, "-o", p, "-q", "--set", "grid.restarts=4"],
                       check=True, stdout=subprocess.DEVNULL, timeout=300)
        tasks = covfit.read_tasks(p)
        data = {}
        plot.plot_all(p, os.path.join(self.dir, "pc_out"), data=data)
        summary = data["summary"]  # what the panel drew: the file's /fit/summary
        j = json.loads(subprocess.run([COVFIT_BIN, "inspect", "--json", p], check=True,
                                      stdout=subprocess.PIPE, text=True).stdout)
        self.assertEqual(len(j["summary"]), len(summary))
        for (_, r), js in zip(summary.iterrows(), j["summary"]):
            self.assertEqual((r["param"], r["K"]), (js["param"], js["K"]))
            self.assertEqual(r["level"], js["level"])
            self.assertEqual(r["reached"], js["reached"])
            self.assertEqual(r["on_target"], js["on_target"])
            self.assertEqual(r["on_target"], int((tasks["status"] == "reached_target").sum()))
            self.assertEqual(r["level"], 1e-4)  # not 1e-5, which no task can reach
            self.assertGreaterEqual(r["reached"], r["on_target"])
            self.assertGreater(r["on_target"], 0)


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
        self.assertEqual(len(lines), 5)
        for p in lines:
            self.assertTrue(p.startswith(out))
            assert_png(self, p)

    def test_summary_cli_for_fits_and_sweeps(self):
        env = dict(os.environ, PYTHONPATH=ANALYSIS_DIR)
        for path, expect in ((small_results(), "median_final_rel_loss"), (small_sweep(self.dir), "best_r2_val")):
            r = subprocess.run([sys.executable, "-m", "covfit", path], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(expect, r.stdout)

    def test_missing_h5py_is_one_line(self):
        fake = os.path.join(self.dir, "fake")
        os.makedirs(os.path.join(fake, "h5py"))
        with open(os.path.join(fake, "h5py", "__init__.py"), "w") as fh:
            fh.write("raise ModuleNotFoundError(\"No module named 'h5py'\", name='h5py')\n")
        env = dict(os.environ, PYTHONPATH=fake + os.pathsep + ANALYSIS_DIR)
        for mod in ("covfit", "covfit.plot"):
            r = subprocess.run([sys.executable, "-m", mod, "x.h5"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, timeout=60)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertNotIn("Traceback", r.stderr)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
            self.assertIn("needs h5py", r.stderr)
            self.assertIn("pip install ./analysis", r.stderr)

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
