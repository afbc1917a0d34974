"""`accelsim sweep arch`: architecture grids x traces, run as Dask tasks, resumable.

Only click is imported at module level; Dask, pandas and the kernels load when it runs.
See docs/sweeps.md ("Architecture sweeps").
"""

from __future__ import annotations

import sys

import click


@click.command("arch")
@click.option("--trace", "traces", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="Trace file (repeat for several): every point runs on every trace.")
@click.option("--arch", "arch_spec", default="eie64", show_default=True,
              help="Preset name (eie64, cnvlutin) or an architecture TOML file.")
@click.option("--grid", "grids", multiple=True, required=True, metavar="KEY=V1,V2,...",
              help="A swept parameter and its values, e.g. --grid eie.num_pes=16,32,64 (repeat: "
                   "the sweep is the product of the grids).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override an architecture field at every point, e.g. --set eie.index_bits=5.")
@click.option("--energy", "energy_spec", default=None, help="Energy table TOML (default: the arch's table).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="Table to write (.parquet, .csv or .json); each point is stored as it finishes "
                   "in the .parts folder beside it, so a rerun resumes.")
@click.option("--plot", "plot", default=None, type=click.Path(dir_okay=False),
              help="Pareto plot, energy vs cycles per inference (.png, .pdf or .svg).")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
              help="Dask scheduler to run on (default: $DASK_SCHEDULER_ADDRESS, else a local "
                   "cluster; 'in-process' runs here, one point at a time).")
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Worker processes of the local cluster (default: cores, at most 4).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def sweep_arch_cmd(traces, arch_spec, grids, overrides, energy_spec, out, plot, scheduler,
                   workers, no_progress):
    """Simulate the product of --grid values x traces; one row per point, a Pareto plot."""
    from accelsim.atomic import check_output_file
    from accelsim.report import REPORT_FORMATS
    from accelsim.sweep_arch import parse_grid, run_sweep

    check_output_file(out, tuple(REPORT_FORMATS))
    if plot:
        from accelsim.plots import check_figure_path

        check_figure_path(plot, "--plot")
    grid = parse_grid(grids)
    table = run_sweep(list(traces), grid, arch_spec, list(overrides), energy_spec, out=out,
                      scheduler=scheduler, workers=workers,
                      progress=not no_progress and sys.stderr.isatty(),
                      echo=lambda line: click.echo(line, err=True))
    click.echo(f"wrote {len(table)} rows to {out}")
    _print_front(table, list(grid))
    if plot:
        from accelsim.pareto import plot_pareto

        plot_pareto(table, plot)
        click.echo(f"figure: {plot}")


def _print_front(table, params) -> None:
    """The Pareto-optimal points of each trace, as lines a user can paste into --set."""
    from accelsim.pareto import pareto_mask, point_label
    from accelsim.plaintext import visible

    if "cycles" not in table:
        return
    for trace, group in table[table["error"] == ""].groupby("trace", sort=False):
        front = group[pareto_mask(group["cycles"], group["energy_uj"])].sort_values("cycles")
        click.echo(f"Pareto front of {visible(trace)} (cycles, µJ per inference):")
        for _, r in front.iterrows():
            click.echo(f"  {visible(point_label(r, params))}: {r['cycles']:,.0f} cycles, "
                       f"{r['energy_uj']:.3f} µJ")


def register(cli: click.Group) -> None:
    cli.commands["sweep"].add_command(sweep_arch_cmd)
