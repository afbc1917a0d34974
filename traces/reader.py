"""Lazy, validated reader of trace files (format v2 and v1). numpy + safetensors only, never torch.

open_trace() checks the container and the metadata JSON up front; Trace.layer() loads one
layer's tensors (memory-mapped by safetensors) and checks dtype, shape, crc32, finiteness,
index order and the relations between fields before handing out a LayerRecord.
"""

from __future__ import annotations

import json
import os
import struct

import numpy as np
from safetensors import safe_open

from accelsim.errors import AccelsimError
from accelsim.traces import format as fmt
from accelsim.traces.schema import Deferred, LayerGeometry, LayerRecord, SparseBatch
from accelsim.traces.validate import (
    _is_int, check_finite, check_meta, check_record, check_sorted_unique, check_weights, fail,
    parse_json,
)

_MAX_HEADER = 100_000_000  # the safetensors library's own header limit


def _read_container(path: str) -> tuple[dict, dict]:
    """(metadata JSON document, {tensor name: (dtype str, shape)}) or a one-line error."""
    if not os.path.exists(path):
        fail(path, "no such file")
    if os.path.isdir(path):
        fail(path, "is a directory, not a trace file")
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                fail(path, f"not a trace: {size} bytes is too short for a safetensors file")
            (n,) = struct.unpack("<Q", head)
            if n > _MAX_HEADER or 8 + n > size:
                fail(path, "not a safetensors file, or truncated (header length beyond end of file)")
            header_bytes = fh.read(n)
    except OSError as exc:
        fail(path, f"cannot read ({exc.strerror or exc})")
    try:
        header = json.loads(header_bytes)
    except (ValueError, RecursionError):  # bad UTF-8, bad JSON, an integer too long to parse
        fail(path, "not a safetensors file (header is not JSON)")
    if not isinstance(header, dict):
        fail(path, "not a safetensors file (header is not a JSON object)")
    ends = [v["data_offsets"][1] for k, v in header.items()
            if k != "__metadata__" and isinstance(v, dict) and isinstance(v.get("data_offsets"), list)
            and len(v["data_offsets"]) == 2 and isinstance(v["data_offsets"][1], int)]
    if 8 + n + max(ends, default=0) > size:
        fail(path, f"truncated: tensor data needs {8 + n + max(ends)} bytes, file has {size}")
    try:
        with safe_open(path, framework="numpy") as f:
            raw_meta = f.metadata() or {}
            info = {k: (f.get_slice(k).get_dtype(), tuple(f.get_slice(k).get_shape()))
                    for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types
        msg = " ".join(str(exc).split())
        fail(path, f"not a valid safetensors file or truncated ({msg})")
    if fmt.METADATA_KEY not in raw_meta:
        fail(path, f"not an accelsim trace (no {fmt.METADATA_KEY!r} metadata)")
    text = raw_meta[fmt.METADATA_KEY]
    crc = raw_meta.get(fmt.METADATA_CRC_KEY)
    if crc is not None and crc != fmt.metadata_crc32(text):
        fail(path, "metadata is corrupt (crc32 mismatch)")
    meta = parse_json(text, path, f"metadata {fmt.METADATA_KEY!r}")
    if crc is None and isinstance(meta, dict) and _is_int(meta.get("format_version")) \
            and meta["format_version"] >= 2:
        fail(path, f"metadata checksum {fmt.METADATA_CRC_KEY!r} is missing (required from "
                   "format_version 2)")
    check_meta(meta, path, size)
    return meta, info


_ST_DTYPES = {"F32": "<f4", "I64": "<i8", "U16": "<u2", "U32": "<u4"}


class Trace:
    """An open trace file. Cheap to open; layers are loaded one at a time on request."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.meta, self._info = _read_container(self.path)
        self.geometries: list[LayerGeometry] = [fmt.geometry_from_json(d) for d in self.meta["layers"]]
        self._by_name = {g.name: i for i, g in enumerate(self.geometries)}
        self._check_tensor_table()

    # -- container-level checks (no tensor data read)

    def _check_tensor_table(self) -> None:
        n_out = self.meta["output_samples"]
        for i, layer in enumerate(self.meta["layers"]):
            where = self._where(i)
            expected = {fmt.tensor_name(i, f) for f in fmt.expected_tensors(layer, n_out)}
            listed = set(layer["tensors"])
            if expected != listed:
                extra, miss = sorted(listed - expected), sorted(expected - listed)
                fail(where, f"metadata tensor list is wrong (missing {miss}, unexpected {extra})")
            absent = sorted(t for t in expected if t not in self._info)
            if absent:
                fail(where, f"missing tensor {absent[0]}")

    def _where(self, i: int) -> str:
        return f"{self.path}: layer {i} ({self.meta['layers'][i]['name']})"

    # -- public API

    def __len__(self) -> int:
        return len(self.geometries)

    def __repr__(self) -> str:
        m = self.meta
        return (f"Trace({self.path!r}, model={m['model']!r}, method={m['method']!r}, "
                f"layers={len(self)}, samples={m['num_samples']})")

    @property
    def num_samples(self) -> int:
        return int(self.meta["num_samples"])

    @property
    def output_samples(self) -> int:
        return int(self.meta["output_samples"])

    @property
    def names(self) -> list[str]:
        return [g.name for g in self.geometries]

    def index(self, key: int | str) -> int:
        if isinstance(key, str):
            if key not in self._by_name:
                raise AccelsimError(f"{self.path}: no layer named {key!r} "
                                    f"(layers: {', '.join(self.names)})")
            return self._by_name[key]
        if not -len(self) <= key < len(self):
            raise AccelsimError(f"{self.path}: layer index {key} out of range (0..{len(self) - 1})")
        return key % len(self)

    def _getter(self, f, i: int):
        """get(field, dtype, shape=None): tensor `field` of layer i read from the open file f,
        its dtype, shape and crc32 checked, and floats checked finite."""
        where = self._where(i)
        layer = self.meta["layers"][i]

        def get(field, dtype, shape=None):
            name = fmt.tensor_name(i, field)
            st_dtype, st_shape = self._info[name]
            if _ST_DTYPES.get(st_dtype) != np.dtype(dtype).str:
                fail(where, f"tensor {name} has dtype {st_dtype}, expected "
                            f"{np.dtype(dtype).name}")
            if shape is not None and st_shape != tuple(shape):
                fail(where, f"tensor {name} has shape {st_shape}, expected {tuple(shape)}")
            if len(st_shape) != (1 if shape is None else len(shape)):
                fail(where, f"tensor {name} must be 1-d, has shape {st_shape}")
            arr = f.get_tensor(name)
            if fmt.crc32(arr) != layer["tensors"][name]["crc32"]:
                fail(where, f"tensor {name} is corrupt (crc32 mismatch)")
            if arr.dtype.kind == "f":
                check_finite(arr, where, f"tensor {name}")
            return arr

        return get

    def _deferred_weights(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        with safe_open(self.path, framework="numpy") as f:
            return self._weights(i, self._getter(f, i))

    def _deferred_outputs(self, i: int) -> np.ndarray:
        shape = (self.output_samples, *self.geometries[i].out_shape)
        with safe_open(self.path, framework="numpy") as f:
            return self._getter(f, i)("outputs", fmt.FLOAT, shape)

    def _weights(self, i: int, get) -> tuple[np.ndarray, np.ndarray | None]:
        """(weight, weight_mask) of layer i, every stored tensor checked (crc32, finite,
        indices sorted and in range); a masked weight is zero off its mask by construction."""
        where = self._where(i)
        wshape = self.geometries[i].weight_shape
        wsize = int(np.prod(wshape))
        if self.meta["layers"][i]["weight_encoding"] == "dense":
            weight, wmask = get("weight", fmt.FLOAT, wshape), None
        else:
            idx = get("weight.indices", fmt.WEIGHT_INDEX)
            vals = get("weight.values", fmt.FLOAT, idx.shape)
            check_sorted_unique(idx, wsize, where, f"tensor {fmt.tensor_name(i, 'weight.indices')}")
            flat_w = np.zeros(wsize, dtype=np.float32)
            flat_m = np.zeros(wsize, dtype=bool)
            flat_w[idx] = vals
            flat_m[idx] = True
            weight, wmask = flat_w.reshape(wshape), flat_m.reshape(wshape)
        check_weights(weight, wmask, self.geometries[i], where, values=False)
        return weight, wmask

    def layer(self, key: int | str, defer_weights: bool = False) -> LayerRecord:
        """Load and validate one layer (by execution index or name).

        defer_weights: the weights (the bulk of a trace) and the recorded outputs are read and
        checked on first use of `weight`, `weight_mask` or `outputs` (schema.Deferred) instead
        of now: a replay whose weight-side encodings and functional check are cached never
        needs them. Everything else (activations, masks, bias, operand) is read and checked now.
        """
        i = self.index(key)
        where = self._where(i)
        layer = self.meta["layers"][i]
        g = self.geometries[i]
        n, n_out = self.num_samples, self.output_samples
        with safe_open(self.path, framework="numpy") as f:
            get = self._getter(f, i)

            def csr(field, shape, with_values):
                size = int(np.prod(shape))
                ptr = get(f"{field}.indptr", fmt.INDPTR, (n + 1,))
                idx = get(f"{field}.indices", fmt.index_dtype(size))
                vals = get(f"{field}.values", fmt.FLOAT, idx.shape) if with_values else None
                return SparseBatch(shape=tuple(shape), indptr=ptr,
                                   indices=idx.astype(np.uint32), values=vals)

            operand = None
            if not g.has_weight:  # matmul: a second per-sample activation operand, no weight
                weight, wmask = None, None
                operand = csr("operand", g.operand_shape, True)
            elif defer_weights:
                weight, wmask = Deferred(lambda: self._deferred_weights(i)), None
            else:
                weight, wmask = self._weights(i, get)
            bias = get("bias", fmt.FLOAT, (g.weight_shape[0],)) if g.has_bias else None
            inputs = csr("inputs", g.in_shape, True)
            premask = act_mask = None
            mp = fmt.mask_from_json(layer["mask"])
            if mp is not None:
                shape = fmt.mask_shape(g.in_shape, mp)
                premask = csr("premask", shape, True)
                act_mask = csr("act_mask", shape, False)
            if not n_out:
                outputs = None
            elif defer_weights:
                outputs = Deferred(lambda: self._deferred_outputs(i))
            else:
                outputs = get("outputs", fmt.FLOAT, (n_out, *g.out_shape))
        rec = LayerRecord(geometry=g, weight=weight, weight_mask=wmask, bias=bias, inputs=inputs,
                          premask=premask, act_mask=act_mask, mask_params=mp, outputs=outputs,
                          operand=operand)
        check_record(rec, where, n, n_out, values_checked=True)
        return rec

    def layers(self):
        """Iterate over all layers, loading each in turn."""
        for i in range(len(self)):
            yield self.layer(i)

    def __iter__(self):
        return self.layers()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def open_trace(path) -> Trace:
    """Open a trace file: checks the container and metadata now, layer tensors on load."""
    return Trace(path)


def validate_trace(path, functional: bool = True) -> Trace:
    """Open and load every layer, raising AccelsimError at the first problem. With
    `functional`, each layer's recorded outputs are also recomputed from its weights and inputs
    (the check `accelsim run` makes) and a mismatch is an error."""
    from accelsim.traces.functional import check_outputs

    trace = open_trace(path)
    for i in range(len(trace)):
        rec = trace.layer(i)
        if functional:
            check_outputs(rec, trace._where(i))
    return trace


__all__ = ["Trace", "open_trace", "validate_trace"]
