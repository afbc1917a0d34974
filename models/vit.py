"""A small vision transformer for MNIST: the zoo's transformer (name "vit").

Patch embedding (a 7x7 stride-7 convolution: 16 patches of 28x28 images), a learned position
embedding, `depth` pre-norm encoder blocks (multi-head self-attention, then an MLP whose hidden
activations pass GELU and then an ActivationMask: JP's per-sample top-k goes there), a final
LayerNorm, the mean over tokens and a linear head. Patch count, width and depth are kept small
so the dense, WP and JP recipes train on a 2-core CPU in minutes.

The attention's two activation x activation products (scores = Q K^T and context = A V) are
ActivationProduct modules, so the trace recorder sees them as layers of kind "matmul"
(docs/trace-format.md) with both operands per-sample activations. Every Linear runs on
(batch, tokens, features): "token_linear" layers in a trace. The 1/sqrt(head dim) scale is
applied to Q before the scores product (an element-wise op), so the recorded scores are
exactly the product of the recorded operands.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from accelsim.errors import AccelsimError
from accelsim.models.masks import ActivationMask

INPUT_SHAPE = (1, 28, 28)


class ActivationProduct(nn.Module):
    """a @ b for two per-sample activations a (B, H, T, K) and b (B, H, K, N).

    A module (not a bare torch.matmul) so the trace recorder can hook it: `accelsim_product`
    marks it, and the recorder stores `a` as the layer's inputs and `b` as its operand."""

    accelsim_product = True

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)


class Attention(nn.Module):
    """Multi-head self-attention with separate q, k, v projections and an output projection."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise AccelsimError(f"vit: dim {dim} is not a multiple of heads {heads}")
        self.heads = heads
        self.scale = 1.0 / math.sqrt(dim // heads)
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.scores = ActivationProduct()
        self.softmax = nn.Softmax(dim=-1)
        self.context = ActivationProduct()
        self.proj = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return x.reshape(b, t, self.heads, d // self.heads).transpose(1, 2)  # (B, H, T, dh)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self._split(self.q(x)) * self.scale
        k = self._split(self.k(x))
        v = self._split(self.v(x))
        attn = self.softmax(self.scores(q, k.transpose(-2, -1)))  # (B, H, T, T)
        ctx = self.context(attn, v)  # (B, H, T, dh)
        b, h, t, dh = ctx.shape
        return self.proj(ctx.transpose(1, 2).reshape(b, t, h * dh))


class EncoderBlock(nn.Module):
    """Pre-norm block: x + attn(LN(x)), then x + fc2(mask(GELU(fc1(LN(x)))))."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.gelu = nn.GELU()
        self.fc2_mask = ActivationMask()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(self.fc2_mask(self.gelu(self.fc1(self.norm2(x)))))


class ZooViT(nn.Module):
    """patch -> + position -> block1..blockN -> LayerNorm -> mean over tokens -> head."""

    def __init__(self, num_classes: int = 10, dim: int = 64, depth: int = 2, heads: int = 4,
                 mlp_ratio: int = 2, patch: int = 7) -> None:
        super().__init__()
        c, h, w = INPUT_SHAPE
        if not 1 <= depth <= 16:
            raise AccelsimError(f"vit: depth must be in [1, 16], got {depth}")
        if h % patch or w % patch:
            raise AccelsimError(f"vit: patch {patch} does not divide the {h}x{w} image")
        tokens = (h // patch) * (w // patch)
        self.input_shape = INPUT_SHAPE
        self.patch = nn.Conv2d(c, dim, patch, stride=patch)
        self.pos = nn.Parameter(torch.zeros(1, tokens, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.Sequential(*[EncoderBlock(dim, heads, mlp_ratio * dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.mask_map = {f"blocks.{i}.fc2": f"blocks.{i}.fc2_mask" for i in range(depth)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2) + self.pos  # (B, tokens, dim)
        x = self.norm(self.blocks(x))
        return self.head(x.mean(dim=1))


def vit(num_classes: int = 10, dim: int = 64, depth: int = 2, heads: int = 4, mlp_ratio: int = 2,
        patch: int = 7) -> ZooViT:
    """ViT for MNIST: 7x7 patches (16 tokens), width 64, 2 blocks of 4 heads, MLP 64-128-64."""
    return ZooViT(num_classes, dim, depth, heads, mlp_ratio, patch)
