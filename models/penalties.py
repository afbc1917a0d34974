"""Regularisers and pruning formulas of the published methods, as small pure functions.

Each penalty has a value function (used in tests against autograd and for logging) and a closed
form gradient (what the training loop adds to `.grad` after backward: cheaper than building the
penalty into the autograd graph and identical by construction, which tests/test_methods.py
checks). Formulas:

- L1 (JPnet Eq. 5): alpha * sum|w|.
- l0 surrogate + l2 (Oliveira, Batista, Seara, "Pruning with l0-norm regularization"):
  R = alpha0 * sum(1 - exp(-beta |w|)) + alpha2 * sum w^2,
  dR/dw = alpha0 * beta * sign(w) * exp(-beta |w|) + 2 alpha2 w.
- GReg (Wang et al., "Neural Pruning via Growing Regularization"): per group lambda,
  penalty 0.5 * sum(lambda * w^2), gradient lambda (.) w.
- Han et al. ("Learning both Weights and Connections"): threshold = q * std(w);
  retrained dropout D_r = D_o * sqrt(C_ir / C_io).
- JPnet Eq. 10: dropout after a masked layer = C_d * sqrt(winner rate).
"""

from __future__ import annotations

import math

import torch


def l1_penalty(w: torch.Tensor, alpha: float) -> torch.Tensor:
    return alpha * w.abs().sum()


def l1_grad(w: torch.Tensor, alpha: float) -> torch.Tensor:
    """Subgradient of alpha*|w| (0 at w == 0, so pruned zeros stay put)."""
    return alpha * torch.sign(w)


def l0_penalty(w: torch.Tensor, alpha0: float, beta: float, alpha2: float = 0.0) -> torch.Tensor:
    return alpha0 * (1.0 - torch.exp(-beta * w.abs())).sum() + alpha2 * (w * w).sum()


def l0_grad(w: torch.Tensor, alpha0: float, beta: float, alpha2: float = 0.0) -> torch.Tensor:
    return alpha0 * beta * torch.sign(w) * torch.exp(-beta * w.abs()) + 2.0 * alpha2 * w


def l0_layer_alpha(alpha0: float, n_layer: int, n_ref: int) -> float:
    """Per-layer l0 strength of the official code: alpha0 * sqrt(n_layer / n_ref)."""
    if n_layer <= 0 or n_ref <= 0:
        raise ValueError("weight counts must be positive")
    return alpha0 * math.sqrt(n_layer / n_ref)


def greg_penalty(w: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """0.5 * sum(lambda * w^2); `lam` broadcasts over w (per weight or per output filter)."""
    return 0.5 * (lam * w * w).sum()


def greg_grad(w: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    return lam * w


def expand_group_lambda(lam: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Per-filter lambda (M,) -> shape broadcastable against w (M, ...); per-weight unchanged."""
    if lam.shape == w.shape:
        return lam
    return lam.reshape((w.shape[0],) + (1,) * (w.dim() - 1))


def han_threshold(w: torch.Tensor, q: float) -> float:
    """Han et al.: prune |w| < q * std(w), std over all the layer's current weights."""
    return float(q) * float(w.detach().float().std(unbiased=False))


def han_dropout(d_o: float, c_ir: int, c_io: int) -> float:
    """Han et al. Eq.: D_r = D_o * sqrt(C_ir / C_io) (C: connections of the layer, r/o: retrained,
    original)."""
    if c_io <= 0:
        raise ValueError("original connection count must be positive")
    return float(d_o) * math.sqrt(max(c_ir, 0) / c_io)


def jp_dropout(c_d: float, winner_rate: float) -> float:
    """JPnet Eq. 10: dropout rate after a masked layer = C_d * sqrt(winner rate)."""
    return float(c_d) * math.sqrt(float(winner_rate))
