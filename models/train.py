"""The one training loop. Methods (models/methods.py) plug in what they change.

A run directory (`out_dir`) holds `state.pt` (model + masks + optimizer + epoch + method state,
rewritten atomically after every epoch) and `checkpoint/` (the checkpoint directory of the latest
finished epoch, with test accuracy). Running the same command again continues from `state.pt`;
a finished run just reports that it is complete. Determinism: the batch order and augmentation of
epoch e are drawn from seed + e and torch's global RNG (dropout) is reseeded per epoch, so a
resumed run computes exactly what an uninterrupted one would (same threads, same machine).

Data stays one uint8 tensor; batches are normalised on the fly (accelsim.models.data.make_batches).
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import nullcontext
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from accelsim.errors import AccelsimError
from accelsim.models import checkpoint as C
from accelsim.models import methods as M
from accelsim.models.recipes import Recipe, get_recipe, lr_factor

STATE_NAME = "state.pt"
STATE_FORMAT = "accelsim-train-state"


@dataclass
class TrainContext:
    """What methods see: the model, its compute layers, schedule position, logging."""

    model: nn.Module
    layers: list
    dropouts: dict
    recipe: Recipe
    input_shape: tuple
    steps_per_epoch: int
    epoch: int = 0
    step: int = 0
    messages: list = field(default_factory=list)
    echo: object = None

    def log(self, msg: str) -> None:
        self.messages.append(msg)
        if self.echo is not None:
            self.echo(msg)


def make_optimizer(model: nn.Module, spec: M.OptimSpec) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if spec.name == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum,
                               weight_decay=spec.weight_decay, nesterov=spec.nesterov)
    if spec.name == "adam":
        return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
    if spec.name == "adadelta":
        return torch.optim.Adadelta(params, lr=spec.lr, weight_decay=spec.weight_decay)
    raise ValueError(f"unknown optimizer {spec.name!r}")


def _same_kind(a: M.OptimSpec, b: M.OptimSpec) -> bool:
    return (a.name, a.momentum, a.weight_decay, a.nesterov) == (b.name, b.momentum,
                                                                b.weight_decay, b.nesterov)


# Data sets whose recipes opt in to mean/std input normalisation (it moves zero pixels; traces
# recorded through it say so in their metadata). MNIST stays in [0, 1], background exactly zero.
NORMALIZED_INPUTS = frozenset({"cifar10"})


def transform_for(model, train: bool):
    """The batch transform of a zoo model name or a checkpoint's info (user models: the data
    set's standard pipeline at its full size)."""
    from accelsim.models.transforms import standard_transform
    from accelsim.models.usermodel import dataset_of, input_shape_of

    ds = dataset_of(model)
    return standard_transform(ds, train, crop_size=input_shape_of(model)[1],
                              normalize=ds in NORMALIZED_INPUTS)


def input_normalization(model) -> dict:
    """The per-channel (mean, std) the eval transform applies to pixels scaled to [0, 1],
    measured by pushing black and white images through it (no copy of its rules here), plus
    the crop size. Stored in checkpoint.json so a change of preprocessing is detectable."""
    from accelsim.models.usermodel import input_shape_of

    c, h, w = input_shape_of(model)
    tf = transform_for(model, train=False)
    f0 = tf(torch.zeros((1, c, h + 8, w + 8), dtype=torch.uint8), None)[0].flatten(1)[:, 0]
    f1 = tf(torch.full((1, c, h + 8, w + 8), 255, dtype=torch.uint8), None)[0].flatten(1)[:, 0]
    std = 1.0 / (f1 - f0)
    return {"mean": [round(float(v), 6) + 0.0 for v in -f0 * std],
            "std": [round(float(v), 6) for v in std], "input_size": [h, w]}


def evaluate(model: nn.Module, image_set, transform, batch_size: int = 1000) -> tuple[float, int]:
    """(accuracy, number of samples) on an ImageSet in eval mode with every mask active."""
    from accelsim.models.data import make_batches

    return evaluate_batches(model, make_batches(image_set, batch_size, shuffle=False,
                                                transform=transform))


@torch.no_grad()
def evaluate_batches(model: nn.Module, batches) -> tuple[float, int]:
    """(accuracy, number of samples) over (x, y) batches in eval mode, masks active."""
    was = model.training
    model.eval()
    correct = n = 0
    try:
        for x, y in batches:
            correct += int((model(x).argmax(1) == y).sum())
            n += int(y.numel())
    finally:
        model.train(was)
    return (correct / n if n else float("nan")), n


