"""Readers for covfit results files (format ``covfit-results``, versions 1 to 4).

See docs/FORMAT.md for the contract.  Every ``read_*`` function accepts either a path or an
already opened :class:`h5py.File` (as returned by :func:`open_results`); when given a path
the file is opened and closed by the call.

Files may be read while ``covfit run`` is still writing them (HDF5 SWMR): datasets are
refreshed and only task rows whose rows in the other tables are present are returned.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os

try:
    import h5py
    import numpy as np
    import pandas as pd
except ModuleNotFoundError as _e:  # one line, not a traceback into h5py's absence
    raise ModuleNotFoundError(
        f"covfit's reader needs h5py, numpy and pandas ({_e.name} is missing): "
        f"pip install ./analysis (in a venv), or apt-get install python3-h5py python3-pandas"
    ) from None

FORMAT_NAME = "covfit-results"
FORMAT_VERSION = 4                # newest version this reader understands
READABLE_VERSIONS = (1, 2, 3, 4)  # older files stay readable
SUMMARY_SINCE = 3              # first format version with a stored /fit/summary
# sha256 of the table/column structure (paths, names, dtypes, string sizes) per format
# version: a column change without a version bump fails analysis/tests/test_schema.py.
SCHEMA_DIGESTS = {
    2: "f56b2a1b61d88ee8925c50299dde48572ef05883df0119b7e6fc9481eb437af9",
    3: "ed65ff0b860bd8bfc6a69fc749e77c931312d017704689be67518f0e26e42fd5",
    4: "eb247c03effe543308de425ea89090aa675e44ac01edb2ac08bbf19b5e8c6952",
}
STATUSES = ("converged", "reached_target", "max_steps", "diverged", "failed")

__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "STATUSES", "open_results", "table", "read_attrs",
    "read_tasks", "read_curves", "read_kernels", "read_data", "predict", "read_sweep", "read_sweep_units",
    "read_sweep_tasks", "read_folds", "read_matrices", "read_matrix", "best", "units",
    "level_label", "target_levels", "schema", "schema_digest",
    "read_summary", "SummaryUnavailable",
]


# ----------------------------------------------------------------------------- schema

def schema():
    """The format's schema (``covfit schema``, shipped as covfit/schema.json): tables with
    their columns' names, dtypes, units and descriptions."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema.json")) as fh:
        return json.load(fh)


def schema_digest(s):
    """sha256 of a schema's structure (not its prose): see SCHEMA_DIGESTS."""
    shape = [[t["path"], [[c["name"], c["dtype"], c.get("bytes"), "shape" in c] for c in t["columns"]]]
             for t in s["tables"]]
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()


# ----------------------------------------------------------------------------- helpers

