"""Checks shared by the writer (before writing) and the reader (after loading).

Every check raises AccelsimError with one line: `<where>: <problem>`, where `where` names the
file and, for layer problems, the layer. numpy only.
"""

from __future__ import annotations

import json
import math

import numpy as np

from accelsim.errors import AccelsimError
from accelsim.traces import carry, unsimulated
from accelsim.traces import format as fmt
from accelsim.traces.schema import LAYER_KINDS, LayerGeometry, LayerRecord, MaskParams, SparseBatch


def fail(where: str, problem: str) -> None:
    raise AccelsimError(f"{where}: {problem}")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _int_list(x, n: int | None = None, minimum: int = 0) -> bool:
    return (isinstance(x, list) and (n is None or len(x) == n)
            and all(_is_int(v) and v >= minimum for v in x))


# ---------------------------------------------------------------- metadata JSON


def parse_json(text: str, where: str, what: str):
    """json.loads that refuses NaN/Infinity literals, numbers that overflow to inf, integers
    beyond int64 and absurd nesting, each as one error line."""
    def constant(name):
        raise ValueError(f"non-finite number {name}")

    def number(s):
        x = float(s)
        if not math.isfinite(x):
            raise ValueError(f"number {s[:20]} is not finite as a float")
        return x

    def integer(s):
        if len(s) > 20 or abs(int(s)) > fmt.MAX_JSON_INT:
            raise ValueError(f"integer {s[:20]}{'...' if len(s) > 20 else ''} does not fit int64")
        return int(s)

    try:
        return json.loads(text, parse_constant=constant, parse_float=number, parse_int=integer)
    except json.JSONDecodeError as exc:
        fail(where, f"{what} is not valid JSON ({exc.msg} at char {exc.pos})")
    except ValueError as exc:
        fail(where, f"{what}: {exc}")
    except RecursionError:
        fail(where, f"{what} is nested too deeply")


def check_meta(meta, where: str, file_bytes: int) -> None:
    """Top-level JSON document: format, version, the type of every required key, and the
    bounds of section 4.1 of the spec given the file's size (before anything is allocated)."""
    if not isinstance(meta, dict):
        fail(where, "metadata JSON is not an object")
    if meta.get("format") != fmt.FORMAT_NAME:
        fail(where, f"not an accelsim trace (format is {meta.get('format')!r}, "
                    f"expected {fmt.FORMAT_NAME!r})")
    version = meta.get("format_version")
    if not _is_int(version):
        fail(where, f"format_version must be an integer, got {version!r}")
    if version not in fmt.SUPPORTED_VERSIONS:
        fail(where, f"unsupported trace format_version {version} (this reader knows "
                    f"{', '.join(map(str, fmt.SUPPORTED_VERSIONS))}); upgrade accelsim")
    missing = [k for k in fmt.REQUIRED_KEYS if k not in meta]
    if missing:
        fail(where, f"metadata is missing key(s) {', '.join(missing)}")
    for key in ("model", "method", "dataset", "created"):
        if not isinstance(meta[key], str):
            fail(where, f"metadata {key!r} must be a string")
    if meta["split"] is not None and not isinstance(meta["split"], str):
        fail(where, "metadata 'split' must be a string or null")
    if meta["seed"] is not None and not _is_int(meta["seed"]):
        fail(where, "metadata 'seed' must be an integer or null")
    if not isinstance(meta["software"], dict):
        fail(where, "metadata 'software' must be an object")
    if not (isinstance(meta["command"], list) and all(isinstance(a, str) for a in meta["command"])):
        fail(where, "metadata 'command' must be a list of strings")
    n, n_out = meta["num_samples"], meta["output_samples"]
    if not _is_int(n) or n < 1:
        fail(where, f"metadata 'num_samples' must be a positive integer, got {n!r}")
    if not _is_int(n_out) or not 0 <= n_out <= n:
        fail(where, f"metadata 'output_samples' must be an integer in [0, {n}], got {n_out!r}")
    if not _int_list(meta["sample_indices"], n):
        fail(where, f"metadata 'sample_indices' must be a list of {n} non-negative integers")
    acc = meta["accuracy"]
    if acc is not None:
        if not (isinstance(acc, dict) and _is_num(acc.get("value")) and 0 <= acc["value"] <= 1
                and _is_int(acc.get("num_samples")) and acc["num_samples"] > 0):
            fail(where, "metadata 'accuracy' must be null or {value: fraction in [0, 1], "
                        "num_samples: positive integer}")
    layers = meta["layers"]
    if not isinstance(layers, list) or not layers:
        fail(where, "metadata 'layers' must be a non-empty list")
    names = set()
    for i, layer in enumerate(layers):
        check_layer_json(layer, f"{where}: layer {i}", n_out)
        if layer["name"] in names:
            fail(where, f"duplicate layer name {layer['name']!r}")
        names.add(layer["name"])
        check_bounds(fmt.geometry_from_json(layer), n, f"{where}: layer {i} ({layer['name']})",
                     file_bytes)
        if layer["mask"] is not None and layer["mask"].get("shape") is not None:
            claimed = n * math.prod(layer["mask"]["shape"])
            if claimed > fmt.element_allowance(file_bytes):
                fail(f"{where}: layer {i} ({layer['name']})",
                     f"claims {claimed:,} premask elements; a trace of {file_bytes:,} bytes may "
                     f"claim at most {fmt.element_allowance(file_bytes):,} per array (bounds: "
                     "docs/trace-format.md, section 4.1)")
    unsimulated.check(meta, lambda problem: fail(where, problem))


