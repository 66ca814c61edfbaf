"""Plots of a covfit results file.

    python3 -m covfit.plot OUT.h5 -o DIR

writes loss_vs_steps.png, loss_vs_seconds.png, best_fit.png, time_to_target.png (when the
job has target levels), summary.png (from the file's stored /fit/summary: complete fit
files only) (and, for sweeps, sweep_r2.png, sweep_linearisation.png,
sweep_w_hist.png, sweep_diag.png for free_diag) into DIR and prints their paths.  From Python,
``plot_all(path, outdir, data=d)`` returns the paths and fills the optional dict ``d``
with the numbers that were plotted (see ``plot_all``).
"""

from __future__ import annotations

import argparse
import os
import sys

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    from . import reader
    from .summary import _group_key_columns, summary_table  # noqa: F401 (re-exported)
except ModuleNotFoundError as _e:
    if __name__ == "__main__":  # python3 -m covfit.plot: one line, no traceback
        print(f"covfit.plot: error: {_e} (figures also need matplotlib)", file=sys.stderr)
        sys.exit(2)
    raise

__all__ = ["plot_all", "loss_bands", "step_grid", "time_grid", "main"]


# ----------------------------------------------------------------------------- numbers

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
                    "n": len(rows), "x_end": float(g[x].max())}
    return out


# ----------------------------------------------------------------------------- figures

def _label(keycols, key):
    return " / ".join(str(k) for k in key) if len(keycols) > 1 else str(key[0])


def _colors(names):
    cmap = plt.get_cmap("tab10")
    return {n: cmap(i % 10) for i, n in enumerate(sorted(set(names)))}


def _log_steps(bands):
    """Log step axis when the series end decades apart (e.g. LM's 14 steps next to Adam's
    3000) or span more than two decades themselves."""
    ends = [float(b["x"][np.flatnonzero(np.r_[True, np.diff(b["median"]) != 0])[-1]])
            for b in bands.values() if len(b["x"])]
    xmax = max((float(np.max(b["x"])) for b in bands.values() if len(b["x"])), default=1.0)
    pos = [e for e in ends if e > 0]
    return xmax > 100 or (len(pos) > 1 and max(pos) / min(pos) > 10)


