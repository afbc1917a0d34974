"""Hardware top-k unit: step-by-step references prove the compiled selection machines and the
cost formulas; the unit's masks are checked against selections written out here, in plain
Python, independently of accelsim.maskfn and accelsim.selection."""

import math

import numpy as np
import pytest

from accelsim.errors import AccelsimError
from accelsim.selection import bitonic_order, insertion_cells, radix_keys, radix_winners
from accelsim.topk import (
    bitonic_cost,
    bitonic_network_reference,
    insertion_cost,
    insertion_unit_reference,
    radix_cost,
    radix_select_reference,
    simulate_topk,
)
from accelsim.traces.schema import LayerGeometry, LayerRecord, MaskParams, SparseBatch


# ---- the mask definitions, written out (docs/hardware-model.md, "Mask definition")

def _k(n, rate):
    return min(max(math.floor(rate * n + 0.5), 1), n)


def _ranked(row):
    """Indices by |a| descending, the lower index first on a tie."""
    return sorted(range(len(row)), key=lambda i: (-abs(float(row[i])), i))


def _py_topk(pre, rate):
    mask = np.zeros(pre.shape, bool)
    for r, row in enumerate(pre):
        mask[r, _ranked(row)[: _k(len(row), rate)]] = True
    return mask


def _py_theta(pre, rate, eps):
    stride = max(1, round(1 / eps))
    out = []
    for row in pre:
        sub = sorted((abs(float(v)) for v in row[::stride]), reverse=True)
        k_s = _k(len(sub), rate)
        out.append(0.0 if k_s == len(sub) else sub[k_s])
    return np.array(out, np.float32)


def _py_threshold_prediction(pre, rate, eps):
    theta = _py_theta(pre, rate, eps)
    return np.abs(pre) > theta[:, None], theta


def _py_static(pre, theta):
    return np.abs(pre) > np.float32(theta)

EXACT_SCHEMES = ("bitonic", "insertion", "radix")
UNIT = dict(comparators=8, value_bits=16, radix_bits=4)


def _record(pre: np.ndarray, mask: np.ndarray, params: MaskParams) -> LayerRecord:
    """A linear layer whose input went through a dynamic mask (shape (S, n))."""
    s, n = pre.shape
    geo = LayerGeometry("fc", "linear", (n,), (3,))
    return LayerRecord(
        geometry=geo,
        weight=np.ones((3, n), np.float32),
        weight_mask=None,
        bias=None,
        inputs=SparseBatch.from_dense(pre * mask),
        premask=SparseBatch.from_dense(pre),
        act_mask=SparseBatch.positions_from_bool(mask),
        mask_params=params,
    )


def _tied(s=6, n=100, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(-6, 7, size=(s, n)) * 0.5).astype(np.float32)  # many ties and zeros


def test_bitonic_reference_sorts_and_matches_counts():
    rng = np.random.default_rng(3)
    for n in list(range(1, 20)) + [31, 32, 33, 64, 100]:
        vals = rng.integers(-4, 5, size=n).astype(np.float32)
        for p in (1, 3, 8, 64):
            ref = bitonic_network_reference(vals, p)
            want = sorted(range(n), key=lambda i: (-abs(vals[i]), i))
            assert ref["order"].tolist() == want
            lat, cmp = bitonic_cost(np.array([n]), p)
            m = (n - 1).bit_length()
            assert ref["stages"] == m * (m + 1) // 2
            assert (ref["cycles"], ref["compares"]) == (lat[0], cmp[0])


