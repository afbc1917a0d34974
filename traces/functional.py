"""Functional check of a trace layer: recompute its outputs from its weights and inputs.

An independent dense numpy recompute (float32 operands as stored; conv in float64), so `accelsim trace validate` catches recorded
outputs that the weights and inputs do not explain, as `accelsim run`'s simulator-side check
does, without running a dataflow and without torch. Memory stays within the bounds the reader
checked (section 4.1 of docs/trace-format.md): the padded input, one tap's window and the
output of the checked samples.
"""

from __future__ import annotations

import numpy as np

from accelsim.traces.schema import LayerRecord
from accelsim.traces.validate import fail

# Same tolerance as the simulator's check: relative 1e-3, absolute 1e-3 x the largest |output|.
RTOL = 1e-3
ATOL_SCALE = 1e-3
_CHUNK_ELEMS = 1 << 24  # samples are recomputed in chunks of about this many float64 elements


def recompute_outputs(rec: LayerRecord, lo: int, hi: int) -> np.ndarray:
    """(hi - lo, *out_shape) float64: the layer (plus bias) applied to inputs of samples lo..hi-1."""
    g = rec.geometry
    b = rec.inputs
    x = b.rows(lo, hi).to_dense().reshape(hi - lo, b.size)
    if g.kind == "matmul":  # per sample and head: (T, K) @ (K, N), both operands recorded
        b_op = rec.operand.rows(lo, hi).to_dense()
        return np.matmul(x.reshape(hi - lo, *g.in_shape), b_op).astype(np.float64)
    w = np.asarray(rec.weight, dtype=np.float32)
    if g.kind == "linear":
        out = (x @ w.T).astype(np.float64)
    elif g.kind == "token_linear":  # every token's vector times the weight
        out = (x.reshape(hi - lo, *g.in_shape) @ w.T).astype(np.float64)
    else:
        out = _conv2d(x.reshape(hi - lo, *g.in_shape), w, g)
    if rec.bias is not None:  # per output channel: the first axis (conv) or the last (tokens)
        shape = (-1,) if g.kind == "token_linear" else (-1,) + (1,) * (out.ndim - 2)
        out += np.asarray(rec.bias, np.float64).reshape(shape)
    return out


def _conv2d(x: np.ndarray, w: np.ndarray, g) -> np.ndarray:
    """Direct convolution, one kernel tap at a time over all groups at once (no im2col: memory
    stays ~ input + output; the loop is over the kernel's taps only)."""
    s, c, h, wd = x.shape
    m, oh, ow = g.out_shape
    (kh, kw), (sy, sx), (py, px), (dy, dx) = g.kernel, g.stride, g.padding, g.dilation
    groups = g.groups
    cg, mg = c // groups, m // groups
    padded = np.zeros((s, groups, cg, h + 2 * py, wd + 2 * px))
    padded[:, :, :, py:py + h, px:px + wd] = x.reshape(s, groups, cg, h, wd)
    wg = w.reshape(groups, mg, cg, kh, kw)
    out = np.zeros((s, groups, mg, oh, ow))
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dy, kx * dx
            win = padded[:, :, :, y0:y0 + sy * (oh - 1) + 1:sy, x0:x0 + sx * (ow - 1) + 1:sx]
            out += np.einsum("gmc,sgchw->sgmhw", wg[:, :, :, ky, kx], win, optimize=True)
    return out.reshape(s, m, oh, ow)


def check_outputs(rec: LayerRecord, where: str) -> int:
    """Fail (one line) when the recorded outputs differ from the recompute; returns the number
    of samples checked (0 when the trace keeps no outputs)."""
    if rec.outputs is None or len(rec.outputs) == 0:
        return 0
    n = len(rec.outputs)
    g = rec.geometry
    per_sample = rec.inputs.size + int(np.prod(g.out_shape))
    if g.kind == "matmul":
        per_sample += int(np.prod(g.operand_shape))
    if g.kind == "conv2d":
        per_sample += g.in_shape[0] * (g.in_shape[1] + 2 * g.padding[0]) * (g.in_shape[2] + 2 * g.padding[1])
    step = max(1, _CHUNK_ELEMS // per_sample)
    ref_all = np.asarray(rec.outputs)
    atol = ATOL_SCALE * max(1.0, float(np.abs(ref_all).max(initial=0.0)))
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        ref = ref_all[lo:hi].astype(np.float64)
        got = recompute_outputs(rec, lo, hi)
        bad = ~np.isclose(got, ref, rtol=RTOL, atol=atol)
        if bad.any():
            s = lo + int(np.argwhere(bad)[0][0])
            fail(where, f"functional check failed: outputs recomputed from the weights and inputs "
                        f"differ from the recorded outputs (max abs diff "
                        f"{float(np.abs(got - ref).max()):.3g}, first at sample {s})")
    return n
