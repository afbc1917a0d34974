"""JPnet dynamic activation masks as an nn.Module (paper: "Joint Regularization on Activations
and Weights for Efficient Neural Network Pruning", Section III, Eq. 6-7, 9, 11).

The definitions are pinned down exactly as in the numpy twin accelsim.maskfn (the simulator's
top-k unit recomputes masks from recorded pre-mask activations and must agree bit for bit).
Per sample, over all n non-batch elements, comparing |a| in the input's dtype:

- "off": identity (nothing masked).
- "topk": k = clamp(floor(winner_rate * n + 0.5), 1, n); keep the k largest |a|. Ties are broken
  by the LOWER flat (row-major) index first, i.e. a stable descending sort of |a|.
- "threshold-prediction" (Eq. 11): subsample = flat indices i with i % stride == 0,
  stride = max(1, round(1 / eps)) (Python round, half to even); n_s its size;
  k_s = clamp(floor(winner_rate * n_s + 0.5), 1, n_s); theta = the (k_s+1)-th largest |a| of
  the subsample (0.0 when k_s == n_s); keep |a| > theta. The kept count varies per sample.
- "static-threshold": keep |a| > threshold (one theta for every input).

The mask is computed under no_grad and applied as x * mask, so the gradient of a loser is zero
(Eq. 9: back-propagation is masked like the forward pass).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from accelsim.errors import AccelsimError
# One definition of k and of the subsample for torch and numpy (the simulator's top-k unit).
from accelsim.maskfn import kept_count, subsample_stride

SCHEMES = ("off", "topk", "threshold-prediction", "static-threshold")

__all__ = [
    "SCHEMES",
    "ActivationMask",
    "kept_count",
    "subsample_stride",
    "topk_mask",
    "topk_mask_by_sort",
    "threshold_prediction_mask",
    "static_threshold_mask",
]


def topk_mask(x: torch.Tensor, winner_rate: float) -> torch.Tensor:
    """Bool mask (shape of x) of each sample's k largest |x|; ties: lower flat index wins.

    Selection, not sorting: theta = the k-th largest |x| per sample (torch.topk values), keep
    every |x| > theta, then the lowest-index elements equal to theta until k are kept. This is
    exactly the stable descending sort's first k (reference: topk_mask_by_sort)."""
    flat = _abs2d(x)
    s, n = flat.shape
    k = kept_count(n, winner_rate)
    if s == 0 or k == n:
        return torch.ones_like(flat, dtype=torch.bool).reshape(x.shape)
    theta = torch.topk(flat, k, dim=1, largest=True, sorted=False).values.amin(1, keepdim=True)
    if bool(torch.isnan(theta).any()):  # NaN sorts as largest; keep the sort's exact order
        return topk_mask_by_sort(x, winner_rate)
    above = flat > theta
    tied = flat == theta
    need = k - above.sum(1, keepdim=True)
    return (above | (tied & (tied.cumsum(1) <= need))).reshape(x.shape)


def topk_mask_by_sort(x: torch.Tensor, winner_rate: float) -> torch.Tensor:
    """The definition of topk_mask as a stable descending sort (slow; tests and NaN inputs)."""
    flat = _abs2d(x)
    s, n = flat.shape
    k = kept_count(n, winner_rate)
    mask = torch.zeros_like(flat, dtype=torch.bool)
    if s:
        order = torch.sort(flat, dim=1, descending=True, stable=True).indices[:, :k]
        mask.scatter_(1, order, True)
    return mask.reshape(x.shape)


def predicted_threshold(x: torch.Tensor, winner_rate: float, eps: float) -> torch.Tensor:
    """theta per sample (shape (S,), dtype of x) from the eps-subsample of |x| (Eq. 11)."""
    flat = _abs2d(x)
    s = flat.shape[0]
    sub = flat[:, :: subsample_stride(eps)]
    n_s = sub.shape[1]
    k_s = kept_count(n_s, winner_rate)
    if k_s == n_s or s == 0:
        return torch.zeros(s, dtype=flat.dtype, device=flat.device)
    # the (k_s+1)-th largest = the (n_s - k_s)-th smallest (kthvalue is 1-based)
    return torch.kthvalue(sub, n_s - k_s, dim=1).values


