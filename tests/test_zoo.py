"""Zoo geometries against the JPnet Tables II-VII, mask placement, and the shape counter."""

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from accelsim.errors import AccelsimError
from accelsim.models import zoo
from accelsim.models.counting import count_layers, geometry_of
from accelsim.models.masks import ActivationMask
from accelsim.models.paper_tables import PAPER_TABLES, check_table, matches, render_markdown

RESNET_V1_299 = {"input_size": 299, "stem_padding": False, "stride_on_3x3": False}

# Table rows no geometry reproduces (documented in docs/models.md): (model, variant, row) -> column
NO_MATCH = {
    ("resnet50", "default", r): "macs"
    for r in ("conv1", "unit2", "unit3", "unit4", "unit5", "Total")
} | {("resnet50", "v1-299", r): "macs" for r in ("conv1", "unit3", "unit4", "Total")}

CASES = [(m, "default", {}) for m in PAPER_TABLES] + [("resnet50", "v1-299", RESNET_V1_299)]


@pytest.mark.parametrize("model, variant, kwargs", CASES, ids=[f"{m}-{v}" for m, v, _ in CASES])
def test_table_rows_weights_and_macs(model, variant, kwargs):
    checks = check_table(model, **kwargs)
    assert [c.row for c in checks] == [r for r, _, _ in PAPER_TABLES[model][1]]
    for c in checks:
        expect_macs = NO_MATCH.get((model, variant, c.row)) != "macs"
        assert c.weights_match, (c.row, c.weights, c.printed_weights)
        assert c.macs_match == expect_macs, (c.row, c.macs, c.printed_macs)


def test_exact_counts_of_key_layers():
    # closed forms: LeNet-4 conv2 = 14*14 positions x 20 x 5 x 5 x 50; AlexNet conv2 grouped
    by_name = {m: {c.row: c for c in check_table(m)} for m in ("lenet4", "alexnet", "wrn32")}
    assert by_name["lenet4"]["conv2"].macs == 14 * 14 * 20 * 25 * 50
    assert by_name["alexnet"]["conv2"].weights == 256 * 48 * 25
    assert by_name["alexnet"]["conv2"].macs == 28 * 28 * 48 * 25 * 256
    # wrn32 unit3: first conv at 32x32, the rest at 16x16 (projection shortcut excluded)
    assert by_name["wrn32"]["unit3"].macs == 160 * 9 * 320 * 32 * 32 + (320 * 9 * 320) * 9 * 16 * 16


def test_printed_figure_matching_rounds_or_truncates():
    assert matches(109_283_328, "109.3M")  # rounded
    assert matches(60_954_656, "60.9M")  # truncated
    assert matches(1_000, "1K") and matches(8_755_200, "8.76M")
    assert not matches(8_806_400, "8.76M")  # wrn32 unit3 with its projection shortcut
    assert not matches(118_013_952, "0.84G")


def test_docs_models_md_is_generated_from_the_code():
    doc = Path(__file__).resolve().parents[1] / "docs" / "models.md"
    assert doc.read_text(encoding="utf-8") == render_markdown(), (
        "docs/models.md is stale: python -m accelsim.models.paper_tables docs/models.md"
    )


@pytest.mark.parametrize("name", zoo.MODEL_NAMES)
def test_masks_feed_exactly_the_next_layer(name):
    model = zoo.build(name)
    first = zoo.compute_layers(model)[0][0]
    # residual nets pool adaptively: a smaller image traces the same pairing, faster
    shape = {"resnet50": (3, 64, 64), "wrn32": (3, 16, 16)}.get(name, zoo.input_shape(name))
    traced = zoo.trace_mask_inputs(model, shape)
    assert traced == model.mask_map
    layers = [n for n, _ in zoo.compute_layers(model)]
    if name == "vit":  # the ViT's masks are its MLP hidden activations only (after GELU)
        assert set(traced) == {n for n in layers if n.endswith(".fc2")} != set()
    else:
        assert set(layers) - set(traced) == {first}  # only the layer reading the image is unmasked
    masks = zoo.activation_masks(model)
    assert all(isinstance(m, ActivationMask) for m in masks.values())
    # every mask in the model feeds some layer; none is off by default
    assert {id(m) for m in masks.values()} == {
        id(m) for m in model.modules() if isinstance(m, ActivationMask)
    }
    assert all(m.scheme == "off" for m in masks.values())


