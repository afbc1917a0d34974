"""Fold inference BatchNorm into the Conv2d / Linear in front of it, as deployed accelerators do
(`accelsim trace record --fold-batchnorm`; docs/own-model.md, section 4).

In inference a BatchNorm is a per-channel affine map y = (x - mean) * g / sqrt(var + eps) + b
with frozen statistics, so the layer before it can absorb it: W' = W * s and b' = (b - mean) * s
+ beta per output channel, s = gamma / sqrt(var + eps). The folded layer's outputs are the
BatchNorm's outputs; the BatchNorm becomes an nn.Identity. Weights masked to zero stay zero.

A BatchNorm is folded only where that is exact: it runs once, reads the layer's own output (no
mask or other op between them) and is the only op that reads it, and the layer runs once. Which
pairs qualify is seen by running one example batch (forward hooks and a TorchFunctionMode that
counts the readers of each layer output).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from accelsim.errors import AccelsimError

BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
LAYERS = (nn.Conv2d, nn.Linear)


class _Readers(TorchFunctionMode):
    """Counts, per watched tensor, the torch calls that take it as an operand."""

    def __init__(self, watched: dict):
        super().__init__()
        self.watched = watched  # id(tensor) -> [tensor, readers]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if isinstance(out, torch.Tensor) or (isinstance(out, (tuple, list)) and any(
                isinstance(o, torch.Tensor) for o in out)):
            for a in list(args) + list(kwargs.values()):
                entry = self.watched.get(id(a)) if isinstance(a, torch.Tensor) else None
                if entry is not None and entry[0] is a:
                    entry[1] += 1
        return out


def foldable_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """[(layer name, batchnorm name)] that fold exactly, in execution order (one forward pass
    of `example` in eval mode, gradients off)."""
    names = {id(m): n for n, m in model.named_modules()}
    calls: dict[int, int] = {}
    outputs: dict[int, list] = {}  # id(tensor) -> [tensor, readers]
    produced: dict[int, str] = {}  # id(tensor) -> layer name
    found: list[tuple[str, str, int]] = []

    def count(module, args):
        calls[id(module)] = calls.get(id(module), 0) + 1

    def layer_out(module, args, output):  # first of the forward hooks: the raw output
        if isinstance(output, torch.Tensor):
            outputs[id(output)] = [output, 0]
            produced[id(output)] = names[id(module)]

    def bn_in(module, args):
        x = args[0] if args else None
        entry = outputs.get(id(x)) if isinstance(x, torch.Tensor) else None
        if entry is not None and entry[0] is x:
            found.append((produced[id(x)], names[id(module)], id(x)))

    handles = []
    for m in model.modules():
        if isinstance(m, LAYERS + BATCHNORMS):
            handles.append(m.register_forward_pre_hook(count))
        if isinstance(m, LAYERS):
            handles.append(m.register_forward_hook(layer_out, prepend=True))
        if isinstance(m, BATCHNORMS):
            handles.append(m.register_forward_pre_hook(bn_in))
    was = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]), _Readers(outputs):
            model(example)
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    mods = dict(model.named_modules())
    pairs = []
    for layer, bn, key in found:
        mod_bn = mods[bn]
        ok = (calls.get(id(mods[layer])) == 1 and calls.get(id(mod_bn)) == 1
              and outputs[key][1] == 1 and mod_bn.running_mean is not None
              and mod_bn.num_features == _out_channels(mods[layer]))
        if ok:
            pairs.append((layer, bn))
    return pairs


def _out_channels(layer: nn.Module) -> int:
    return int(layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features)


def fold_batchnorm(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """Fold every foldable BatchNorm into its layer, in place; returns the pairs folded."""
    pairs = foldable_pairs(model, example)
    mods = dict(model.named_modules())
    for layer_name, bn_name in pairs:
        _fold(mods[layer_name], mods[bn_name])
        parent_name, _, child = bn_name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        if not child:
            raise AccelsimError("the model itself is a BatchNorm; nothing to fold it into")
        setattr(parent, child, nn.Identity())
    return pairs


@torch.no_grad()
def _fold(layer: nn.Module, bn: nn.Module) -> None:
    var = bn.running_var.double()
    scale = 1.0 / torch.sqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    shape = (-1,) + (1,) * (layer.weight.dim() - 1)
    # torch.nn.utils.prune keeps the trained weight in weight_orig and recomputes weight
    target = layer.weight_orig if hasattr(layer, "weight_orig") else layer.weight
    target.copy_((target.double() * scale.reshape(shape)).to(target.dtype))
    bias = shift if layer.bias is None else layer.bias.double() * scale + shift
    if layer.bias is None:
        layer.bias = nn.Parameter(bias.to(layer.weight.dtype))
    else:
        layer.bias.copy_(bias.to(layer.bias.dtype))
