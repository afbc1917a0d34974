"""`accelsim sweep ...`: activation-pruning sweeps of a checkpoint and the winner-rate chooser.

Imports only click at module top; torch, pandas and matplotlib load inside the commands.
See docs/sweeps.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from accelsim import cli_options as O
from accelsim.errors import AccelsimError


def _common(f):
    """Options shared by the sweeps that evaluate a checkpoint."""
    opts = [
        click.option("--checkpoint", "checkpoint", required=True, type=click.Path(),
                     help="Checkpoint directory (or a training run directory)."),
        click.option("--val-size", type=O.VAL_SIZE, default=5000, show_default=True,
                     help="Validation images carved from the TRAINING set (never the test set)."),
        click.option("--seed", type=O.SEED, default=0, show_default=True,
                     help="Seed of the train/validation split."),
        click.option("--limit", type=O.COUNT, default=None,
                     help="Use a seeded random N of the validation images (quick runs)."),
        click.option("--data-dir", default=None, type=click.Path(),
                     help="Data root (else $ACCELSIM_DATA or the search path)."),
        click.option("--batch-size", type=O.BATCH, default=500, show_default=True,
                     help="Images per forward pass."),
        click.option("--out", "out", required=True,
                     help="CSV to write (.csv; checked before the sweep starts)."),
        click.option("--plot", "plot", default=None,
                     help="Figure to write (.png, .pdf or .svg)."),
        click.option("--no-progress", is_flag=True, help="No progress bar."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _points_options(f):
    """Options of the sweeps that run their points as Dask tasks (accelsim.sweep_run)."""
    opts = [
        click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
                     help="Dask scheduler to run the points on (default: "
                          "$DASK_SCHEDULER_ADDRESS, else a local cluster; 'in-process' runs "
                          "them here, one after the other)."),
        click.option("--workers", type=click.IntRange(1, 256), default=None,
                     help="Worker processes of the local cluster (default: cores, at most 4)."),
        click.option("--fine-tune-epochs", type=click.IntRange(0, O.MAX_EPOCHS), default=0,
                     show_default=True,
                     help="Retrain the network with each point's masks for N epochs before "
                          "evaluating it (the zoo's jp recipe without weight pruning)."),
        click.option("--fine-tune-recipe", default="quick", show_default=True,
                     help="jp recipe of the fine-tuning runs: paper, fast or quick."),
        click.option("--limit-train", type=O.COUNT, default=None,
                     help="Fine-tuning: use the first N training images (outside the "
                          "validation images)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _run_points(checkpoint, val_size, seed, limit, data_dir, batch_size, out, plot,
                scheduler, fine_tune_epochs, fine_tune_recipe, limit_train, check):
    """Check the outputs, then the scheduler and the checkpoint (sweep_tasks.prepare); (the
    points' shared EvalSpec, the loaded model)."""
    from accelsim.analysis.sweep_tasks import prepare

    check_sweep_outputs(out, plot)
    return prepare(checkpoint, val_size=val_size, seed=seed, limit=limit, data_dir=data_dir,
                   batch_size=batch_size, out=out, scheduler=scheduler,
                   fine_tune_epochs=fine_tune_epochs, fine_tune_recipe=fine_tune_recipe,
                   limit_train=limit_train, check=check)


def _setup(checkpoint, val_size, seed, limit, data_dir, batch_size, out, plot, check=None):
    """Check the cheap things first, then load the checkpoint, run `check(model)` (option
    checks that need the model), then load the validation set."""
    from accelsim.analysis.sweeps import validation_set
    from accelsim.models.checkpoint import load_checkpoint
    from accelsim.models.train import transform_for
    from accelsim.models.usermodel import dataset_of

    check_sweep_outputs(out, plot)
    model, info = load_checkpoint(checkpoint)
    if check is not None:
        check(model)
    val = validation_set(dataset_of(info), val_size, seed, data_dir, limit)
    return model, info, val, transform_for(info, False)


def check_sweep_outputs(out, plot) -> None:
    """The CSV and the figure paths, checked before a checkpoint is loaded."""
    from accelsim.analysis.figures import check_figure_path
    from accelsim.atomic import check_output_file

    check_output_file(out, (".csv",), kind="sweep CSV")
    if plot:
        check_figure_path(plot)


def _finish(frame, out, plot, plotter, echo_lines=()):
    from accelsim.analysis.sweeps import write_csv

    write_csv(frame, out)
    click.echo(f"wrote {len(frame)} rows to {out}")
    if plot:
        plotter(frame, plot)
        click.echo(f"figure: {plot}")
    for line in echo_lines:
        click.echo(line)


@click.group("sweep")
def sweep_group() -> None:
    """Activation-pruning sweeps and the winner-rate chooser (the JPnet paper's Figs 7 to 9)."""


@sweep_group.command("winner-rates")
@_common
@click.option("--layer", "layers", multiple=True,
              help="Masked layer to sweep (repeatable); default: every masked layer.")
@click.option("--rates", default="0.05:1:0.05", show_default=True,
              help="Winner rates in (0, 1]: start:stop:step (stop included) or a comma list; "
                   f"at most {O.MAX_SWEEP_POINTS} values.")
@_points_options
def winner_rates_cmd(checkpoint, val_size, seed, limit, data_dir, batch_size, out, plot,
                     no_progress, layers, rates, scheduler, workers, fine_tune_epochs,
                     fine_tune_recipe, limit_train):
    """Accuracy and MAC % vs one layer's top-k winner rate, layer by layer (Fig. 8)."""
    rate_list = O.parse_rates(rates)  # before the torch import below: a bad list fails fast

    from accelsim.analysis.figures import plot_winner_rates
    from accelsim.analysis.sweep_tasks import run_winner_rates
    from accelsim.analysis.sweeps import select_groups

    spec, model = _run_points(checkpoint, val_size, seed, limit, data_dir, batch_size, out,
                              plot, scheduler, fine_tune_epochs, fine_tune_recipe, limit_train,
                              check=lambda m: select_groups(m, layers))
    frame, results = run_winner_rates(spec, model, layers, rate_list, out=out,
                                      scheduler=scheduler, workers=workers,
                                      progress=not no_progress and sys.stderr.isatty(),
                                      echo=lambda line: click.echo(line, err=True))
    base = frame["unmasked_accuracy"].iloc[0]
    _finish(frame, out, plot, plot_winner_rates,
            [f"unmasked validation accuracy {base:.4f} on {results[0][0].get('num_samples')} "
             "training-set images"])


@sweep_group.command("choose")
@click.option("--sweep", "sweep_csv", required=True, type=click.Path(dir_okay=False),
              help="CSV written by `accelsim sweep winner-rates`.")
@click.option("--budget", type=O.BUDGET, required=True,
              help="Tolerated accuracy drop per layer, in percentage points (0.5 = 0.5%).")
def choose_cmd(sweep_csv, budget):
    """Print per-layer winner rates (JSON): the smallest rate within the accuracy budget."""
    from accelsim.analysis.chooser import as_json, choose_winner_rates, read_sweep

    click.echo(as_json(choose_winner_rates(read_sweep(sweep_csv), budget)))


def _read_rates_json(text: str) -> dict:
    """--winner-rates: a JSON file or inline JSON object {layer: rate}."""
    p = Path(text)
    src = f"--winner-rates {text}"
    try:
        raw = p.read_text() if p.is_file() else text
    except OSError as exc:
        raise AccelsimError(f"{src}: cannot read ({exc.strerror or exc})") from None
    try:
        rates = json.loads(raw)
    except json.JSONDecodeError:
        raise AccelsimError(f"{src}: neither a file nor a JSON object like "
                            '{"fc2": 0.3}') from None
    if not isinstance(rates, dict) or not rates or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in rates.values()):
        raise AccelsimError(f"{src}: expected a non-empty JSON object of layer -> rate")
    return rates


