"""One probing forward pass: hooks attached, one sample through the model, everything restored.

Several parts learn a model's structure by watching one forward pass (layer shapes and MACs,
which dropout precedes which layer, which mask feeds which layer); this is that pass, once.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn


def one_forward(model: nn.Module, input_shape: Sequence[int],
                hooks: Sequence[tuple[nn.Module, str, Callable]],
                fill: Callable = torch.zeros) -> None:
    """Run one sample of `input_shape` (per sample, e.g. (1, 28, 28)), made by `fill` (torch.zeros
    or torch.randn) on the model's device and dtype, in eval mode without gradients, with `hooks`
    attached: (module, "pre" or "post", fn) as for register_forward_pre_hook / register_forward_hook.
    The hooks are removed and the train/eval mode restored afterwards, also on an error."""
    handles = []
    was_training = model.training
    try:
        for module, when, fn in hooks:
            register = module.register_forward_pre_hook if when == "pre" else module.register_forward_hook
            handles.append(register(fn))
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        model.eval()
        with torch.no_grad():
            model(fill((1, *(int(d) for d in input_shape)), device=device, dtype=dtype))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
