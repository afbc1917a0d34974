"""A one-page, self-contained HTML report of a run: summary, per-layer tables, cycle breakdown,
the energy and cycle figures (PNG data URIs), the configuration it ran with and what it did not
charge. One file to mail or archive: no network, no side files, no scripts.

Every text that comes from a file (trace, model, layer, arch names, the configuration) is
HTML-escaped; the page is written atomically like every other output.
"""

from __future__ import annotations

import base64
import json
import tempfile
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from accelsim.atomic import atomic_write, check_output_file
from accelsim.report import BASELINE, RATIO_HEADINGS

HTML_FORMATS = (".html", ".htm")

STYLE = """
body{font-family:sans-serif;margin:2em auto;max-width:1200px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.85em}
th,td{border:1px solid #ccc;padding:.2em .5em}td.n{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f0f0f0}caption{text-align:left;font-weight:bold;padding:.3em 0}
img{max-width:100%;border:1px solid #eee}pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.8em}
"""

LAYER_COLUMNS = [  # (column, heading, format)
    ("layer", "layer", None), ("variant", "variant", None), ("cycles", "cycles", "{:,.0f}"),
    ("load_balance", "load bal.", "{:.2f}"), ("utilisation", "util.", "{:.2f}"),
    ("effective_macs", "eff. MACs", "{:,.0f}"), ("ops", "ops", "{:,.0f}"),
    ("op", "op", None), ("weight_density", "weight density", "{:.3f}"),
    ("act_density", "act. density", "{:.3f}"), ("energy_pj", "energy (nJ)", "nJ"),
    ("topk_exposed_cycles", "top-k cyc", "{:,.0f}"), ("topk_mismatches", "mask mism.", "{:.1f}"),
]
CYCLE_PARTS = [  # array cycles per run: total = compute + top-k exposed + memory stalls
    ("compute_cycles", "compute"), ("topk_exposed_cycles", "top-k exposed"),
    ("memory_stall_cycles", "memory stalls"), ("cycles", "total"),
]
INSIDE_COMPUTE = [  # within the compute cycles: array cycles a full queue held, then PE-cycles
    ("stall_cycles", "queue stalls"), ("busy_pe_cycles", "busy PE-cyc"),
    ("starve_pe_cycles", "starved PE-cyc"), ("tail_pe_cycles", "tail PE-cyc"),
    ("empty_pe_cycles", "empty PE-cyc"),
]
BREAKDOWN_NOTE = ("total = compute + top-k exposed + memory stalls, in array cycles. Within compute: "
                  "queue stalls are array cycles in which a full queue held the next broadcast; "
                  "busy, starved (queue empty, more work to come), tail (done, waiting for the "
                  "slowest PE) and empty PE-cycles are summed over the PEs.")
SUMMARY_COLUMNS = [
    ("trace", "trace", None), ("arch", "arch", None), ("cycles", "cycles", "{:,.0f}"),
    ("iso_cycles", "iso cycles", "{:,.0f}"), ("energy_uj", "energy (µJ)", "{:.3f}"),
    ("mac_pct", "MAC %", "{:.2f}"), ("coverage_pct", "coverage %", "{:.1f}"),
    ("load_balance", "load bal.", "{:.2f}"),
    *[(column, heading, "{:.2f}x") for column, heading in RATIO_HEADINGS.items()],
]
ENERGY_COLUMNS = [("event", "event", None), ("pj", "pJ per event", "{:.4g}"),
                  ("count", "events, all rows", "{:,.0f}"), ("energy_nj", "energy (nJ)", "{:,.1f}")]
CONFIG_COLUMNS = ("arch_source", "arch_overrides", "arch_hash", "energy_table", "energy_hash")


def check_html_path(out: str | Path, option: str | None = "--html") -> Path:
    """Fail early (before a run) on an HTML path that cannot be written."""
    return check_output_file(out, HTML_FORMATS, option=option, kind="HTML report")


def _cell(value, fmt: str | None) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "<td></td>"
    if fmt is None:
        return f"<td>{escape(str(value))}</td>"
    if fmt == "nJ":
        return f'<td class="n">{float(value) / 1e3:,.1f}</td>'
    return f'<td class="n">{escape(fmt.format(value))}</td>'


def table(frame: pd.DataFrame, columns, caption: str = "") -> str:
    """An HTML table of `frame`'s listed (column, heading, format) columns that it has."""
    cols = [c for c in columns if c[0] in frame.columns]
    head = "".join(f"<th>{escape(h)}</th>" for _, h, _ in cols)
    body = "".join("<tr>" + "".join(_cell(r[c], f) for c, _, f in cols) + "</tr>\n"
                   for _, r in frame.iterrows())
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<tr>{head}</tr>\n{body}</table>\n"