def test_insertion_reference_matches_formula_and_topk():
    rng = np.random.default_rng(4)
    for n in (1, 2, 5, 17, 40):
        vals = rng.integers(-3, 4, size=n).astype(np.float32)
        for k in sorted({0, 1, 2, n // 2, n}):
            for p in (1, 2, 7):
                ref = insertion_unit_reference(vals, k, p)
                lat, cmp = insertion_cost(np.array([n]), np.array([k]), p)
                assert (ref["cycles"], ref["compares"]) == (lat[0], cmp[0])
                want = sorted(sorted(range(n), key=lambda i: (-abs(vals[i]), i))[:k])
                assert ref["kept"].tolist() == want
                if k >= 1:
                    assert ref["kept"].tolist() == np.flatnonzero(_topk_k(vals, k)).tolist()


def _topk_k(vals, k):
    order = np.argsort(-np.abs(vals), kind="stable")[:k]
    m = np.zeros(vals.shape[0], bool)
    m[order] = True
    return m


def test_cost_formulas_hand_numbers():
    n = np.array([100])
    assert [int(v[0]) for v in bitonic_cost(n, 8)] == [224, 1792]  # m=7: 28 stages x 64 / 8
    assert [int(v[0]) for v in insertion_cost(n, np.array([10]), 8)] == [23, 945]  # 13+10; 45+90*10
    assert [int(v[0]) for v in radix_cost(n, 8, 16, 4)] == [116, 400]  # 4 x (13 + 16); 4 x 100
    assert [int(v[0]) for v in bitonic_cost(np.array([1]), 4)] == [0, 0]


@pytest.mark.parametrize("scheme", EXACT_SCHEMES)
def test_exact_schemes_reproduce_a_topk_trace(scheme):
    pre = _tied()
    mask = _py_topk(pre, 0.1)
    rec = _record(pre, mask, MaskParams("topk", winner_rate=0.1))
    res = simulate_topk(rec, scheme=scheme, **UNIT)
    assert res.exact and res.mismatches.tolist() == [0] * 6
    assert res.kept.tolist() == [10] * 6
    assert res.barrier == (scheme != "insertion")
    expected = {"bitonic": (224, 1792), "insertion": (23, 945), "radix": (116, 400)}[scheme]
    assert (int(res.latency[0]), int(res.compares[0])) == expected
    assert res.counters["topk_compare"] == 6 * expected[1]
    if scheme != "insertion":
        assert (res.exposed == res.latency).all()


def test_insertion_hides_behind_the_producer():
    pre = _tied(s=3)
    rec = _record(pre, _py_topk(pre, 0.1), MaskParams("topk", winner_rate=0.1))
    res = simulate_topk(rec, scheme="insertion", producer_cycles=np.array([0, 5, 1000]), **UNIT)
    assert res.latency.tolist() == [23, 23, 23]
    assert res.exposed.tolist() == [23, 18, 10]  # the drain (k = 10) is never hidden


def test_threshold_scheme_measures_mismatches():
    pre = _tied(s=8, n=100, seed=5)
    mask = _py_topk(pre, 0.1)
    rec = _record(pre, mask, MaskParams("topk", winner_rate=0.1))
    res = simulate_topk(rec, scheme="threshold", **UNIT)
    pred, theta = _py_threshold_prediction(pre, 0.1, 0.1)
    assert not res.exact and not res.barrier
    assert res.mismatches.tolist() == np.count_nonzero(pred != mask, axis=1).tolist()
    assert res.mismatches.sum() > 0  # with eps = 0.1 the prediction is not exact here
    assert res.kept.tolist() == pred.sum(axis=1).tolist()
    assert np.array_equal(res.theta, theta)
    # eps 0.1 -> stride 10, n_s = 10: bitonic on 10 (m=4: 10 stages x 8 / 8) then 100 streamed
    assert res.exposed.tolist() == [10] * 8
    assert res.latency.tolist() == [10 + 13] * 8
    assert res.compares.tolist() == [80 + 100] * 8


def test_threshold_prediction_trace_is_recomputed_exactly():
    pre = _tied(s=4, n=90, seed=6)
    mask, _ = _py_threshold_prediction(pre, 0.2, 0.25)
    rec = _record(pre, mask, MaskParams("threshold-prediction", winner_rate=0.2, eps=0.25))
    for scheme in ("bitonic", "insertion", "radix", "threshold"):
        res = simulate_topk(rec, scheme=scheme, **UNIT)
        assert res.mismatches.tolist() == [0] * 4, scheme
        assert res.kept.tolist() == mask.sum(axis=1).tolist()
    res = simulate_topk(rec, scheme="threshold", **UNIT)
    assert res.extra["subsample"] == len(range(0, 90, 4))  # stride round(1/0.25) = 4


def test_static_threshold_trace():
    pre = _tied(s=3, n=50, seed=7)
    mask = _py_static(pre, 1.0)
    rec = _record(pre, mask, MaskParams("static-threshold", threshold=1.0))
    res = simulate_topk(rec, scheme="threshold", **UNIT)
    assert res.mismatches.tolist() == [0, 0, 0]
    assert res.exposed.tolist() == [0, 0, 0]  # a known theta needs no selection
    assert res.compares.tolist() == [50, 50, 50]
    res = simulate_topk(rec, scheme="insertion", **UNIT)
    assert res.mismatches.sum() == 0 and (res.kept == mask.sum(axis=1)).all()


def test_a_wrong_trace_mask_is_caught():
    pre = _tied(s=2, n=60, seed=8)
    mask = _py_topk(pre, 0.2)
    bad = mask.copy()
    win, lose = np.flatnonzero(bad[1])[0], np.flatnonzero(~bad[1])[0]
    bad[1, win], bad[1, lose] = False, True
    rec = _record(pre, bad, MaskParams("topk", winner_rate=0.2))
    res = simulate_topk(rec, scheme="bitonic", **UNIT)
    assert res.mismatches.tolist() == [0, 2]


def test_chunked_densify_matches(monkeypatch):
    import accelsim.topk as topk

    pre = _tied(s=7, n=40, seed=9)
    rec = _record(pre, _py_topk(pre, 0.3), MaskParams("topk", winner_rate=0.3))
    monkeypatch.setattr(topk, "_CHUNK_ELEMENTS", 50)  # one sample per chunk
    res = simulate_topk(rec, scheme="threshold", **UNIT)
    pred, _ = _py_threshold_prediction(pre, 0.3, 0.1)
    assert res.kept.tolist() == pred.sum(axis=1).tolist()


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        (dict(scheme="quick"), "topk.scheme"),
        (dict(scheme="bitonic", comparators=0), "topk.comparators"),
        (dict(scheme="radix", radix_bits=20), "topk.radix_bits"),
        (dict(scheme="insertion", producer_cycles=np.zeros(3)), "producer_cycles"),
    ],
)
def test_bad_options(kwargs, msg):
    pre = _tied(s=2, n=20)
    rec = _record(pre, _py_topk(pre, 0.5), MaskParams("topk", winner_rate=0.5))
    args = {**UNIT, **kwargs}
    with pytest.raises(AccelsimError, match=msg):
        simulate_topk(rec, **args)


