"""The JPnet paper's Weight # / MAC # columns (Tables II-VII) and their check against the zoo.

The tables print rounded figures (235.2K, 0.4M, 60.9M). The paper is not consistent: some
figures are rounded half-up (AlexNet conv1 109.28M -> 109.3M), some truncated (AlexNet total
60.95M -> 60.9M); a count matches a printed figure when either rounding or truncating it to the
printed digits gives that figure. `python -m accelsim.models.paper_tables docs/models.md`
regenerates docs/models.md, so the doc always shows what the code builds.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

import torch

from accelsim.models import zoo
from accelsim.models.counting import LayerCount, count_layers

_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9}

# model: (table, [(row, printed weights, printed MACs)])
PAPER_TABLES: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "mlp3": ("Table II", [
        ("fc1", "235.2K", "235.2K"), ("fc2", "30K", "30K"), ("fc3", "1K", "1K"),
        ("Total", "266.2K", "266.2K"),
    ]),
    "lenet4": ("Table III", [
        ("conv1", "0.5K", "0.4M"), ("conv2", "25K", "4.9M"), ("fc1", "1.23M", "1.2M"),
        ("fc2", "5K", "5K"), ("Total", "1.26M", "6.5M"),
    ]),
    "convnet5": ("Table IV", [
        ("conv1", "4.8K", "0.69M"), ("conv2", "102.4K", "3.68M"), ("fc1", "884.7K", "884.7K"),
        ("fc2", "73.7K", "73.7K"), ("fc3", "1.92K", "1.92K"), ("Total", "1.07M", "5.34M"),
    ]),
    "alexnet": ("Table V", [
        ("conv1", "34.85K", "109.3M"), ("conv2", "307.2K", "240.8M"), ("conv3", "884.7K", "149.5M"),
        ("conv4", "663.5K", "112.1M"), ("conv5", "442.4K", "74.8M"), ("fc1", "37.7M", "37.7M"),
        ("fc2", "16.8M", "16.8M"), ("fc3", "4M", "4M"), ("Total", "60.9M", "745.2M"),
    ]),
    "resnet50": ("Table VI", [
        ("conv1", "9.4K", "0.84G"), ("unit2", "0.21M", "1.13G"), ("unit3", "1.21M", "1.68G"),
        ("unit4", "7.08M", "2.49G"), ("unit5", "14.94M", "1.49G"), ("Total", "25.5M", "7.63G"),
    ]),
    "wrn32": ("Table VII", [
        ("conv1", "0.43K", "0.44M"), ("unit2", "2.1M", "2.15G"), ("unit3", "8.76M", "2.6G"),
        ("unit4", "35.02M", "2.6G"), ("Total", "45.87M", "7.34G"),
    ]),
}

# Layers a table row leaves out. Table VII's unit rows (and total) count the 3x3 convs only:
# with the 1x1 projection shortcuts unit3 would be 8.81M weights, not 8.76M.
EXCLUDED = {"wrn32": lambda layer: layer.endswith(".shortcut")}


def matches(count: int, printed: str) -> bool:
    """True when rounding half-up or truncating `count` to the printed digits gives `printed`."""
    unit = printed[-1] if printed[-1] in _UNITS else ""
    number = Decimal(printed[: len(printed) - len(unit)])
    value = Decimal(count) / _UNITS[unit]
    step = Decimal(1).scaleb(number.as_tuple().exponent)
    return number in (value.quantize(step, ROUND_HALF_UP), value.quantize(step, ROUND_DOWN))


def row_layers(model_name: str, row: str, counts: list[LayerCount]) -> list[LayerCount]:
    """The layers a table row sums: one layer, a residual unit (prefix 'unitN.'), or all."""
    excluded = EXCLUDED.get(model_name, lambda layer: False)
    kept = [c for c in counts if not excluded(c.name)]
    if row == "Total":
        return kept
    return [c for c in kept if c.name == row or c.name.startswith(row + ".")]


@dataclass(frozen=True)
class RowCheck:
    row: str
    printed_weights: str
    printed_macs: str
    weights: int
    macs: int

    @property
    def weights_match(self) -> bool:
        return matches(self.weights, self.printed_weights)

    @property
    def macs_match(self) -> bool:
        return matches(self.macs, self.printed_macs)


def layer_counts(model_name: str, **kwargs) -> list[LayerCount]:
    """count_layers of a zoo model built on the meta device (shapes only: instant, no memory)."""
    with torch.device("meta"):
        model = zoo.build(model_name, **kwargs)
    return count_layers(model, model.input_shape)


def check_table(model_name: str, **kwargs) -> list[RowCheck]:
    counts = layer_counts(model_name, **kwargs)
    out = []
    for row, pw, pm in PAPER_TABLES[model_name][1]:
        layers = row_layers(model_name, row, counts)
        weights, macs = sum(c.weight_count for c in layers), sum(c.macs for c in layers)
        out.append(RowCheck(row, pw, pm, weights, macs))
    return out


# ---- markdown -------------------------------------------------------------------------------

# (model, build kwargs, heading) for every table the doc shows
DOC_VARIANTS = [
    ("mlp3", {}, "mlp3 (MLP-3, MNIST)"),
    ("lenet4", {}, "lenet4 (LeNet-4, MNIST)"),
    ("convnet5", {}, "convnet5 (ConvNet-5, CIFAR-10), variant='paper'"),
    ("convnet5", {"variant": "pool"},
     "convnet5, variant='pool' (TF tutorial layout, not the table's)"),
    ("alexnet", {}, "alexnet (AlexNet, ImageNet)"),
    ("resnet50", {}, "resnet50 (ResNet-50, ImageNet), default build"),
    ("resnet50", {"input_size": 299, "stem_padding": False, "stride_on_3x3": False},
     "resnet50(input_size=299, stem_padding=False, stride_on_3x3=False)"),
    ("wrn32", {}, "wrn32 (wide ResNet-32, CIFAR-10)"),
]


def _shape(s: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in s)


def layers_markdown(model_name: str, **kwargs) -> str:
    lines = ["| layer | kind | in | out | kernel / stride / pad / groups | weights | MACs |",
             "|---|---|---|---|---|---:|---:|"]
    for c in layer_counts(model_name, **kwargs):
        geo = "" if c.kind == "linear" else (
            f"{c.kernel[0]}x{c.kernel[1]} / {c.stride[0]} / {c.padding[0]} / {c.groups}")
        lines.append(f"| {c.name} | {c.kind} | {_shape(c.in_shape)} | {_shape(c.out_shape)} "
                     f"| {geo} "
                     f"| {c.weight_count:,} | {c.macs:,} |")
    return "\n".join(lines)


def table_markdown(model_name: str, **kwargs) -> str:
    table = PAPER_TABLES[model_name][0]
    lines = [f"| {table} row | paper weights | zoo weights | paper MACs | zoo MACs |",
             "|---|---:|---:|---:|---:|"]
    for r in check_table(model_name, **kwargs):
        w = f"{r.weights:,}" + ("" if r.weights_match else " **(no match)**")
        m = f"{r.macs:,}" + ("" if r.macs_match else " **(no match)**")
        lines.append(f"| {r.row} | {r.printed_weights} | {w} | {r.printed_macs} | {m} |")
    return "\n".join(lines)


def render_markdown() -> str:
    parts = [_INTRO]
    for name, kwargs, heading in DOC_VARIANTS:
        parts.append(f"## {heading}\n")
        with torch.device("meta"):
            shape = zoo.build(name, **kwargs).input_shape
        parts.append(f"Input {_shape(shape)}, dataset {zoo.dataset_of(name)}.\n")
        parts.append(layers_markdown(name, **kwargs) + "\n")
        parts.append(table_markdown(name, **kwargs) + "\n")
        note = _NOTES.get((name, tuple(sorted(kwargs))))
        if note:
            parts.append(note.strip() + "\n")
    return "\n".join(parts)


_INTRO = """# Model zoo (accelsim.models.zoo)

