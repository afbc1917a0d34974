"""SCNN-style two-sided sparse array: fast kernel == per-cycle reference (cycles and every
counter); hand-worked steps; the multiplier-slot identity; tiling errors.

Every conv here is non-square (H != W, kernel h != w, stride and padding differ per axis), so a
kernel or reference that swapped y and x would fail.
"""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accelsim.dataflows.scnn import DATAFLOW
from accelsim.dataflows.scnn.kernel import simulate_scnn
from accelsim.dataflows.scnn.reference import simulate_scnn_reference
from accelsim.errors import AccelsimError
from accelsim.traces.schema import LayerGeometry, LayerRecord, SparseBatch
from layer_cases import conv_record as _conv
from layer_cases import draw_layer
from layer_cases import same_result as _assert_same
from layer_cases import out_size as _out

MODES = ("skip", "gate", "none")
def _expected_conv(x, wt, bias, k, stride, pad, dil, groups):
    """Outputs by the definition of a convolution (float64)."""
    s, c, h, w = x.shape
    m = wt.shape[0]
    oh, ow = _out(h, k[0], stride[0], pad[0], dil[0]), _out(w, k[1], stride[1], pad[1], dil[1])
    cg, mg = c // groups, m // groups
    out = np.zeros((s, m, oh, ow)) + np.asarray(bias, np.float64)[None, :, None, None]
    for mm in range(m):
        g = mm // mg
        for oy in range(oh):
            for ox in range(ow):
                for cc in range(cg):
                    for ky in range(k[0]):
                        for kx in range(k[1]):
                            iy = oy * stride[0] - pad[0] + ky * dil[0]
                            ix = ox * stride[1] - pad[1] + kx * dil[1]
                            if 0 <= iy < h and 0 <= ix < w:
                                out[:, mm, oy, ox] += (x[:, g * cg + cc, iy, ix].astype(np.float64)
                                                       * wt[mm, cc, ky, kx])
    return out


def _check_invariants(res, cfg):
    """PE-cycles split into busy, tail and empty; multiplier slots into products and waste."""
    c = res.counters
    pes = cfg["pe_rows"] * cfg["pe_cols"]
    slots = cfg["weight_vector"] * cfg["act_vector"]
    assert c["busy_pe_cycles"] + c["tail_pe_cycles"] + c["empty_pe_cycles"] == c["pe_cycle"]
    assert c["pe_cycle"] == c["cycles"] * pes
    assert c["imbalance_pe_cycles"] == c["tail_pe_cycles"] + c["empty_pe_cycles"]
    products = c["acc_update"] - c["halo_psums"] + c["discarded_products"]
    issue_cycles = c["busy_pe_cycles"] - c["bank_conflict_cycles"]
    assert products + c["fragmentation_slots"] == slots * issue_cycles
    assert c["fifo_pop"] <= c["weight_read"] * max(1, c["act_read"])


def _cfg(draw):
    cfg = dict(pe_rows=draw(st.integers(1, 3)), pe_cols=draw(st.integers(1, 3)),
               weight_vector=draw(st.integers(1, 3)), act_vector=draw(st.integers(1, 3)),
               banks=draw(st.integers(1, 5)), bank_entries=draw(st.integers(8, 40)),
               kc=draw(st.sampled_from([0, 0, 1, 2])))
    cfg["act_mode"] = draw(st.sampled_from(MODES))
    cfg["weight_mode"] = draw(st.sampled_from(MODES))
    return cfg


@st.composite
def cases(draw):
    """A small layer (parameters and contents drawn, so a failure shrinks) and a configuration."""
    cfg = _cfg(draw)
    samples = draw(st.integers(1, 2))
    rec = draw_layer(draw, samples, fc=(12, 6), channels=3, filters=3, stride_w=2, pad_w=1,
                     height=7)
    return rec, cfg


def _both(rec, cfg):
    """Kernel and reference results, or the fact that both refused the configuration."""
    try:
        fast = simulate_scnn(rec, **cfg)
    except AccelsimError:
        with pytest.raises(AccelsimError):
            simulate_scnn_reference(rec, **cfg)
        return None, None
    return fast, simulate_scnn_reference(rec, **cfg)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_fast_equals_cycle_reference(case):
    rec, cfg = case
    fast, ref = _both(rec, cfg)
    if fast is None:
        return
    _assert_same(fast, ref)
    _check_invariants(fast, cfg)


