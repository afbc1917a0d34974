"""Closed-form systolic array: cycles, SRAM and DRAM accesses of one layer, SCALE-Sim v3's way.

The array is R x C PEs; the layer's GEMM (mapping.py) is cut into folds of at most R x C
operands (docs/hardware-model.md, "Systolic array"):

    dataflow  stationary  Sr (array rows)  Sc (array cols)  T (streamed)  cycles per fold
    os        outputs     P                F                Kc            T + R + C - 2
    ws        weights     Kc               F                P             2R + C + T - 2
    is        inputs      Kc               P                F             2R + C + T - 2

folds = ceil(Sr / R) * ceil(Sc / C), columns outer, rows inner, every fold takes the full-array
skew (fill and drain) even when partly used; the layer takes groups x folds x cycles per fold.
reference.py moves every operand through the PE registers cycle by cycle and must agree.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from accelsim.dataflows.systolic.mapping import (
    GemmView,
    check_nm_weights,
    compressed_k,
    gemm_view,
    parse_nm,
    reduction_order,
)
from accelsim.errors import AccelsimError
from accelsim.result import DataflowResult

DATAFLOWS = ("os", "ws", "is")
ACT_MODES = ("gate", "none")
WEIGHT_MODES = ("skip", "gate", "none")
SETS = 100  # SCALE-Sim's read buffers hold whole sets of 1 % of their words


@dataclass(frozen=True)
class FoldPlan:
    """How one group's GEMM folds onto the array."""

    Sr: int
    Sc: int
    T: int
    row_folds: int
    col_folds: int
    fold_cycles: int
    block_words: int  # activation words per streamed step (ws) or pixel (is), see block_words()

    @property
    def folds(self) -> int:
        return self.row_folds * self.col_folds

    @property
    def cycles(self) -> int:
        return self.folds * self.fold_cycles


def fold_plan(dataflow: str, P: int, F: int, Kc: int, rows: int, cols: int,
              nm: tuple[int, int] | None = None) -> FoldPlan:
    if dataflow == "os":
        sr, sc, t = P, F, Kc
        per_fold = t + rows + cols - 2
    elif dataflow == "ws":
        sr, sc, t = Kc, F, P
        per_fold = 2 * rows + cols + t - 2
    elif dataflow == "is":
        sr, sc, t = Kc, P, F
        per_fold = 2 * rows + cols + t - 2
    else:
        raise AccelsimError(f"systolic.dataflow must be one of 'os', 'ws', 'is', got {dataflow!r}")
    return FoldPlan(sr, sc, t, math.ceil(sr / rows), math.ceil(sc / cols), per_fold,
                    block_words(Kc, rows, nm))


@dataclass(frozen=True)
class Accesses:
    """Words moved for one group of one sample (SCALE-Sim's counting, see docs)."""

    ifmap_sram_reads: int
    filter_sram_reads: int
    ofmap_sram_writes: int
    ifmap_dram_reads: int
    filter_dram_reads: int
    ofmap_dram_writes: int


