"""Plots of a covfit results file.

    python3 -m covfit.plot OUT.h5 -o DIR

writes loss_vs_steps.png, loss_vs_seconds.png, best_fit.png, summary.png (and, for sweeps,
sweep_r2.png, sweep_linearisation.png, sweep_w_hist.png) into DIR and prints their paths.  From Python,
``plot_all(path, outdir, data=d)`` returns the paths and fills the optional dict ``d``
with the numbers that were plotted (see ``plot_all``).
"""

from __future__ import annotations

import argparse
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import reader  # noqa: E402

__all__ = ["plot_all", "loss_bands", "step_grid", "time_grid", "main"]


# ----------------------------------------------------------------------------- numbers

def _group_key_columns(tasks):
    """Columns naming a line: param, plus optimizer / data when the file has several."""
    cols = ["param"]
    for extra in ("optimizer", "data"):
        if extra in tasks and tasks[extra].nunique() > 1:
            cols.append(extra)
    return cols


def step_grid(curves):
    """Common step grid: the sorted union of the monitored steps."""
    return np.unique(curves["step"].to_numpy())


def time_grid(curves, n=200):
    """Common time grid: n points from 0 to the longest task's last monitor time."""
    tmax = float(curves["seconds"].max()) if len(curves) else 1.0
    return np.linspace(0.0, tmax if tmax > 0 else 1.0, n)


def _loss_at(curve_x, curve_loss, grid):
    """Loss of one task at each grid point: last monitored value at or before it (the first
    value before the first row, the final value after the task ended)."""
    i = np.searchsorted(curve_x, grid, side="right") - 1
    return curve_loss[np.clip(i, 0, len(curve_loss) - 1)]


def loss_bands(curves, x="step", grid=None, by=("param", "K")):
    """Median and 25/75 % quantiles over tasks of loss on a common grid.

    Returns ``{group_key: {"x": grid, "median": ..., "q25": ..., "q75": ..., "n": ntasks}}``
    with group_key a tuple of the ``by`` values.
    """
    by = list(by)
    if grid is None:
        grid = step_grid(curves) if x == "step" else time_grid(curves)
    grid = np.asarray(grid, dtype=float)
    out = {}
    for key, g in curves.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        rows = []
        for _, tc in g.groupby("task_id", sort=True):
            tc = tc.sort_values("step", kind="stable")
            rows.append(_loss_at(tc[x].to_numpy(dtype=float), tc["loss"].to_numpy(), grid))
        m = np.vstack(rows)
        out[key] = {"x": grid, "median": np.median(m, axis=0),
                    "q25": np.quantile(m, 0.25, axis=0), "q75": np.quantile(m, 0.75, axis=0),
                    "n": len(rows)}
    return out


def summary_table(tasks):
    """Per (line key, K): median final_rel_loss and fraction reaching the tightest level."""
    levels = tasks.attrs.get("target_losses", [])
    tight = None
    if len(levels):
        tight = f"steps_to_{reader.level_label(min(levels))}"
    keys = _group_key_columns(tasks) + ["K"]
    rows = []
    for key, g in tasks.groupby(keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(keys, key))
        row["tasks"] = len(g)
        row["median_final_rel_loss"] = float(np.median(g["final_rel_loss"]))
        row["frac_reached"] = float((g[tight] >= 0).mean()) if tight else np.nan
        rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["tightest_level"] = min(levels) if len(levels) else None
    return df


# ----------------------------------------------------------------------------- figures

def _label(keycols, key):
    return " / ".join(str(k) for k in key) if len(keycols) > 1 else str(key[0])


def _colors(names):
    cmap = plt.get_cmap("tab10")
    return {n: cmap(i % 10) for i, n in enumerate(sorted(set(names)))}


