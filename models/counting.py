"""Shape-based weight and MAC counter for any nn.Module with Conv2d / Linear layers.

Runs one forward pass on zeros with forward hooks, so it sees the shapes the layers really get
(grouped, strided, dilated convolutions, residual nets, anything). MACs are dense MACs per
sample: conv = out positions x in-channels-per-group x kh x kw x out-channels; linear = in x out
(times any extra leading positions). Weight counts exclude biases, as the JPnet tables do.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from accelsim.errors import AccelsimError
from accelsim.traces.schema import LayerGeometry

__all__ = ["LayerCount", "count_layers", "geometry_of", "conv_padding"]


@dataclass(frozen=True)
class LayerCount:
    """One call of a compute layer: its shapes (per sample) and dense cost."""

    name: str
    kind: str  # "conv2d" | "linear"
    weight_count: int
    macs: int
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1


def conv_padding(module: nn.Conv2d) -> tuple[int, int]:
    """Leading (top, left) zero padding of a Conv2d as ints ('same' pads the extra on the end)."""
    if isinstance(module.padding, str):
        if module.padding == "valid":
            return (0, 0)
        # 'same' (stride 1 only): total = dilation * (k - 1); PyTorch puts the odd one last
        return tuple(d * (k - 1) // 2 for d, k in zip(module.dilation, module.kernel_size))
    return (int(module.padding[0]), int(module.padding[1]))


def geometry_of(
    name: str, module: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...]
) -> LayerGeometry:
    """LayerGeometry of a Conv2d/Linear from its per-sample input and output shapes."""
    in_shape = tuple(int(d) for d in in_shape)
    out_shape = tuple(int(d) for d in out_shape)
    has_bias = getattr(module, "bias", None) is not None
    if isinstance(module, nn.Conv2d):
        if len(in_shape) != 3 or len(out_shape) != 3:
            raise AccelsimError(
                f"layer {name}: conv2d expects (C, H, W) shapes, got {in_shape} -> {out_shape}"
            )
        return LayerGeometry(
            name=name,
            kind="conv2d",
            in_shape=in_shape,
            out_shape=out_shape,
            kernel=tuple(int(k) for k in module.kernel_size),
            stride=tuple(int(s) for s in module.stride),
            padding=conv_padding(module),
            dilation=tuple(int(d) for d in module.dilation),
            groups=int(module.groups),
            has_bias=has_bias,
        )
    if isinstance(module, nn.Linear):
        if len(in_shape) == 1:
            return LayerGeometry(
                name=name, kind="linear", in_shape=in_shape, out_shape=out_shape, has_bias=has_bias
            )
        # (tokens, features), or more leading dimensions taken together as the tokens
        tokens = 1
        for d in in_shape[:-1]:
            tokens *= d
        return LayerGeometry(name=name, kind="token_linear", in_shape=(tokens, in_shape[-1]),
                             out_shape=(tokens, out_shape[-1]), has_bias=has_bias)
    if getattr(module, "accelsim_product", False) is True:
        if len(in_shape) != 3 or len(out_shape) != 3:
            raise AccelsimError(f"layer {name}: an activation product needs (heads, tokens, "
                                f"features) operands per sample, got {in_shape} -> {out_shape}")
        return LayerGeometry(name=name, kind="matmul", in_shape=in_shape, out_shape=out_shape)
    raise AccelsimError(f"layer {name}: {type(module).__name__} is not a Conv2d or Linear layer")


def _count_call(name: str, module: nn.Module, in_shape: tuple, out_shape: tuple) -> LayerCount:
    weights = int(module.weight.numel())
    if isinstance(module, nn.Conv2d):
        m, oh, ow = out_shape
        c_per_group = in_shape[0] // module.groups
        kh, kw = module.kernel_size
        return LayerCount(
            name=name,
            kind="conv2d",
            weight_count=weights,
            macs=int(oh * ow * c_per_group * kh * kw * m),
            in_shape=in_shape,
            out_shape=out_shape,
            kernel=(int(kh), int(kw)),
            stride=tuple(int(s) for s in module.stride),
            padding=conv_padding(module),
            dilation=tuple(int(d) for d in module.dilation),
            groups=int(module.groups),
        )
    positions = 1
    for d in out_shape[:-1]:
        positions *= int(d)
    return LayerCount(
        name=name,
        kind="linear",
        weight_count=weights,
        macs=int(positions * module.in_features * module.out_features),
        in_shape=in_shape,
        out_shape=out_shape,
    )


def count_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerCount]:
    """Every Conv2d/Linear call, in execution order, from one forward of a zero sample.

    input_shape is per sample, e.g. (1, 28, 28). The model's train/eval mode is restored.
    """
    from accelsim.models.forward import one_forward

    records: list[LayerCount] = []

    def hook_for(name: str):
        def hook(module, args, output):
            in_shape = tuple(args[0].shape[1:])
            out_shape = tuple(output.shape[1:])
            records.append(_count_call(name, module, in_shape, out_shape))

        return hook

    one_forward(model, input_shape, [(module, "post", hook_for(name)) for name, module in
                                     model.named_modules() if isinstance(module, (nn.Conv2d, nn.Linear))])
    return records
