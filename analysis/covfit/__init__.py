"""Python readers and plots for covfit results files (docs/FORMAT.md).

    >>> import covfit
    >>> tasks = covfit.read_tasks("demo.h5")

Plots: ``python3 -m covfit.plot demo.h5 -o plots/`` or ``covfit.plot.plot_all``.
"""

from .reader import (  # noqa: F401
    FORMAT_NAME, FORMAT_VERSION, STATUSES, level_label, open_results, predict, read_attrs,
    read_curves, read_data, read_folds, read_kernels, read_matrices, read_matrix, read_sweep,
    read_sweep_tasks, read_tasks, table, target_levels,
)

__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "STATUSES", "level_label", "open_results", "predict",
    "read_attrs", "read_curves", "read_data", "read_folds", "read_kernels", "read_matrices",
    "read_matrix", "read_sweep", "read_sweep_tasks", "read_tasks",
    "table", "target_levels",
]
