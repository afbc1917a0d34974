"""Per-layer statistics of a trace: densities, dense MACs, exact effective MACs, the paper's
estimate. numpy only; `accelsim trace info` prints it and the simulator report reuses it.

Effective MACs are counted exactly: the pairs (non-zero weight, non-zero input activation) that
contribute to a valid output position (a matmul: non-zero x non-zero pairs of its two activation
operands; its "weight density" is its second operand's mean density). For a conv layer, per sample:
    sum over (c, ky, kx) of nnzW[c, ky, kx] * #output positions whose tap (c, ky, kx) is non-zero
with nnzW[c, ky, kx] = non-zero weights at (c mod C/groups, ky, kx) over the output channels of
c's group. Taps that fall into the zero padding never count. The paper's estimate (Han's
convention) is weight density x mean input activation density x dense MACs.
"""

from __future__ import annotations

import numpy as np

from accelsim.traces.schema import LayerGeometry, LayerRecord

_CHUNK_ELEMS = 1 << 23  # bound on the dense float32 activation block (32 MiB)


def weight_nnz_per_tap(weight: np.ndarray, g: LayerGeometry) -> np.ndarray:
    """Conv: (C, kh, kw) non-zero weights per input tap; linear: (F,) per input feature."""
    nz = np.asarray(weight) != 0
    if g.kind in ("linear", "token_linear"):
        return nz.sum(axis=0, dtype=np.int64)
    m, cg, kh, kw = nz.shape
    per_group = nz.reshape(g.groups, m // g.groups, cg, kh, kw).sum(axis=1, dtype=np.int64)
    return per_group.reshape(g.groups * cg, kh, kw)


def tap_hits(nz: np.ndarray, g: LayerGeometry) -> np.ndarray:
    """(S, C, kh, kw): per tap, the output positions whose input there is non-zero.
    nz: (S, C, H, W) bool."""
    s, c, h, w = nz.shape
    (kh, kw), (sy, sx), (py, px), (dy, dx) = g.kernel, g.stride, g.padding, g.dilation
    _, oh, ow = g.out_shape
    padded = np.zeros((s, c, h + 2 * py, w + 2 * px), bool)  # fits every window (validated geometry)
    padded[:, :, py:py + h, px:px + w] = nz
    out = np.empty((s, c, kh, kw), dtype=np.int64)
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dy, kx * dx
            win = padded[:, :, y0:y0 + sy * (oh - 1) + 1:sy, x0:x0 + sx * (ow - 1) + 1:sx]
            out[:, :, ky, kx] = win.sum(axis=(2, 3), dtype=np.int64)
    return out


def _per_reduction_index(b, reduction: int, axis_of) -> np.ndarray:
    """(S, H x K) non-zeros of each sample at each (head, reduction index) of a matmul operand;
    axis_of maps flat indices to h * K + k."""
    s = b.num_samples
    rows = np.repeat(np.arange(s, dtype=np.int64), b.nnz_per_sample())
    keys = rows * reduction + axis_of(np.asarray(b.indices).astype(np.int64))
    return np.bincount(keys, minlength=s * reduction).reshape(s, reduction)


def matmul_effective_macs(rec: LayerRecord) -> np.ndarray:
    """(S,) int64 for a matmul: per sample, sum over (head h, k) of the non-zeros of A[h, :, k]
    times the non-zeros of B[h, k, :] (every such pair meets in one output)."""
    h, t, k = rec.geometry.in_shape
    n = rec.geometry.out_shape[2]
    a = _per_reduction_index(rec.inputs, h * k, lambda i: (i // (t * k)) * k + i % k)
    b = _per_reduction_index(rec.operand, h * k, lambda i: i // n)
    return np.einsum("sj,sj->s", a, b).astype(np.int64)


def effective_macs(rec: LayerRecord) -> np.ndarray:
    """(S,) int64: exact non-zero weight x non-zero activation pairs per sample (a matmul:
    non-zero x non-zero pairs of its two operands)."""
    g = rec.geometry
    if g.kind == "matmul":
        return matmul_effective_macs(rec)
    w_nnz = weight_nnz_per_tap(rec.weight, g)
    b = rec.inputs
    s = b.num_samples
    nnz = b.nnz_per_sample()
    idx = np.asarray(b.indices).astype(np.int64)
    # activations stored in the trace are non-zero by construction (the format forbids zeros)
    if g.kind in ("linear", "token_linear"):  # token t, feature f at index t * F + f
        rows = np.repeat(np.arange(s), nnz)
        return np.bincount(rows, weights=w_nnz[idx % len(w_nnz)], minlength=s).astype(np.int64)
    out = np.empty(s, dtype=np.int64)
    step = max(1, _CHUNK_ELEMS // max(b.size, 1))
    for lo in range(0, s, step):
        hi = min(s, lo + step)
        dense = b.rows(lo, hi).to_dense() != 0  # stored activations are never zero
        hits = tap_hits(dense.reshape(hi - lo, *g.in_shape), g)
        out[lo:hi] = np.einsum("sckl,ckl->s", hits, w_nnz)
    return out


def layer_stats(rec: LayerRecord) -> dict:
    """One row of statistics for a layer (densities are fractions, MACs per sample)."""
    g = rec.geometry
    dens = rec.inputs.density_per_sample()
    act_mean = float(dens.mean()) if dens.size else 0.0
    eff = effective_macs(rec)
    if g.has_weight:
        w_total = int(np.size(rec.weight))
        w_nnz = int(np.count_nonzero(rec.weight))
        w_density = w_nnz / max(w_total, 1)
    else:  # a matmul has no weight: its second operand's mean density stands in for it
        w_total = w_nnz = 0
        op = rec.operand.density_per_sample()
        w_density = float(op.mean()) if op.size else 0.0
    return {
        "layer": g.name,
        "kind": g.kind,
        "in_shape": tuple(g.in_shape),
        "out_shape": tuple(g.out_shape),
        "weights": w_total,
        "weight_nnz": w_nnz,
        "weight_density": w_density,
        "act_density_mean": act_mean,
        "act_density_min": float(dens.min()) if dens.size else 0.0,
        "act_density_max": float(dens.max()) if dens.size else 0.0,
        "dynamic_mask": None if rec.mask_params is None else rec.mask_params.scheme,
        "dense_macs": int(g.dense_macs),
        "effective_macs": float(eff.mean()) if eff.size else 0.0,
        "estimated_macs": w_density * act_mean * g.dense_macs,
    }


def trace_stats(trace) -> "pandas.DataFrame":  # noqa: F821
    """A DataFrame with one row of layer_stats per layer, in execution order."""
    import pandas as pd

    return pd.DataFrame([layer_stats(trace.layer(i)) for i in range(len(trace))])