def threshold_prediction_mask(x: torch.Tensor, winner_rate: float, eps: float) -> torch.Tensor:
    """Bool mask keeping |x| > theta, theta predicted from the eps-subsample (Eq. 11)."""
    theta = predicted_threshold(x, winner_rate, eps)
    return (_abs2d(x) > theta[:, None]).reshape(x.shape)


def static_threshold_mask(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """Bool mask keeping |x| > threshold (the static activation-pruning baseline)."""
    _check_threshold(threshold)
    flat = _abs2d(x)
    theta = torch.tensor(threshold, dtype=flat.dtype, device=flat.device)
    return (flat > theta).reshape(x.shape)


class ActivationMask(nn.Module):
    """Dynamic per-sample activation mask placed in front of a compute layer.

    Attributes read by the trace recorder: `accelsim_mask` (marker), `mask_params()`, and, when
    `keep_last` is True, `last_premask` (x.detach()) and `last_mask` (bool, shape of x) of the
    latest forward.
    """

    accelsim_mask = True

    def __init__(
        self,
        scheme: str = "off",
        winner_rate: float = 1.0,
        threshold: float | None = None,
        eps: float | None = None,
    ) -> None:
        super().__init__()
        self.keep_last = False
        self.last_premask: torch.Tensor | None = None
        self.last_mask: torch.Tensor | None = None
        self.configure(scheme, winner_rate, threshold, eps)

    def configure(
        self,
        scheme: str = "off",
        winner_rate: float = 1.0,
        threshold: float | None = None,
        eps: float | None = None,
    ) -> None:
        """Validate and set the scheme and its parameters (bad values raise AccelsimError)."""
        if scheme not in SCHEMES:
            raise AccelsimError(
                f"activation mask: unknown scheme {scheme!r}; expected one of {SCHEMES}"
            )
        winner_rate = float(winner_rate)
        _check_rate(winner_rate)
        if scheme == "threshold-prediction":
            subsample_stride(eps)  # validates eps
        if scheme == "static-threshold":
            _check_threshold(threshold)
        self.scheme = scheme
        self.winner_rate = winner_rate
        self.threshold = None if threshold is None else float(threshold)
        self.eps = None if eps is None else float(eps)

    def mask_params(self) -> dict:
        return {
            "scheme": self.scheme,
            "winner_rate": self.winner_rate,
            "threshold": self.threshold,
            "eps": self.eps,
        }

    def compute_mask(self, x: torch.Tensor) -> torch.Tensor:
        """The bool mask this module would apply to x (no gradient)."""
        with torch.no_grad():
            if self.scheme == "off":
                return torch.ones_like(x, dtype=torch.bool)
            if self.scheme == "topk":
                return topk_mask(x, self.winner_rate)
            if self.scheme == "threshold-prediction":
                return threshold_prediction_mask(x, self.winner_rate, self.eps)
            return static_threshold_mask(x, self.threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scheme == "off" and not self.keep_last:
            return x
        mask = self.compute_mask(x)
        if self.keep_last:
            self.last_premask = x.detach()
            self.last_mask = mask
        if self.scheme == "off":
            return x
        return x * mask.to(x.dtype)

    def extra_repr(self) -> str:
        parts = [f"scheme={self.scheme!r}"]
        if self.scheme in ("topk", "threshold-prediction"):
            parts.append(f"winner_rate={self.winner_rate}")
        if self.scheme == "threshold-prediction":
            parts.append(f"eps={self.eps}")
        if self.scheme == "static-threshold":
            parts.append(f"threshold={self.threshold}")
        return ", ".join(parts)


def _abs2d(x: torch.Tensor) -> torch.Tensor:
    if x.dim() < 2:
        raise AccelsimError(
            f"activation mask: expected (samples, elements...), got shape {tuple(x.shape)}"
        )
    return x.detach().reshape(x.shape[0], -1).abs()


def _check_rate(winner_rate: float) -> None:
    if winner_rate is None or not math.isfinite(winner_rate) or not 0.0 <= winner_rate <= 1.0:
        raise AccelsimError(f"activation mask: winner_rate must be in [0, 1], got {winner_rate!r}")


def _check_threshold(threshold: float | None) -> None:
    if threshold is None or not math.isfinite(threshold) or threshold < 0:
        raise AccelsimError(
            f"static-threshold mask: threshold must be a finite number >= 0, got {threshold!r}"
        )
