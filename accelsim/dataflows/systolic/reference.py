"""Per-cycle systolic array: every operand moves one PE per cycle through explicit registers.

The oracle for kernel.py. Each fold is simulated register by register: skewed edge feeders (the
rows and columns a partial fold leaves unused are fed bubbles, as SCALE-Sim pads them), MACs
where two tokens of the same step meet, partial sums moving down (ws/is) or accumulating in place
(os). A fold lasts until the last token has left the last PE; the outputs are assembled from the
PEs' sums, so the reference also proves each dataflow computes the layer. Slow: small layers only.
"""

from __future__ import annotations

import numpy as np

from accelsim.dataflows.systolic.kernel import check_config, energy_macs, gemm_outputs
from accelsim.dataflows.systolic.mapping import (
    check_nm_weights,
    compressed_k,
    gemm_view,
    reduction_order,
)
from accelsim.result import DataflowResult

PAD = object()  # a bubble: occupies a register, carries nothing


def _compress(w: np.ndarray, nm):
    """(K, F) weights -> (Kc, F) entries (value, block, index in block); dense: index 0."""
    k, f = w.shape
    if nm is None:
        return [[(w[j, c], j, 0) for c in range(f)] for j in range(k)]
    n, m = nm
    rows = [[None] * f for _ in range(k // m * n)]
    for c in range(f):
        for b in range(k // m):
            kept = [i for i in range(m) if w[b * m + i, c] != 0][:n]
            kept += [0] * (n - len(kept))  # fewer non-zeros than N: zero entries pad the block
            for slot, i in enumerate(kept):
                value = w[b * m + i, c] if w[b * m + i, c] != 0 else 0.0
                rows[b * n + slot][c] = (value, b, i)
    return rows


def _product(act_block, entry) -> float:
    value, _, index = entry
    return float(act_block[index]) * float(value)


class _Counts:
    def __init__(self):
        self.cycles = self.ifmap = self.filter = self.ofmap = self.slots = 0


def _os_fold(left, top, R, C, out, counts):
    """left[r][k]: act block of pixel row r at step k (or PAD); top[c][k]: weight entry of column
    c at step k (or PAD). Row r's token k enters at cycle k + r, column c's at cycle k + c."""
    T = len(left[0])
    h = [[None] * C for _ in range(R)]
    v = [[None] * C for _ in range(R)]
    cycle, last = 0, -1
    while True:
        nh = [[None] * C for _ in range(R)]
        nv = [[None] * C for _ in range(R)]
        for r in range(R):
            k = cycle - r
            nh[r][0] = (k, left[r][k]) if 0 <= k < T else None
            for c in range(1, C):
                nh[r][c] = h[r][c - 1]
        for c in range(C):
            k = cycle - c
            nv[0][c] = (k, top[c][k]) if 0 <= k < T else None
            for r in range(1, R):
                nv[r][c] = v[r - 1][c]
        h, v = nh, nv
        busy = False
        for r in range(R):
            for c in range(C):
                a, b = h[r][c], v[r][c]
                if a is None and b is None:
                    continue
                busy = True
                assert a is not None and b is not None and a[0] == b[0], "skew misaligned"
                if a[1] is not PAD and b[1] is not PAD:
                    out[r][c] += _product(a[1], b[1])
                    counts.slots += 1
        if busy:
            last = cycle
        elif cycle >= T + R + C:
            break
        cycle += 1
    counts.cycles += last + 1


def _stationary_fold(stat, stream, R, C, emit, counts):
    """stat[r][c]: operand held by PE(r, c) (or PAD), loaded in R cycles from the top;
    stream[t][r]: operand entering row r for step t at cycle R + t + r (or PAD). Partial sums move
    down; the sum of column c for step t leaves PE(R-1, c) and goes to emit(t, c, value)."""
    T = len(stream)
    held = [[None] * C for _ in range(R)]
    for cycle in range(R):  # preload: shift down, the last row first
        held = [[stat[R - 1 - cycle][c] for c in range(C)]] + held[:-1]
    assert all(held[r][c] is stat[r][c] for r in range(R) for c in range(C))
    h = [[None] * C for _ in range(R)]
    s = [[None] * C for _ in range(R)]  # partial sum leaving PE(r, c) this cycle: (t, value)
    cycle, last = R, R - 1
    while True:
        nh = [[None] * C for _ in range(R)]
        for r in range(R):
            t = cycle - R - r
            nh[r][0] = (t, stream[t][r]) if 0 <= t < T else None
            for c in range(1, C):
                nh[r][c] = h[r][c - 1]
        h = h_prev = nh
        ns = [[None] * C for _ in range(R)]
        busy = False
        for r in range(R):
            for c in range(C):
                a = h_prev[r][c]
                if a is None:
                    continue
                busy = True
                above = s[r - 1][c] if r else (a[0], 0.0)
                assert above is not None and above[0] == a[0], "partial sum misaligned"
                value = above[1]
                if a[1] is not PAD and held[r][c] is not PAD:
                    value += _pair(a[1], held[r][c])
                    counts.slots += 1
                ns[r][c] = (a[0], value)
                if r == R - 1:
                    emit(a[0], c, value)
        s = ns
        if busy:
            last = cycle
        elif cycle >= 2 * R + C + T:
            break
        cycle += 1
    counts.cycles += last + 1


def _pair(x, y) -> float:
    """Product of an activation block and a weight entry, whichever order they come in."""
    return _product(x, y) if isinstance(y, tuple) else _product(y, x)


def _run_group(I, W, dataflow, R, C, nm, counts) -> np.ndarray:
    """I: (P, K) im2col activations, W: (K, F) weights -> (P, F) outputs, counting as it goes."""
    P, K = I.shape
    F = W.shape[1]
    n, m = nm if nm is not None else (1, 1)
    entries = _compress(W, nm)  # (Kc, F)
    kc = len(entries)

    def block(p, j):
        b = j // n
        return I[p, b * m:(b + 1) * m]

    out = np.zeros((P, F))
    if dataflow == "os":
        for f0 in range(0, F, C):
            for p0 in range(0, P, R):
                left = [[block(p0 + r, j) if p0 + r < P else PAD for j in range(kc)] for r in range(R)]
                top = [[entries[j][f0 + c] if f0 + c < F else PAD for j in range(kc)] for c in range(C)]
                counts.ifmap += sum(min(R, P - p0) for _ in range(kc // n)) * m
                counts.filter += min(C, F - f0) * kc
                acc = [[0.0] * C for _ in range(R)]
                _os_fold(left, top, R, C, acc, counts)
                for r in range(min(R, P - p0)):
                    for c in range(min(C, F - f0)):
                        out[p0 + r, f0 + c] = acc[r][c]
                        counts.ofmap += 1
        return out

    def emit_to(t_index, c_index, rows_first, cols_first):
        def emit(t, c, value):
            if dataflow == "ws":
                p, f = t, cols_first + c
                ok = f < F
            else:
                p, f = cols_first + c, t
                ok = p < P
            if ok:
                out[p, f] += value
                counts.ofmap += 1
        return emit

    sc = F if dataflow == "ws" else P
    for c0 in range(0, sc, C):
        for j0 in range(0, kc, R):
            rows = [j0 + r if j0 + r < kc else None for r in range(R)]
            blocks = {j // n for j in rows if j is not None}
            if dataflow == "ws":
                stat = [[entries[j][c0 + c] if j is not None and c0 + c < F else PAD
                         for c in range(C)] for j in rows]
                stream = [[block(t, j) if j is not None else PAD for j in rows] for t in range(P)]
                counts.filter += sum(1 for j in rows if j is not None) * min(C, F - c0)
                counts.ifmap += len(blocks) * m * P
            else:
                stat = [[block(c0 + c, j) if j is not None and c0 + c < P else PAD
                         for c in range(C)] for j in rows]
                stream = [[entries[j][t] if j is not None else PAD for j in rows] for t in range(F)]
                counts.ifmap += len(blocks) * m * min(C, P - c0)
                counts.filter += sum(1 for j in rows if j is not None) * F
            _stationary_fold(stat, stream, R, C, emit_to(None, None, j0, c0), counts)
    return out


def im2col(layer, sample_dense: np.ndarray) -> np.ndarray:
    """(groups, P, K) activation operand matrices of one sample, K in the weights' order."""
    g = layer.geometry
    view = gemm_view(layer)
    if g.kind == "linear":
        return sample_dense.reshape(1, 1, view.K)
    c, h, w = g.in_shape
    (kh, kw), (sy, sx), (py, px), (dy, dx) = g.kernel, g.stride, g.padding, g.dilation
    _, oh, ow = g.out_shape
    xp = np.zeros((c, h + 2 * py, w + 2 * px))
    xp[:, py:py + h, px:px + w] = sample_dense
    rows = np.empty((view.groups, oh * ow, view.K))
    for oy in range(oh):
        for ox in range(ow):
            win = xp[:, oy * sy:oy * sy + dy * (kh - 1) + 1:dy, ox * sx:ox * sx + dx * (kw - 1) + 1:dx]
            rows[:, oy * ow + ox] = win.reshape(view.groups, view.K)
    return rows


def simulate_systolic_reference(layer, *, rows: int, cols: int, dataflow: str, ifmap_sram_kb: int,
                                filter_sram_kb: int, ofmap_sram_kb: int, bandwidth: float,
                                word_bytes: int, nm: str, act_mode: str, weight_mode: str,
                                functional: bool = True, samples: int | None = None) -> DataflowResult:
    """Cycles, SRAM accesses and outputs by moving every operand through the array."""
    pattern = check_config(rows, cols, dataflow, act_mode, weight_mode, nm)
    if pattern is not None:
        check_nm_weights(layer, pattern)
    view = gemm_view(layer)
    s_total = layer.inputs.num_samples if samples is None else min(int(samples), layer.inputs.num_samples)
    dense = layer.inputs.to_dense()[:s_total].astype(np.float64)
    weights = reduction_order(layer.weight, layer).astype(np.float64)
    g = layer.geometry
    outputs = np.zeros((s_total, *g.out_shape), dtype=np.float64)
    per_sample = []
    totals = _Counts()
    for s in range(s_total):
        counts = _Counts()
        acts = im2col(layer, dense[s])
        for grp in range(view.groups):
            o = _run_group(acts[grp], weights[grp], dataflow, rows, cols, pattern, counts)
            if g.kind == "linear":
                outputs[s] = o[0]
            else:
                oh, ow = g.out_shape[1:]
                outputs[s, grp * view.F:(grp + 1) * view.F] = o.T.reshape(view.F, oh, ow)
        per_sample.append(counts.cycles)
        for key in ("cycles", "ifmap", "filter", "ofmap", "slots"):
            setattr(totals, key, getattr(totals, key) + getattr(counts, key))
    if layer.bias is not None:
        bias = np.asarray(layer.bias, np.float64)
        outputs += bias if g.kind == "linear" else bias[:, None, None]
    assert totals.slots == s_total * view.groups * view.P * view.F * compressed_k(view, pattern)
    macs = energy_macs(layer, act_mode == "gate", weight_mode != "none", totals.slots // max(s_total, 1),
                       s_total)
    units = rows * cols
    counters = {
        "cycles": int(totals.cycles),
        "busy_pe_cycles": int(totals.slots),
        "mac": int(macs.sum()),
        "weight_read": int(totals.filter),
        "act_read": int(totals.ifmap),
        "act_write": int(totals.ofmap),
        "pe_cycle": units * int(totals.cycles),
    }
    check = gemm_outputs(layer, s_total) if functional else None
    if check is not None:
        np.testing.assert_allclose(outputs, check, rtol=1e-5, atol=1e-4)
    return DataflowResult(cycles=np.asarray(per_sample, dtype=np.int64), counters=counters,
                          num_units=units, outputs=outputs.astype(np.float32))
