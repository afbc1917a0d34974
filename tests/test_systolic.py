"""Systolic array: the closed-form kernel equals the per-cycle register-level reference, N:M
weights shrink the reduction dimension, and bad configurations are one line."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accelsim.arch import load_arch
from accelsim.dataflows import get
from accelsim.dataflows.systolic.kernel import fold_plan
from accelsim.dataflows.systolic.mapping import nm_prune
from accelsim.errors import AccelsimError
from accelsim.synth import random_layer
from accelsim.traces.schema import LayerGeometry

FLOW = get("systolic")
COMPARED = ("cycles", "busy_pe_cycles", "mac", "weight_read", "act_read", "act_write", "pe_cycle")


@st.composite
def layers(draw):
    """Small conv (grouped, strided, padded, non-square) or linear layers."""
    if draw(st.booleans()):
        c, m = draw(st.integers(1, 12)), draw(st.integers(1, 7))
        return LayerGeometry("fc", "linear", (c,), (m,))
    groups = draw(st.sampled_from([1, 1, 2]))
    c = groups * draw(st.integers(1, 3))
    m = groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    py, px = draw(st.integers(0, 1)), draw(st.integers(0, 1))
    h, w = draw(st.integers(max(1, kh - 2 * py), 5)), draw(st.integers(max(1, kw - 2 * px), 5))
    sy, sx = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    oh, ow = (h + 2 * py - kh) // sy + 1, (w + 2 * px - kw) // sx + 1
    return LayerGeometry("conv", "conv2d", (c, h, w), (m, oh, ow), (kh, kw), (sy, sx), (py, px),
                         (1, 1), groups)


def _arch(dataflow, rows, cols, extra=()):
    return load_arch(f"systolic-{dataflow}", [f"systolic.rows={rows}", f"systolic.cols={cols}", *extra])


def _both(layer, arch, act_mode="gate", weight_mode="none"):
    kw = dict(**dataclasses.asdict(arch.systolic), act_mode=act_mode, weight_mode=weight_mode,
              functional=True, samples=None)
    return FLOW.kernel(layer, **kw), FLOW.reference(layer, **kw)


@settings(max_examples=30, deadline=None)
@given(geo=layers(), dataflow=st.sampled_from(["os", "ws", "is"]), rows=st.integers(1, 4),
       cols=st.integers(1, 4), seed=st.integers(0, 99), act_mode=st.sampled_from(["gate", "none"]),
       weight_mode=st.sampled_from(["gate", "none"]))
def test_kernel_equals_per_cycle_reference(geo, dataflow, rows, cols, seed, act_mode, weight_mode):
    """Cycles (fill and drain included), SRAM reads and writes per operand and gated MACs of the
    closed form equal the register-level simulation, which also computes the layer exactly."""
    layer = random_layer(geo, 0.6, 0.7, samples=2, seed=seed)
    fast, slow = _both(layer, _arch(dataflow, rows, cols), act_mode, weight_mode)
    assert np.array_equal(fast.cycles, slow.cycles)
    for name in COMPARED:
        assert fast.counter(name) == slow.counter(name), name


@settings(max_examples=25, deadline=None)
@given(dataflow=st.sampled_from(["os", "ws", "is"]), nm=st.sampled_from([(1, 2), (2, 4), (1, 4), (3, 4)]),
       blocks=st.integers(1, 4), f=st.integers(1, 5), p=st.integers(1, 4), rows=st.integers(1, 4),
       cols=st.integers(1, 4), seed=st.integers(0, 99))
def test_nm_kernel_equals_reference_and_shrinks_reduction(dataflow, nm, blocks, f, p, rows, cols, seed):
    """With N:M compressed weights the array runs K * N / M reduction steps; the reference decodes
    every entry's in-block index and still computes the dense layer."""
    n, m = nm
    geo = LayerGeometry("g", "conv2d", (blocks * m, p, 1), (f, p, 1))  # SCALE-Sim's GEMM form
    layer = nm_prune(random_layer(geo, 1.0, 0.8, samples=1, seed=seed), nm)
    arch = _arch(dataflow, rows, cols, [f"systolic.nm={n}:{m}"])
    fast, slow = _both(layer, arch, "gate", "skip")
    assert np.array_equal(fast.cycles, slow.cycles)
    for name in COMPARED:
        assert fast.counter(name) == slow.counter(name), name
    plan = fold_plan(dataflow, p, f, blocks * n, rows, cols)
    assert fast.cycles[0] == plan.cycles
    dense, _ = _both(layer, _arch(dataflow, rows, cols), "gate", "none")
    assert fast.counter("busy_pe_cycles") * m == dense.counter("busy_pe_cycles") * n


def test_fold_timing_by_hand():
    """A 4x4 array, GEMM P=6, F=5, K=3: os folds 2x2 of 3+4+4-2 = 9 cycles; ws 1x2 of
    2*4+4+6-2 = 16; is 1x2 of 2*4+4+5-2 = 15."""
    assert fold_plan("os", 6, 5, 3, 4, 4).cycles == 4 * 9
    assert fold_plan("ws", 6, 5, 3, 4, 4).cycles == 2 * 16
    assert fold_plan("is", 6, 5, 3, 4, 4).cycles == 2 * 15


def test_preset_peak_and_sections():
    for d in ("os", "ws", "is"):
        arch = load_arch(f"systolic-{d}")
        assert arch.systolic.dataflow == d and (arch.systolic.rows, arch.systolic.cols) == (32, 32)
        assert FLOW.peak_macs_per_cycle(arch) == 1024


