"""Transformer layers (token_linear, matmul) run on kernels that know linear and conv2d layers.

Why: the arrays' kernels and their per-cycle references are written for a weight times one
activation vector (linear) or map (conv2d) per sample. A transformer layer is rewritten into
such layers ("parts"), each kernel runs them unchanged, and the parts' results are summed back
per sample. Each dataflow names the mapping it uses for each kind (Dataflow.lowering):

- "rows": a token is a vector of its own. token_linear: one linear layer whose rows are the
  S x T tokens (sample s's tokens are rows s T .. s T + T - 1, run one after the other, each a
  full broadcast sequence); a sample's cycles are the sum over its tokens. matmul: per sample s
  and head h, one linear layer whose weight is the stationary operand B[s, h]^T (N x K) and
  whose T rows are the rows of A[s, h]; a sample's cycles are the sum over its heads.
- "pixels": the tokens are the positions of a 1x1 convolution (input (F, T, 1)), so an array
  that reuses a weight over positions (Cnvlutin's passes, a systolic GEMM's P rows) does so over
  the tokens. matmul: per (s, h) a 1x1 convolution of K channels over T positions with weight
  B[s, h]^T.

In a matmul the second operand B (the keys K^T for the scores, the values V for the context)
plays the weight: it is stationary, and the first operand (queries, attention probabilities) is
streamed or broadcast as activations are. Because B is new for every sample, the array must put
it into its weight storage before each head's product: Dataflow.operand_load says what that
costs (cycles before the head starts, PE-cycles, events), and run_lowered adds it.
docs/hardware-model.md ("Transformer layers") states each array's mapping and load cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from accelsim.result import DataflowResult
from accelsim.traces.schema import LayerGeometry, LayerRecord, SparseBatch

STYLES = ("rows", "pixels")


@dataclass(frozen=True)
class Part:
    """One layer a kernel runs, and which samples of the original layer its rows belong to."""

    layer: LayerRecord
    sample: int | None  # matmul: the one sample this part belongs to; None: every sample
    head: int | None  # matmul: the head
    rows_per_sample: int  # rows (kernel samples) of `layer` per original sample
    loads_operand: bool  # the part's weight is a per-sample operand the array must load


def _csr(shape: tuple, indptr: np.ndarray, indices: np.ndarray, values: np.ndarray) -> SparseBatch:
    return SparseBatch(shape=tuple(int(d) for d in shape), indptr=indptr.astype(np.int64),
                       indices=indices.astype(np.uint32), values=values.astype(np.float32))


def _regroup(b: SparseBatch, rows_of: Callable, col_of: Callable, n_rows: int, shape: tuple,
             first: int = 0, count: int | None = None) -> SparseBatch:
    """Re-cut the non-zeros of samples [first, first + count) into n_rows rows of `shape`:
    element (s, i) goes to row rows_of(s - first, i) at column col_of(i); rows sorted, columns
    strictly increasing within a row."""
    count = b.num_samples - first if count is None else count
    lo, hi = int(b.indptr[first]), int(b.indptr[first + count])
    idx = np.asarray(b.indices[lo:hi]).astype(np.int64)
    vals = np.asarray(b.values[lo:hi])
    sample = np.repeat(np.arange(count, dtype=np.int64), np.diff(b.indptr[first:first + count + 1]))
    row, col = rows_of(sample, idx), col_of(idx)
    order = np.lexsort((col, row))
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(row, minlength=n_rows), out=indptr[1:])
    return _csr(shape, indptr, col[order], vals[order])


def _dense_operand(layer: LayerRecord, s: int) -> np.ndarray:
    """(H, K, N) float32: sample s's second operand."""
    return layer.operand.rows(s, s + 1).to_dense()[0]


def lowered(layer: LayerRecord, style: str) -> list[Part]:
    """lower(), once per layer and style (accelsim.encoded): the parts keep their own weight-side
    encodings, so the dense baseline and every sweep point reuse them."""
    from accelsim.encoded import memo

    def make():
        parts = lower(layer, style)
        key = layer.extra.get("content_key")
        if key is not None and layer.geometry.kind == "token_linear":  # not per-sample operands
            parts[0].layer.extra["content_key"] = f"{key}-{style}"
        return parts

    return memo(layer, "lowered", (style,), make)


def lower(layer: LayerRecord, style: str) -> list[Part]:
    """The parts a token_linear or matmul layer runs as (see the module docstring)."""
    g = layer.geometry
    if style not in STYLES:
        raise ValueError(f"unknown lowering style {style!r}")
    if g.kind == "token_linear":
        return [_token_part(layer, style)]
    if g.kind == "matmul":
        return [_head_part(layer, s, h, style)
                for s in range(layer.inputs.num_samples) for h in range(g.in_shape[0])]
    raise ValueError(f"layer {g.name!r}: kind {g.kind!r} needs no lowering")


