"""Figures from a report, one question each:

- energy: where does one inference's energy go, by component, for each trace, beside the
  baseline (the same array with skipping off), drawn once per array;
- cycles: where do one inference's cycles go: compute, queue stalls, exposed top-k time and
  memory stalls, each its own segment;
- layers: cycles of every layer of every run.

The energy and cycle figures are horizontal bars with one panel per model (a small network's
bars next to a big one's would be invisible on a shared axis), a fixed width whatever the number
of traces, each array's multiplier count in its heading, and on every bar its total and the
summary's ratios (accelsim.report.summary: the same numbers as the console table).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from accelsim.atomic import atomic_write, check_output_file
from accelsim.errors import AccelsimError
from accelsim.plaintext import mpl_text, visible
from accelsim.report import BASELINE, current_names, hardware_key, run_keys, simulated_rows, summary
from accelsim.result import EVENTS

EVENT_LABELS = {
    "mac": "MAC",
    "weight_read": "weight SRAM",
    "weight_write": "operand load",
    "pointer_read": "pointer SRAM",
    "act_read": "activation read",
    "act_write": "activation write",
    "fifo_push": "queue push",
    "fifo_pop": "queue pop",
    "nzd": "non-zero detect",
    "acc_update": "accumulator update",
    "topk_compare": "top-k compares",
    "dram_byte": "DRAM",
    "pe_cycle": "clock / idle",
}
CYCLE_PARTS = {  # segment -> label; they add up to `cycles` (docs/report.md, "Figures")
    "busy_cycles": "compute",
    "stall_cycles": "queue stalls (full queue)",
    "topk_exposed_cycles": "top-k exposed",
    "memory_stall_cycles": "memory stalls",
}
FIGURE_WIDTH_IN = 11.0  # every figure: width fixed, height grows with the bars
LABEL_CHARS = 46  # bar labels are cut to this, so a long name cannot widen the figure


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
# what accelsim.report.totals / summary read: a table without them cannot give the ratios
SUMMARY_COLUMNS = ("cycles", "time_us", "energy_pj", "dense_macs", "effective_macs",
                   "paper_estimate_macs", "dram_bytes", "topk_exposed_cycles", "topk_mismatches",
                   "busy_pe_cycles", "units", "compute_cycles")


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
    """The report with the columns `figure` ("energy", "cycles" or "layers") draws checked: rows
    present, names non-empty (as text), numbers finite and >= 0 with something non-zero to draw,
    an integer `layer_index`. A report that cannot make a meaningful figure is one error line,
    never a traceback or a blank figure. Old column names are read as today's."""
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
    if figure in ("energy", "cycles"):
        for col in SUMMARY_COLUMNS + ("peak_macs_per_cycle",):
            frame[col] = _numeric(frame, col, where)
        for col in ("stall_cycles", "memory_stall_cycles"):
            frame[col] = _numeric(frame, col, where) if col in frame.columns else 0.0
        if (frame["compute_cycles"] < frame["stall_cycles"]).any():
            i = int(np.flatnonzero(frame["compute_cycles"] < frame["stall_cycles"])[0])
            raise AccelsimError(f"{where}: row {i + 1} has more queue-stall than compute cycles")
    frame["cycles"] = _numeric(frame, "cycles", where)
    if "iso_cycles" in frame.columns and frame["iso_cycles"].notna().all():
        for col in ("iso_cycles", "iso_multipliers"):  # drawn instead (run --per-multiplier)
            frame[col] = _numeric(frame, col, where)
    layers = simulated_rows(frame)  # unsimulated ops: layer_index -1, no bar in the layer figure
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


def _cut(text: str, chars: int = LABEL_CHARS) -> str:
    text = visible(text)
    return text if len(text) <= chars else text[: chars - 1] + "…"


def iso_multipliers(report: pd.DataFrame) -> int | None:
    """N of a report from `accelsim run --per-multiplier N` (one N throughout), else None."""
    if ("iso_cycles" in report.columns and report["iso_cycles"].notna().all()
            and report["iso_multipliers"].nunique() == 1):
        return int(report["iso_multipliers"].iloc[0])
    return None


