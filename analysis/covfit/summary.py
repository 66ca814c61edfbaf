"""The per-group summary of a fit file: the Python side of `covfit inspect`'s table.

One rule for "success" (docs/FORMAT.md, "Success level"): per (param[, optimizer][, data],
K), the tightest target level not below the loss the group's tasks stop at. covfit inspect
(src/report/report.cpp) applies the same rule; analysis/tests/test_plot.py checks that
both count the same tasks. Used by ``python3 -m covfit`` and the figures.
"""

import numpy as np
import pandas as pd

from . import reader


def _group_key_columns(tasks):
    """Columns naming a line: param, plus optimizer / data when the file has several."""
    cols = ["param"]
    for extra in ("optimizer", "data"):
        if extra in tasks and tasks[extra].nunique() > 1:
            cols.append(extra)
    return cols


def summary_table(tasks):
    """Per (line key, K): median final_rel_loss, and how many tasks reached the group's
    success level: the tightest target level not below the loss the tasks stop at
    (``reader.success_level``; ``covfit inspect`` uses the same rule and counts).

    Columns ``level`` (NaN if none), ``reached`` (count), ``frac_reached`` and
    ``on_target`` (tasks with status reached_target: stopped on target_loss /
    target_rel_variance).
    """
    levels = tasks.attrs.get("target_losses", [])
    keys = _group_key_columns(tasks) + ["K"]
    rows = []
    for key, g in tasks.groupby(keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(keys, key))
        row["tasks"] = len(g)
        row["median_final_rel_loss"] = float(np.median(g["final_rel_loss"]))
        stop = float(g["stop_loss"].max()) if "stop_loss" in g else 0.0
        level = reader.success_level(levels, stop)
        row["level"] = level if level is not None else np.nan
        if level is not None:
            reached = int((g[f"steps_to_{reader.level_label(level)}"] >= 0).sum())
        else:
            reached = 0
        row["reached"] = reached
        row["frac_reached"] = reached / len(g) if level is not None else np.nan
        row["on_target"] = int((g["status"] == "reached_target").sum())
        rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["tightest_level"] = min(levels) if len(levels) else None
    return df