@pytest.mark.parametrize("name", zoo.MODEL_NAMES)
def test_compute_layers_are_in_execution_order(name):
    with torch.device("meta"):
        model = zoo.build(name)
    executed = [c.name for c in count_layers(model, zoo.input_shape(name))]
    assert executed == [n for n, _ in zoo.compute_layers(model)]
    assert len(executed) == len(set(executed))
    assert count_layers(model, zoo.input_shape(name))[-1].out_shape == (
        (1000,) if zoo.dataset_of(name) == "imagenet" else (10,)
    )


def test_set_winner_rates_masks_layer_inputs_to_k_per_sample():
    torch.manual_seed(0)
    model = zoo.build("lenet4").eval()
    zoo.set_winner_rates(model, {"conv2": 0.1, "fc1": 0.05, "fc2": 0.2})
    seen = {}
    for lname, mod in zoo.compute_layers(model):
        mod.register_forward_pre_hook(lambda m, a, lname=lname: seen.__setitem__(lname, a[0]))
    x = torch.randn(4, 1, 28, 28)
    model(x)
    for lname, n in (("conv2", 20 * 14 * 14), ("fc1", 2450), ("fc2", 500)):
        k = math.floor(model.get_submodule(model.mask_map[lname]).winner_rate * n + 0.5)
        assert ((seen[lname] != 0).reshape(4, -1).sum(1) <= k).all()
    # the layer input is the mask output: premask * mask, as the trace recorder will store it
    mask = model.get_submodule("fc1_mask")
    mask.keep_last = True
    model(x)
    # k = floor(0.05 * 2450 + 0.5) = 123 (Python's round(122.5) would give 122)
    assert mask.last_mask.reshape(4, -1).sum(1).tolist() == [123] * 4
    assert torch.equal(seen["fc1"], mask.last_premask * mask.last_mask)
    assert mask.mask_params() == {
        "scheme": "topk", "winner_rate": 0.05, "threshold": None, "eps": None
    }


def test_dropout_sits_between_mask_and_layer():
    with torch.device("meta"):
        model = zoo.build("alexnet", dropout=0.3)
    names = list(model._modules)
    i = names.index("fc2")
    assert names[i - 2 : i + 1] == ["fc2_mask", "fc2_drop", "fc2"]
    assert model.fc2_drop.p == 0.3


def test_shared_residual_mask_and_threshold_prediction_rates():
    with torch.device("meta"):
        model = zoo.build("resnet50")
    masks = zoo.activation_masks(model)
    assert masks["unit3.0.conv1"] is masks["unit3.0.shortcut"]
    zoo.set_winner_rates(model, {"unit3.0.conv1": 0.3, "unit3.0.shortcut": 0.3, "fc": 0.5},
                         scheme="threshold-prediction", eps=0.1)
    assert masks["unit3.0.shortcut"].mask_params()["eps"] == 0.1
    with pytest.raises(AccelsimError, match="share one mask"):
        zoo.set_winner_rates(model, {"unit3.0.conv1": 0.3, "unit3.0.shortcut": 0.4})
    with pytest.raises(AccelsimError, match="'conv1' has no activation mask"):
        zoo.set_winner_rates(model, {"conv1": 0.5})


def test_model_names_and_errors():
    assert zoo.MODEL_NAMES == ("mlp3", "lenet4", "convnet5", "alexnet", "resnet50", "wrn32", "vit")
    assert zoo.dataset_of("wrn32") == "cifar10" and zoo.input_shape("convnet5") == (3, 24, 24)
    with pytest.raises(AccelsimError, match="unknown model 'vgg16'"):
        zoo.build("vgg16")
    with pytest.raises(AccelsimError, match="model mlp3: bad option"):
        zoo.build("mlp3", widht=3)
    with pytest.raises(AccelsimError, match="variant"):
        zoo.build("convnet5", variant="tf")
    # wrn32 uses leaky ReLU: no intrinsic zeros
    assert any(isinstance(m, nn.LeakyReLU) for m in zoo.build("wrn32").modules())


