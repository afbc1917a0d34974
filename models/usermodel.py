"""A researcher's own nn.Module in the zoo's place: built from `my_net.py:build`, with JPnet
activation masks attached where the researcher says (docs/own-model.md).

A user model is named "FILE.py:FACTORY"; the factory takes no argument and returns the module.
Its checkpoint records `source` = {file (absolute path), factory, sha256 of the file} and
`mask_locations` = {"before": [compute layer names], "after": [module names]}, so it is rebuilt
by importing the same file, calling the factory and attaching the same masks: no pickle.

Mask placement (attach_masks):
- before=LOC: a mask on the input of each matching Conv2d/Linear (what the zoo does). Matched by
  type, the network's first compute layer is left out (the image is not masked). Key: the layer.
- after=LOC: a mask on the output of each matching module (e.g. after every ReLU). Matched by
  type, the last match in execution order is left out unless skip_last=False. Key: the module.
LOC is a module name, a module class, a class name ("ReLU") or a list of them. The mask is a
child module named `in_mask` / `out_mask` of the located module (no parameters, so the state
dict is unchanged) applied by a forward (pre-)hook; `model.mask_map` = {key: mask module name}
in execution order, as zoo models have it, so every tool that configures masks works.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

import torch
from torch import nn

from accelsim.errors import AccelsimError
from accelsim.models.masks import ActivationMask

# per-sample input (C, H, W) of each data set a user model can be trained on
DATASET_SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
COMPUTE = (nn.Conv2d, nn.Linear)


def is_user_model(name: str) -> bool:
    """True for "FILE.py:FACTORY" (anything else is a zoo name)."""
    file, sep, factory = str(name).rpartition(":")
    return bool(sep) and file.endswith(".py") and bool(factory)


def split_name(name: str) -> tuple[Path, str]:
    file, _, factory = str(name).rpartition(":")
    return Path(file), factory


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_factory(name: str) -> tuple[nn.Module, dict]:
    """Import FILE.py, call FACTORY(); returns (module, source record). Every failure is one
    AccelsimError line naming the file and the problem."""
    path, factory = split_name(name)
    if not path.is_file():
        raise AccelsimError(f"{path}: model file does not exist")
    path = path.resolve()
    digest = file_sha256(path)
    mod_name = f"accelsim_user_model_{digest[:16]}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code: any error is theirs, reported in one line
        sys.modules.pop(mod_name, None)
        raise AccelsimError(f"{path}: importing the model file failed: "
                            f"{type(exc).__name__}: {_one_line(exc)}") from None
    fn = getattr(module, factory, None)
    if fn is None or not callable(fn):
        raise AccelsimError(f"{path}: no factory function {factory!r} in the model file")
    try:
        model = fn()
    except Exception as exc:
        raise AccelsimError(f"{path}:{factory}: the factory raised "
                            f"{type(exc).__name__}: {_one_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise AccelsimError(f"{path}:{factory}: the factory returned a value of type "
                            f"{type(model).__name__}, not a torch.nn.Module")
    return model, {"file": str(path), "factory": factory, "sha256": digest}


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or "(no message)"


def check_input_shape(model: nn.Module, input_shape: tuple, where: str) -> list[str]:
    """Run one eval forward on zeros of (1, *input_shape); returns the names of the modules
    that ran, in order. A shape the model does not take is an AccelsimError naming `where`."""
    order: list[str] = []
    names = {id(m): n for n, m in model.named_modules()}
    handles = [m.register_forward_pre_hook(lambda mod, args: order.append(names[id(mod)]))
               for n, m in model.named_modules() if n and not isinstance(m, ActivationMask)]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            p = next(model.parameters(), None)
            x = torch.zeros((1, *input_shape), dtype=p.dtype if p is not None else torch.float32)
            out = model(x)
    except Exception as exc:
        raise AccelsimError(f"{where}: the model does not take the data set's input shape "
                            f"{tuple(input_shape)}: {type(exc).__name__}: {_one_line(exc)}") \
            from None
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise AccelsimError(f"{where}: the model must return (batch, classes) logits, got "
                            f"{type(out).__name__} {tuple(getattr(out, 'shape', ()))}")
    return order


# ---- masks --------------------------------------------------------------------------------
class _InputMask:
    """Forward pre-hook: the layer receives its `in_mask`'s output (a plain object holding no
    reference to any module, so deepcopy and state dicts are unaffected)."""

    def __call__(self, module, args):
        return (module.in_mask(args[0]), *args[1:])


class _OutputMask:
    def __call__(self, module, args, output):
        return module.out_mask(output)


def _matches(name: str, mod: nn.Module, loc) -> bool:
    if isinstance(loc, type):
        return isinstance(mod, loc)
    return name == loc or type(mod).__name__ == loc


def _as_list(loc) -> list:
    if loc is None:
        return []
    return list(loc) if isinstance(loc, (list, tuple)) else [loc]


def resolve_locations(model: nn.Module, input_shape: tuple, before=None, after=None,
                      skip_last: bool = True) -> dict[str, list[str]]:
    """{"before": [layer names], "after": [module names]} in execution order (see module doc)."""
    run = check_input_shape(model, input_shape, type(model).__name__)
    mods = dict(model.named_modules())
    runs: dict[str, int] = {}
    for n in run:
        runs[n] = runs.get(n, 0) + 1
    order = list(dict.fromkeys(run))
    out: dict[str, list[str]] = {"before": [], "after": []}
    for where, locs in (("before", _as_list(before)), ("after", _as_list(after))):
        for loc in locs:
            label = loc.__name__ if isinstance(loc, type) else str(loc)
            by_name = not isinstance(loc, type) and loc in mods
            hits = [n for n in order if _matches(n, mods[n], loc)]
            if where == "before":
                hits = [n for n in hits if isinstance(mods[n], COMPUTE)]
                first = next((n for n in order if isinstance(mods[n], COMPUTE)), None)
                if not by_name:
                    hits = [n for n in hits if n != first]
            elif not by_name and skip_last:
                hits = hits[:-1]
            if not hits:
                what = "Conv2d/Linear " if where == "before" else ""
                raise AccelsimError(f"mask location {where}={label!r} matches no {what}module "
                                    f"that runs in {type(model).__name__}'s forward pass")
            for n in hits:
                if runs.get(n, 0) > 1:
                    raise AccelsimError(f"mask location {where}={label!r}: module {n!r} runs "
                                        f"{runs[n]} times per forward pass; give each use its "
                                        "own module so each gets its own mask")
                if n not in out[where]:
                    out[where].append(n)
    if not out["before"] and not out["after"]:
        raise AccelsimError("no mask location given (before=... or after=...)")
    return out


def attach_masks(model: nn.Module, input_shape: tuple, before=None, after=None,
                 skip_last: bool = True, locations: dict | None = None) -> dict[str, ActivationMask]:
    """Attach (off) ActivationMasks at the locations; returns {key: mask} in execution order.
    `locations` (as resolve_locations returns and checkpoints store) skips the resolution."""
    if getattr(model, "mask_map", None) is not None:
        raise AccelsimError(f"{type(model).__name__} already has activation masks (mask_map)")
    if locations is None:
        locations = resolve_locations(model, input_shape, before, after, skip_last)
    mods = dict(model.named_modules())
    keyed: list[tuple[str, str]] = []
    for where, child, hook in (("before", "in_mask", _InputMask()),
                               ("after", "out_mask", _OutputMask())):
        for n in locations.get(where, []):
            mod = mods.get(n)
            if mod is None:
                raise AccelsimError(f"mask location {n!r}: no such module in "
                                    f"{type(model).__name__}")
            mod.add_module(child, ActivationMask())
            if where == "before":
                mod.register_forward_pre_hook(hook)
            else:
                mod.register_forward_hook(hook)
            keyed.append((n, f"{n}.{child}" if n else child))
    pos = {n: i for i, n in enumerate(mods)}
    model.mask_map = dict(sorted(keyed, key=lambda kv: pos[kv[0]]))
    model.mask_locations = {k: list(v) for k, v in locations.items()}
    return {k: model.get_submodule(v) for k, v in model.mask_map.items()}


# ---- rebuilding from a checkpoint ------------------------------------------------------------
def build_from_info(info: dict, where: str) -> nn.Module:
    """The checkpoint's user model: import its file, call its factory, attach its masks. A file
    whose sha256 changed since training is named in a warning (the weights may still fit)."""
    src = info.get("source") or {}
    if not {"file", "factory"} <= set(src):
        raise AccelsimError(f"{where}: user model {info.get('model')!r} without source file/factory")
    model, now = load_factory(f"{src['file']}:{src['factory']}")
    if src.get("sha256") and src["sha256"] != now["sha256"]:
        import warnings

        warnings.warn(f"{src['file']}: changed since the checkpoint was written (sha256 differs)",
                      stacklevel=2)
    locs = info.get("mask_locations")
    if locs:
        attach_masks(model, input_shape_of(info), locations=locs)
    return model


def input_shape_of(info_or_name) -> tuple:
    """Per-sample input shape of a zoo name or of a checkpoint's info (user models: the data
    set's)."""
    from accelsim.models import zoo

    if isinstance(info_or_name, dict):
        if info_or_name.get("input_shape"):
            return tuple(int(d) for d in info_or_name["input_shape"])
        if is_user_model(info_or_name["model"]):
            return DATASET_SHAPES[dataset_of(info_or_name)]
        info_or_name = info_or_name["model"]
    return tuple(zoo.input_shape(info_or_name))


def dataset_of(info_or_name) -> str:
    from accelsim.models import zoo

    if isinstance(info_or_name, dict):
        if is_user_model(info_or_name["model"]):
            if not info_or_name.get("dataset"):
                raise AccelsimError(f"model {info_or_name.get('model')}: trained from your own "
                                    "data loaders, no data set recorded (train with dataset=...)")
            return info_or_name["dataset"]
        info_or_name = info_or_name["model"]
    return zoo.dataset_of(info_or_name)
