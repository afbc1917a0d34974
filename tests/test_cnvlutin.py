"""Cnvlutin-style dataflow: fast kernel == per-cycle reference; closed forms; functional outputs."""

import numpy as np
import pytest
import torch

from accelsim.dataflows.cnvlutin.kernel import WEIGHT_SKIP_ERROR, simulate_cnvlutin
from accelsim.dataflows.cnvlutin.reference import simulate_cnvlutin_reference
from accelsim.errors import AccelsimError
from accelsim.traces.schema import LayerGeometry, LayerRecord, SparseBatch

MODES = [(a, w) for a in ("skip", "gate", "none") for w in ("gate", "none")]


def _conv(rng, s, c, h, w, m, k, stride, pad, dil, groups, act_density, w_density, s_out=None):
    h, w = (max(v, dil * (k - 1) + 1 - 2 * pad, 1) for v in (h, w))  # at least one output
    oh = (h + 2 * pad - dil * (k - 1) - 1) // stride + 1
    ow = (w + 2 * pad - dil * (k - 1) - 1) // stride + 1
    geo = LayerGeometry("conv", "conv2d", (c, h, w), (m, oh, ow), (k, k), (stride, stride),
                        (pad, pad), (dil, dil), groups, True)
    x = rng.standard_normal((s, c, h, w)).astype(np.float32)
    x *= rng.random((s, c, h, w)) < act_density
    wt = rng.standard_normal(geo.weight_shape).astype(np.float32)
    wt *= rng.random(geo.weight_shape) < w_density
    s_out = s if s_out is None else s_out
    return LayerRecord(geo, wt, None, rng.standard_normal(m).astype(np.float32),
                       SparseBatch.from_dense(x),
                       outputs=np.zeros((s_out, m, oh, ow), np.float32)), x


def _fc(rng, s, f, m, act_density, w_density):
    geo = LayerGeometry("fc", "linear", (f,), (m,), has_bias=True)
    x = rng.standard_normal((s, f)).astype(np.float32) * (rng.random((s, f)) < act_density)
    wt = rng.standard_normal((m, f)).astype(np.float32) * (rng.random((m, f)) < w_density)
    return LayerRecord(geo, wt, None, rng.standard_normal(m).astype(np.float32),
                       SparseBatch.from_dense(x), outputs=np.zeros((s, m), np.float32)), x


def _assert_same(fast, ref):
    assert fast.counters == ref.counters
    assert fast.cycles.tolist() == ref.cycles.tolist()
    assert fast.num_units == ref.num_units
    if ref.outputs is None:
        assert fast.outputs is None
    else:
        np.testing.assert_allclose(fast.outputs, ref.outputs, rtol=1e-5, atol=1e-5)


def test_fast_equals_reference_on_random_layers():
    rng = np.random.default_rng(11)
    for case in range(150):
        act_mode, weight_mode = MODES[case % len(MODES)]
        cfg = dict(units=int(rng.integers(1, 4)), lanes=int(rng.integers(1, 17)),
                   filters_per_unit=int(rng.integers(1, 4)), brick_size=int(rng.integers(1, 17)),
                   act_mode=act_mode, weight_mode=weight_mode)
        dens = float(rng.choice([0.0, 0.1, 0.5, 0.9, 1.0]))
        if case % 3 == 0:
            rec, _ = _fc(rng, 2, int(rng.integers(1, 40)), int(rng.integers(1, 9)), dens, 0.6)
        else:
            groups = int(rng.choice([1, 2]))
            rec, _ = _conv(rng, 2, groups * int(rng.integers(1, 6)), int(rng.integers(1, 6)),
                           int(rng.integers(1, 6)), groups * int(rng.integers(1, 4)),
                           int(rng.integers(1, 4)), int(rng.integers(1, 3)),
                           int(rng.integers(0, 2)),
                           int(rng.integers(1, 3)), groups, dens, 0.6, s_out=1)
        fast = simulate_cnvlutin(rec, **cfg)
        ref = simulate_cnvlutin_reference(rec, **cfg)
        _assert_same(fast, ref)
        c = fast.counters
        assert c["busy_pe_cycles"] + c["tail_pe_cycles"] == c["pe_cycle"]