def _plot_bands(bands, keycols, x, title, path, xlabel, job, levels=()):
    """One panel per (parameterisation, K); one line per optimizer (and data set) with the
    same colour in every panel; one legend outside the panels; target levels dashed."""
    params = sorted({k[0] for k in bands})
    Ks = sorted({k[-1] for k in bands})
    series = sorted({k[1:-1] for k in bands})
    colors = {sname: f"C{i % 10}" for i, sname in enumerate(series)}
    fig, axes = plt.subplots(len(Ks), len(params), figsize=(3.3 * len(params) + 1.8, 3.0 * len(Ks) + 0.9),
                             squeeze=False, sharey=True, sharex=True)
    log_x = x == "step" and _log_steps(bands)
    handles = {}
    for r, K in enumerate(Ks):
        for c, param in enumerate(params):
            ax = axes[r][c]
            for key in sorted(k for k in bands if k[0] == param and k[-1] == K):
                b = bands[key]
                sname = key[1:-1]
                label = " / ".join(str(v) for v in sname) if sname else "median over tasks"
                # Only up to the group's longest task (not a flat line after every task ended).
                keep = b["x"] <= b.get("x_end", np.inf)
                xs = b["x"][keep] + (1 if log_x else 0)  # step 0 on a log axis: at step + 1
                h, = ax.plot(xs, b["median"][keep], color=colors[sname], lw=1.5)
                ax.fill_between(xs, b["q25"][keep], b["q75"][keep], color=colors[sname], alpha=0.2, lw=0)
                handles.setdefault(label, h)
                ax.text(0.98, 0.98 - 0.08 * series.index(sname), f"n={b['n']}", transform=ax.transAxes,
                        ha="right", va="top", fontsize=7, color=colors[sname])
            for lv in levels:
                ax.axhline(lv, color="0.5", lw=0.7, ls="--")
            ax.set_yscale("log")
            if log_x:
                ax.set_xscale("log")
            ax.grid(True, which="major", alpha=0.3)
            if r == 0:
                ax.set_title(param)
            if r == len(Ks) - 1:
                ax.set_xlabel(xlabel + (" + 1 (log)" if log_x else ""))
            if c == 0:
                ax.set_ylabel(f"K = {K}\nloss (MSE)")
    if levels:
        handles["target levels"] = plt.Line2D([], [], color="0.5", lw=0.7, ls="--")
    fig.legend(list(handles.values()), list(handles.keys()), loc="center right", fontsize=8,
               title=" / ".join(c for c in keycols[1:]) or None, title_fontsize=8)
    fig.suptitle(f"{title} - job '{job}' (median, band: 25-75 % over tasks)")
    fig.tight_layout(rect=(0, 0, 1 - 1.6 / fig.get_figwidth(), 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"log_x": log_x, "panels": [(p, K) for K in Ks for p in params]}


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
    # wide enough for the per-bar labels ("2/2 <= 1e-02") not to overlap
    fig, axes = plt.subplots(1, 2, figsize=(max(9, 1.6 * len(names) + 4,
                                                1.1 * len(names) * len(Ks) + 4), 4.8))
    cmap = plt.get_cmap("viridis")
    for j, K in enumerate(Ks):
        sub = summary[summary["K"] == K]
        pos = [names.index(lab) for lab, k in zip(labels, summary["K"]) if k == K]
        off = xs[pos] - 0.4 + width * (j + 0.5)
        color = cmap(j / max(len(Ks) - 1, 1) * 0.85)
        axes[0].bar(off, sub["median_final_rel_loss"], width, color=color, label=f"K = {K}")
        axes[1].bar(off, sub["frac_reached"].fillna(0), width, color=color, label=f"K = {K}")
        for o, (_, r) in zip(off, sub.iterrows()):
            text = (f"{r['reached']}/{r['tasks']}\n≤{r['level']:.0e}" if np.isfinite(r["level"])
                    else "no level")
            if r["on_target"]:
                text += f"\n({r['on_target']} on\ntarget)"
            axes[1].text(o, min(float(np.nan_to_num(r["frac_reached"])), 1.0) + 0.02, text,
                         ha="center", va="bottom", fontsize=7)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("median final_rel_loss (final loss / variance)")
    axes[0].set_title("median final relative loss")
    axes[1].set_ylim(0, 1.35)
    axes[1].set_ylabel("fraction of tasks")
    axes[1].set_title("reached its level: tightest target level not below\nthe stop target "
                      "(the file's /fit/summary, as covfit inspect prints it)", fontsize=9)
    for ax in axes:
        ax.set_xticks(xs)
        ax.set_xticklabels(names, rotation=20, ha="right")
        ax.set_xlabel(" / ".join(keycols))
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(f"summary per parameterisation - job '{job}'")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _lambda_label(tasks):
    units = set(tasks["lambda_units"]) if "lambda_units" in tasks else set()
    if units == {"s_max2"}:
        return "lambda (x s_max^2, the job's units)"
    return "lambda (absolute)" if units <= {"absolute"} else "lambda (job units)"


def _plot_sweep(f, sweep, path, job):
    """Validation R^2 against lambda (in the job's units), one panel per (data set, model):
    mean with a +-1 sd band (ddof=1) over folds; the exact solution's R^2 dashed where
    computed; one dot at the file's best lambda (on the curve of the column that chose it,
    ``best_by``) and a dotted line at the one-SE lambda. free_diag: one curve per lambda_d."""
    tasks = reader.read_sweep_tasks(f)
    best = reader.best(f)
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.4 * len(tasks), 4.8), squeeze=False)
    plotted, marked = {}, {}
    for ax, (_, t) in zip(axes[0], tasks.iterrows()):
        g = sweep[sweep["task_id"] == t["id"]]
        b = best[best["task_id"] == t["id"]]
        diag = g["lambda_d"].notna().any()
        groups = list(g.groupby("lambda_d", sort=True)) if diag else [(None, g)]
        cmap = plt.get_cmap("viridis")
        for i, (ld, gg) in enumerate(groups):
            gg = gg.sort_values("lambda")
            color = cmap(i / max(len(groups) - 1, 1) * 0.9) if diag else "C0"
            lam, lamj, r2 = gg["lambda"].to_numpy(), gg["lambda_job"].to_numpy(), gg["r2_val"].to_numpy()
            label = f"lambda_d = {gg['lambda_d_job'].iloc[0]:.3g}" if diag else "r2_val (linearised model)"
            ax.plot(lamj, r2, color=color, lw=1.2 if diag else 1.6, label=label)
            if not diag:
                sd = gg["r2_val_sd"].to_numpy()
                ax.fill_between(lamj, r2 - sd, r2 + sd, color=color, alpha=0.15, lw=0)
            if np.isfinite(gg["r2_val_exact"]).any():
                ex, exsd = gg["r2_val_exact"].to_numpy(), gg["r2_val_exact_sd"].to_numpy()
                ax.plot(lamj, ex, color="C1", ls="--", label="r2_val_exact (exact solution)")
                ax.fill_between(lamj, ex - exsd, ex + exsd, color="C1", alpha=0.12, lw=0)
            key = (t["data"], t["model"]) + ((f"lambda_d={ld:.3g}",) if diag else ())
            plotted[key] = (lam, r2)
        if len(b):
            b = b.iloc[0]
            ax.plot(b["lambda_job"], b["best_r2"], "o", color="red", ms=7, zorder=5,
                    label=f"best: lambda = {b['lambda_job']:.3g}"
                          + (f", lambda_d = {b['lambda_d_job']:.3g}" if np.isfinite(b["lambda_d"]) else "")
                          + f" by {b['best_by']} (R^2 {b['best_r2']:.4f})")
            if np.isfinite(b["one_se_lambda_job"]):
                ax.axvline(b["one_se_lambda_job"], color="red", ls=":", lw=1,
                           label=f"one-SE lambda = {b['one_se_lambda_job']:.3g}")
            marked[(t["data"], t["model"])] = (float(b["lambda"]), float(b["lambda_d"]), float(b["best_r2"]))
        lo = np.nanmin(g[["r2_val"] + (["r2_val_exact"] if np.isfinite(g["r2_val_exact"]).any() else [])].to_numpy())
        hi = np.nanmax(g[["r2_val"] + (["r2_val_exact"] if np.isfinite(g["r2_val_exact"]).any() else [])].to_numpy())
        if np.isfinite(lo) and np.isfinite(hi) and hi > lo:
            lo = max(lo, hi - 4 * (hi - max(np.nanmedian(g["r2_val"]), lo)) - 0.05)  # keep the top readable
            ax.set_ylim(lo, hi + 0.08 * (hi - lo))
        ax.set_xscale("log")
        ax.set_xlabel(_lambda_label(tasks[tasks["id"] == t["id"]]))
        ax.set_ylabel("validation R^2 (mean over folds; band +-1 sd, ddof=1)")
        ax.set_title(f"{t['data']} / {t['model']}")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="lower left", ncol=2 if diag else 1)
    fig.suptitle(f"validation R^2 vs lambda - job '{job}'")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return plotted, marked


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
    g = sweep[(sweep["task_id"] == task)].sort_values("lambda")
    unit = float((g["lambda"] / g["lambda_job"]).iloc[0]) if len(g) else 1.0
    tasks = reader.read_sweep_tasks(f)
    t = tasks[tasks["id"] == task].iloc[0]
    for ax, lam in zip(axes, lams):
        a = reader.read_matrix(f, task, "eq1_lhs", lam).ravel()
        b = reader.read_matrix(f, task, "eq1_rhs", lam).ravel()
        ax.scatter(a, b, s=3, alpha=0.4)
        lim = [min(a.min(), b.min()), max(a.max(), b.max())]
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.set_xlabel("LHS  2 S(R - S^2)S")
        ax.set_ylabel("RHS  4 S^2 M* S^2 + lambda M*")
        ax.set_title(f"lambda = {lam / unit:.3g}" + (" (best)" if lam == t["best_lambda"] else ""))
        out[lam] = (a, b)
    ax = axes[-1]
    for col, label in (("dW", "dW = |M_lin - M*| / |M*|"), ("kappa", "kappa (loss gap)"),
                       ("eq1_residual", "eq. 1 residual at M*")):
        if col in g and np.isfinite(g[col]).any():
            ax.plot(g["lambda_job"], g[col], label=label)
    ax.axvline(t["best_lambda"] / unit, color="red", lw=1, label="best lambda")
    if np.isfinite(t["one_se_lambda"]):
        ax.axvline(t["one_se_lambda"] / unit, color="red", ls=":", lw=1, label="one-SE lambda")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(_lambda_label(tasks[tasks["id"] == task]))
    ax.set_title("how good is the linearisation")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(f"linearisation diagnostics - job '{job}', task {task}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return out


def _plot_w_hist(f, path, job):
    """W at the file's best lambda of the first task that stored one (W, else W_lin):
    heatmap, histogram of diagonal against off-diagonal entries (the post's last figure),
    and W against the planted W0 when the file has it."""
    mats = reader.read_matrices(f)
    ws = mats[mats["name"].isin(["W", "W_lin"]) & (mats["cols"] > 1)]
    if len(ws) == 0:
        return None
    tid = int(ws["task_id"].iloc[0])
    name = "W" if ((ws["task_id"] == tid) & (ws["name"] == "W")).any() else "W_lin"
    b = reader.best(f)
    b = b[b["task_id"] == tid].iloc[0]
    W = reader.read_matrix(f, tid, name)  # default: the best lambda
    diag = np.diag(W)
    off = W[~np.eye(W.shape[0], dtype=bool)]
    W0 = None
    if "data" in f and b["data"] in f["data"] and "W0" in f["data"][b["data"]]:
        W0 = np.asarray(f["data"][b["data"]]["W0"][()])
        if W0.shape != W.shape:
            W0 = None
    ncol = 3 if W0 is not None else 2
    fig, axes = plt.subplots(1, ncol, figsize=(5.2 * ncol, 4.6))
    r = float(np.max(np.abs(W))) or 1.0
    im = axes[0].imshow(W, cmap="RdBu_r", vmin=-r, vmax=r)
    fig.colorbar(im, ax=axes[0])
    axes[0].set_title(f"{name}")
    bins = np.linspace(min(diag.min(), off.min()), max(diag.max(), off.max()), 80)
    axes[1].hist(off, bins=bins, density=True, alpha=0.6, label=f"off-diagonal ({off.size})")
    axes[1].hist(diag, bins=bins, density=True, alpha=0.6, label=f"diagonal ({diag.size})")
    axes[1].set_xlabel(f"entry of {name}")
    axes[1].set_ylabel("density")
    axes[1].set_yscale("log")
    axes[1].legend(fontsize=8)
    if W0 is not None:
        axes[2].scatter(W0.ravel(), W.ravel(), s=2, alpha=0.3)
        lim = [min(W0.min(), W.min()), max(W0.max(), W.max())]
        axes[2].plot(lim, lim, "k--", lw=0.8)
        axes[2].set_xlabel("planted W0")
        axes[2].set_ylabel(name)
        axes[2].set_title(f"against the planted W0 (corr {np.corrcoef(W0.ravel(), W.ravel())[0, 1]:.3f})")
    fig.suptitle(f"{name} at the best lambda = {b['lambda_job']:.3g} (by {b['best_by']}), task {tid} "
                 f"({b['data']} / {b['model']}) - job '{job}'")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"diag": diag, "offdiag": off, "task_id": tid, "name": name,
            "lambda": float(b["lambda"]), "W0": W0 is not None}


