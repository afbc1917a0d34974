"""EIE interleaved CSC with relative indices: how many entries each PE stores per column.

From "EIE: Efficient Inference Engine on Compressed Deep Neural Network": output row (channel)
m lives in PE m mod N; inside a PE a column's entries are ordered by local row m // N and each
stores z, the zeros since the previous entry (or since the column's first local row). With b
index bits z <= 2^b - 1, so a padding entry (value 0) is inserted per 2^b zeros:
padding(z) = floor(z / 2^b); trailing zeros need nothing.

A conv layer's column is (input channel c, ky, kx), global index (c * kh + ky) * kw + kx; its
rows are the output channels of c's group. A linear layer is the kh = kw = 1, one-group case.
Dense storage (weight mode "gate"/"none") keeps every row of the PE's slice, without padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from accelsim.traces.schema import LayerGeometry, LayerRecord

WEIGHT_MODES = ("skip", "gate", "none")


@dataclass(frozen=True)
class EieColumns:
    """Per-PE, per-column counts, each (num_pes, num_columns) int64."""

    nonzeros: np.ndarray  # non-zero weights
    padding: np.ndarray  # padding entries of the compressed encoding
    rows: np.ndarray  # rows of the PE's slice (= entries of dense storage)

    def entries(self, weight_mode: str) -> np.ndarray:
        """Stored entries: compressed (non-zeros + padding) for "skip", dense rows otherwise."""
        if weight_mode == "skip":
            return self.nonzeros + self.padding
        return self.rows

    def mac_entries(self, weight_mode: str) -> np.ndarray:
        """Entries that spend MAC energy: padding never, zero weights only without gating."""
        return self.rows if weight_mode == "none" else self.nonzeros


def weight_matrix(weight: np.ndarray, geometry: LayerGeometry) -> np.ndarray:
    """(M, Cg * kh * kw) float32 view of a layer's weight, row m = output channel m."""
    m = geometry.out_shape[0]
    return np.ascontiguousarray(np.asarray(weight, dtype=np.float32).reshape(m, -1))


@njit(cache=True)
def _count_columns(w2, groups, num_pes, index_bits):
    """One pass over the weights in row order, tracking each (PE, column)'s last local row."""
    m_total, kg = w2.shape
    mg = m_total // groups
    ncols = groups * kg
    nz = np.zeros((num_pes, ncols), dtype=np.int64)
    pad = np.zeros((num_pes, ncols), dtype=np.int64)
    rows = np.zeros((num_pes, ncols), dtype=np.int64)
    last = np.full((num_pes, ncols), -1, dtype=np.int64)
    for m in range(m_total):
        g = m // mg
        p = m % num_pes
        base = g * mg
        m0 = base + (p - base) % num_pes  # first row of PE p in this group
        r = (m - m0) // num_pes  # local row within the column's slice
        for k in range(kg):
            col = g * kg + k
            rows[p, col] += 1
            if w2[m, k] != 0:
                z = r - last[p, col] - 1
                if index_bits < 62:
                    pad[p, col] += z >> index_bits
                nz[p, col] += 1
                last[p, col] = r
    return nz, pad, rows


def eie_columns(weight: np.ndarray, geometry: LayerGeometry, num_pes: int, index_bits: int) -> EieColumns:
    """Count the interleaved-CSC entries of every (PE, column) of a layer."""
    w2 = weight_matrix(weight, geometry)
    nz, pad, rows = _count_columns(w2, int(geometry.groups), int(num_pes), int(index_bits))
    return EieColumns(nonzeros=nz, padding=pad, rows=rows)


def geometry_rows(geometry: LayerGeometry, num_pes: int) -> np.ndarray:
    """EieColumns.rows from the geometry alone: (num_pes, columns) int64, the rows of each
    column's group that PE p holds (dense storage needs no weights)."""
    m_total = geometry.out_shape[0]
    groups = int(geometry.groups)
    mg = m_total // groups
    kg = int(np.prod(geometry.weight_shape[1:]))
    out = np.empty((num_pes, groups * kg), dtype=np.int64)
    for g in range(groups):
        per_pe = np.bincount(np.arange(g * mg, (g + 1) * mg) % num_pes, minlength=num_pes)
        out[:, g * kg:(g + 1) * kg] = per_pe[:, None]
    return out


def layer_columns(layer: LayerRecord, num_pes: int, index_bits: int) -> EieColumns:
    """eie_columns of a trace layer, computed once per (layer, num_pes, index_bits) and shared
    by the sparse and baseline variants, the storage footprint and every sweep point
    (accelsim.encoded: in memory, and on disk when the layer has a content key)."""
    from accelsim.encoded import memo

    return memo(
        layer, "eie_columns", (int(num_pes), int(index_bits)),
        lambda: eie_columns(layer.weight, layer.geometry, num_pes, index_bits),
        pack=lambda c: {"nonzeros": c.nonzeros, "padding": c.padding, "rows": c.rows},
        unpack=lambda a: EieColumns(nonzeros=a["nonzeros"], padding=a["padding"], rows=a["rows"]),
    )


def stored_entries_per_pe(layer: LayerRecord, num_pes: int, index_bits: int) -> np.ndarray:
    """(num_pes,) int64 entries (non-zeros + padding) each PE stores for the compressed layer."""
    from accelsim.encoded import memo

    return memo(layer, "entries_per_pe", (int(num_pes), int(index_bits)),
                lambda: layer_columns(layer, num_pes, index_bits).entries("skip").sum(axis=1),
                pack=lambda a: [int(v) for v in a],
                unpack=lambda a: np.asarray(a, dtype=np.int64))


@njit(cache=True)
def _csc(w2, groups):
    """Two row-order passes: count per column, then fill; rows come out ascending."""
    m_total, kg = w2.shape
    mg = m_total // groups
    col_ptr = np.zeros(groups * kg + 1, dtype=np.int64)
    for m in range(m_total):
        off = (m // mg) * kg
        for k in range(kg):
            if w2[m, k] != 0:
                col_ptr[off + k + 1] += 1
    for col in range(groups * kg):
        col_ptr[col + 1] += col_ptr[col]
    fill = col_ptr[:-1].copy()
    rows = np.empty(col_ptr[-1], dtype=np.int64)
    vals = np.empty(col_ptr[-1], dtype=np.float32)
    for m in range(m_total):
        off = (m // mg) * kg
        for k in range(kg):
            if w2[m, k] != 0:
                q = fill[off + k]
                rows[q] = m
                vals[q] = w2[m, k]
                fill[off + k] = q + 1
    return col_ptr, rows, vals


def nonzero_csc(weight: np.ndarray, geometry: LayerGeometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(col_ptr, row, value) of the non-zero weights per global column, rows ascending.

    The functional model accumulates from exactly these entries (padding adds nothing).
    """
    return _csc(weight_matrix(weight, geometry), int(geometry.groups))


def layer_csc(layer: LayerRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """nonzero_csc of a trace layer, computed once per layer (accelsim.encoded)."""
    from accelsim.encoded import memo

    return memo(
        layer, "csc", (),
        lambda: nonzero_csc(layer.weight, layer.geometry),
        pack=lambda c: {"col_ptr": c[0], "rows": c[1], "values": c[2]},
        unpack=lambda a: (a["col_ptr"], a["rows"], a["values"]),
    )