def test_layer_without_mask_is_an_error():
    pre = _tied(s=1, n=10)
    rec = _record(pre, pre != 0, MaskParams("topk", winner_rate=0.5))
    rec.premask = None
    with pytest.raises(AccelsimError, match="no dynamic activation mask"):
        simulate_topk(rec, scheme="bitonic", **UNIT)


@pytest.mark.parametrize("scheme_params", [
    dict(scheme="topk", winner_rate=0.15),
    dict(scheme="threshold-prediction", winner_rate=0.3, eps=0.2),
    dict(scheme="static-threshold", threshold=1.0),
])
def test_zero_mismatches_on_masks_made_by_the_zoo(scheme_params):
    import torch

    from accelsim.models import masks
    mod = masks.ActivationMask(**scheme_params)
    x = torch.from_numpy(_tied(s=5, n=4 * 3 * 3, seed=10).reshape(5, 4, 3, 3))
    m = mod.compute_mask(x).numpy().reshape(5, -1)
    pre = x.numpy().reshape(5, -1)
    p = mod.mask_params()
    rec = _record(pre, m, MaskParams(p["scheme"], p["winner_rate"], p["threshold"], p["eps"]))
    for scheme in EXACT_SCHEMES:
        res = simulate_topk(rec, scheme=scheme, **UNIT)
        assert res.mismatches.tolist() == [0] * 5
        assert res.kept.tolist() == m.sum(axis=1).tolist()
    if scheme_params["scheme"] != "topk":  # the threshold unit reproduces threshold masks too
        assert simulate_topk(rec, scheme="threshold", **UNIT).mismatches.sum() == 0


# ---- the compiled machines that decide the unit's masks equal their step-by-step references

def _rows(seed, count=40):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        n = int(rng.integers(1, 70))
        yield (rng.integers(-5, 6, size=n) * rng.choice([0.25, 1.0, 3.0])).astype(np.float32)


def test_bitonic_machine_equals_the_network_reference_and_the_definition():
    for vals in _rows(11):
        order = bitonic_order(np.abs(vals))
        assert order.tolist() == bitonic_network_reference(vals, 4)["order"].tolist()
        assert order.tolist() == _ranked(vals)


