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
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from accelsim.errors import AccelsimError
from accelsim.models import checkpoint as C
from accelsim.models import methods as M
from accelsim.models.recipes import Recipe, get_recipe

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
                               weight_decay=spec.weight_decay)
    if spec.name == "adam":
        return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
    if spec.name == "adadelta":
        return torch.optim.Adadelta(params, lr=spec.lr, weight_decay=spec.weight_decay)
    raise ValueError(f"unknown optimizer {spec.name!r}")


def _same_kind(a: M.OptimSpec, b: M.OptimSpec) -> bool:
    return (a.name, a.momentum, a.weight_decay) == (b.name, b.momentum, b.weight_decay)


# Data sets whose recipes opt in to mean/std input normalisation (it moves zero pixels; traces
# recorded through it say so in their metadata). MNIST stays in [0, 1], background exactly zero.
NORMALIZED_INPUTS = frozenset({"cifar10"})


def transform_for(model_name: str, train: bool):
    from accelsim.models import zoo
    from accelsim.models.transforms import standard_transform

    ds = zoo.dataset_of(model_name)
    _, h, _ = zoo.input_shape(model_name)
    return standard_transform(ds, train, crop_size=h, normalize=ds in NORMALIZED_INPUTS)


def input_normalization(model_name: str) -> dict:
    """The per-channel (mean, std) the eval transform applies to pixels scaled to [0, 1],
    measured by pushing black and white images through it (no copy of its rules here), plus
    the crop size. Stored in checkpoint.json so a change of preprocessing is detectable."""
    from accelsim.models import zoo

    c, h, w = zoo.input_shape(model_name)
    tf = transform_for(model_name, train=False)
    f0 = tf(torch.zeros((1, c, h + 8, w + 8), dtype=torch.uint8), None)[0].flatten(1)[:, 0]
    f1 = tf(torch.full((1, c, h + 8, w + 8), 255, dtype=torch.uint8), None)[0].flatten(1)[:, 0]
    std = 1.0 / (f1 - f0)
    return {"mean": [round(float(v), 6) + 0.0 for v in -f0 * std],
            "std": [round(float(v), 6) for v in std], "input_size": [h, w]}


@torch.no_grad()
def evaluate(model: nn.Module, image_set, transform, batch_size: int = 1000) -> tuple[float, int]:
    """(accuracy, number of samples) in eval mode with every mask active."""
    from accelsim.models.data import make_batches

    was = model.training
    model.eval()
    correct = n = 0
    for x, y in make_batches(image_set, batch_size, shuffle=False, transform=transform):
        correct += int((model(x).argmax(1) == y).sum())
        n += int(y.numel())
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
    return {"model": model_name, "recipe": r, "seed": seed, "limit_train": limit_train,
            "from": str(Path(from_dir).resolve()) if from_dir else None}


def _check_key(saved: dict, now: dict, path: Path) -> None:
    for k in now:
        if saved.get(k) != now[k]:
            raise AccelsimError(
                f"{path}: holds a different run ({k} differs: saved {saved.get(k)!r}, asked "
                f"{now[k]!r}); use another --out or delete {path.name} to restart")


