"""ActivationMask: exact k per sample, tie-breaks, masked gradients, threshold prediction by
hand, and bit-identical masks to the numpy twin accelsim.maskfn."""

import math

import numpy as np
import pytest
import torch

from accelsim.errors import AccelsimError
from accelsim.models.masks import ActivationMask, kept_count, predicted_threshold


def _ties(shape, seed):
    """Random values on a coarse grid with random signs: many |a| ties, some exact zeros."""
    g = torch.Generator().manual_seed(seed)
    mag = torch.randint(0, 5, shape, generator=g).float() * 0.25
    sign = torch.where(torch.rand(shape, generator=g) < 0.5, -1.0, 1.0)
    return mag * sign


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.33, 0.5, 0.9, 1.0])
def test_topk_keeps_exactly_k_per_sample(rate):
    x = _ties((7, 3, 5, 4), seed=1)
    m = ActivationMask("topk", rate)
    m.keep_last = True
    y = m(x)
    n = 60
    k = min(max(math.floor(rate * n + 0.5), 1), n)
    assert m.last_mask.shape == x.shape and m.last_mask.dtype == torch.bool
    assert m.last_mask.reshape(7, -1).sum(1).tolist() == [k] * 7
    # every winner's |a| >= every loser's |a|, and the output is x on winners, 0 elsewhere
    flat, mask = x.abs().reshape(7, -1), m.last_mask.reshape(7, -1)
    for s in range(7):
        if k < n:
            assert flat[s][mask[s]].min() >= flat[s][~mask[s]].max()
    assert torch.equal(y, torch.where(m.last_mask, x, torch.zeros_like(x)))
    assert torch.equal(m.last_premask, x)


def test_topk_tie_break_lower_flat_index_first():
    x = torch.tensor([[1.0, -3.0, 2.0, 3.0, -2.0, 2.0, 0.5]])
    # |x| = 1, 3, 2, 3, 2, 2, 0.5; winner_rate 4/7 -> k = 4: the two 3s, then the first two 2s
    mask = ActivationMask("topk", 4 / 7).compute_mask(x)
    assert mask.tolist() == [[False, True, True, True, True, False, False]]
    # all equal: the first k flat indices win
    mask = ActivationMask("topk", 0.5).compute_mask(torch.ones(2, 2, 3))
    assert mask.reshape(2, -1).tolist() == [[True, True, True, False, False, False]] * 2


def test_gradient_is_zero_for_losers_and_passes_for_winners():
    x = torch.tensor([[0.5, -4.0, 1.0, 3.0, -0.1, 2.0]], requires_grad=True)
    y = ActivationMask("topk", 0.5)(x)  # k = 3: |-4|, |3|, |2|
    (y * torch.arange(1.0, 7.0)).sum().backward()
    assert x.grad.tolist() == [[0.0, 2.0, 0.0, 4.0, 0.0, 6.0]]


def test_threshold_prediction_hand_computed():
    # eps = 0.25 -> stride 4; n = 10 -> subsample = flat indices 0, 4, 8 (n_s = 3)
    x = torch.tensor([[5.0, 9.0, -1.0, 2.0, -3.0, 0.5, 4.0, 3.0, 7.0, 3.5]])
    # winner_rate 0.4: k_s = floor(0.4 * 3 + 0.5) = 1; subsample |a| = 5, 3, 7 -> theta = 5
    m = ActivationMask("threshold-prediction", 0.4, eps=0.25)
    assert predicted_threshold(x, 0.4, 0.25).tolist() == [5.0]
    keep = [False, True, False, False, False, False, False, False, True, False]
    assert m.compute_mask(x).tolist() == [keep]
    # winner_rate 0.7: k_s = floor(2.6) = 2 -> theta = 3 (3rd largest): keep |a| > 3
    mask = ActivationMask("threshold-prediction", 0.7, eps=0.25).compute_mask(x)
    assert mask.tolist() == [[True, True, False, False, False, False, True, False, True, True]]
    # winner_rate 1: k_s == n_s -> theta = 0: every non-zero is kept
    x0 = torch.tensor([[0.0, 1.0, 0.0, -2.0]])
    assert ActivationMask("threshold-prediction", 1.0, eps=0.5).compute_mask(x0).tolist() == [
        [False, True, False, True]
    ]