def test_insertion_machine_equals_the_cell_reference_and_the_definition():
    for vals in _rows(12):
        n = len(vals)
        for k in sorted({1, 2, n // 3 + 1, n}):
            kept = sorted(insertion_cells(np.abs(vals), k).tolist())
            assert kept == insertion_unit_reference(vals, k, 3)["kept"].tolist()
            assert kept == sorted(_ranked(vals)[:k])


@pytest.mark.parametrize("key_bits, radix_bits", [(32, 4), (32, 8), (16, 4), (16, 3), (7, 2)])
def test_radix_machine_equals_the_pass_reference_and_the_cost_formula(key_bits, radix_bits):
    for vals in _rows(13 + key_bits + radix_bits, count=25):
        n = len(vals)
        keys = radix_keys(np.abs(vals), key_bits)
        for k in sorted({1, n // 2 + 1, n}):
            got = np.flatnonzero(radix_winners(keys, k, key_bits, radix_bits)).tolist()
            ref = radix_select_reference(vals, k, 5, key_bits, radix_bits)
            assert got == ref["kept"].tolist()
            # the definition on keys: largest key first, the lower index first on a tie
            want = sorted(sorted(range(n), key=lambda i: (-int(keys[i]), i))[:k])
            assert got == want
            lat, upd = radix_cost(np.array([n]), 5, key_bits, radix_bits)
            assert (ref["cycles"], ref["updates"]) == (lat[0], upd[0])


def test_radix_on_16_bit_keys_ties_near_equal_values_and_says_so():
    # 1.0 and 1.0000001 share their top 16 bits: the 16-bit unit keeps the lower index
    pre = np.array([[1.0, 1.0000001, 0.5, 0.25]], np.float32)
    mask = _py_topk(pre, 0.25)  # exact: index 1 wins
    rec = _record(pre, mask, MaskParams("topk", winner_rate=0.25))
    res16 = simulate_topk(rec, scheme="radix", comparators=8, value_bits=16, radix_bits=4)
    assert res16.mismatches.tolist() == [2] and res16.kept.tolist() == [1]
    res32 = simulate_topk(rec, scheme="radix", comparators=8, value_bits=32, radix_bits=4)
    assert res32.mismatches.tolist() == [0]


@pytest.mark.parametrize("scheme", EXACT_SCHEMES)
def test_each_exact_scheme_selects_the_definitions_mask_on_ties(scheme):
    """Traces whose masks disagree with the definition on exactly one tie show it per scheme."""
    pre = _tied(s=5, n=77, seed=21)
    for rate in (0.03, 0.2, 0.5, 1.0):
        rec = _record(pre, _py_topk(pre, rate), MaskParams("topk", winner_rate=rate))
        res = simulate_topk(rec, scheme=scheme, comparators=8, value_bits=32, radix_bits=4)
        assert res.mismatches.tolist() == [0] * 5, (scheme, rate)
        assert res.kept.tolist() == [_k(77, rate)] * 5


def test_a_mask_shared_by_two_consumers_is_charged_once(tmp_path):
    """A residual block's conv and its shortcut read one mask: the top-k unit computes it once."""
    from accelsim.arch import load_arch
    from accelsim.energy import load_energy_table
    from accelsim.simulate import simulate_trace
    from accelsim.traces import write_trace

    pre = _tied(s=3, n=40, seed=22)
    mask = _py_topk(pre, 0.2)
    params = MaskParams("topk", winner_rate=0.2)
    rng = np.random.default_rng(0)

    def consumer(name, m, premask=pre):
        w = rng.standard_normal((m, 40)).astype(np.float32)
        x = premask * mask
        return LayerRecord(
            geometry=LayerGeometry(name, "linear", (40,), (m,)), weight=w, weight_mask=None,
            bias=None, inputs=SparseBatch.from_dense(x), premask=SparseBatch.from_dense(premask),
            act_mask=SparseBatch.positions_from_bool(mask), mask_params=params,
            outputs=(x.astype(np.float64) @ w.T.astype(np.float64)).astype(np.float32))

    other = pre.copy()
    other[:, 0] += 100.0  # a different mask's input (same winners are not the same mask)
    other_mask = _py_topk(other, 0.2)
    third = consumer("other", 4, other)
    third.act_mask = SparseBatch.positions_from_bool(other_mask)
    third.inputs = SparseBatch.from_dense(other * other_mask)
    third.outputs = ((other * other_mask).astype(np.float64) @ third.weight.T.astype(np.float64)).astype(np.float32)
    path = tmp_path / "res.trace.safetensors"
    write_trace(path, {"model": "m", "method": "jp", "dataset": "d"},
                [consumer("conv", 5), consumer("shortcut", 6), third])
    arch = load_arch("eie64", ["eie.num_pes=4"])
    rows = [r for r in simulate_trace(path, arch, load_energy_table()) if r["variant"] == "sparse"]
    by = {r["layer"]: r for r in rows}
    assert by["conv"]["events_topk_compare"] > 0 and by["conv"]["topk_shared"] == 0
    assert by["shortcut"]["events_topk_compare"] == 0 and by["shortcut"]["topk_exposed_cycles"] == 0
    assert by["shortcut"]["topk_shared"] == 1
    assert by["other"]["events_topk_compare"] == by["conv"]["events_topk_compare"]
    assert by["other"]["topk_shared"] == 0
