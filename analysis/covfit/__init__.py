"""Python readers and plots for covfit results files (docs/FORMAT.md).

    >>> import covfit
    >>> tasks = covfit.read_tasks("demo.h5")
    >>> summary = covfit.summary_table("demo.h5")   # /fit/summary, as covfit inspect prints it

Plots: ``python3 -m covfit.plot demo.h5 -o plots/`` or ``covfit.plot.plot_all``.
"""

import sys

try:
    from .reader import (  # noqa: F401
        FORMAT_NAME, FORMAT_VERSION, READABLE_VERSIONS, STATUSES, SummaryUnavailable, best,
        level_label, open_results, predict, read_attrs, read_curves, read_data, read_folds,
        read_kernels, read_matrices, read_matrix, read_summary, read_sweep, read_sweep_tasks,
        read_sweep_units, read_tasks, table, target_levels, units,
    )
    from .summary import summary_table  # noqa: F401
except ModuleNotFoundError as _e:
    if sys.argv[:1] == ["-m"]:  # python3 -m covfit[.plot]: one line instead of a traceback
        print(f"covfit: error: {_e}", file=sys.stderr)
        sys.exit(2)
    raise

__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "READABLE_VERSIONS", "STATUSES", "SummaryUnavailable",
    "best", "level_label", "open_results", "predict", "read_attrs", "read_curves", "read_data",
    "read_folds", "read_kernels", "read_matrices", "read_matrix", "read_summary", "read_sweep",
    "read_sweep_tasks", "read_sweep_units", "read_tasks", "summary_table", "table",
    "target_levels", "units",
]