def test_count_layers_grouped_strided_dilated_conv_closed_form():
    conv = nn.Conv2d(6, 8, (3, 5), stride=(2, 3), padding=(1, 2), dilation=(2, 1), groups=2)
    (c,) = count_layers(nn.Sequential(conv), (6, 17, 19))
    oh = (17 + 2 * 1 - 2 * (3 - 1) - 1) // 2 + 1  # 8
    ow = (19 + 2 * 2 - 1 * (5 - 1) - 1) // 3 + 1  # 7
    assert (oh, ow) == (8, 7) and c.out_shape == (8, oh, ow)
    assert c.weight_count == 8 * 3 * 3 * 5
    assert c.macs == oh * ow * (6 // 2) * 3 * 5 * 8
    geometry = (c.kernel, c.stride, c.padding, c.dilation, c.groups)
    assert geometry == ((3, 5), (2, 3), (1, 2), (2, 1), 2)
    geo = geometry_of("c", conv, c.in_shape, c.out_shape)
    assert geo.dense_macs == c.macs and geo.weight_shape == tuple(conv.weight.shape)
    assert geo.has_bias


def test_count_layers_residual_and_reused_module():
    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(4, 4, 3, padding=1, bias=False)
            self.fc = nn.Linear(4 * 5 * 5, 3)

        def forward(self, x):
            y = self.a(x) + x
            y = self.a(y)  # the same layer called twice: two records
            return self.fc(y.flatten(1))

    model = Res().train()
    counts = count_layers(model, (4, 5, 5))
    assert [c.name for c in counts] == ["a", "a", "fc"]
    assert [c.macs for c in counts] == [25 * 4 * 9 * 4] * 2 + [100 * 3]
    assert model.training  # mode restored
    geo = geometry_of("fc", model.fc, (100,), (3,))
    assert geo.kind == "linear" and geo.dense_macs == 300
    tok = geometry_of("fc", model.fc, (4, 100), (4, 3))  # a Linear on 4 tokens
    assert tok.kind == "token_linear" and tok.weight_shape == (3, 100) and tok.dense_macs == 1200


def test_mlp3_input_mask_thresholds_the_pixels_fc1_reads():
    plain, masked = zoo.build("mlp3"), zoo.build("mlp3", input_mask=True)
    assert "fc1" not in zoo.activation_masks(plain)
    masked.load_state_dict(plain.state_dict(), strict=True)  # no parameters of its own
    assert zoo.trace_mask_inputs(masked, (1, 28, 28)) == masked.mask_map
    masks = zoo.activation_masks(masked)
    assert masks["fc1"].scheme == "off"
    masks["fc1"].configure("static-threshold", threshold=0.5)
    seen = []
    masked.fc1.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    x = torch.tensor([0.0, 0.2, 0.5, 0.51, 1.0]).repeat(157)[:784].reshape(1, 1, 28, 28)
    masked(x)
    assert torch.equal(seen[0], torch.where(x.flatten(1) > 0.5, x.flatten(1), 0.0))


def test_convnet5_batchnorm_keeps_table_iv_counts_and_folds_into_the_convs():
    """BatchNorm adds no weight and no MAC: in eval mode it is a per-channel affine map that the
    trace recorder's --fold-batchnorm folds into the convolution before it, outputs unchanged."""
    from accelsim.traces.foldbn import fold_batchnorm

    plain, bn = zoo.build("convnet5"), zoo.build("convnet5", batchnorm=True)
    shape = zoo.input_shape("convnet5")
    counts = [(c.name, c.weight_count, c.macs) for c in count_layers(plain, shape)]
    assert [(c.name, c.weight_count, c.macs) for c in count_layers(bn, shape)] == counts
    torch.manual_seed(0)
    for norm in (bn.bn1, bn.bn2):  # non-trivial running statistics and affine parameters
        norm.running_mean.uniform_(-1, 1), norm.running_var.uniform_(0.5, 2)
        norm.weight.data.uniform_(0.5, 1.5), norm.bias.data.uniform_(-0.5, 0.5)
    bn.eval()
    x = torch.rand(4, *shape)
    with torch.no_grad():
        want = bn(x)
    assert fold_batchnorm(bn, x[:1]) == [("conv1", "bn1"), ("conv2", "bn2")]
    with torch.no_grad():
        assert torch.allclose(bn(x), want, atol=1e-4)
    assert [(c.name, c.weight_count, c.macs) for c in count_layers(bn, shape)] == counts