def _progress(enabled: bool):
    if not enabled:
        return nullcontext(None)
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f} acc {task.fields[acc]:.4f}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), transient=False)


def _run_key(model_name, recipe: Recipe, seed, limit_train, from_dir) -> dict:
    """What must match for `state.pt` to be continued (epochs may grow)."""
    r = recipe.to_dict()
    r.pop("epochs")
    if r.get("jp") is not None and not r["jp"].get("thresholds"):
        r["jp"].pop("thresholds", None)  # so runs saved before the field existed still resume
    if r.get("jp") is not None and r["jp"].get("fine_tune_optimizer") == "adadelta":
        r["jp"].pop("fine_tune_optimizer", None)  # likewise
    return {"model": model_name, "recipe": r, "seed": seed, "limit_train": limit_train,
            "from": str(Path(from_dir).resolve()) if from_dir else None}


_RECIPE_DEFAULTS = {f.name: f.default for f in fields(Recipe) if f.default is not MISSING}


def _check_key(saved: dict, now: dict, path: Path) -> None:
    for k in now:
        was = saved.get(k)
        if k == "recipe" and isinstance(was, dict):  # states saved before a field was added
            was = {**_RECIPE_DEFAULTS, **was}
        if was != now[k]:
            raise AccelsimError(
                f"{path}: holds a different run ({k} differs: saved {saved.get(k)!r}, asked "
                f"{now[k]!r}); use another --out or delete {path.name} to restart")


@dataclass
class Batches:
    """Where the loop's data comes from: `train(epoch)` and `test()` yield (x, y) batches;
    `steps` per epoch; `split` / `note` describe the test set in the checkpoint."""

    train: object
    test: object
    steps: int
    split: str = "test"
    note: str = ""


@dataclass
class Run:
    """Everything the loop needs besides the recipe: the model and how to rebuild it on resume
    (`rebuild(model_kwargs)`), the data, and the checkpoint fields that describe the model."""

    label: str
    model: nn.Module | None
    rebuild: object
    input_shape: tuple
    data: Batches
    model_kwargs: dict
    describe: dict  # dataset, input_normalization, source, mask_locations ...
    from_dir: Path | None = None
    base_info: dict = field(default_factory=dict)


def zoo_batches(image_set_train, image_set_test, batch_size: int, seed: int, tf_train,
                tf_test) -> Batches:
    """Batches of the zoo's uint8 ImageSets (epoch e shuffled and augmented from seed + e)."""
    from accelsim.models.data import make_batches

    return Batches(
        train=lambda epoch: make_batches(image_set_train, batch_size, shuffle=True,
                                         seed=seed * 1000003 + epoch, transform=tf_train),
        test=lambda: make_batches(image_set_test, 1000, shuffle=False, transform=tf_test),
        steps=math.ceil(len(image_set_train) / batch_size),
        split=image_set_test.split, note=image_set_test.note)


def resolve_recipe(model_name: str, method: str, recipe, model_options=None,
                   from_checkpoint=None) -> Recipe:
    """The recipe object for a zoo run (a name, a Recipe, or the paper default)."""
    rec = recipe if isinstance(recipe, Recipe) else get_recipe(model_name, method, recipe)
    if model_options:
        if from_checkpoint:
            raise AccelsimError("model options (e.g. --activation) apply to a fresh model; "
                                "with --from the checkpoint's model is used")
        rec = replace(rec, model_kwargs={**rec.model_kwargs, **model_options})
    if rec.model != model_name or rec.method != method:
        raise AccelsimError(f"recipe {rec.name!r} is for {rec.model}/{rec.method}, "
                            f"not {model_name}/{method}")
    return rec


def load_split_data(ds, val_size, data_dir, seed, limit_train, limit_test, train_set, test_set):
    """(train, test) ImageSets of data set `ds`: the training split less the `val_size`
    validation images (unless train_set is given), cut to the limits."""
    from accelsim.models.data import load_dataset, train_val_split

    if train_set is None:
        train_set = load_dataset(ds, "train", data_dir)
        if val_size:
            train_set = train_set.subset(train_val_split(len(train_set), val_size, seed)[0])
    if limit_train is not None:
        if limit_train < 1:
            raise AccelsimError(f"--limit-train must be >= 1, got {limit_train}")
        train_set = train_set.subset(range(min(limit_train, len(train_set))))
    if test_set is None:
        test_set = load_dataset(ds, "test", data_dir)
    if limit_test is not None:
        test_set = test_set.subset(range(min(limit_test, len(test_set))))
    return train_set, test_set


