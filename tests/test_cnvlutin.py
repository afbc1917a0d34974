"""Cnvlutin-style dataflow: fast kernel == per-cycle reference; closed forms; functional outputs.

Every conv here is non-square (H != W, kernel h != w, stride and padding differ per axis), so a
kernel or reference that swapped y and x would fail.
"""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accelsim.dataflows.cnvlutin import DATAFLOW, CnvlutinSection
from accelsim.dataflows.cnvlutin.kernel import WEIGHT_SKIP_ERROR, simulate_cnvlutin
from accelsim.dataflows.cnvlutin.reference import simulate_cnvlutin_reference
from accelsim.errors import AccelsimError
from accelsim.traces.schema import LayerGeometry, LayerRecord, SparseBatch
from layer_cases import conv_record, draw_layer
from layer_cases import same_result as _assert_same

MODES = [(a, w) for a in ("skip", "gate", "none") for w in ("gate", "none")]


def _conv(rng, s, c, hw, m, k, stride, pad, groups, act_density, w_density, dil=(1, 1),
          s_out=None):
    x = rng.standard_normal((s, c, *hw)).astype(np.float32)
    x *= rng.random(x.shape) < act_density
    wt = rng.standard_normal((m, c // groups, *k)).astype(np.float32)
    wt *= rng.random(wt.shape) < w_density
    return conv_record(x, wt, k, stride, pad, dil, groups, s_out,
                       bias=rng.standard_normal(m).astype(np.float32)), x


def _fc(rng, s, f, m, act_density, w_density):
    geo = LayerGeometry("fc", "linear", (f,), (m,), has_bias=True)
    x = rng.standard_normal((s, f)).astype(np.float32) * (rng.random((s, f)) < act_density)
    wt = rng.standard_normal((m, f)).astype(np.float32) * (rng.random((m, f)) < w_density)
    return LayerRecord(geo, wt, None, rng.standard_normal(m).astype(np.float32),
                       SparseBatch.from_dense(x), outputs=np.zeros((s, m), np.float32)), x


def _valid_taps(h, w, oh, ow, k, stride, pad, dil=(1, 1)):
    """(OH, OW) number of kernel taps of each window that land on the input (not the padding)."""
    ys = [sum(0 <= oy * stride[0] - pad[0] + ky * dil[0] < h for ky in range(k[0]))
          for oy in range(oh)]
    xs = [sum(0 <= ox * stride[1] - pad[1] + kx * dil[1] < w for kx in range(k[1]))
          for ox in range(ow)]
    return np.outer(ys, xs)


def _check_invariants(res, units, lanes):
    c = res.counters
    assert c["busy_pe_cycles"] + c["tail_pe_cycles"] + c["empty_pe_cycles"] == c["pe_cycle"]
    assert c["pe_cycle"] == c["cycles"] * units * lanes
    assert c["busy_pe_cycles"] <= c["act_read"] * units  # a busy lane holds one activation


@st.composite
def cases(draw):
    """A small layer (parameters and contents drawn, so a failure shrinks) and a configuration."""
    cfg = dict(units=draw(st.integers(1, 3)), lanes=draw(st.integers(1, 6)),
               filters_per_unit=draw(st.integers(1, 3)), brick_size=draw(st.integers(1, 5)),
               pack_taps=draw(st.booleans()))
    cfg["act_mode"], cfg["weight_mode"] = draw(st.sampled_from(MODES))
    samples = draw(st.integers(1, 2))
    rec = draw_layer(draw, samples, fc=(24, 8), channels=5, filters=3, stride_w=3, pad_w=2,
                     height=6)
    return rec, cfg


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_fast_equals_cycle_reference(case):
    rec, cfg = case
    fast = simulate_cnvlutin(rec, **cfg)
    _assert_same(fast, simulate_cnvlutin_reference(rec, **cfg))
    _check_invariants(fast, cfg["units"], cfg["lanes"])


def test_fast_equals_reference_on_wide_bricks_and_many_lanes():
    """Channel counts that leave lanes without a slice, and more bricks per lane than one."""
    rng = np.random.default_rng(11)
    for c, lanes, brick, pack in ((3, 16, 16, False), (20, 4, 2, False), (20, 4, 2, True),
                                  (7, 3, 16, True)):
        rec, _ = _conv(rng, 2, c, (5, 4), 5, (3, 2), (2, 1), (1, 0), 1, 0.5, 0.7, s_out=1)
        cfg = dict(units=2, lanes=lanes, filters_per_unit=2, brick_size=brick, act_mode="skip",
                   weight_mode="gate", pack_taps=pack)
        _assert_same(simulate_cnvlutin(rec, **cfg), simulate_cnvlutin_reference(rec, **cfg))


@pytest.mark.parametrize("c", [1, 3, 20, 48])
def test_dense_baseline_is_one_brick_of_lanes_per_cycle(c):
    """DaDianNao: each cycle a unit takes `lanes` consecutive channels of one tap; taps are never
    packed together. Cycles = passes x sum over windows of valid taps x ceil(C / lanes)."""
    rng = np.random.default_rng(12)
    h, w, k, stride, pad = 7, 5, (3, 2), (2, 1), (1, 2)
    rec, _ = _conv(rng, 1, c, (h, w), 10, k, stride, pad, 1, 1.0, 1.0)
    units, fpu, lanes = 2, 3, 16
    res = simulate_cnvlutin(rec, units=units, lanes=lanes, filters_per_unit=fpu, brick_size=16,
                            act_mode="none", weight_mode="none")
    _, _, oh, ow = rec.outputs.shape
    taps = _valid_taps(h, w, oh, ow, k, stride, pad).sum()
    passes = -(-10 // (units * fpu))
    assert res.cycles.tolist() == [passes * taps * -(-c // lanes)]
    assert res.counters["act_read"] == passes * taps * c
    _check_invariants(res, units, lanes)


def test_alexnet_conv1_baseline_is_121_cycles_per_inner_window():
    """3 input channels, 11x11 kernel: one tap per cycle, 121 cycles for a window off the edge."""
    rng = np.random.default_rng(13)
    rec, _ = _conv(rng, 1, 3, (27, 23), 8, (11, 11), (4, 4), (0, 0), 1, 1.0, 1.0)
    res = simulate_cnvlutin(rec, units=1, lanes=16, filters_per_unit=16, brick_size=16,
                            act_mode="none", weight_mode="none")
    assert res.cycles.tolist() == [121 * 5 * 4]
    packed = simulate_cnvlutin(rec, units=1, lanes=16, filters_per_unit=16, brick_size=16,
                               act_mode="none", weight_mode="none", pack_taps=True)
    assert packed.cycles.tolist() == [-(-121 // 16) * 3 * 5 * 4]  # 24 per window when packed


def test_packed_dense_closed_form():
    rng = np.random.default_rng(14)
    # no padding, every tap valid; brick 4 divides C = 8; 2 bricks per tap x 6 taps = 12 bricks
    rec, _ = _conv(rng, 2, 8, (6, 5), 10, (3, 2), (1, 2), (0, 0), 1, 1.0, 1.0)
    units, fpu, lanes, brick = 2, 3, 5, 4
    passes = -(-10 // (units * fpu))  # 2
    windows = 4 * 2
    kw = dict(units=units, lanes=lanes, filters_per_unit=fpu, brick_size=brick, pack_taps=True)
    res = simulate_cnvlutin(rec, **kw, act_mode="none", weight_mode="none")
    want = passes * windows * -(-12 // lanes) * brick
    assert res.cycles.tolist() == [want, want]
    assert res.counters["mac"] == 2 * rec.geometry.dense_macs
    # skip on fully dense activations costs the same
    assert simulate_cnvlutin(rec, **kw, act_mode="skip", weight_mode="none").cycles.tolist() == [
        want, want]


def test_all_zero_input_costs_one_cycle_per_brick_group():
    rng = np.random.default_rng(15)
    rec, _ = _conv(rng, 1, 8, (5, 6), 4, (3, 2), (1, 2), (0, 1), 1, 0.0, 1.0)
    kw = dict(units=1, filters_per_unit=4, brick_size=2, act_mode="skip", weight_mode="gate")
    _, _, oh, ow = rec.outputs.shape
    taps = _valid_taps(5, 6, oh, ow, (3, 2), (1, 2), (0, 1)).sum()
    res = simulate_cnvlutin(rec, lanes=3, **kw)  # slices of ceil(8/3) = 3 channels: 2 bricks
    assert res.cycles.tolist() == [taps * 2]
    assert res.counters["mac"] == 0 and res.counters["busy_pe_cycles"] == 0
    packed = simulate_cnvlutin(rec, lanes=3, pack_taps=True, **kw)  # 4 bricks per tap, dealt on
    windows = _valid_taps(5, 6, oh, ow, (3, 2), (1, 2), (0, 1)).ravel()
    assert packed.cycles.tolist() == [sum(-(-(4 * t) // 3) for t in windows)]


def test_all_padding_window_costs_nothing():
    """A 1x2 input with padding 2 and 1x1 kernel: only windows on the input cost cycles; the
    others read no activation and their outputs are the bias (the address generator skips
    padding taps)."""
    rng = np.random.default_rng(16)
    rec, x = _conv(rng, 1, 3, (1, 2), 2, (1, 1), (1, 1), (2, 1), 1, 1.0, 1.0)
    res = simulate_cnvlutin(rec, units=1, lanes=2, filters_per_unit=2, brick_size=4,
                            act_mode="none", weight_mode="none")
    assert rec.outputs.shape == (1, 2, 5, 4)
    assert res.cycles.tolist() == [2 * 2]  # 2 windows on the input, ceil(3 / 2) cycles each
    ref = simulate_cnvlutin_reference(rec, units=1, lanes=2, filters_per_unit=2, brick_size=4,
                                      act_mode="none", weight_mode="none")
    _assert_same(res, ref)
    np.testing.assert_allclose(res.outputs[0, :, 0, 0], rec.bias)


def test_short_last_pass_counts_empty_units_idle():
    """5 filters on 2 units of 2: pass 1 fills both units, pass 2 one; the other unit's lanes
    are empty PE-cycles, not busy ones."""
    rng = np.random.default_rng(17)
    rec, _ = _fc(rng, 1, 8, 5, 1.0, 1.0)
    units, lanes = 2, 4
    res = simulate_cnvlutin(rec, units=units, lanes=lanes, filters_per_unit=2, brick_size=2,
                            act_mode="none", weight_mode="none")
    per_pass = 2  # slices of 2 channels per lane, one brick each
    assert res.cycles.tolist() == [2 * per_pass]
    c = res.counters
    assert c["busy_pe_cycles"] == 8 * units + 8 * 1  # every entry on every unit with a filter
    assert c["empty_pe_cycles"] == per_pass * lanes * 1  # pass 2: one unit without a filter
    assert c["tail_pe_cycles"] == 0
    assert c["weight_read"] == 8 * 5  # each activation meets each of the 5 filters once
    section = CnvlutinSection(units=units, lanes=lanes, filters_per_unit=2)
    assert DATAFLOW.multipliers(section) == 16
    _check_invariants(res, units, lanes)


def test_mac_counts_effective_pairs_under_skip_and_gate():
    rng = np.random.default_rng(18)
    rec, x = _fc(rng, 3, 50, 7, 0.4, 0.3)
    res = simulate_cnvlutin(rec, units=1, lanes=4, filters_per_unit=7, brick_size=5,
                            act_mode="skip", weight_mode="gate")
    effective = sum(int(((x[s] != 0)[None, :] & (rec.weight != 0)).sum()) for s in range(3))
    assert res.counters["mac"] == effective
    assert res.counters["act_read"] == int((x != 0).sum())
    assert res.counters["weight_read"] == int((x != 0).sum()) * 7


@pytest.mark.parametrize("pack_taps", [False, True])
def test_functional_outputs_equal_torch_conv(pack_taps):
    rng = np.random.default_rng(19)
    k, stride, pad, dil = (3, 2), (2, 1), (1, 0), (1, 2)
    rec, x = _conv(rng, 3, 6, (7, 9), 4, k, stride, pad, 2, 0.5, 0.5, dil=dil, s_out=2)
    res = simulate_cnvlutin(rec, units=2, lanes=3, filters_per_unit=1, brick_size=2,
                            act_mode="skip", weight_mode="gate", pack_taps=pack_taps)
    want = torch.nn.functional.conv2d(torch.from_numpy(x[:2]), torch.from_numpy(rec.weight),
                                      torch.from_numpy(rec.bias), stride=stride, padding=pad,
                                      dilation=dil, groups=2)
    assert res.outputs.shape == tuple(want.shape) == (2, 4, 4, 7)
    np.testing.assert_allclose(res.outputs, want.numpy(), rtol=1e-5, atol=1e-5)
    ref = simulate_cnvlutin_reference(rec, units=2, lanes=3, filters_per_unit=1, brick_size=2,
                                      act_mode="skip", weight_mode="gate", pack_taps=pack_taps)
    np.testing.assert_allclose(ref.outputs, want.numpy(), rtol=1e-5, atol=1e-5)


def test_functional_outputs_equal_numpy_linear_and_samples_limit():
    rng = np.random.default_rng(20)
    rec, x = _fc(rng, 4, 30, 5, 0.5, 0.5)
    res = simulate_cnvlutin(rec, units=1, lanes=2, filters_per_unit=2, brick_size=4,
                            act_mode="gate", weight_mode="gate", samples=3)
    assert res.cycles.shape == (3,) and res.outputs.shape == (3, 5)
    np.testing.assert_allclose(res.outputs, x[:3] @ rec.weight.T + rec.bias, rtol=1e-5, atol=1e-5)
    assert simulate_cnvlutin(rec, units=1, lanes=2, filters_per_unit=2, brick_size=4,
                             act_mode="gate", weight_mode="gate", functional=False).outputs is None


def test_results_do_not_depend_on_thread_count():
    import numba

    rng = np.random.default_rng(21)
    rec, _ = _conv(rng, 8, 4, (6, 5), 6, (3, 2), (1, 2), (1, 0), 1, 0.3, 0.5)
    cfg = dict(units=2, lanes=4, filters_per_unit=2, brick_size=3, act_mode="skip",
               weight_mode="gate")
    many = simulate_cnvlutin(rec, **cfg)
    old = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        one = simulate_cnvlutin(rec, **cfg)
    finally:
        numba.set_num_threads(old)
    assert many.counters == one.counters and np.array_equal(many.outputs, one.outputs)


@pytest.mark.parametrize("simulate", [simulate_cnvlutin, simulate_cnvlutin_reference])
@pytest.mark.parametrize(
    "kwargs, msg",
    [
        (dict(weight_mode="skip"), "weight"),
        (dict(act_mode="drop"), "activations"),
        (dict(lanes=0), "cnvlutin.lanes"),
        (dict(brick_size=2.5), "cnvlutin.brick_size"),
        (dict(pack_taps="yes"), "cnvlutin.pack_taps"),
    ],
)
def test_bad_config(simulate, kwargs, msg):
    rng = np.random.default_rng(22)
    rec, _ = _fc(rng, 1, 8, 2, 0.5, 0.5)
    cfg = dict(units=1, lanes=2, filters_per_unit=2, brick_size=4, act_mode="skip",
               weight_mode="gate")
    with pytest.raises(AccelsimError, match=msg):
        simulate(rec, **{**cfg, **kwargs})
    assert WEIGHT_SKIP_ERROR == (
        "cnvlutin does not skip zero weights (set sparsity.weights to gate or none)"
    )
    with pytest.raises(AccelsimError, match="samples"):
        simulate_cnvlutin(rec, **cfg, samples=0)


@pytest.mark.parametrize("simulate", [simulate_cnvlutin, simulate_cnvlutin_reference])
def test_inconsistent_geometry_is_an_error(simulate):
    rng = np.random.default_rng(23)
    rec, _ = _conv(rng, 1, 4, (5, 6), 2, (3, 2), (1, 2), (0, 1), 1, 0.5, 0.5)
    g = rec.geometry
    # output height and width swapped: 3x4 is right, 4x3 is not
    rec.geometry = LayerGeometry(g.name, g.kind, g.in_shape, (2, 4, 3), g.kernel, g.stride,
                                 g.padding, g.dilation, g.groups, g.has_bias)
    with pytest.raises(AccelsimError, match="output size"):
        simulate(rec, units=1, lanes=2, filters_per_unit=2, brick_size=4, act_mode="skip",
                 weight_mode="gate")