def _token_part(layer: LayerRecord, style: str) -> Part:
    g = layer.geometry
    (t, f), m = g.in_shape, g.out_shape[1]
    s = layer.inputs.num_samples
    out = layer.outputs
    if style == "rows":
        geo = LayerGeometry(g.name, "linear", (f,), (m,), has_bias=g.has_bias)
        inputs = _regroup(layer.inputs, lambda smp, i: smp * t + i // f, lambda i: i % f, s * t, (f,))
        outputs = None if out is None else out.reshape(-1, m)
        return Part(LayerRecord(geo, layer.weight, layer.weight_mask, layer.bias, inputs,
                                outputs=outputs), None, None, t, False)
    geo = LayerGeometry(g.name, "conv2d", (f, t, 1), (m, t, 1), has_bias=g.has_bias)
    inputs = _regroup(layer.inputs, lambda smp, i: smp, lambda i: (i % f) * t + i // f, s, (f, t, 1))
    outputs = None if out is None else np.ascontiguousarray(out.transpose(0, 2, 1))[..., None]
    w4 = None if layer.weight_mask is None else layer.weight_mask.reshape(m, f, 1, 1)
    return Part(LayerRecord(geo, layer.weight.reshape(m, f, 1, 1), w4, layer.bias, inputs,
                            outputs=outputs), None, None, 1, False)


def _head_part(layer: LayerRecord, s: int, h: int, style: str) -> Part:
    g = layer.geometry
    _, t, k = g.in_shape
    n = g.out_shape[2]
    weight = np.ascontiguousarray(_dense_operand(layer, s)[h].T)  # (N, K): B[s, h]^T
    # sample s, head h: flat input index (h * T + row) * K + col
    keep = lambda smp, i: i // (t * k)  # noqa: E731
    sub = layer.inputs.rows(s, s + 1)
    mine = keep(0, np.asarray(sub.indices).astype(np.int64)) == h
    head = _csr(g.in_shape, np.array([0, int(mine.sum())]), np.asarray(sub.indices)[mine] - h * t * k,
                np.asarray(sub.values)[mine])
    has_out = layer.outputs is not None and s < len(layer.outputs)
    out = layer.outputs[s, h] if has_out else None  # (T, N)
    if style == "rows":
        geo = LayerGeometry(f"{g.name}[{s},{h}]", "linear", (k,), (n,))
        inputs = _regroup(head, lambda smp, i: i // k, lambda i: i % k, t, (k,))
        part = LayerRecord(geo, weight, None, None, inputs, outputs=out)
        return Part(part, s, h, t, True)
    geo = LayerGeometry(f"{g.name}[{s},{h}]", "conv2d", (k, t, 1), (n, t, 1))
    inputs = _regroup(head, lambda smp, i: smp, lambda i: (i % k) * t + i // k, 1, (k, t, 1))
    outputs = None if out is None else np.ascontiguousarray(out.T)[None, :, :, None]
    part = LayerRecord(geo, weight.reshape(n, k, 1, 1), None, None, inputs, outputs=outputs)
    return Part(part, s, h, 1, True)


def run_lowered(layer: LayerRecord, parts: list[Part], run: Callable[[LayerRecord], DataflowResult],
                load: Callable[[LayerRecord], dict] | None, samples: int | None,
                functional: bool) -> DataflowResult:
    """Run every part with `run` and add the results up per sample of `layer`.

    load(part layer) -> {"cycles", "busy_pe_cycles", "tail_pe_cycles", "pe_cycle", event: count}:
    the cost of putting a per-sample operand in place, charged before the part runs."""
    g = layer.geometry
    n_total = layer.inputs.num_samples
    n = n_total if samples is None else max(0, min(int(samples), n_total))
    cycles = np.zeros(n, dtype=np.int64)
    counters: dict[str, int] = {}
    s_out = 0 if (layer.outputs is None or not functional) else min(len(layer.outputs), n)
    outputs = np.zeros((s_out, *g.out_shape), dtype=np.float32) if functional else None
    units = 0
    for part in parts:
        if part.sample is not None and part.sample >= n:
            continue
        rows = part.rows_per_sample * (n if part.sample is None else 1)
        res = _as_result(run(part.layer, rows))
        units = res.num_units
        per = res.cycles.reshape(-1, part.rows_per_sample).sum(axis=1)
        extra = {} if load is None or not part.loads_operand else load(part.layer)
        for name, value in list(res.counters.items()) + list(extra.items()):
            counters[name] = counters.get(name, 0) + int(value)
        if part.sample is None:
            cycles += per
        else:
            cycles[part.sample] += int(per.sum()) + int(extra.get("cycles", 0))
        if functional and res.outputs is not None and len(res.outputs):
            _place_outputs(outputs, part, res.outputs, s_out)
    counters["cycles"] = int(cycles.sum())
    return DataflowResult(cycles=cycles, counters=counters, num_units=units, outputs=outputs,
                          extra={"lowered_parts": len(parts), "samples": n})


def _as_result(res) -> DataflowResult:
    """A kernel's DataflowResult, or a per-cycle reference's dict of totals (EIE's) as one."""
    if isinstance(res, DataflowResult):
        return res
    skip = ("outputs", "cycles_per_sample")
    return DataflowResult(cycles=np.asarray(res["cycles_per_sample"], dtype=np.int64),
                          counters={k: int(v) for k, v in res.items() if k not in skip},
                          num_units=0, outputs=res.get("outputs"))


def _place_outputs(outputs: np.ndarray, part: Part, got: np.ndarray, s_out: int) -> None:
    """Write a part's outputs back in the original layer's (S_out, *out_shape) layout."""
    if part.sample is None:  # token_linear: rows (S T, M) or pixels (S, M, T, 1)
        if part.layer.geometry.kind == "linear":
            outputs[:] = got[: s_out * part.rows_per_sample].reshape(outputs.shape)
        else:
            outputs[:] = got[:s_out, :, :, 0].transpose(0, 2, 1)
        return
    if part.sample >= s_out:
        return
    h = part.head
    if part.layer.geometry.kind == "linear":
        outputs[part.sample, h] = got  # (T, N)
    else:
        outputs[part.sample, h] = got[0, :, :, 0].T