def _start_model(label, rec, seed, from_dir, build, echo):
    """(model, model_kwargs, base_info): from --from, or fresh (seeded)."""
    if from_dir is not None:
        model, base_info = C.load_checkpoint(from_dir)
        if base_info["model"] != label:
            raise AccelsimError(f"--from {from_dir}: checkpoint is a {base_info['model']} model, "
                                f"not {label}")
        kwargs = {**rec.model_kwargs, **base_info["model_kwargs"]}
        if kwargs != base_info["model_kwargs"]:
            # Recipe model options the checkpoint does not set are added (e.g. MLP-3's input
            # mask); the checkpoint's own options stay as they are; the weights must fit.
            old, model = model, build(dict(kwargs))
            state = old.state_dict()
            M.register_masks_from_state(model, state)
            try:
                model.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise AccelsimError(f"--from {from_dir}: the recipe's model options "
                                    f"{rec.model_kwargs} do not fit the checkpoint's weights "
                                    f"({str(exc).splitlines()[0]})") from None
            M.apply_activation_config(model, M.activation_config(old))
            M.apply_dropout_config(model, M.dropout_config(old))
        return model, kwargs, base_info
    if rec.needs_from:
        echo and echo(f"note: the papers start {rec.method} from a dense checkpoint (--from)")
    torch.manual_seed(seed)
    return build(dict(rec.model_kwargs)), dict(rec.model_kwargs), {}


def train(model_name: str, method: str = "dense", out_dir=None, *,
          recipe: Recipe | str | None = None,
          from_checkpoint=None, data_dir=None, epochs: int | None = None, seed: int = 0,
          limit_train: int | None = None, limit_test: int | None = None, progress: bool = True,
          echo=None, command: list | None = None, train_set=None, test_set=None,
          threads: int | None = 2, model_options: dict | None = None) -> dict:
    """Train/prune zoo model `model_name` with `method`; returns the checkpoint info (also in
    out_dir). train_set / test_set (ImageSet) override loading from data_dir (tests use small
    subsets); model_options extend the recipe's model_kwargs (e.g. {"activation": "leaky_relu"})
    for a fresh model."""
    from accelsim.models import zoo

    rec = resolve_recipe(model_name, method, recipe, model_options, from_checkpoint)
    if out_dir is None:
        raise AccelsimError("--out is required")
    train_set, test_set = load_split_data(zoo.dataset_of(model_name), rec.val_size, data_dir,
                                          seed, limit_train, limit_test, train_set, test_set)
    data = zoo_batches(train_set, test_set, rec.batch_size, seed,
                       transform_for(model_name, True), transform_for(model_name, False))
    from_dir = C.resolve_checkpoint_dir(from_checkpoint) if from_checkpoint else None
    rebuild = lambda kw: zoo.build(model_name, **kw)  # noqa: E731
    model, model_kwargs, base_info = _start_model(model_name, rec, seed, from_dir, rebuild, echo)
    run = Run(label=model_name, model=model, rebuild=rebuild,
              input_shape=tuple(zoo.input_shape(model_name)), data=data,
              model_kwargs=model_kwargs, from_dir=from_dir, base_info=base_info,
              describe={"dataset": zoo.dataset_of(model_name),
                        "input_normalization": input_normalization(model_name)})
    return fit(run, rec, out_dir, epochs=epochs, seed=seed, limit_train=limit_train,
               progress=progress, echo=echo, command=command, threads=threads)


