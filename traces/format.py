"""Trace format v1: names, dtypes and the metadata JSON <-> schema mapping (numpy only).

One place for every constant of the on-disk contract, so the writer, the reader and the spec
(docs/trace-format.md) cannot drift apart.
"""

from __future__ import annotations

import zlib

import numpy as np

from accelsim.traces.schema import LayerGeometry, MaskParams

FORMAT_NAME = "accelsim-trace"
FORMAT_VERSION = 1  # major version: a reader refuses majors it does not know
METADATA_KEY = "accelsim_trace"  # the one key of the safetensors __metadata__
SUPPORTED_VERSIONS = (1,)

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
    fields = ["weight"] if layer["weight_encoding"] == "dense" else ["weight.indices", "weight.values"]
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
    return {"scheme": mp.scheme, "winner_rate": mp.winner_rate, "threshold": mp.threshold,
            "eps": mp.eps}


def mask_from_json(d: dict | None) -> MaskParams | None:
    if d is None:
        return None
    return MaskParams(scheme=d["scheme"], winner_rate=d.get("winner_rate"),
                      threshold=d.get("threshold"), eps=d.get("eps"))
