"""The report's figures answer one question each and say what a reader needs: the baseline drawn
once per array, the ratios of the summary written on the bars (checked against ratios computed
here from the per-layer rows), one panel per model, the multiplier count of every array, a
width that does not grow with the number of traces, the cycle breakdown's segments adding up
to the cycles, and a table that cannot make the figure refused in one line."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import accelsim.plots as plots
from accelsim.analysis.golden import golden_path
from accelsim.report import per_multiplier

TRACE = ".trace.safetensors"


@pytest.fixture(scope="module")
def golden():
    """Both golden reports: 8 reference traces (dense, WP, JP, JP threshold; MLP-3 and LeNet-4)
    on eie64 and cnvlutin, threshold traces on the arrays' threshold-unit variants (the ViT
    traces, also in the golden files, are left out: these checks are written for the CNNs)."""
    both = pd.concat([pd.read_csv(golden_path(a)) for a in ("eie64", "cnvlutin")], ignore_index=True)
    return both[both["model"].isin(["mlp3", "lenet4"])].reset_index(drop=True)


def drawn(monkeypatch, draw, report, tmp_path):
    """Draw with `draw` and return the figure instead of writing it."""
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, out: figures.append(fig))
    draw(report, tmp_path / "f.png")
    return figures[0]


def bar_texts(fig) -> dict[str, list[tuple[str, str]]]:
    """{panel title: [(bar or heading label, the text written beside the bar)]}, top to bottom."""
    out = {}
    for ax in fig.axes:
        labels = {round(float(t)): lab.get_text().strip() for t, lab in zip(ax.get_yticks(), ax.get_yticklabels())}
        notes = {round(a.xy[1]): a.get_text() for a in ax.texts if hasattr(a, "xy")}
        out[ax.get_title(loc="left")] = [(labels[y], notes.get(y, "")) for y in sorted(labels)]
    return out


def per_run(g: pd.DataFrame, column: str) -> pd.Series:
    return g.groupby(["trace", "arch", "variant"])[column].sum()


def test_energy_baseline_once_per_array_and_ratios_on_the_bars(golden, monkeypatch, tmp_path):
    g = golden[golden["arch"].str.startswith("eie64")]
    fig = drawn(monkeypatch, plots.plot_energy, g, tmp_path)
    panels = bar_texts(fig)
    assert list(panels) == ["lenet4", "mlp3"]  # one panel per model: MLP-3 on its own axis
    energy = per_run(g, "energy_pj")
    for model, rows in panels.items():
        bars = dict(rows)
        # the array heading states its multipliers; its baseline is drawn once, not per trace
        assert "eie64: 64 multipliers" in bars
        assert [label for label, _ in rows].count("baseline (skipping off)") == 1
        traces = sorted(t for t in set(g["trace"]) if t.startswith(model))
        assert sorted(b.split(" · ")[0] + TRACE for b in bars if b.startswith(model)) == traces
        arch = {t: g.loc[g["trace"] == t, "arch"].iloc[0] for t in traces}
        wp, dense = f"{model}-wp{TRACE}", f"{model}-dense{TRACE}"
        for t in traces:
            label = next(b for b in bars if b.split(" · ")[0] == t[: -len(TRACE)])
            text = bars[label]
            mine = energy[(t, arch[t], "sparse")]
            assert text.startswith(plots.total_text(mine * 1e-6, "µJ"))
            expect = {"baseline": energy[(t, arch[t], "baseline")] / mine}
            if t != dense:  # the threshold traces too: WP and dense have no masks, same hardware
                expect["dense"] = energy[(dense, "eie64", "sparse")] / mine
            if t != wp:
                expect["WP"] = energy[(wp, "eie64", "sparse")] / mine
            shown = dict((name, float(v)) for v, name in re.findall(r"([\d.]+)x vs (\w+)", text))
            assert shown == pytest.approx({k: round(v, 2) for k, v in expect.items()}, abs=0.006)


def test_cycle_breakdown_segments_add_up_and_show_topk_and_stalls(golden, monkeypatch, tmp_path):
    g = golden[golden["model"] == "mlp3"]
    fig = drawn(monkeypatch, plots.plot_cycles, g, tmp_path)
    ax = fig.axes[0]
    labels = {round(float(t)): lab.get_text().strip() for t, lab in zip(ax.get_yticks(), ax.get_yticklabels())}
    widths: dict[int, dict[tuple, float]] = {}  # bar position -> segment colour -> width
    for patch in ax.patches:
        y = round(patch.get_y() + patch.get_height() / 2)
        colour = tuple(patch.get_facecolor())
        widths.setdefault(y, {})[colour] = widths.get(y, {}).get(colour, 0) + patch.get_width()
    # the legend names the segments; each run's segments add up to its cycles per inference,
    # and top-k exposure and queue stalls are segments of their own
    legend = fig.legends[0]
    colour = {t.get_text(): tuple(h.get_facecolor()) for t, h in zip(legend.get_texts(), legend.legend_handles)}
    assert {"compute", "queue stalls (full queue)", "top-k exposed"} <= set(colour)
    jp = widths[min(y for y, label in labels.items() if label == "mlp3-jp")]  # eie64, the first array
    run = (f"mlp3-jp{TRACE}", "eie64", "sparse")
    assert sum(jp.values()) == pytest.approx(per_run(g, "cycles")[run])
    assert jp[colour["top-k exposed"]] == pytest.approx(per_run(g, "topk_exposed_cycles")[run])
    assert jp[colour["queue stalls (full queue)"]] == pytest.approx(per_run(g, "stall_cycles")[run])
    assert per_run(g, "topk_exposed_cycles")[run] > 0 and per_run(g, "stall_cycles")[run] > 0
    assert "cnvlutin: 4,096 multipliers" in labels.values() and "eie64: 64 multipliers" in labels.values()


def test_per_multiplier_report_is_drawn_at_n_multipliers(golden, monkeypatch, tmp_path):
    g = per_multiplier(golden[(golden["model"] == "mlp3") & ~golden["trace"].str.contains("threshold")], 64)
    fig = drawn(monkeypatch, plots.plot_cycles, g, tmp_path)
    assert fig.axes[0].get_xlabel() == "cycles per inference at 64 multipliers"
    rows = bar_texts(fig)["mlp3"]
    cnv = [text for label, text in rows if label == "mlp3-wp"][1]  # the second array: cnvlutin
    expect = per_run(g, "iso_cycles")[(f"mlp3-wp{TRACE}", "cnvlutin", "sparse")]
    assert cnv.startswith(plots.total_text(expect, "cycles"))
    assert expect == pytest.approx(per_run(g, "cycles")[(f"mlp3-wp{TRACE}", "cnvlutin", "sparse")] * 64)


@pytest.mark.parametrize("figure", ["energy", "cycles"])
def test_width_is_bounded_whatever_the_number_of_traces(golden, tmp_path, figure):
    from PIL import Image

    one = golden[(golden["trace"] == f"mlp3-jp{TRACE}") & (golden["arch"] == "eie64")]
    many = pd.concat([one.assign(trace=f"run-{i:02d}-" + "x" * (80 if i == 7 else 0) + TRACE)
                      for i in range(30)], ignore_index=True)
    out = tmp_path / f"{figure}.png"
    getattr(plots, f"plot_{figure}")(plots.plottable_report(many, "many", figure), out)
    width, height = Image.open(out).size
    assert width <= 1800 and height > 1500  # 30 bars: the figure grows down, not sideways


@pytest.mark.parametrize("edit, figure, phrase", [
    (lambda f: f.drop(columns="compute_cycles"), "cycles", "no 'compute_cycles' column"),
    (lambda f: f.assign(stall_cycles=f["compute_cycles"] + 1), "cycles",
     "row 1 has more queue-stall than compute cycles"),
    (lambda f: f.assign(peak_macs_per_cycle=np.nan), "energy",
     "column 'peak_macs_per_cycle' row 1 holds nan (not a finite number >= 0)"),
])
def test_a_table_that_cannot_make_the_figure_is_one_line(golden, tmp_path, cli, edit, figure, phrase):
    path = tmp_path / "bad.csv"
    edit(golden[golden["model"] == "mlp3"]).to_csv(path, index=False)
    out = tmp_path / "f.png"
    code, _, err = cli("plot", figure, path, "-o", out)
    assert code == 2 and err == f"error: {path}: {phrase}\n" and not out.exists()