def fit(run: Run, rec: Recipe, out_dir, *, epochs=None, seed: int = 0, limit_train=None,
        progress: bool = True, echo=None, command=None, threads: int | None = 2) -> dict:
    """The loop shared by zoo and user models: resume or start, train the remaining epochs
    (checkpoint + state after each), return the checkpoint info."""
    if threads:
        torch.set_num_threads(threads)
    n_epochs = rec.epochs if epochs is None else int(epochs)
    if n_epochs < 0:
        raise AccelsimError(f"--epochs must be >= 0, got {n_epochs}")
    out = Path(out_dir)
    state_path, ckpt_dir = out / STATE_NAME, out / "checkpoint"
    key = _run_key(run.label, rec, seed, limit_train, run.from_dir)
    method_obj = M.make_method(rec)
    loop = _Loop(run, rec, method_obj, seed, n_epochs, echo)
    resumed = state_path.exists()
    if resumed:
        loop.resume(C.load_state(state_path), key, state_path)
        echo and echo(f"resuming {out} at epoch {loop.start_epoch}/{n_epochs}")
    loop.prepare(fresh=not resumed)
    if resumed and loop.start_epoch >= n_epochs and (ckpt_dir / C.JSON_NAME).is_file():
        echo and echo(f"{out}: training already complete ({loop.start_epoch} epochs)")
        return C.read_info(ckpt_dir)

    def save(epochs_done, acc, n_test):
        info = _info(loop, acc, n_test, seed, command, epochs_done, limit_train)
        C.save_checkpoint(ckpt_dir, loop.model, info)

    with _progress(progress) as prog:
        for epoch in range(loop.start_epoch, n_epochs):
            acc, n_test = loop.epoch(epoch, prog)
            save(epoch + 1, acc, n_test)
            C.save_state(state_path, loop.state(key))
    if n_epochs == 0 or loop.start_epoch >= n_epochs:  # nothing to train: evaluate and write
        if not resumed:
            method_obj.finish(loop.ctx)
            M.apply_masks(loop.model)
        save(loop.start_epoch, *evaluate_batches(loop.model, run.data.test()))
    return C.read_info(ckpt_dir)


