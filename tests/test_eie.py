"""EIE-style dataflow: fast recurrence == cycle-by-cycle reference, closed forms, outputs."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from accelsim.dataflows.eie.encoding import eie_columns, stored_entries_per_pe
from accelsim.dataflows.eie.kernel import simulate_eie
from accelsim.dataflows.eie.reference import simulate_eie_reference
from accelsim.errors import AccelsimError
from accelsim.result import TIMING
from accelsim.traces.schema import LayerGeometry, LayerRecord, SparseBatch

MODES = ("skip", "gate", "none")
QUEUES = ("hold", "pop")
COMPARED = TIMING + ("mac", "weight_read", "pointer_read", "act_read", "act_write",
                     "fifo_push", "fifo_pop", "nzd", "pe_cycle")


def make_layer(rng, *, kind="conv2d", c=4, h=5, w=5, m=6, k=(3, 3), stride=(1, 1), pad=(1, 1),
               dil=(1, 1), groups=1, wd=0.5, ad=0.5, samples=2, bias=True, s_out=None):
    if kind == "linear":
        geo = LayerGeometry("fc", "linear", (c,), (m,), has_bias=bias)
        xshape = (samples, c)
    else:
        oh = (h + 2 * pad[0] - dil[0] * (k[0] - 1) - 1) // stride[0] + 1
        ow = (w + 2 * pad[1] - dil[1] * (k[1] - 1) - 1) // stride[1] + 1
        geo = LayerGeometry("conv", "conv2d", (c, h, w), (m, oh, ow), k, stride, pad, dil, groups,
                            bias)
        xshape = (samples, c, h, w)
    weight = rng.standard_normal(geo.weight_shape) * (rng.random(geo.weight_shape) < wd)
    x = rng.standard_normal(xshape) * (rng.random(xshape) < ad)
    s_out = samples if s_out is None else s_out
    return LayerRecord(
        geometry=geo,
        weight=weight.astype(np.float32),
        weight_mask=None,
        bias=rng.standard_normal(m).astype(np.float32) if bias else None,
        inputs=SparseBatch.from_dense(x.astype(np.float32)),
        outputs=np.zeros((s_out, *geo.out_shape), dtype=np.float32),
    )


def torch_outputs(layer):
    geo = layer.geometry
    x = torch.from_numpy(layer.inputs.to_dense())
    wt = torch.from_numpy(layer.weight).double()
    b = None if layer.bias is None else torch.from_numpy(layer.bias).double()
    if geo.kind == "linear":
        return F.linear(x.double(), wt, b).float().numpy()
    return F.conv2d(x.double(), wt, b, stride=geo.stride, padding=geo.padding,
                    dilation=geo.dilation, groups=geo.groups).float().numpy()


def assert_same_as_reference(layer, **kw):
    fast = simulate_eie(layer, **kw)
    ref = simulate_eie_reference(layer, **kw)
    for name in COMPARED:
        assert fast.counters[name] == ref[name], (name, kw)
    assert fast.cycles.tolist() == ref["cycles_per_sample"]
    c = fast.counters
    assert c["busy_pe_cycles"] + c["starve_pe_cycles"] + c["tail_pe_cycles"] == c["pe_cycle"]
    s_out = 0 if layer.outputs is None else layer.outputs.shape[0]
    assert fast.outputs.shape == (s_out, *layer.geometry.out_shape)
    np.testing.assert_allclose(fast.outputs, ref["outputs"][:s_out], rtol=1e-5, atol=1e-5)
    return fast


# Operand values: few distinct magnitudes so ties and zeros are common; shrinks towards 0.
VALUES = st.sampled_from([0.0, 1.0, -1.0, 0.5, -2.0, 3.0])


def drawn_layer(draw, geo: LayerGeometry, samples: int, s_out: int) -> LayerRecord:
    """A layer whose weights, bias and activations are drawn element by element (shrinkable)."""
    weight = draw(hnp.arrays(np.float32, geo.weight_shape, elements=VALUES))
    xshape = (samples, *geo.in_shape)
    x = draw(hnp.arrays(np.float32, xshape, elements=VALUES))
    bias = draw(hnp.arrays(np.float32, (geo.out_shape[0],), elements=VALUES)) if geo.has_bias else None
    return LayerRecord(geometry=geo, weight=weight, weight_mask=None, bias=bias,
                       inputs=SparseBatch.from_dense(x),
                       outputs=np.zeros((s_out, *geo.out_shape), dtype=np.float32))


@st.composite
def cases(draw):
    """Geometry (non-square in every parameter), operands and array, all drawn by hypothesis."""
    kind = draw(st.sampled_from(["linear", "conv2d"]))
    groups = draw(st.sampled_from([1, 2])) if kind == "conv2d" else 1
    m = groups * draw(st.integers(1, 6 if kind == "conv2d" else 24))
    bias = draw(st.booleans())
    if kind == "linear":
        geo = LayerGeometry("fc", "linear", (draw(st.integers(1, 16)),), (m,), has_bias=bias)
    else:
        kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        pad = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
        stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        h = draw(st.integers(max(1, dil[0] * (kh - 1) + 1 - 2 * pad[0]), 5))
        w = draw(st.integers(max(1, dil[1] * (kw - 1) + 1 - 2 * pad[1]), 5))
        c = groups * draw(st.integers(1, 2))
        oh = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
        ow = (w + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
        geo = LayerGeometry("conv", "conv2d", (c, h, w), (m, oh, ow), (kh, kw), stride, pad, dil,
                            groups, bias)
    samples = draw(st.integers(1, 2))
    layer = drawn_layer(draw, geo, samples, draw(st.integers(0, samples)))
    sim_kw = dict(num_pes=draw(st.sampled_from([1, 2, 3, 4, 7, 16, 64])),
                  fifo_depth=draw(st.integers(1, 16)), index_bits=draw(st.integers(1, 4)),
                  empty_slice_cycles=draw(st.integers(0, 2)), act_mode=draw(st.sampled_from(MODES)),
                  weight_mode=draw(st.sampled_from(MODES)), queue=draw(st.sampled_from(QUEUES)))
    return layer, sim_kw


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_fast_equals_cycle_reference(case):
    layer, kw = case
    fast = assert_same_as_reference(layer, **kw)
    if kw["num_pes"] == 1:
        assert fast.counters["tail_pe_cycles"] == 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_hold_depth_one_more_is_pop(case):
    """A held head occupies the slot a popped one frees: hold at depth D + 1 times exactly like
    pop at depth D (every timing counter), and hold at depth 1 is lockstep:
    T = sum over broadcasts j of (1 + max_p cost_p(j))."""
    layer, kw = case
    pop = simulate_eie(layer, **{**kw, "queue": "pop"}, functional=False)
    hold = simulate_eie(layer, **{**kw, "queue": "hold", "fifo_depth": kw["fifo_depth"] + 1},
                        functional=False)
    assert hold.cycles.tolist() == pop.cycles.tolist()
    assert {k: hold.counters[k] for k in COMPARED} == {k: pop.counters[k] for k in COMPARED}
    one = simulate_eie(layer, **{**kw, "queue": "hold", "fifo_depth": 1}, functional=False)
    ref = simulate_eie_reference(layer, **{**kw, "queue": "hold", "fifo_depth": 1})
    assert one.cycles.tolist() == ref["cycles_per_sample"]
    assert one.counters["stall_cycles"] == ref["stall_cycles"]


@pytest.mark.parametrize("queue", QUEUES)
@pytest.mark.parametrize("act_mode", MODES)
@pytest.mark.parametrize("weight_mode", MODES)
def test_all_modes_on_a_grouped_strided_conv(act_mode, weight_mode, queue):
    rng = np.random.default_rng(7)
    layer = make_layer(rng, c=4, h=6, w=5, m=10, k=(3, 2), stride=(2, 1), pad=(1, 0), dil=(1, 2),
                       groups=2, wd=0.3, ad=0.4)
    for depth in (1, 2):
        assert_same_as_reference(layer, num_pes=3, fifo_depth=depth, index_bits=1,
                                 empty_slice_cycles=1, act_mode=act_mode, weight_mode=weight_mode,
                                 queue=queue)


@pytest.mark.parametrize("depth", [1, 2, 64])
@pytest.mark.parametrize("m, n_pes", [(64, 16), (12, 4), (8, 8)])
def test_dense_fc_closed_form(m, n_pes, depth):
    """All modes "none", N divides M: each PE owns c = M/N rows. Pop: the PEs never starve after
    cycle 0, so T = n c + 1 for every depth; D >= n never stalls, D = 1 stalls (n - 2)(c - 1)
    cycles. Hold at depth D + 1 is pop at depth D; hold at depth 1 is lockstep: every broadcast
    waits for the PEs to finish the previous one, T = n (c + 1), stalling c cycles each time."""
    n = 20
    layer = make_layer(np.random.default_rng(1), kind="linear", c=n, m=m, wd=0.5, ad=0.5)
    cost = m // n_pes
    kw = dict(num_pes=n_pes, index_bits=4, empty_slice_cycles=1, act_mode="none",
              weight_mode="none")
    r = simulate_eie(layer, fifo_depth=depth, queue="pop", **kw)
    assert r.cycles.tolist() == [n * cost + 1] * 2
    c = r.counters
    assert c["busy_pe_cycles"] == 2 * n_pes * n * cost
    assert c["starve_pe_cycles"] == 2 * n_pes and c["tail_pe_cycles"] == 0
    assert c["mac"] == c["weight_read"] == 2 * m * n and c["padding_entries"] == 0
    assert c["fifo_push"] == c["fifo_pop"] == c["pointer_read"] == 2 * n_pes * n
    if depth >= n:
        assert c["stall_cycles"] == 0
    if depth == 1:
        assert c["stall_cycles"] == 2 * (n - 2) * (cost - 1)
    held = simulate_eie(layer, fifo_depth=depth + 1, queue="hold", **kw)
    assert held.cycles.tolist() == r.cycles.tolist() and held.counters == c
    lock = simulate_eie(layer, fifo_depth=1, queue="hold", **kw).counters
    assert lock["cycles"] == 2 * n * (cost + 1) and lock["stall_cycles"] == 2 * (n - 1) * cost
    assert lock["starve_pe_cycles"] == 2 * n_pes * n
    assert lock["busy_pe_cycles"] == c["busy_pe_cycles"]


def test_dense_fc_uneven_rows_tail():
    """M = qN + r, D >= n: r PEs hold q + 1 rows and finish at n(q + 1) + 1; the others idle
    n cycles at the end."""
    n, m, n_pes = 10, 22, 8
    layer = make_layer(np.random.default_rng(2), kind="linear", c=n, m=m)
    r = simulate_eie(layer, num_pes=n_pes, fifo_depth=16, index_bits=4, empty_slice_cycles=1,
                     act_mode="none", weight_mode="none", samples=1)
    assert r.cycles.tolist() == [n * 3 + 1]
    assert r.counters["tail_pe_cycles"] == (n_pes - m % n_pes) * n


def test_empty_slices_cost_zero_or_one():
    """All-zero weights, skip: every slice is empty. With cost 0 each activation is consumed
    the cycle after its broadcast (T = n); with cost 1 the PEs keep pace (T = n + 1)."""
    layer = make_layer(np.random.default_rng(3), kind="linear", c=12, m=8, wd=0.0, ad=1.0)
    for es, expect in ((0, 12), (1, 13)):
        r = simulate_eie(layer, num_pes=4, fifo_depth=4, index_bits=4, empty_slice_cycles=es,
                         act_mode="skip", weight_mode="skip")
        assert r.cycles.tolist() == [expect, expect]
        assert r.counters["weight_read"] == 0 and r.counters["mac"] == 0
        assert r.counters["busy_pe_cycles"] == 2 * 4 * 12 * es


def test_all_zero_input_takes_no_time():
    layer = make_layer(np.random.default_rng(4), kind="linear", c=12, m=8, ad=0.0)
    r = simulate_eie(layer, num_pes=4, fifo_depth=4, index_bits=4, empty_slice_cycles=1,
                     act_mode="skip", weight_mode="skip")
    assert r.cycles.tolist() == [0, 0]
    assert r.counters["pe_cycle"] == 0 and r.counters["fifo_push"] == 0
    assert r.counters["nzd"] == 24 and r.counters["act_write"] == 16
    np.testing.assert_allclose(r.outputs, np.broadcast_to(layer.bias, (2, 8)))


def test_padding_entries_follow_relative_index_rule():
    """Column with non-zeros at rows 1 and 37, N = 2: PE 1 holds local rows 0 and 18, so z = 17
    zeros -> floor(17 / 2^b) padding entries; PE 0 holds nothing."""
    geo = LayerGeometry("fc", "linear", (1,), (40,))
    weight = np.zeros((40, 1), dtype=np.float32)
    weight[[1, 37], 0] = 1.0
    for bits, pads in ((1, 8), (2, 4), (4, 1), (5, 0)):
        cols = eie_columns(weight, geo, num_pes=2, index_bits=bits)
        assert cols.padding.tolist() == [[0], [pads]]
        assert cols.entries("skip").tolist() == [[0], [2 + pads]]
        assert cols.entries("none").tolist() == [[20], [20]]
    # the group's first row of the PE is local row 0: group 1 starts at m = 20 (PE 0 row 20)
    geo = LayerGeometry("c", "conv2d", (2, 1, 1), (40, 1, 1), groups=2)
    weight = np.zeros((40, 1, 1, 1), dtype=np.float32)
    weight[36, 0, 0, 0] = 1.0  # group 1 (rows 20..39), PE 0 local rows 20, 22, .., 36 -> z = 8
    cols = eie_columns(weight, geo, num_pes=2, index_bits=2)
    assert cols.padding.tolist() == [[0, 2], [0, 0]]
    layer = LayerRecord(geo, weight, None, None, SparseBatch.from_dense(np.ones((1, 2, 1, 1))))
    assert stored_entries_per_pe(layer, 2, 2).tolist() == [3, 0]


@pytest.mark.parametrize("weight_mode", MODES)
def test_functional_outputs_match_torch(weight_mode):
    rng = np.random.default_rng(5)
    for layer in (
        make_layer(rng, kind="linear", c=30, m=17, wd=0.4, ad=0.5, samples=3),
        make_layer(rng, c=4, h=7, w=6, m=6, k=(3, 3), stride=(2, 1), pad=(1, 2), dil=(1, 2),
                   groups=2, samples=3, s_out=2),
    ):
        r = simulate_eie(layer, num_pes=4, fifo_depth=8, index_bits=4, empty_slice_cycles=1,
                         act_mode="skip", weight_mode=weight_mode)
        s_out = layer.outputs.shape[0]
        assert r.outputs.shape == (s_out, *layer.geometry.out_shape)
        np.testing.assert_allclose(r.outputs, torch_outputs(layer)[:s_out], rtol=1e-5, atol=1e-5)


def test_effective_macs_and_gating():
    """mac counts exactly the pairs each mode pays for: skip/gate both drop zero operands."""
    rng = np.random.default_rng(6)
    layer = make_layer(rng, c=3, h=5, w=7, m=4, k=(3, 2), stride=(1, 2), pad=(1, 0), wd=0.5,
                       ad=0.5, samples=2)  # non-square everywhere: x and y cannot be swapped
    x = layer.inputs.to_dense()
    ones_w = torch.from_numpy((layer.weight != 0).astype(np.float32)).double()
    full_w = torch.ones_like(ones_w)
    nz_x = torch.from_numpy((x != 0).astype(np.float64))
    all_x = torch.ones_like(nz_x)

    def pairs(xx, ww):
        return int(F.conv2d(xx, ww, stride=(1, 2), padding=(1, 0)).sum().round())

    kw = dict(num_pes=3, fifo_depth=4, index_bits=2, empty_slice_cycles=1)
    expect = {("skip", "skip"): pairs(nz_x, ones_w), ("gate", "gate"): pairs(nz_x, ones_w),
              ("none", "none"): pairs(all_x, full_w), ("gate", "none"): pairs(nz_x, full_w),
              ("none", "skip"): pairs(all_x, ones_w)}
    for (am, wm), macs in expect.items():
        r = simulate_eie(layer, act_mode=am, weight_mode=wm, **kw)
        assert r.counters["mac"] == macs, (am, wm)
    # geometry.dense_macs also counts taps on zero padding; the array never sees those
    assert expect[("none", "none")] < 2 * layer.geometry.dense_macs
    unpadded = make_layer(rng, c=3, h=5, w=6, m=4, k=(3, 2), pad=(0, 0), samples=2)
    r = simulate_eie(unpadded, act_mode="none", weight_mode="none", **kw)
    assert r.counters["mac"] == 2 * unpadded.geometry.dense_macs


def test_bit_identical_across_thread_counts():
    layer = make_layer(np.random.default_rng(8), c=8, h=9, w=9, m=16, wd=0.3, ad=0.4, samples=6)
    kw = dict(num_pes=8, fifo_depth=4, index_bits=2, empty_slice_cycles=1, act_mode="skip",
              weight_mode="skip")
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = simulate_eie(layer, **kw)
    finally:
        numba.set_num_threads(before)
    many = simulate_eie(layer, **kw)
    assert one.counters == many.counters and one.cycles.tolist() == many.cycles.tolist()
    assert one.outputs.tobytes() == many.outputs.tobytes()


def test_samples_limit_and_bad_arguments():
    layer = make_layer(np.random.default_rng(9), kind="linear", c=10, m=5, samples=3)
    kw = dict(num_pes=2, fifo_depth=2, index_bits=4, empty_slice_cycles=1, act_mode="skip",
              weight_mode="skip")
    full = simulate_eie(layer, **kw)
    part = simulate_eie(layer, samples=2, **kw)
    assert part.cycles.tolist() == full.cycles.tolist()[:2]
    assert part.outputs.shape == (2, 5)
    assert simulate_eie(layer, functional=False, **kw).outputs is None
    with pytest.raises(AccelsimError, match="eie.fifo_depth must be an integer >= 1"):
        simulate_eie(layer, **{**kw, "fifo_depth": 0})
    with pytest.raises(AccelsimError, match="eie.queue must be one of"):
        simulate_eie(layer, **{**kw, "queue": "fifo"})
    with pytest.raises(AccelsimError, match="sparsity.activations must be one of"):
        simulate_eie(layer, **{**kw, "act_mode": "skp"})
    bad = LayerRecord(layer.geometry, layer.weight[:, :4], None, None, layer.inputs)
    with pytest.raises(AccelsimError, match="layer 'fc': weight shape"):
        simulate_eie(bad, **kw)


def test_tables_past_the_memory_limit_are_refused_before_allocation(monkeypatch):
    import accelsim.dataflows.eie.kernel as kernel

    layer = make_layer(np.random.default_rng(0), kind="linear", c=8, m=8)
    monkeypatch.setattr(kernel, "MAX_TABLE_BYTES", 100)
    with pytest.raises(AccelsimError, match=r"layer 'fc': 4 PEs need .* GiB of EIE cost tables"):
        simulate_eie(layer, num_pes=4, fifo_depth=2, index_bits=4, empty_slice_cycles=1,
                     act_mode="skip", weight_mode="skip")
