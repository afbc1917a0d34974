"""Numpy reference masks (JPnet Eq. 6, 7, 11): hand-computed examples, ties, rounding, errors."""

import numpy as np
import pytest

from accelsim.errors import AccelsimError
from accelsim.maskfn import (
    kept_count,
    static_threshold_mask,
    subsample_stride,
    threshold_prediction_mask,
    topk_mask,
)


def test_kept_count_rounds_half_up_and_clamps():
    assert kept_count(6, 0.5) == 3
    assert kept_count(5, 0.5) == 3  # floor(2.5 + 0.5)
    assert kept_count(5, 0.3) == 2  # floor(1.5 + 0.5)
    assert kept_count(10, 0.04) == 1  # floor(0.9) = 0 -> clamped to 1
    assert kept_count(10, 0.0) == 1
    assert kept_count(7, 1.0) == 7


def test_topk_ties_go_to_lower_index():
    a = np.array([[3, -5, 5, 1, 0, -3]], dtype=np.float32)
    # |a| = 3 5 5 1 0 3, k = 3: both 5s, then the 3 at index 0 beats the 3 at index 5
    assert topk_mask(a, 0.5).tolist() == [[True, True, True, False, False, False]]
    zeros = np.zeros((1, 4), np.float32)
    assert topk_mask(zeros, 0.5).tolist() == [[True, True, False, False]]


def test_topk_keeps_shape_and_works_per_sample():
    a = np.array([[[1, 2], [3, 4]], [[4, 3], [2, 1]]], dtype=np.float32)
    m = topk_mask(a, 0.25)
    assert m.shape == (2, 2, 2)
    assert m.reshape(2, -1).tolist() == [[False, False, False, True], [True, False, False, False]]


def test_topk_matches_brute_force_on_ties():
    rng = np.random.default_rng(1)
    a = rng.integers(-3, 4, size=(20, 37)).astype(np.float32)  # many ties, zeros, signs
    for rate in (0.0, 0.1, 0.33, 0.5, 0.9, 1.0):
        got = topk_mask(a, rate)
        k = kept_count(37, rate)
        for s in range(20):
            order = sorted(range(37), key=lambda i: (-abs(a[s, i]), i))
            want = np.zeros(37, bool)
            want[order[:k]] = True
            assert (got[s] == want).all()
        assert (got.sum(axis=1) == k).all()


def test_threshold_prediction_hand_example():
    a = np.array([[9, 1, 7, 2, 5, 3, 3, 8]], dtype=np.float32)
    # eps 0.5 -> stride 2: subsample 9 7 5 3, k_s = 2, theta = 3rd largest = 5; keep |a| > 5
    mask, theta = threshold_prediction_mask(a, 0.5, 0.5)
    assert theta.tolist() == [5.0]
    assert np.flatnonzero(mask[0]).tolist() == [0, 2, 7]


def test_threshold_prediction_ties_at_theta_keep_fewer():
    a = np.array([[4, -4, 4, 1]], dtype=np.float32)
    mask, theta = threshold_prediction_mask(a, 0.5, 1.0)  # theta = 3rd largest = 4; keep > 4
    assert theta.tolist() == [4.0] and not mask.any()


def test_threshold_prediction_keeps_all_nonzero_when_everything_wins():
    a = np.array([[0, 2, 0, -1, 3]], dtype=np.float32)
    mask, theta = threshold_prediction_mask(a, 1.0, 0.5)
    assert theta.tolist() == [0.0]
    assert mask.tolist() == [[False, True, False, True, True]]


def test_threshold_prediction_eps_one_equals_topk_without_ties():
    rng = np.random.default_rng(2)
    a = rng.permutation(200).reshape(4, 50).astype(np.float32) + 1  # distinct magnitudes
    mask, _ = threshold_prediction_mask(a, 0.3, 1.0)
    assert (mask == topk_mask(a, 0.3)).all()


def test_subsample_stride_rounding():
    assert subsample_stride(0.1) == 10
    assert subsample_stride(0.3) == 3
    assert subsample_stride(0.4) == 2  # round(2.5) is 2 (half to even)
    assert subsample_stride(1.0) == 1


def test_static_threshold_is_strict():
    a = np.array([[0.5, -0.2, 0.1, -0.7]], dtype=np.float32)
    assert static_threshold_mask(a, 0.2).tolist() == [[True, False, False, True]]


@pytest.mark.parametrize(
    "call, msg",
    [
        (lambda: topk_mask(np.ones((1, 3), np.float32), 1.5), "winner_rate"),
        (lambda: threshold_prediction_mask(np.ones((1, 3), np.float32), 0.5, 0.0), "eps"),
        (lambda: topk_mask(np.array([[1.0, np.nan]], np.float32), 0.5), "NaN"),
        (lambda: topk_mask(np.ones(3, np.float32), 0.5), "shape"),
        (lambda: static_threshold_mask(np.ones((1, 3), np.float32), float("inf")), "threshold"),
    ],
)
def test_bad_input_is_a_one_line_error(call, msg):
    with pytest.raises(AccelsimError, match=msg):
        call()
