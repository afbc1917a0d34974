"""Slow, per-cycle reference of the Cnvlutin-style array, to prove accelsim.cnvlutin's kernel.

Explicit state, no shortcuts: per window the bricks are dealt into per-lane queues; every cycle
each lane of each unit takes one entry of its current brick and multiplies it with the unit's
filters of the pass; when no lane has entries left (after at least one cycle) every lane pops its
next brick. Works from the dense activation and weight arrays. Only for small layers (tests).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from accelsim.dataflows.cnvlutin.kernel import check_config, conv_shape
from accelsim.result import DataflowResult
from accelsim.traces.schema import LayerRecord


def simulate_cnvlutin_reference(
    layer: LayerRecord,
    *,
    units: int,
    lanes: int,
    filters_per_unit: int,
    brick_size: int,
    act_mode: str,
    weight_mode: str,
    functional: bool = True,
    samples: int | None = None,
) -> DataflowResult:
    """Same contract as accelsim.cnvlutin.simulate_cnvlutin, simulated cycle by cycle."""
    check_config(units, lanes, filters_per_unit, brick_size, act_mode, weight_mode)
    cs = conv_shape(layer)
    x_all = layer.inputs.to_dense().reshape(layer.inputs.num_samples, cs.C, cs.H, cs.W)
    if samples is not None:
        x_all = x_all[:samples]
    n_samples = x_all.shape[0]
    s_out = 0
    if functional and layer.outputs is not None:
        s_out = min(layer.outputs.shape[0], n_samples)
    weight = np.asarray(layer.weight, np.float32).reshape(cs.M, cs.cg, cs.KH, cs.KW)
    bias = np.zeros(cs.M) if layer.bias is None else np.asarray(layer.bias, np.float64)
    f_pass = units * filters_per_unit
    names = ("cycles", "busy_pe_cycles", "tail_pe_cycles", "mac", "weight_read", "act_read")
    totals = dict.fromkeys(names, 0)
    cycles_per_sample = np.zeros(n_samples, np.int64)
    outputs = np.zeros((s_out, cs.M, cs.OH, cs.OW), np.float64)

    for s in range(n_samples):
        x = x_all[s]
        st = dict.fromkeys(names, 0)
        for g in range(cs.groups):
            for p in range(-(-cs.mg // f_pass)):
                # filters of each unit in this pass (the last pass may leave units short)
                unit_filters = []
                for u in range(units):
                    lo = p * f_pass + u * filters_per_unit
                    hi = min(lo + filters_per_unit, cs.mg)
                    unit_filters.append([g * cs.mg + m for m in range(lo, hi)])
                for oy in range(cs.OH):
                    for ox in range(cs.OW):
                        bricks = _window_bricks(x, cs, g, oy, ox, brick_size, act_mode)
                        queues = [deque() for _ in range(lanes)]
                        for i, brick in enumerate(bricks):
                            queues[i % lanes].append(brick)
                        while any(queues):
                            current = [deque(q.popleft()) if q else deque() for q in queues]
                            while True:  # one iteration = one cycle; a group takes >= 1 cycle
                                st["cycles"] += 1
                                for lane in range(lanes):
                                    if not current[lane]:
                                        st["tail_pe_cycles"] += units
                                        continue
                                    c, ky, kx, iy, ix, a = current[lane].popleft()
                                    st["act_read"] += 1
                                    st["busy_pe_cycles"] += units
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
        for k in names:
            totals[k] += st[k]

    n_out = cs.M * cs.OH * cs.OW
    counters = {
        "cycles": totals["cycles"],
        "busy_pe_cycles": totals["busy_pe_cycles"],
        "starve_pe_cycles": 0,
        "tail_pe_cycles": totals["tail_pe_cycles"],
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


def _window_bricks(x, cs, g, oy, ox, brick_size, act_mode):
    """The window's bricks in issue order; a brick is the list of entries a lane will process."""
    bricks = []
    for ky in range(cs.KH):
        iy = oy * cs.sy - cs.py + ky * cs.dy
        if not 0 <= iy < cs.H:
            continue
        for kx in range(cs.KW):
            ix = ox * cs.sx - cs.px + kx * cs.dx
            if not 0 <= ix < cs.W:
                continue
            for c0 in range(0, cs.cg, brick_size):
                brick = []
                for c in range(c0, min(c0 + brick_size, cs.cg)):
                    a = x[g * cs.cg + c, iy, ix]
                    if act_mode == "skip" and a == 0:
                        continue  # zero-free neuron array format: zeros are not stored
                    brick.append((c, ky, kx, iy, ix, a))
                bricks.append(brick)
    return bricks
