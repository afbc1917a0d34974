"""Train and prune your own network with the zoo's loop, methods, checkpoints and resume
(docs/own-model.md). The Python entry point is `train_model`; `accelsim train --model
FILE.py:FACTORY --dataset mnist|cifar10` calls it with the data set's standard pipeline.

    from accelsim.models.own import train_model
    info = train_model("my_net.py:build", "runs/jp", train_loader, test_loader, method="jp",
                       input_shape=(3, 32, 32), mask_after=torch.nn.ReLU, winner_rate=0.3,
                       from_checkpoint="runs/dense")

Every run attaches activation masks (off unless the method turns them on) where `mask_before` /
`mask_after` say (default: in front of every Conv2d/Linear but the first), so a dense checkpoint
already has the locations a JP run started from it will use.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from accelsim.errors import AccelsimError
from accelsim.models import checkpoint as C
from accelsim.models import usermodel as U
from accelsim.models.recipes import Recipe, user_recipe
from accelsim.models.train import Batches, Run, fit

DEFAULT_BEFORE = (nn.Conv2d, nn.Linear)


def build_with_masks(source: str, input_shape: tuple, mask_before=None, mask_after=None,
                     skip_last: bool = True, locations: dict | None = None):
    """(model, source record): the factory's module with (off) masks attached."""
    model, src = U.load_factory(source)
    where = f"{src['file']}:{src['factory']}"
    U.check_input_shape(model, input_shape, where)
    if locations is None and mask_before is None and mask_after is None:
        mask_before = DEFAULT_BEFORE
    try:
        U.attach_masks(model, input_shape, mask_before, mask_after, skip_last, locations)
    except AccelsimError as exc:
        raise AccelsimError(f"{where}: {exc}") from None
    return model, src


def _loader_batches(train_loader, test_loader, steps: int | None) -> Batches:
    """Batches from DataLoaders (or any re-iterable of (x, y)); a shuffling loader draws its
    order from torch's global RNG, which the loop seeds per epoch, so resume stays exact."""
    if steps is None:
        try:
            steps = len(train_loader)
        except TypeError:
            steps = 0
    return Batches(train=lambda epoch: iter(train_loader), test=lambda: iter(test_loader),
                   steps=steps, split="test", note="your test loader")


def _first_input_shape(loader) -> tuple:
    for batch in loader:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return tuple(int(d) for d in x.shape[1:])
    raise AccelsimError("the training loader yields no batch")


def train_model(source: str, out_dir, train_loader, test_loader, *, input_shape=None,
                dataset: str | None = None, **kw) -> dict:
    """Train/prune the module FACTORY() of FILE.py (`source` = "FILE.py:FACTORY") from your
    own (x, y) loaders; checkpoint and resumable state go to `out_dir` (rerun the same call to
    continue). Returns the checkpoint info. Options (keyword): method ("dense", "wp", "jp",
    "l0", "greg1", "greg2", "static-threshold"); recipe (a Recipe, or "default" / "quick" built
    by recipes.user_recipe from weight_density = a number for every compute layer or
    {layer: density}, and winner_rate = a number for every mask or {mask: rate}, masks named as
    model.mask_map names them: the layer for mask_before, the module for mask_after);
    mask_before, mask_after, skip_last (usermodel.attach_masks); from_checkpoint; epochs; seed;
    progress; echo; command; threads. `dataset` ("mnist" / "cifar10") lets `accelsim trace
    record` and the sweeps reload the images with that data set's standard pipeline; leave it
    None when your loaders do their own preprocessing. The input shape defaults to the first
    training batch's."""
    shape = tuple(input_shape) if input_shape else _first_input_shape(train_loader)
    return _train(source, out_dir, shape, dataset,
                  lambda rec: _loader_batches(train_loader, test_loader, None), {}, **kw)


