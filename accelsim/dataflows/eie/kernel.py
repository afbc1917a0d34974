"""EIE-style activation broadcast: exact cycle counts by an event recurrence, plus outputs.

The microarchitecture (docs/hardware-model.md, "EIE-style activation broadcast"): one
activation per cycle is broadcast, in row-major input order, into every PE's FIFO (depth D);
a free PE pops its head and works `cost` cycles on it (cost = stored entries of that PE in the
columns the activation touches at valid output positions, or empty_slice_cycles if none).
Broadcast stalls while any FIFO would stay full. An entry frees its slot when the PE starts it
(queue "pop") or when the PE has finished it (queue "hold", EIE's). The recurrence below gives
exactly what reference.py's cycle-by-cycle loop gives (tests/test_eie.py checks it):

    b_0 = 0, b_j = max(b_{j-1} + 1, max_p f_p(j - D))      broadcast cycle of activation j
    s_p(j) = max(b_j + 1, e_p(j - 1)), e_p(j) = s_p(j) + cost_p(j), e_p(-1) = 0
    f_p(j) = s_p(j) (pop) or e_p(j) (hold)                   cycle entry j frees its slot
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from accelsim.dataflows.eie import QUEUE_MODES
from accelsim.dataflows.eie.encoding import WEIGHT_MODES, geometry_rows, layer_columns, layer_csc
from accelsim.errors import AccelsimError
from accelsim.result import DataflowResult
from accelsim.traces.schema import LayerGeometry, LayerRecord

ACT_MODES = ("skip", "gate", "none")


# ---------------------------------------------------------------------------------------------
# geometry


def conv_dims(geo: LayerGeometry) -> tuple[int, ...]:
    """(C, H, W, M, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw); linear layers as 1x1 convs."""
    if geo.kind == "linear":
        return (geo.in_shape[0], 1, 1, geo.out_shape[0], 1, 1, 1, 1, 1, 1, 0, 0, 1, 1)
    c, h, w = geo.in_shape
    m, oh, ow = geo.out_shape
    return (c, h, w, m, oh, ow, *geo.kernel, *geo.stride, *geo.padding, *geo.dilation)


def check_layer(layer: LayerRecord) -> None:
    """One-line errors for a layer whose shapes do not fit together (the trace validator's
    geometry rules, then the arrays against the geometry)."""
    from accelsim.traces.validate import check_geometry

    geo = layer.geometry
    name = geo.name
    if min(*geo.kernel, *geo.stride, *geo.dilation, geo.groups) < 1 or min(geo.padding) < 0:
        raise AccelsimError(f"layer {name!r}: kernel/stride/dilation/groups must be >= 1")
    check_geometry(geo, f"layer {name!r}")
    # deferred weights are checked against the geometry when they are read
    if not layer.weights_deferred and tuple(layer.weight.shape) != tuple(geo.weight_shape):
        raise AccelsimError(
            f"layer {name!r}: weight shape {tuple(layer.weight.shape)} != {tuple(geo.weight_shape)}"
        )
    if tuple(layer.inputs.shape) != tuple(geo.in_shape):
        raise AccelsimError(f"layer {name!r}: inputs shape {layer.inputs.shape} != {geo.in_shape}")


# ---------------------------------------------------------------------------------------------
# per-layer tables (computed once, shared by every sample)


@njit(cache=True)
def _tap_sum(table, h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw, empty, out):
    """out[(c*h + y)*w + x, :] = sum of table[c, ky, kx, :] over the taps (ky, kx) that put input
    (y, x) at a valid output position; entries left 0 become `empty` (when empty >= 0).

    Separable: first over kx for every (c, ky, x), then over ky for every (c, y, x).
    """
    c_total, _, _, k = table.shape
    vx = np.zeros((w, kw), dtype=np.bool_)
    for x in range(w):
        for kx in range(kw):
            t = x + pw - kx * dw
            vx[x, kx] = t >= 0 and t % sw == 0 and t // sw < ow
    vy = np.zeros((h, kh), dtype=np.bool_)
    for y in range(h):
        for ky in range(kh):
            t = y + ph - ky * dh
            vy[y, ky] = t >= 0 and t % sh == 0 and t // sh < oh
    tmp = np.zeros((kh, w, k), dtype=np.int64)
    for c in range(c_total):
        tmp[:] = 0
        for ky in range(kh):
            for x in range(w):
                for kx in range(kw):
                    if vx[x, kx]:
                        for q in range(k):
                            tmp[ky, x, q] += table[c, ky, kx, q]
        for y in range(h):
            for x in range(w):
                row = (c * h + y) * w + x
                for q in range(k):
                    out[row, q] = 0
                for ky in range(kh):
                    if vy[y, ky]:
                        for q in range(k):
                            out[row, q] += tmp[ky, x, q]
                if empty >= 0:
                    for q in range(k):
                        if out[row, q] == 0:
                            out[row, q] = empty
    return out


class CostTables:
    """Per input position: each PE's cost (n_in, N), int16 where every cost fits (half the
    memory the timing kernel streams), else int32; and totals over PEs, one (3, n_in) int64
    array of stored entries read, padding entries and MAC-spending entries. Read-only: the
    same arrays are shared by every variant and sweep point, or memory-mapped from the cache."""

    def __init__(self, cost, totals):
        self.cost, self.totals = cost, totals
        for a in (cost, totals):
            a.flags.writeable = False
        self.entries_tot, self.padding_tot, self.mac_tot = totals[0], totals[1], totals[2]

    @classmethod
    def build(cls, layer: LayerRecord, num_pes: int, index_bits: int, empty_slice_cycles: int,
              weight_mode: str) -> "CostTables":
        geo = layer.geometry
        c, h, w, m, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw = conv_dims(geo)
        if weight_mode == "none":  # dense storage, every entry a MAC: the geometry says it all
            entries = geometry_rows(geo, num_pes)
            pad, macs = np.zeros_like(entries), entries
        else:
            cols = layer_columns(layer, num_pes, index_bits)
            entries, macs = cols.entries(weight_mode), cols.mac_entries(weight_mode)
            pad = cols.padding if weight_mode == "skip" else np.zeros_like(entries)
        dims = (h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw)
        per_pe = np.ascontiguousarray(entries.T.reshape(c, kh, kw, num_pes))
        cost = _tap_sum(per_pe, *dims, int(empty_slice_cycles),
                        np.empty((c * h * w, num_pes), dtype=np.int32))
        if cost.size and cost.max() <= np.iinfo(np.int16).max:
            cost = cost.astype(np.int16)
        totals = np.stack([entries.sum(axis=0), pad.sum(axis=0), macs.sum(axis=0)],
                          axis=1).reshape(c, kh, kw, 3)
        t = _tap_sum(np.ascontiguousarray(totals), *dims, -1,
                     np.empty((c * h * w, 3), dtype=np.int64))
        return cls(cost, np.ascontiguousarray(t.T))


def cost_tables(layer: LayerRecord, num_pes: int, index_bits: int, empty_slice_cycles: int,
                weight_mode: str) -> CostTables:
    """CostTables once per (layer, encoding parameters): in memory and in the encoding cache
    (read back memory-mapped), shared by every variant and sweep point (accelsim.encoded)."""
    from accelsim.encoded import memo

    params = (int(num_pes), int(index_bits), int(empty_slice_cycles), weight_mode)
    return memo(layer, "eie_cost", params, lambda: CostTables.build(layer, *params),
                pack=lambda t: {"cost": t.cost, "totals": t.totals},
                unpack=lambda a: CostTables(a["cost"], a["totals"]))


# ---------------------------------------------------------------------------------------------
# kernels


@njit(cache=True)
def _timing_one(cost, idx, lo, hi, depth, hold, e, ring):
    """Recurrence over broadcasts idx[lo:hi]; returns (T, busy, stall, starve, tail).
    ring[j % depth] = the cycle by which every PE has freed entry j's slot."""
    n_pes = cost.shape[1]
    for p in range(n_pes):
        e[p] = 0
    busy = 0
    stall = 0
    starve = 0
    b_prev = -1
    for jj in range(hi - lo):
        pos = idx[lo + jj]
        b = b_prev + 1
        if jj >= depth:
            r = ring[jj % depth]
            if r > b:
                b = r
        if jj > 0:
            stall += b - b_prev - 1
        free = 0
        for p in range(n_pes):
            ep = e[p]
            sp = b + 1 if b + 1 > ep else ep
            starve += sp - ep
            cp = cost[pos, p]
            busy += cp
            e[p] = sp + cp
            fp = sp + cp if hold else sp
            if fp > free:
                free = fp
        ring[jj % depth] = free
        b_prev = b
    t_end = 0
    for p in range(n_pes):
        if e[p] > t_end:
            t_end = e[p]
    tail = 0
    if hi > lo:
        for p in range(n_pes):
            tail += t_end - e[p]
    return t_end, busy, stall, starve, tail