@sweep_group.command("eps")
@_common
@click.option("--eps", "eps_text", default="0.01,0.02,0.05,0.1,0.2,0.5,1", show_default=True,
              help="Subsample rates in (0, 1]: comma list or start:stop:step; "
                   f"at most {O.MAX_SWEEP_POINTS} values.")
@click.option("--winner-rates", "winner_rates", default=None,
              help="JSON file or object {layer: rate}; default: the checkpoint's top-k masks.")
@_points_options
def eps_cmd(checkpoint, val_size, seed, limit, data_dir, batch_size, out, plot, no_progress,
            eps_text, winner_rates, scheduler, workers, fine_tune_epochs, fine_tune_recipe,
            limit_train):
    """Accuracy and kept activations vs threshold-prediction subsample rate (Fig. 9)."""
    eps_values = O.parse_values(eps_text, "--eps", low=0.0, high=1.0, low_open=True)

    from accelsim.analysis.figures import plot_eps
    from accelsim.analysis.sweep_tasks import run_eps
    from accelsim.analysis.sweeps import dynamic_groups

    rates = _read_rates_json(winner_rates) if winner_rates else None
    spec, model = _run_points(checkpoint, val_size, seed, limit, data_dir, batch_size, out,
                              plot, scheduler, fine_tune_epochs, fine_tune_recipe, limit_train,
                              check=lambda m: dynamic_groups(m, rates))
    frame, results = run_eps(spec, model, eps_values, rates, out=out, scheduler=scheduler,
                             workers=workers, progress=not no_progress and sys.stderr.isatty(),
                             echo=lambda line: click.echo(line, err=True))
    _finish(frame, out, plot, plot_eps,
            [f"exact top-k validation accuracy {frame['topk_accuracy'].iloc[0]:.4f} "
             f"on {results[0][0].get('num_samples')} training-set images"])


@sweep_group.command("static-vs-dynamic")
@_common
@click.option("--thresholds", default="0.07:0.14:0.01", show_default=True,
              help="Static thresholds theta >= 0: comma list or start:stop:step; "
                   f"at most {O.MAX_SWEEP_POINTS} values.")
def static_vs_dynamic_cmd(checkpoint, val_size, seed, limit, data_dir, batch_size, out, plot,
                          no_progress, thresholds):
    """Static threshold masks vs dynamic top-k at the same per-layer densities (Fig. 7)."""
    values = O.parse_values(thresholds, "--thresholds", low=0.0, high=None)

    from accelsim.analysis.figures import plot_static_vs_dynamic
    from accelsim.analysis.sweeps import static_vs_dynamic

    model, info, val, tf = _setup(checkpoint, val_size, seed, limit, data_dir, batch_size, out,
                                  plot)
    frame = static_vs_dynamic(model, val, tf, values, batch_size=batch_size,
                              progress=not no_progress)
    _finish(frame, out, plot, plot_static_vs_dynamic)


def register(cli: click.Group) -> None:
    cli.add_command(sweep_group)