Generated by `python -m accelsim.models.paper_tables docs/models.md`; do not edit by hand
(tests/test_zoo.py fails when this file and the code disagree).

`build(name, **kwargs)` returns the JPnet paper's models with the geometries of its Tables II-VII.
Every hidden compute layer's input passes through an `ActivationMask` (accelsim.models.masks)
placed immediately before the layer, after pooling / flatten, so the mask's output (or a view of
it) is exactly what the layer receives; `activation_masks(model)` maps each masked layer's name to
its mask, `set_winner_rates(model, {"fc2": 0.25})` configures them. The model output is never masked,
and the image only in mlp3 built with `input_mask=True` (a mask in front of fc1, which carries 88%
of MLP-3's MACs); masks are off by default. Dropout (`dropout=`, mlp3 / lenet4 / convnet5 default
0, alexnet 0.5) sits after the mask, in front of fc layers that follow an fc layer, so in eval
mode the mask output feeds the layer directly. Residual blocks have one mask on the block input
that feeds conv1, the projection shortcut and (ResNet-50) the identity path.

Counting conventions (accelsim.models.counting.count_layers): weights exclude biases and
BatchNorm; MACs are dense MACs per sample. A printed table figure matches a count when rounding
half-up or truncating the count to the printed digits gives it (the paper does both: AlexNet
conv1 109.28M is printed 109.3M, the AlexNet total 60.95M is printed 60.9M).

