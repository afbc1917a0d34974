"""The JPnet paper's models with the layer geometries implied by its Tables II-VII.

Every hidden compute layer's input passes through an ActivationMask placed immediately before
the layer (after pooling / flatten), so the mask's output is exactly what the layer receives;
the model output is never masked, and the image only where a model option asks for it
(MLP-3's `input_mask`: fc1 carries 88% of its MACs, so the pixels are where a mask pays). Masks are off by default. Dropout, where a
model has it, sits after the mask (a no-op in eval mode). Compute layers are registered in
execution order and named as the tables name them (conv1, fc2, unit3.0.conv2, ...).
docs/models.md lists each model's layers and every table row that does not match, and why.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict

import torch
from torch import nn

from accelsim.errors import AccelsimError
from accelsim.models.masks import ActivationMask
from accelsim.models.vit import vit

__all__ = [
    "MODEL_NAMES",
    "build",
    "input_shape",
    "dataset_of",
    "activation_masks",
    "compute_layers",
    "set_winner_rates",
    "trace_mask_inputs",
]

_INFO = {
    # name: (dataset, per-sample input shape)
    "mlp3": ("mnist", (1, 28, 28)),
    "lenet4": ("mnist", (1, 28, 28)),
    "convnet5": ("cifar10", (3, 24, 24)),
    "alexnet": ("imagenet", (3, 227, 227)),
    "resnet50": ("imagenet", (3, 224, 224)),
    "wrn32": ("cifar10", (3, 32, 32)),
    "vit": ("mnist", (1, 28, 28)),
}
MODEL_NAMES = tuple(_INFO)


def _check_name(name: str) -> None:
    if name not in _INFO:
        raise AccelsimError(f"unknown model {name!r}; expected one of {', '.join(MODEL_NAMES)}")


def input_shape(name: str) -> tuple[int, int, int]:
    """Default per-sample input (C, H, W) of a zoo model."""
    _check_name(name)
    return _INFO[name][1]


def dataset_of(name: str) -> str:
    """"mnist", "cifar10" or "imagenet"."""
    _check_name(name)
    return _INFO[name][0]


class ZooSequential(nn.Sequential):
    """nn.Sequential that knows which mask feeds which compute layer (mask_map)."""

    def __init__(self, steps: list[tuple[str, nn.Module]], in_shape: tuple[int, ...]) -> None:
        super().__init__(OrderedDict(steps))
        self.input_shape = tuple(in_shape)
        self.mask_map = {
            name[: -len("_mask")]: name for name, _ in steps if name.endswith("_mask")
        }


def _masked(
    name: str, layer: nn.Module, dropout: float | None = None
) -> list[tuple[str, nn.Module]]:
    """[mask, (dropout), layer] steps for a hidden compute layer."""
    steps: list[tuple[str, nn.Module]] = [(f"{name}_mask", ActivationMask())]
    if dropout is not None:
        steps.append((f"{name}_drop", nn.Dropout(dropout)))
    steps.append((name, layer))
    return steps


def _nonlinearity(activation: str, negative_slope: float = 0.1):
    """Factory for the hidden non-linearity: "relu" (intrinsic zeros) or "leaky_relu" (none,
    the case JPnet's dynamic masks are built for)."""
    if activation == "relu":
        return nn.ReLU
    if activation == "leaky_relu":
        return lambda: nn.LeakyReLU(negative_slope)
    raise AccelsimError(f"model option activation must be 'relu' or 'leaky_relu', got {activation!r}")


def _check_dropout(dropout: float) -> float:
    if not 0.0 <= float(dropout) < 1.0:
        raise AccelsimError(f"model option dropout must be in [0, 1), got {dropout!r}")
    return float(dropout)


def mlp3(
    num_classes: int = 10, dropout: float = 0.0, activation: str = "relu", negative_slope: float = 0.1,
    input_mask: bool = False,
) -> ZooSequential:
    """MLP-3 (Table II): 784-300-100-10, ReLU. Dropout (off by default) before fc2 and fc3.
    input_mask: an activation mask on the flattened image in front of fc1 (no parameters, so
    the weights of a model without it load unchanged)."""
    d = _check_dropout(dropout)
    act = _nonlinearity(activation, negative_slope)
    steps: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
    if input_mask:
        steps.append(("fc1_mask", ActivationMask()))
    steps += [("fc1", nn.Linear(784, 300)), ("relu1", act())]
    steps += _masked("fc2", nn.Linear(300, 100), d) + [("relu2", act())]
    steps += _masked("fc3", nn.Linear(100, num_classes), d)
    return ZooSequential(steps, _INFO["mlp3"][1])


def lenet4(
    num_classes: int = 10, dropout: float = 0.0, activation: str = "relu", negative_slope: float = 0.1
) -> ZooSequential:
    """LeNet-4 (Table III): conv5x5x20 SAME, pool2, conv5x5x50 SAME, pool2, fc 2450-500-10."""
    d = _check_dropout(dropout)
    act = _nonlinearity(activation, negative_slope)
    steps = [("conv1", nn.Conv2d(1, 20, 5, padding=2)), ("relu1", act())]
    steps += [("pool1", nn.MaxPool2d(2))]
    steps += _masked("conv2", nn.Conv2d(20, 50, 5, padding=2))
    steps += [("relu2", act()), ("pool2", nn.MaxPool2d(2)), ("flatten", nn.Flatten())]
    steps += _masked("fc1", nn.Linear(2450, 500)) + [("relu3", act())]
    steps += _masked("fc2", nn.Linear(500, num_classes), d)
    return ZooSequential(steps, _INFO["lenet4"][1])


def convnet5(
    num_classes: int = 10,
    dropout: float = 0.0,
    variant: str = "paper",
    activation: str = "relu",
    negative_slope: float = 0.1,
    batchnorm: bool = False,
) -> ZooSequential:
    """ConvNet-5 (Table IV) on 24x24 CIFAR-10 crops.

    variant "paper": stride-2 SAME 5x5 convolutions (24 -> 12 -> 6), which reproduces Table IV's
    weights AND MACs. variant "pool": the TensorFlow CIFAR-10 tutorial layout (stride-1 convs,
    each followed by 3x3/2 max pooling; LRN left out): same weights, 4x the conv MACs.
    batchnorm: BatchNorm2d after each convolution (bn1, bn2; the convolutions then have no bias).
    Same weights and MACs: at inference a BatchNorm is a per-channel scale and shift that folds
    into the convolution before it; what it buys is faster, steadier training.
    """
    d = _check_dropout(dropout)
    act = _nonlinearity(activation, negative_slope)
    if variant == "paper":
        conv_stride, pool = 2, (lambda: nn.Identity())
    elif variant == "pool":
        conv_stride, pool = 1, (lambda: nn.MaxPool2d(3, 2, padding=1))
    else:
        raise AccelsimError(f"convnet5: unknown variant {variant!r}; expected 'paper' or 'pool'")
    bn = bool(batchnorm)

    def conv(c_in: int) -> nn.Conv2d:
        return nn.Conv2d(c_in, 64, 5, stride=conv_stride, padding=2, bias=not bn)

    def norm(i: int) -> list[tuple[str, nn.Module]]:
        return [(f"bn{i}", nn.BatchNorm2d(64))] if bn else []

    steps = [("conv1", conv(3))] + norm(1) + [("relu1", act()), ("pool1", pool())]
    steps += _masked("conv2", conv(64)) + norm(2)
    steps += [("relu2", act()), ("pool2", pool()), ("flatten", nn.Flatten())]
    steps += _masked("fc1", nn.Linear(2304, 384)) + [("relu3", act())]
    steps += _masked("fc2", nn.Linear(384, 192), d) + [("relu4", act())]
    steps += _masked("fc3", nn.Linear(192, num_classes), d)
    return ZooSequential(steps, _INFO["convnet5"][1])


def alexnet(num_classes: int = 1000, dropout: float = 0.5) -> ZooSequential:
    """AlexNet (Table V) on 227x227: conv1 11x11/4 pad 2 (56x56), conv2/4/5 in 2 groups.

    Output sizes 56, 28, 13, 13, 13 reproduce Table V's MACs (TF 'SAME' on 224 gives the same
    56x56). LRN is left out (no weights, no MACs). Dropout before fc2 and fc3.
    """
    d = _check_dropout(dropout)
    steps = [("conv1", nn.Conv2d(3, 96, 11, stride=4, padding=2)), ("relu1", nn.ReLU())]
    steps += [("pool1", nn.MaxPool2d(3, 2, padding=1))]
    steps += _masked("conv2", nn.Conv2d(96, 256, 5, padding=2, groups=2))
    steps += [("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(3, 2))]
    steps += _masked("conv3", nn.Conv2d(256, 384, 3, padding=1)) + [("relu3", nn.ReLU())]
    steps += _masked("conv4", nn.Conv2d(384, 384, 3, padding=1, groups=2)) + [("relu4", nn.ReLU())]
    steps += _masked("conv5", nn.Conv2d(384, 256, 3, padding=1, groups=2))
    steps += [("relu5", nn.ReLU()), ("pool5", nn.MaxPool2d(3, 2)), ("flatten", nn.Flatten())]
    steps += _masked("fc1", nn.Linear(9216, 4096)) + [("relu6", nn.ReLU())]
    steps += _masked("fc2", nn.Linear(4096, 4096), d) + [("relu7", nn.ReLU())]
    steps += _masked("fc3", nn.Linear(4096, num_classes), d)
    return ZooSequential(steps, _INFO["alexnet"][1])


class Bottleneck(nn.Module):
    """ResNet bottleneck (post-activation). One mask on the block input feeds conv1, the
    projection shortcut and the identity path: the block reads only the winners."""

    def __init__(self, c_in: int, width: int, stride: int, stride_on_3x3: bool) -> None:
        super().__init__()
        c_out = 4 * width
        s1, s3 = (1, stride) if stride_on_3x3 else (stride, 1)
        self.in_mask = ActivationMask()
        self.conv1 = nn.Conv2d(c_in, width, 1, stride=s1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2_mask = ActivationMask()
        self.conv2 = nn.Conv2d(width, width, 3, stride=s3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3_mask = ActivationMask()
        self.conv3 = nn.Conv2d(width, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
            self.shortcut_bn = nn.BatchNorm2d(c_out)
        else:
            self.shortcut = None
        self.relu = nn.ReLU()
        self.mask_map = {"conv1": "in_mask", "conv2": "conv2_mask", "conv3": "conv3_mask"}
        if self.shortcut is not None:
            self.mask_map["shortcut"] = "in_mask"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.in_mask(x)
        y = self.relu(self.bn1(self.conv1(m)))
        y = self.relu(self.bn2(self.conv2(self.conv2_mask(y))))
        y = self.bn3(self.conv3(self.conv3_mask(y)))
        s = m if self.shortcut is None else self.shortcut_bn(self.shortcut(m))
        return self.relu(y + s)


class WideBlock(nn.Module):
    """Pre-activation wide-ResNet basic block with leaky ReLU. The downsampling stride sits on
    conv2 (conv1 runs at the input resolution): this is what Table VII's MACs imply."""

    def __init__(self, c_in: int, c_out: int, stride: int, slope: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.in_mask = ActivationMask()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2_mask = ActivationMask()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=stride, padding=1, bias=False)
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
        else:
            self.shortcut = None
        self.act = nn.LeakyReLU(slope)
        self.mask_map = {"conv1": "in_mask", "conv2": "conv2_mask"}
        if self.shortcut is not None:
            self.mask_map["shortcut"] = "in_mask"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.in_mask(self.act(self.bn1(x)))
        y = self.conv1(m)
        y = self.conv2(self.conv2_mask(self.act(self.bn2(y))))
        return y + (x if self.shortcut is None else self.shortcut(m))


class ZooResNet(nn.Module):
    """Stem conv1, residual units unit2..unitN (nn.Sequential of blocks), head fc."""

    def __init__(
        self,
        stem: list[tuple[str, nn.Module]],
        units: list[tuple[str, nn.Sequential]],
        head: list[tuple[str, nn.Module]],
        fc: nn.Linear,
        in_shape: tuple[int, ...],
    ) -> None:
        super().__init__()
        for name, mod in stem + units + head:
            self.add_module(name, mod)
        self.fc_mask = ActivationMask()
        self.fc = fc
        self._order = [n for n, _ in stem + units + head] + ["fc_mask", "fc"]
        self.input_shape = tuple(in_shape)
        self.mask_map = {"fc": "fc_mask"}
        for uname, unit in units:
            for bname, block in unit.named_children():
                for layer, mask in block.mask_map.items():
                    self.mask_map[f"{uname}.{bname}.{layer}"] = f"{uname}.{bname}.{mask}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self._order:
            x = getattr(self, name)(x)
        return x


def resnet50(num_classes: int = 1000, input_size: int = 224, stem_padding: bool = True,
             stride_on_3x3: bool = True) -> ZooResNet:
    """ResNet-50 (Table VI). Defaults: the torchvision layout on 224x224 (stride on the 3x3
    conv, "v1.5"). input_size=299, stem_padding=False, stride_on_3x3=False is the variant
    that reproduces Table VI's unit2 and unit5 MACs (see docs/models.md)."""
    p_conv, p_pool = (3, 1) if stem_padding else (0, 0)
    stem = [
        ("conv1", nn.Conv2d(3, 64, 7, stride=2, padding=p_conv, bias=False)),
        ("bn1", nn.BatchNorm2d(64)),
        ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(3, 2, padding=p_pool)),
    ]
    units, c_in = [], 64
    plan = [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]  # width, blocks, stride
    for i, (width, blocks, stride) in enumerate(plan):
        layers = []
        for b in range(blocks):
            layers.append(Bottleneck(c_in, width, stride if b == 0 else 1, stride_on_3x3))
            c_in = 4 * width
        units.append((f"unit{i + 2}", nn.Sequential(*layers)))
    head = [("avgpool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten())]
    return ZooResNet(stem, units, head, nn.Linear(2048, num_classes), (3, input_size, input_size))


def wrn32(num_classes: int = 10, negative_slope: float = 0.1) -> ZooResNet:
    """Wide ResNet-32 (Table VII): conv1 3x3x16, three units of 5 pre-activation blocks with
    widths 160/320/640, leaky ReLU, global average pooling, fc 640x10."""
    stem = [("conv1", nn.Conv2d(3, 16, 3, padding=1, bias=False))]
    units, c_in = [], 16
    for i, (width, stride) in enumerate([(160, 1), (320, 2), (640, 2)]):
        layers = []
        for b in range(5):
            layers.append(WideBlock(c_in, width, stride if b == 0 else 1, negative_slope))
            c_in = width
        units.append((f"unit{i + 2}", nn.Sequential(*layers)))
    head = [
        ("bn", nn.BatchNorm2d(640)),
        ("act", nn.LeakyReLU(negative_slope)),
        ("avgpool", nn.AdaptiveAvgPool2d(1)),
        ("flatten", nn.Flatten()),
    ]
    return ZooResNet(stem, units, head, nn.Linear(640, num_classes), _INFO["wrn32"][1])


_BUILDERS = {
    "mlp3": mlp3,
    "lenet4": lenet4,
    "convnet5": convnet5,
    "alexnet": alexnet,
    "resnet50": resnet50,
    "wrn32": wrn32,
    "vit": vit,
}


def build(name: str, **kwargs) -> nn.Module:
    """A fresh zoo model; kwargs go to its builder (num_classes, dropout, variant, ...)."""
    _check_name(name)
    builder = _BUILDERS[name]
    allowed = inspect.signature(builder).parameters
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise AccelsimError(
            f"model {name}: bad option {', '.join(unknown)}; options are {', '.join(allowed)}"
        )
    return builder(**kwargs)


def compute_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every Conv2d/Linear in registration order (= execution order for zoo
    models; for other models use accelsim.models.counting.count_layers for the true order)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def activation_masks(
    model: nn.Module, input_shape: tuple[int, ...] | None = None
) -> dict[str, ActivationMask]:
    """{compute layer name: the ActivationMask whose output that layer receives}.

    Zoo models know their masks (mask_map); for any other model pass input_shape and the
    pairing is found by tracing one forward pass (trace_mask_inputs).
    """
    mask_map = getattr(model, "mask_map", None)
    if mask_map is None:
        if input_shape is None:
            raise AccelsimError(
                f"activation_masks: {type(model).__name__} has no mask_map; "
                "pass input_shape to trace it"
            )
        mask_map = trace_mask_inputs(model, input_shape)
    return {layer: model.get_submodule(mask) for layer, mask in mask_map.items()}


def trace_mask_inputs(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, str]:
    """{layer name: mask name} found by one forward on random data: a layer is fed by a mask
    when its input shares storage with that mask's output (the mask output, or a view of it)."""
    masks = {n: m for n, m in model.named_modules() if isinstance(m, ActivationMask)}
    layers = dict(compute_layers(model))
    mask_out: dict[int, str] = {}
    fed: dict[str, str] = {}
    alive: list[torch.Tensor] = []  # no storage is freed and reused while the forward runs

    def on_mask(name):
        def hook(module, args, output):
            out = output.clone()  # a fresh storage, so only real consumers match
            alive.append(out)
            mask_out[out.untyped_storage().data_ptr()] = name
            return out

        return hook

    def on_layer(name):
        def hook(module, args):
            owner = mask_out.get(args[0].untyped_storage().data_ptr())
            if owner is not None:
                fed[name] = owner

        return hook

    from accelsim.models.forward import one_forward

    one_forward(model, input_shape, [(m, "post", on_mask(n)) for n, m in masks.items()]
                + [(m, "pre", on_layer(n)) for n, m in layers.items()], fill=torch.randn)
    return fed


def set_winner_rates(model: nn.Module, rates: dict[str, float], scheme: str = "topk",
                     eps: float | None = None) -> None:
    """Configure the mask in front of each named layer (layers not named are left as they are).

    Layers that share one mask (a residual block's conv1 and projection shortcut) must be given
    the same rate.
    """
    masks = activation_masks(model)
    chosen: dict[int, tuple[str, float]] = {}
    for layer, rate in rates.items():
        if layer not in masks:
            raise AccelsimError(
                f"set_winner_rates: layer {layer!r} has no activation mask; masked layers: "
                + ", ".join(masks)
            )
        key = id(masks[layer])
        if key in chosen and chosen[key][1] != float(rate):
            raise AccelsimError(
                f"set_winner_rates: layers {chosen[key][0]!r} and {layer!r} share one mask but got "
                f"rates {chosen[key][1]} and {rate}"
            )
        chosen[key] = (layer, float(rate))
    for layer, rate in chosen.values():
        masks[layer].configure(scheme, rate, eps=eps)