def _decode(value):
    """bytes / numpy bytes (NUL padded UTF-8) -> str; arrays of bytes -> list of str."""
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).rstrip(b"\0").decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.dtype.kind == "S":
        return [_decode(v) for v in value.tolist()]
    if isinstance(value, np.ndarray) and value.dtype.kind == "O":
        return [_decode(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _check_format(f, path):
    fmt = _decode(f.attrs.get("format", b""))
    if fmt != FORMAT_NAME:
        raise ValueError(f"{path}: not a covfit results file (format attribute is {fmt!r}, "
                         f"expected {FORMAT_NAME!r})")
    try:
        version = int(f.attrs["format_version"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path}: covfit results file without a valid format_version") from None
    if version > FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {version} is newer than this reader "
                         f"supports ({FORMAT_VERSION}); update analysis/covfit")
    if version not in READABLE_VERSIONS:
        raise ValueError(f"{path}: format_version {version} is not readable by this reader "
                         f"(reads {READABLE_VERSIONS})")


def open_results(path):
    """Open a covfit results file read-only (SWMR if possible) and check its format.

    Raises FileNotFoundError for a missing path and ValueError for a file that is not a
    covfit results file (not HDF5, wrong ``format`` attribute, or a newer format_version).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise ValueError(f"{path}: not an HDF5 file, so not a covfit results file")
    try:
        f = h5py.File(path, "r", libver="latest", swmr=True)
    except OSError:
        f = h5py.File(path, "r")
    try:
        _check_format(f, path)
    except BaseException:
        f.close()
        raise
    return f


@contextlib.contextmanager
def _opened(source):
    if isinstance(source, h5py.File):
        yield source
    else:
        f = open_results(source)
        try:
            yield f
        finally:
            f.close()


def _refresh(ds):
    """Refresh a dataset's metadata when the file is open in SWMR read mode."""
    try:
        if ds.file.swmr_mode:
            ds.refresh()
    except (AttributeError, OSError, ValueError):
        pass
    return ds


def _frame(arr, array_columns=None):
    """Structured numpy array -> DataFrame; strings decoded, sub-array fields split.

    ``array_columns`` maps a sub-array field name to a list of column names; other
    sub-array fields become ``<name>_<i>`` columns.
    """
    array_columns = array_columns or {}
    cols = {}
    if arr.dtype.names is None:  # plain dataset: one column named "value"
        return pd.DataFrame({"value": np.asarray(arr)})
    for name in arr.dtype.names:
        col = arr[name]
        if col.dtype.kind == "S":
            cols[name] = np.array(_decode(col), dtype=object) if len(col) else \
                np.array([], dtype=object)
        elif col.ndim > 1:
            flat = col.reshape(len(col), int(np.prod(col.shape[1:])))
            names = array_columns.get(name) or [f"{name}_{i}" for i in range(flat.shape[1])]
            for i, cname in enumerate(names):
                cols[cname] = flat[:, i]
        else:
            cols[name] = col
    return pd.DataFrame(cols)


def table(ds, rows=None, array_columns=None):
    """Decode a (compound) HDF5 dataset into a DataFrame.

    Fixed-length strings become ``str``; fields holding arrays are split into one column
    per element (``<name>_<i>`` unless ``array_columns`` gives names). ``rows`` is an
    optional slice or index array to read only part of the dataset.
    """
    _refresh(ds)
    if rows is None:
        arr = ds[()] if ds.shape != () else np.asarray([ds[()]])
    elif isinstance(rows, slice):
        arr = ds[rows]
    else:
        rows = np.asarray(rows, dtype=np.int64)
        arr = ds[()][rows] if len(rows) else ds[0:0]
    return _frame(np.asarray(arr), array_columns)


def level_label(level):
    """Format a target level like the column suffix: 1e-04, 3e-05, 2.5e-04."""
    for prec in range(0, 16):
        s = f"{level:.{prec}e}"
        if float(s) == float(level):
            return s
    return repr(float(level))


def target_levels(source):
    """The target_losses levels of /fit/tasks (float array, possibly empty)."""
    with _opened(source) as f:
        if "fit/tasks" not in f:
            return np.zeros(0)
        return np.atleast_1d(np.asarray(f["fit/tasks"].attrs.get("target_losses", []),
                                        dtype=float))


# ----------------------------------------------------------------------------- readers

def read_attrs(source):
    """Root attributes as a dict of Python values (strings decoded)."""
    with _opened(source) as f:
        return {k: _decode(v) for k, v in f.attrs.items()}


def _task_array(f):
    """Structured array of the complete task rows, sorted by id (SWMR safe)."""
    if "fit/tasks" not in f:
        raise ValueError(f"{f.filename}: no /fit/tasks table")
    ds = _refresh(f["fit/tasks"])
    # Refresh the other tables after the commit record: they are then at least as new.
    sizes = {}
    for name in ("curves", "kernels", "raw"):
        if f"fit/{name}" in f:
            sizes[name] = _refresh(f[f"fit/{name}"]).shape[0]
    arr = ds[()]
    if len(arr) == 0:
        return arr
    ok = np.ones(len(arr), dtype=bool)
    ok &= np.array([len(s.rstrip(b"\0")) > 0 for s in arr["status"]], dtype=bool)
    if "curves" in sizes:
        ok &= (arr["curve_offset"] >= 0) & \
              (arr["curve_offset"] + arr["curve_len"] <= sizes["curves"])
    if "kernels" in sizes:
        ok &= (arr["kernel_offset"] >= 0) & (arr["kernel_offset"] + arr["K"] <= sizes["kernels"])
    if "raw" in sizes:
        ok &= (arr["raw_offset"] >= 0) & (arr["raw_offset"] + arr["raw_len"] <= sizes["raw"])
    arr = arr[ok]
    return arr[np.argsort(arr["id"], kind="stable")]


def _tasks_frame(f, arr):
    levels = np.atleast_1d(np.asarray(f["fit/tasks"].attrs.get("target_losses", []),
                                      dtype=float))
    labels = [level_label(v) for v in levels]
    names = {}
    if arr.dtype.names and "steps_to_target" in arr.dtype.names:
        names["steps_to_target"] = [f"steps_to_{s}" for s in labels]
        names["seconds_to_target"] = [f"seconds_to_{s}" for s in labels]
    df = _frame(arr, names)
    df.attrs["target_losses"] = [float(v) for v in levels]
    return df.reset_index(drop=True)


def read_tasks(source):
    """One row per finished task, sorted by id.

    ``steps_to_target`` / ``seconds_to_target`` are split into ``steps_to_<level>`` /
    ``seconds_to_<level>`` columns (level formatted like ``1e-04``); the levels are also in
    ``df.attrs["target_losses"]``. On a file being written only complete rows are returned.
    """
    with _opened(source) as f:
        return _tasks_frame(f, _task_array(f))


class SummaryUnavailable(ValueError):
    """The file has no stored summary (/fit/summary) to read: a run in progress, a run
    that ended before it was finalised, or a file written before format 3. The message
    (one line) says which and what to do; the reader never computes a summary itself."""


def read_summary(source):
    """The per-group summary covfit stored in ``/fit/summary`` when the file was complete:
    one row per (data, param, optimizer, K), columns as in docs/FORMAT.md (``tasks``,
    ``failed``, ``on_target``, ``level``, ``reached``, ``frac_reached``, ``best_loss``,
    ``median_final_rel_loss``, ...). These are the numbers ``covfit inspect`` prints: C++
    computes them (one implementation); this only reads them. ``df.attrs["target_losses"]``
    holds the job's levels.

    Raises :class:`SummaryUnavailable` (a ValueError with a one-line explanation) when the
    file has none: incomplete (``covfit inspect FILE`` shows the live summary), not
    finalised, or older than format 3."""
    with _opened(source) as f:
        path = f.filename
        if "fit/tasks" not in f:
            raise ValueError(f"{path}: no /fit/tasks table (not a fit job's results)")
        levels = [float(v) for v in np.atleast_1d(np.asarray(
            f["fit/tasks"].attrs.get("target_losses", []), dtype=float))]
        complete = int(_decode(f.attrs.get("complete", 0)) or 0) == 1
        if complete and "fit/summary" in f:
            df = table(f["fit/summary"])
            df.attrs["target_losses"] = levels
            return df
        version = int(f.attrs["format_version"])
        if version < SUMMARY_SINCE:
            store = (f"`covfit finalize {path}` stores it in the file" if version == 2 else
                     "re-run the job to get a file that stores it")
            raise SummaryUnavailable(
                f"{path}: the file predates the stored summary (format {version}; covfit "
                f"stores /fit/summary from format {SUMMARY_SINCE} on): `covfit inspect {path}` "
                f"prints it; {store}")
        done = len(_task_array(f))
        total = int(_decode(f.attrs.get("tasks_in_file", 0)))
        if done < total:
            raise SummaryUnavailable(
                f"{path}: file incomplete: {done} of {total} tasks; the summary is written "
                f"when the run completes - `covfit inspect {path}` shows the live one")
        raise SummaryUnavailable(
            f"{path}: all {done} tasks are in, but the file was not finalised (no "
            f"/fit/summary): `covfit finalize {path}` (or the same `covfit run` command "
            f"again) writes it; `covfit inspect {path}` shows the summary")


def _ranges(offsets, lengths):
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if len(offsets) == 0 or lengths.sum() == 0:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.arange(o, o + n, dtype=np.int64)
                           for o, n in zip(offsets, lengths)])