def _plot_bands(bands, keycols, x, title, path, xlabel, job):
    Ks = sorted({k[-1] for k in bands})
    fig, axes = plt.subplots(1, len(Ks), figsize=(5.2 * len(Ks) + 0.8, 4.4), squeeze=False,
                             sharey=True)
    colors = _colors([k[:-1] for k in bands])
    for ax, K in zip(axes[0], Ks):
        for key in sorted(k for k in bands if k[-1] == K):
            b = bands[key]
            c = colors[key[:-1]]
            ax.plot(b["x"], b["median"], color=c, lw=1.6,
                    label=f"{_label(keycols, key[:-1])} (n={b['n']})")
            ax.fill_between(b["x"], b["q25"], b["q75"], color=c, alpha=0.2, lw=0)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_title(f"K = {K}")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8, title=" / ".join(keycols), title_fontsize=8)
    axes[0][0].set_ylabel("loss (MSE), median and 25-75 % band")
    fig.suptitle(f"{title} - job '{job}'")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_best_fit(f, tasks, path):
    finite = tasks[np.isfinite(tasks["final_loss"])]
    best = finite.loc[finite["final_loss"].idxmin()]
    tid = int(best["id"])
    data = reader.read_data(f, best["data"])
    kernels = reader.read_kernels(f, tid)
    fit = reader.predict(kernels, data["x"], data["y"])
    resid = fit - data["values"]
    x, y, v = data["x"], data["y"], data["values"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    lo, hi = float(min(v.min(), fit.min())), float(max(v.max(), fit.max()))
    levels = np.linspace(lo, hi, 21) if hi > lo else 21
    for ax, z, name in ((axes[0], v, "target values"), (axes[1], fit, "fitted field")):
        cs = ax.tricontourf(x, y, z, levels=levels, cmap="viridis")
        fig.colorbar(cs, ax=ax, label="value")
        ax.set_title(name)
    ax = axes[1]
    inside = ((kernels["mu_x"] >= x.min()) & (kernels["mu_x"] <= x.max())
              & (kernels["mu_y"] >= y.min()) & (kernels["mu_y"] <= y.max()))
    ax.scatter(kernels["mu_x"][inside], kernels["mu_y"][inside], marker="+", c="red", s=40,
               label=f"kernel centres ({int((~inside).sum())} outside the domain)")
    ax.legend(fontsize=8, loc="upper right")
    r = float(np.max(np.abs(resid))) or 1.0
    cs = axes[2].tricontourf(x, y, resid, levels=np.linspace(-r, r, 21), cmap="RdBu_r")
    fig.colorbar(cs, ax=axes[2], label="fit - target")
    axes[2].set_title(f"residual (RMSE {np.sqrt(np.mean(resid ** 2)):.3g})")
    for ax in axes:
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.set_xlim(x.min(), x.max())
        ax.set_ylim(y.min(), y.max())
        ax.set_aspect("equal", adjustable="box")
    fig.suptitle(f"best task {tid}: data '{best['data']}', {best['param']}, K={best['K']}, "
                 f"{best['optimizer']}, restart {best['restart']}, status {best['status']}, "
                 f"final loss {best['final_loss']:.3g} (rel {best['final_rel_loss']:.3g})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"task_id": tid, "mse": float(np.mean(resid ** 2)),
            "final_loss": float(best["final_loss"])}


def _plot_summary(summary, keycols, path, job):
    labels = [_label(keycols, tuple(r[c] for c in keycols)) for _, r in summary.iterrows()]
    names = sorted(set(labels), key=labels.index)
    Ks = sorted(summary["K"].unique())
    width = 0.8 / max(len(Ks), 1)
    xs = np.arange(len(names))
    tight = summary.attrs.get("tightest_level")
    fig, axes = plt.subplots(1, 2, figsize=(max(9, 1.6 * len(names) + 4), 4.6))
    cmap = plt.get_cmap("viridis")
    for j, K in enumerate(Ks):
        sub = summary[summary["K"] == K]
        pos = [names.index(l) for l, k in zip(labels, summary["K"]) if k == K]
        off = xs[pos] - 0.4 + width * (j + 0.5)
        color = cmap(j / max(len(Ks) - 1, 1) * 0.85)
        axes[0].bar(off, sub["median_final_rel_loss"], width, color=color, label=f"K = {K}")
        axes[1].bar(off, sub["frac_reached"].fillna(0), width, color=color, label=f"K = {K}")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("median final_rel_loss (final loss / variance)")
    axes[0].set_title("median final relative loss")
    axes[1].set_ylim(0, 1.05)
    axes[1].set_ylabel("fraction of tasks")
    axes[1].set_title(f"fraction that reached loss <= {tight:.3g} (tightest level)" if tight is not None
                      else "no target levels in this job")
    for ax in axes:
        ax.set_xticks(xs)
        ax.set_xticklabels(names, rotation=20, ha="right")
        ax.set_xlabel(" / ".join(keycols))
        ax.legend(fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(f"summary per parameterisation - job '{job}'")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _sweep_groups(sweep):
    """(label, rows) per curve: data set / model, and lambda_d for the diagonal model."""
    keys = [c for c in ("data", "model") if c in sweep]
    out = []
    for key, g in (sweep.groupby(keys, sort=True) if keys else [((), sweep)]):
        key = key if isinstance(key, tuple) else (key,)
        if "lambda_d" in g and g["lambda_d"].notna().any():
            for ld, gg in g.groupby("lambda_d", sort=True):
                out.append((key + (f"lambda_d={ld:.3g}",), gg.sort_values("lambda")))
        else:
            out.append((key, g.sort_values("lambda")))
    return out


def _plot_sweep(sweep, path, job):
    """Validation R^2 against lambda: mean with a +-1 sd band over folds, the exact
    solution's R^2 dashed where computed, the best lambda marked."""
    fig, ax = plt.subplots(figsize=(8, 5))
    plotted = {}
    for i, (key, g) in enumerate(_sweep_groups(sweep)):
        color = f"C{i % 10}"
        label = " / ".join(str(k) for k in key) or "r2_val"
        lam, r2 = g["lambda"].to_numpy(), g["r2_val"].to_numpy()
        ax.plot(lam, r2, color=color, label=label)
        if "r2_val_sd" in g:
            sd = g["r2_val_sd"].to_numpy()
            ax.fill_between(lam, r2 - sd, r2 + sd, color=color, alpha=0.15, lw=0)
        if "r2_val_exact" in g and np.isfinite(g["r2_val_exact"]).any():
            ax.plot(lam, g["r2_val_exact"], color=color, ls="--", label=label + " (exact solution)")
        if np.isfinite(r2).any():
            b = int(np.nanargmax(r2))
            ax.plot(lam[b], r2[b], "o", color=color, ms=6)
        plotted[key] = (lam, r2)
    ax.set_xscale("log")
    ax.set_xlabel("lambda")
    ax.set_ylabel("validation R^2 (mean over folds, band: +-1 sd)")
    ax.set_title(f"validation R^2 vs lambda - job '{job}' (dot: best)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return plotted


def _plot_linearisation(f, sweep, path, job):
    """The source post's figures: equation-1 LHS against RHS at the exact solution for
    each stored lambda, and the distance / loss gap of the linearised solution."""
    mats = reader.read_matrices(f)
    lhs = mats[mats["name"] == "eq1_lhs"]
    if len(lhs) == 0:
        return None
    task = int(lhs["task_id"].iloc[0])
    lams = sorted(lhs[lhs["task_id"] == task]["lambda"].unique())
    fig, axes = plt.subplots(1, len(lams) + 1, figsize=(4.2 * (len(lams) + 1), 4.2))
    out = {"task_id": task, "lambdas": lams}
    for ax, lam in zip(axes, lams):
        a = reader.read_matrix(f, task, "eq1_lhs", lam).ravel()
        b = reader.read_matrix(f, task, "eq1_rhs", lam).ravel()
        ax.scatter(a, b, s=3, alpha=0.4)
        lim = [min(a.min(), b.min()), max(a.max(), b.max())]
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.set_xlabel("LHS  2 S(R - S^2)S")
        ax.set_ylabel("RHS  4 S^2 M* S^2 + lambda M*")
        ax.set_title(f"lambda = {lam:.3g}")
        out[lam] = (a, b)
    ax = axes[-1]
    g = sweep[(sweep["task_id"] == task)].sort_values("lambda")
    for col, label in (("dW", "dW = |M_lin - M*| / |M*|"), ("kappa", "kappa (loss gap)"),
                       ("eq1_residual", "eq. 1 residual at M*")):
        if col in g and np.isfinite(g[col]).any():
            ax.plot(g["lambda"], g[col], label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("lambda")
    ax.set_title("how good is the linearisation")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(f"linearisation diagnostics - job '{job}', task {task}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return out


def _plot_w_hist(f, path, job):
    """Diagonal against off-diagonal entries of W at the best lambda (the post's last figure)."""
    mats = reader.read_matrices(f)
    ws = mats[mats["name"].isin(["W", "W_lin"]) & (mats["cols"] > 1)]
    if len(ws) == 0:
        return None
    r = ws.iloc[0]
    W = reader.read_matrix(f, int(r["task_id"]), r["name"], r["lambda"])
    diag = np.diag(W)
    off = W[~np.eye(W.shape[0], dtype=bool)]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    bins = np.linspace(min(diag.min(), off.min()), max(diag.max(), off.max()), 80)
    ax.hist(off, bins=bins, density=True, alpha=0.6, label=f"off-diagonal ({off.size})")
    ax.hist(diag, bins=bins, density=True, alpha=0.6, label=f"diagonal ({diag.size})")
    ax.set_xlabel("entry of W")
    ax.set_ylabel("density")
    ax.set_title(f"W ({r['name']}) at lambda = {r['lambda']:.3g}, task {int(r['task_id'])} - job '{job}'")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"diag": diag, "offdiag": off}


def plot_all(path, outdir, data=None):
    """Write all plots of results file ``path`` into ``outdir``; return the paths written.

    If ``data`` is a dict it receives what was plotted: ``tasks``, ``curves`` (DataFrames),
    ``loss_vs_steps`` / ``loss_vs_seconds`` (output of :func:`loss_bands`, keyed by
    (param[, optimizer][, data], K)), ``best_fit`` (task_id, mse, final_loss), ``summary``
    (DataFrame) and ``sweep`` (when present).
    """
    os.makedirs(outdir, exist_ok=True)
    written = []
    data = data if data is not None else {}
    with reader.open_results(path) as f:
        attrs = reader.read_attrs(f)
        job = attrs.get("job_name", "?")
        has_fit = "fit" in f and "tasks" in f["fit"]
        tasks = reader.read_tasks(f) if has_fit else pd.DataFrame()
        if len(tasks):
            curves = reader.read_curves(f)
            keycols = _group_key_columns(tasks)
            data["tasks"], data["curves"] = tasks, curves
            for x, name, title, xlabel in (
                    ("step", "loss_vs_steps", "loss vs optimiser steps", "step"),
                    ("seconds", "loss_vs_seconds", "loss vs wall time",
                     "seconds since task start")):
                bands = loss_bands(curves, x=x, by=keycols + ["K"])
                out = os.path.join(outdir, name + ".png")
                _plot_bands(bands, keycols, x, title, out, xlabel, job)
                data[name] = bands
                written.append(out)
            out = os.path.join(outdir, "best_fit.png")
            data["best_fit"] = _plot_best_fit(f, tasks, out)
            written.append(out)
            summary = summary_table(tasks)
            out = os.path.join(outdir, "summary.png")
            _plot_summary(summary, keycols, out, job)
            data["summary"] = summary
            written.append(out)
        if "sweep" in f:
            sweep = reader.read_sweep(f)
            out = os.path.join(outdir, "sweep_r2.png")
            data["sweep"] = _plot_sweep(sweep, out, job)
            written.append(out)
            if "matrices" in f["sweep"]:
                out = os.path.join(outdir, "sweep_linearisation.png")
                data["linearisation"] = _plot_linearisation(f, sweep, out, job)
                if data["linearisation"] is not None:
                    written.append(out)
                out = os.path.join(outdir, "sweep_w_hist.png")
                data["w_hist"] = _plot_w_hist(f, out, job)
                if data["w_hist"] is not None:
                    written.append(out)
    return written


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m covfit.plot",
                                 description="Plot a covfit results file into PNG files.")
    ap.add_argument("results", help="covfit results file (.h5)")
    ap.add_argument("-o", "--outdir", default="plots", help="output directory (default: plots)")
    args = ap.parse_args(argv)
    try:
        with reader.open_results(args.results):
            pass
    except (OSError, ValueError) as e:
        print(f"covfit.plot: error: {e}", file=sys.stderr)
        return 2
    paths = plot_all(args.results, args.outdir)
    if not paths:
        print(f"covfit.plot: {args.results}: no finished tasks and no sweep yet; nothing "
              f"plotted", file=sys.stderr)
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