def claimed_elements(g: LayerGeometry, num_samples: int) -> dict[str, int]:
    """Dense-equivalent element counts a layer's metadata implies (exact Python ints)."""
    out = {
        "weight": math.prod(g.weight_shape) if g.has_weight else 0,
        "input": num_samples * math.prod(g.in_shape),
        "output": num_samples * math.prod(g.out_shape),
    }
    if g.kind == "matmul":
        out["operand"] = num_samples * math.prod(g.operand_shape)
    if g.kind == "conv2d":
        c, h, w = g.in_shape
        out["padded input"] = num_samples * c * (h + 2 * g.padding[0]) * (w + 2 * g.padding[1])
    return out


def check_bounds(g: LayerGeometry, num_samples: int, where: str, file_bytes: int) -> None:
    """Every size a layer claims is at most the allowance for a file of `file_bytes` bytes."""
    limit = fmt.element_allowance(file_bytes)
    for what, n in claimed_elements(g, num_samples).items():
        if n > limit:
            fail(where, f"claims {n:,} {what} elements; a trace of {file_bytes:,} bytes may claim "
                        f"at most {limit:,} per array (bounds: docs/trace-format.md, section 4.1)")
    if g.kernel[0] * g.kernel[1] > fmt.MAX_KERNEL_TAPS:
        fail(where, f"kernel {g.kernel[0]}x{g.kernel[1]} has more than {fmt.MAX_KERNEL_TAPS:,} "
                    "taps (bounds: docs/trace-format.md, section 4.1)")
    for what, n in (("weight", math.prod(g.weight_shape) if g.has_weight else 0),
                    ("per-sample input", math.prod(g.in_shape)),
                    ("per-sample operand", math.prod(g.operand_shape) if g.operand_shape else 0)):
        if n > fmt.MAX_INDEXED_ELEMENTS:
            fail(where, f"{what} has {n:,} elements; indices are uint32 (at most "
                        f"{fmt.MAX_INDEXED_ELEMENTS:,})")


def check_layer_json(d, where: str, output_samples: int) -> None:
    """One entry of `layers`: key types, then geometry and mask parameter ranges."""
    if not isinstance(d, dict):
        fail(where, "layer entry is not an object")
    missing = [k for k in fmt.LAYER_KEYS if k not in d]
    if missing:
        fail(where, f"layer metadata is missing key(s) {', '.join(missing)}")
    if not isinstance(d["name"], str) or not d["name"]:
        fail(where, "layer 'name' must be a non-empty string")
    where = f"{where} ({d['name']})"
    if d["kind"] not in LAYER_KINDS:
        fail(where, f"layer 'kind' must be one of {', '.join(LAYER_KINDS)}, got {d['kind']!r}")
    for key in ("in_shape", "out_shape"):
        if not _int_list(d[key], minimum=1) or not d[key]:
            fail(where, f"layer {key!r} must be a list of positive integers")
    for key, minimum in (("kernel", 1), ("stride", 1), ("padding", 0), ("dilation", 1)):
        if not _int_list(d[key], 2, minimum):
            fail(where, f"layer {key!r} must be a list of 2 integers >= {minimum}")
    if not _is_int(d["groups"]) or d["groups"] < 1:
        fail(where, "layer 'groups' must be a positive integer")
    if not isinstance(d["has_bias"], bool):
        fail(where, "layer 'has_bias' must be true or false")
    if d["weight_encoding"] not in fmt.WEIGHT_ENCODINGS:
        fail(where, f"layer 'weight_encoding' must be 'dense' or 'masked', "
                    f"got {d['weight_encoding']!r}")
    if d["kind"] == "matmul" and d["weight_encoding"] != "dense":
        fail(where, "a matmul layer has no weight: its 'weight_encoding' must be 'dense'")
    mask = d["mask"]
    if mask is not None:
        if not isinstance(mask, dict) or "scheme" not in mask:
            fail(where, "layer 'mask' must be null or an object with a 'scheme'")
        for key in ("winner_rate", "threshold", "eps"):
            if mask.get(key) is not None and not _is_num(mask[key]):
                fail(where, f"mask {key!r} must be a number or null")
    tensors = d["tensors"]
    if not isinstance(tensors, dict) or not all(
            isinstance(v, dict) and _is_int(v.get("crc32")) for v in tensors.values()):
        fail(where, "layer 'tensors' must map tensor names to {crc32: integer}")
    geom = fmt.geometry_from_json(d)
    check_geometry(geom, where)
    check_mask_params(fmt.mask_from_json(mask), where)
    if mask is not None:
        carry.check(mask, d["in_shape"], lambda problem: fail(where, problem))