Mask definitions (top-k tie-break: lower flat index first; threshold prediction subsample and
rounding) are documented in accelsim/models/masks.py and its numpy twin accelsim/maskfn.py.
"""

_NOTES = {
    ("convnet5", ()): """
Table IV's conv MACs (0.69M = 4.8K x 12x12, 3.68M = 102.4K x 6x6) on 24x24 crops imply 12x12 and
6x6 conv outputs, and fc1's 2304 inputs = 64 x 6x6; stride-2 SAME convolutions give exactly that.
The TensorFlow CIFAR-10 tutorial (stride-1 convs, each followed by 3x3/2 max pooling, LRN) has the
same weights but 24x24 and 12x12 conv outputs: `variant="pool"` below. `batchnorm=True` puts a
BatchNorm after conv1 and conv2 and drops their biases: the weights and MACs above are unchanged,
since at inference each BatchNorm folds into the convolution before it (`accelsim trace record
--fold-batchnorm`).
""",
    ("convnet5", ("variant",)): """
Same weights as the paper variant; the conv MAC rows cannot match (the convs run before pooling).
""",
    ("alexnet", ()): """
Table V's MACs imply conv outputs 56, 28, 13, 13, 13: conv1 11x11/4 with padding 2 on 227x227
(TF 'SAME' padding on 224x224 gives the same 56x56), 3x3/2 max pooling with padding 1 after conv1
(56 -> 28) and without after conv2 and conv5 (28 -> 13, 13 -> 6). conv2, conv4, conv5 have 2
groups. LRN is left out (no weights, no MACs). Every row matches.
""",
    ("resnet50", ()): """
Every Weight # row matches (the unit rows include the 1x1 projection shortcuts: without them
unit2 would be 0.197M, not 0.21M). No MAC # row of Table VI matches the standard 224x224
network (4.09G in all, against the table's 7.63G). The table's MACs are not consistent with any
single input resolution:
- conv1 0.84G = 9.4K x 299x299: conv1 counted at the full 299x299 input resolution, i.e. as if
  it had stride 1, which no ResNet-50 has (at stride 2 it is 0.12G on 224, 0.20G on 299).
- unit2 1.13G and unit5 1.49G match a 299x299 input with an unpadded stem (73x73 after pooling)
  and the stride on the first 1x1 conv of a unit (the original "v1" layout): the variant below.
- unit3 1.68G and unit4 2.49G match no layout we tried (the variant gives 1.66G and 2.56G;
  with the stride on the 3x3 conv, 1.79G and 2.69G), so the total 7.63G cannot match either.
""",
    ("resnet50", ("input_size", "stem_padding", "stride_on_3x3")): """
This variant reproduces unit2 and unit5 MACs (and all weights); conv1, unit3, unit4 and the total
still differ (see above).
""",
    ("wrn32", ()): """
Table VII's unit rows count the 3x3 convolutions only: the 1x1 projection shortcuts (one at the
start of each unit, 2,560 + 51,200 + 204,800 weights) are in the model but left out of the unit
rows and the total (with them unit3 would be 8.81M, not 8.76M). The MACs of unit3 and unit4
(2.6G each) imply that the first block of a downsampling unit runs its first conv at the input
resolution and downsamples in its second conv (stride 2 on conv2 and the shortcut); the Wide
ResNet reference (stride on conv1) would give 2.24G per unit. Leaky ReLU slope: `negative_slope`
(default 0.1; the paper does not give it). Every row matches.
""",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = render_markdown()
    if argv:
        with open(argv[0], "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
