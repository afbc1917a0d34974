"""Slow, per-cycle reference of the Cnvlutin-style array, to prove the kernel (kernel.py).

Explicit state, no shortcuts, nothing shared with the fast path (its own geometry and its own
configuration checks): per window the bricks are dealt into per-lane queues (a lane with no
brick in a group gets an empty one); every cycle each lane of each unit takes one entry of its
current brick and multiplies it with the unit's filters of the pass; when no lane has entries
left (after at least one cycle) every lane pops its next brick. Works from the dense activation
and weight arrays. Only for small layers (tests).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from accelsim.errors import AccelsimError
from accelsim.result import DataflowResult
from accelsim.traces.schema import LayerRecord

_NAMES = ("cycles", "busy_pe_cycles", "tail_pe_cycles", "empty_pe_cycles", "mac", "weight_read",
          "act_read")


def _geometry(layer: LayerRecord) -> dict:
    """Channels, sizes, kernel, stride, padding, dilation and groups, each as (y, x) pairs where
    they have two axes; a linear layer is a 1x1 convolution of its features."""
    g = layer.geometry
    if g.kind == "linear":
        (c,), (m,) = g.in_shape, g.out_shape
        return dict(c=c, m=m, in_y=1, in_x=1, out_y=1, out_x=1, k_y=1, k_x=1, s_y=1, s_x=1,
                    p_y=0, p_x=0, d_y=1, d_x=1, groups=1)
    if g.kind != "conv2d":
        raise AccelsimError(f"layer {g.name!r}: the reference runs linear and conv2d layers only")
    (c, in_y, in_x), (m, out_y, out_x) = g.in_shape, g.out_shape
    (k_y, k_x), (s_y, s_x) = g.kernel, g.stride
    (p_y, p_x), (d_y, d_x) = g.padding, g.dilation
    if c % g.groups or m % g.groups:
        raise AccelsimError(f"layer {g.name!r}: groups must divide the channels")
    for axis, n_in, n_out, k, s, p, d in (("y", in_y, out_y, k_y, s_y, p_y, d_y),
                                          ("x", in_x, out_x, k_x, s_x, p_x, d_x)):
        # the last output position's window must start inside the padded input, the next must not
        last = (n_out - 1) * s + (k - 1) * d
        if last > n_in + 2 * p - 1 or last + s <= n_in + 2 * p - 1:
            raise AccelsimError(f"layer {g.name!r}: output size along {axis} does not match")
    return dict(c=c, m=m, in_y=in_y, in_x=in_x, out_y=out_y, out_x=out_x, k_y=k_y, k_x=k_x,
                s_y=s_y, s_x=s_x, p_y=p_y, p_x=p_x, d_y=d_y, d_x=d_x, groups=g.groups)


def _check(units, lanes, filters_per_unit, brick_size, act_mode, weight_mode, pack_taps) -> None:
    for name, v in (("units", units), ("lanes", lanes), ("filters_per_unit", filters_per_unit),
                    ("brick_size", brick_size)):
        if type(v) is not int or v < 1:
            raise AccelsimError(f"cnvlutin.{name} must be an integer >= 1, got {v!r}")
    if act_mode not in ("skip", "gate", "none") or weight_mode not in ("gate", "none"):
        raise AccelsimError(f"unsupported modes: activations {act_mode!r}, weights {weight_mode!r}")
    if type(pack_taps) is not bool:
        raise AccelsimError(f"cnvlutin.pack_taps must be true or false, got {pack_taps!r}")


def simulate_cnvlutin_reference(
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
    """Same contract as kernel.simulate_cnvlutin, simulated cycle by cycle."""
    _check(units, lanes, filters_per_unit, brick_size, act_mode, weight_mode, pack_taps)
    geo = _geometry(layer)
    c_in, m_out, groups = geo["c"], geo["m"], geo["groups"]
    cg, mg = c_in // groups, m_out // groups
    x_all = layer.inputs.to_dense().reshape(-1, c_in, geo["in_y"], geo["in_x"])
    if samples is not None:
        x_all = x_all[:samples]
    n_samples = x_all.shape[0]
    s_out = 0
    if functional and layer.outputs is not None:
        s_out = min(layer.outputs.shape[0], n_samples)
    weight = np.asarray(layer.weight, np.float32).reshape(m_out, cg, geo["k_y"], geo["k_x"])
    bias = np.zeros(m_out) if layer.bias is None else np.asarray(layer.bias, np.float64)
    f_pass = units * filters_per_unit
    totals = dict.fromkeys(_NAMES, 0)
    cycles_per_sample = np.zeros(n_samples, np.int64)
    outputs = np.zeros((s_out, m_out, geo["out_y"], geo["out_x"]), np.float64)

    for s in range(n_samples):
        x = x_all[s]
        st = dict.fromkeys(_NAMES, 0)
        for g in range(groups):
            for p in range(-(-mg // f_pass)):
                # filters of each unit in this pass (the last pass may leave units short or empty)
                unit_filters = []
                for u in range(units):
                    lo = p * f_pass + u * filters_per_unit
                    hi = min(lo + filters_per_unit, mg)
                    unit_filters.append([g * mg + m for m in range(lo, hi)])
                for oy in range(geo["out_y"]):
                    for ox in range(geo["out_x"]):
                        taps = _window_taps(x, geo, g, cg, oy, ox, act_mode)
                        queues = _deal(taps, lanes, brick_size, pack_taps)
                        while any(queues):
                            current = [deque(q.popleft()) if q else deque() for q in queues]
                            while True:  # one iteration = one cycle; a group takes >= 1 cycle
                                st["cycles"] += 1
                                for lane in range(lanes):
                                    entry = current[lane].popleft() if current[lane] else None
                                    if entry is not None:
                                        st["act_read"] += 1
                                    for filters in unit_filters:
                                        if not filters:
                                            st["empty_pe_cycles"] += 1
                                        elif entry is None:
                                            st["tail_pe_cycles"] += 1
                                        else:
                                            st["busy_pe_cycles"] += 1
                                    if entry is None:
                                        continue
                                    c, ky, kx, a = entry
                                    for filters in unit_filters:
                                        for m in filters:
                                            w = weight[m, c, ky, kx]
                                            st["weight_read"] += 1
                                            if weight_mode == "gate" and w == 0:
                                                continue
                                            if act_mode == "gate" and a == 0:
                                                continue
                                            st["mac"] += 1
                                            if s < s_out:
                                                outputs[s, m, oy, ox] += float(a) * float(w)
                                if not any(current):
                                    break
        cycles_per_sample[s] = st["cycles"]
        for k in _NAMES:
            totals[k] += st[k]

    n_out = m_out * geo["out_y"] * geo["out_x"]
    counters = {
        "cycles": totals["cycles"],
        "busy_pe_cycles": totals["busy_pe_cycles"],
        "starve_pe_cycles": 0,
        "tail_pe_cycles": totals["tail_pe_cycles"],
        "empty_pe_cycles": totals["empty_pe_cycles"],
        "stall_cycles": 0,
        "padding_entries": 0,
        "mac": totals["mac"],
        "weight_read": totals["weight_read"],
        "act_read": totals["act_read"],
        "act_write": n_out * n_samples,
        "nzd": n_out * n_samples,
        "pe_cycle": totals["cycles"] * units * lanes,
    }
    out = None
    if s_out:
        out = (outputs + bias[None, :, None, None]).astype(np.float32)
        out = out.reshape((s_out, *layer.geometry.out_shape))
    return DataflowResult(cycles=cycles_per_sample, counters=counters, num_units=units * lanes,
                          outputs=out)


def _window_taps(x, geo, g, cg, oy, ox, act_mode):
    """The window's valid taps in row-major order, each the list of its cg channel entries
    (c, ky, kx, a); under act_mode "skip" a zero entry is None (not stored, not processed)."""
    taps = []
    for ky in range(geo["k_y"]):
        iy = oy * geo["s_y"] - geo["p_y"] + ky * geo["d_y"]
        if not 0 <= iy < geo["in_y"]:
            continue
        for kx in range(geo["k_x"]):
            ix = ox * geo["s_x"] - geo["p_x"] + kx * geo["d_x"]
            if not 0 <= ix < geo["in_x"]:
                continue
            tap = []
            for c in range(cg):
                a = x[g * cg + c, iy, ix]
                tap.append(None if act_mode == "skip" and a == 0 else (c, ky, kx, a))
            taps.append(tap)
    return taps


def _bricks(entries, brick_size):
    """Cut a run of channel entries into bricks, dropping the skipped (None) entries."""
    return [[e for e in entries[i:i + brick_size] if e is not None]
            for i in range(0, len(entries), brick_size)]


def _deal(taps, lanes, brick_size, pack_taps):
    """Per-lane brick queues of one window, aligned so that the i-th brick of every queue forms
    brick group i (empty bricks fill the lanes a group leaves without work)."""
    queues = [deque() for _ in range(lanes)]
    if pack_taps:  # the window's bricks in order, brick i to lane i mod L
        bricks = [b for tap in taps for b in _bricks(tap, brick_size)]
        bricks += [[]] * (-len(bricks) % lanes)
        for i, brick in enumerate(bricks):
            queues[i % lanes].append(brick)
        return queues
    for tap in taps:  # lane l gets channel slice l of each tap; groups never mix taps
        width = -(-len(tap) // lanes)
        per_lane = [_bricks(tap[lane * width:(lane + 1) * width], brick_size)
                    for lane in range(lanes)]
        depth = max(len(b) for b in per_lane)
        for lane in range(lanes):
            queues[lane].extend(per_lane[lane] + [[]] * (depth - len(per_lane[lane])))
    return queues