def conv_out_size(n: int, k: int, s: int, p: int, d: int) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


_FLAT_KINDS = {"linear": 1, "token_linear": 2, "matmul": 3}  # kind -> in/out shape rank


def check_geometry(g: LayerGeometry, where: str) -> None:
    """Shapes agree with the layer kind and the convolution output-size formula."""
    if g.kind in _FLAT_KINDS:
        rank = _FLAT_KINDS[g.kind]
        shapes = {1: "(F,)", 2: "(T, F)", 3: "(H, T, K)"}[rank]
        if len(g.in_shape) != rank or len(g.out_shape) != rank:
            fail(where, f"{g.kind} layer needs {rank}-d in/out shapes {shapes}, got "
                        f"{tuple(g.in_shape)} -> {tuple(g.out_shape)}")
        if (g.kernel, g.stride, g.padding, g.dilation, g.groups) != ((1, 1), (1, 1), (0, 0), (1, 1), 1):
            fail(where, f"{g.kind} layer must have kernel (1, 1), stride 1, padding 0, dilation 1, "
                        "groups 1")
        if tuple(g.in_shape[:-1]) != tuple(g.out_shape[:-1]):
            fail(where, f"{g.kind} layer keeps its leading dimensions: input {tuple(g.in_shape)} "
                        f"cannot give output {tuple(g.out_shape)}")
        if g.kind == "matmul" and g.has_bias:
            fail(where, "matmul layer has no bias (has_bias must be false)")
        return
    if g.kind != "conv2d":
        fail(where, f"unknown layer kind {g.kind!r}")
    if len(g.in_shape) != 3 or len(g.out_shape) != 3:
        fail(where, f"conv2d layer needs (C, H, W) in/out shapes, got {g.in_shape} -> {g.out_shape}")
    c, h, w = g.in_shape
    m, oh, ow = g.out_shape
    if c % g.groups or m % g.groups:
        fail(where, f"groups={g.groups} does not divide in channels {c} and out channels {m}")
    exp = (conv_out_size(h, g.kernel[0], g.stride[0], g.padding[0], g.dilation[0]),
           conv_out_size(w, g.kernel[1], g.stride[1], g.padding[1], g.dilation[1]))
    if (oh, ow) != exp:
        fail(where, f"geometry inconsistent: input {h}x{w}, kernel {g.kernel}, stride {g.stride}, "
                    f"padding {g.padding}, dilation {g.dilation} gives output {exp[0]}x{exp[1]}, "
                    f"not {oh}x{ow}")


def check_mask_params(mp: MaskParams | None, where: str) -> None:
    """Scheme known, winner_rate in [0, 1], eps in (0, 1], threshold finite and >= 0, required fields present."""
    if mp is None:
        return
    if mp.scheme not in fmt.MASK_SCHEMES:
        fail(where, f"mask scheme must be one of {', '.join(fmt.MASK_SCHEMES)}, got {mp.scheme!r}")
    if mp.winner_rate is not None and not (0 <= mp.winner_rate <= 1):
        fail(where, f"mask winner_rate must be in [0, 1], got {mp.winner_rate}")
    if mp.eps is not None and not (0 < mp.eps <= 1):
        fail(where, f"mask eps must be in (0, 1], got {mp.eps}")
    if mp.threshold is not None and not (math.isfinite(mp.threshold) and mp.threshold >= 0):
        fail(where, f"mask threshold must be finite and >= 0, got {mp.threshold}")
    if mp.scheme in ("topk", "threshold-prediction") and mp.winner_rate is None:
        fail(where, f"mask scheme {mp.scheme!r} needs a winner_rate")
    if mp.scheme == "threshold-prediction" and mp.eps is None:
        fail(where, "mask scheme 'threshold-prediction' needs eps")
    if mp.scheme == "static-threshold" and mp.threshold is None:
        fail(where, "mask scheme 'static-threshold' needs a threshold")


