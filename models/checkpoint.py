"""Checkpoints (a directory, pickle-free) and the resumable training state.

Checkpoint directory:
  weights.safetensors  every tensor of the model's state dict except the masks (weights already
                       zero where masked)
  masks.safetensors    one bool tensor per masked parameter, named "<param>.mask"
                       (e.g. "fc1.weight.mask")
  checkpoint.json      model, model_kwargs, method, method params, recipe, per-layer info
                       (weight density, q, threshold), activation masks (scheme, winner rate,
                       threshold, eps per layer), dropout rates, metrics, seed, software, command,
                       and (format 2) a crc32 per tensor of both files, checked on load; every
                       field is validated on read (checkpoint_meta.py)
Written into a private staging folder next to the target, fsynced, then swapped into place with
one atomic exchange of the two directories (renameat2 RENAME_EXCHANGE) where the file system
has it. Elsewhere the swap is two renames; a kill between them leaves the previous checkpoint
at `.<name>.old-<pid>@<host>`, and the next read or write puts it back at the documented path
and says so. What killed writers leave (their staging folders, with safetensors' own temp files
inside) is removed by the next write of the same checkpoint.
`load_checkpoint` rebuilds a fresh zoo model (or a user model from the file and factory in
`source`, masks re-attached by hooks); no pickle.

The training state (`state.pt` in a run directory) is model + masks + optimizer + epoch + method
schedule state, written with torch.save through accelsim.atomic and read back with
torch.load(weights_only=True) (tensors and plain containers only; anything else is refused).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import pickle
import platform
import re
import shutil
import sys
import zlib
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

from accelsim.errors import AccelsimError
from accelsim.models import methods as M
from accelsim.models.checkpoint_meta import FORMAT, FORMAT_VERSION, check_info
from accelsim.staging import _HOST, fsync_path, remove_stale, staging_dir, writer_gone

JSON_NAME = "checkpoint.json"
# temp names of earlier versions (mkdtemp/mkstemp suffixes, pid-only old folders)
_LEGACY = (r"\.tmp-[A-Za-z0-9_]{8}", r"\.old-\d+")


def software_versions() -> dict:
    import numpy

    import accelsim

    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "accelsim": accelsim.__version__}


def hardware_info() -> dict:
    """Where the weights were computed: results record the machine they ran on (a CPU recipe
    must stay reproducible wherever a long run was done)."""
    import os

    cpu = platform.processor() or None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"device": "cpu", "cpu": cpu, "machine": platform.machine() or None,
            "logical_cpus": str(os.cpu_count()), "torch_threads": str(torch.get_num_threads())}


def resolve_checkpoint_dir(path) -> Path:
    """A checkpoint directory, or a training run directory holding `checkpoint/`."""
    p = Path(path)
    if (p / JSON_NAME).is_file():
        return p
    if (p / "checkpoint" / JSON_NAME).is_file():
        return p / "checkpoint"
    for target in (p, p / "checkpoint"):
        if not target.exists() and target.parent.is_dir() and recover(target):
            return target
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
        "hardware": hardware_info(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    meta.setdefault("command", list(sys.argv))
    meta["tensors"] = {"weights.safetensors": tensor_crcs(weights),
                       "masks.safetensors": tensor_crcs(masks)}
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        recover(out)
        tmp = staging_dir(out, _LEGACY)
        try:
            save_file(weights, str(tmp / "weights.safetensors"))
            save_file(masks, str(tmp / "masks.safetensors"))
            (tmp / JSON_NAME).write_text(json.dumps(meta, indent=1, sort_keys=False) + "\n")
            for name in ("weights.safetensors", "masks.safetensors", JSON_NAME):
                fsync_path(tmp / name)
            fsync_path(tmp)
            _replace_dir(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # after a swap: the previous checkpoint
    except Exception as exc:  # full disk, read-only file system (safetensors: Rust errors)
        from accelsim.atomic import os_error_reason

        reason = os_error_reason(exc)
        if reason is None:
            raise
        raise AccelsimError(f"{out}: cannot write the checkpoint ({reason})") from None
    return out


def tensor_crcs(tensors: dict) -> dict:
    """{name: {"crc32": crc of the tensor's bytes as stored (little-endian, C order)}}."""
    return {k: {"crc32": _crc(v)} for k, v in sorted(tensors.items())}


def _crc(t: torch.Tensor) -> int:
    raw = t.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
    return zlib.crc32(raw) & 0xFFFFFFFF


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux renameat2 RENAME_EXCHANGE); False where the
    system or the file system cannot."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _replace_dir(tmp: Path, out: Path) -> None:
    """Put the finished folder `tmp` at `out`. An existing `out` ends up in `tmp` (removed by
    the caller): exchanged atomically where possible, else moved aside to `.<name>.old-...`
    first (a kill between the two renames is repaired by `recover`)."""
    if not out.exists():
        os.replace(tmp, out)
    elif not _exchange(tmp, out):
        old = out.parent / f".{out.name}.old-{os.getpid()}@{_HOST}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(tmp, out)
        os.replace(old, tmp)
    fsync_path(out.parent)


def recover(target: Path) -> bool:
    """If `target` is missing and an interrupted replacement left the previous checkpoint aside,
    put it back (saying so on stderr) and return True; remove other leftovers of dead writers."""
    target = Path(target)
    pattern = re.compile(re.escape(f".{target.name}.old-") + r"(\d+)(?:@([A-Za-z0-9_.]+))?$")
    try:
        names = os.listdir(target.parent)
    except OSError:
        return False
    aside = [target.parent / n for n in names
             if (m := pattern.match(n)) and writer_gone(int(m.group(1)), m.group(2))
             and (target.parent / n / JSON_NAME).is_file()]
    aside.sort(key=lambda p: p.stat().st_mtime)
    restored = False
    if not target.exists() and aside:
        os.replace(aside[-1], target)
        print(f"note: {target} was missing after an interrupted checkpoint replacement; restored "
              f"the previous checkpoint from {aside[-1].name}", file=sys.stderr)
        restored = True
    if target.exists():
        remove_stale(target, _LEGACY)
    return restored


def read_info(ckpt_dir) -> dict:
    """checkpoint.json of a checkpoint (or run) directory, every field validated."""
    from accelsim.traces.validate import parse_json

    d = resolve_checkpoint_dir(ckpt_dir)
    path = d / JSON_NAME
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise AccelsimError(f"{path}: unreadable checkpoint metadata "
                            f"({getattr(exc, 'strerror', None) or exc})") from None
    info = parse_json(text, str(path), "checkpoint metadata")
    check_info(info, path)
    return info


def _load_tensors(path: Path, crcs: dict | None) -> dict:
    """The tensors of one file, each checked against its crc32 in checkpoint.json (format 2)."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise AccelsimError(f"{path}: missing checkpoint file")
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        msg = " ".join(str(exc).split())[:200]
        raise AccelsimError(f"{path}: unreadable safetensors file ({msg})") from None
    if crcs is not None:
        if set(crcs) != set(tensors):
            extra, miss = sorted(set(tensors) - set(crcs)), sorted(set(crcs) - set(tensors))
            raise AccelsimError(f"{path}: tensors do not match the list in {JSON_NAME} "
                                f"(missing {miss}, unexpected {extra})")
        for name, t in tensors.items():
            if _crc(t) != crcs[name]["crc32"]:
                raise AccelsimError(f"{path}: tensor {name!r} is corrupt (crc32 mismatch)")
    return tensors


def load_checkpoint(ckpt_dir) -> tuple[nn.Module, dict]:
    """Fresh zoo model with the checkpoint's weights, weight masks (as `weight_mask` buffers),
    activation-mask configuration and dropout rates; in eval mode."""
    from accelsim.models import zoo

    d = resolve_checkpoint_dir(ckpt_dir)
    info = read_info(d)
    try:
        from accelsim.models.usermodel import build_from_info, is_user_model

        if is_user_model(info["model"]):  # FILE.py:FACTORY, rebuilt from info["source"]
            model = build_from_info(info, str(d / JSON_NAME))
        else:
            model = zoo.build(info["model"], **info["model_kwargs"])
    except (KeyError, TypeError, ValueError) as exc:
        raise AccelsimError(f"{d / JSON_NAME}: cannot build model {info['model']!r} "
                            f"with {info['model_kwargs']} ({exc})") from None
    crcs = info.get("tensors", {})
    weights = _load_tensors(d / "weights.safetensors", crcs.get("weights.safetensors"))
    masks = _load_tensors(d / "masks.safetensors", crcs.get("masks.safetensors"))
    listed = info.get("weight_masks")
    if listed is not None and set(listed) != set(masks):
        raise AccelsimError(f"{d / JSON_NAME}: 'weight_masks' lists {sorted(listed)} but "
                            f"masks.safetensors holds {sorted(masks)}")
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
    _check_names(model, info, d / JSON_NAME)
    try:
        M.apply_activation_config(model, info.get("activation_masks", {}))
    except AccelsimError as exc:  # a combination the mask refuses (e.g. a scheme without eps)
        raise AccelsimError(f"{d / JSON_NAME}: 'activation_masks': {exc}") from None
    M.apply_dropout_config(model, info.get("dropout", {}))
    model.eval()
    return model, info


def _check_names(model: nn.Module, info: dict, path: Path) -> None:
    """Every module checkpoint.json configures exists in the model and is of the right kind."""
    dropouts = {n for n, m in model.named_modules() if isinstance(m, nn.Dropout)}
    masks = set(M.activation_masks(model))
    for field, have, kind in (("dropout", dropouts, "a dropout module"),
                              ("activation_masks", masks, "an activation mask")):
        unknown = sorted(set(info.get(field) or {}) - have)
        if unknown:
            raise AccelsimError(f"{path}: {field!r} names {unknown[0]!r}, which is not {kind} "
                                f"of model {info['model']!r} (it has: "
                                f"{', '.join(sorted(have)) or 'none'})")


# ---- training state ----------------------------------------------------------------------------
def save_state(path, state: dict) -> None:
    """torch.save `state` to `path` atomically (accelsim.atomic)."""
    from accelsim.atomic import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path) -> dict:
    """The training state, tensors and plain containers only (pickled objects are refused)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message: its advice (not repeated here), then "WeightsUnpickler error: <why>"
        why = str(exc).partition("WeightsUnpickler error:")[2].strip().split("\n")[0].strip()
        if why.startswith("Unsupported global"):
            name = why.partition(":")[2].strip().removeprefix("GLOBAL").split()[0]
            raise AccelsimError(f"{path}: refused: the training state holds a pickled Python "
                                f"object ({name}), not only tensors and plain containers; "
                                "accelsim never unpickles; delete it to restart") from None
        msg = why or " ".join(str(exc).split())[:200]
        raise AccelsimError(f"{path}: unreadable training state ({msg}); delete it to restart") \
            from None
    except Exception as exc:
        msg = " ".join(str(exc).split())[:200]
        raise AccelsimError(f"{path}: unreadable training state ({msg}); delete it to restart") \
            from None