def train_on_dataset(source: str, dataset: str, out_dir, *, data_dir=None, limit_train=None,
                     limit_test=None, seed: int = 0, train_set=None, test_set=None,
                     **kw) -> dict:
    """train_model on MNIST / CIFAR-10 with the standard pipeline (what `accelsim train --model
    FILE.py:FACTORY --dataset ...` runs): the recipe's validation images are held out of
    training, as for the zoo, so the winner-rate sweeps measure on unseen images.
    train_set / test_set (ImageSet) replace loading (tests)."""
    from accelsim.models.train import load_split_data, input_normalization, transform_for, zoo_batches

    if dataset not in U.DATASET_SHAPES:
        raise AccelsimError(f"--dataset {dataset!r}: expected one of "
                            f"{', '.join(U.DATASET_SHAPES)}")
    like = {"model": source, "dataset": dataset}

    def batches(rec: Recipe) -> Batches:
        tr, te = load_split_data(dataset, rec.val_size, data_dir, seed, limit_train, limit_test,
                           train_set, test_set)
        return zoo_batches(tr, te, rec.batch_size, seed, transform_for(like, True),
                           transform_for(like, False))

    return _train(source, out_dir, U.DATASET_SHAPES[dataset], dataset, batches,
                  {"input_normalization": input_normalization(like)}, seed=seed,
                  limit_train=limit_train, **kw)


def _train(source, out_dir, shape, dataset, make_batches, describe, *, method="dense",
           recipe=None, mask_before=None, mask_after=None, skip_last=True, weight_density=0.25,
           winner_rate=0.3, eps=None, from_checkpoint=None, epochs=None, seed=0, limit_train=None,
           progress=True, echo=None, command=None, threads=2) -> dict:
    if not U.is_user_model(source):
        raise AccelsimError(f"model {source!r}: expected FILE.py:FACTORY")
    if out_dir is None:
        raise AccelsimError("--out is required")
    from_dir = C.resolve_checkpoint_dir(from_checkpoint) if from_checkpoint else None
    locations = None
    if from_dir is not None:
        locations = C.read_info(from_dir).get("mask_locations")
        if mask_before is not None or mask_after is not None:
            raise AccelsimError(f"--from {from_dir}: the checkpoint's masks are used "
                                f"({locations}); do not give mask locations with --from")
    probe, src = build_with_masks(source, shape, mask_before, mask_after, skip_last, locations)
    label = f"{Path(src['file']).name}:{src['factory']}"
    locations = probe.mask_locations
    layers = [n for n, m in probe.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    rec = recipe if isinstance(recipe, Recipe) else user_recipe(
        label, method, layers, list(probe.mask_map), dataset or "mnist", name=recipe,
        weight_density=weight_density, winner_rate=winner_rate)
    if rec.method != method:
        raise AccelsimError(f"recipe {rec.name!r} is for method {rec.method}, not {method}")
    if eps is not None:  # JPnet Eq. 11: threshold prediction from an eps-subsample
        from dataclasses import replace

        rec = replace(rec, jp=replace(rec.jp, mask_scheme="threshold-prediction", eps=eps))

    def rebuild(_kwargs):
        return build_with_masks(source, shape, locations=locations)[0]

    base_info: dict = {}
    if from_dir is not None:
        model, base_info = C.load_checkpoint(from_dir)
        if base_info.get("model") != label:
            raise AccelsimError(f"--from {from_dir}: checkpoint is a {base_info.get('model')} "
                                f"model, not {label}")
    else:
        torch.manual_seed(seed)
        model = rebuild({})
    run = Run(label=label, model=model, rebuild=rebuild, input_shape=shape,
              data=make_batches(rec), model_kwargs={}, from_dir=from_dir, base_info=base_info,
              describe={**({"dataset": dataset} if dataset else {}),
                        "input_shape": list(shape), "source": src,
                        "mask_locations": locations, **describe})
    return fit(run, rec, out_dir, epochs=epochs, seed=seed, limit_train=limit_train,
               progress=progress, echo=echo, command=command, threads=threads)
