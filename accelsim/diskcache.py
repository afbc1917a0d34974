"""The on-disk encoding cache: where it lives, how an entry is stored, how big it may grow.

Why a folder of plain files: an entry is written once and read by every later process (and by
every Dask worker on the machine); large arrays are memory-mapped, so a warm replay reads only
the pages its kernels touch and worker processes share them through the page cache.

- Location: $ACCELSIM_CACHE (default ~/.cache/accelsim/encoded, or under $XDG_CACHE_HOME);
  "off" disables the cache.
- An entry is `v<version>-<key>.json` (scalars) or a folder `v<version>-<key>/` of `.npy` files
  and a manifest of their dtypes, shapes and data offsets (arrays, memory-mapped read-only;
  nothing is ever unpickled). Both are written to a temp name and
  renamed into place, so a reader sees a whole entry or none. An entry that fails to load
  (truncated, wrong header, missing array) is removed and recomputed, never trusted; the
  bytes inside a well-formed `.npy` are not checksummed (see docs/hardware-model.md,
  "Encode once", for what the cache trusts).
- Size: at most $ACCELSIM_CACHE_SIZE (default 4G; suffixes K, M, G, T; 0 keeps nothing on
  disk). When a write takes it over the limit, the least recently used entries are removed
  (a read marks an entry used). `accelsim cache info` and `accelsim cache clear`.
- Only names this module writes are ever listed, counted or removed: pointing
  $ACCELSIM_CACHE at a folder that holds other files never deletes them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CACHE_ENV = "ACCELSIM_CACHE"
SIZE_ENV = "ACCELSIM_CACHE_SIZE"
DEFAULT_SIZE = "4G"
VERSION = 2  # bump when the meaning or layout of an entry changes
_ENTRY = re.compile(r"^v\d+-[0-9a-zA-Z_.=+-]+(\.json)?$")
_TEMP = re.compile(r"^\.tmp-v\d+-")
_TEMP_MAX_AGE_S = 3600  # a temp entry older than this belongs to a killed writer
MANIFEST = "arrays.json"  # {name: [dtype, shape, data offset in name.npy]}
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


_resolved: tuple = (None, None)


def cache_dir() -> Path | None:
    global _resolved
    value = os.environ.get(CACHE_ENV, "")
    if value.lower() == "off":
        return None
    if value:
        if _resolved[0] != value:
            _resolved = (value, Path(value))
        return _resolved[1]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "accelsim" / "encoded"


def parse_size(text: str, where: str = SIZE_ENV) -> int:
    """"4G", "500M", "0", "1.5G" -> bytes (one-line error otherwise)."""
    from accelsim.errors import AccelsimError

    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)(?:i?B)?\s*", str(text), re.IGNORECASE)
    if not m:
        raise AccelsimError(f"{where}={text!r}: expected a size like 4G, 500M or 0")
    value = float(m.group(1)) * _UNITS[m.group(2).upper()]
    if value > 1 << 60:
        raise AccelsimError(f"{where}={text!r}: too large")
    return int(value)


def size_limit() -> int:
    return parse_size(os.environ.get(SIZE_ENV) or DEFAULT_SIZE)


def entry_path(key: str, kind: str) -> Path | None:
    """Where entry `key` lives ("json": a file, "arrays": a folder), or None without a cache."""
    folder = cache_dir()
    if folder is None:
        return None
    name = f"v{VERSION}-{key}"
    return folder / (f"{name}.json" if kind == "json" else name)


# ---- reading -----------------------------------------------------------------------------------


def load(path: Path, kind: str) -> Any:
    """The stored value (a JSON value, or {name: read-only array}), or None when absent or
    damaged (a damaged entry is removed)."""
    try:
        if kind == "json":
            with open(path, encoding="utf-8") as fh:
                value = json.load(fh)
        else:
            with open(path / MANIFEST, encoding="utf-8") as fh:
                manifest = json.load(fh)
            value = {name: _map(path / f"{name}.npy", *spec) for name, spec in manifest.items()}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError, UnicodeDecodeError):
        remove(path)
        return None
    _touch(path)
    return value


def _map(path: Path, dtype: str, shape: list, offset: int) -> np.ndarray:
    """A read-only array over the data of an .npy file, memory-mapped (the manifest holds what
    its header says; a file of the wrong length is damaged)."""
    import mmap

    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise ValueError("object arrays are never stored")
    count = int(np.prod(shape, dtype=np.int64))
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size != offset + count * dtype.itemsize:
            raise ValueError(f"{path.name}: {size} bytes, expected {offset + count * dtype.itemsize}")
        if count == 0:
            return np.empty(shape, dtype=dtype)
        buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    return np.frombuffer(buf, dtype=dtype, count=count, offset=offset).reshape(shape)


def _touch(path: Path) -> None:
    """Mark an entry used now (least recently used entries are evicted first)."""
    try:
        os.utime(path)
    except OSError:
        pass


# ---- writing -----------------------------------------------------------------------------------

_written_since_prune = 0


def store(path: Path, kind: str, value: Any) -> None:
    """Write an entry atomically; a cache that cannot be written only costs time."""
    global _written_since_prune
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}-", dir=folder))
    except OSError:
        return
    try:
        if kind == "json":
            target = tmp / "value.json"
            target.write_text(json.dumps(value), encoding="utf-8")
            size = target.stat().st_size
            os.replace(target, path)
        else:
            size, manifest = 0, {}
            for name, array in value.items():
                array = np.ascontiguousarray(array)
                with open(tmp / f"{name}.npy", "wb") as fh:
                    np.save(fh, array, allow_pickle=False)
                    size += fh.tell()
                    manifest[name] = [array.dtype.str, list(array.shape), fh.tell() - array.nbytes]
            (tmp / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
            try:
                os.rename(tmp, path)
                tmp = None
            except OSError:
                pass  # another process stored it first: theirs is as good
    except OSError:
        return
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    _written_since_prune += size
    limit = size_limit()
    if _written_since_prune > limit // 16:
        _written_since_prune = 0
        prune(limit)


def remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError:
        pass


# ---- size, eviction, inspection ----------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    path: Path
    size: int
    used: float  # last use (modification time), seconds since the epoch


def entries(folder: Path | None = None) -> list[Entry]:
    """The cache's entries (only names this module writes), least recently used first."""
    folder = folder or cache_dir()
    out = []
    try:
        items = list(os.scandir(folder)) if folder is not None else []
    except OSError:
        items = []
    now = time.time()
    for item in items:
        try:
            st = item.stat(follow_symlinks=False)
            if _TEMP.match(item.name):
                if now - st.st_mtime > _TEMP_MAX_AGE_S:
                    remove(Path(item.path))
                continue
            if not _ENTRY.match(item.name):
                continue
            size = st.st_size
            if item.is_dir(follow_symlinks=False):
                size = sum(f.stat(follow_symlinks=False).st_size for f in os.scandir(item.path))
            out.append(Entry(Path(item.path), size, st.st_mtime))
        except OSError:
            continue  # removed meanwhile
    return sorted(out, key=lambda e: e.used)


def prune(limit: int) -> int:
    """Remove least recently used entries until the cache holds at most `limit` bytes;
    returns the bytes removed."""
    found = entries()
    total = sum(e.size for e in found)
    removed = 0
    for entry in found:
        if total - removed <= limit:
            break
        remove(entry.path)
        removed += entry.size
    return removed


def info() -> dict:
    """Where the cache is, its size and limit, its entry count (for `accelsim cache info`)."""
    folder = cache_dir()
    found = entries(folder) if folder is not None else []
    return {"path": str(folder) if folder is not None else "off", "entries": len(found),
            "bytes": sum(e.size for e in found), "limit": size_limit(),
            "oldest": found[0].used if found else None, "newest": found[-1].used if found else None}


def clear() -> tuple[int, int]:
    """Remove every entry; (entries, bytes) removed."""
    found = entries()
    for entry in found:
        remove(entry.path)
    return len(found), sum(e.size for e in found)
