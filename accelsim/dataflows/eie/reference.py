"""Slow, literal, cycle-by-cycle simulation of the EIE-style array, the oracle for accelsim.eie.

Nothing is shared with the fast path: the column entries are built by walking the dense weights
(padding emitted while walking a zero run), valid taps are found by scanning every output
position, FIFOs are deques, and time advances one cycle at a time. Only for small layers.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from accelsim.traces.schema import LayerRecord


def _dims(layer: LayerRecord):
    geo = layer.geometry
    if geo.kind == "linear":
        return geo.in_shape[0], 1, 1, geo.out_shape[0], 1, 1, (1, 1), (1, 1), (0, 0), (1, 1)
    (c, h, w), (m, oh, ow) = geo.in_shape, geo.out_shape
    return c, h, w, m, oh, ow, geo.kernel, geo.stride, geo.padding, geo.dilation


class _Layer:
    """The dense layer seen as EIE columns, with the reference's own cost function."""

    def __init__(self, layer: LayerRecord, num_pes: int, index_bits: int, weight_mode: str):
        geo = layer.geometry
        (self.c, self.h, self.w, self.m, self.oh, self.ow,
         self.kernel, self.stride, self.padding, self.dilation) = _dims(layer)
        self.weight = np.asarray(layer.weight, dtype=np.float32).reshape(
            self.m, self.c // geo.groups, self.kernel[0], self.kernel[1])
        self.groups = geo.groups
        self.num_pes = num_pes
        self.index_bits = index_bits
        self.weight_mode = weight_mode
        self._columns: dict = {}

    def column(self, p: int, c: int, ky: int, kx: int) -> list[tuple[int | None, float]]:
        """Entries (row, weight) stored by PE p for column (c, ky, kx); padding has row None."""
        key = (p, c, ky, kx)
        if key not in self._columns:
            cg, mg = self.c // self.groups, self.m // self.groups
            g = c // cg
            my_rows = [m for m in range(g * mg, (g + 1) * mg) if m % self.num_pes == p]
            entries: list[tuple[int | None, float]] = []
            zeros = 0
            for m in my_rows:  # ascending m = ascending local row m // N
                wv = float(self.weight[m, c - g * cg, ky, kx])
                if self.weight_mode != "skip":
                    entries.append((m, wv))
                elif wv == 0.0:
                    zeros += 1
                else:
                    while zeros >= 2 ** self.index_bits:  # z would not fit: pad
                        entries.append((None, 0.0))
                        zeros -= 2 ** self.index_bits
                    entries.append((m, wv))
                    zeros = 0
            self._columns[key] = entries
        return self._columns[key]

    def targets(self, y: int, x: int) -> list[tuple[int, int, int, int]]:
        """(ky, kx, oy, ox) for every tap that maps input (y, x) onto an output position."""
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel, self.stride, self.padding, self.dilation
        found = []
        for ky in range(kh):
            for kx in range(kw):
                for oy in range(self.oh):
                    for ox in range(self.ow):
                        if oy * sh - ph + ky * dh == y and ox * sw - pw + kx * dw == x:
                            found.append((ky, kx, oy, ox))
        return found

    def work(self, p: int, pos: int) -> list[tuple[int | None, float, int, int]]:
        """Entries PE p processes for activation pos: (row, weight, oy, ox)."""
        c, rest = divmod(pos, self.h * self.w)
        y, x = divmod(rest, self.w)
        out = []
        for ky, kx, oy, ox in self.targets(y, x):
            for row, wv in self.column(p, c, ky, kx):
                out.append((row, wv, oy, ox))
        return out


def simulate_eie_reference(
    layer: LayerRecord,
    *,
    num_pes: int,
    fifo_depth: int,
    index_bits: int,
    empty_slice_cycles: int,
    act_mode: str,
    weight_mode: str,
    queue: str = "hold",
    samples: int | None = None,
) -> dict:
    """Per-cycle simulation; returns {"cycles": [T per sample], counter: total, "outputs": array}.

    queue "pop": the PE removes the head from its FIFO when it starts it; "hold": the head stays
    in the FIFO (occupying a slot) until the PE has finished it.
    """
    lay = _Layer(layer, num_pes, index_bits, weight_mode)
    dense = layer.inputs.to_dense().reshape(layer.inputs.num_samples, -1)
    if samples is not None:
        dense = dense[:samples]
    n_in = dense.shape[1]
    n_out = int(np.prod(layer.geometry.out_shape))
    totals = {k: 0 for k in (
        "cycles", "busy_pe_cycles", "starve_pe_cycles", "tail_pe_cycles", "empty_pe_cycles",
        "stall_cycles", "padding_entries", "mac", "weight_read", "pointer_read", "act_read", "act_write",
        "fifo_push", "fifo_pop", "nzd", "pe_cycle")}
    cycles = []
    outputs = np.zeros((dense.shape[0], lay.m, lay.oh, lay.ow), dtype=np.float64)
    for s in range(dense.shape[0]):
        acts = dense[s]
        totals["nzd"] += n_in  # the detector examines every activation
        totals["act_read"] += n_in
        totals["act_write"] += n_out
        order = [j for j in range(n_in) if act_mode != "skip" or acts[j] != 0]
        fifos = [deque() for _ in range(num_pes)]
        busy_until = [0] * num_pes
        working = [False] * num_pes  # hold: the head is the entry in progress
        done = [0] * num_pes
        nxt = 0
        t = 0
        while True:
            # 1. every free PE takes available heads (a cost-0 entry frees it in the same cycle)
            for p in range(num_pes):
                while busy_until[p] <= t:
                    if working[p]:  # hold: the finished head leaves the FIFO now
                        fifos[p].popleft()
                        totals["fifo_pop"] += 1
                        working[p] = False
                    if not (fifos[p] and fifos[p][0][1] < t):
                        break
                    if queue == "hold":
                        pos = fifos[p][0][0]
                        working[p] = True
                    else:
                        pos, _ = fifos[p].popleft()
                        totals["fifo_pop"] += 1
                    totals["pointer_read"] += 1
                    entries = lay.work(p, pos)
                    a = float(acts[pos])
                    for row, wv, oy, ox in entries:
                        totals["weight_read"] += 1
                        if row is None:
                            totals["padding_entries"] += 1
                            continue
                        outputs[s, row, oy, ox] += wv * a
                        if weight_mode == "gate" and wv == 0.0:
                            continue
                        if act_mode == "gate" and a == 0.0:
                            continue
                        totals["mac"] += 1
                    cost = len(entries) if entries else empty_slice_cycles
                    busy_until[p] = t + cost
                    done[p] += 1
            # 2. the broadcast unit pushes the next activation if no FIFO is full
            if nxt < len(order):
                if all(len(f) < fifo_depth for f in fifos):
                    for f in fifos:
                        f.append((order[nxt], t))
                        totals["fifo_push"] += 1
                    nxt += 1
                else:
                    totals["stall_cycles"] += 1
            if nxt == len(order) and all(
                done[p] == len(order) and busy_until[p] <= t for p in range(num_pes)
            ):
                break
            # 3. where each PE spent this cycle
            for p in range(num_pes):
                if busy_until[p] > t:
                    totals["busy_pe_cycles"] += 1
                elif done[p] < len(order):
                    totals["starve_pe_cycles"] += 1
                else:
                    totals["tail_pe_cycles"] += 1
            t += 1
        cycles.append(t)
        totals["cycles"] += t
        totals["pe_cycle"] += num_pes * t
    bias = np.zeros(lay.m) if layer.bias is None else np.asarray(layer.bias, dtype=np.float64)
    outputs += bias[None, :, None, None]
    totals["outputs"] = outputs.reshape((dense.shape[0], *layer.geometry.out_shape)).astype(np.float32)
    totals["cycles_per_sample"] = cycles
    return totals
