"""One summary implementation: covfit (C++) computes the per-group summary and stores it in
the complete file (/fit/summary); Python reads it and never computes its own.

- the stored table equals, bit for bit, what `covfit inspect --json` computes live from the
  same task rows, and what the Python reader returns;
- Python returns the stored numbers (a changed stored value comes back changed);
- on a file still being written Python refuses with one line pointing at `covfit inspect`;
- a format 2 file (analysis/tests/data/format2_fit.h5, written by covfit before format 3)
  is explained, and `covfit finalize` stores its summary;
- `covfit merge` stores the merged file's summary;
- re-running the same `covfit run` command on a complete file re-finalises it.
"""

import json
import math
import os
import shutil
import subprocess
import sys
import unittest

import h5py
import numpy as np

import covfit
from covfit import plot

from test_reader import COVFIT_BIN, HERE, SOURCE_DIR, make_tmpdir, small_results  # noqa: F401
from test_reader import tearDownModule  # noqa: F401

ANALYSIS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(covfit.__file__)))
COMPARE_JOB = os.path.join(SOURCE_DIR, "jobs", "compare_parameterisations.toml")
# A smaller compare_parameterisations: 5 params x adam/lm x 2 restarts, with a stop target
# above the tightest level (so level, reached and on_target are all exercised).
COMPARE_SETS = ["grid.restarts=2", "fit.max_steps=400", "fit.target_rel_variance=1e-4"]
COLUMNS = ["data", "param", "optimizer", "K", "tasks", "failed", "on_target", "level", "reached",
           "frac_reached", "best_loss", "median_final_loss", "median_final_rel_loss",
           "median_steps", "median_wall_seconds", "median_seconds_to_level"]
FORMAT2_FIT = os.path.join(HERE, "data", "format2_fit.h5")


def covfit_run(job, out, sets, overwrite=True, extra=()):
    cmd = [COVFIT_BIN, "run", job, "-o", out, "-q", "-t", "2", *extra]
    if overwrite:
        cmd.append("--overwrite")
    for s in sets:
        cmd += ["--set", s]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr}")
    return out


def inspect_json(path):
    r = subprocess.run([COVFIT_BIN, "inspect", "--json", path], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"covfit inspect {path}: {r.stderr}")
    return json.loads(r.stdout)


def strip_summary(src, dst):
    """A copy of `src` as it was before its finalize step wrote the summary."""
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        del f["fit/summary"]
        del f.attrs["complete"]
    return dst


def same_bits(a, b):
    """Equal as stored: ints exactly, floats bit for bit (JSON null = NaN)."""
    if b is None:
        return isinstance(a, float) and math.isnan(a)
    if isinstance(b, str):
        return a == b
    if isinstance(b, float) or isinstance(a, float):
        return np.float64(a).tobytes() == np.float64(b).tobytes()
    return int(a) == int(b)


class StoredSummaryTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = make_tmpdir("covfit_summary_")
        cls.path = covfit_run(COMPARE_JOB, os.path.join(cls.dir, "cmp.h5"), COMPARE_SETS)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def assert_rows_equal(self, df, rows):
        self.assertEqual(len(df), len(rows))
        for (_, r), js in zip(df.iterrows(), rows):
            for c in COLUMNS:
                self.assertTrue(same_bits(r[c], js[c]), (c, r[c], js[c], js["param"], js["optimizer"]))

    def test_file_stores_the_summary(self):
        with h5py.File(self.path, "r") as f:
            self.assertEqual(int(f.attrs["complete"]), 1)
            self.assertEqual(int(f.attrs["format_version"]), covfit.FORMAT_VERSION)
            ds = f["fit/summary"]
            self.assertEqual(list(ds.dtype.names), COLUMNS)
            self.assertEqual(covfit.units(ds)["level"], "values^2")
            self.assertEqual(len(ds), 10)  # 5 params x 2 optimizers, one K, one data set
            self.assertEqual(int(ds["tasks"].sum()), len(f["fit/tasks"]))

    def test_python_equals_cpp_bit_for_bit(self):
        # The C++ function run live on the same task rows (a copy without the stored
        # table: inspect computes it), the stored table, and the Python reader agree.
        live = inspect_json(strip_summary(self.path, os.path.join(self.dir, "live.h5")))
        self.assertEqual(live["summary_source"], "computed")
        stored = inspect_json(self.path)
        self.assertEqual(stored["summary_source"], "stored")
        py = covfit.summary_table(self.path)
        self.assert_rows_equal(py, live["summary"])
        self.assert_rows_equal(py, stored["summary"])
        # The counts mean what they say, on the task rows.
        tasks = covfit.read_tasks(self.path)
        for _, r in py.iterrows():
            g = tasks[(tasks["param"] == r["param"]) & (tasks["optimizer"] == r["optimizer"])]
            self.assertEqual(r["tasks"], len(g))
            self.assertEqual(r["on_target"], int((g["status"] == "reached_target").sum()))
            # stop_loss = 1e-4 x variance (~1.1e-5) > 1e-5: the level is 1e-4, not the tightest
            self.assertGreater(g["stop_loss"].max(), 1e-5)
            self.assertEqual(r["level"], 1e-4)
            col = f"seconds_to_{covfit.level_label(r['level'])}"
            self.assertEqual(r["reached"], int(np.isfinite(g[col]).sum()))
        self.assertGreater(int(py["on_target"].sum()), 0)
        self.assertEqual(py.attrs["tightest_level"], 1e-5)

    def test_python_reads_the_stored_table(self):
        # Change a stored number: the reader returns it (it does not recompute), and so
        # does inspect, which reads the same table.
        p = os.path.join(self.dir, "edited.h5")
        shutil.copyfile(self.path, p)
        with h5py.File(p, "r+") as f:
            rows = f["fit/summary"][()]
            rows["reached"][0] += 1000
            rows["median_final_rel_loss"][0] = 0.125
            f["fit/summary"][...] = rows
        py = covfit.summary_table(p)
        self.assertEqual(py["reached"].iloc[0], covfit.summary_table(self.path)["reached"].iloc[0] + 1000)
        self.assertEqual(py["median_final_rel_loss"].iloc[0], 0.125)
        self.assertEqual(inspect_json(p)["summary"][0]["median_final_rel_loss"], 0.125)

    def test_a_tasks_frame_is_refused(self):
        with self.assertRaisesRegex(TypeError, "pass the results file"):
            covfit.summary_table(covfit.read_tasks(self.path))

    def test_figure_and_cli_use_the_stored_table(self):
        data = {}
        out = os.path.join(self.dir, "plots")
        written = plot.plot_all(self.path, out, data=data)
        self.assertIn(os.path.join(out, "summary.png"), written)
        self.assert_rows_equal(data["summary"], inspect_json(self.path)["summary"])
        env = dict(os.environ, PYTHONPATH=ANALYSIS_DIR)
        r = subprocess.run([sys.executable, "-m", "covfit", self.path], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("median_final_rel_loss", r.stdout)
        self.assertIn("optimizer", r.stdout)  # two optimizers: a key column

    def test_merge_stores_the_summary_of_all_shards(self):
        shards = [covfit_run(COMPARE_JOB, os.path.join(self.dir, f"s{i}.h5"), COMPARE_SETS,
                             extra=["--shard", f"{i}/2"]) for i in range(2)]
        for p in shards:  # each complete shard has its own groups' summary
            self.assertEqual(int(covfit.summary_table(p)["tasks"].sum()), 10)
        merged = os.path.join(self.dir, "merged.h5")
        r = subprocess.run([COVFIT_BIN, "merge", "-o", merged, *shards], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        a, b = covfit.summary_table(merged), covfit.summary_table(self.path)
        self.assertEqual(len(a), 10)
        self.assertEqual(len(a), len(b))
        # The same tasks (numbers depend only on job and task id): equal but for timings.
        for c in COLUMNS:
            if c in ("median_wall_seconds", "median_seconds_to_level"):
                continue
            for x, y in zip(a[c], b[c]):
                self.assertTrue(same_bits(x, y), (c, x, y))

    def test_rerun_of_a_complete_file_refinalises(self):
        # A complete file whose finalize step did not run (here: removed) gets its summary
        # from the same `covfit run` command (a resume with nothing left to compute).
        p = strip_summary(self.path, os.path.join(self.dir, "rerun.h5"))
        with self.assertRaisesRegex(covfit.SummaryUnavailable, "not finalised"):
            covfit.summary_table(p)
        covfit_run(COMPARE_JOB, p, COMPARE_SETS, overwrite=False)
        self.assert_rows_equal(covfit.summary_table(p), inspect_json(self.path)["summary"])


TWO_DATA_JOB = """
name = "two_data"
seed = 3

[[data]]
name = "franke"
source = "franke"
grid = 20

[[data]]
name = "planted"
source = "planted"
points = 400
kernels = 4
seed = 2

[fit]
max_steps = 300
log_every = 20
target_losses = [1e-2, 1e-3]
target_rel_variance = 0.02

[grid]
param = ["full", "isotropic"]
K = [4]
optimizer = ["adam"]
restarts = 2
"""


class TwoDataSetsTest(unittest.TestCase):
    """Groups are per data set: each data set's stop target picks its own level (covfit
    inspect used to pool the data sets of a (param, K, optimizer), so one data set's stop
    target set the other's level, while the Python summary split them)."""

    def setUp(self):
        self.dir = make_tmpdir("covfit_two_")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_level_per_data_set(self):
        job = os.path.join(self.dir, "two.toml")
        with open(job, "w") as fh:
            fh.write(TWO_DATA_JOB)
        p = covfit_run(job, os.path.join(self.dir, "two.h5"), [])
        py = covfit.summary_table(p)
        self.assertEqual(list(zip(py["param"], py["data"])),
                         [("full", "franke"), ("full", "planted"), ("isotropic", "franke"),
                          ("isotropic", "planted")])
        tasks = covfit.read_tasks(p)
        levels = tasks.attrs["target_losses"]
        for _, r in py.iterrows():
            stop = tasks.loc[tasks["data"] == r["data"], "stop_loss"].max()
            self.assertEqual(r["level"], min(v for v in levels if v >= stop))
        self.assertEqual(set(py["level"]), {1e-2, 1e-3})  # franke's stop is above 1e-3
        live = inspect_json(strip_summary(p, os.path.join(self.dir, "live.h5")))
        self.assertEqual(len(live["summary"]), len(py))
        for (_, r), js in zip(py.iterrows(), live["summary"]):
            for c in COLUMNS:
                self.assertTrue(same_bits(r[c], js[c]), (c, r[c], js[c]))
        text = subprocess.run([COVFIT_BIN, "inspect", p], stdout=subprocess.PIPE, text=True,
                              timeout=60).stdout
        self.assertIn("data", text.split("By parameterisation:")[1].splitlines()[1])


class IncompleteFileTest(unittest.TestCase):
    def setUp(self):
        self.dir = make_tmpdir("covfit_incomplete_")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_refused_with_one_line(self):
        p = covfit_run(COMPARE_JOB, os.path.join(self.dir, "part.h5"), COMPARE_SETS,
                       extra=["--max-tasks", "3"])
        self.assertEqual(len(covfit.read_tasks(p)), 3)
        with self.assertRaises(covfit.SummaryUnavailable) as cm:
            covfit.summary_table(p)
        msg = str(cm.exception)
        self.assertIsInstance(cm.exception, ValueError)
        self.assertEqual(len(msg.splitlines()), 1, msg)
        self.assertIn("file incomplete: 3 of 20 tasks", msg)
        self.assertIn(f"covfit inspect {p}", msg)
        # inspect shows the live summary (computed by the same C++ code)
        live = inspect_json(p)
        self.assertEqual(live["summary_source"], "computed")
        self.assertEqual(sum(r["tasks"] for r in live["summary"]), 3)
        # python3 -m covfit prints the reason; the figures skip summary.png and say why
        env = dict(os.environ, PYTHONPATH=ANALYSIS_DIR)
        r = subprocess.run([sys.executable, "-m", "covfit", p], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("summary: " + msg, r.stdout)
        self.assertNotIn("median_final_rel_loss", r.stdout)
        r = subprocess.run([sys.executable, "-m", "covfit.plot", p, "-o", os.path.join(self.dir, "o")],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("summary.png", r.stdout)
        self.assertIn("summary.png not written: " + msg, r.stderr)
        # and covfit finalize refuses to finalise it
        r = subprocess.run([COVFIT_BIN, "finalize", p], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=60)
        self.assertEqual(r.returncode, 2)
        self.assertIn("is incomplete: 3 of 20 tasks", r.stderr)


class FormatTwoTest(unittest.TestCase):
    """A format 2 file (written by covfit before /fit/summary existed) stays readable; its
    summary is explained, not computed, and `covfit finalize` stores it."""

    def setUp(self):
        self.dir = make_tmpdir("covfit_v2_")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_explained_then_finalised(self):
        self.assertEqual(covfit.read_attrs(FORMAT2_FIT)["format_version"], 2)
        self.assertEqual(len(covfit.read_tasks(FORMAT2_FIT)), 4)
        with self.assertRaises(covfit.SummaryUnavailable) as cm:
            covfit.summary_table(FORMAT2_FIT)
        msg = str(cm.exception)
        self.assertIn("predates the stored summary (format 2", msg)
        self.assertIn("covfit finalize", msg)
        data = {}
        written = plot.plot_all(FORMAT2_FIT, os.path.join(self.dir, "plots"), data=data)
        self.assertEqual(len(written), 4)  # no summary.png
        self.assertIn("predates", data["summary_unavailable"])
        live = inspect_json(FORMAT2_FIT)  # inspect computes it for any version
        self.assertEqual(live["summary_source"], "computed")
        p = os.path.join(self.dir, "v2.h5")
        shutil.copyfile(FORMAT2_FIT, p)
        r = subprocess.run([COVFIT_BIN, "finalize", p], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"format 2 -> {covfit.FORMAT_VERSION}", r.stdout)
        attrs = covfit.read_attrs(p)
        self.assertEqual(attrs["format_version"], covfit.FORMAT_VERSION)
        self.assertEqual(len(attrs["writers"]), len(covfit.read_attrs(FORMAT2_FIT)["writers"]) + 1)
        self.assertIn("covfit finalize", attrs["writers"][-1])
        py = covfit.summary_table(p)
        self.assertEqual(len(py), len(live["summary"]))
        for (_, r), js in zip(py.iterrows(), live["summary"]):
            for c in COLUMNS:
                self.assertTrue(same_bits(r[c], js[c]), (c, r[c], js[c]))
        # a second finalize is a no-op for the numbers
        r = subprocess.run([COVFIT_BIN, "finalize", p], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("->", r.stdout)
        self.assertEqual(covfit.summary_table(p)["reached"].tolist(), py["reached"].tolist())
        # the tasks are untouched
        with h5py.File(FORMAT2_FIT, "r") as a, h5py.File(p, "r") as b:
            self.assertEqual(a["fit/tasks"][()].tobytes(), b["fit/tasks"][()].tobytes())
            self.assertEqual(a["fit/curves"][()].tobytes(), b["fit/curves"][()].tobytes())


    def test_finalize_refuses_what_it_cannot_bring_forward(self):
        fmt1 = os.path.join(HERE, "data", "format1_fit.h5")
        p = os.path.join(self.dir, "v1.h5")
        shutil.copyfile(fmt1, p)
        with open(p, "rb") as fh:
            before = fh.read()
        r = subprocess.run([COVFIT_BIN, "finalize", p], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=60)
        self.assertEqual(r.returncode, 2)
        self.assertIn("format version 1", r.stderr)
        with open(p, "rb") as fh:
            self.assertEqual(fh.read(), before)
        with self.assertRaisesRegex(covfit.SummaryUnavailable, "format 1.*re-run the job"):
            covfit.summary_table(p)
        r = subprocess.run([COVFIT_BIN, "finalize", os.path.join(self.dir, "missing.h5")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
        self.assertEqual(r.returncode, 2)


if __name__ == "__main__":
    unittest.main()
