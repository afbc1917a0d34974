"""Simulator commands: `accelsim run`, `accelsim plot energy|cycles`, `accelsim report`,
`accelsim demo`.

Only click is imported at module level; numba kernels load when a command runs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from accelsim.atomic import check_output_file, make_output_dir
from accelsim.errors import AccelsimError
from accelsim.plaintext import rich_text, visible


def _simulate(traces: list[str], arch_spec: str, overrides: list[str], energy_spec: str | None):
    """Run every trace on the architecture (and its baseline, skipping off); returns the report frame."""
    from accelsim.api import resolve, simulate, trace_list
    from accelsim.simulate import mask_mismatch_warning

    config = resolve(arch_spec, overrides, energy_spec)[0]  # fail on a bad arch before a trace
    trace_list(traces)
    with _LazyProgress(f"simulating on {config.arch.name}") as progress:
        report = simulate(traces, arch_spec, overrides, energy_spec, progress=progress.advance)
    for trace, rows in report.groupby("trace", sort=False):
        warning = mask_mismatch_warning(trace, config.topk.scheme, set(rows["mask_scheme"]))
        if warning:
            click.echo(warning, err=True)
    return report


PROGRESS_DELAY_S = 1.0  # runs shorter than this show no progress line


class _LazyProgress:
    """A progress line that appears only once a run has taken more than a second, and only on
    a terminal (in a log file a transient line would end as a blank line before any error)."""

    def __init__(self, title: str, delay_s: float | None = None):
        self.title = title
        self.delay_s = PROGRESS_DELAY_S if delay_s is None else delay_s
        self.start = time.monotonic()
        self.progress = None
        self.task = None

    def __enter__(self):
        return self

    def advance(self, trace: str, what: str) -> None:
        if self.progress is None and time.monotonic() - self.start > self.delay_s \
                and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                console=Console(stderr=True), transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task(self.title)
        if self.progress is not None:
            self.progress.update(self.task, description=visible(f"{self.title}: {trace} {what}"))

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()
        return False


def print_report(report, console=None) -> None:
    """Console tables: per-layer figures of each run, then the summary against the baselines."""
    from rich.console import Console
    from rich.table import Table

    from accelsim.plots import short_name
    from accelsim.report import RATIO_HEADINGS, current_names, summary

    report = current_names(report)
    # Wide enough for every column when writing to a file or a pipe (rich assumes 80 there).
    console = console or Console(width=None if sys.stdout.isatty() else 160)
    has_ops = "ops" in report.columns
    for (trace, arch), group in report.groupby(["trace", "arch"], sort=False):
        table = Table(title=rich_text(f"{trace} on {arch}"), title_justify="left")
        cols = ["layer", "variant", "cycles", "load bal.", "util.", "eff. MACs", "energy (nJ)", "top-k cyc", "mask mism."]
        if has_ops:
            cols.insert(6, "ops")
        for col in cols:
            table.add_column(col, justify="left" if col in ("layer", "variant") else "right")
        shown = set()
        for _, r in group.iterrows():
            if has_ops and not _simulated(r):
                if r["layer"] in shown:
                    continue  # one row per op (it is the same on every variant)
                shown.add(r["layer"])
                table.add_row(rich_text(r["layer"]), "not simulated", "0", "", "",
                              f"{r['effective_macs']:,.0f}" if r["effective_macs"] else "",
                              f"{r['ops']:,.0f}", "", "", "", style="dim")
                continue
            cells = [
                rich_text(r["layer"]), rich_text(r["variant"]), f"{r['cycles']:,.0f}", f"{r['load_balance']:.2f}",
                f"{r['utilisation']:.2f}", f"{r['effective_macs']:,.0f}", f"{r['energy_pj'] / 1e3:,.1f}",
                f"{r['topk_exposed_cycles']:,.0f}", f"{r['topk_mismatches']:.1f}",
            ]
            if has_ops:
                cells.insert(6, f"{r['ops']:,.0f}")
            table.add_row(*cells)
        console.print(table)
    summ = summary(report)
    table = Table(title="summary (per inference; ratios: how many times fewer cycles / less energy)",
                  title_justify="left")
    cols = ["trace", "arch", "cycles", "energy (µJ)", "MAC %", "load bal."]
    has_iso = "iso_cycles" in summ.columns
    if has_iso:
        cols.insert(3, f"cycles @{int(report['iso_multipliers'].iloc[0])} mult.")
    # "speedup\nvs baseline": two-line headings keep six ratio columns within 160 characters
    ratios = [(c, RATIO_HEADINGS[c].replace(" vs ", "\nvs ")) for c in summ.columns if c in RATIO_HEADINGS]
    cols += [h for _, h in ratios]
    for col in cols:
        table.add_column(col, justify="left" if col in ("trace", "arch") else "right")
    for _, r in summ.iterrows():
        cells = [
            rich_text(short_name(r["trace"])), rich_text(r["arch"]), f"{r['cycles']:,.0f}", f"{r['energy_uj']:.3f}", f"{r['mac_pct']:.2f}",
            f"{r['load_balance']:.2f}",
        ]
        if has_iso:
            cells.insert(3, f"{r['iso_cycles']:,.0f}")
        cells += ["" if r[c] != r[c] or r[c] is None else f"{r[c]:.2f}x" for c, _ in ratios]
        table.add_row(*cells)
    console.print(table)
    for line in coverage_lines(report, summ):
        console.print(rich_text(line))


def coverage_lines(report, summ) -> list[str]:
    """One line per trace: what share of the network's operations its cycles and energy cover."""
    if "coverage_pct" not in summ.columns:
        return []
    lines = []
    for trace, rows in summ.groupby("trace", sort=False):
        pct = rows["coverage_pct"].iloc[0]
        if pct != pct:
            lines.append(f"coverage of {trace}: unknown (the trace does not list the ops it does "
                         "not simulate); cycles and energy cover its layers")
            continue
        mine = report[(report["trace"] == trace) & (report["variant"] == report["variant"].iloc[0])]
        mine = mine[mine["arch"] == mine["arch"].iloc[0]]
        rest = int((~mine["simulated"].astype(bool)).sum())
        lines.append(f"coverage of {trace}: {pct:.1f}% of {mine['ops'].sum():,.0f} operations per "
                     f"inference (a MAC = 2) are in the simulated layers; {rest} op(s) listed as "
                     "not simulated")
    return lines