def read_curves(source, task_id=None):
    """Monitor rows of one task (or all tasks if ``task_id`` is None).

    Rows are selected through ``curve_offset``/``curve_len`` of the task rows (rows no task
    points to are never returned) and get ``data``, ``param``, ``K``, ``optimizer`` and
    ``restart`` of their task joined in. Ordered by task id, then by row order.
    """
    with _opened(source) as f:
        tasks = _task_array(f)
        if task_id is not None:
            tasks = tasks[tasks["id"] == int(task_id)]
            if len(tasks) == 0:
                raise KeyError(f"{f.filename}: no finished task with id {task_id}")
        ds = f["fit/curves"]
        idx = _ranges(tasks["curve_offset"], tasks["curve_len"])
        if task_id is not None and len(idx):
            arr = ds[int(idx[0]):int(idx[-1]) + 1]
        elif len(idx):
            arr = ds[()][idx]
        else:
            arr = ds[0:0]
        df = _frame(np.asarray(arr))
        owner = np.repeat(tasks["id"], tasks["curve_len"])
        if len(df) and not np.array_equal(df["task_id"].to_numpy(), owner):
            bad = int(np.flatnonzero(df["task_id"].to_numpy() != owner)[0])
            raise ValueError(f"{f.filename}: /fit/curves row {int(idx[bad])} belongs to task "
                             f"{int(df['task_id'].iloc[bad])}, but task {int(owner[bad])}'s "
                             f"curve_offset/curve_len point to it")
        meta = _frame(tasks[["id", "data", "param", "K", "optimizer", "restart"]])
        meta = meta.rename(columns={"id": "task_id"})
        return df.merge(meta, on="task_id", how="left", sort=False).reset_index(drop=True)


