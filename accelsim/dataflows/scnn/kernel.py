"""SCNN-style two-sided sparse convolution (PT-IS-CP-sparse): the fast kernel.

After "SCNN: An Accelerator for Compressed-sparse Convolutional Neural Networks". The model
(docs/hardware-model.md, "SCNN-style two-sided sparse array"):

- A grid of pe_rows x pe_cols PEs. The input plane is cut into tiles of
  ceil(H / pe_rows) x ceil(W / pe_cols) positions, tile (r, c) to PE (r, c) (planar tiling; a
  PE past the plane gets no tile). Conv groups run one after another; within a group the output
  channels go in output-channel groups of Kc, each ended by a barrier (the slowest PE sets the
  group's time).
- Per output-channel group, each PE walks the input channels of the conv group; for channel c it
  holds a vector of up to I activations of its tile (input stationary; row-major order) while the
  vectors of up to F weights of channel c for the group's Kc filters stream past ((ky, kx, k)
  order, k fastest). Each step forms the Cartesian product of the two vectors (F x I
  multipliers).
- A product lands on output (k, oy, ox) when (iy + py - ky dy) / sy and (ix + px - kx dx) / sx
  are whole and inside the output; others are discarded (stride, edges). A landing product goes
  through the crossbar to accumulator bank (k + F (ox + I oy)) mod A; a bank takes one product
  a cycle and the PE issues its next step when every bank has taken the last one: a step takes
  max(1, most products sent to one bank) cycles.
- "skip" drops zero operands from the vectors (compressed storage); "gate" and "none" keep them
  in the vectors (gate saves their MAC energy).

The kernel is proven equal to the per-cycle model in accelsim.dataflows.scnn.reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from accelsim.dataflows.cnvlutin.kernel import ConvShape, conv_shape
from accelsim.errors import AccelsimError
from accelsim.result import DataflowResult
from accelsim.traces.schema import LayerRecord

MODES = ("skip", "gate", "none")
CHUNK_BYTES = 256 << 20  # dense activations densified at once (samples are cut into chunks)

# Columns of the per-task (sample, conv group, output-channel group) statistics.
(_T_CYCLES, _T_BUSY, _T_TAIL, _T_EMPTY, _T_CONFLICT, _T_FRAG, _T_DISCARD, _T_MAC, _T_LAND,
 _T_POP, _T_AREAD) = range(11)
_NT = 11


@dataclass(frozen=True)
class Plan:
    """How a layer maps onto the grid: tiles, output-channel groups, accumulator use."""

    cs: ConvShape
    tile_rows: np.ndarray  # (pe_rows, 2) input rows [start, stop) of each PE row
    tile_cols: np.ndarray  # (pe_cols, 2)
    region: int  # accumulator entries one output channel needs in the fullest PE
    kc: int  # output channels per output-channel group
    halo_per_channel: int  # partial sums sent to a neighbour per output channel, all PEs
    tiled_pes: int  # PEs with a non-empty tile

    @property
    def channel_groups(self) -> int:
        return -(-self.cs.mg // self.kc)


def _axis(n_in, n_out, k, s, p, d, parts):
    """Along one axis, per PE index: input tile [a, b), the output window its inputs reach
    (outputs o with a + p - (k-1) d <= o s <= b - 1 + p), the outputs it owns (the output plane
    tiled the same way), and the accumulator span covering both."""
    t, ot = -(-n_in // parts), -(-n_out // parts)
    tiles, spans, windows, overlaps = [], [], [], []
    for r in range(parts):
        a, b = min(r * t, n_in), min((r + 1) * t, n_in)
        lo, hi = (max(0, -(-(a + p - (k - 1) * d) // s)), min(n_out - 1, (b - 1 + p) // s)) \
            if a < b else (0, -1)
        o0, o1 = min(r * ot, n_out), min((r + 1) * ot, n_out) - 1
        win = max(0, hi - lo + 1)
        own = max(0, o1 - o0 + 1)
        if win and own:
            span = max(hi, o1) - min(lo, o0) + 1
        else:
            span = win + own
        tiles.append((a, b))
        spans.append(span)
        windows.append(win)
        overlaps.append(max(0, min(hi, o1) - max(lo, o0) + 1))
    return (np.array(tiles, np.int64), np.array(spans), np.array(windows), np.array(overlaps))


def plan_layer(layer: LayerRecord, pe_rows: int, pe_cols: int, banks: int, bank_entries: int,
               kc: int) -> Plan:
    """The layer's tiling and output-channel groups; one-line error when the accumulator of a PE
    cannot hold one output channel of its tile with halos (the grid does not tile the layer)."""
    cs = conv_shape(layer)
    name = layer.geometry.name
    rows = _axis(cs.H, cs.OH, cs.KH, cs.sy, cs.py, cs.dy, pe_rows)
    cols = _axis(cs.W, cs.OW, cs.KW, cs.sx, cs.px, cs.dx, pe_cols)
    span_r, span_c = int(rows[1].max()), int(cols[1].max())
    region = span_r * span_c
    capacity = banks * bank_entries
    th, tw = -(-cs.H // pe_rows), -(-cs.W // pe_cols)
    if region > capacity:
        raise AccelsimError(
            f"layer {name!r}: the {pe_rows}x{pe_cols} PE grid gives {th}x{tw} input tiles whose "
            f"partial sums with halos need {span_r}x{span_c} = {region} accumulator entries per "
            f"output channel, more than scnn.banks x scnn.bank_entries = {capacity}; use a larger "
            f"grid (scnn.pe_rows, scnn.pe_cols) or more entries (scnn.bank_entries)"
        )
    fits = capacity // max(region, 1)
    if kc == 0:
        group = min(cs.mg, fits)
    else:
        group = min(kc, cs.mg)
        if group * region > capacity:
            raise AccelsimError(
                f"layer {name!r}: scnn.kc = {kc} output channels x {region} accumulator entries "
                f"(a {th}x{tw} tile with halos) exceed scnn.banks x scnn.bank_entries = {capacity}; "
                f"set scnn.kc to at most {fits} (or 0 for the largest that fits)"
            )
    halo = int((np.outer(rows[2], cols[2]) - np.outer(rows[3], cols[3])).sum())
    tiled = int(np.count_nonzero(rows[0][:, 1] > rows[0][:, 0])) * int(
        np.count_nonzero(cols[0][:, 1] > cols[0][:, 0]))
    return Plan(cs, rows[0], cols[0], region, max(group, 1), halo, tiled)


def check_config(pe_rows, pe_cols, weight_vector, act_vector, banks, bank_entries, kc,
                 act_mode, weight_mode) -> None:
    for name, v, low in (("pe_rows", pe_rows, 1), ("pe_cols", pe_cols, 1),
                         ("weight_vector", weight_vector, 1), ("act_vector", act_vector, 1),
                         ("banks", banks, 1), ("bank_entries", bank_entries, 1), ("kc", kc, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise AccelsimError(f"scnn.{name} must be an integer >= {low}, got {v!r}")
    for label, mode in (("activations", act_mode), ("weights", weight_mode)):
        if mode not in MODES:
            raise AccelsimError(f"sparsity.{label} must be one of {', '.join(MODES)}; got {mode!r}")


def weight_lists(layer: LayerRecord, plan: Plan, weight_mode: str):
    """The weight vectors' source: per (conv group, input channel, output-channel group) the
    entries in (ky, kx, k) order, k fastest (zeros dropped under skip), and offsets[g, c, q]
    where each list starts (offsets[g, c, q + 1] where it ends)."""
    cs = plan.cs
    nq, kc, taps = plan.channel_groups, plan.kc, cs.KH * cs.KW
    w = np.ascontiguousarray(layer.weight, dtype=np.float32).reshape(
        cs.groups, cs.mg, cs.cg, cs.KH, cs.KW)
    keep = w != 0 if weight_mode == "skip" else np.ones(w.shape, bool)
    g, k, c, ky, kx = np.nonzero(keep)
    q = k // kc
    key = (((g * cs.cg + c) * nq + q) * taps + ky * cs.KW + kx) * kc + (k - q * kc)
    order = np.argsort(key, kind="stable")
    starts = np.arange(cs.groups * cs.cg * nq + 1) * taps * kc
    offsets = np.searchsorted(key[order], starts)
    index = np.stack([a[order] for a in (g, k, c, ky, kx)])
    g, k, c, ky, kx = index
    return ((g * cs.mg + k).astype(np.int64), ky.astype(np.int64), kx.astype(np.int64),
            w[g, k, c, ky, kx].astype(np.float32), offsets.astype(np.int64))


def simulate_scnn(
    layer: LayerRecord,
    *,
    pe_rows: int,
    pe_cols: int,
    weight_vector: int,
    act_vector: int,
    banks: int,
    bank_entries: int,
    kc: int,
    act_mode: str,
    weight_mode: str,
    functional: bool = True,
    samples: int | None = None,
) -> DataflowResult:
    """Cycles and events of one layer on an SCNN-style array, per sample (first `samples`)."""
    check_config(pe_rows, pe_cols, weight_vector, act_vector, banks, bank_entries, kc, act_mode,
                 weight_mode)
    plan = plan_layer(layer, pe_rows, pe_cols, banks, bank_entries, kc)
    cs = plan.cs
    batch = layer.inputs
    s_total = batch.num_samples if samples is None else min(int(samples), batch.num_samples)
    s_out = 0
    if functional and layer.outputs is not None:
        s_out = min(int(layer.outputs.shape[0]), s_total)
    wk, wy, wx, wv, woff = weight_lists(layer, plan, weight_mode)
    nq = plan.channel_groups
    geo = np.array([cs.C, cs.H, cs.W, cs.M, cs.OH, cs.OW, cs.sy, cs.sx, cs.py, cs.px, cs.groups],
                   np.int64)
    # Both lists keep their zeros (modes "none") and no outputs are wanted: every input channel
    # takes the same steps (all tile positions x all of the group's weight slots), so the
    # kernel walks one channel per PE and counts it for all.
    same = int(act_mode == "none" and weight_mode == "none" and s_out == 0)
    cfg = np.array([pe_rows, pe_cols, weight_vector, act_vector, banks, plan.kc, nq,
                    MODES.index(act_mode), MODES.index(weight_mode), same], np.int64)
    # Activations processed whatever their values (act "none") and no outputs wanted: every
    # sample takes the same steps, so one sample is simulated and its figures repeated.
    distinct = 1 if act_mode == "none" and s_out == 0 else s_total
    stats = np.zeros((distinct, cs.groups * nq, _NT), np.int64)
    acc = np.zeros((s_out, cs.M, cs.OH, cs.OW), np.float64)
    per_sample_bytes = max(1, cs.C * cs.H * cs.W * 4)
    chunk = max(1, CHUNK_BYTES // per_sample_bytes)
    for lo in range(0, distinct, chunk):
        hi = min(lo + chunk, distinct)
        x = batch.rows(lo, hi).to_dense().reshape(hi - lo, cs.C, cs.H, cs.W)
        _scnn_kernel(np.ascontiguousarray(x, np.float32), lo, geo, cfg, plan.tile_rows,
                     plan.tile_cols, wk, wy * cs.dy, wx * cs.dx, wv, woff, s_out, stats, acc)
    if distinct < s_total:
        stats = np.repeat(stats, s_total, axis=0)

    per = stats.sum(axis=1)
    total = per.sum(axis=0)
    units = pe_rows * pe_cols
    entries = int(wv.shape[0])  # weight entries the layer streams (zeros dropped under skip)
    halo = plan.halo_per_channel * cs.groups * cs.mg * s_total
    n_out = cs.M * cs.OH * cs.OW * s_total
    counters = {
        "cycles": int(total[_T_CYCLES]),
        "busy_pe_cycles": int(total[_T_BUSY]),
        "starve_pe_cycles": 0,
        "tail_pe_cycles": int(total[_T_TAIL]),
        "empty_pe_cycles": int(total[_T_EMPTY]),
        "stall_cycles": 0,
        "padding_entries": 0,
        "mac": int(total[_T_MAC]),
        "weight_read": entries * s_total,
        "pointer_read": 0,
        "act_read": int(total[_T_AREAD]),
        "act_write": n_out,
        "fifo_push": entries * plan.tiled_pes * s_total,
        "fifo_pop": int(total[_T_POP]),
        "nzd": n_out,
        "acc_update": int(total[_T_LAND]) + halo,
        "pe_cycle": int(total[_T_CYCLES]) * units,
        "fragmentation_slots": int(total[_T_FRAG]),
        "imbalance_pe_cycles": int(total[_T_TAIL] + total[_T_EMPTY]),
        "bank_conflict_cycles": int(total[_T_CONFLICT]),
        "discarded_products": int(total[_T_DISCARD]),
        "halo_psums": halo,
    }
    out = None
    if s_out:
        bias = np.zeros(cs.M) if layer.bias is None else np.asarray(layer.bias, np.float64)
        out = (acc + bias[None, :, None, None]).astype(np.float32)
        out = out.reshape((s_out, *layer.geometry.out_shape))
    extra = {"kc": plan.kc, "channel_groups": nq, "accumulator_region": plan.region,
             "samples": s_total}
    return DataflowResult(cycles=per[:, _T_CYCLES].copy(), counters=counters, num_units=units,
                          outputs=out, extra=extra)


@njit(cache=True, parallel=True)
def _scnn_kernel(x, s_base, geo, cfg, tile_rows, tile_cols, wk, wy, wx, wv, woff, s_out, stats,
                 acc):
    """Per task (sample, conv group, output-channel group): every PE's steps in order, the
    group's time (slowest PE) and its counters in stats[s, group]. wy, wx: the weights' kernel
    offsets times the dilation."""
    C, _H, _W, _M, OH, OW, sy, sx, py, px, groups = (
        geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[6], geo[7], geo[8], geo[9], geo[10])
    PR, PC, F, I, A, _KC, NQ, amode, wmode, same = (cfg[0], cfg[1], cfg[2], cfg[3], cfg[4], cfg[5],
                                                   cfg[6], cfg[7], cfg[8], cfg[9])
    cg = C // groups
    amask = A - 1 if A & (A - 1) == 0 else -1  # a power-of-two bank count: mask, not modulo
    th = tile_rows[0, 1] - tile_rows[0, 0]
    tw = tile_cols[0, 1] - tile_cols[0, 0]
    n_tasks = x.shape[0] * groups * NQ
    for task in prange(n_tasks):
        sl = task // (groups * NQ)
        gq = task % (groups * NQ)
        g = gq // NQ
        q = gq % NQ
        s = sl + s_base
        ay = np.empty(th * tw, np.int64)  # input position + padding of the vector's entries
        ax = np.empty(th * tw, np.int64)
        av = np.empty(th * tw, np.float32)
        count = np.zeros(A, np.int64)  # products sent to each bank in the current step
        stamp = np.full(A, -1, np.int64)  # step that last wrote count[b] (no reset per step)
        pe_time = np.zeros(PR * PC, np.int64)
        conflict = 0
        frag = 0
        discard = 0
        mac = 0
        land = 0
        pop = 0
        aread = 0
        step_id = 0
        for p in range(PR * PC):
            y0, y1 = tile_rows[p // PC, 0], tile_rows[p // PC, 1]
            x0, x1 = tile_cols[p % PC, 0], tile_cols[p % PC, 1]
            t = 0
            conflict_p = 0
            frag_p = 0
            discard_p = 0
            mac_p = 0
            land_p = 0
            pop_p = 0
            aread_p = 0
            for c in range(1 if same else cg):
                ch = g * cg + c
                w0 = woff[(g * cg + c) * NQ + q]
                w1 = woff[(g * cg + c) * NQ + q + 1]
                if w1 == w0:
                    continue
                na = 0
                for iy in range(y0, y1):
                    for ix in range(x0, x1):
                        a = x[sl, ch, iy, ix]
                        if amode == 0 and a == 0.0:
                            continue
                        ay[na] = iy + py
                        ax[na] = ix + px
                        av[na] = a
                        na += 1
                if na == 0:
                    continue
                aread_p += na
                for a0 in range(0, na, I):
                    a1 = min(a0 + I, na)
                    for v0 in range(w0, w1, F):
                        v1 = min(v0 + F, w1)
                        most = 0
                        for i in range(a0, a1):
                            for j in range(v0, v1):
                                if not ((amode == 1 and av[i] == 0.0)
                                        or (wmode == 1 and wv[j] == 0.0)):
                                    mac_p += 1
                                ny = ay[i] - wy[j]
                                nx = ax[i] - wx[j]
                                if ny < 0 or nx < 0:
                                    discard_p += 1
                                    continue
                                if sy != 1:
                                    if ny % sy != 0:
                                        discard_p += 1
                                        continue
                                    ny //= sy
                                if sx != 1:
                                    if nx % sx != 0:
                                        discard_p += 1
                                        continue
                                    nx //= sx
                                if ny >= OH or nx >= OW:
                                    discard_p += 1
                                    continue
                                land_p += 1
                                m = wk[j]
                                addr = m + F * (nx + I * ny)
                                b = addr & amask if amask >= 0 else addr % A
                                if stamp[b] != step_id:
                                    stamp[b] = step_id
                                    count[b] = 0
                                count[b] += 1
                                if count[b] > most:
                                    most = count[b]
                                if s < s_out:
                                    acc[s, m, ny, nx] += np.float64(av[i]) * np.float64(wv[j])
                        step_id += 1
                        step = max(1, most)
                        t += step
                        conflict_p += step - 1
                        frag_p += F * I - (a1 - a0) * (v1 - v0)
                        pop_p += v1 - v0
            # every channel takes the same steps when no zero is dropped: one counted, cg times
            reps = cg if same else 1
            pe_time[p] = t * reps
            conflict += conflict_p * reps
            frag += frag_p * reps
            discard += discard_p * reps
            mac += mac_p * reps
            land += land_p * reps
            pop += pop_p * reps
            aread += aread_p * reps
        longest = pe_time.max()
        busy = 0
        tail = 0
        empty = 0
        for p in range(PR * PC):
            tiled = (tile_rows[p // PC, 1] > tile_rows[p // PC, 0]
                     and tile_cols[p % PC, 1] > tile_cols[p % PC, 0])
            busy += pe_time[p]
            if tiled:
                tail += longest - pe_time[p]
            else:
                empty += longest
        row = stats[s, gq]
        row[0] = longest
        row[1] = busy
        row[2] = tail
        row[3] = empty
        row[4] = conflict
        row[5] = frag
        row[6] = discard
        row[7] = mac
        row[8] = land
        row[9] = pop
        row[10] = aread