def _plot_time_to_target(tasks, keycols, path, job):
    """Fraction of tasks that reached each target level by a given time (one panel per
    level; one line per parameterisation / optimizer / K)."""
    levels = sorted(tasks.attrs.get("target_losses", []), reverse=True)
    if not levels:
        return None
    keys = keycols + ["K"]
    groups = list(tasks.groupby(keys, sort=True))
    params = sorted(tasks["param"].unique())
    styles = ["-", "--", ":", "-."]
    others = sorted({tuple(k[1:]) if isinstance(k, tuple) else () for k, _ in groups})
    fig, axes = plt.subplots(1, len(levels), figsize=(4.6 * len(levels) + 2.2, 4.2), squeeze=False,
                             sharey=True)
    out = {}
    tmax = float(np.nanmax(tasks["wall_seconds"])) if len(tasks) else 1.0
    for ax, level in zip(axes[0], levels):
        col = f"seconds_to_{reader.level_label(level)}"
        reached = tasks[col].to_numpy(dtype=float)
        reached = reached[np.isfinite(reached) & (reached > 0)]
        t0 = float(reached.min()) / 1.5 if len(reached) else tmax / 10
        for key, g in groups:
            key = key if isinstance(key, tuple) else (key,)
            t = np.sort(g[col].to_numpy(dtype=float))
            t = t[np.isfinite(t)]
            frac = np.arange(1, len(t) + 1) / len(g)
            # From 0 at the first time any task reached it (lines of groups that never
            # did stay visible at 0) to the last task's end.
            xs = np.r_[t0, t, tmax]
            ys = np.r_[0.0, frac, frac[-1] if len(frac) else 0.0]
            ax.step(xs, ys, where="post",
                    color=f"C{params.index(key[0]) % 10}", ls=styles[others.index(tuple(key[1:])) % 4],
                    label=" / ".join(str(k) for k in key))
            out[(level,) + key] = (t, frac)
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("seconds since task start (log)")
        ax.set_title(f"loss <= {level:.0e}")
        ax.grid(True, which="major", alpha=0.3)
    axes[0][0].set_ylabel("fraction of tasks that reached the level")
    h, lab = axes[0][0].get_legend_handles_labels()
    fig.legend(h, lab, loc="center right", fontsize=7, title=" / ".join(keys), title_fontsize=7)
    fig.suptitle(f"time to target - job '{job}'")
    fig.tight_layout(rect=(0, 0, 1 - 2.0 / fig.get_figwidth(), 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return out


def _plot_diag_model(f, path, job):
    """free_diag at its best pair: the exact d against the linearised d_lin, and the free
    part F = W_lin - diag(W_lin) of the linearised solution."""
    mats = reader.read_matrices(f)
    tasks = reader.read_sweep_tasks(f)
    diag_tasks = tasks[tasks["model"] == "free_diag"]
    if len(diag_tasks) == 0:
        return None
    t = diag_tasks.iloc[0]
    tid = int(t["id"])
    have = set(mats[mats["task_id"] == tid]["name"])
    if not {"d", "d_lin", "W_lin"} <= have:
        return None
    d = reader.read_matrix(f, tid, "d").ravel()
    d_lin = reader.read_matrix(f, tid, "d_lin").ravel()
    W = reader.read_matrix(f, tid, "W_lin")
    F = W - np.diag(np.diag(W))
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.6))
    axes[0].scatter(d_lin, d, s=8)
    lim = [min(d.min(), d_lin.min()), max(d.max(), d_lin.max())]
    axes[0].plot(lim, lim, "k--", lw=0.8)
    axes[0].set_xlabel("d_lin (linearised)")
    axes[0].set_ylabel("d (exact solution)")
    axes[0].set_title("diagonal part d")
    r = float(np.max(np.abs(F))) or 1.0
    im = axes[1].imshow(F, cmap="RdBu_r", vmin=-r, vmax=r)
    fig.colorbar(im, ax=axes[1])
    axes[1].set_title("free part F of W_lin (off-diagonal)")
    unit = float(t["lambda_unit"]) if "lambda_unit" in t else 1.0
    fig.suptitle(f"free_diag at the best pair lambda = {t['best_lambda'] / unit:.3g}, lambda_d = "
                 f"{t['best_lambda_d'] / unit:.3g} (job units), task {tid} ({t['data']}) - job '{job}'")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"task_id": tid, "d": d, "d_lin": d_lin}


