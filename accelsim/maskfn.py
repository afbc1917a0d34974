"""Reference definition of the JPnet dynamic activation masks, in numpy (no torch).

The paper ("Joint Regularization on Activations and Weights for Efficient Neural Network
Pruning", Eq. 6, 7 and 11) leaves tie-breaking and rounding open; this module pins them down so
the PyTorch masks (accelsim.models.masks) and the simulator's top-k unit (accelsim.topk) agree
bit for bit. Every function works per sample over all n elements of the sample's activation
tensor: `a` is (S, n) or (S, *shape) and masks come back in the shape of `a`.

- top-k: k = clamp(floor(winner_rate * n + 0.5), 1, n); keep the k largest |a|, ties broken by
  the LOWER flat index first (a stable descending sort of |a|).
- threshold prediction (Eq. 11): subsample = flat indices i with i % stride == 0,
  stride = max(1, round(1 / eps)) (Python round: half to even); n_s its size;
  k_s = clamp(floor(winner_rate * n_s + 0.5), 1, n_s); theta = the (k_s+1)-th largest |a| of the
  subsample (0.0 when k_s == n_s); keep |a| > theta. The kept count varies per sample.
- static threshold: keep |a| > theta (one theta for every input).
"""

from __future__ import annotations

import math

import numpy as np

from accelsim.errors import AccelsimError

__all__ = [
    "kept_count",
    "subsample_stride",
    "topk_mask",
    "threshold_prediction_mask",
    "static_threshold_mask",
]


def kept_count(n: int, winner_rate: float) -> int:
    """k = clamp(floor(winner_rate * n + 0.5), 1, n): the number of winners of n elements."""
    _check_rate(winner_rate)
    if n < 1:
        raise AccelsimError(f"top-k mask: a sample needs at least one element, got n={n}")
    return int(min(max(math.floor(winner_rate * n + 0.5), 1), n))


def subsample_stride(eps: float) -> int:
    """stride = max(1, round(1 / eps)): every stride-th element forms the eps-subsample."""
    if eps is None or not math.isfinite(eps) or not 0.0 < eps <= 1.0:
        raise AccelsimError(f"threshold prediction: eps must be in (0, 1], got {eps!r}")
    return max(1, round(1.0 / eps))


def topk_mask(a: np.ndarray, winner_rate: float) -> np.ndarray:
    """Boolean mask of each sample's k largest |a| (ties: lower flat index wins)."""
    absa = _abs2d(a)
    s, n = absa.shape
    k = kept_count(n, winner_rate)
    mask = np.zeros((s, n), dtype=bool)
    if s:
        # stable sort of -|a| ascending == stable descending sort of |a|: equal values keep
        # their index order, so the lower index wins a tie.
        order = np.argsort(-absa, axis=1, kind="stable")[:, :k]
        mask[np.arange(s)[:, None], order] = True
    return mask.reshape(np.shape(a))


def threshold_prediction_mask(
    a: np.ndarray, winner_rate: float, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """(mask, theta): keep |a| > theta, theta predicted from the eps-subsample (Eq. 11).

    theta is float32 of shape (S,).
    """
    absa = _abs2d(a)
    theta = _predicted_threshold(absa, winner_rate, eps)
    mask = absa > theta[:, None]
    return mask.reshape(np.shape(a)), theta


def static_threshold_mask(a: np.ndarray, theta: float) -> np.ndarray:
    """Keep |a| > theta: the static activation-pruning baseline (one theta for all inputs)."""
    if theta is None or not math.isfinite(theta):
        raise AccelsimError(
            f"static-threshold mask: threshold must be a finite number, got {theta!r}"
        )
    absa = _abs2d(a)
    return (absa > np.float32(theta)).reshape(np.shape(a))


def _predicted_threshold(absa: np.ndarray, winner_rate: float, eps: float) -> np.ndarray:
    s, n = absa.shape
    stride = subsample_stride(eps)
    sub = absa[:, ::stride]
    n_s = sub.shape[1]
    k_s = kept_count(n_s, winner_rate)
    if k_s == n_s or s == 0:
        return np.zeros(s, dtype=np.float32)
    pos = n_s - k_s - 1  # ascending position of the (k_s+1)-th largest
    return np.partition(sub, pos, axis=1)[:, pos].astype(np.float32)


def _abs2d(a: np.ndarray) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim < 2:
        raise AccelsimError(
            f"activation mask: expected (samples, elements...), got shape {arr.shape}"
        )
    flat = np.abs(arr.reshape(arr.shape[0], -1).astype(np.float32, copy=False))
    if flat.size and not np.isfinite(flat).all():
        raise AccelsimError("activation mask: activations contain NaN or Inf")
    return flat


def _check_rate(winner_rate: float) -> None:
    if winner_rate is None or not math.isfinite(winner_rate) or not 0.0 <= winner_rate <= 1.0:
        raise AccelsimError(f"top-k mask: winner_rate must be in [0, 1], got {winner_rate!r}")
