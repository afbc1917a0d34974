"""Encode once: weight-side work of a trace layer, computed once and reused.

Why: a replay runs each layer on the sparse array and its baseline, then asks for its
storage footprint, statistics and functional check; a sweep does it again for every point. The
per-PE column counts, the CSC, the cost tables and the statistics depend only on the layer and
a few encoding parameters, never on the FIFO depth or the top-k unit, so they are memoised:

- in memory, on the LayerRecord itself (`layer.extra["encoded"]`), for as long as the layer
  lives (a replay; every point of a sweep in the same process, see simulate.loaded_trace);
- on disk, for the entries that ask for it, when the layer carries a content key
  (`layer.extra["content_key"]`: the trace's content id and the layer index): one npz file per
  (layer, what, parameters) under $ACCELSIM_CACHE (default ~/.cache/accelsim/encoded; "off"
  disables it), written atomically, read with allow_pickle=False. A damaged file is
  recomputed and rewritten, never trusted.

A LayerRecord is treated as immutable once simulated: code that edits a record's arrays in
place must build a new record (or clear `layer.extra["encoded"]`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

CACHE_ENV = "ACCELSIM_CACHE"
CACHE_VERSION = 1  # bump when what an entry holds changes meaning


def cache_dir() -> Path | None:
    value = os.environ.get(CACHE_ENV, "")
    if value.lower() == "off":
        return None
    if value:
        return Path(value)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "accelsim" / "encoded"


def _disk_path(layer, name: str, params: tuple) -> Path | None:
    key = layer.extra.get("content_key") if isinstance(layer.extra, dict) else None
    folder = cache_dir()
    if key is None or folder is None:
        return None
    tag = "-".join(str(p) for p in params)
    return folder / f"v{CACHE_VERSION}-{key}-{name}-{tag}.npz"


def _load(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, KeyError):
        return None  # missing or damaged: recompute


def _store(path: Path, arrays: dict[str, np.ndarray]) -> None:
    from accelsim.atomic import atomic_write
    from accelsim.errors import AccelsimError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: _savez(tmp, arrays), fsync=False)
    except (OSError, AccelsimError):
        pass  # a cache that cannot be written only costs time


def _savez(tmp: str, arrays: dict[str, np.ndarray]) -> None:
    with open(tmp, "wb") as fh:  # a file object: np.savez would append ".npz" to a name
        np.savez(fh, **arrays)


def is_done(layer, name: str, params: tuple = ()) -> bool:
    """Whether memo(layer, name, params, ...) already holds a value (a check that passed)."""
    return (name, params) in layer.extra.get("encoded", {})


def trace_content_id(path) -> str:
    """Content id of a trace file: sha256 of its safetensors header (which lists the crc32 of
    every tensor) and its size. Cheap for any trace size; changes when any tensor changes."""
    import hashlib

    from accelsim.errors import AccelsimError

    try:
        with open(path, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = fh.read(min(n, 100_000_000))
        size = os.path.getsize(path)
    except OSError as exc:
        raise AccelsimError(f"{path}: cannot read trace ({exc.strerror or exc})") from None
    return hashlib.sha256(header + str(size).encode()).hexdigest()[:16]


def memo(layer, name: str, params: tuple, compute: Callable[[], Any], *,
         pack: Callable[[Any], dict[str, np.ndarray]] | None = None,
         unpack: Callable[[dict[str, np.ndarray]], Any] | None = None) -> Any:
    """compute() once per (layer, name, params); with pack/unpack also on disk."""
    store = layer.extra.setdefault("encoded", {})
    key = (name, params)
    if key in store:
        return store[key]
    path = _disk_path(layer, name, params) if pack is not None else None
    value = None
    if path is not None and path.exists():
        arrays = _load(path)
        if arrays is not None:
            try:
                value = unpack(arrays)
            except (KeyError, ValueError, TypeError):
                value = None
    if value is None:
        value = compute()
        if path is not None:
            _store(path, pack(value))
    store[key] = value
    return value
