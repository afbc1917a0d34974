"""Figures from a report: stacked per-component energy, per-layer cycles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from accelsim.atomic import atomic_write, check_output_file
from accelsim.errors import AccelsimError
from accelsim.plaintext import mpl_text, visible
from accelsim.report import BASELINE, current_names
from accelsim.result import EVENTS

EVENT_LABELS = {
    "mac": "MAC",
    "weight_read": "weight SRAM",
    "pointer_read": "pointer SRAM",
    "act_read": "activation read",
    "act_write": "activation write",
    "fifo_push": "queue push",
    "fifo_pop": "queue pop",
    "nzd": "non-zero detect",
    "topk_compare": "top-k compares",
    "dram_byte": "DRAM",
    "pe_cycle": "clock / idle",
}


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


FIGURE_FORMATS = (".png", ".pdf", ".svg")


def check_figure_path(out: str | Path, label: str = "") -> Path:
    """Fail early (before a long run) on a figure path that cannot be written."""
    return check_output_file(out, FIGURE_FORMATS, option=label or None, kind="figure")


def save_figure(fig, out: str | Path, label: str = "") -> Path:
    """Write a figure atomically (temp file, then rename)."""
    out = check_figure_path(out, label)
    # matplotlib picks the format from the name: give it the real suffix for the temp file
    return atomic_write(out, lambda tmp: fig.savefig(tmp, format=out.suffix[1:].lower(), dpi=150,
                                                     bbox_inches="tight"))


TEXT_COLUMNS = ("trace", "arch", "variant", "layer")


def _numeric(frame: pd.DataFrame, col: str, where: str) -> np.ndarray:
    """Column `col` as finite non-negative floats, or one line naming the first bad row."""
    if col not in frame.columns:
        raise AccelsimError(f"{where}: no {col!r} column")
    values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raw = frame[col].iloc[i]
        if isinstance(raw, (int, float, np.number)):
            shown, what = f"{float(raw):g}", "not a finite number >= 0"
        else:
            shown, what = visible(repr(str(raw))), "not a number"
        raise AccelsimError(f"{where}: column {col!r} row {i + 1} holds {shown} ({what})")
    return values


def plottable_report(report: pd.DataFrame, path: str | Path, figure: str) -> pd.DataFrame:
    """The report with the columns figure ("energy" or "cycles") draws checked: rows present,
    names non-empty (as text), numbers finite and >= 0 with something non-zero to draw, and for
    "cycles" an integer `layer_index`. A report that cannot make a meaningful figure is one
    error line, never a traceback or a blank figure."""
    where = str(path)
    if report.empty:
        raise AccelsimError(f"{where}: report has no rows to plot")
    frame = current_names(report).copy()
    for col in TEXT_COLUMNS:
        if col not in frame.columns:
            raise AccelsimError(f"{where}: no {col!r} column")
        empty = frame[col].isna()
        if empty.any():
            raise AccelsimError(f"{where}: column {col!r} row {int(np.flatnonzero(empty)[0]) + 1} "
                                "is empty")
        frame[col] = frame[col].astype(str)
    if figure == "energy":
        cols = [f"energy_{e}_pj" for e in EVENTS if f"energy_{e}_pj" in frame.columns]
        if not cols:
            raise AccelsimError(f"{where}: no per-component energy columns (energy_<event>_pj)")
        for col in cols:
            frame[col] = _numeric(frame, col, where)
        if not (frame[cols].to_numpy() > 0).any():
            raise AccelsimError(f"{where}: every energy value is zero; nothing to plot")
    else:
        frame["cycles"] = _numeric(frame, "cycles", where)
        if "iso_cycles" in frame.columns and frame["iso_cycles"].notna().all():
            for col in ("iso_cycles", "iso_multipliers"):  # drawn instead (run --per-multiplier)
                frame[col] = _numeric(frame, col, where)
        from accelsim.report import simulated_rows

        layers = simulated_rows(frame)  # unsimulated ops: layer_index -1, no bar
        index = _numeric(layers, "layer_index", where)
        if (index != np.round(index)).any():
            raise AccelsimError(f"{where}: column 'layer_index' holds a non-integer value")
        frame["layer_index"] = -1
        frame.loc[layers.index, "layer_index"] = index.astype(np.int64)
        positive = frame.groupby("trace", sort=False)["cycles"].max() > 0
        if not positive.all():
            trace = positive.index[~positive.to_numpy()][0]
            raise AccelsimError(f"{where}: every cycle count of trace '{visible(trace)}' is zero; "
                                "nothing to plot")
    return frame


def short_name(trace: str) -> str:
    """A trace file name without its extensions, for axis labels."""
    for ext in (".trace.safetensors", ".safetensors"):
        if trace.endswith(ext):
            return trace[: -len(ext)]
    return trace


def _bar_labels(frame: pd.DataFrame) -> list[str]:
    return [f"{mpl_text(short_name(t))}\n{mpl_text(a)} {mpl_text(v)}"
            for t, a, v in zip(frame["trace"], frame["arch"], frame["variant"])]


def plot_energy(report: pd.DataFrame, out: str | Path) -> None:
    """Stacked energy per inference by component, the baseline beside each sparse run."""
    plt = pyplot()
    cols = [f"energy_{e}_pj" for e in EVENTS if f"energy_{e}_pj" in report.columns]
    keys = ["trace", "arch", "variant"]
    per_run = report.groupby(keys, sort=False)[cols].sum().reset_index()
    per_run["order"] = per_run["variant"].map({BASELINE: 0, "sparse": 1})
    per_run = per_run.sort_values(["trace", "arch", "order"], kind="stable").reset_index(drop=True)
    values = per_run[cols].to_numpy() * 1e-6  # pJ -> uJ
    keep = values.sum(axis=0) > 0
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(per_run) + 3), 4.8))
    x = np.arange(len(per_run))
    bottom = np.zeros(len(per_run))
    cmap = plt.get_cmap("tab20")
    for i, col in enumerate(cols):
        if not keep[i]:
            continue
        event = col[len("energy_") : -len("_pj")]
        ax.bar(x, values[:, i], bottom=bottom, label=EVENT_LABELS.get(event, event), color=cmap(i), width=0.7)
        bottom += values[:, i]
    ax.set_xticks(x, _bar_labels(per_run), fontsize=7, rotation=35, ha="right", rotation_mode="anchor")
    ax.set_ylabel("energy per inference (µJ)")
    ax.set_title("Energy by component: baseline (skipping off) beside the sparse array")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="component")
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, out)
    plt.close(fig)


def plot_cycles(report: pd.DataFrame, out: str | Path) -> None:
    """Cycles per inference of every layer, one group of bars per layer and run. A report from
    `accelsim run --per-multiplier N` (one N throughout) is plotted at N multipliers. Ops a
    trace lists as not simulated have no cycles and no bar."""
    from accelsim.report import simulated_rows

    plt = pyplot()
    report = simulated_rows(report)
    traces = list(dict.fromkeys(report["trace"]))
    iso = ("iso_cycles" in report.columns and report["iso_cycles"].notna().all()
           and report["iso_multipliers"].nunique() == 1)
    column = "iso_cycles" if iso else "cycles"
    ylabel = (f"cycles at {int(report['iso_multipliers'].iloc[0])} multipliers (log)" if iso
              else "cycles per inference (log)")
    fig, axes = plt.subplots(len(traces), 1, figsize=(8, 3.2 * len(traces)), squeeze=False)
    for ax, trace in zip(axes[:, 0], traces):
        sub = report[report["trace"] == trace].pivot_table(
            index=["layer_index", "layer"], columns=["arch", "variant"], values=column, sort=False,
        ).dropna(axis=1, how="all")
        layers = [name for _, name in sub.index]
        x = np.arange(len(layers))
        width = 0.8 / max(1, sub.shape[1])
        for j, (arch, variant) in enumerate(sub.columns):
            ax.bar(x + j * width - 0.4 + width / 2, sub[(arch, variant)].to_numpy(), width,
                   label=f"{mpl_text(arch)} / {mpl_text(variant)}")
        ax.set_yscale("log")
        ax.set_xticks(x, [mpl_text(name) for name in layers])
        ax.set_xlabel("layer")
        ax.set_ylabel(ylabel)
        ax.set_title(mpl_text(short_name(trace)))
        ax.legend(fontsize=7)
        ax.grid(axis="y", alpha=0.3, which="both")
    fig.tight_layout()
    save_figure(fig, out)
    plt.close(fig)