@pytest.mark.parametrize("overrides, act, weight, message", [
    ([], "skip", "none", "the systolic array does not skip zero activations"),
    ([], "gate", "skip", "the systolic array skips zero weights only in an N:M pattern"),
    (["systolic.nm=3:2"], "gate", "skip", "N must be <= M"),
    (["systolic.nm=2-4"], "gate", "skip", "expected an N:M pattern such as 2:4"),
    (["systolic.nm=2:5"], "gate", "skip", "needs the reduction dimension to be a multiple of M=5"),
    (["systolic.nm=1:4"], "gate", "skip", "weights are not 1:4 sparse"),
])
def test_bad_configurations_are_one_line(overrides, act, weight, message):
    geo = LayerGeometry("fc", "linear", (8,), (3,))
    layer = random_layer(geo, 1.0, 1.0)
    arch = _arch("os", 4, 4, overrides).with_sparsity(act, weight)
    with pytest.raises(AccelsimError, match=message) as info:
        FLOW.run(layer, arch, functional=False)
    assert "\n" not in str(info.value)


@settings(max_examples=15, deadline=None)
@given(geo=layers(), dataflow=st.sampled_from(["os", "ws", "is"]), seed=st.integers(0, 99))
def test_report_row_utilisation_and_pe_cycles(geo, dataflow, seed):
    """In a report row: utilisation <= 1 and busy + starve + tail PE-cycles = R x C x cycles."""
    from accelsim.energy import load_energy_table
    from accelsim.simulate import Variant, simulate_layer
    from accelsim.traces.info import layer_stats

    layer = random_layer(geo, 0.5, 0.5, samples=2, seed=seed)
    arch = _arch(dataflow, 3, 2)
    row, _ = simulate_layer("t", layer, Variant("sparse", arch), load_energy_table(), layer_stats(layer))
    assert 0 <= row["utilisation"] <= 1 and row["peak_macs_per_cycle"] == 6
    pe = row["busy_pe_cycles"] + row["starve_pe_cycles"] + row["tail_pe_cycles"]
    assert pe == pytest.approx(6 * row["compute_cycles"])


def _epoch_reference(runs, epoch):
    """Word by word through analysis/scalesim_golden.dram_reads, the count the golden table's
    DRAM reads come from (proven equal to SCALE-Sim's read buffer there)."""
    from accelsim.analysis.scalesim_golden import dram_reads

    stream, base = [], 0
    for words, repeats in runs:
        stream += list(range(base, base + words)) * repeats
        base += words
    return dram_reads(np.asarray(stream), epoch)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 60), st.integers(1, 5)), min_size=1, max_size=6),
       st.integers(1, 80))
def test_epoch_reads_equal_word_by_word_reference(runs, epoch):
    from accelsim.dataflows.systolic.kernel import epoch_reads

    assert epoch_reads(runs, epoch) == _epoch_reference(runs, epoch)


def _fold_words_reference(geo, rows):
    """Word by word: SCALE-Sim's im2col address matrix of one group (rows = output positions,
    columns = reduction index in (ky, kx, channel) order, -1 for padding), cut into row folds of
    `rows` columns; each fold's distinct addresses, summed."""
    c, h, w = geo.in_shape
    cg = c // geo.groups
    _, oh, ow = geo.out_shape
    (kh, kw), (sy, sx), (py, px) = geo.kernel, geo.stride, geo.padding
    matrix = np.full((oh * ow, kh * kw * cg), -1)
    for oy in range(oh):
        for ox in range(ow):
            for ky in range(kh):
                for kx in range(kw):
                    y, x = oy * sy - py + ky, ox * sx - px + kx
                    if 0 <= y < h and 0 <= x < w:
                        for ch in range(cg):
                            matrix[oy * ow + ox, (ky * kw + kx) * cg + ch] = (ch * h + y) * w + x
    return sum(len(set(matrix[:, k:k + rows].ravel()) - {-1}) for k in range(0, matrix.shape[1], rows))


@settings(max_examples=60, deadline=None)
@given(geo=layers(), rows=st.integers(1, 7))
def test_slice_words_equal_word_by_word_reference(geo, rows):
    """The weight-stationary ifmap DRAM model's per-fold distinct words (kernel.slice_words)."""
    from types import SimpleNamespace

    from accelsim.dataflows.systolic.kernel import slice_words

    if geo.kind == "conv2d":
        assert slice_words(SimpleNamespace(geometry=geo), rows) == _fold_words_reference(geo, rows)


def _drain_reference(words, kb, line):
    """Word by word, SCALE-Sim's ofmap write buffer when no drain delays the next: lines of
    `line` words; when the words held pass half the SRAM the open line is closed (padded) and
    ceil(half / line) lines drain, each counted whole but for the padding of the chunk's last
    line, and the buffer frees what it counted; at the end everything drains."""
    total = kb * 1024
    drain = total - math.ceil(total / 2)
    lines, current, free, start, count = [], 0, total, 0, 0

    def drain_chunk():
        nonlocal start, count
        chunk = lines[start:start + math.ceil(drain / line)]
        moved = len(chunk) * line - (line - chunk[-1])
        start, count = start + len(chunk), count + moved
        return moved

    for _ in range(words):
        current, free = current + 1, free - 1
        if current == line:
            lines.append(line)
            current = 0
        if free < total - drain:
            if current:
                lines.append(current)
                current = 0
            free += drain_chunk()
    if current:
        lines.append(current)
    while start < len(lines):
        drain_chunk()
    return count


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 9000), st.integers(1, 4), st.integers(3, 40))
def test_drained_writes_equal_word_by_word_reference(words, kb, line):
    from accelsim.dataflows.systolic.kernel import drained_writes

    assert drained_writes(words, kb, line) == _drain_reference(words, kb, line)
    # 64 KB, 32 columns: the one padded line after the first drain adds 31 words
    assert drained_writes(32769, 64, 32) == 32769 and drained_writes(32770, 64, 32) == 32770 + 31
