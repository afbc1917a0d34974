"""Plots of the sweep CSVs, shaped like the JPnet paper's figures: accuracy drop vs winner rate
(Fig. 8), accuracy drop vs threshold-prediction subsample rate (Fig. 9), accuracy vs activation
density for static and dynamic masks (Fig. 7). matplotlib with the Agg backend; files written
atomically. Each axis shows its quantity in the unit of the CSV column (docs/report.md, "Units");
CSVs written before the units were named are read as today's (analysis.sweep_names).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from accelsim import plots as _plots
from accelsim.analysis.sweep_names import current_sweep_names
from accelsim.plaintext import mpl_text

__all__ = ["plot_winner_rates", "plot_eps", "plot_static_vs_dynamic", "check_figure_path"]


def check_figure_path(out) -> Path:
    """Fail early (before a long sweep) on a figure path that cannot be written."""
    return _plots.check_figure_path(out, "--plot")


def _pyplot():
    return _plots.pyplot()


def _save(fig, out) -> Path:
    return _plots.save_figure(fig, out, "--plot")


def plot_winner_rates(frame: pd.DataFrame, out, title: str | None = None) -> Path:
    """Fig. 8: accuracy drop (percentage points vs the unmasked network) against winner rate,
    one line per layer."""
    plt = _pyplot()
    frame = current_sweep_names(frame)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for layer, rows in frame.groupby("layer", sort=False):
        rows = rows.sort_values("rate")
        ax.plot(rows["rate"], rows["accuracy_drop_pp"], marker="o", ms=3, label=mpl_text(layer))
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("activation winner rate (fraction kept)")
    ax.set_ylabel("accuracy drop (percentage points)")
    ax.set_title(mpl_text(title) if title else "Activation pruning sensitivity (one layer at a time)")
    ax.grid(alpha=0.3)
    ax.legend(title="layer", fontsize=8)
    path = _save(fig, out)
    plt.close(fig)
    return path


def plot_eps(frame: pd.DataFrame, out, title: str | None = None) -> Path:
    """Fig. 9: accuracy drop vs exact top-k (percentage points) and measured activation density
    against the subsample rate eps (log axis), one line per scope ("all" and each layer)."""
    plt = _pyplot()
    frame = current_sweep_names(frame)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.4))
    for scope, rows in frame.groupby("scope", sort=False):
        rows = rows.sort_values("eps")
        style = {"lw": 2.2, "color": "black"} if scope == "all" else {"lw": 1.2}
        ax.plot(rows["eps"], rows["accuracy_drop_pp"], marker="o", ms=3, label=mpl_text(scope),
                **style)
        ax2.plot(rows["eps"], rows["act_density"], marker="o", ms=3, label=mpl_text(scope),
                 **style)
    for a in (ax, ax2):
        a.set_xscale("log")
        a.set_xlabel("subsample rate eps")
        a.grid(alpha=0.3, which="both")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_ylabel("accuracy drop vs exact top-k (percentage points)")
    ax.set_title(mpl_text(title) if title else "Threshold prediction: accuracy")
    ax2.set_ylabel("measured activation density (fraction non-zero)")
    ax2.set_title("Threshold prediction: kept activations")
    ax.legend(title="predicted in", fontsize=8)
    fig.tight_layout()
    path = _save(fig, out)
    plt.close(fig)
    return path


def plot_static_vs_dynamic(frame: pd.DataFrame, out, title: str | None = None) -> Path:
    """Fig. 7: accuracy against activation density for static thresholds (annotated with
    theta) and dynamic top-k masks at the same per-layer densities."""
    plt = _pyplot()
    frame = current_sweep_names(frame)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for mode, marker in (("static", "s"), ("dynamic", "o")):
        rows = frame[frame["mode"] == mode].sort_values("act_density")
        if rows.empty:
            continue
        ax.plot(rows["act_density"], rows["accuracy"], marker=marker, ms=4,
                label=f"{mode} ({'threshold' if mode == 'static' else 'top-k'})")
        if mode == "static":
            for _, r in rows.iterrows():
                ax.annotate(f"{r['threshold']:g}", (r["act_density"], r["accuracy"]),
                            textcoords="offset points", xytext=(3, -10), fontsize=7)
    base = frame[frame["mode"] == "unmasked"]
    if not base.empty:
        ax.axhline(float(base["accuracy"].iloc[0]), color="grey", ls="--", lw=0.8,
                   label="unmasked")
    ax.set_xlabel("activation density of the masked layers (fraction non-zero)")
    ax.set_ylabel("validation accuracy (fraction)")
    ax.set_title(mpl_text(title) if title else "Static vs dynamic activation pruning")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = _save(fig, out)
    plt.close(fig)
    return path
