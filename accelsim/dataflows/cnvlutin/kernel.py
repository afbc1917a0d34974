"""Cnvlutin-style dataflow: dense weights, zero-free activation bricks, lanes synced per group.

After "Cnvlutin: Ineffectual-Neuron-Free Deep Neural Network Computing", whose baseline is the
array of "DaDianNao: A Machine-Learning Supercomputer". The model (docs/hardware-model.md,
"Cnvlutin-style dataflow"):

- `units` units, each with `lanes` (L) neuron lanes; a lane takes one activation per cycle and
  multiplies it with the unit's `filters_per_unit` filters (units x lanes x filters_per_unit
  multipliers). Filters (output channels) of a conv group go in passes of
  F = units * filters_per_unit; groups run one after another; every unit sees the same
  activations.
- Conv: per output position (a window), the valid taps (ky, kx) in row-major order (taps in the
  zero padding are skipped by the address generator in every mode). FC: one tap of F_in channels.
- Dealing (pack_taps=False, the default, DaDianNao's and Cnvlutin's organisation): a tap's C_g
  channels are cut into L slices of ceil(C_g / L) consecutive channels, slice l for lane l, each
  slice into bricks of `brick_size`; brick group j holds brick j of every lane's slice, so a
  group never mixes taps. With zeros processed this is DaDianNao's one brick of L channels per
  cycle: ceil(C_g / L) cycles per tap. pack_taps=True deals the window's bricks (brick_size
  consecutive channels of a tap) round robin over the lanes across taps (brick i to lane i mod L).
- A group takes max(1, max lane cost) cycles; brick cost = its non-zeros under act_mode "skip"
  (zero-free format), else its width.
- Weights are dense: weight_mode "gate" keeps every cycle and only saves MAC energy on zero
  weights; "skip" is not supported by this array.

The kernel is proven equal to the per-cycle model in accelsim.dataflows.cnvlutin.reference by the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from accelsim.errors import AccelsimError
from accelsim.result import DataflowResult
from accelsim.traces.schema import LayerRecord

ACT_MODES = ("skip", "gate", "none")
WEIGHT_MODES = ("gate", "none")
WEIGHT_SKIP_ERROR = "cnvlutin does not skip zero weights (set sparsity.weights to gate or none)"

# Column order of the kernel's per-sample counter array.
_K_CYCLES, _K_BUSY, _K_TAIL, _K_MAC, _K_WREAD, _K_AREAD, _K_EMPTY = range(7)
_NK = 7


@dataclass(frozen=True)
class ConvShape:
    """A layer as a 2-D convolution (FC: C=F, 1x1 input and kernel), checked against the record."""

    C: int
    H: int
    W: int
    M: int
    OH: int
    OW: int
    KH: int
    KW: int
    sy: int
    sx: int
    py: int
    px: int
    dy: int
    dx: int
    groups: int

    @property
    def cg(self) -> int:
        return self.C // self.groups

    @property
    def mg(self) -> int:
        return self.M // self.groups


def conv_shape(layer: LayerRecord) -> ConvShape:
    """Validate the layer's geometry, weight and inputs; return it as a convolution."""
    g = layer.geometry
    where = f"layer {g.name!r}"
    if g.kind == "linear":
        if len(g.in_shape) != 1 or len(g.out_shape) != 1:
            raise AccelsimError(
                f"{where}: linear layer needs 1-D in/out shapes, got {g.in_shape} -> {g.out_shape}"
            )
        cs = ConvShape(g.in_shape[0], 1, 1, g.out_shape[0], 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1)
    elif g.kind == "conv2d":
        if len(g.in_shape) != 3 or len(g.out_shape) != 3:
            raise AccelsimError(
                f"{where}: conv2d needs (C, H, W) shapes, got {g.in_shape} -> {g.out_shape}"
            )
        (c, h, w), (m, oh, ow) = g.in_shape, g.out_shape
        cs = ConvShape(c, h, w, m, oh, ow, *g.kernel, *g.stride, *g.padding, *g.dilation, g.groups)
        if cs.groups < 1 or c % cs.groups or m % cs.groups:
            raise AccelsimError(
                f"{where}: groups={cs.groups} must divide in ({c}) and out ({m}) channels"
            )
        if min(cs.KH, cs.KW, cs.sy, cs.sx, cs.dy, cs.dx) < 1 or min(cs.py, cs.px) < 0:
            raise AccelsimError(f"{where}: kernel/stride/dilation must be >= 1 and padding >= 0")
        eoh = (h + 2 * cs.py - cs.dy * (cs.KH - 1) - 1) // cs.sy + 1
        eow = (w + 2 * cs.px - cs.dx * (cs.KW - 1) - 1) // cs.sx + 1
        if (eoh, eow) != (oh, ow):
            raise AccelsimError(
                f"{where}: output size {oh}x{ow} does not match the geometry ({eoh}x{eow})"
            )
    else:
        raise AccelsimError(f"{where}: unknown layer kind {g.kind!r}")
    if tuple(layer.weight.shape) != tuple(g.weight_shape):
        raise AccelsimError(f"{where}: weight shape {layer.weight.shape} != {g.weight_shape}")
    if tuple(layer.inputs.shape) != tuple(g.in_shape):
        raise AccelsimError(f"{where}: input shape {layer.inputs.shape} != {g.in_shape}")
    if layer.bias is not None and tuple(layer.bias.shape) != (cs.M,):
        raise AccelsimError(f"{where}: bias shape {layer.bias.shape} != ({cs.M},)")
    return cs


