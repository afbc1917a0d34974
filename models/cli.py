"""`accelsim train`: train or prune a zoo model with a recipe; resumable.

Imports only click at module top (torch loads inside the command, so `accelsim run` stays fast).
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import click

from accelsim import cli_options as O

METHOD_CHOICES = ("dense", "wp", "jp", "static-threshold", "l0", "greg1", "greg2")


@contextmanager
def run_dir_write_errors(out_dir):
    """An OS error while writing the run directory (state.pt, checkpoint/: full disk, file
    system turned read-only) as one line naming the directory. OS errors about other paths
    (the data, the --from checkpoint) pass on unchanged."""
    from accelsim.atomic import os_error_reason
    from accelsim.errors import AccelsimError

    try:
        yield
    except AccelsimError:
        raise
    except Exception as exc:
        reason = os_error_reason(exc)
        filename = getattr(exc, "filename", None)
        root = Path(out_dir).resolve()
        if reason is None or (filename and root not in Path(filename).resolve().parents):
            raise
        raise AccelsimError(f"{out_dir}: cannot write the run directory ({reason})") from None


@click.command("train")
@click.option("--model", "model_name", required=True, help="Zoo model (mlp3, lenet4, convnet5).")
@click.option("--method", type=click.Choice(METHOD_CHOICES), default="dense", show_default=True)
@click.option("--recipe", default=None, help="Recipe name: paper (default), fast or quick.")
@click.option("--from", "from_ckpt", default=None, type=click.Path(),
              help="Start from this checkpoint (or run directory); wp/jp/l0/greg need a dense one.")
@click.option("--out", "out_dir", required=True,
              help="Run directory: state.pt (resume) and checkpoint/ (checked before training).")
@click.option("--data-dir", default=None, type=click.Path(), help="Data root (else search path).")
@click.option("--epochs", type=O.EPOCHS, default=None, help="Override the recipe's epoch count.")
@click.option("--seed", type=O.SEED, default=0, show_default=True)
@click.option("--limit-train", type=O.COUNT, default=None, help="Use the first N training images.")
@click.option("--limit-test", type=O.COUNT, default=None, help="Evaluate on the first N test images.")
@click.option("--activation", type=click.Choice(["relu", "leaky_relu"]), default=None,
              help="Hidden non-linearity of a fresh model (default: the recipe's, relu).")
@click.option("--eps", type=O.FRACTION, default=None,
              help="jp: train with threshold-prediction masks from an eps-subsample (Eq. 11).")
@click.option("--winner-rates", "winner_rates", default=None,
              help="jp: per-layer winner rates: 'auto' (sensitivity sweep of the --from checkpoint "
                   "on a validation split of the training set, then the chooser), a JSON object, "
                   "or a JSON file (as `accelsim sweep choose` prints). Default: the recipe's.")
@click.option("--budget", type=O.BUDGET, default=0.5, show_default=True,
              help="jp with --winner-rates auto: accuracy drop allowed per layer (points).")
@click.option("--threads", type=O.THREADS, default=2, show_default=True, help="torch CPU threads.")
@click.option("--no-progress", is_flag=True, help="Print one line per epoch instead of a bar.")
def train_cmd(model_name, method, recipe, from_ckpt, out_dir, data_dir, epochs, seed,
              limit_train, limit_test, activation, eps, winner_rates, budget, threads, no_progress):
    """Train/prune MODEL with METHOD; rerun the same command to resume."""
    from accelsim.atomic import check_output_dir
    from accelsim.errors import AccelsimError
    from accelsim.models.recipes import get_recipe
    from accelsim.models.train import train

    check_output_dir(out_dir)
    rec = get_recipe(model_name, method, recipe)
    if eps is not None:
        if rec.jp is None:
            raise AccelsimError("--eps applies to --method jp only")
        from dataclasses import replace

        rec = replace(rec, jp=replace(rec.jp, mask_scheme="threshold-prediction", eps=eps))
    if winner_rates is not None:
        from dataclasses import replace

        from accelsim.analysis.chooser import resolve_winner_rates

        if rec.jp is None:
            raise AccelsimError("--winner-rates applies to --method jp only")
        rates = resolve_winner_rates(winner_rates, from_ckpt, budget=budget, data_dir=data_dir,
                                     seed=seed, echo=click.echo)
        rec = replace(rec, jp=replace(rec.jp, winner_rates=rates))
    with run_dir_write_errors(out_dir):
        info = train(model_name, method, out_dir, recipe=rec, from_checkpoint=from_ckpt,
                     data_dir=data_dir, epochs=epochs, seed=seed, limit_train=limit_train,
                     limit_test=limit_test, progress=not no_progress, echo=click.echo,
                     threads=threads,
                     model_options={"activation": activation} if activation else None,
                     command=["accelsim", *sys.argv[1:]])
    acc = info["metrics"]["accuracy"]
    dens = ", ".join(f"{n} {v['weight_density']:.3f}" for n, v in info["layers"].items())
    click.echo(f"{info['model']}/{info['method']}: test accuracy {acc['value']:.4f} on "
               f"{acc['num_samples']} images; weight density {dens}")
    click.echo(f"checkpoint: {out_dir}/checkpoint")


def register(cli: click.Group) -> None:
    cli.add_command(train_cmd)