def _array_name(report: pd.DataFrame) -> pd.Series:
    """The array's own name ("eie64"), without the `--set` items the arch column adds."""
    def name(row) -> str:
        try:
            return str(json.loads(row["arch_config"])["arch"]["name"])
        except (KeyError, TypeError, ValueError):
            return str(row["arch"])

    if "arch_config" not in report.columns:
        return report["arch"].astype(str)
    return report.apply(name, axis=1)


def bars(report: pd.DataFrame, values: list[str]) -> pd.DataFrame:
    """One row per bar: per model and array, each distinct baseline once, then each sparse run
    (dense network, WP, then the others, in report order), with the summed `values` columns,
    the run's multipliers and the summary's ratios against the baseline, dense network and WP."""
    report = current_names(report)
    for col in ("model", "method"):
        if col not in report.columns:
            report = report.assign(**{col: "network" if col == "model" else ""})
    report = report.assign(_hw=hardware_key(report), _array=_array_name(report),
                           _mult=report["peak_macs_per_cycle"])
    keys = run_keys(report)
    ratios = summary(report)
    report = simulated_rows(report)  # unsimulated ops have no cycles, no energy and no variant
    per_run = report.groupby(keys + ["variant"], sort=False, dropna=False).agg(
        **{c: (c, "sum") for c in values},
        model=("model", "first"), method=("method", "first"),
        _hw=("_hw", "first"), _array=("_array", "first"), _mult=("_mult", "max"),
        _order=("layer_index", lambda s: s.index[0]),
    ).reset_index()
    ratio_cols = [c for c in ratios.columns if "_vs_" in c]
    per_run = per_run.merge(ratios[keys + ratio_cols], on=keys, how="left") if len(ratios) else per_run
    rank = {"dense": 0, "wp": 1}
    out = []
    for model, mg in per_run.groupby("model", sort=False):
        for hw, g in mg.groupby("_hw", sort=False):
            base = g[g["variant"] == BASELINE]
            distinct = base.drop_duplicates(subset=values)
            for _, b in distinct.iterrows():
                label = "baseline (skipping off)" if len(distinct) == 1 else \
                    f"baseline: {short_name(b['trace'])}"
                out.append({**b.to_dict(), "label": label, "is_baseline": True})
            sparse = g[g["variant"] != BASELINE].copy()
            sparse["_rank"] = sparse["method"].map(rank).fillna(2)
            for _, r in sparse.sort_values(["_rank", "_order"], kind="stable").iterrows():
                extra = r["arch"][len(r["_array"]):].strip("[]") if r["arch"].startswith(r["_array"]) \
                    else r["arch"]
                label = short_name(r["trace"]) + (f" · {extra}" if extra else "")
                out.append({**r.to_dict(), "label": label, "is_baseline": False})
    return pd.DataFrame(out)


def ratio_text(row: pd.Series, quantity: str) -> str:
    """"23.71x vs baseline · 2.40x vs dense · 3.08x vs WP": the summary's ratios that exist."""
    parts = []
    for suffix, name in (("baseline", "baseline"), ("dense_network", "dense"), ("wp", "WP")):
        value = row.get(f"{quantity}_vs_{suffix}")
        if value is not None and value == value:
            parts.append(f"{value:.2f}x vs {name}")
    return " · ".join(parts)


def total_text(value: float, unit: str) -> str:
    """"62.6 µJ", "0.614 µJ", "52,892 cycles": three significant digits, no exponent."""
    shown = f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
    return f"{shown} {unit}"


