"""Slow, per-cycle reference of the SCNN-style array, to prove the kernel (kernel.py).

Explicit state, no shortcuts, nothing shared with the fast path (its own geometry, tiling,
accumulator sizing and checks). Per output-channel group every PE gets a queue of steps (an
activation vector and a weight vector); each cycle a PE with no products waiting issues its next
step (F x I multiplies), sends the landing products into per-bank queues (bank
(k + F (ox + I oy)) mod A), and every bank takes
one product and adds it into the partial sum; the group ends when no PE has work left. Works
from dense arrays. Only for small layers (tests).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from accelsim.errors import AccelsimError
from accelsim.result import DataflowResult
from accelsim.traces.schema import LayerRecord

_NAMES = ("cycles", "busy", "tail", "empty", "conflict", "frag", "discard", "mac", "land", "pop",
          "aread", "wread", "push", "halo")


def _layer(layer: LayerRecord):
    """(x (S, C, H, W), weights (M, C/groups, KH, KW), dims) with a linear layer as a 1x1
    convolution over a 1x1 plane."""
    g = layer.geometry
    x = layer.inputs.to_dense()
    if g.kind == "linear":
        (c,), (m,) = g.in_shape, g.out_shape
        d = dict(c=c, m=m, h=1, w=1, oh=1, ow=1, kh=1, kw=1, sy=1, sx=1, py=0, px=0, dy=1, dx=1,
                 groups=1)
    elif g.kind == "conv2d":
        (c, h, w), (m, oh, ow) = g.in_shape, g.out_shape
        d = dict(c=c, m=m, h=h, w=w, oh=oh, ow=ow, kh=g.kernel[0], kw=g.kernel[1],
                 sy=g.stride[0], sx=g.stride[1], py=g.padding[0], px=g.padding[1],
                 dy=g.dilation[0], dx=g.dilation[1], groups=g.groups)
    else:
        raise AccelsimError(f"layer {g.name!r}: the reference runs linear and conv2d layers only")
    x = x.reshape(-1, d["c"], d["h"], d["w"])
    wt = np.asarray(layer.weight, np.float32).reshape(d["m"], d["c"] // d["groups"], d["kh"],
                                                        d["kw"])
    return x, wt, d


def _pieces(n, parts):
    """Cut range(n) into `parts` consecutive pieces of ceil(n / parts) (the last ones may be
    short or empty)."""
    size = -(-n // parts)
    return [[i for i in range(n) if i // size == part] for part in range(parts)]


def _window(tile, n_out, k, s, p, d):
    """Outputs o whose position o*s lies between the lowest and highest reach of the tile's
    inputs (first input - padding ... last input + padding, shifted by the kernel's extent)."""
    if not tile:
        return []
    return [o for o in range(n_out) if tile[0] + p - (k - 1) * d <= o * s <= tile[-1] + p]


def _span(a, b):
    both = sorted(set(a) | set(b))
    return both[-1] - both[0] + 1 if both else 0


def simulate_scnn_reference(
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
    """Same contract as kernel.simulate_scnn, simulated cycle by cycle."""
    if act_mode not in ("skip", "gate", "none") or weight_mode not in ("skip", "gate", "none"):
        raise AccelsimError(f"unsupported modes: activations {act_mode!r}, weights {weight_mode!r}")
    x_all, wt, d = _layer(layer)
    if samples is not None:
        x_all = x_all[:samples]
    n_samples = x_all.shape[0]
    s_out = min(layer.outputs.shape[0], n_samples) if functional and layer.outputs is not None else 0
    groups = d["groups"]
    cg, mg = d["c"] // groups, d["m"] // groups
    f_len, i_len = weight_vector, act_vector

    # Tiles, windows, owned outputs (the output plane cut the same way) and accumulator spans.
    row_tiles, col_tiles = _pieces(d["h"], pe_rows), _pieces(d["w"], pe_cols)
    row_own, col_own = _pieces(d["oh"], pe_rows), _pieces(d["ow"], pe_cols)
    row_win = [_window(t, d["oh"], d["kh"], d["sy"], d["py"], d["dy"]) for t in row_tiles]
    col_win = [_window(t, d["ow"], d["kw"], d["sx"], d["px"], d["dx"]) for t in col_tiles]
    need = (max(_span(w, o) for w, o in zip(row_win, row_own))
            * max(_span(w, o) for w, o in zip(col_win, col_own)))
    if need > banks * bank_entries:
        raise AccelsimError(f"layer {layer.geometry.name!r}: accumulator too small for a tile")
    per_group = min(mg, banks * bank_entries // max(need, 1)) if kc == 0 else min(kc, mg)
    per_group = max(per_group, 1)
    if per_group * need > banks * bank_entries:
        raise AccelsimError(f"layer {layer.geometry.name!r}: scnn.kc too large for the accumulator")
    pes = [(r, c) for r in range(pe_rows) for c in range(pe_cols)]
    halo_entries = 0  # per output channel: window positions a PE does not own
    for r, c in pes:
        owned = {(y, xx) for y in row_own[r] for xx in col_own[c]}
        halo_entries += sum((y, xx) not in owned for y in row_win[r] for xx in col_win[c])

    totals = dict.fromkeys(_NAMES, 0)
    cycles_per_sample = np.zeros(n_samples, np.int64)
    outputs = np.zeros((s_out, d["m"], d["oh"], d["ow"]), np.float64)
    for s in range(n_samples):
        st = dict.fromkeys(_NAMES, 0)
        for g in range(groups):
            for k_lo in range(0, mg, per_group):
                ks = range(g * mg + k_lo, g * mg + min(k_lo + per_group, mg))
                st["halo"] += halo_entries * len(ks)
                queues = {}
                for r, c in pes:
                    queues[(r, c)] = deque()
                    tiled = bool(row_tiles[r]) and bool(col_tiles[c])
                    for ch in range(cg):
                        weights = [(m, ky, kx, wt[m, ch, ky, kx])
                                   for ky in range(d["kh"]) for kx in range(d["kw"]) for m in ks
                                   if weight_mode != "skip" or wt[m, ch, ky, kx] != 0]
                        if r == 0 and c == 0:
                            st["wread"] += len(weights)  # read once, broadcast to the PEs
                        if tiled:
                            st["push"] += len(weights)
                        acts = [(iy, ix, x_all[s, g * cg + ch, iy, ix])
                                for iy in row_tiles[r] for ix in col_tiles[c]
                                if act_mode != "skip" or x_all[s, g * cg + ch, iy, ix] != 0]
                        if not acts or not weights:
                            continue
                        st["aread"] += len(acts)
                        for a0 in range(0, len(acts), i_len):
                            for w0 in range(0, len(weights), f_len):
                                queues[(r, c)].append((acts[a0:a0 + i_len],
                                                       weights[w0:w0 + f_len]))
                _run_group(queues, row_tiles, col_tiles, d, banks, f_len, i_len, act_mode,
                           weight_mode, st, outputs[s] if s < s_out else None)
        cycles_per_sample[s] = st["cycles"]
        for key in _NAMES:
            totals[key] += st[key]

    n_out = d["m"] * d["oh"] * d["ow"] * n_samples
    counters = {
        "cycles": totals["cycles"],
        "busy_pe_cycles": totals["busy"],
        "starve_pe_cycles": 0,
        "tail_pe_cycles": totals["tail"],
        "empty_pe_cycles": totals["empty"],
        "stall_cycles": 0,
        "padding_entries": 0,
        "mac": totals["mac"],
        "weight_read": totals["wread"],
        "pointer_read": 0,
        "act_read": totals["aread"],
        "act_write": n_out,
        "fifo_push": totals["push"],
        "fifo_pop": totals["pop"],
        "nzd": n_out,
        "acc_update": totals["land"] + totals["halo"],
        "pe_cycle": totals["cycles"] * len(pes),
        "fragmentation_slots": totals["frag"],
        "imbalance_pe_cycles": totals["tail"] + totals["empty"],
        "bank_conflict_cycles": totals["conflict"],
        "discarded_products": totals["discard"],
        "halo_psums": totals["halo"],
    }
    out = None
    if s_out:
        bias = np.zeros(d["m"]) if layer.bias is None else np.asarray(layer.bias, np.float64)
        out = (outputs + bias[None, :, None, None]).astype(np.float32)
        out = out.reshape((s_out, *layer.geometry.out_shape))
    return DataflowResult(cycles=cycles_per_sample, counters=counters, num_units=len(pes),
                          outputs=out)


def _run_group(queues, row_tiles, col_tiles, d, banks, f_len, i_len, act_mode, weight_mode, st,
               out):
    """One output-channel group, cycle by cycle, until every PE has issued every step and every
    bank has taken every product (the barrier)."""
    waiting = {pe: [deque() for _ in range(banks)] for pe in queues}
    while any(queues.values()) or any(any(b) for b in waiting.values()):
        st["cycles"] += 1
        for pe, steps in queues.items():
            bank_q = waiting[pe]
            if any(bank_q):  # still draining the last step's products: a bank conflict
                st["busy"] += 1
                st["conflict"] += 1
            elif steps:
                acts, weights = steps.popleft()
                st["busy"] += 1
                st["pop"] += len(weights)
                st["frag"] += f_len * i_len - len(acts) * len(weights)
                for iy, ix, a in acts:
                    for m, ky, kx, w in weights:
                        gated = (act_mode == "gate" and a == 0) or (weight_mode == "gate" and w == 0)
                        st["mac"] += not gated
                        oy, ry = divmod(iy + d["py"] - ky * d["dy"], d["sy"])
                        ox, rx = divmod(ix + d["px"] - kx * d["dx"], d["sx"])
                        if ry or rx or not (0 <= oy < d["oh"] and 0 <= ox < d["ow"]):
                            st["discard"] += 1
                            continue
                        st["land"] += 1
                        bank_q[(m + f_len * (ox + i_len * oy)) % banks].append(
                            (m, oy, ox, float(a) * float(w)))
            elif row_tiles[pe[0]] and col_tiles[pe[1]]:
                st["tail"] += 1  # done, waiting at the barrier for the slowest PE
            else:
                st["empty"] += 1  # no tile: idle the whole group
            for q in bank_q:  # every bank adds one product this cycle
                if q:
                    m, oy, ox, v = q.popleft()
                    if out is not None:
                        out[m, oy, ox] += v
