"""python3 -m covfit RESULTS.h5 : print the job, progress and a summary (for fits, the
summary covfit stored in the complete file, per (param[, optimizer][, data], K); best
lambda per (data set, model) for sweeps)."""

import sys

try:
    from . import reader
except ModuleNotFoundError as e:  # e.g. no h5py: one line, not a traceback
    print(f"covfit: error: {e}", file=sys.stderr)
    sys.exit(2)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print("usage: python3 -m covfit RESULTS.h5   (plots: python3 -m covfit.plot RESULTS.h5 "
              "-o DIR)", file=sys.stderr)
        return 2
    path = argv[0]
    try:
        attrs = reader.read_attrs(path)
        sweep = attrs.get("job_kind") == "sweep"
        tasks = reader.read_sweep_tasks(path) if sweep else reader.read_tasks(path)
    except (OSError, ValueError) as e:
        print(f"covfit: error: {e}", file=sys.stderr)
        return 2
    print(f"{path}: job '{attrs.get('job_name')}' ({attrs.get('job_kind')}), shard "
          f"{attrs.get('shard_index')}/{attrs.get('shard_count')}, "
          f"{len(tasks)}/{attrs.get('tasks_in_file')} tasks, written by covfit "
          f"{attrs.get('covfit_version')} on {attrs.get('host')} at {attrs.get('created')}")
    if sweep:
        if len(tasks):
            cols = ["data", "model", "n", "m", "r", "folds", "best_lambda", "best_lambda_d",
                    "best_by", "best_r2_val", "one_se_lambda", "svd_seconds", "seconds"]
            print(tasks[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        return 0
    if len(tasks):
        from .summary import SummaryUnavailable, summary_table  # covfit's stored summary
        try:
            summary = summary_table(path)
        except SummaryUnavailable as e:  # a run in progress, or an older file: say so
            print(f"summary: {e}")
        else:
            cols = ["param", "optimizer", "data", "K", "tasks", "median_final_rel_loss", "level",
                    "reached", "on_target"]
            for extra in ("optimizer", "data"):  # only when the file has several
                if summary[extra].nunique() < 2:
                    cols.remove(extra)
            print(summary[cols].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
            print("level: the tightest target level not below the loss the tasks stop at; "
                  "reached: tasks that got there; on_target: status reached_target "
                  "(stored in the file by covfit: /fit/summary, as covfit inspect prints it)")
        print("status:", dict(tasks["status"].value_counts()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
