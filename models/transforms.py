"""Batch transforms for image tensors: whole-batch torch ops, seeded by a torch.Generator.

Why not torchvision: the project keeps its dependencies small, and on 2 CPU cores one vectorised
op over a (B, C, H, W) batch is much faster than per-image PIL transforms in worker processes.

Every random transform takes a `generator` (a torch.Generator, or None for torch's global RNG)
so that a seed fixes the augmentation exactly. Geometric transforms work on any dtype; apply
them to the uint8 images before `to_float_normalized`, so that crop padding is black (0), as in
the usual CIFAR recipe (pad 4, random 32x32 crop, horizontal flip).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

# Per-channel mean and standard deviation of the training sets, pixels scaled to [0, 1].
# tests/test_data.py recomputes them from the real training sets.
MNIST_MEAN: tuple[float, ...] = (0.1307,)
MNIST_STD: tuple[float, ...] = (0.3081,)
CIFAR10_MEAN: tuple[float, ...] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, ...] = (0.2470, 0.2435, 0.2616)

NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": (MNIST_MEAN, MNIST_STD),
    "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
}

# A transform as make_batches calls it: (uint8 batch, generator) -> float32 batch.
Transform = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]


def _check_batch(x: torch.Tensor, name: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{name}: expected a (N, C, H, W) batch, got shape {tuple(x.shape)}")


def to_float_normalized(
    images_uint8: torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 ((x / 255) - mean[c]) / std[c]."""
    _check_batch(images_uint8, "to_float_normalized")
    if images_uint8.dtype != torch.uint8:
        raise ValueError(f"to_float_normalized: expected uint8 images, got {images_uint8.dtype}")
    c = images_uint8.shape[1]
    if len(mean) != c or len(std) != c:
        raise ValueError(
            f"to_float_normalized: {c} channels but {len(mean)} means, {len(std)} stds"
        )
    m = torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, c, 1, 1)
    return (images_uint8.to(torch.float32).div_(255.0) - m).div_(s)


def scale_to_unit(images_uint8: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 x / 255: zero pixels stay exactly zero (the default input)."""
    c = images_uint8.shape[1] if images_uint8.dim() == 4 else 1
    return to_float_normalized(images_uint8, (0.0,) * c, (1.0,) * c)


def _crop_at(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: int) -> torch.Tensor:
    """Crop sample b at (top[b], left[b]) to size x size, with one gather for the whole batch."""
    n = x.shape[0]
    ar = torch.arange(size)
    rows = (top.view(n, 1) + ar).view(n, size, 1)  # (N, size, 1)
    cols = (left.view(n, 1) + ar).view(n, 1, size)  # (N, 1, size)
    b = torch.arange(n).view(n, 1, 1)
    # Advanced indices on dims 0, 2, 3 around a slice: the result is (N, size, size, C).
    return x[b, :, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_crop(
    x: torch.Tensor, size: int, padding: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Zero-pad each side by `padding`, then take an independent random size x size crop per
    sample (the standard CIFAR augmentation with size=32, padding=4)."""
    _check_batch(x, "random_crop")
    if padding < 0:
        raise ValueError(f"random_crop: padding must be >= 0, got {padding}")
    if padding:
        x = F.pad(x, (padding, padding, padding, padding))
    n, _, h, w = x.shape
    if size > h or size > w or size < 1:
        raise ValueError(f"random_crop: crop {size} does not fit a padded {h}x{w} image")
    top = torch.randint(0, h - size + 1, (n,), generator=generator)
    left = torch.randint(0, w - size + 1, (n,), generator=generator)
    return _crop_at(x, top, left, size)


def random_crop_no_pad(
    x: torch.Tensor, size: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random size x size crop inside the image, no padding (24x24 crops of 32x32 CIFAR images,
    as in the ConvNet-5 / cuda-convnet recipe)."""
    return random_crop(x, size, 0, generator)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central size x size window (evaluation counterpart of random_crop_no_pad)."""
    _check_batch(x, "center_crop")
    h, w = x.shape[2], x.shape[3]
    if size > h or size > w or size < 1:
        raise ValueError(f"center_crop: crop {size} does not fit a {h}x{w} image")
    top, left = (h - size) // 2, (w - size) // 2
    return x[:, :, top : top + size, left : left + size].contiguous()


def random_flip(
    x: torch.Tensor, generator: torch.Generator | None = None, p: float = 0.5
) -> torch.Tensor:
    """Mirror each sample left-right with probability p, independently per sample."""
    _check_batch(x, "random_flip")
    flip = torch.rand(x.shape[0], generator=generator) < p
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


def standard_transform(dataset: str, train: bool, crop_size: int | None = None,
                       normalize: bool = False) -> Transform:
    """The usual pipeline for a data set, as a make_batches transform.

    Pixels are scaled to [0, 1], so zero pixels stay exactly zero: that is the input a
    zero-skipping accelerator sees, and what the JPnet tables assume (LeNet-4 conv1's 11.5% MAC
    share = 60% weights x ~19% non-zero pixels). normalize=True (opt-in) subtracts the data set's
    mean and divides by its std, which moves every zero pixel. cifar10, train: pad-4 random 32x32
    crop + flip (or, with crop_size < 32, an unpadded random crop + flip); eval: centre crop when
    crop_size < 32.
    """
    if dataset not in NORMALIZATION:
        raise ValueError(f"standard_transform: unknown data set {dataset!r}")
    c = len(NORMALIZATION[dataset][0])
    mean, std = NORMALIZATION[dataset] if normalize else ((0.0,) * c, (1.0,) * c)

    def apply(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if dataset == "cifar10":
            full = x.shape[-1]
            size = crop_size or full
            if train:
                if size == full:
                    x = random_crop(x, size, 4, generator)
                else:
                    x = random_crop_no_pad(x, size, generator)
                x = random_flip(x, generator)
            elif size != full:
                x = center_crop(x, size)
        elif crop_size is not None and crop_size != x.shape[-1]:
            x = center_crop(x, crop_size)
        return to_float_normalized(x, mean, std)

    return apply