def plot_all(path, outdir, data=None):
    """Write all plots of results file ``path`` into ``outdir``; return the paths written.

    If ``data`` is a dict it receives what was plotted: ``tasks``, ``curves`` (DataFrames),
    ``loss_vs_steps`` / ``loss_vs_seconds`` (output of :func:`loss_bands`, keyed by
    (param[, optimizer][, data], K)), ``best_fit`` (task_id, mse, final_loss), ``summary``
    (DataFrame: the file's stored /fit/summary) and ``sweep`` (when present). A fit file
    without a stored summary (a run in progress, or older than format 3) gets no
    summary.png; ``data["summary_unavailable"]`` then says why.
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
                data[name + "_layout"] = _plot_bands(bands, keycols, x, title, out, xlabel, job,
                                                     levels=tasks.attrs.get("target_losses", []))
                data[name] = bands
                written.append(out)
            out = os.path.join(outdir, "best_fit.png")
            data["best_fit"] = _plot_best_fit(f, tasks, out)
            written.append(out)
            out = os.path.join(outdir, "time_to_target.png")
            data["time_to_target"] = _plot_time_to_target(tasks, keycols, out, job)
            if data["time_to_target"] is not None:
                written.append(out)
            try:  # the summary covfit stored when the file was complete (never recomputed)
                summary = summary_table(f)
            except reader.SummaryUnavailable as e:
                data["summary_unavailable"] = str(e)
            else:
                out = os.path.join(outdir, "summary.png")
                _plot_summary(summary, keycols, out, job)
                data["summary"] = summary
                written.append(out)
        if "sweep" in f:
            sweep = reader.read_sweep(f)
            out = os.path.join(outdir, "sweep_r2.png")
            data["sweep"], data["sweep_best"] = _plot_sweep(f, sweep, out, job)
            written.append(out)
            if "matrices" in f["sweep"] or "matrix_index" in f["sweep"]:
                out = os.path.join(outdir, "sweep_linearisation.png")
                data["linearisation"] = _plot_linearisation(f, sweep, out, job)
                if data["linearisation"] is not None:
                    written.append(out)
                out = os.path.join(outdir, "sweep_w_hist.png")
                data["w_hist"] = _plot_w_hist(f, out, job)
                if data["w_hist"] is not None:
                    written.append(out)
                out = os.path.join(outdir, "sweep_diag.png")
                data["diag_model"] = _plot_diag_model(f, out, job)
                if data["diag_model"] is not None:
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
    data = {}
    paths = plot_all(args.results, args.outdir, data=data)
    if "summary_unavailable" in data:
        print(f"covfit.plot: summary.png not written: {data['summary_unavailable']}",
              file=sys.stderr)
    if not paths:
        print(f"covfit.plot: {args.results}: no finished tasks and no sweep yet; nothing "
              f"plotted", file=sys.stderr)
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
