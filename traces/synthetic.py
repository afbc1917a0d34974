"""Synthetic traces for architecture studies: zoo models with random (seeded) weights, magnitude
weight masks and per-sample top-k activation masks at chosen densities, fed random images.

So AlexNet- and ResNet-50-shaped traces exist without ImageNet. Recorded with the normal
recorder; meta method = "synthetic", dataset = "random". Imports torch (via the recorder).
"""

from __future__ import annotations

import math
import os

import torch

from accelsim.errors import AccelsimError
from accelsim.traces.recorder import record_trace


def _per_layer(value, names: list[str], what: str) -> dict[str, float]:
    """A density for each named layer: one float for all, or a {layer: density} dict (layers
    not named stay dense)."""
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise AccelsimError(f"{what}: unknown layer(s) {', '.join(unknown)}; layers: {', '.join(names)}")
        out = {n: 1.0 for n in names}
        out.update({k: float(v) for k, v in value.items()})
    else:
        out = {n: float(value) for n in names}
    for n, d in out.items():
        if not (math.isfinite(d) and 0 < d <= 1):
            raise AccelsimError(f"{what} for layer {n} must be in (0, 1], got {d}")
    return out


def magnitude_mask(weight: torch.Tensor, density: float) -> torch.Tensor:
    """Bool mask keeping the round(density * n) (at least 1) largest |w|; ties: lower index."""
    flat = weight.detach().abs().reshape(-1)
    k = min(flat.numel(), max(1, int(math.floor(density * flat.numel() + 0.5))))
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[torch.sort(flat, descending=True, stable=True).indices[:k]] = True
    return keep.reshape(weight.shape)


def synthetic_trace(model_name: str, out_path, weight_density: float | dict = 1.0,
                    act_density: float | dict = 1.0, num_samples: int = 1, seed: int = 0,
                    output_samples: int | None = None, batch_size: int = 16) -> str:
    """Build, prune, mask and record a zoo model on random images; return the trace path.

    weight_density: per compute layer (float for all, or {layer: density}); act_density: the
    winner rate of the top-k mask in front of every hidden layer (float; 1.0 leaves the masks
    off), or {layer: rate} for the named layers only. The image is never masked.
    """
    from accelsim.models import zoo

    if num_samples < 1:
        raise AccelsimError(f"--samples must be >= 1, got {num_samples}")
    torch.manual_seed(seed)
    model = zoo.build(model_name)
    layers = zoo.compute_layers(model)
    names = [n for n, _ in layers]
    w_dens = _per_layer(weight_density, names, "weight density")
    masks = zoo.activation_masks(model)
    a_dens = _per_layer(act_density, list(masks), "activation density")
    with torch.no_grad():
        for name, mod in layers:
            if w_dens[name] < 1.0:
                keep = magnitude_mask(mod.weight, w_dens[name])
                mod.weight.mul_(keep.to(mod.weight.dtype))
                mod.register_buffer("weight_mask", keep)
    if isinstance(act_density, dict):  # only the named layers get a mask
        a_dens = {k: v for k, v in a_dens.items() if k in act_density}
    elif float(act_density) == 1.0:  # 1.0 for all: leave the masks off (dense activations)
        a_dens = {}
    if a_dens:
        zoo.set_winner_rates(model, a_dens, scheme="topk")
    gen = torch.Generator().manual_seed(seed)
    shape = zoo.input_shape(model_name)
    images = torch.randn((num_samples, *shape), generator=gen)
    batches = [images[i:i + batch_size] for i in range(0, num_samples, batch_size)]
    meta = {
        "model": model_name, "method": "synthetic", "dataset": "random", "split": None,
        "sample_indices": list(range(num_samples)), "seed": int(seed), "accuracy": None,
        "synthetic": {"weight_density": weight_density, "act_density": act_density,
                      "input": "standard normal images", "input_shape": list(shape)},
    }
    return record_trace(model, batches, os.fspath(out_path), meta, output_samples)