def train(model_name: str, method: str = "dense", out_dir=None, *,
          recipe: Recipe | str | None = None,
          from_checkpoint=None, data_dir=None, epochs: int | None = None, seed: int = 0,
          limit_train: int | None = None, limit_test: int | None = None, progress: bool = True,
          echo=None, command: list | None = None, train_set=None, test_set=None,
          threads: int | None = 2, model_options: dict | None = None) -> dict:
    """Train/prune `model_name` with `method`; returns the checkpoint info (also in out_dir).

    train_set / test_set (ImageSet) override loading from data_dir (tests use small subsets);
    model_options extend the recipe's model_kwargs (e.g. {"activation": "leaky_relu"}) for a fresh model."""
    from accelsim.models import zoo
    from accelsim.models.data import load_dataset

    if threads:
        torch.set_num_threads(threads)
    if isinstance(recipe, Recipe):
        rec = recipe
    else:
        rec = get_recipe(model_name, method, recipe)
    if model_options:
        if from_checkpoint:
            raise AccelsimError("model options (e.g. --activation) apply to a fresh model; "
                                "with --from the checkpoint's model is used")
        rec = replace(rec, model_kwargs={**rec.model_kwargs, **model_options})
    if rec.model != model_name or rec.method != method:
        raise AccelsimError(f"recipe {rec.name!r} is for {rec.model}/{rec.method}, "
                            f"not {model_name}/{method}")
    n_epochs = rec.epochs if epochs is None else int(epochs)
    if n_epochs < 0:
        raise AccelsimError(f"--epochs must be >= 0, got {n_epochs}")
    if out_dir is None:
        raise AccelsimError("--out is required")
    out = Path(out_dir)
    state_path = out / STATE_NAME

    # --- data
    ds = zoo.dataset_of(model_name)
    if train_set is None:
        train_set = load_dataset(ds, "train", data_dir)
        if rec.val_size:
            from accelsim.models.data import train_val_split

            train_idx, _ = train_val_split(len(train_set), rec.val_size, seed)
            train_set = train_set.subset(train_idx)
    if limit_train is not None:
        if limit_train < 1:
            raise AccelsimError(f"--limit-train must be >= 1, got {limit_train}")
        train_set = train_set.subset(range(min(limit_train, len(train_set))))
    if test_set is None:
        test_set = load_dataset(ds, "test", data_dir)
    if limit_test is not None:
        test_set = test_set.subset(range(min(limit_test, len(test_set))))
    tf_train, tf_test = transform_for(model_name, True), transform_for(model_name, False)

    # --- model: fresh, from a checkpoint, or resumed
    from_dir = C.resolve_checkpoint_dir(from_checkpoint) if from_checkpoint else None
    key = _run_key(model_name, rec, seed, limit_train, from_dir)
    base_info: dict = {}
    if from_dir is not None:
        model, base_info = C.load_checkpoint(from_dir)
        if base_info["model"] != model_name:
            raise AccelsimError(f"--from {from_dir}: checkpoint is a {base_info['model']} model, "
                                f"not {model_name}")
        model_kwargs = dict(base_info["model_kwargs"])
    else:
        if rec.needs_from:
            echo and echo(f"note: the papers start {method} from a dense checkpoint (--from)")
        model_kwargs = dict(rec.model_kwargs)
        torch.manual_seed(seed)
        model = zoo.build(model_name, **model_kwargs)
    input_shape = tuple(zoo.input_shape(model_name))
    method_obj = M.make_method(rec)

    steps = math.ceil(len(train_set) / rec.batch_size)
    start_epoch, step, history, opt_state, opt_spec = 0, 0, [], None, None
    resumed = False
    if state_path.exists():
        st = C.load_state(state_path)
        if st.get("format") != STATE_FORMAT:
            raise AccelsimError(f"{state_path}: not an accelsim training state")
        _check_key(st["key"], key, state_path)
        model = zoo.build(model_name, **st["model_kwargs"])
        model_kwargs = dict(st["model_kwargs"])
        M.register_masks_from_state(model, st["model"])
        model.load_state_dict(st["model"], strict=True)
        M.apply_activation_config(model, st["activation_masks"])
        M.apply_dropout_config(model, st["dropout"])
        method_obj.load_state_dict(st["method"])
        start_epoch, step, history = int(st["epoch"]), int(st["step"]), list(st["history"])
        opt_spec = M.OptimSpec(**st["optimizer_spec"])
        opt_state = st["optimizer"]
        resumed = True
        echo and echo(f"resuming {out} at epoch {start_epoch}/{n_epochs}")

    # channels_last: ~1.4x faster conv training on CPU (measured on lenet4); values unchanged
    conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    if conv:
        model = model.to(memory_format=torch.channels_last)
    ctx = TrainContext(model=model, layers=M.compute_layers(model),
                       dropouts=M.dropout_in_front(model, input_shape), recipe=rec,
                       input_shape=input_shape, steps_per_epoch=steps, step=step, echo=echo)
    if not resumed:
        method_obj.setup(ctx)
        M.apply_masks(model)

    opt = None
    if opt_spec is not None:
        opt = make_optimizer(model, opt_spec)
        opt.load_state_dict(opt_state)

    ckpt_dir = out / "checkpoint"
    if resumed and start_epoch >= n_epochs and (ckpt_dir / C.JSON_NAME).is_file():
        echo and echo(f"{out}: training already complete ({start_epoch} epochs)")
        return C.read_info(ckpt_dir)

    t_epochs = []
    with _progress(progress) as prog:
        for epoch in range(start_epoch, n_epochs):
            ctx.epoch = epoch
            spec = method_obj.optimizer_spec(epoch)
            if opt is None or not _same_kind(spec, opt_spec):
                opt = make_optimizer(model, spec)
            for g in opt.param_groups:
                g["lr"] = spec.lr
            opt_spec = spec
            method_obj.on_epoch_start(ctx)
            M.apply_masks(model)
            torch.manual_seed(seed * 1000003 + epoch)
            model.train()
            task = prog.add_task(f"epoch {epoch + 1}/{n_epochs}", total=steps, loss=0.0,
                                 acc=0.0) if prog else None
            t0 = time.perf_counter()
            from accelsim.models.data import make_batches

            tot_loss = tot_correct = tot_n = 0.0
            for x, y in make_batches(train_set, rec.batch_size, shuffle=True,
                                     seed=seed * 1000003 + epoch, transform=tf_train):
                if conv:
                    x = x.contiguous(memory_format=torch.channels_last)
                out_logits = model(x)
                loss = F.cross_entropy(out_logits, y)
                pen = method_obj.penalty(model)
                total = loss if pen is None else loss + pen
                opt.zero_grad(set_to_none=False)
                total.backward()
                method_obj.after_backward(ctx)
                M.mask_gradients(model)
                opt.step()
                M.apply_masks(model)
                ctx.step += 1
                method_obj.after_step(ctx)
                M.apply_masks(model)
                b = int(y.numel())
                lval = float(loss.detach())
                tot_loss += lval * b
                tot_correct += float((out_logits.argmax(1) == y).sum())
                tot_n += b
                if not math.isfinite(lval):
                    raise AccelsimError(f"training diverged at epoch {epoch + 1} (loss {loss}); "
                                        "lower the learning rate")
                if task is not None:
                    prog.update(task, advance=1, loss=tot_loss / tot_n, acc=tot_correct / tot_n)
            method_obj.on_epoch_end(ctx)
            if epoch == n_epochs - 1:
                method_obj.finish(ctx)
            M.apply_masks(model)
            secs = time.perf_counter() - t0
            t_epochs.append(secs)
            acc, n_test = evaluate(model, test_set, tf_test)
            rec_h = {"epoch": epoch + 1, "train_loss": tot_loss / max(tot_n, 1),
                     "train_accuracy": tot_correct / max(tot_n, 1), "test_accuracy": acc,
                     "test_samples": n_test, "seconds": secs, "lr": spec.lr,
                     "optimizer": spec.name}
            history.append(rec_h)
            if task is not None:
                prog.update(task, description=f"epoch {epoch + 1}/{n_epochs} test {acc:.4f}")
            elif echo:
                echo(f"epoch {epoch + 1}/{n_epochs} loss {rec_h['train_loss']:.4f} "
                     f"train acc {rec_h['train_accuracy']:.4f} test acc {acc:.4f} ({secs:.1f} s)")
            info = _info(model, model_name, model_kwargs, rec, method_obj, history, test_set, acc,
                         n_test, seed, command, from_dir, base_info, epoch + 1, n_epochs,
                         limit_train)
            C.save_checkpoint(ckpt_dir, model, info)
            C.save_state(state_path, {
                "format": STATE_FORMAT, "version": 1, "key": key, "model_kwargs": model_kwargs,
                "epoch": epoch + 1, "step": ctx.step, "history": history,
                "model": model.state_dict(),
                "activation_masks": M.activation_config(model),
                "dropout": M.dropout_config(model),
                "optimizer_spec": opt_spec.__dict__, "optimizer": opt.state_dict(),
                "method": method_obj.state_dict()})

    if n_epochs == 0 or start_epoch >= n_epochs:  # nothing to train: evaluate and write
        if not resumed:
            method_obj.finish(ctx)
            M.apply_masks(model)
        acc, n_test = evaluate(model, test_set, tf_test)
        info = _info(model, model_name, model_kwargs, rec, method_obj, history, test_set, acc,
                     n_test,
                     seed, command, from_dir, base_info, start_epoch, n_epochs, limit_train)
        C.save_checkpoint(ckpt_dir, model, info)
    return C.read_info(ckpt_dir)


def _info(model, model_name, model_kwargs, rec, method_obj, history, test_set, acc, n_test, seed,
          command, from_dir, base_info, epochs_done, n_epochs, limit_train) -> dict:
    from accelsim.models import zoo

    layers = {}
    for name, mod in M.compute_layers(model):
        layers[name] = {"weight_density": M.weight_density(mod),
                        **_jsonable(method_obj.layer_info.get(name, {}))}
    return {
        "model": model_name,
        "model_kwargs": model_kwargs,
        "dataset": zoo.dataset_of(model_name),
        "input_normalization": input_normalization(model_name),
        "method": rec.method,
        "method_params": _jsonable(method_obj.params()),
        "recipe": _jsonable(rec.to_dict()),
        "layers": layers,
        "metrics": {"accuracy": {"value": acc, "num_samples": n_test, "split": test_set.split,
                                 "note": test_set.note},
                    "history": _jsonable(history)},
        "epochs": {"done": epochs_done, "planned": n_epochs},
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
