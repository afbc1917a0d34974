"""A layer as the GEMM a systolic array runs, and the N:M compressed-weight mapping.

The array computes O[P, F] = I[P, K] x W[K, F] per conv group: P output pixels of a sample
(1 for a linear layer), F filters, K = window (kh * kw * C / groups), SCALE-Sim's im2col view.
Groups run one after another (SCALE-Sim runs a depthwise layer as one layer per channel).

N:M structured weight sparsity (at most N non-zero weights in every block of M consecutive
weights along K, the reduction dimension, in every filter): each filter column is stored
compressed, K -> Kc = K * N / M rows of (value, index in block) entries, so the array's reduction
dimension shrinks by M / N. Compressed row j of every column belongs to block j // N; the PE row
holding it receives all M activations of that block and each PE selects its operand with its
entry's log2(M)-bit index. Activation reads therefore stay K per output pixel (M per N
compressed rows) while MAC slots and weight reads drop to N / M.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from accelsim.errors import AccelsimError


@dataclass(frozen=True)
class GemmView:
    groups: int
    P: int  # output pixels per sample (rows of the ifmap operand matrix)
    F: int  # filters per group (columns of the filter operand matrix)
    K: int  # reduction length per group (window size)


def gemm_view(layer) -> GemmView:
    g = layer.geometry
    if g.kind == "linear":
        return GemmView(1, 1, int(g.out_shape[0]), int(g.in_shape[0]))
    m, oh, ow = g.out_shape
    groups = int(g.groups)
    k = (int(g.in_shape[0]) // groups) * int(g.kernel[0]) * int(g.kernel[1])
    return GemmView(groups, int(oh) * int(ow), int(m) // groups, k)


def parse_nm(text: str, where: str = "systolic.nm") -> tuple[int, int] | None:
    """'2:4' -> (2, 4); '' -> None (dense). One-line errors for anything else."""
    text = str(text).strip()
    if not text:
        return None
    parts = text.split(":")
    try:
        n, m = (int(p) for p in parts)
        if len(parts) != 2:
            raise ValueError
    except ValueError:
        raise AccelsimError(f"{where}: expected an N:M pattern such as 2:4, got {text!r}") from None
    if n < 1 or m < 1:
        raise AccelsimError(f"{where}: N and M of an N:M pattern must be >= 1, got {text!r}")
    if n > m:
        raise AccelsimError(f"{where}: N:M pattern {text} keeps more weights (N={n}) than its "
                            f"block holds (M={m}); N must be <= M")
    return n, m


def check_nm_divides(name: str, view: GemmView, nm: tuple[int, int]) -> None:
    n, m = nm
    if view.K % m:
        raise AccelsimError(
            f"layer {name!r}: N:M pattern {n}:{m} needs the reduction dimension to be a multiple "
            f"of M={m}, but it is {view.K} (kernel x input channels per group)")


def reduction_order(weight: np.ndarray, layer) -> np.ndarray:
    """(groups, K, F) weights in the array's reduction order: input channel, then ky, kx."""
    view = gemm_view(layer)
    w = np.asarray(weight)
    if layer.geometry.kind == "linear":
        return w.T.reshape(1, view.K, view.F)
    return w.reshape(view.groups, view.F, view.K).transpose(0, 2, 1)


def check_nm_weights(layer, nm: tuple[int, int]) -> None:
    """Every block of M weights along K, in every filter, holds at most N non-zeros."""
    n, m = nm
    view = gemm_view(layer)
    check_nm_divides(layer.geometry.name, view, nm)
    w = reduction_order(layer.weight, layer)
    per_block = (w.reshape(view.groups, view.K // m, m, view.F) != 0).sum(axis=2)
    worst = int(per_block.max(initial=0))
    if worst > n:
        raise AccelsimError(
            f"layer {layer.geometry.name!r}: weights are not {n}:{m} sparse (a block of {m} holds "
            f"{worst} non-zeros); prune to {n}:{m} or change systolic.nm")


def compressed_k(view: GemmView, nm: tuple[int, int] | None) -> int:
    """Rows of the filter operand matrix: K dense, K * N / M with an N:M pattern."""
    if nm is None:
        return view.K
    n, m = nm
    return view.K // m * n


def nm_prune(layer, nm: tuple[int, int]):
    """The layer with weights pruned to N:M along K (the N largest |w| of every block kept)."""
    import dataclasses

    n, m = nm
    view = gemm_view(layer)
    check_nm_divides(layer.geometry.name, view, nm)
    w = reduction_order(layer.weight, layer).reshape(view.groups, view.K // m, m, view.F)
    order = np.argsort(-np.abs(w), axis=2, kind="stable")
    keep = np.zeros(w.shape, bool)
    np.put_along_axis(keep, order[:, :, :n], True, axis=2)
    pruned = np.where(keep, w, 0).reshape(view.groups, view.K, view.F)
    if layer.geometry.kind == "linear":
        weight = pruned[0].T
    else:
        weight = pruned.transpose(0, 2, 1).reshape(layer.weight.shape)
    weight = np.ascontiguousarray(weight, dtype=np.float32)
    mask = weight != 0
    if layer.weight_mask is not None:
        mask &= np.asarray(layer.weight_mask, bool)
    return dataclasses.replace(layer, weight=weight, weight_mask=mask)