def _draw_panels(table: pd.DataFrame, segments: dict[str, str], unit: str, axis: str,
                 quantity: str, title: str, note: str, scale=None):
    """Horizontal stacked bars, one panel per model, the arrays as headed groups; each bar
    labelled with its total (`unit`) and its ratios. Returns the figure."""
    plt = pyplot()
    models = list(dict.fromkeys(table["model"]))
    heights = []
    for model in models:
        g = table[table["model"] == model]
        heights.append(len(g) + g["_hw"].nunique())
    fig, axes = plt.subplots(len(models), 1, figsize=(FIGURE_WIDTH_IN, 0.9 + sum(0.27 * h + 0.75 for h in heights)),
                             squeeze=False, gridspec_kw={"height_ratios": [h + 2 for h in heights]})
    cmap = plt.get_cmap("tab20")
    colours = {c: cmap(i) for i, c in enumerate(segments)}
    drawn = set()
    for ax, model in zip(axes[:, 0], models):
        g = table[table["model"] == model]
        y, ticks, labels, bold = 0, [], [], []
        for _, group in g.groupby("_hw", sort=False):
            mult = int(group["_mult"].max())
            ticks.append(y)
            labels.append(f"{_cut(group['_array'].iloc[0], 24)}: {mult:,} multipliers")
            bold.append(True)
            y += 1
            for _, r in group.iterrows():
                vals = np.array([r[c] for c in segments], dtype=float) * (scale(r) if scale else 1.0)
                left = 0.0
                for c, v in zip(segments, vals):
                    if v > 0:
                        ax.barh(y, v, left=left, color=colours[c], height=0.7,
                                hatch="//" if r["is_baseline"] else None, edgecolor="white", linewidth=0.3)
                        drawn.add(c)
                        left += v
                text = total_text(left, unit)
                ratios = "" if r["is_baseline"] else ratio_text(r, quantity)
                ax.annotate(f"{text}   {ratios}" if ratios else text, (left, y), xytext=(4, 0),
                            textcoords="offset points", va="center", fontsize=7)
                ticks.append(y)
                labels.append("   " + mpl_text(_cut(r["label"])))
                bold.append(False)
                y += 1
        ax.set_yticks(ticks, [mpl_text(lab) if b else lab for lab, b in zip(labels, bold)], fontsize=8)
        for tick, b in zip(ax.get_yticklabels(), bold):
            if b:
                tick.set_fontweight("bold")
        ax.tick_params(axis="y", length=0)
        ax.set_ylim(y - 0.4, -0.6)
        totals_ = [sum(float(r[c]) for c in segments) * (scale(r) if scale else 1.0) for _, r in g.iterrows()]
        ax.set_xlim(0, max(totals_) / 0.5 if max(totals_) > 0 else 1.0)  # room for the labels
        ax.set_xlabel(axis)
        ax.set_title(mpl_text(_cut(f"{model}", 60)), loc="left", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=colours[c], label=segments[c]) for c in segments if c in drawn]
    handles.append(Patch(facecolor="lightgrey", hatch="//", edgecolor="white", label="baseline (hatched)"))
    fig.suptitle(title, x=0.01, ha="left", fontsize=11)
    fig.tight_layout()
    # below the panels: what the figure shows, then the segments' colours
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.01, 0.0), ncol=6, fontsize=7,
               frameon=False, title="\n".join(textwrap.wrap(note, 150)), title_fontsize=7,
               alignment="left")
    return fig


def plot_energy(report: pd.DataFrame, out: str | Path) -> None:
    """Energy per inference by component: one panel per model, each array's baseline once
    (hatched), then every trace; each bar's total and its ratios written beside it."""
    cols = [f"energy_{e}_pj" for e in EVENTS if f"energy_{e}_pj" in report.columns]
    table = bars(report, cols)
    used = [c for c in cols if (table[c] > 0).any()]
    segments = {c: EVENT_LABELS.get(c[len("energy_"):-len("_pj")], c) for c in used}
    fig = _draw_panels(table, segments, "µJ", "energy per inference (µJ)", "energy_ratio",
                       "Energy per inference by component",
                       "Hatched: the baseline, the same array with skipping switched off, drawn once per "
                       "array. Beside each bar: its total and how many times less energy it takes than "
                       "the baseline, the dense network and the WP network on the same array.",
                       scale=lambda r: 1e-6)
    save_figure(fig, out)
    pyplot().close(fig)


