"""The per-group summary of a fit file, as covfit stored it (``/fit/summary``).

One implementation: C++ (``io::summarise_fit``) computes the summary and writes it into
the results file when the file is complete; ``covfit inspect`` prints the same rows, and
this module only reads them (docs/FORMAT.md, "/fit/summary"). Per (data, param,
optimizer, K): tasks, failures, median final_rel_loss, the success level (the tightest
target level not below the loss the tasks stop at), how many tasks reached it, and how
many stopped on target. Used by ``python3 -m covfit`` and the figures.

A file still being written (or older than format 3) has no stored summary:
``summary_table`` raises :class:`reader.SummaryUnavailable` with a one-line explanation;
``covfit inspect FILE`` shows the live summary.
"""

from . import reader
from .reader import SummaryUnavailable  # noqa: F401 (re-exported)


def _group_key_columns(tasks):
    """Columns naming a line in the figures: param, plus optimizer / data when the file
    has several."""
    cols = ["param"]
    for extra in ("optimizer", "data"):
        if extra in tasks and tasks[extra].nunique() > 1:
            cols.append(extra)
    return cols


def summary_table(source):
    """The stored summary of results file ``source`` (a path or an open file): one row per
    (data, param, optimizer, K), ordered by (param, optimizer, data, K), with the columns
    of ``/fit/summary`` (``tasks``, ``median_final_rel_loss``, ``level`` (NaN if none),
    ``reached``, ``frac_reached``, ``on_target``, ...). ``df.attrs["tightest_level"]`` is
    the tightest target level of the job (None without levels).

    Raises :class:`SummaryUnavailable` for a file without a stored summary (a run in
    progress, or a file older than format 3): it is never recomputed here.
    """
    if hasattr(source, "iterrows"):  # the old signature took the tasks DataFrame
        raise TypeError("summary_table reads the summary covfit stored in the file: pass the "
                        "results file's path (or the open file), not a tasks DataFrame")
    df = reader.read_summary(source)
    levels = df.attrs.get("target_losses", [])
    df.attrs["tightest_level"] = min(levels) if len(levels) else None
    return df
