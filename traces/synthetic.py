"""Synthetic traces for architecture studies: zoo models with random (seeded) weights, magnitude
weight masks and activation zeros at chosen densities, fed random images.

The activation zeros come, by default, from the ReLUs (masks="relu"): the bias feeding each
named layer's input is shifted until that input has the asked density, as trained networks'
biases leave most ReLU outputs at zero; no mask is recorded, so no top-k unit runs, which is the
setting of EIE's and Cnvlutin's own benchmarks. masks="topk" (or "threshold") puts a dynamic
per-sample mask in front of each named layer instead (JPnet's joint pruning), and the simulator
charges the top-k unit for it. So AlexNet- and ResNet-50-shaped traces exist without ImageNet.
Recorded with the normal recorder; meta method = "synthetic", dataset = "random", and
meta["synthetic"]["act_zeros"] says which kind of zeros the trace has. Imports torch (via the
recorder).
"""

from __future__ import annotations

import math
import os

import torch

from accelsim.errors import AccelsimError
from accelsim.maskfn import kept_count
from accelsim.traces.recorder import check_recording_size, record_trace


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
    k = kept_count(flat.numel(), density)
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[torch.sort(flat, descending=True, stable=True).indices[:k]] = True
    return keep.reshape(weight.shape)


MASK_KINDS = ("relu", "topk", "threshold")  # --masks: ReLU zeros, or dynamic masks
_SCHEME = {"topk": "topk", "threshold": "threshold-prediction"}


class _Stop(Exception):
    """Ends a calibration forward pass once the measured input has been seen."""