def plot_cycles(report: pd.DataFrame, out: str | Path) -> None:
    """Cycles per inference split into compute, queue stalls, exposed top-k time and memory
    stalls: one panel per model, each array's baseline once; at N multipliers for a report of
    `accelsim run --per-multiplier N`."""
    report = current_names(report)
    report = report.assign(busy_cycles=report["compute_cycles"] - report["stall_cycles"])
    table = bars(report, list(CYCLE_PARTS) + ["cycles"] + (["iso_cycles"] if "iso_cycles" in report else []))
    n = iso_multipliers(report)
    axis = f"cycles per inference at {n:,} multipliers" if n else "cycles per inference"
    note = ("Hatched: the baseline, the same array with skipping switched off, drawn once per array. "
            "Beside each bar: its total and how many times fewer cycles it takes than the baseline, "
            "the dense network and the WP network on the same array.")
    if n:
        note += (f" Every array scaled to {n:,} multipliers (cycles x its multipliers / {n:,}), "
                 "assuming throughput scales with multipliers.")
    else:
        note += " Arrays of different multiplier counts: compare within an array, or run --per-multiplier."
    fig = _draw_panels(table, CYCLE_PARTS, "cycles", axis, "speedup", "Cycles per inference: where they go", note,
                       scale=(lambda r: r["iso_cycles"] / r["cycles"] if r["cycles"] else 1.0) if n else None)
    save_figure(fig, out)
    pyplot().close(fig)


def plot_layers(report: pd.DataFrame, out: str | Path) -> None:
    """Cycles per inference of every layer, one panel per trace, a bar per array and variant;
    the legend states each array's multipliers. A report from `accelsim run --per-multiplier N`
    (one N throughout) is plotted at N multipliers. Ops a trace lists as not simulated have no
    cycles and no bar."""
    plt = pyplot()
    report = simulated_rows(current_names(report))
    traces = list(dict.fromkeys(report["trace"]))
    n = iso_multipliers(report)
    column = "iso_cycles" if n else "cycles"
    ylabel = f"cycles at {n:,} multipliers (log)" if n else "cycles per inference (log)"
    mult = report.groupby("arch", sort=False)["peak_macs_per_cycle"].max() \
        if "peak_macs_per_cycle" in report.columns else None
    fig, axes = plt.subplots(len(traces), 1, figsize=(FIGURE_WIDTH_IN * 0.75, 3.2 * len(traces)),
                             squeeze=False)
    pairs = plt.get_cmap("tab20")  # an array's sparse run dark, its baseline the light tone
    array_of = dict(zip(report["arch"], _array_name(report)))  # eie64[topk...] is eie64's colour
    arrays = list(dict.fromkeys(array_of.values()))
    for ax, trace in zip(axes[:, 0], traces):
        sub = report[report["trace"] == trace].pivot_table(
            index=["layer_index", "layer"], columns=["arch", "variant"], values=column, sort=False,
        ).dropna(axis=1, how="all")
        layers = [name for _, name in sub.index]
        x = np.arange(len(layers))
        width = 0.8 / max(1, sub.shape[1])
        for j, (arch, variant) in enumerate(sub.columns):
            count = f" ({int(mult[arch]):,} mult.)" if mult is not None and not n else ""
            tone = 2 * (arrays.index(array_of[arch]) % 10) + (variant == BASELINE)
            ax.bar(x + j * width - 0.4 + width / 2, sub[(arch, variant)].to_numpy(), width,
                   color=pairs(tone), label=f"{mpl_text(_cut(arch, 30))}{count} / {mpl_text(variant)}")
        ax.set_yscale("log")
        ax.set_xticks(x, [mpl_text(_cut(name, 16)) for name in layers])
        ax.set_xlabel("layer")
        ax.set_ylabel(ylabel)
        ax.set_title(mpl_text(_cut(short_name(trace), 60)))
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, out)
    plt.close(fig)


FIGURES = {"energy": plot_energy, "cycles": plot_cycles, "layers": plot_layers}  # name -> drawer
