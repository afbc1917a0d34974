"""`accelsim train`: train or prune a zoo model, or your own FILE.py:FACTORY model
(docs/own-model.md), with a recipe; resumable.

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
@click.option("--model", "model_name", required=True,
              help="Zoo model (mlp3, lenet4, convnet5) or your own: FILE.py:FACTORY.")
@click.option("--dataset", type=click.Choice(["mnist", "cifar10"]), default=None,
              help="FILE.py:FACTORY models: the data set (the input shape is its image shape).")
@click.option("--mask-before", multiple=True,
              help="FILE.py:FACTORY models: mask the input of these Conv2d/Linear layers (module "
                   "name or class name; by class the first layer is left out). Repeatable. "
                   "Default (no --mask-after either): Conv2d and Linear.")
@click.option("--mask-after", multiple=True,
              help="FILE.py:FACTORY models: mask the output of these modules (module name or "
                   "class name, e.g. ReLU; by class the last one is left out). Repeatable.")
@click.option("--weight-density", default=None,
              help="wp/jp/l0/greg: target weight density per compute layer, a number (every "
                   "layer) or a JSON object {layer: density} (zoo models: over the recipe's, "
                   "which come from the papers' tables; FILE.py:FACTORY models: default 0.25).")
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
                   "or a JSON file (as `accelsim sweep choose` prints); FILE.py:FACTORY models "
                   "also take one number for every mask. Default: the recipe's (0.3).")
@click.option("--budget", type=O.BUDGET, default=0.5, show_default=True,
              help="jp with --winner-rates auto: accuracy drop allowed per layer (points).")
@click.option("--threads", type=O.THREADS, default=2, show_default=True, help="torch CPU threads.")
@click.option("--no-progress", is_flag=True, help="Print one line per epoch instead of a bar.")
def train_cmd(model_name, dataset, mask_before, mask_after, weight_density, method, recipe,
              from_ckpt, out_dir, data_dir, epochs, seed, limit_train, limit_test, activation, eps,
              winner_rates, budget, threads, no_progress):
    """Train/prune MODEL with METHOD; rerun the same command to resume."""
    from accelsim.atomic import check_output_dir
    from accelsim.errors import AccelsimError
    from accelsim.models.recipes import get_recipe
    from accelsim.models.train import train
    from accelsim.models.usermodel import is_user_model

    check_output_dir(out_dir)
    if is_user_model(model_name):
        if activation:
            raise AccelsimError("--activation applies to zoo models; set it in your factory")
        with run_dir_write_errors(out_dir):
            info = _train_own(model_name, dataset, mask_before, mask_after, weight_density,
                              method, recipe, from_ckpt, out_dir, data_dir, epochs, seed,
                              limit_train, limit_test, eps, winner_rates, budget, threads,
                              no_progress)
        return _summary(info, out_dir)
    if dataset or mask_before or mask_after:
        raise AccelsimError("--dataset, --mask-before and --mask-after apply to FILE.py:FACTORY "
                            "models (zoo models have their own)")
    rec = get_recipe(model_name, method, recipe)
    if weight_density is not None:
        rec = _with_weight_density(rec, _json_or_number(weight_density, "--weight-density"))
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
    _summary(info, out_dir)


def _with_weight_density(rec, value):
    """The recipe with --weight-density over its per-layer targets (names checked)."""
    from dataclasses import replace

    from accelsim.errors import AccelsimError

    if rec.prune is None or not rec.prune.weight_density:
        raise AccelsimError(f"--weight-density: the {rec.method} recipe of {rec.model} prunes no "
                            "weights (it applies to wp, jp, l0, greg1, greg2)")
    layers = rec.prune.weight_density
    if not isinstance(value, dict):
        value = {name: value for name in layers}
    unknown = sorted(set(value) - set(layers))
    if unknown:
        raise AccelsimError(f"--weight-density: unknown layer {', '.join(unknown)} ({rec.model} "
                            f"prunes {', '.join(layers)})")
    dens = {**layers, **{k: float(v) for k, v in value.items()}}
    return replace(rec, prune=replace(rec.prune, weight_density=dens))


def _json_or_number(text: str | None, option: str):
    """A number, a JSON object, or a JSON file holding one (None passes through)."""
    import json
    from pathlib import Path

    from accelsim.errors import AccelsimError

    if text is None:
        return None
    raw = Path(text).read_text() if Path(text).is_file() else text
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise AccelsimError(f"{option} {text!r}: not a number, a JSON object or a JSON file") \
            from None
    ok = (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1)
    if not (ok(value) or isinstance(value, dict) and all(ok(v) for v in value.values())):
        raise AccelsimError(f"{option} {text!r}: expected a number in (0, 1] or "
                            "{name: number in (0, 1]}")
    return value


def _train_own(model_name, dataset, mask_before, mask_after, weight_density, method, recipe,
               from_ckpt, out_dir, data_dir, epochs, seed, limit_train, limit_test, eps,
               winner_rates, budget, threads, no_progress) -> dict:
    from accelsim.errors import AccelsimError
    from accelsim.models.own import train_on_dataset

    if dataset is None:
        raise AccelsimError(f"--model {model_name}: a FILE.py:FACTORY model needs --dataset "
                            "(mnist or cifar10)")
    if (eps is not None or winner_rates is not None) and method != "jp":
        raise AccelsimError("--eps and --winner-rates apply to --method jp only")
    rates = 0.3
    if winner_rates == "auto":
        from accelsim.analysis.chooser import resolve_winner_rates

        rates = resolve_winner_rates("auto", from_ckpt, budget=budget, data_dir=data_dir,
                                     seed=seed, echo=click.echo)
    elif winner_rates is not None:
        rates = _json_or_number(winner_rates, "--winner-rates")
    dens = _json_or_number(weight_density, "--weight-density")
    return train_on_dataset(
        model_name, dataset, out_dir, data_dir=data_dir, limit_train=limit_train,
        limit_test=limit_test, seed=seed, method=method, recipe=recipe,
        mask_before=list(mask_before) or None, mask_after=list(mask_after) or None,
        weight_density=0.25 if dens is None else dens, winner_rate=rates, eps=eps,
        from_checkpoint=from_ckpt, epochs=epochs, progress=not no_progress, echo=click.echo,
        threads=threads, command=["accelsim", *sys.argv[1:]])


def _summary(info: dict, out_dir) -> None:
    acc = info["metrics"]["accuracy"]
    dens = ", ".join(f"{n} {v['weight_density']:.3f}" for n, v in info["layers"].items())
    click.echo(f"{info['model']}/{info['method']}: test accuracy {acc['value']:.4f} on "
               f"{acc['num_samples']} images; weight density {dens}")
    click.echo(f"checkpoint: {out_dir}/checkpoint")


def register(cli: click.Group) -> None:
    cli.add_command(train_cmd)