# ---------------------------------------------------------------- arrays


def check_finite(a: np.ndarray, where: str, what: str) -> None:
    if not np.isfinite(a).all():
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        fail(where, f"{what} holds {bad} NaN/Inf value(s)")


def check_sorted_unique(idx: np.ndarray, size: int, where: str, what: str) -> None:
    """Flat indices strictly increasing and < size (one sample or the weight)."""
    if idx.size == 0:
        return
    i = idx.astype(np.int64, copy=False)
    if int(i.max()) >= size:
        fail(where, f"{what} has index {int(i.max())} out of range (size {size})")
    if idx.size > 1 and not (np.diff(i) > 0).all():
        fail(where, f"{what} indices are not strictly increasing")


def check_csr(b: SparseBatch, shape: tuple, num_samples: int, where: str, what: str,
              values: bool, nonzero: bool = True, finite: bool = True) -> None:
    """Per-sample CSR: indptr starts at 0, is monotone, ends at nnz; indices in range and
    strictly increasing within each sample; values finite (and non-zero for activations)."""
    if tuple(b.shape) != tuple(shape):
        fail(where, f"{what} sample shape {tuple(b.shape)} does not match the layer's {tuple(shape)}")
    ptr = np.asarray(b.indptr)
    if ptr.ndim != 1 or ptr.shape[0] != num_samples + 1:
        fail(where, f"{what}.indptr must have {num_samples + 1} entries, has {ptr.shape}")
    if ptr[0] != 0:
        fail(where, f"{what}.indptr must start at 0")
    if (np.diff(ptr) < 0).any():
        fail(where, f"{what}.indptr is not monotone")
    nnz = int(np.asarray(b.indices).shape[0])
    if np.asarray(b.indices).ndim != 1 or int(ptr[-1]) != nnz:
        fail(where, f"{what}.indptr ends at {int(ptr[-1])}, but there are {nnz} indices")
    size = int(np.prod(shape, dtype=np.int64))
    idx = np.asarray(b.indices)
    if not np.issubdtype(idx.dtype, np.integer):
        fail(where, f"{what}.indices must be integers, got {idx.dtype}")
    if nnz:
        i = idx.astype(np.int64, copy=False)
        if i.min() < 0 or i.max() >= size:
            fail(where, f"{what}.indices out of range [0, {size})")
        step = np.diff(i)
        starts = ptr[1:-1]  # positions where a new sample begins: no ordering across them
        starts = starts[(starts > 0) & (starts < nnz)]
        ok = step > 0
        ok[starts - 1] = True
        if not ok.all():
            fail(where, f"{what}.indices are not strictly increasing within a sample")
    if values:
        if b.values is None or np.asarray(b.values).shape != (nnz,):
            fail(where, f"{what}.values must have one value per index ({nnz})")
        if finite:
            check_finite(b.values, where, f"{what}.values")
        if nonzero and nnz and not np.asarray(b.values).all():
            fail(where, f"{what}.values holds explicit zeros (store non-zeros only)")


def _keys(b: SparseBatch) -> np.ndarray:
    """Global sorted positions sample * size + index (sample-major, so sorted)."""
    rows = np.repeat(np.arange(b.num_samples, dtype=np.int64), b.nnz_per_sample())
    return rows * b.size + np.asarray(b.indices).astype(np.int64)


def check_weights(weight, weight_mask, g: LayerGeometry, where: str, values: bool = True) -> None:
    """Weight (and mask) shapes against the geometry; with `values`, the weights finite and
    zero where masked (a reader that built them from checked stored values skips that)."""
    if weight is None or tuple(weight.shape) != g.weight_shape:
        got = None if weight is None else tuple(weight.shape)
        fail(where, f"weight shape {got} does not match geometry {g.weight_shape}")
    if values:
        check_finite(weight, where, "weight")
    if weight_mask is not None:
        if tuple(weight_mask.shape) != g.weight_shape:
            fail(where, f"weight_mask shape {tuple(weight_mask.shape)} does not match "
                        f"{g.weight_shape}")
        if values and np.any(weight[~weight_mask.astype(bool)] != 0):
            fail(where, "weight is non-zero at masked positions")


