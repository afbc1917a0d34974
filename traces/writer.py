"""Write a trace file (format v2): validate, encode, checksum, write atomically.

numpy + safetensors only. The file appears at `path` only once it is complete
(accelsim.atomic: temp file beside it, fsync, rename), so a crashed or killed writer never
leaves a file that reads as a whole trace; what a killed writer leaves (safetensors' own temp
file included) is removed by a later write of the same path.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from accelsim.atomic import atomic_write
from accelsim.errors import AccelsimError
from accelsim.staging import staging_dir
from accelsim.traces import format as fmt
from accelsim.traces.schema import LayerRecord, SparseBatch
from accelsim.traces.validate import check_meta, check_record

# Keys the writer fills in itself; a caller's values for them are replaced.
_WRITER_KEYS = ("format", "format_version", "num_samples", "output_samples", "layers")


def software_versions() -> dict:
    """Versions of what produced the trace; torch only if it is already imported."""
    import accelsim

    sw = {"python": platform.python_version(), "numpy": np.__version__,
          "accelsim": accelsim.__version__, "torch": None}
    if "torch" in sys.modules:
        sw["torch"] = str(sys.modules["torch"].__version__)
    return sw


def _encode_csr(b: SparseBatch, prefix: str, with_values: bool) -> dict[str, np.ndarray]:
    out = {
        f"{prefix}.indptr": np.ascontiguousarray(b.indptr, dtype=fmt.INDPTR),
        f"{prefix}.indices": np.ascontiguousarray(b.indices, dtype=fmt.index_dtype(b.size)),
    }
    if with_values:
        out[f"{prefix}.values"] = np.ascontiguousarray(b.values, dtype=fmt.FLOAT)
    return out


def encode_layer(index: int, rec: LayerRecord) -> tuple[dict, dict[str, np.ndarray]]:
    """(layer JSON without crcs, tensors) for one validated record."""
    name = lambda field: fmt.tensor_name(index, field)  # noqa: E731
    tensors: dict[str, np.ndarray] = {}
    mask = rec.weight_mask
    if rec.operand is not None:  # matmul: no weight, a second per-sample operand
        encoding = "dense"
        tensors.update(_encode_csr(rec.operand, name("operand"), True))
    elif mask is None or bool(np.all(mask)):
        encoding = "dense"
        tensors[name("weight")] = np.ascontiguousarray(rec.weight, dtype=fmt.FLOAT)
    else:
        encoding = "masked"
        flat = np.flatnonzero(np.asarray(mask, dtype=bool).reshape(-1))
        tensors[name("weight.indices")] = flat.astype(fmt.WEIGHT_INDEX)
        tensors[name("weight.values")] = np.ascontiguousarray(
            np.asarray(rec.weight).reshape(-1)[flat], dtype=fmt.FLOAT)
    if rec.bias is not None:
        tensors[name("bias")] = np.ascontiguousarray(rec.bias, dtype=fmt.FLOAT)
    tensors.update(_encode_csr(rec.inputs, name("inputs"), True))
    if rec.mask_params is not None:
        tensors.update(_encode_csr(rec.premask, name("premask"), True))
        tensors.update(_encode_csr(rec.act_mask, name("act_mask"), False))
    if rec.outputs is not None and rec.outputs.shape[0] > 0:
        tensors[name("outputs")] = np.ascontiguousarray(rec.outputs, dtype=fmt.FLOAT)
    layer = fmt.geometry_to_json(rec.geometry)
    layer["weight_encoding"] = encoding
    layer["mask"] = fmt.mask_to_json(rec.mask_params)
    return layer, tensors


def build_meta(meta: dict, layers: list[LayerRecord], where: str) -> dict:
    """Caller's metadata plus writer-owned keys and defaults."""
    if not isinstance(meta, dict):
        raise AccelsimError(f"{where}: meta must be a dict")
    if not layers:
        raise AccelsimError(f"{where}: a trace needs at least one layer")
    n = layers[0].inputs.num_samples
    outs = {0 if r.outputs is None else int(r.outputs.shape[0]) for r in layers}
    if len(outs) != 1:
        raise AccelsimError(f"{where}: layers hold outputs for different sample counts {sorted(outs)}")
    doc = {
        "sample_indices": list(range(n)), "split": None, "accuracy": None, "seed": None,
        "command": list(sys.argv),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "software": software_versions(),
    }
    doc.update({k: v for k, v in meta.items() if k not in _WRITER_KEYS})
    if "sample_indices" in meta:
        doc["sample_indices"] = [int(i) for i in meta["sample_indices"]]
    doc.update(format=fmt.FORMAT_NAME, format_version=fmt.FORMAT_VERSION, num_samples=n,
               output_samples=outs.pop())
    return doc


def write_trace(path, meta: dict, layers: list[LayerRecord]) -> None:
    """Validate `layers`, then write them with `meta` to `path` atomically.

    meta needs model, method, dataset; sample_indices (default 0..S-1), split, accuracy, seed,
    command (default sys.argv), created and software are filled in when absent. Extra keys are
    kept. Outputs are stored for the first S_out samples, S_out = len(record.outputs) (the same
    for every layer; 0 or None for none).
    """
    path = os.fspath(path)
    doc = build_meta(meta, layers, path)
    n, n_out = doc["num_samples"], doc["output_samples"]
    all_tensors: dict[str, np.ndarray] = {}
    doc["layers"] = []
    for i, rec in enumerate(layers):
        check_record(rec, f"{path}: layer {i} ({rec.name})", n, n_out)
        layer, tensors = encode_layer(i, rec)
        layer["tensors"] = {k: {"crc32": fmt.crc32(v)} for k, v in tensors.items()}
        doc["layers"].append(layer)
        all_tensors.update(tensors)
    try:
        text = json.dumps(doc, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise AccelsimError(f"{path}: metadata is not JSON-serialisable ({exc})") from None
    # the file holds at least the tensor bytes and the metadata: the reader's bounds will pass
    check_meta(json.loads(text), path, sum(t.nbytes for t in all_tensors.values()) + len(text))
    _atomic_save(all_tensors, {fmt.METADATA_KEY: text,
                               fmt.METADATA_CRC_KEY: fmt.metadata_crc32(text)}, path)


def _save(tensors: dict[str, np.ndarray], metadata: dict[str, str], tmp: str) -> None:
    """Write the safetensors bytes (a seam: tests make it fail half-way)."""
    save_file(tensors, tmp, metadata=metadata)


def _atomic_save(tensors: dict, metadata: dict, path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise AccelsimError(f"{path}: directory {directory} does not exist")
    atomic_write(path, lambda tmp: _save_staged(tensors, metadata, tmp, path))


def _save_staged(tensors: dict, metadata: dict, tmp: str, path: str) -> None:
    """safetensors writes its own temp file beside the file it is given and renames it: do that
    inside a private staging folder keyed by the target (accelsim.staging), so what a killed
    writer leaves is removed by the next write of the same trace."""
    stage = staging_dir(Path(os.path.abspath(path)))
    try:
        inner = stage / "trace.safetensors"
        _save(tensors, metadata, str(inner))
        os.replace(inner, tmp)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