def _simulated(row) -> bool:
    value = row.get("simulated", True)
    return True if value != value else bool(value)  # NaN (a report without the column): simulated


@click.command("run")
@click.option("--trace", "traces", multiple=True, type=click.Path(dir_okay=False),
              help="Trace file to replay (repeat for several; a weight-pruned trace becomes a baseline).")
@click.option("--topology", "topologies", multiple=True, type=click.Path(dir_okay=False),
              help="SCALE-Sim topology CSV (conv or GEMM form), run as a synthetic trace (repeatable).")
@click.option("--weight-density", type=float, default=1.0, show_default=True,
              help="--topology: fraction of weights kept (magnitude-pruned random weights).")
@click.option("--act-density", type=float, default=1.0, show_default=True,
              help="--topology: fraction of non-zero input activations.")
@click.option("--nm", "nm_text", default=None, metavar="N:M",
              help="--topology: prune weights N:M along the reduction dimension; on a systolic "
                   "array with systolic.nm unset, also sets systolic.nm and sparsity.weights=skip.")
@click.option("--samples", type=click.IntRange(1, 4096), default=1, show_default=True,
              help="--topology: samples (inputs) per layer.")
@click.option("--arch", "arch_spec", default="eie64", show_default=True,
              help="Preset name (eie64, cnvlutin, scnn, systolic-os|ws|is) or an architecture TOML file.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override an architecture field, e.g. --set eie.fifo_depth=4.")
@click.option("--energy", "energy_spec", default=None, help="Energy table TOML (default: the arch's table).")
@click.option("--out", "out", default=None,
              help="Write the per-layer report (.csv, .parquet or .json); checked before simulating.")
@click.option("--per-multiplier", "iso", type=click.IntRange(1, 2**31), is_flag=False,
              flag_value=64, default=None, metavar="[N]",
              help="Add iso_cycles: cycles scaled to N multipliers (default 64), to compare arrays.")
@click.option("--html", "html", default=None,
              help="Also write a one-page HTML report (tables, figures, configuration).")
@click.option("--quiet", is_flag=True, help="Do not print the tables.")
def run_cmd(traces, topologies, weight_density, act_density, nm_text, samples, arch_spec, overrides,
            energy_spec, out, iso, html, quiet):
    """Replay traces on a sparse array and its baseline (the same array, skipping off); report
    cycles and energy."""
    import tempfile

    from accelsim.report import REPORT_FORMATS, per_multiplier, write_report
    from accelsim.topology import topology_options

    if not traces and not topologies:
        raise AccelsimError("run: give at least one --trace or --topology")
    if out:
        check_output_file(out, REPORT_FORMATS, kind="report")
    if html:
        from accelsim.html_report import check_html_path

        check_html_path(html)
    with tempfile.TemporaryDirectory(prefix="accelsim-topology-") as tmp:
        built, overrides = topology_options(topologies, tmp, arch_spec, list(overrides),
                                            weight_density, act_density, nm_text, samples)
        report = _simulate(list(traces) + built, arch_spec, overrides, energy_spec)
    if iso is not None:
        report = per_multiplier(report, iso)
    if out:
        write_report(report, out)
    if html:
        from accelsim.html_report import write_html

        write_html(report, html, where="run")
    if not quiet:
        print_report(report)
    if out:
        click.echo(f"report written to {out}", err=True)
    if html:
        click.echo(f"HTML report written to {html}", err=True)