def check_config(units, lanes, filters_per_unit, brick_size, act_mode, weight_mode,
                 pack_taps=False) -> None:
    """One-line errors for an impossible Cnvlutin configuration."""
    if not isinstance(pack_taps, (bool, np.bool_)):
        raise AccelsimError(f"cnvlutin.pack_taps must be true or false, got {pack_taps!r}")
    for name, v in (("units", units), ("lanes", lanes), ("filters_per_unit", filters_per_unit),
                    ("brick_size", brick_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise AccelsimError(f"cnvlutin.{name} must be an integer >= 1, got {v!r}")
    if weight_mode == "skip":
        raise AccelsimError(WEIGHT_SKIP_ERROR)
    if weight_mode not in WEIGHT_MODES:
        raise AccelsimError(
            f"sparsity.weights must be one of skip, gate, none; got {weight_mode!r}"
        )
    if act_mode not in ACT_MODES:
        raise AccelsimError(
            f"sparsity.activations must be one of {', '.join(ACT_MODES)}; got {act_mode!r}"
        )


def simulate_cnvlutin(
    layer: LayerRecord,
    *,
    units: int,
    lanes: int,
    filters_per_unit: int,
    brick_size: int,
    act_mode: str,
    weight_mode: str,
    pack_taps: bool = False,
    functional: bool = True,
    samples: int | None = None,
) -> DataflowResult:
    """Cycles and events of one layer on a Cnvlutin-style array, per sample (first `samples` only).

    With functional=True the outputs of the first S_out samples (S_out = rows of the recorded
    outputs, 0 if none) are accumulated from exactly the (activation, weight) pairs processed.
    """
    check_config(units, lanes, filters_per_unit, brick_size, act_mode, weight_mode, pack_taps)
    cs = conv_shape(layer)
    batch = layer.inputs
    s_total = batch.num_samples
    if samples is not None:
        if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
            raise AccelsimError(f"samples must be an integer >= 1, got {samples!r}")
        s_total = min(int(samples), s_total)
    s_out = 0
    if functional and layer.outputs is not None:
        s_out = min(int(layer.outputs.shape[0]), s_total)

    weight = np.ascontiguousarray(layer.weight, dtype=np.float32).reshape(cs.M, cs.cg, cs.KH, cs.KW)
    wcount = _filter_counts(weight, cs, weight_mode)
    bias = np.zeros(cs.M, np.float32) if layer.bias is None else np.asarray(layer.bias, np.float32)
    indptr = np.ascontiguousarray(batch.indptr[: s_total + 1], dtype=np.int64)
    indices = np.ascontiguousarray(batch.indices, dtype=np.int64)
    values = np.ascontiguousarray(batch.values, dtype=np.float32) if batch.values is not None \
        else np.ones(indices.shape[0], np.float32)
    geo = np.array([cs.C, cs.H, cs.W, cs.M, cs.OH, cs.OW, cs.KH, cs.KW, cs.sy, cs.sx,
                    cs.py, cs.px, cs.dy, cs.dx, cs.groups], dtype=np.int64)
    cfg = np.array([units, lanes, filters_per_unit, brick_size, ACT_MODES.index(act_mode),
                    int(weight_mode == "gate"), int(bool(pack_taps))], dtype=np.int64)
    per_sample = np.zeros((s_total, _NK), dtype=np.int64)
    outputs = np.zeros((s_out, cs.M, cs.OH, cs.OW), dtype=np.float32)
    _cnvlutin_kernel(indptr, indices, values, weight, wcount, bias, geo, cfg, s_out, per_sample,
                     outputs)

    cycles = per_sample[:, _K_CYCLES].copy()
    total = per_sample.sum(axis=0)
    n_out = cs.M * cs.OH * cs.OW
    pe_cycle = int(total[_K_CYCLES]) * units * lanes
    counters = {
        "cycles": int(total[_K_CYCLES]),
        "busy_pe_cycles": int(total[_K_BUSY]),
        "starve_pe_cycles": 0,
        "tail_pe_cycles": int(total[_K_TAIL]),
        # lanes of units that hold no filter in a short last pass: the rest of the PE-cycles
        "empty_pe_cycles": int(total[_K_EMPTY]),
        "stall_cycles": 0,
        "padding_entries": 0,
        "mac": int(total[_K_MAC]),
        "weight_read": int(total[_K_WREAD]),
        "act_read": int(total[_K_AREAD]),
        "act_write": n_out * s_total,
        "nzd": n_out * s_total,
        "pe_cycle": pe_cycle,
    }
    f = units * filters_per_unit
    extra = {"passes_per_group": -(-cs.mg // f), "windows": cs.OH * cs.OW, "samples": s_total}
    out = outputs.reshape((s_out, *layer.geometry.out_shape)) if s_out else None
    return DataflowResult(cycles=cycles, counters=counters, num_units=units * lanes, outputs=out,
                          extra=extra)


def _filter_counts(weight: np.ndarray, cs: ConvShape, weight_mode: str) -> np.ndarray:
    """(groups, Cg, KH, KW): filters of the group that spend a MAC on each weight column."""
    w = weight.reshape(cs.groups, cs.mg, cs.cg, cs.KH, cs.KW)
    if weight_mode == "gate":
        return np.count_nonzero(w, axis=1).astype(np.int64)
    return np.full((cs.groups, cs.cg, cs.KH, cs.KW), cs.mg, dtype=np.int64)


@njit(cache=True, inline="always")
def _brick_entries(x, base, c0, c1, plane, act_mode):
    """Entries a lane processes for channels c0..c1-1 of one position: the non-zeros when
    activations are skipped (act_mode 0), every channel otherwise."""
    if act_mode != 0:
        return c1 - c0
    nz = 0
    for c in range(c0, c1):
        if x[base + c * plane] != 0.0:
            nz += 1
    return nz


@njit(cache=True, parallel=True)
def _cnvlutin_kernel(indptr, indices, values, weight, wcount, bias, geo, cfg, s_out, per_sample,
                     outputs):
    C, H, W, M, OH, OW, KH, KW, sy, sx, py, px, dy, dx, groups = (
        geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[6], geo[7], geo[8], geo[9],
        geo[10], geo[11], geo[12], geo[13], geo[14])
    units, L, fpu, B, act_mode, wgate, pack = (cfg[0], cfg[1], cfg[2], cfg[3], cfg[4], cfg[5],
                                               cfg[6])
    cg = C // groups
    mg = M // groups
    nb = (cg + B - 1) // B  # bricks of a tap (packed dealing)
    sl = (cg + L - 1) // L  # channels of a tap per lane (sliced dealing)
    nbl = (sl + B - 1) // B  # bricks per lane per tap (sliced dealing)
    F = units * fpu
    passes = (mg + F - 1) // F
    # per pass: units holding at least one filter, and filters present
    act_units = 0  # sum over passes
    for p in range(passes):
        left = mg - p * F
        act_units += min(units, (left + fpu - 1) // fpu)
    S = per_sample.shape[0]
    for s in prange(S):
        x = np.zeros(C * H * W, dtype=np.float32)
        for j in range(indptr[s], indptr[s + 1]):
            x[indices[j]] = values[j]
        acc = np.zeros(M * OH * OW, dtype=np.float64)
        cost = np.zeros((H, W, nb), dtype=np.int64)  # packed: brick costs per position
        tcyc = np.zeros((H, W), dtype=np.int64)  # sliced: brick-group cycles of a tap
        tcost = np.zeros((H, W), dtype=np.int64)  # cost (processed entries) of a tap
        cycles = 0
        busy = 0
        tail = 0
        mac = 0
        wread = 0
        aread = 0
        empty = 0
        for g in range(groups):
            for iy in range(H):
                for ix in range(W):
                    base = (g * cg * H + iy) * W + ix
                    if pack == 1:
                        tc = 0
                        for b in range(nb):
                            c0 = b * B
                            c1 = min(c0 + B, cg)
                            nz = _brick_entries(x, base, c0, c1, H * W, act_mode)
                            cost[iy, ix, b] = nz
                            tc += nz
                        tcost[iy, ix] = tc
                    else:
                        tc = 0
                        cyc = 0
                        for j in range(nbl):
                            gmax = 0
                            for lane in range(L):
                                c0 = lane * sl + j * B
                                c1 = min(c0 + B, (lane + 1) * sl, cg)
                                if c0 >= c1:
                                    continue
                                nz = _brick_entries(x, base, c0, c1, H * W, act_mode)
                                tc += nz
                                if nz > gmax:
                                    gmax = nz
                            cyc += max(gmax, 1)
                        tcyc[iy, ix] = cyc
                        tcost[iy, ix] = tc
            gcycles = 0  # sum over windows of brick-group cycles
            gcost = 0  # sum over windows of brick costs (processed entries)
            for oy in range(OH):
                for ox in range(OW):
                    pos = 0
                    gmax = 0
                    for ky in range(KH):
                        iy = oy * sy - py + ky * dy
                        if iy < 0 or iy >= H:
                            continue
                        for kx in range(KW):
                            ix = ox * sx - px + kx * dx
                            if ix < 0 or ix >= W:
                                continue
                            gcost += tcost[iy, ix]
                            if pack == 1:
                                for b in range(nb):
                                    cb = cost[iy, ix, b]
                                    if cb > gmax:
                                        gmax = cb
                                    pos += 1
                                    if pos == L:
                                        gcycles += max(gmax, 1)
                                        pos = 0
                                        gmax = 0
                            else:
                                gcycles += tcyc[iy, ix]
                            # events and functional result of the processed activations
                            for c in range(cg):
                                a = x[((g * cg + c) * H + iy) * W + ix]
                                if a == 0.0 and act_mode != 2:
                                    continue  # skipped (not processed) or gated (no MAC)
                                mac += wcount[g, c, ky, kx]
                                if s < s_out:
                                    for mm in range(mg):
                                        m = g * mg + mm
                                        w = weight[m, c, ky, kx]
                                        if wgate == 1 and w == 0.0:
                                            continue
                                        o = (m * OH + oy) * OW + ox
                                        acc[o] += np.float64(a) * np.float64(w)
                    if pos > 0:
                        gcycles += max(gmax, 1)
            cycles += passes * gcycles
            busy += act_units * gcost
            tail += act_units * (gcycles * L - gcost)
            empty += (passes * units - act_units) * gcycles * L
            aread += passes * gcost
            wread += mg * gcost
        per_sample[s, 0] = cycles
        per_sample[s, 1] = busy
        per_sample[s, 2] = tail
        per_sample[s, 3] = mac
        per_sample[s, 4] = wread
        per_sample[s, 5] = aread
        per_sample[s, 6] = empty
        if s < s_out:
            for m in range(M):
                for o in range(OH * OW):
                    v = acc[m * OH * OW + o] + np.float64(bias[m])
                    outputs[s, m, o // OW, o % OW] = np.float32(v)
