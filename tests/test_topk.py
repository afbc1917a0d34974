"""Hardware top-k unit: reference networks prove the cost formulas; masks checked vs traces."""

import numpy as np
import pytest

from accelsim import maskfn
from accelsim.errors import AccelsimError
from accelsim.topk import (
    bitonic_cost,
    bitonic_network_reference,
    insertion_cost,
    insertion_unit_reference,
    radix_cost,
    simulate_topk,
)
from accelsim.traces.schema import LayerGeometry, LayerRecord, MaskParams, SparseBatch

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
    mask = maskfn.topk_mask(pre, 0.1)
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
    rec = _record(pre, maskfn.topk_mask(pre, 0.1), MaskParams("topk", winner_rate=0.1))
    res = simulate_topk(rec, scheme="insertion", producer_cycles=np.array([0, 5, 1000]), **UNIT)
    assert res.latency.tolist() == [23, 23, 23]
    assert res.exposed.tolist() == [23, 18, 10]  # the drain (k = 10) is never hidden


def test_threshold_scheme_measures_mismatches():
    pre = _tied(s=8, n=100, seed=5)
    mask = maskfn.topk_mask(pre, 0.1)
    rec = _record(pre, mask, MaskParams("topk", winner_rate=0.1))
    res = simulate_topk(rec, scheme="threshold", **UNIT)
    pred, theta = maskfn.threshold_prediction_mask(pre, 0.1, 0.1)
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
    mask, _ = maskfn.threshold_prediction_mask(pre, 0.2, 0.25)
    rec = _record(pre, mask, MaskParams("threshold-prediction", winner_rate=0.2, eps=0.25))
    for scheme in ("bitonic", "insertion", "radix", "threshold"):
        res = simulate_topk(rec, scheme=scheme, **UNIT)
        assert res.mismatches.tolist() == [0] * 4, scheme
        assert res.kept.tolist() == mask.sum(axis=1).tolist()
    res = simulate_topk(rec, scheme="threshold", **UNIT)
    assert res.extra["subsample"] == len(range(0, 90, 4))  # stride round(1/0.25) = 4


def test_static_threshold_trace():
    pre = _tied(s=3, n=50, seed=7)
    mask = maskfn.static_threshold_mask(pre, 1.0)
    rec = _record(pre, mask, MaskParams("static-threshold", threshold=1.0))
    res = simulate_topk(rec, scheme="threshold", **UNIT)
    assert res.mismatches.tolist() == [0, 0, 0]
    assert res.exposed.tolist() == [0, 0, 0]  # a known theta needs no selection
    assert res.compares.tolist() == [50, 50, 50]
    res = simulate_topk(rec, scheme="insertion", **UNIT)
    assert res.mismatches.sum() == 0 and (res.kept == mask.sum(axis=1)).all()


def test_a_wrong_trace_mask_is_caught():
    pre = _tied(s=2, n=60, seed=8)
    mask = maskfn.topk_mask(pre, 0.2)
    bad = mask.copy()
    win, lose = np.flatnonzero(bad[1])[0], np.flatnonzero(~bad[1])[0]
    bad[1, win], bad[1, lose] = False, True
    rec = _record(pre, bad, MaskParams("topk", winner_rate=0.2))
    res = simulate_topk(rec, scheme="bitonic", **UNIT)
    assert res.mismatches.tolist() == [0, 2]


def test_chunked_densify_matches(monkeypatch):
    import accelsim.topk as topk

    pre = _tied(s=7, n=40, seed=9)
    rec = _record(pre, maskfn.topk_mask(pre, 0.3), MaskParams("topk", winner_rate=0.3))
    monkeypatch.setattr(topk, "_CHUNK_ELEMENTS", 50)  # one sample per chunk
    res = simulate_topk(rec, scheme="threshold", **UNIT)
    pred, _ = maskfn.threshold_prediction_mask(pre, 0.3, 0.1)
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
    rec = _record(pre, maskfn.topk_mask(pre, 0.5), MaskParams("topk", winner_rate=0.5))
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
    torch = pytest.importorskip("torch")
    masks = pytest.importorskip("accelsim.models.masks")
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
