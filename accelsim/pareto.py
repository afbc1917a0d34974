"""Pareto front of a sweep (energy vs cycles per inference, both lower is better) and its plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def pareto_mask(cycles, energy) -> np.ndarray:
    """True where no other point is at least as good on both axes and better on one."""
    c = np.asarray(cycles, dtype=float)
    e = np.asarray(energy, dtype=float)
    keep = np.isfinite(c) & np.isfinite(e)
    out = np.zeros(len(c), dtype=bool)
    for i in np.flatnonzero(keep):
        dominated = keep & (c <= c[i]) & (e <= e[i]) & ((c < c[i]) | (e < e[i]))
        out[i] = not dominated.any()
    return out


def point_label(row: pd.Series, params: list[str]) -> str:
    """"num_pes=32 fifo_depth=4": the swept values without their section."""
    return " ".join(f"{p.split('.', 1)[-1]}={row[p]}" for p in params)


def swept_parameters(table: pd.DataFrame) -> list[str]:
    """The columns of a sweep table that are swept parameters ("section.key")."""
    return [c for c in table.columns if "." in c and c.split(".")[0].isidentifier()]


def plot_pareto(table: pd.DataFrame, out: str | Path, title: str | None = None) -> Path:
    """Energy (uJ) vs cycles per inference of every point, one colour per trace, each point
    labelled with its parameters, the front of each trace drawn as a step line."""
    from accelsim.plaintext import mpl_text
    from accelsim.plots import pyplot, save_figure

    ok = table[table["error"].fillna("") == ""] if "error" in table else table
    params = swept_parameters(table)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for trace, group in ok.groupby("trace", sort=False):
        group = group.sort_values("cycles")
        front = group[pareto_mask(group["cycles"], group["energy_uj"])]
        pts = ax.scatter(group["cycles"], group["energy_uj"], s=18, alpha=0.6, label=mpl_text(trace))
        ax.step(front["cycles"], front["energy_uj"], where="post", color=pts.get_facecolor()[0],
                linewidth=1.5)
        ax.scatter(front["cycles"], front["energy_uj"], s=40, facecolors="none",
                   edgecolors="black", linewidths=1.0)
        small = len(group) <= 40  # beyond that only the front is labelled
        for _, r in (group if small else front).iterrows():
            ax.annotate(mpl_text(point_label(r, params)), (r["cycles"], r["energy_uj"]),
                        fontsize=6, xytext=(3, 3), textcoords="offset points")
    finite = ok["cycles"][ok["cycles"] > 0]
    if len(finite) and finite.max() > 20 * finite.min():
        ax.set_xscale("log")
    ax.set_xlabel("cycles per inference")
    ax.set_ylabel("energy per inference (µJ)")
    ax.set_title(mpl_text(title or "sweep: energy vs cycles (front circled)"))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    path = save_figure(fig, out)
    plt.close(fig)
    return path