def read_kernels(source, task_id):
    """Final kernels of a task: columns k, mu_x, mu_y, P11, P12, P22, w (K rows)."""
    with _opened(source) as f:
        tasks = _task_array(f)
        row = tasks[tasks["id"] == int(task_id)]
        if len(row) == 0:
            raise KeyError(f"{f.filename}: no finished task with id {task_id}")
        off, k = int(row["kernel_offset"][0]), int(row["K"][0])
        df = _frame(np.asarray(f["fit/kernels"][off:off + k]))
        if len(df) != k or not (df["task_id"] == int(task_id)).all():
            raise ValueError(f"{f.filename}: /fit/kernels rows [{off}, {off + k}) do not "
                             f"belong to task {task_id}")
        return df[["k", "mu_x", "mu_y", "P11", "P12", "P22", "w"]].reset_index(drop=True)


def read_data(source, name=None):
    """Input data set ``/data/<name>`` as a dict of numpy arrays ``x``, ``y``, ``values``.

    Also holds ``planted_kernels`` if present and ``variance`` (float) if the attribute
    exists. ``name`` may be omitted when the file holds exactly one data set.
    """
    with _opened(source) as f:
        if "data" not in f:
            raise ValueError(f"{f.filename}: no /data group")
        names = list(f["data"].keys())
        if name is None:
            if len(names) != 1:
                raise ValueError(f"{f.filename}: several data sets {names}; pass a name")
            name = names[0]
        if name not in f["data"]:
            raise KeyError(f"{f.filename}: no data set {name!r} (have {names})")
        g = f["data"][name]
        out = {k: np.asarray(g[k][()]) for k in ("x", "y", "values")}
        if "planted_kernels" in g:
            out["planted_kernels"] = np.asarray(g["planted_kernels"][()])
        if "variance" in g.attrs:
            out["variance"] = float(g.attrs["variance"])
        return out