def _active_words(kb: int) -> int:
    """Words of a double-buffered SRAM that serve the array (SCALE-Sim: half its 1 % sets)."""
    total = kb * 1024
    return (total // SETS) * (SETS // 2)


def block_words(kc: int, rows: int, nm: tuple[int, int] | None) -> int:
    """Activation words one streamed step (ws) or one pixel (is) reads over all row folds: the
    M activations of every N:M block a fold's rows touch (dense: one per row)."""
    n, m = nm if nm is not None else (1, 1)
    total = 0
    for start in range(0, kc, rows):
        end = min(start + rows, kc)
        total += (-(-end // n) - start // n) * m
    return total


def epoch_reads(runs, epoch: int) -> int:
    """DRAM words SCALE-Sim's estimate-mode read buffer fetches for a stream of `runs`: each
    (words, repeats) is a slice of distinct words, disjoint from the other runs' slices, read
    `repeats` times in a row in the same order.

    SCALE-Sim v3 (CALC mode) fetches an address when it is not in the current epoch; an epoch
    holds `epoch` distinct addresses (half the SRAM's 1 % sets) and empties when full. Within a
    run, words are new from an epoch's start until the whole slice is in the epoch (the rest of
    the run hits) or the epoch fills (a new one starts at the next word)."""
    reads, held = 0, 0
    for words, repeats in runs:
        total, pos = words * repeats, 0
        while pos < total:
            new = min(words, total - pos)
            if epoch - held <= new:
                step = epoch - held
                reads, pos, held = reads + step, pos + step, 0
            else:
                reads, held, pos = reads + new, held + new, total
    return reads


def drained_writes(words: int, kb: int, line: int) -> int:
    """DRAM words SCALE-Sim's ofmap write buffer reports for `words` output writes, `line` words
    per drain line (its CALC mode: the array's columns).

    Half the SRAM (D words) drains: when the words held pass D, the partly filled line is closed
    padded and ceil(D / line) lines go to DRAM, counted whole except the padding of the chunk's
    last line; the buffer frees what it counted, padding included. At the end every remaining
    line drains the same way. So a padded line that is not the last of its chunk adds its padding
    (with 64 KB and 32 columns: 31 words once the layer writes more than 32,769 words). Assumes a
    drain never delays the next one (it takes ceil(D / line) cycles, during which the array writes
    at most `line` words a cycle), as in every shipped configuration."""
    total = kb * 1024
    drain = total - math.ceil(total * 0.5)
    chunk = math.ceil(drain / line)
    free, stored, n_lines, filled, start, count = total, 0, 0, 0, 0, 0
    partial: dict[int, int] = {}  # line index -> words of a padded line

    def close_partial():
        nonlocal n_lines, filled
        if filled:
            partial[n_lines] = filled
            n_lines, filled = n_lines + 1, 0

    def drain_chunk():
        nonlocal start, count
        end = min(start + chunk, n_lines)
        moved = (end - start) * line - (line - partial.get(end - 1, line))
        start, count = end, count + moved
        return moved

    while stored < words:
        step = min(max(free - (total - drain) + 1, 1), words - stored)
        full, filled = divmod(filled + step, line)
        n_lines += full
        stored, free = stored + step, free - step
        if free < total - drain:
            close_partial()
            free += drain_chunk()
    close_partial()
    while start < n_lines:
        drain_chunk()
    return count


def accesses(dataflow: str, plan: FoldPlan, view: GemmView, unique_ifmap: int,
             nm: tuple[int, int] | None, kb: tuple[int, int, int], cols: int,
             distinct: bool = False, fold_words: int | None = None) -> Accesses:
    """SRAM reads per operand and DRAM traffic with SCALE-Sim v3's conventions (1 word = 1 datum).

    SRAM: every operand word the array edge takes in a fold is one read, partial sums written
    back between row folds are writes. With an N:M pattern the activation side reads the M
    activations of each block its compressed rows touch (about x M / N).
    DRAM reads follow SCALE-Sim's read buffer (epoch_reads) over its fold order (column folds
    outer, row folds inner). The filter words are distinct: os reads each column fold's slice
    once per row fold, ws each fold's slice once, is the whole filter once per column fold. The
    ifmap is the same when no two windows share an input word (GEMMs, 1x1 convolutions): os and
    ws read the whole ifmap once per column fold, is once. With overlapping windows the ifmap
    stream repeats words inside a fold and the count depends on SCALE-Sim's skewed address order:
    there the model is unique words once if they fit the active half of the SRAM, else once per
    column fold (os), or in ws each row fold's distinct words (`fold_words`, summed over the row
    folds: slice_words) once per column fold. Every ofmap word the array writes goes to DRAM (partial sums too), as
    SCALE-Sim's write buffer counts them (drained_writes).
    """
    P, F = view.P, view.F
    kc = plan.T if dataflow == "os" else plan.Sr
    unique_filter = kc * F
    if dataflow == "os":
        if_sram = view.K * P * plan.col_folds if nm is not None else kc * P * plan.col_folds
        f_sram = kc * F * plan.row_folds
        of_sram = P * F
    elif dataflow == "ws":
        if_sram = P * plan.col_folds * plan.block_words
        f_sram = kc * F
        of_sram = P * F * plan.row_folds
    else:
        if_sram = P * plan.block_words
        f_sram = F * kc * plan.col_folds
        of_sram = F * P * plan.row_folds

    active_if, active_f = _active_words(kb[0]), _active_words(kb[1])
    if dataflow == "os":
        f_runs = [(kc * min(cols, F - start), plan.row_folds) for start in range(0, F, cols)]
    elif dataflow == "ws":
        f_runs = [(unique_filter, 1)]
    else:
        f_runs = [(unique_filter, plan.col_folds)]
    passes = 1 if dataflow == "is" else plan.col_folds
    if distinct:
        if_dram = epoch_reads([(unique_ifmap, passes)], active_if)
    elif unique_ifmap <= active_if:
        if_dram = unique_ifmap
    elif dataflow == "ws" and fold_words is not None:
        if_dram = fold_words * passes
    else:
        if_dram = unique_ifmap * passes
    return Accesses(
        ifmap_sram_reads=if_sram,
        filter_sram_reads=f_sram,
        ofmap_sram_writes=of_sram,
        ifmap_dram_reads=if_dram,
        filter_dram_reads=epoch_reads(f_runs, active_f),
        ofmap_dram_writes=drained_writes(of_sram, kb[2], cols),
    )


def check_config(rows, cols, dataflow, act_mode, weight_mode, nm_text) -> tuple[int, int] | None:
    if dataflow not in DATAFLOWS:
        raise AccelsimError(f"systolic.dataflow must be one of 'os', 'ws', 'is', got {dataflow!r}")
    if act_mode not in ACT_MODES:
        raise AccelsimError("the systolic array does not skip zero activations "
                            "(set sparsity.activations to gate or none)")
    nm = parse_nm(nm_text)
    if weight_mode == "skip" and nm is None:
        raise AccelsimError("the systolic array skips zero weights only in an N:M pattern: "
                            "set systolic.nm (e.g. 2:4), or sparsity.weights to gate or none")
    if weight_mode not in WEIGHT_MODES:
        raise AccelsimError(f"sparsity.weights must be one of skip, gate, none, got {weight_mode!r}")
    return nm if weight_mode == "skip" else None


def energy_macs(layer, act_gate: bool, weight_gate: bool, slots: int, samples: int) -> np.ndarray:
    """(S,) MACs that spend energy: every slot, less those a gated zero operand switches off."""
    from accelsim.traces.info import effective_macs

    if not act_gate and not weight_gate:
        return np.full(samples, slots, dtype=np.int64)
    if act_gate and weight_gate:
        return effective_macs(layer)[:samples]
    if act_gate:
        return effective_macs(dataclasses.replace(layer, weight=np.ones_like(layer.weight)))[:samples]
    view = gemm_view(layer)
    return np.full(samples, int(np.count_nonzero(layer.weight)) * view.P, dtype=np.int64)


def gemm_outputs(layer, samples: int) -> np.ndarray:
    """(S, *out_shape) float32: the GEMM the array computes (all operand pairs, bias added)."""
    g = layer.geometry
    view = gemm_view(layer)
    x = layer.inputs.to_dense()[:samples].astype(np.float64)
    w = reduction_order(layer.weight, layer).astype(np.float64)  # (G, K, F)
    if g.kind == "linear":
        out = x.reshape(samples, view.K) @ w[0]
    else:
        c, h, wd = g.in_shape
        (kh, kw), (sy, sx), (py, px), (dy, dx) = g.kernel, g.stride, g.padding, g.dilation
        _, oh, ow = g.out_shape
        xp = np.zeros((samples, c, h + 2 * py, wd + 2 * px))
        xp[:, :, py:py + h, px:px + wd] = x
        cols = np.empty((samples, c, kh, kw, oh, ow))
        for ky in range(kh):
            for kx in range(kw):
                y0, x0 = ky * dy, kx * dx
                cols[:, :, ky, kx] = xp[:, :, y0:y0 + sy * (oh - 1) + 1:sy, x0:x0 + sx * (ow - 1) + 1:sx]
        cols = cols.reshape(samples, view.groups, view.K, oh * ow)  # channel-major = K order
        out = np.einsum("sgkp,gkf->sgfp", cols, w).reshape(samples, g.out_shape[0], oh, ow)
    if layer.bias is not None:
        bias = np.asarray(layer.bias, np.float64)
        out = out + (bias if g.kind == "linear" else bias[:, None, None])
    return out.astype(np.float32)


@dataclass(frozen=True)
class LayerPlan:
    """One layer on the array: its GEMM, fold plan and accesses per group and sample."""

    view: GemmView
    pattern: tuple[int, int] | None
    kc: int
    plan: FoldPlan
    acc: Accesses

    @property
    def cycles(self) -> int:
        return self.view.groups * self.plan.cycles

    @property
    def dram_words(self) -> int:
        a = self.acc
        return self.view.groups * (a.ifmap_dram_reads + a.filter_dram_reads + a.ofmap_dram_writes)


def distinct_windows(layer) -> bool:
    """Whether no two windows share an input word (each stride at least its kernel extent), e.g.
    GEMMs and 1x1 convolutions: then the ifmap words read are distinct (window_words)."""
    g = layer.geometry
    if g.kind == "linear":
        return True
    (kh, kw), (sy, sx), (dy, dx) = g.kernel, g.stride, g.dilation
    return sy >= (kh - 1) * dy + 1 and sx >= (kw - 1) * dx + 1


def window_words(layer) -> int:
    """Input words (not padding) the windows of one group read, each counted once per window."""
    g = layer.geometry
    if g.kind == "linear":
        return int(g.in_shape[0])
    c, h, w = g.in_shape
    _, oh, ow = g.out_shape
    per_dim = []
    for size, out, k, s, p, d in zip((h, w), (oh, ow), g.kernel, g.stride, g.padding, g.dilation):
        pos = np.arange(out)[:, None] * s - p + np.arange(k)[None, :] * d
        per_dim.append(int(((pos >= 0) & (pos < size)).sum()))
    return (int(c) // int(g.groups)) * per_dim[0] * per_dim[1]


def slice_words(layer, rows: int) -> int:
    """Input words (not padding) each weight-stationary row fold reads, summed over the row folds
    of one group: a row fold holds `rows` consecutive reduction indices in SCALE-Sim's im2col
    order (ky, kx, input channel fastest) and streams every output position past them, so it
    reads, for each channel, the union of the positions its taps in the fold reach. When the
    input does not fit the SRAM's active half, SCALE-Sim fetches each fold's words again."""
    g = layer.geometry
    c, h, w = g.in_shape
    cg = int(c) // int(g.groups)
    _, oh, ow = g.out_shape
    reach = []  # per axis and tap: the input positions that tap reaches
    for size, out, k, s, p, d in zip((h, w), (oh, ow), g.kernel, g.stride, g.padding, g.dilation):
        pos = np.arange(out)[:, None] * s - p + np.arange(k)[None, :] * d
        reach.append([np.unique(col[(col >= 0) & (col < size)]) for col in pos.T])
    kw = int(g.kernel[1])
    counts: dict[frozenset, int] = {}

    def covered(taps: frozenset) -> int:
        if taps not in counts:
            mask = np.zeros((int(h), int(w)), bool)
            for tap in taps:
                mask[np.ix_(reach[0][tap // kw], reach[1][tap % kw])] = True
            counts[taps] = int(mask.sum())
        return counts[taps]

    total, K = 0, cg * int(g.kernel[0]) * kw
    for k0 in range(0, K, rows):
        taps: dict[int, set] = {}
        for k in range(k0, min(k0 + rows, K)):
            taps.setdefault(k % cg, set()).add(k // cg)
        total += sum(covered(frozenset(t)) for t in taps.values())
    return total


def layer_plan(layer, *, rows: int, cols: int, dataflow: str, ifmap_sram_kb: int,
               filter_sram_kb: int, ofmap_sram_kb: int, pattern: tuple[int, int] | None) -> LayerPlan:
    view = gemm_view(layer)
    kc = compressed_k(view, pattern)
    plan = fold_plan(dataflow, view.P, view.F, kc, rows, cols, pattern)
    distinct = distinct_windows(layer)
    unique_ifmap = window_words(layer) if distinct else int(np.prod(layer.geometry.in_shape)) // view.groups
    fold_words = (slice_words(layer, rows) if dataflow == "ws" and not distinct and pattern is None
                  and unique_ifmap > _active_words(ifmap_sram_kb) else None)
    acc = accesses(dataflow, plan, view, unique_ifmap, pattern,
                   (ifmap_sram_kb, filter_sram_kb, ofmap_sram_kb), cols, distinct, fold_words)
    return LayerPlan(view, pattern, kc, plan, acc)


def memory_traffic(layer, arch, cycles_per_sample: np.ndarray):
    """accelsim.memory.MemoryTraffic of the array's three SRAMs (the Dataflow's memory hook):
    DRAM bytes from accesses() (SCALE-Sim's read and write buffers); with systolic.bandwidth > 0
    (words per cycle) a sample whose DRAM words take longer than its compute stalls for the
    difference."""
    from accelsim.memory import MemoryTraffic

    sec = arch.systolic
    pattern = parse_nm(sec.nm) if arch.sparsity.weights == "skip" else None
    lp = layer_plan(layer, rows=sec.rows, cols=sec.cols, dataflow=sec.dataflow,
                    ifmap_sram_kb=sec.ifmap_sram_kb, filter_sram_kb=sec.filter_sram_kb,
                    ofmap_sram_kb=sec.ofmap_sram_kb, pattern=pattern)
    samples = int(cycles_per_sample.shape[0])
    stall = 0
    if sec.bandwidth > 0:
        transfer = math.ceil(lp.dram_words / sec.bandwidth)
        stall = int(np.maximum(transfer - cycles_per_sample.astype(np.int64), 0).sum())
    filter_words = lp.view.groups * lp.kc * lp.view.F
    ifmap_words = int(np.prod(layer.geometry.in_shape))
    return MemoryTraffic(
        weights_on_chip=filter_words <= _active_words(sec.filter_sram_kb),
        acts_on_chip=ifmap_words <= _active_words(sec.ifmap_sram_kb),
        weight_bytes_per_unit=filter_words * sec.word_bytes,
        weight_bytes=filter_words * sec.word_bytes,
        dram_bytes=lp.dram_words * sec.word_bytes * samples,
        stall_cycles=stall,
    )


def simulate_systolic(layer, *, rows: int, cols: int, dataflow: str, ifmap_sram_kb: int,
                      filter_sram_kb: int, ofmap_sram_kb: int, bandwidth: float, word_bytes: int,
                      nm: str, act_mode: str, weight_mode: str, functional: bool = True,
                      samples: int | None = None) -> DataflowResult:
    """Cycles and events of one layer, per sample (the array is dense: every sample alike in
    time). DRAM traffic and bandwidth stalls come from memory_traffic (the memory hook)."""
    pattern = check_config(rows, cols, dataflow, act_mode, weight_mode, nm)
    if pattern is not None:
        check_nm_weights(layer, pattern)
    s_total = layer.inputs.num_samples if samples is None else min(int(samples), layer.inputs.num_samples)
    lp = layer_plan(layer, rows=rows, cols=cols, dataflow=dataflow, ifmap_sram_kb=ifmap_sram_kb,
                    filter_sram_kb=filter_sram_kb, ofmap_sram_kb=ofmap_sram_kb, pattern=pattern)
    view, plan, acc, g = lp.view, lp.plan, lp.acc, lp.view.groups
    cycles = np.full(s_total, lp.cycles, dtype=np.int64)
    slots = g * view.P * view.F * lp.kc  # MAC slots: busy PE-cycles
    units = rows * cols
    # PE-cycles of mapped PEs outside their T streaming cycles (fill/drain), and of PEs a partial
    # fold leaves unmapped; busy + starve + tail = units x cycles.
    mapped_pe_cycles = g * plan.Sr * plan.Sc * plan.fold_cycles
    starve = mapped_pe_cycles - slots
    tail = units * lp.cycles - mapped_pe_cycles
    macs = energy_macs(layer, act_mode == "gate", weight_mode != "none", slots, s_total)
    counters = {
        "cycles": int(cycles.sum()),
        "busy_pe_cycles": slots * s_total,
        "starve_pe_cycles": starve * s_total,
        "tail_pe_cycles": tail * s_total,
        "stall_cycles": 0,
        "padding_entries": 0,
        "mac": int(macs.sum()),
        "weight_read": g * acc.filter_sram_reads * s_total,
        "act_read": g * acc.ifmap_sram_reads * s_total,
        "act_write": g * acc.ofmap_sram_writes * s_total,
        "pe_cycle": units * int(cycles.sum()),
    }
    extra = {
        "dram_words": lp.dram_words,
        "ifmap_dram_reads": g * acc.ifmap_dram_reads, "filter_dram_reads": g * acc.filter_dram_reads,
        "ofmap_dram_writes": g * acc.ofmap_dram_writes, "folds": g * plan.folds,
        "fold_cycles": plan.fold_cycles, "compressed_k": lp.kc,
    }
    outputs = None
    if functional and layer.outputs is not None:
        s_out = min(int(layer.outputs.shape[0]), s_total)
        outputs = gemm_outputs(layer, s_out)
    return DataflowResult(cycles=cycles, counters=counters, num_units=units, outputs=outputs,
                          extra=extra)
