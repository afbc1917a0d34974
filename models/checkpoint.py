"""Checkpoints (a directory, pickle-free) and the resumable training state.

Checkpoint directory:
  weights.safetensors  every tensor of the model's state dict except the masks (weights already
                       zero where masked)
  masks.safetensors    one bool tensor per masked parameter, named "<param>.mask"
                       (e.g. "fc1.weight.mask")
  checkpoint.json      model, model_kwargs, method, method params, recipe, per-layer info
                       (weight density, q, threshold), activation masks (scheme, winner rate,
                       threshold, eps per layer), dropout rates, metrics, seed, software, command
Written into a temp directory next to the target and renamed into place, so a crash never leaves
a directory that looks complete. `load_checkpoint` rebuilds a fresh zoo model; no hooks, no pickle.

The training state (`state.pt` in a run directory) is model + masks + optimizer + epoch + method
schedule state, written with torch.save to a temp file + os.replace and read back with
torch.load(weights_only=True) (tensors and plain containers only).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

from accelsim.errors import AccelsimError
from accelsim.models import methods as M

FORMAT = "accelsim-checkpoint"
FORMAT_VERSION = 1
JSON_NAME = "checkpoint.json"


def software_versions() -> dict:
    import numpy

    import accelsim

    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "accelsim": accelsim.__version__}


def resolve_checkpoint_dir(path) -> Path:
    """A checkpoint directory, or a training run directory holding `checkpoint/`."""
    p = Path(path)
    if (p / JSON_NAME).is_file():
        return p
    if (p / "checkpoint" / JSON_NAME).is_file():
        return p / "checkpoint"
    if not p.exists():
        raise AccelsimError(f"{p}: checkpoint directory does not exist")
    raise AccelsimError(f"{p}: not a checkpoint (no {JSON_NAME} here or in {p / 'checkpoint'})")


def save_checkpoint(out_dir, model: nn.Module, info: dict) -> Path:
    """Write model + masks + `info` (merged into checkpoint.json) atomically into `out_dir`.

    `info` must hold at least "model"; activation masks and dropout rates are read from the
    model; format fields, software and creation time are added here."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    state = model.state_dict()
    mask_keys = set(M.mask_buffer_names(model))
    weights = {k: v.detach().contiguous().clone() for k, v in state.items() if k not in mask_keys}
    masks = {}
    for k in mask_keys:
        mod_name, _, buf = k.rpartition(".")
        param = buf[: -len("_mask")]
        pname = f"{mod_name}.{param}" if mod_name else param
        masks[pname + ".mask"] = state[k].detach().to(torch.bool).contiguous().clone()
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **info,
        "activation_masks": M.activation_config(model),
        "dropout": M.dropout_config(model),
        "weight_masks": {k: {"density": float(v.float().mean()), "shape": list(v.shape)}
                         for k, v in sorted(masks.items())},
        "software": software_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    meta.setdefault("command", list(sys.argv))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    os.chmod(tmp, 0o755)
    try:
        save_file(weights, str(tmp / "weights.safetensors"))
        save_file(masks, str(tmp / "masks.safetensors"))
        (tmp / JSON_NAME).write_text(json.dumps(meta, indent=1, sort_keys=False) + "\n")
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _replace_dir(tmp: Path, out: Path) -> None:
    """Rename tmp -> out; an existing out is moved aside first and removed after."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_info(ckpt_dir) -> dict:
    d = resolve_checkpoint_dir(ckpt_dir)
    path = d / JSON_NAME
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AccelsimError(f"{path}: unreadable checkpoint metadata ({exc})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise AccelsimError(f"{path}: not an accelsim checkpoint (format field missing or wrong)")
    if info.get("format_version") != FORMAT_VERSION:
        raise AccelsimError(f"{path}: unsupported checkpoint format_version "
                            f"{info.get('format_version')!r} "
                            f"(this accelsim reads {FORMAT_VERSION})")
    for key in ("model", "model_kwargs", "method"):
        if key not in info:
            raise AccelsimError(f"{path}: checkpoint metadata lacks {key!r}")
    return info


def _load_tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    if not path.is_file():
        raise AccelsimError(f"{path}: missing checkpoint file")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise AccelsimError(f"{path}: unreadable safetensors file ({exc})") from None


def load_checkpoint(ckpt_dir) -> tuple[nn.Module, dict]:
    """Fresh zoo model with the checkpoint's weights, weight masks (as `weight_mask` buffers),
    activation-mask configuration and dropout rates; in eval mode."""
    from accelsim.models import zoo

    d = resolve_checkpoint_dir(ckpt_dir)
    info = read_info(d)
    try:
        model = zoo.build(info["model"], **info["model_kwargs"])
    except (KeyError, TypeError, ValueError) as exc:
        raise AccelsimError(f"{d / JSON_NAME}: cannot build model {info['model']!r} "
                            f"with {info['model_kwargs']} ({exc})") from None
    weights = _load_tensors(d / "weights.safetensors")
    masks = _load_tensors(d / "masks.safetensors")
    mods = dict(model.named_modules())
    params = dict(model.named_parameters())
    for key, m in masks.items():
        pname = key[: -len(".mask")] if key.endswith(".mask") else None
        if pname not in params or params[pname].shape != m.shape:
            raise AccelsimError(f"{d / 'masks.safetensors'}: mask {key!r} matches no parameter "
                                "of that shape in the model")
        mod_name, _, which = pname.rpartition(".")
        M.set_mask(mods[mod_name], torch.zeros(m.shape, dtype=torch.bool), which)
    state = dict(weights)
    for key, m in masks.items():
        mod_name, _, which = key[: -len(".mask")].rpartition(".")
        state[f"{mod_name}.{which}_mask" if mod_name else f"{which}_mask"] = m.to(torch.bool)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:2]
        raise AccelsimError(f"{d / 'weights.safetensors'}: does not fit model "
                            f"{info['model']!r}: {' '.join(first)}") from None
    for name, t in state.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise AccelsimError(f"{d / 'weights.safetensors'}: tensor {name!r} holds NaN/Inf")
    M.apply_masks(model)
    try:
        M.apply_activation_config(model, info.get("activation_masks", {}))
        M.apply_dropout_config(model, info.get("dropout", {}))
    except KeyError as exc:
        raise AccelsimError(f"{d / JSON_NAME}: names module {exc} that model "
                            f"{info['model']!r} does not have") from None
    model.eval()
    return model, info


# ---- training state ----------------------------------------------------------------------------
def save_state(path, state: dict) -> None:
    """torch.save `state` to `path` atomically (accelsim.atomic)."""
    from accelsim.atomic import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise AccelsimError(f"{path}: unreadable training state ({exc}); delete it to restart") \
            from None
