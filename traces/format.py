"""Trace format v2 (v1 still read): names, dtypes, bounds and the metadata JSON <-> schema
mapping (numpy only).

One place for every constant of the on-disk contract, so the writer, the reader and the spec
(docs/trace-format.md) cannot drift apart.
"""

from __future__ import annotations

import zlib

import numpy as np

from accelsim.traces.schema import LayerGeometry, MaskParams

FORMAT_NAME = "accelsim-trace"
FORMAT_VERSION = 2  # major version written; a reader refuses majors it does not know
METADATA_KEY = "accelsim_trace"  # the metadata JSON document in the safetensors __metadata__
METADATA_CRC_KEY = "accelsim_trace_crc32"  # v2: crc32 of that document's UTF-8 bytes (decimal)
SUPPORTED_VERSIONS = (1, 2)

# Bounds on what metadata may claim, checked before anything is allocated (docs/trace-format.md,
# section 4.1). A layer's dense-equivalent arrays (its weight; its input, padded input and output
# over all samples) may hold at most ELEMENTS_PER_FILE_BYTE elements per byte of the file, or
# MIN_ELEMENT_ALLOWANCE, whichever is larger. A dense weight stores 4 bytes per element and a
# masked one 8 per kept weight, so only a masked weight below 1/8192 density alone in its file
# or activations below about 1/6000 density come near the bound.
ELEMENTS_PER_FILE_BYTE = 1024
MIN_ELEMENT_ALLOWANCE = 1 << 22
MAX_INDEXED_ELEMENTS = 1 << 32  # weight.indices and activation indices are at most uint32
MAX_KERNEL_TAPS = 1 << 16  # kernel_h x kernel_w: readers loop over taps (large-kernel CNNs: ~2,600)
MAX_JSON_INT = (1 << 63) - 1  # every integer in the metadata fits int64

MASK_SCHEMES = ("topk", "threshold-prediction", "static-threshold")
WEIGHT_ENCODINGS = ("dense", "masked")

FLOAT = np.dtype("<f4")
INDPTR = np.dtype("<i8")
WEIGHT_INDEX = np.dtype("<u4")

# Keys the top-level JSON must carry (extra keys are allowed: forward-compatible additions).
REQUIRED_KEYS = (
    "format", "format_version", "model", "method", "dataset", "sample_indices", "split",
    "accuracy", "seed", "software", "command", "created", "num_samples", "output_samples",
    "layers",
)
LAYER_KEYS = (
    "name", "kind", "in_shape", "out_shape", "kernel", "stride", "padding", "dilation",
    "groups", "has_bias", "weight_encoding", "mask", "tensors",
)


def element_allowance(file_bytes: int) -> int:
    """The most dense-equivalent elements one layer of a file of `file_bytes` may claim."""
    return max(MIN_ELEMENT_ALLOWANCE, ELEMENTS_PER_FILE_BYTE * int(file_bytes))


def metadata_crc32(text: str) -> str:
    """The v2 metadata checksum as stored: decimal crc32 of the JSON text's UTF-8 bytes."""
    return str(zlib.crc32(text.encode("utf-8")) & 0xFFFFFFFF)


def index_dtype(size: int) -> np.dtype:
    """Activation index dtype: uint16 when a sample has at most 65536 elements, else uint32."""
    return np.dtype("<u2") if size <= 65536 else np.dtype("<u4")


def tensor_name(index: int, field: str) -> str:
    """`L{index:03d}.{field}`; field may carry a part, e.g. `inputs.indptr`."""
    return f"L{index:03d}.{field}"


def crc32(array: np.ndarray) -> int:
    """zlib.crc32 of the array's little-endian C-order bytes (what the file stores)."""
    return zlib.crc32(np.ascontiguousarray(array).view(np.uint8).reshape(-1)) & 0xFFFFFFFF


def expected_tensors(layer: dict, output_samples: int) -> list[str]:
    """Tensor fields (without the `Lnnn.` prefix) that a layer's metadata implies."""
    if layer["kind"] == "matmul":  # no weight: a second per-sample activation operand
        fields = ["operand.indptr", "operand.indices", "operand.values"]
    elif layer["weight_encoding"] == "dense":
        fields = ["weight"]
    else:
        fields = ["weight.indices", "weight.values"]
    if layer["has_bias"]:
        fields.append("bias")
    fields += ["inputs.indptr", "inputs.indices", "inputs.values"]
    if layer["mask"] is not None:
        fields += ["premask.indptr", "premask.indices", "premask.values"]
        fields += ["act_mask.indptr", "act_mask.indices"]
    if output_samples > 0:
        fields.append("outputs")
    return fields


def geometry_to_json(geom: LayerGeometry) -> dict:
    return {
        "name": geom.name,
        "kind": geom.kind,
        "in_shape": [int(d) for d in geom.in_shape],
        "out_shape": [int(d) for d in geom.out_shape],
        "kernel": [int(d) for d in geom.kernel],
        "stride": [int(d) for d in geom.stride],
        "padding": [int(d) for d in geom.padding],
        "dilation": [int(d) for d in geom.dilation],
        "groups": int(geom.groups),
        "has_bias": bool(geom.has_bias),
    }


def geometry_from_json(d: dict) -> LayerGeometry:
    """Assumes the types were checked (validate.check_layer_json)."""
    return LayerGeometry(
        name=d["name"],
        kind=d["kind"],
        in_shape=tuple(d["in_shape"]),
        out_shape=tuple(d["out_shape"]),
        kernel=tuple(d["kernel"]),
        stride=tuple(d["stride"]),
        padding=tuple(d["padding"]),
        dilation=tuple(d["dilation"]),
        groups=d["groups"],
        has_bias=d["has_bias"],
    )


def mask_to_json(mp: MaskParams | None) -> dict | None:
    if mp is None:
        return None
    out = {"scheme": mp.scheme, "winner_rate": mp.winner_rate, "threshold": mp.threshold,
           "eps": mp.eps}
    if mp.shape is not None or mp.carried:  # a mask carried to the layer (section 3.3)
        out["shape"] = [int(d) for d in (mp.shape or ())]
        out["carried"] = [dict(op) for op in mp.carried]
    return out


def mask_from_json(d: dict | None) -> MaskParams | None:
    if d is None:
        return None
    shape = d.get("shape")
    return MaskParams(scheme=d["scheme"], winner_rate=d.get("winner_rate"),
                      threshold=d.get("threshold"), eps=d.get("eps"),
                      shape=None if shape is None else tuple(shape),
                      carried=tuple(d.get("carried") or ()))


def mask_shape(layer_in_shape: tuple, mp: MaskParams) -> tuple:
    """Per-sample shape of a layer's premask and act_mask (the mask's own tensor)."""
    return tuple(layer_in_shape) if mp.shape is None else tuple(mp.shape)
