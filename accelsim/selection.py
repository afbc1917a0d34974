"""The top-k unit's selection machines, run step by step (compiled): they decide its masks.

Why not a sort: the unit's mask must be what its hardware algorithm selects, so each scheme
runs its own machine on every sample, compare-exchange by compare-exchange (bitonic network),
cell by cell (insertion sorter), digit pass by digit pass (radix select). Each is proven equal
to the plain-Python references in accelsim.topk on random inputs with ties (tests/test_topk.py),
and the masks are checked against a selection written independently in the tests.

Order of magnitudes: larger |a| first, the lower flat index first on a tie (the mask definition
in docs/hardware-model.md). Radix select works on keys of `key_bits` bits: the top bits of the
float32 magnitude's bit pattern (non-negative float32 values order like their bit patterns), so
with fewer than 32 bits values that share a key tie, and the lower index wins.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True)
def bitonic_order(absa):
    """Indices of a row sorted by the bitonic network: winners first. Padding (to a power of two)
    sorts last (value -1 below every magnitude)."""
    n = absa.shape[0]
    size = 1
    while size < n:
        size *= 2
    val = np.full(size, -1.0, dtype=np.float64)
    idx = np.arange(size)
    for i in range(n):
        val[i] = absa[i]
    block = 2
    while block <= size:
        step = block // 2
        while step >= 1:
            for i in range(size):
                j = i ^ step
                if j > i:
                    descending = (i & block) == 0
                    i_below = val[i] < val[j] or (val[i] == val[j] and idx[i] > idx[j])
                    if i_below == descending:
                        val[i], val[j] = val[j], val[i]
                        idx[i], idx[j] = idx[j], idx[i]
            step //= 2
        block *= 2
    return idx[:n].copy()


@njit(cache=True)
def insertion_cells(absa, k):
    """Indices held by the k cells of the shift-register insertion sorter after the row streamed
    through in index order (a newcomer goes behind every cell holding a value >= its own)."""
    n = absa.shape[0]
    cell_v = np.zeros(max(k, 1), dtype=np.float32)
    cell_i = np.zeros(max(k, 1), dtype=np.int64)
    occupied = 0
    for pos in range(n):
        v = absa[pos]
        slot = 0
        while slot < occupied and cell_v[slot] >= v:
            slot += 1
        if slot < k:
            last = occupied if occupied < k else k - 1
            for t in range(last, slot, -1):
                cell_v[t] = cell_v[t - 1]
                cell_i[t] = cell_i[t - 1]
            cell_v[slot] = v
            cell_i[slot] = pos
            if occupied < k:
                occupied += 1
    return cell_i[:occupied].copy()


@njit(cache=True)
def radix_winners(keys, k, key_bits, radix_bits):
    """Boolean mask of the k largest keys by radix select, most significant digit first: each
    pass counts the candidates' digits, scans the buckets from the top, keeps the buckets above
    the one holding the k-th key and narrows the candidates to that bucket; candidates left after
    the last pass share one key and the lowest indices win."""
    n = keys.shape[0]
    won = np.zeros(n, dtype=np.bool_)
    cand = np.ones(n, dtype=np.bool_)
    counts = np.zeros(1 << radix_bits, dtype=np.int64)
    remaining = k
    shift = key_bits
    while shift > 0 and remaining > 0:
        width = radix_bits if shift >= radix_bits else shift
        shift -= width
        digit_mask = (1 << width) - 1
        counts[:] = 0
        for i in range(n):
            if cand[i]:
                counts[(keys[i] >> shift) & digit_mask] += 1
        d = digit_mask
        while d > 0 and counts[d] < remaining:
            remaining -= counts[d]
            d -= 1
        for i in range(n):
            if cand[i]:
                digit = (keys[i] >> shift) & digit_mask
                if digit > d:
                    won[i] = True
                    cand[i] = False
                elif digit < d:
                    cand[i] = False
    for i in range(n):
        if remaining == 0:
            break
        if cand[i]:
            won[i] = True
            remaining -= 1
    return won


def radix_keys(absa: np.ndarray, key_bits: int) -> np.ndarray:
    """uint32 keys: the top key_bits bits of each float32 magnitude's bit pattern."""
    bits = np.ascontiguousarray(absa, dtype=np.float32).view(np.uint32)
    return (bits >> np.uint32(32 - key_bits)).astype(np.uint32)


@njit(cache=True, parallel=True)
def _topk_rows(absa, keys, k, scheme, key_bits, radix_bits):
    s, n = absa.shape
    out = np.zeros((s, n), dtype=np.bool_)
    for r in prange(s):
        kk = k[r]
        if scheme == 0:
            order = bitonic_order(absa[r])
            for t in range(kk):
                out[r, order[t]] = True
        elif scheme == 1:
            kept = insertion_cells(absa[r], kk)
            for t in range(kept.shape[0]):
                out[r, kept[t]] = True
        else:
            out[r] = radix_winners(keys[r], kk, key_bits, radix_bits)
    return out


SCHEME_CODES = {"bitonic": 0, "insertion": 1, "radix": 2}


def select_topk(absa: np.ndarray, k: np.ndarray, scheme: str, key_bits: int = 32,
                radix_bits: int = 4) -> np.ndarray:
    """(S, n) bool: each row's k[r] winners as the scheme's machine selects them."""
    absa = np.ascontiguousarray(absa, dtype=np.float32)
    keys = radix_keys(absa, key_bits) if scheme == "radix" else np.zeros((1, 1), np.uint32)
    k = np.ascontiguousarray(np.broadcast_to(np.asarray(k, dtype=np.int64), (absa.shape[0],)))
    return _topk_rows(absa, keys, k, SCHEME_CODES[scheme], int(key_bits), int(radix_bits))


def select_threshold(absa: np.ndarray, k: int, scheme: str, key_bits: int = 32,
                     radix_bits: int = 4) -> np.ndarray:
    """(S,) float32: each row's (k+1)-th largest magnitude as the scheme's machine finds it (the
    smallest of its k+1 winners); 0 when k >= n (everything is kept)."""
    s, n = absa.shape
    if k >= n or s == 0:
        return np.zeros(s, dtype=np.float32)
    won = select_topk(absa, np.full(s, k + 1, np.int64), scheme, key_bits, radix_bits)
    masked = np.where(won, absa, np.float32(np.inf))
    return masked.min(axis=1).astype(np.float32)