def predict(kernels, x, y):
    """Evaluate f(x) = sum_k w_k exp(-1/2 d^T P_k d), d = (x - mu_x_k, y - mu_y_k)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    shape = np.broadcast(x, y).shape
    x, y = np.broadcast_to(x, shape).ravel(), np.broadcast_to(y, shape).ravel()
    col = lambda c: np.asarray(kernels[c], dtype=float)[None, :]  # noqa: E731
    dx = x[:, None] - col("mu_x")
    dy = y[:, None] - col("mu_y")
    q = col("P11") * dx * dx + 2.0 * col("P12") * dx * dy + col("P22") * dy * dy
    return (np.exp(-0.5 * q) @ np.asarray(kernels["w"], dtype=float)).reshape(shape)


def _index_name(f):
    """The matrix index table: /sweep/matrix_index (format 2) or /sweep/matrices (format 1)."""
    return "matrix_index" if "matrix_index" in f["sweep"] else "matrices"


def _sweep_commits(f):
    """Committed sweep task rows (complete: every dependent range present).

    Format 1 files lack ``best_by``, ``lambda_units`` and ``lambda_unit``: they are filled
    in from what format 1 documented (best by the exact solution's R^2 where computed)."""
    if "sweep" not in f or "tasks" not in f["sweep"]:
        if "sweep_units" in f:  # format 3: the summary is written when every unit is done
            done = _refresh(f["sweep_units/units"]).shape[0]
            total = int(f.attrs.get("tasks_in_file", 0))
            raise ValueError(
                f"{f.filename}: sweep incomplete: {done} of {total} work units done; the summary "
                "(/sweep) is written when all are: re-run the same covfit command to finish, or "
                "`covfit merge` the shards (read_sweep_units() reads the units done so far)")
        raise ValueError(f"no sweep results in {f.filename}")
    tasks = table(f["sweep/tasks"])
    if len(tasks) == 0:
        return tasks
    index = _index_name(f)
    sizes = {name: _refresh(f["sweep/" + name]).shape[0] for name in ("lambda", "folds", index)}
    ok = ((tasks["lambda_offset"] + tasks["lambda_len"] <= sizes["lambda"])
          & (tasks["fold_offset"] + tasks["fold_len"] <= sizes["folds"])
          & (tasks["matrix_offset"] + tasks["matrix_len"] <= sizes[index])
          & (tasks["status"] != ""))
    if "values_offset" in tasks:  # formats 1-3: the matrices' entries in /sweep/values
        ok &= tasks["values_offset"] + tasks["values_len"] <= _refresh(f["sweep/values"]).shape[0]
    tasks = tasks[ok].sort_values("id").reset_index(drop=True)
    if "best_by" not in tasks:
        tasks["best_by"] = np.where(np.isfinite(tasks["best_r2_val_exact"]), "r2_val_exact", "r2_val")
    return tasks


def read_sweep_units(source):
    """The work units committed so far (format 3), one row each: task, part (-1: full data,
    k: fold k), lambda block, status, timings. Works while a run is writing (SWMR)."""
    with _opened(source) as f:
        if "sweep_units" not in f:
            raise ValueError(f"no sweep work units in {f.filename} (format {f.attrs.get('format_version')})")
        return table(f["sweep_units/units"]).sort_values("id").reset_index(drop=True)


def read_sweep_tasks(source):
    """One row per finished sweep task (data set, model): sizes, best lambda, timings."""
    with _opened(source) as f:
        return _sweep_commits(f)


def _sweep_rows(f, name, offset_col, len_col):
    tasks = _sweep_commits(f)
    rows = _ranges(tasks[offset_col], tasks[len_col]) if len(tasks) else np.zeros(0, np.int64)
    return table(f["sweep/" + name], rows=rows)


def read_sweep(source):
    """One row per (data set, model, lambda[, lambda_d]) of the finished sweep tasks:
    columns ``lambda``, ``lambda_d`` (absolute), ``lambda_job``, ``lambda_d_job`` (in the
    job's lambda_units), ``r2_val``, ``r2_val_exact``, losses, certificate and diagnostics
    (docs/FORMAT.md). ``*_sd`` columns are sample sd over folds (ddof=1; scikit-learn's
    ``cv_results_`` uses ddof=0). For "the best lambda" use :func:`best`, not
    ``idxmax`` of a column: the file names the column that decides (``best_by``).
    Raises ValueError if the file has no sweep."""
    with _opened(source) as f:
        rows = _sweep_rows(f, "lambda", "lambda_offset", "lambda_len")
        if "lambda_job" not in rows:  # format 1: the job's units are in its TOML only
            unit = _tasks_lambda_unit(f)
            scale = rows["task_id"].map(unit).to_numpy(dtype=float) if len(rows) else np.zeros(0)
            rows["lambda_job"] = rows["lambda"].to_numpy() / scale
            rows["lambda_d_job"] = rows["lambda_d"].to_numpy() / scale
        return rows


def _tasks_lambda_unit(f):
    """{task id: lambda_unit}; format 1: from the job TOML's sweep.lambda_units."""
    tasks = _sweep_commits(f)
    if "lambda_unit" in tasks:
        return dict(zip(tasks["id"], tasks["lambda_unit"]))
    relative = False
    try:
        import tomllib
        job = tomllib.loads(_decode(f.attrs.get("job_toml", b"")))
        relative = job.get("sweep", {}).get("lambda_units") == "s_max2"
    except Exception:  # noqa: BLE001 - no TOML parser or unreadable job: absolute
        pass
    return {i: (s * s if relative else 1.0) for i, s in zip(tasks["id"], tasks["s_max"])}


def best(source):
    """The best grid point of every sweep task, one row each, as the file defines it.

    Returns the rows of :func:`read_sweep` at each task's ``best_lambda`` (and
    ``best_lambda_d``), with ``best_by`` (the column whose mean over folds was maximised),
    ``best_r2`` (that column's value), ``one_se_lambda`` and ``one_se_lambda_job``. This
    is the lambda that ``covfit inspect``, the figures and :func:`read_matrix` use."""
    with _opened(source) as f:
        tasks = _sweep_commits(f)
        rows = read_sweep(f)
        out = []
        for _, t in tasks.iterrows():
            g = rows[rows["task_id"] == t["id"]]
            hit = g[np.isclose(g["lambda"], t["best_lambda"], rtol=1e-12, atol=0)]
            if np.isfinite(t["best_lambda_d"]):
                hit = hit[np.isclose(hit["lambda_d"], t["best_lambda_d"], rtol=1e-12, atol=0)]
            if len(hit) == 0:
                continue
            r = hit.iloc[0].copy()
            r["best_by"] = t["best_by"]
            r["best_r2"] = r[t["best_by"]]
            r["one_se_lambda"] = t["one_se_lambda"]
            r["one_se_lambda_job"] = t["one_se_lambda"] * r["lambda_job"] / r["lambda"] \
                if r["lambda"] else np.nan
            out.append(r)
        return pd.DataFrame(out).reset_index(drop=True)


def units(ds):
    """{column: units} of a table dataset (format 2 attributes; empty for format 1)."""
    names = ds.attrs.get("column_names")
    if names is None:
        return {}
    return dict(zip(_decode(np.asarray(names)), _decode(np.asarray(ds.attrs["column_units"]))))


def read_folds(source):
    """Per-fold validation R^2 behind the means of :func:`read_sweep`."""
    with _opened(source) as f:
        return _sweep_rows(f, "folds", "fold_offset", "fold_len")


def read_matrices(source):
    """Index of the stored matrices (W, W_lin, d, d_lin, eq1_lhs, eq1_rhs), one row each.

    Format 4: ``index`` is the matrix's index along the first axis of the dataset
    ``/sweep/matrices/<task_id>/<name>`` (its only copy in the file). Formats 1-3 also
    give ``start``, the absolute offset of its entries in /sweep/values."""
    with _opened(source) as f:
        tasks = _sweep_commits(f).set_index("id")
        m = _sweep_rows(f, _index_name(f), "matrix_offset", "matrix_len")
        if "index" in m:
            return m
        if len(m):
            m["start"] = tasks.loc[m["task_id"], "values_offset"].to_numpy() + m["offset"].to_numpy()
        else:
            m["start"] = np.zeros(0, np.int64)
        return m


def read_matrix(source, task_id, name, lam=None, lam_d=None):
    """A stored matrix as a numpy array (rows, cols).

    ``lam`` (absolute, as in the ``lambda`` column) picks the stored lambda nearest to it;
    by default the task's best lambda (and best lambda_d), the one :func:`best` returns.
    Complete files (format 2 on) hold every matrix as a plain dataset,
    ``/sweep/matrices/<task id>/<name>`` with shape (lambda, rows, cols) and attributes
    ``lambda``, ``lambda_job`` and ``best_index``; this reads the same numbers (format 4
    from there, its only copy; formats 1-3 from /sweep/values)."""
    task_id = int(task_id)
    with _opened(source) as f:
        m = read_matrices(f)
        m = m[(m["task_id"] == task_id) & (m["name"] == name)]
        if len(m) == 0:
            raise KeyError(f"no matrix '{name}' stored for task {task_id}")
        if lam is None:
            t = _sweep_commits(f)
            t = t[t["id"] == task_id].iloc[0]
            lam = t["best_lambda"]
            if lam_d is None and np.isfinite(t["best_lambda_d"]):
                lam_d = t["best_lambda_d"]
        if lam_d is not None and np.isfinite(m["lambda_d"]).any():
            m = m.iloc[np.argsort(np.abs(np.log(m["lambda_d"].to_numpy() / lam_d)), kind="stable")]
            m = m[m["lambda_d"] == m["lambda_d"].iloc[0]]
        if lam is not None and np.isfinite(lam):
            m = m.iloc[[int(np.argmin(np.abs(np.log(m["lambda"].to_numpy() / lam))))]]
        r = m.iloc[0]
        if "index" in r:
            return np.asarray(f[f"sweep/matrices/{task_id}/{name}"][int(r["index"])])
        vals = _refresh(f["sweep/values"])[int(r["start"]): int(r["start"]) + int(r["rows"] * r["cols"])]
        return np.asarray(vals).reshape(int(r["rows"]), int(r["cols"]))