@njit(cache=True, parallel=True)
def _timing(cost, indptr, idx, depth, hold, entries_tot, padding_tot):
    """Per-sample counters (S, 7): T, busy, stall, starve, tail, weight_read, padding."""
    n_samples = indptr.shape[0] - 1
    out = np.zeros((n_samples, 7), dtype=np.int64)
    n_pes = cost.shape[1]
    for s in prange(n_samples):
        e = np.zeros(n_pes, dtype=np.int64)
        ring = np.zeros(depth, dtype=np.int64)
        lo, hi = indptr[s], indptr[s + 1]
        t_end, busy, stall, starve, tail = _timing_one(cost, idx, lo, hi, depth, hold, e, ring)
        wr = 0
        pd = 0
        for jj in range(lo, hi):
            wr += entries_tot[idx[jj]]
            pd += padding_tot[idx[jj]]
        out[s, 0] = t_end
        out[s, 1] = busy
        out[s, 2] = stall
        out[s, 3] = starve
        out[s, 4] = tail
        out[s, 5] = wr
        out[s, 6] = pd
    return out


@njit(cache=True)
def _gather_sums(indptr, idx, table):
    """Per-sample sum of table[idx] over each sample's positions."""
    n_samples = indptr.shape[0] - 1
    out = np.zeros(n_samples, dtype=np.int64)
    for s in range(n_samples):
        acc = 0
        for jj in range(indptr[s], indptr[s + 1]):
            acc += table[idx[jj]]
        out[s] = acc
    return out