@click.command("report")
@click.argument("report_path")
@click.option("--html", "html", required=True, help="The one-page HTML report to write (.html).")
def report_cmd(report_path, html):
    """A one-page HTML report of an existing table written by `accelsim run --out`."""
    from accelsim.html_report import check_html_path, write_html
    from accelsim.report import read_report

    check_html_path(html)
    write_html(read_report(report_path), html, where=report_path,
               title=f"accelsim report: {Path(report_path).name}")
    click.echo(f"HTML report written to {html}", err=True)


@click.group("plot")
def plot_group():
    """Figures from a report written by `accelsim run --out`."""


def _plot_command(name: str, function: str, summary: str) -> None:
    """`accelsim plot NAME REPORT -o FIG`, drawing with accelsim.plots.<function>."""

    @plot_group.command(name, help=summary)
    @click.argument("report_path")
    @click.option("-o", "--out", required=True, help="Figure file (.png, .pdf, .svg).")
    def command(report_path, out):
        from accelsim import plots
        from accelsim.report import read_report

        plots.check_figure_path(out, "-o")
        report = plots.plottable_report(read_report(report_path), report_path, name)
        getattr(plots, function)(report, out)
        click.echo(f"figure written to {out}", err=True)


_plot_command("energy", "plot_energy", "Energy per inference by component: a panel per model, each "
              "array's baseline drawn once, the ratios vs baseline, dense and WP on the bars.")
_plot_command("cycles", "plot_cycles", "Cycles per inference split into compute, queue stalls, top-k "
              "exposed and memory stalls; a panel per model, ratios on the bars.")
_plot_command("layers", "plot_layers", "Cycles per inference of every layer of every run (log scale).")


def reference_traces() -> list[Path]:
    """The reference traces shipped with the package (traces/reference/)."""
    from importlib import resources

    folder = resources.files("accelsim.traces").joinpath("reference")
    found = sorted(Path(str(folder)).glob("*.trace.safetensors")) if folder.is_dir() else []
    if not found:
        raise AccelsimError("no reference traces found in the installed package (traces/reference/)")
    return found


DEMO_ARCHS = ("eie64", "cnvlutin", "scnn")  # the arrays `accelsim demo` and docs/results.md show


@click.command("demo")
@click.option("--out-dir", default="accelsim-demo", show_default=True,
              help="Where the report and the figures go (created if missing).")
def demo_cmd(out_dir):
    """Replay the reference traces on eie64, cnvlutin and scnn; print the comparison, write plots."""
    import pandas as pd

    from accelsim.plots import FIGURE_FORMATS, FIGURES
    from accelsim.report import REPORT_FORMATS, write_report
    from accelsim.arch import load_arch
    from accelsim.simulate import matching_topk_unit

    out = make_output_dir(out_dir, option="--out-dir")
    check_output_file(out / "report.csv", REPORT_FORMATS, option=None, kind="report")
    for name in FIGURES:
        check_output_file(out / f"{name}.png", FIGURE_FORMATS, option=None, kind="figure")
    traces = [str(p) for p in reference_traces()]
    click.echo(f"reference traces: {', '.join(Path(t).name for t in traces)}")
    frames = []
    for arch in DEMO_ARCHS:
        start = time.monotonic()
        # each trace with the top-k unit of the scheme that made its masks (else the preset's)
        preset = load_arch(arch).topk.scheme
        units = {t: matching_topk_unit(t, preset) for t in traces}
        for unit in dict.fromkeys(units.values()):
            mine = [t for t in traces if units[t] == unit]
            frames.append(_simulate(mine, arch, [] if unit == preset else [f"topk.scheme={unit}"], None))
        click.echo(f"{arch}: simulated in {time.monotonic() - start:.1f} s")
    report = pd.concat(frames, ignore_index=True)
    print_report(report)
    write_report(report, out / "report.csv")
    for name, draw in FIGURES.items():
        draw(report, out / f"{name}.png")
    click.echo(f"wrote {out / 'report.csv'}, " + ", ".join(str(out / f"{name}.png") for name in FIGURES))


def register(cli: click.Group) -> None:
    cli.add_command(run_cmd)
    cli.add_command(plot_group)
    cli.add_command(report_cmd)
    cli.add_command(demo_cmd)