def test_threshold_prediction_stride_uses_round_half_to_even():
    # eps = 0.4 -> 1/eps = 2.5 -> round() = 2 (half to even): subsample = indices 0, 2, 4
    x = torch.tensor([[1.0, 100.0, 2.0, 100.0, 3.0]])
    # k_s = floor(0.34 * 3 + 0.5) = 1 -> theta = 2nd largest of (1, 2, 3) = 2
    assert predicted_threshold(x, 0.34, 0.4).tolist() == [2.0]


def test_static_threshold_and_off():
    x = torch.tensor([[0.1, -0.2, 0.3, -0.05]])
    assert ActivationMask("static-threshold", threshold=0.1).compute_mask(x).tolist() == [
        [False, True, True, False]
    ]
    off = ActivationMask()
    assert off(x) is x
    off.keep_last = True
    assert torch.equal(off(x), x) and bool(off.last_mask.all())
    params = {"scheme": "off", "winner_rate": 1.0, "threshold": None, "eps": None}
    assert off.mask_params() == params
    assert ActivationMask.accelsim_mask is True


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"scheme": "top-k"}, "unknown scheme"),
        ({"scheme": "topk", "winner_rate": 1.5}, "winner_rate"),
        ({"scheme": "threshold-prediction", "winner_rate": 0.5}, "eps"),
        ({"scheme": "threshold-prediction", "winner_rate": 0.5, "eps": 0.0}, "eps"),
        ({"scheme": "static-threshold"}, "threshold"),
    ],
)
def test_bad_parameters_give_one_line_errors(kwargs, words):
    with pytest.raises(AccelsimError, match=words) as err:
        ActivationMask(**kwargs)
    assert "\n" not in str(err.value)


def test_kept_count_rounding():
    assert [kept_count(10, r) for r in (0.0, 0.04, 0.05, 0.25, 0.26, 1.0)] == [1, 1, 1, 3, 3, 10]


def test_torch_and_numpy_masks_identical_on_random_data_with_ties():
    from accelsim import maskfn

    for seed in range(20):
        x = _ties((5, 4, 3, 7), seed)  # n = 84, many ties
        if seed % 2:
            noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
            x = x + noise * 1e-3 * (seed % 3)
        a = x.numpy()
        for rate in (0.05, 0.3, 0.5, 0.77, 1.0):
            t = ActivationMask("topk", rate).compute_mask(x).numpy()
            assert np.array_equal(t, maskfn.topk_mask(a, rate)), (seed, rate)
            for eps in (0.1, 0.25, 0.4, 1.0):
                t = ActivationMask("threshold-prediction", rate, eps=eps).compute_mask(x).numpy()
                n = maskfn.threshold_prediction_mask(a, rate, eps)
                n = n[0] if isinstance(n, tuple) else n
                assert np.array_equal(t, n), (seed, rate, eps)
        for theta in (0.0, 0.25, 0.3, 0.5):
            t = ActivationMask("static-threshold", threshold=theta).compute_mask(x).numpy()
            assert np.array_equal(t, maskfn.static_threshold_mask(a, theta)), (seed, theta)


def test_selection_topk_equals_the_stable_sort_definition_bit_for_bit():
    """topk_mask selects (no per-sample sort); the sort is the definition it must reproduce,
    ties (lower flat index wins), -0.0, NaN rows, channels_last inputs and half precision."""
    from accelsim.models.masks import topk_mask, topk_mask_by_sort

    for seed in range(30):
        shape = [(6, 4, 5, 5), (9, 37), (3, 2, 7, 3), (1, 300)][seed % 4]
        x = _ties(shape, seed)
        if seed % 3 == 1:
            x = x + torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 1e-3
        if seed % 5 == 2:
            x[0].view(-1)[seed % 7] = float("nan")
            x.view(x.shape[0], -1)[-1, :3] = -0.0
        if seed % 4 == 0:
            x = x.contiguous(memory_format=torch.channels_last)
        if seed % 6 == 5:
            x = x.to(torch.bfloat16)
        for rate in (0.0, 0.02, 0.1, 0.25, 0.5, 0.77, 0.99, 1.0):
            assert torch.equal(topk_mask(x, rate), topk_mask_by_sort(x, rate)), (seed, rate)
