"""Encode once: weight-side work of a trace layer, computed once and reused.

Why: a replay runs each layer on the sparse array and its baseline, then asks for its
storage footprint, statistics and functional check; a sweep does it again for every point. The
per-PE column counts, the CSC, the cost tables and the statistics depend only on the layer and
a few encoding parameters, never on the FIFO depth or the top-k unit, so they are memoised:

- in memory, on the LayerRecord itself (`layer.extra["encoded"]`), for as long as the layer
  lives (a replay; every point of a sweep in the same process, see simulate.loaded_trace);
- on disk, for the entries that ask for it, when the layer carries a content key
  (`layer.extra["content_key"]`: the trace's content id and the layer index): one entry per
  (layer, what, parameters) in the encoding cache (accelsim.diskcache: $ACCELSIM_CACHE,
  bounded, least recently used entries evicted; "off" disables it). The key also holds a
  fingerprint of the code that computes the entries (code_fingerprint), so a changed
  simulator never reads what an older one stored. A damaged entry is recomputed, never
  trusted.

A LayerRecord is treated as immutable once simulated: code that edits a record's arrays in
place must build a new record (or clear `layer.extra["encoded"]`).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np

from accelsim.diskcache import CACHE_ENV, cache_dir  # noqa: F401 (part of this module's API)

# The modules whose code computes what the cache stores (weight-side encodings, layer
# statistics, the checks remembered as passed): their source is hashed into every key.
_CODE = ("accelsim.encoded", "accelsim.simulate", "accelsim.topk", "accelsim.dataflows",
         "accelsim.traces.info", "accelsim.traces.validate", "accelsim.traces.reader",
         "accelsim.traces.functional")
_fingerprint: str | None = None


def code_fingerprint() -> str:
    """12 hex digits of sha256 over the source of the code whose results the cache keeps."""
    global _fingerprint
    if _fingerprint is None:
        import importlib.util

        h = hashlib.sha256()
        for name in _CODE:
            spec = importlib.util.find_spec(name)
            if spec.submodule_search_locations:  # a package: every module in it
                files = sorted(f for d in spec.submodule_search_locations
                               for f in Path(d).rglob("*.py"))
            else:
                files = [Path(spec.origin)]
            for f in files:
                h.update(f"{name}:{f.name}".encode())
                try:
                    h.update(f.read_bytes())
                except OSError:
                    h.update(b"?")
        _fingerprint = h.hexdigest()[:12]
    return _fingerprint


def _disk_key(layer, name: str, params: tuple) -> str | None:
    key = layer.extra.get("content_key") if isinstance(layer.extra, dict) else None
    if key is None:
        return None
    tag = re.sub(r"[^0-9a-zA-Z_.=+-]", "_", "-".join(str(p) for p in params))
    return f"{code_fingerprint()}-{key}-{name}-{tag}"


def is_done(layer, name: str, params: tuple = ()) -> bool:
    """Whether a check (name, params) already passed for this layer: in this process, or, for
    a layer with a content key, recorded on disk by remember_done."""
    store = layer.extra.setdefault("encoded", {})
    if (name, params) in store:
        return True
    from accelsim import diskcache

    key = _disk_key(layer, name, params)
    path = diskcache.entry_path(key, "json") if key is not None else None
    if path is not None and os.path.exists(path) and diskcache.load(path, "json") is True:
        store[(name, params)] = True
        return True
    return False


def remember_done(layer, name: str, params: tuple = ()) -> None:
    """Record that check (name, params) passed for this layer (in memory and on disk)."""
    memo(layer, name, params, lambda: True, pack=lambda v: v, unpack=lambda v: v is True or None)


def trace_content_id(path) -> str:
    """Content id of a trace file: sha256 of its safetensors header (which lists the crc32 of
    every tensor) and its size. Cheap for any trace size; changes when any tensor changes."""
    from accelsim.errors import AccelsimError

    try:
        with open(path, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = fh.read(min(n, 100_000_000))
        size = os.path.getsize(path)
    except OSError as exc:
        raise AccelsimError(f"{path}: cannot read trace ({exc.strerror or exc})") from None
    return hashlib.sha256(header + str(size).encode()).hexdigest()[:16]


def _is_arrays(value) -> bool:
    return isinstance(value, dict) and bool(value) and all(
        isinstance(v, np.ndarray) for v in value.values())


def memo(layer, name: str, params: tuple, compute: Callable[[], Any], *,
         pack: Callable[[Any], Any] | None = None,
         unpack: Callable[[Any], Any] | None = None) -> Any:
    """compute() once per (layer, name, params); with pack/unpack also on disk. pack returns
    {name: array} (stored as .npy files, read back memory-mapped and read-only) or a JSON
    value; unpack turns what was stored back into the value."""
    from accelsim import diskcache

    store = layer.extra.setdefault("encoded", {})
    key = (name, params)
    if key in store:
        return store[key]
    disk_key = _disk_key(layer, name, params) if pack is not None else None
    value = None
    if disk_key is not None:
        for kind in ("arrays", "json"):
            path = diskcache.entry_path(disk_key, kind)
            if path is None or not os.path.exists(path):
                continue
            stored = diskcache.load(path, kind)
            if stored is not None:
                try:
                    value = unpack(stored)
                except (KeyError, ValueError, TypeError):
                    diskcache.remove(path)
                    value = None
            break
    if value is None:
        value = compute()
        if disk_key is not None:
            packed = pack(value)
            kind = "arrays" if _is_arrays(packed) else "json"
            path = diskcache.entry_path(disk_key, kind)
            if path is not None:
                diskcache.store(path, kind, packed)
    store[key] = value
    return value