def test_dense_closed_form():
    rng = np.random.default_rng(12)
    # no padding, every tap valid; brick 4 divides C = 8; 2 bricks per tap x 9 taps = 18 bricks
    rec, _ = _conv(rng, 2, 8, 6, 6, 10, 3, 1, 0, 1, 1, 1.0, 1.0)
    units, fpu, lanes, brick = 2, 3, 4, 4
    passes = -(-10 // (units * fpu))  # 2
    windows = 4 * 4
    res = simulate_cnvlutin(rec, units=units, lanes=lanes, filters_per_unit=fpu, brick_size=brick,
                            act_mode="none", weight_mode="none")
    want = passes * windows * -(-18 // lanes) * brick
    assert res.cycles.tolist() == [want, want]
    assert res.counters["mac"] == 2 * rec.geometry.dense_macs
    # skip on fully dense activations costs the same; on an all-zero input, 1 cycle per group
    skip = simulate_cnvlutin(rec, units=units, lanes=lanes, filters_per_unit=fpu, brick_size=brick,
                             act_mode="skip", weight_mode="none")
    assert skip.cycles.tolist() == [want, want]


def test_all_zero_input_costs_one_cycle_per_brick_group():
    rng = np.random.default_rng(13)
    rec, _ = _conv(rng, 1, 8, 5, 5, 4, 3, 1, 0, 1, 1, 0.0, 1.0)
    res = simulate_cnvlutin(rec, units=1, lanes=4, filters_per_unit=4, brick_size=4,
                            act_mode="skip", weight_mode="gate")
    assert res.cycles.tolist() == [9 * -(-18 // 4)]  # 3x3 windows, ceil(18 / 4) groups each
    assert res.counters["mac"] == 0 and res.counters["busy_pe_cycles"] == 0


def test_mac_counts_effective_pairs_under_skip_and_gate():
    rng = np.random.default_rng(14)
    rec, x = _fc(rng, 3, 50, 7, 0.4, 0.3)
    res = simulate_cnvlutin(rec, units=1, lanes=4, filters_per_unit=7, brick_size=5,
                            act_mode="skip", weight_mode="gate")
    effective = sum(int(((x[s] != 0)[None, :] & (rec.weight != 0)).sum()) for s in range(3))
    assert res.counters["mac"] == effective
    assert res.counters["act_read"] == int((x != 0).sum())
    assert res.counters["weight_read"] == int((x != 0).sum()) * 7


def test_functional_outputs_equal_torch_conv():
    rng = np.random.default_rng(15)
    rec, x = _conv(rng, 3, 6, 7, 7, 4, 3, 2, 1, 1, 2, 0.5, 0.5, s_out=2)
    res = simulate_cnvlutin(rec, units=2, lanes=3, filters_per_unit=1, brick_size=2,
                            act_mode="skip", weight_mode="gate")
    want = torch.nn.functional.conv2d(torch.from_numpy(x[:2]), torch.from_numpy(rec.weight),
                                      torch.from_numpy(rec.bias), stride=2, padding=1, groups=2)
    assert res.outputs.shape == (2, 4, 4, 4)
    np.testing.assert_allclose(res.outputs, want.numpy(), rtol=1e-5, atol=1e-5)


def test_functional_outputs_equal_numpy_linear_and_samples_limit():
    rng = np.random.default_rng(16)
    rec, x = _fc(rng, 4, 30, 5, 0.5, 0.5)
    res = simulate_cnvlutin(rec, units=1, lanes=2, filters_per_unit=2, brick_size=4,
                            act_mode="gate", weight_mode="gate", samples=3)
    assert res.cycles.shape == (3,) and res.outputs.shape == (3, 5)
    np.testing.assert_allclose(res.outputs, x[:3] @ rec.weight.T + rec.bias, rtol=1e-5, atol=1e-5)
    assert simulate_cnvlutin(rec, units=1, lanes=2, filters_per_unit=2, brick_size=4,
                             act_mode="gate", weight_mode="gate", functional=False).outputs is None


def test_results_do_not_depend_on_thread_count():
    import numba

    rng = np.random.default_rng(17)
    rec, _ = _conv(rng, 8, 4, 6, 6, 6, 3, 1, 1, 1, 1, 0.3, 0.5)
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


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        (dict(weight_mode="skip"), "cnvlutin does not skip zero weights"),
        (dict(act_mode="drop"), "sparsity.activations"),
        (dict(lanes=0), "cnvlutin.lanes"),
        (dict(brick_size=2.5), "cnvlutin.brick_size"),
        (dict(samples=0), "samples"),
    ],
)
def test_bad_config(kwargs, msg):
    rng = np.random.default_rng(18)
    rec, _ = _fc(rng, 1, 8, 2, 0.5, 0.5)
    cfg = dict(units=1, lanes=2, filters_per_unit=2, brick_size=4, act_mode="skip",
               weight_mode="gate")
    with pytest.raises(AccelsimError, match=msg):
        simulate_cnvlutin(rec, **{**cfg, **kwargs})
    assert WEIGHT_SKIP_ERROR == (
        "cnvlutin does not skip zero weights (set sparsity.weights to gate or none)"
    )


def test_inconsistent_geometry_is_an_error():
    rng = np.random.default_rng(19)
    rec, _ = _conv(rng, 1, 4, 5, 5, 2, 3, 1, 0, 1, 1, 0.5, 0.5)
    rec.weight = rec.weight[:, :2]
    with pytest.raises(AccelsimError, match="weight shape"):
        simulate_cnvlutin(rec, units=1, lanes=2, filters_per_unit=2, brick_size=4,
                          act_mode="skip", weight_mode="gate")