def _figure_uri(draw, report: pd.DataFrame) -> str:
    """A figure drawn by accelsim.plots (`draw(report, path)`) as a PNG data URI."""
    with tempfile.TemporaryDirectory(prefix="accelsim-html-") as tmp:
        path = Path(tmp) / "figure.png"
        draw(report, path)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"data:image/png;base64,{data}"


def cycle_breakdown(report: pd.DataFrame) -> pd.DataFrame:
    """Cycles per inference of each run (trace, arch, variant) split into its parts."""
    parts = [c for c, _ in CYCLE_PARTS + INSIDE_COMPUTE if c in report.columns]
    return report.groupby(["trace", "arch", "variant"], sort=False)[parts].sum().reset_index()


def configurations(report: pd.DataFrame) -> list[tuple[dict, str, pd.DataFrame]]:
    """Each distinct configuration of the report: (provenance columns, pretty config JSON,
    the energy per event its rows were charged)."""
    cols = ["arch"] + [c for c in CONFIG_COLUMNS if c in report.columns]
    if "arch_config" in report.columns:
        cols.append("arch_config")
    out = []
    for _, r in report[cols].astype(str).drop_duplicates().iterrows():
        meta = {c: r[c] for c in cols if c != "arch_config"}
        blob = r.get("arch_config")
        try:
            pretty = json.dumps(json.loads(blob), indent=1, sort_keys=True) if isinstance(blob, str) else ""
        except ValueError:
            pretty = str(blob)
        same = np.logical_and.reduce([report[c].astype(str) == r[c] for c in cols])
        out.append((meta, pretty, energy_per_event(report[same])))
    return out


def energy_per_event(report: pd.DataFrame) -> pd.DataFrame:
    """The energy table a run used, read back from its rows: pJ per event = energy / count of
    each event (events that never occurred show no cost), with the counts per inference."""
    from accelsim.plots import EVENT_LABELS
    from accelsim.result import EVENTS

    rows = []
    for event in EVENTS:
        count_col, energy_col = f"events_{event}", f"energy_{event}_pj"
        if count_col not in report.columns or energy_col not in report.columns:
            continue
        count, energy = float(report[count_col].sum()), float(report[energy_col].sum())
        rows.append({"event": EVENT_LABELS.get(event, event), "pj": energy / count if count else None,
                     "count": count, "energy_nj": energy / 1e3})
    return pd.DataFrame(rows)


def not_simulated(report: pd.DataFrame) -> list[str]:
    """What the run did not charge, read from the report itself: rows a report marks as not
    simulated, top-k units not charged for traces without dynamic masks, layers whose masks the
    unit disagreed with, and cycle or energy parts that are zero in every row of a run."""
    from accelsim.plots import EVENT_LABELS
    from accelsim.result import EVENTS

    lines = []
    if "skipped" in report.columns:
        for _, r in report[report["skipped"].fillna(False).astype(bool)].iterrows():
            lines.append(f"{r['trace']} / {r['layer']}: skipped ({r['skipped']})")
    lines += unsimulated_lines(report)
    for (trace, arch), g in report.groupby(["trace", "arch"], sort=False):
        sparse = g[g["variant"] != BASELINE] if "variant" in g.columns else g
        if "topk_unit" in g.columns and (sparse["topk_unit"].astype(str) == "none").all():
            lines.append(f"{trace} on {arch}: no top-k unit charged (the trace has no dynamic masks)")
        if "topk_mismatches" in g.columns and (g["topk_mismatches"] > 0).any():
            layers = ", ".join(dict.fromkeys(g.loc[g["topk_mismatches"] > 0, "layer"].astype(str)))
            lines.append(f"{trace} on {arch}: the top-k unit's masks differ from the trace's in {layers}")
        zero = [h for c, h in CYCLE_PARTS[1:-1] + INSIDE_COMPUTE[:3]
                if c in g.columns and not (g[c] > 0).any()]
        zero += [EVENT_LABELS.get(e, e) + " energy" for e in EVENTS
                 if f"energy_{e}_pj" in g.columns and not (g[f"energy_{e}_pj"] > 0).any()]
        if zero:
            lines.append(f"{trace} on {arch}: zero in every layer (not modelled by the {g['dataflow'].iloc[0]} "
                         f"dataflow or nothing to charge): {', '.join(zero)}" if "dataflow" in g.columns
                         else f"{trace} on {arch}: zero in every layer: {', '.join(zero)}")
    return lines