def _biased_modules(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    return {n: m for n, m in model.named_modules()
            if not list(m.children()) and isinstance(getattr(m, "bias", None), torch.Tensor)}


def _producers(model, masks: dict, images) -> dict[str, str]:
    """{layer: name of the last module with a bias that runs before the layer's mask}, in the
    order the masks run: shifting that bias moves the layer's input through ReLU, pooling and
    additions, monotonically."""
    last: list[str | None] = [None]
    found: dict[str, str | None] = {}
    by_mask: dict[int, list[str]] = {}
    for layer, mask in masks.items():
        by_mask.setdefault(id(mask), []).append(layer)
    handles = [m.register_forward_hook(lambda mod, a, o, n=n: last.__setitem__(0, n))
               for n, m in _biased_modules(model).items()]
    for mask in {id(m): m for m in masks.values()}.values():
        def pre(mod, args):
            for layer in by_mask[id(mod)]:
                found.setdefault(layer, last[0])
        handles.append(mask.register_forward_pre_hook(pre))
    try:
        model(images[:1])
    finally:
        for h in handles:
            h.remove()
    return found


def _relu_zeros(model, masks: dict, targets: dict[str, float], images) -> dict[str, float]:
    """Shift, in execution order, the bias feeding each target layer's input until the input's
    density over `images` is the target (false position on the shift). Returns {layer: shift}."""
    producers = _producers(model, masks, images)
    idle = sorted(set(targets) - set(producers))
    if idle:
        raise AccelsimError(f"layer {idle[0]}: its activation mask never runs in a forward pass")
    biased = _biased_modules(model)
    shifts: dict[str, float] = {}
    done: dict[int, str] = {}
    for layer in (n for n in producers if n in targets):  # execution order: earlier first
        if id(masks[layer]) in done:  # a mask shared with a layer already set (ResNet shortcut)
            shifts[layer] = shifts[done[id(masks[layer])]]
            continue
        done[id(masks[layer])] = layer
        producer = producers.get(layer)
        if producer is None:
            raise AccelsimError(f"layer {layer}: no biased layer before its input to set the "
                                f"density with; use --masks topk")
        bias = biased[producer].bias
        base = bias.detach().clone()
        seen: dict[str, torch.Tensor] = {}

        def grab(mod, args):
            seen["x"] = args[0]
            raise _Stop

        memo: dict[float, float] = {}

        def density(t: float) -> float:
            if t not in memo:
                bias.copy_(base - t)
                h = masks[layer].register_forward_pre_hook(grab)
                try:
                    model(images)
                except _Stop:
                    pass
                finally:
                    h.remove()
                memo[t] = float((seen["x"] != 0).float().mean())
            return memo[t]

        want = targets[layer]
        lo, hi = -1.0, 1.0  # density(lo) >= target > density(hi), widened as needed
        while density(lo) < want and lo > -1e12:
            lo *= 4
        while density(hi) > want and hi < 1e12:
            hi *= 4
        if density(hi) > want + 0.02:
            raise AccelsimError(
                f"layer {layer}: no bias shift brings its input below {100 * density(hi):.1f}% "
                f"density (no ReLU in front of it?); use --masks topk")
        # false position (Illinois) on the monotone density, bisecting when it stalls
        f_lo, f_hi, side = density(lo) - want, density(hi) - want, 0
        for i in range(40):
            if abs(f_lo) < 5e-4 or abs(f_hi) < 5e-4:  # as close as a quantile of the samples gets
                break
            mid = 0.5 * (lo + hi) if i % 4 == 3 or f_lo == f_hi else lo + f_lo * (hi - lo) / (f_lo - f_hi)
            f_mid = density(mid) - want
            if f_mid >= 0:
                lo, f_lo = mid, f_mid
                f_hi = f_hi / 2 if side == -1 else f_hi
                side = -1
            else:
                hi, f_hi = mid, f_mid
                f_lo = f_lo / 2 if side == 1 else f_lo
                side = 1
        t = lo if abs(density(lo) - want) <= abs(density(hi) - want) else hi
        if abs(density(t) - want) > 0.02:
            raise AccelsimError(f"layer {layer}: ReLU zeros reach {100 * density(t):.1f}% density, "
                                f"not {100 * want:.1f}%; use --masks topk")
        bias.copy_(base - t)  # the chosen shift (density() may have answered from its memo)
        shifts[layer] = t
    return shifts


def synthetic_trace(model_name: str, out_path, weight_density: float | dict = 1.0,
                    act_density: float | dict = 1.0, num_samples: int = 1, seed: int = 0,
                    output_samples: int | None = None, batch_size: int = 16,
                    masks: str = "relu", eps: float = 0.1) -> str:
    """Build, prune, sparsify and record a zoo model on random images; return the trace path.

    weight_density: per compute layer (float for all, or {layer: density}); act_density: the
    input density of every hidden layer (float; 1.0 leaves the random network as it is), or
    {layer: density} for the named layers only. The image is never touched. masks: "relu"
    (zeros from the ReLUs, by bias shifts; no masks), "topk" (a top-k mask with winner rate =
    density) or "threshold" (threshold prediction from an eps-subsample, JPnet Eq. 11).
    """
    from accelsim.models import zoo

    if num_samples < 1:
        raise AccelsimError(f"--samples must be >= 1, got {num_samples}")
    if masks not in MASK_KINDS:
        raise AccelsimError(f"--masks must be one of {', '.join(MASK_KINDS)}, got {masks!r}")
    torch.manual_seed(seed)
    model = zoo.build(model_name)
    layers = zoo.compute_layers(model)
    names = [n for n, _ in layers]
    w_dens = _per_layer(weight_density, names, "weight density")
    mask_of = zoo.activation_masks(model)
    a_dens = _per_layer(act_density, list(mask_of), "activation density")
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
    gen = torch.Generator().manual_seed(seed)
    shape = zoo.input_shape(model_name)
    check_recording_size(model, torch.zeros((1, *shape)), num_samples, output_samples)
    images = torch.randn((num_samples, *shape), generator=gen)
    batches = [images[i:i + batch_size] for i in range(0, num_samples, batch_size)]
    info = {"weight_density": weight_density, "act_density": act_density, "act_zeros": masks,
            "input": "standard normal images", "input_shape": list(shape)}
    if masks == "relu":
        model.eval()
        with torch.no_grad():
            info["relu_bias_shift"] = _relu_zeros(model, mask_of, a_dens, images) if a_dens else {}
    else:
        if a_dens:
            zoo.set_winner_rates(model, a_dens, scheme=_SCHEME[masks],
                                 eps=eps if masks == "threshold" else None)
        if masks == "threshold":
            info["eps"] = float(eps)
    meta = {
        "model": model_name, "method": "synthetic", "dataset": "random", "split": None,
        "sample_indices": list(range(num_samples)), "seed": int(seed), "accuracy": None,
        "synthetic": info,
    }
    return record_trace(model, batches, os.fspath(out_path), meta, output_samples)