class _Loop:
    """One training run's moving parts: model, optimizer, method, history, schedule position."""

    def __init__(self, run: Run, rec: Recipe, method_obj, seed: int, n_epochs: int, echo):
        self.run, self.rec, self.method, self.seed, self.n_epochs = run, rec, method_obj, seed, n_epochs
        self.model, self.model_kwargs = run.model, dict(run.model_kwargs)
        self.start_epoch, self.step, self.history = 0, 0, []
        self.opt, self.opt_spec, self.echo = None, None, echo

    def resume(self, st: dict, key: dict, path: Path) -> None:
        if st.get("format") != STATE_FORMAT:
            raise AccelsimError(f"{path}: not an accelsim training state")
        _check_key(st["key"], key, path)
        self.model_kwargs = dict(st["model_kwargs"])
        self.model = self.run.rebuild(self.model_kwargs)
        M.register_masks_from_state(self.model, st["model"])
        self.model.load_state_dict(st["model"], strict=True)
        M.apply_activation_config(self.model, st["activation_masks"])
        M.apply_dropout_config(self.model, st["dropout"])
        self.method.load_state_dict(st["method"])
        self.start_epoch, self.step = int(st["epoch"]), int(st["step"])
        self.history = list(st["history"])
        self.opt_spec = M.OptimSpec(**st["optimizer_spec"])
        self._opt_state = st["optimizer"]

    def prepare(self, fresh: bool) -> None:
        # channels_last: ~1.4x faster conv training on CPU (measured on lenet4); values unchanged
        self.conv = any(isinstance(m, nn.Conv2d) for m in self.model.modules())
        if self.conv:
            self.model = self.model.to(memory_format=torch.channels_last)
        shape = self.run.input_shape
        self.ctx = TrainContext(model=self.model, layers=M.compute_layers(self.model),
                                dropouts=M.dropout_in_front(self.model, shape), recipe=self.rec,
                                input_shape=shape, steps_per_epoch=self.run.data.steps,
                                step=self.step, echo=self.echo)
        if fresh:
            self.method.setup(self.ctx)
            M.apply_masks(self.model)
        else:
            self.opt = make_optimizer(self.model, self.opt_spec)
            self.opt.load_state_dict(self._opt_state)

    def _optimizer_for(self, epoch: int) -> M.OptimSpec:
        spec = self.method.optimizer_spec(epoch)
        if self.opt is None or not _same_kind(spec, self.opt_spec):
            self.opt = make_optimizer(self.model, spec)
        for g in self.opt.param_groups:
            g["lr"] = spec.lr
        self.opt_spec = spec
        return spec

    def _train_step(self, x, y) -> tuple[float, int, int]:
        """One optimizer step with every method hook; (loss, correct, batch size)."""
        model, method, ctx = self.model, self.method, self.ctx
        if self.conv:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.rec.label_smoothing)
        pen = method.penalty(model)
        self.opt.zero_grad(set_to_none=False)
        (loss if pen is None else loss + pen).backward()
        method.after_backward(ctx)
        M.mask_gradients(model)
        if self.rec.lr_schedule != "step":
            f = lr_factor(self.rec, ctx.step, ctx.steps_per_epoch * self.n_epochs)
            for g in self.opt.param_groups:
                g["lr"] = self.opt_spec.lr * f
        self.opt.step()
        M.apply_masks(model)
        ctx.step += 1
        method.after_step(ctx)
        M.apply_masks(model)
        return float(loss.detach()), int((logits.argmax(1) == y).sum()), int(y.numel())

    def epoch(self, epoch: int, prog) -> tuple[float, int]:
        """Train one epoch, evaluate; appends to history; returns (test accuracy, samples)."""
        ctx, n_epochs = self.ctx, self.n_epochs
        ctx.epoch = epoch
        spec = self._optimizer_for(epoch)
        self.method.on_epoch_start(ctx)
        M.apply_masks(self.model)
        torch.manual_seed(self.seed * 1000003 + epoch)
        self.model.train()
        task = prog.add_task(f"epoch {epoch + 1}/{n_epochs}", total=self.run.data.steps,
                             loss=0.0, acc=0.0) if prog else None
        t0 = time.perf_counter()
        tot_loss = tot_correct = tot_n = 0.0
        for x, y in self.run.data.train(epoch):
            lval, correct, b = self._train_step(x, y)
            if not math.isfinite(lval):
                raise AccelsimError(f"training diverged at epoch {epoch + 1} (loss {lval}); "
                                    "lower the learning rate")
            tot_loss, tot_correct, tot_n = tot_loss + lval * b, tot_correct + correct, tot_n + b
            if task is not None:
                prog.update(task, advance=1, loss=tot_loss / tot_n, acc=tot_correct / tot_n)
        self.method.on_epoch_end(ctx)
        if epoch == n_epochs - 1:
            self.method.finish(ctx)
        M.apply_masks(self.model)
        secs = time.perf_counter() - t0
        acc, n_test = evaluate_batches(self.model, self.run.data.test())
        h = {"epoch": epoch + 1, "train_loss": tot_loss / max(tot_n, 1),
             "train_accuracy": tot_correct / max(tot_n, 1), "test_accuracy": acc,
             "test_samples": n_test, "seconds": secs, "lr": spec.lr, "optimizer": spec.name}
        self.history.append(h)
        if task is not None:
            prog.update(task, description=f"epoch {epoch + 1}/{n_epochs} test {acc:.4f}")
        elif self.echo:
            self.echo(f"epoch {epoch + 1}/{n_epochs} loss {h['train_loss']:.4f} "
                      f"train acc {h['train_accuracy']:.4f} test acc {acc:.4f} ({secs:.1f} s)")
        return acc, n_test

    def state(self, key: dict) -> dict:
        return {"format": STATE_FORMAT, "version": 1, "key": key,
                "model_kwargs": self.model_kwargs, "epoch": self.ctx.epoch + 1,
                "step": self.ctx.step, "history": self.history,
                "model": self.model.state_dict(),
                "activation_masks": M.activation_config(self.model),
                "dropout": M.dropout_config(self.model),
                "optimizer_spec": self.opt_spec.__dict__, "optimizer": self.opt.state_dict(),
                "method": self.method.state_dict()}


def _info(loop: _Loop, acc, n_test, seed, command, epochs_done, limit_train) -> dict:
    run, rec, method_obj = loop.run, loop.rec, loop.method
    layers = {}
    for name, mod in M.compute_layers(loop.model):
        layers[name] = {"weight_density": M.weight_density(mod),
                        **_jsonable(method_obj.layer_info.get(name, {}))}
    from_dir, base_info = run.from_dir, run.base_info
    return {
        "model": run.label,
        "model_kwargs": loop.model_kwargs,
        **run.describe,
        "method": rec.method,
        "method_params": _jsonable(method_obj.params()),
        "recipe": _jsonable(rec.to_dict()),
        "layers": layers,
        "metrics": {"accuracy": {"value": acc, "num_samples": n_test, "split": run.data.split,
                                 "note": run.data.note},
                    "history": _jsonable(loop.history)},
        "epochs": {"done": epochs_done, "planned": loop.n_epochs},
        "seed": seed,
        "limit_train": limit_train,
        "from": {"path": str(from_dir), "method": base_info.get("method"),
                 "accuracy": base_info.get("metrics", {}).get("accuracy")} if from_dir else None,
        "command": list(command) if command is not None else list(sys.argv),
    }


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