def unsimulated_lines(report: pd.DataFrame) -> list[str]:
    """Per trace: the coverage of its simulated layers and the ops it lists as not simulated,
    grouped by op (or that the trace does not list them)."""
    if "ops" not in report.columns or "simulated" not in report.columns:
        return []
    lines = []
    for trace, g in report.groupby("trace", sort=False):
        g = g[g["variant"] == g["variant"].iloc[0]] if "variant" in g.columns else g
        simulated = g["simulated"].fillna(True).astype(bool)
        if "ops_listed" in g.columns and not g["ops_listed"].fillna(False).astype(bool).all():
            lines.append(f"{trace}: the trace does not list the ops it does not simulate "
                         "(coverage unknown)")
            continue
        total, done = float(g["ops"].sum()), float(g.loc[simulated, "ops"].sum())
        rest = g[~simulated]
        if rest.empty:
            continue
        groups = rest.groupby("op", sort=False)["ops"].agg(["count", "sum"])
        parts = ", ".join(f"{op} x{int(n)}: {ops:,.0f} ops" for op, (n, ops) in groups.iterrows())
        lines.append(f"{trace}: not simulated (zero cycles and energy): {parts}; the simulated "
                     f"layers hold {100 * done / total:.1f}% of the {total:,.0f} operations per "
                     "inference")
    return lines


def render(report: pd.DataFrame, title: str = "accelsim report") -> str:
    """The whole page. `report` is a checked report (plots.plottable_report for both figures)."""
    from accelsim import plots
    from accelsim.report import summary

    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>\n",
             f"<h1>{escape(title)}</h1>\n"]
    runs = report[["trace", "model", "method"]].drop_duplicates() if {"model", "method"} <= set(report.columns) \
        else report[["trace"]].drop_duplicates()
    parts.append("<h2>Traces</h2>\n" + table(runs, [("trace", "trace", None), ("model", "model", None),
                                                    ("method", "method", None)]))
    parts.append("<h2>Summary (per inference)</h2>\n" + table(summary(report), SUMMARY_COLUMNS))
    parts.append("<h2>Cycle breakdown (per inference)</h2>\n"
                 + table(cycle_breakdown(report), [("trace", "trace", None), ("arch", "arch", None),
                                                  ("variant", "variant", None)]
                         + [(c, h, "{:,.0f}") for c, h in CYCLE_PARTS + INSIDE_COMPUTE])
                 + f"<p>{escape(BREAKDOWN_NOTE)}</p>\n")
    for heading, draw in (("Energy per inference by component", plots.plot_energy),
                          ("Cycles per inference: where they go", plots.plot_cycles),
                          ("Cycles per layer", plots.plot_layers)):
        parts.append(f'<h2>{escape(heading)}</h2>\n<img alt="{escape(heading.lower())}" '
                     f'src="{_figure_uri(draw, report)}">\n')
    parts.append("<h2>Per-layer tables</h2>\n")
    for (trace, arch), group in report.groupby(["trace", "arch"], sort=False):
        parts.append(table(group, LAYER_COLUMNS, caption=f"{trace} on {arch}"))
    parts.append("<h2>Configuration it ran with</h2>\n")
    for meta, pretty, energy in configurations(report):
        items = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in meta.items())
        parts.append(f"<table>{items}</table>\n")
        parts.append(table(energy, ENERGY_COLUMNS, caption="energy per event (from the report's counts)"))
        if pretty:
            parts.append(f"<pre>{escape(pretty)}</pre>\n")
    missing = not_simulated(report)
    parts.append("<h2>What was not simulated</h2>\n")
    parts.append("<ul>" + "".join(f"<li>{escape(m)}</li>" for m in missing) + "</ul>\n" if missing
                 else "<p>none: every layer of every trace was simulated and charged</p>\n")
    parts.append("</body></html>\n")
    return "".join(parts)


def write_html(report: pd.DataFrame, out: str | Path, where: str | Path = "report",
               title: str = "accelsim report") -> Path:
    """Check the report can make both figures (one error line otherwise), then write the page
    atomically to `out`."""
    from accelsim.plots import plottable_report

    out = check_html_path(out)
    checked = plottable_report(report, where, "energy")
    checked = plottable_report(checked, where, "cycles")
    page = render(checked, title)
    return atomic_write(out, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