@njit(cache=True, parallel=True)
def _functional(indptr, idx, vals, col_ptr, rows, wvals, bias, n_out, dims):
    """Outputs of the first n_out samples from the processed (weight entry, activation) pairs.

    Pairs with a zero operand add nothing, so only non-zero x non-zero pairs are visited:
    O(effective MACs). Accumulates in float64, rounds once to float32.
    """
    h, w, m, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw = dims
    out = np.zeros((n_out, m, oh, ow), dtype=np.float32)
    for s in prange(n_out):
        acc = np.zeros((m, oh, ow), dtype=np.float64)
        for jj in range(indptr[s], indptr[s + 1]):
            pos = idx[jj]
            a = np.float64(vals[jj])
            c = pos // (h * w)
            y = (pos // w) % h
            x = pos % w
            for ky in range(kh):
                ty = y + ph - ky * dh
                if ty < 0 or ty % sh != 0 or ty // sh >= oh:
                    continue
                oy = ty // sh
                for kx in range(kw):
                    tx = x + pw - kx * dw
                    if tx < 0 or tx % sw != 0 or tx // sw >= ow:
                        continue
                    ox = tx // sw
                    col = (c * kh + ky) * kw + kx
                    for q in range(col_ptr[col], col_ptr[col + 1]):
                        acc[rows[q], oy, ox] += np.float64(wvals[q]) * a
        for mm in range(m):
            for yy in range(oh):
                for xx in range(ow):
                    out[s, mm, yy, xx] = np.float32(acc[mm, yy, xx] + bias[mm])
    return out


# ---------------------------------------------------------------------------------------------
# entry point


def _nonzero_inputs(layer: LayerRecord, n_samples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr, positions, values) of the non-zero input activations of the first n_samples."""
    batch = layer.inputs
    end = int(batch.indptr[n_samples])
    idx = np.asarray(batch.indices[:end], dtype=np.int64)
    if batch.values is None:  # a position set: every listed position holds 1.0
        vals = np.ones(end, dtype=np.float32)
    else:
        vals = np.asarray(batch.values[:end], dtype=np.float32)
    keep = vals != 0
    if keep.all():  # a trace's activations are stored without zeros
        return np.asarray(batch.indptr[: n_samples + 1], dtype=np.int64), idx, vals
    sample_of = np.repeat(np.arange(n_samples), np.diff(batch.indptr[: n_samples + 1]))
    indptr = np.zeros(n_samples + 1, dtype=np.int64)
    np.cumsum(np.bincount(sample_of[keep], minlength=n_samples), out=indptr[1:])
    return indptr, idx[keep], vals[keep]


# The per-layer tables (cost per input position x PE, column counts per PE) live in memory at
# once; past this a configuration is refused before anything is allocated.
MAX_TABLE_BYTES = 8 << 30


def check_table_size(geo: LayerGeometry, num_pes: int) -> None:
    """One-line error when the layer's cost and column tables would exceed MAX_TABLE_BYTES."""
    c, h, w, m, oh, ow, kh, kw = conv_dims(geo)[:8]
    need = c * h * w * num_pes * 4 + 3 * c * kh * kw * num_pes * 8
    if need > MAX_TABLE_BYTES:
        raise AccelsimError(
            f"layer {geo.name!r}: {num_pes} PEs need {need / 2**30:.1f} GiB of EIE cost tables "
            f"(limit {MAX_TABLE_BYTES >> 30} GiB); use fewer PEs"
        )


def _check_args(num_pes, fifo_depth, index_bits, empty_slice_cycles, queue, act_mode, weight_mode):
    for key, value, low in (("num_pes", num_pes, 1), ("fifo_depth", fifo_depth, 1),
                            ("index_bits", index_bits, 1),
                            ("empty_slice_cycles", empty_slice_cycles, 0)):
        if int(value) != value or value < low:
            raise AccelsimError(f"eie.{key} must be an integer >= {low}, got {value!r}")
    if queue not in QUEUE_MODES:
        raise AccelsimError(f"eie.queue must be one of {QUEUE_MODES}, got {queue!r}")
    if act_mode not in ACT_MODES:
        raise AccelsimError(f"sparsity.activations must be one of {ACT_MODES}, got {act_mode!r}")
    if weight_mode not in WEIGHT_MODES:
        raise AccelsimError(f"sparsity.weights must be one of {WEIGHT_MODES}, got {weight_mode!r}")


def simulate_eie(
    layer: LayerRecord,
    *,
    num_pes: int,
    fifo_depth: int,
    index_bits: int,
    empty_slice_cycles: int,
    act_mode: str,
    weight_mode: str,
    queue: str = "hold",
    functional: bool = True,
    samples: int | None = None,
) -> DataflowResult:
    """Replay one layer on an EIE-style array (batch 1 per sample, samples independent).

    samples: simulate only the first `samples` samples (None = all). Outputs (when functional)
    cover the first S_out of those, S_out = rows of layer.outputs (0 when none were recorded).
    """
    from accelsim.encoded import memo

    _check_args(num_pes, fifo_depth, index_bits, empty_slice_cycles, queue, act_mode,
                weight_mode)
    hold = queue == "hold"
    memo(layer, "eie_checked", (), lambda: check_layer(layer) or True)
    check_table_size(layer.geometry, int(num_pes))
    geo = layer.geometry
    n_total = layer.inputs.num_samples
    n_samples = n_total if samples is None else max(0, min(int(samples), n_total))
    n_in = math.prod(geo.in_shape)
    n_out_elems = math.prod(geo.out_shape)
    # weight side: once per (layer, encoding parameters), shared by variants and sweep points
    tables = cost_tables(layer, num_pes, index_bits, empty_slice_cycles, weight_mode)
    nz_indptr, nz_idx, nz_vals = memo(layer, "nonzero_inputs", (n_samples,),
                                      lambda: _nonzero_inputs(layer, n_samples))

    if act_mode == "skip":
        per = _timing(tables.cost, nz_indptr, nz_idx, int(fifo_depth), hold,
                      tables.entries_tot, tables.padding_tot)
        total_bcast = int(nz_indptr[-1] - nz_indptr[0])
    else:  # every activation is broadcast: the timing is the same for every sample
        all_ptr, all_pos = memo(layer, "all_positions", (),
                                lambda: (np.array([0, n_in], dtype=np.int64),
                                         np.arange(n_in, dtype=np.int64)))
        one = _timing(tables.cost, all_ptr, all_pos, int(fifo_depth), hold,
                      tables.entries_tot, tables.padding_tot)
        per = np.repeat(one, n_samples, axis=0)
        total_bcast = n_in * n_samples
    # MAC-spending entries per sample: the weight side and the activations, not the FIFO depth
    mac = memo(layer, "eie_macs", (int(num_pes), int(index_bits), int(empty_slice_cycles),
                                   weight_mode, act_mode == "none", n_samples),
               lambda: int(tables.mac_tot.sum()) * n_samples if act_mode == "none"
               else int(_gather_sums(nz_indptr, nz_idx, tables.mac_tot).sum()))

    cycles = per[:, 0].copy()
    cyc, busy, stall, starve, tail, weight_read, padding = (int(v) for v in per.sum(axis=0))
    n = int(num_pes)
    counters = {
        "cycles": cyc,
        "busy_pe_cycles": busy,
        "stall_cycles": stall,
        "starve_pe_cycles": starve,
        "tail_pe_cycles": tail,
        "empty_pe_cycles": 0,  # every PE takes every broadcast: idle time is starve or tail
        "padding_entries": padding,
        "mac": mac,
        "weight_read": weight_read,
        "pointer_read": n * total_bcast,
        "act_read": n_in * n_samples,
        "act_write": n_out_elems * n_samples,
        "fifo_push": n * total_bcast,
        "fifo_pop": n * total_bcast,
        "nzd": n_in * n_samples,
        "pe_cycle": n * cyc,
    }
    outputs = None
    if functional:
        s_out = 0 if layer.outputs is None else min(int(layer.outputs.shape[0]), n_samples)
        outputs = functional_outputs(layer, s_out, nz_indptr, nz_idx, nz_vals)
    return DataflowResult(
        cycles=cycles,
        counters=counters,
        num_units=n,
        outputs=outputs,
        extra={"dataflow": "eie", "broadcasts": total_bcast, "samples": n_samples},
    )


def functional_outputs(layer: LayerRecord, n_out: int, indptr=None, idx=None, vals=None) -> np.ndarray:
    """(n_out, *out_shape) float32 outputs of the first n_out samples, bias included."""
    geo = layer.geometry
    if indptr is None:
        indptr, idx, vals = _nonzero_inputs(layer, n_out)
    c, h, w, m, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw = conv_dims(geo)
    col_ptr, rows, wvals = layer_csc(layer)
    bias = np.zeros(m, dtype=np.float64) if layer.bias is None else layer.bias.astype(np.float64)
    dims = (h, w, m, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw)
    out = _functional(indptr, idx, vals, col_ptr, rows, wvals, bias, int(n_out), dims)
    return out.reshape((int(n_out), *geo.out_shape))