def test_outputs_are_the_convolution_in_every_mode():
    """The products the array forms and lands add up to the layer (strided, dilated, grouped)."""
    rng = np.random.default_rng(3)
    k, stride, pad, dil, groups = (3, 2), (2, 1), (1, 0), (1, 2), 2
    x = rng.standard_normal((2, 4, 9, 7)).astype(np.float32) * (rng.random((2, 4, 9, 7)) < 0.5)
    wt = rng.standard_normal((6, 2, *k)).astype(np.float32) * (rng.random((6, 2, *k)) < 0.6)
    rec = _conv(x, wt, k, stride, pad, dil, groups)
    want = _expected_conv(x, wt, np.arange(6), k, stride, pad, dil, groups)
    for a in MODES:
        for w in MODES:
            res = simulate_scnn(rec, pe_rows=3, pe_cols=2, weight_vector=4, act_vector=4, banks=8,
                                bank_entries=32, kc=0, act_mode=a, weight_mode=w)
            np.testing.assert_allclose(res.outputs, want, rtol=1e-5, atol=1e-5)


def test_fast_equals_reference_on_a_larger_layer():
    """More PEs, wider vectors and more banks than hypothesis draws."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 5, 11, 9)).astype(np.float32) * (rng.random((1, 5, 11, 9)) < 0.4)
    wt = rng.standard_normal((14, 5, 3, 2)).astype(np.float32) * (rng.random((14, 5, 3, 2)) < 0.5)
    rec = _conv(x, wt, (3, 2), (1, 1), (1, 1))
    cfg = dict(pe_rows=4, pe_cols=3, weight_vector=4, act_vector=4, banks=32, bank_entries=8,
               kc=0, act_mode="skip", weight_mode="skip")
    fast, ref = _both(rec, cfg)
    _assert_same(fast, ref)
    # 3x3 tiles; with halos and the owned outputs an output channel spans 5 x 5 entries
    assert fast.extra["accumulator_region"] == 25 and fast.extra["kc"] == 256 // 25


def test_one_step_by_hand():
    """One PE, one channel, 1x1 kernel: 3 non-zero activations x 5 non-zero weights with F = 2,
    I = 2: activation vectors of 2 and 1, weight vectors of 2, 2, 1: 6 steps; products
    2x2, 2x2, 2x1, 1x2, 1x2, 1x1 = 15 of 24 slots (9 fragmented). Every product goes to its own
    output (output channels x positions), 64 banks: no conflicts, 6 cycles."""
    x = np.zeros((1, 1, 1, 4), np.float32)
    x[0, 0, 0, [0, 2, 3]] = [1.0, 2.0, 3.0]
    wt = np.array([1.0, 0.0, 2.0, 3.0, 4.0, 5.0], np.float32).reshape(6, 1, 1, 1)
    rec = _conv(x, wt, (1, 1))
    res = simulate_scnn(rec, pe_rows=1, pe_cols=1, weight_vector=2, act_vector=2, banks=64,
                        bank_entries=64, kc=0, act_mode="skip", weight_mode="skip")
    c = res.counters
    assert c["cycles"] == 6 and c["fragmentation_slots"] == 9 and c["mac"] == 15
    assert c["bank_conflict_cycles"] == 0 and c["fifo_pop"] == 5 * 2 and c["act_read"] == 3
    # one bank: each step waits for its products one at a time: 15 cycles, 9 of them conflicts
    one = simulate_scnn(rec, pe_rows=1, pe_cols=1, weight_vector=2, act_vector=2, banks=1,
                        bank_entries=64, kc=0, act_mode="skip", weight_mode="skip")
    assert one.counters["cycles"] == 15 and one.counters["bank_conflict_cycles"] == 9
    # dense: 4 activations x 6 weights, vectors 2 x 3: 6 steps, every slot used
    dense = simulate_scnn(rec, pe_rows=1, pe_cols=1, weight_vector=2, act_vector=2, banks=64,
                          bank_entries=64, kc=0, act_mode="none", weight_mode="none")
    assert dense.counters["cycles"] == 6 and dense.counters["fragmentation_slots"] == 0


def test_barrier_waits_for_the_slowest_tile():
    """Two PEs (1 x 2 grid); all non-zeros in the left tile: the right PE waits at the barrier
    (inter-PE imbalance) for every cycle of the left one."""
    x = np.zeros((1, 1, 2, 4), np.float32)
    x[0, 0, :, :2] = 1.0
    wt = np.ones((2, 1, 1, 1), np.float32)
    rec = _conv(x, wt, (1, 1))
    res = simulate_scnn(rec, pe_rows=1, pe_cols=2, weight_vector=1, act_vector=1, banks=8,
                        bank_entries=8, kc=0, act_mode="skip", weight_mode="skip")
    c = res.counters
    assert c["cycles"] == 8 and c["busy_pe_cycles"] == 8 and c["tail_pe_cycles"] == 8
    assert c["imbalance_pe_cycles"] == 8


def test_fully_connected_runs_on_one_pe():
    """FC as a 1x1 convolution over a 1x1 plane: one PE holds the plane, the others are empty;
    each non-zero input is an activation vector of one (I - 1 slots idle)."""
    rng = np.random.default_rng(2)
    f, m = 10, 9
    x = rng.standard_normal((1, f)).astype(np.float32)
    wt = rng.standard_normal((m, f)).astype(np.float32)
    geo = LayerGeometry("fc", "linear", (f,), (m,), has_bias=True)
    rec = LayerRecord(geo, wt, None, np.zeros(m, np.float32), SparseBatch.from_dense(x),
                      outputs=np.zeros((1, m), np.float32))
    cfg = dict(pe_rows=8, pe_cols=8, weight_vector=4, act_vector=4, banks=32, bank_entries=32,
               kc=0, act_mode="skip", weight_mode="skip")
    fast, ref = _both(rec, cfg)
    _assert_same(fast, ref)
    c = fast.counters
    assert c["cycles"] == f * 3  # ceil(9 / F) weight vectors per input
    assert c["empty_pe_cycles"] == 63 * c["cycles"]
    np.testing.assert_allclose(fast.outputs[0], wt @ x[0], rtol=1e-5)


def test_stride_discards_products():
    """Stride 2 along y: products whose row does not land on an output are formed and dropped."""
    x = np.ones((1, 1, 4, 3), np.float32)
    wt = np.ones((1, 1, 1, 1), np.float32)
    rec = _conv(x, wt, (1, 1), stride=(2, 1))
    res = simulate_scnn(rec, pe_rows=1, pe_cols=1, weight_vector=1, act_vector=1, banks=4,
                        bank_entries=8, kc=0, act_mode="skip", weight_mode="skip")
    assert res.counters["discarded_products"] == 6 and res.counters["mac"] == 12
    assert res.counters["acc_update"] == 6


def test_grid_that_does_not_tile_the_layer_says_what_to_change():
    x = np.ones((1, 1, 40, 40), np.float32)
    rec = _conv(x, np.ones((4, 1, 3, 3), np.float32), (3, 3), pad=(1, 1))
    with pytest.raises(AccelsimError, match=r"the 2x2 PE grid gives 20x20 input tiles .* 21x21 = "
                       r"441 accumulator entries .* more than scnn.banks x scnn.bank_entries = "
                       r"256; use a larger grid"):
        simulate_scnn(rec, pe_rows=2, pe_cols=2, weight_vector=4, act_vector=4, banks=8,
                      bank_entries=32, kc=0, act_mode="skip", weight_mode="skip")
    with pytest.raises(AccelsimError, match=r"scnn.kc = 4 .* set scnn.kc to at most 2"):
        simulate_scnn(rec, pe_rows=2, pe_cols=2, weight_vector=4, act_vector=4, banks=32,
                      bank_entries=32, kc=4, act_mode="skip", weight_mode="skip")


def test_registry_entry():
    sec = DATAFLOW.section()
    assert (sec.pe_rows, sec.pe_cols, sec.weight_vector, sec.act_vector, sec.banks) == (8, 8, 4, 4, 32)
    assert DATAFLOW.multipliers(sec) == 1024


def test_run_refuses_a_grid_that_does_not_tile_the_layer(tmp_path, capsys):
    """`accelsim run` on a layer whose tiles overflow the accumulator: one line, exit 2, no
    report written."""
    from accelsim.cli import main

    out = tmp_path / "r.csv"
    trace = Path(__file__).resolve().parents[1] / "traces/reference/lenet4-jp.trace.safetensors"
    with pytest.raises(SystemExit) as info:
        main(["run", "--trace", str(trace), "--arch", "scnn",
              "--set", "scnn.bank_entries=1", "--out", str(out)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and not out.exists()
    assert err.startswith("error: layer 'conv1': the 8x8 PE grid gives 4x4 input tiles")
    assert err.endswith("use a larger grid (scnn.pe_rows, scnn.pe_cols) or more entries "
                        "(scnn.bank_entries)")