def check_record(rec: LayerRecord, where: str, num_samples: int, output_samples: int,
                 values_checked: bool = False) -> None:
    """Every field of one layer against its geometry and against each other. Deferred weights
    and outputs (schema.Deferred) are checked by their load; values_checked: the caller
    checked every stored float finite already (a reader, tensor by tensor), so the values are
    not scanned again: shapes, orders and relations only."""
    finite = not values_checked
    g = rec.geometry
    check_geometry(g, where)
    if not g.has_weight:
        if rec.weight is not None or rec.weight_mask is not None:
            fail(where, "a matmul layer has no weight (its second operand is 'operand')")
        if rec.operand is None:
            fail(where, "a matmul layer needs its second operand ('operand')")
        check_csr(rec.operand, g.operand_shape, num_samples, where, "operand", values=True,
                  finite=finite)
    elif rec.operand is not None:
        fail(where, f"a {g.kind} layer has no second operand")
    elif not rec.weights_deferred:
        check_weights(rec.weight, rec.weight_mask, g, where, values=finite)
    if g.has_bias != (rec.bias is not None):
        fail(where, f"has_bias is {g.has_bias} but bias is {'present' if rec.bias is not None else 'missing'}")
    if rec.bias is not None:
        if tuple(rec.bias.shape) != (g.weight_shape[0],):
            fail(where, f"bias shape {tuple(rec.bias.shape)} does not match ({g.weight_shape[0]},)")
        if finite:
            check_finite(rec.bias, where, "bias")
    check_csr(rec.inputs, g.in_shape, num_samples, where, "inputs", values=True, finite=finite)
    has_mask = rec.mask_params is not None
    if has_mask != (rec.premask is not None) or has_mask != (rec.act_mask is not None):
        fail(where, "mask parameters, premask and act_mask must be all present or all absent")
    if has_mask:
        check_mask_params(rec.mask_params, where)
        shape = fmt.mask_shape(g.in_shape, rec.mask_params)
        check_csr(rec.premask, shape, num_samples, where, "premask", values=True, finite=finite)
        check_csr(rec.act_mask, shape, num_samples, where, "act_mask", values=False)
        if rec.mask_params.carried or tuple(shape) != tuple(g.in_shape):
            check_carried(rec, where)
            return check_outputs(rec, where, output_samples, finite)
        # inputs must equal premask restricted to the winners
        pk, mk, ik = _keys(rec.premask), _keys(rec.act_mask), _keys(rec.inputs)
        kept = np.isin(pk, mk, assume_unique=True)
        if not np.array_equal(pk[kept], ik) or not np.array_equal(
                np.asarray(rec.premask.values)[kept], np.asarray(rec.inputs.values)):
            fail(where, "inputs are not premask x act_mask (the dynamic mask does not explain "
                        "the recorded inputs)")
    check_outputs(rec, where, output_samples, finite)


CARRY_CHUNK = 1 << 22  # dense elements per chunk when checking a carried mask


def check_carried(rec: LayerRecord, where: str) -> None:
    """inputs == carry(premask restricted to the winners), chunked over samples (section 3.3)."""
    per = max(rec.premask.size, rec.inputs.size, 1)
    step = max(1, CARRY_CHUNK // per)
    for lo in range(0, rec.inputs.num_samples, step):
        hi = min(lo + step, rec.inputs.num_samples)
        pre = rec.premask.rows(lo, hi).to_dense()
        won = rec.act_mask.rows(lo, hi).to_dense() != 0
        got = carry.apply(np.where(won, pre, np.float32(0)), rec.mask_params.carried)
        got = got.reshape(hi - lo, -1)
        want = rec.inputs.rows(lo, hi).to_dense().reshape(hi - lo, -1)
        if not np.array_equal(got != 0, want != 0) or not np.allclose(got, want, rtol=1e-6, atol=0):
            s = lo + int(np.argwhere((got != want).any(axis=1))[0][0])
            ops = ", ".join(op["op"] for op in rec.mask_params.carried) or "a reshape"
            fail(where, f"inputs are not the masked premask carried through {ops} (sample {s}: "
                        "the dynamic mask does not explain the recorded inputs)")


def check_outputs(rec: LayerRecord, where: str, output_samples: int, finite: bool = True) -> None:
    """The recorded outputs' shape and values (deferred outputs: checked by their load)."""
    g = rec.geometry
    if output_samples > 0 and not rec.outputs_deferred:
        exp = (output_samples, *g.out_shape)
        if rec.outputs is None or tuple(rec.outputs.shape) != exp:
            got = None if rec.outputs is None else tuple(rec.outputs.shape)
            fail(where, f"outputs shape {got} does not match {exp}")
        if finite:
            check_finite(rec.outputs, where, "outputs")
