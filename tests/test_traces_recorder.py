"""Recorder: any nn.Module (grouped strided conv, residual add, leaky ReLU, dynamic mask)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from accelsim.errors import AccelsimError
from accelsim.models.masks import ActivationMask
from accelsim.traces.reader import open_trace, validate_trace
from accelsim.traces.recorder import TraceRecorder, record_trace

META = {"model": "toy", "method": "jpnet", "dataset": "random"}


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.grouped = nn.Conv2d(8, 8, 3, stride=2, padding=2, dilation=2, groups=4, bias=False)
        self.down = nn.Conv2d(8, 8, 1, stride=2)
        self.act = nn.LeakyReLU(0.1)
        self.mask = ActivationMask("topk", winner_rate=0.25)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        h = self.act(self.stem(x))
        h = self.act(self.grouped(h) + self.down(h))  # residual add
        h = self.mask(h)
        return self.fc(h.flatten(1))


def make_model():
    torch.manual_seed(0)
    model = Toy()
    prune.l1_unstructured(model.grouped, "weight", amount=0.5)
    return model


def test_records_every_layer_and_reproduces_outputs(tmp_path):
    model = make_model()
    x = torch.randn(10, 3, 8, 8)
    path = tmp_path / "toy.trace.safetensors"
    record_trace(model, [x[:4], (x[4:], torch.zeros(6))], path, META, output_samples=7)
    t = validate_trace(path)
    assert t.names == ["stem", "grouped", "down", "fc"] and t.num_samples == 10
    assert t.output_samples == 7
    g = t.geometries[1]
    assert (g.kind, g.in_shape, g.out_shape, g.stride, g.padding, g.dilation, g.groups) == \
        ("conv2d", (8, 8, 8), (8, 4, 4), (2, 2), (2, 2), (2, 2), 4)
    # weight as used and its mask from torch.nn.utils.prune
    grouped = t.layer("grouped")
    assert t.meta["layers"][1]["weight_encoding"] == "masked"
    np.testing.assert_array_equal(grouped.weight_mask, model.grouped.weight_mask.numpy().astype(bool))
    assert grouped.weight_mask.sum() == grouped.weight.size // 2
    assert t.layer("stem").weight_mask is None and t.layer("stem").mask_params is None
    # the mask is attached to fc (its output is fc's input through a flatten view)
    fc = t.layer("fc")
    assert fc.mask_params.scheme == "topk" and fc.mask_params.winner_rate == 0.25
    np.testing.assert_array_equal(fc.act_mask.nnz_per_sample(), np.full(10, 32))  # 0.25 * 128
    pre, win = fc.premask.to_dense(), fc.act_mask.to_dense().astype(bool)
    np.testing.assert_array_equal(fc.inputs.to_dense(), np.where(win, pre, 0))
    # recorded inputs x recorded weights = recorded outputs, for every layer
    for rec in t:
        xin = torch.from_numpy(rec.inputs.to_dense()[:7])
        w = torch.from_numpy(rec.weight)
        b = None if rec.bias is None else torch.from_numpy(rec.bias)
        geo = rec.geometry
        if geo.kind == "linear":
            y = F.linear(xin, w, b)
        else:
            y = F.conv2d(xin, w, b, geo.stride, geo.padding, geo.dilation, geo.groups)
        np.testing.assert_allclose(y.numpy(), rec.outputs, rtol=1e-5, atol=1e-5)
    # the model's own output equals fc's recorded output (before any non-linearity)
    with torch.no_grad():
        np.testing.assert_allclose(model(x)[:7].numpy(), t.layer("fc").outputs, rtol=1e-5, atol=1e-6)
    # state restored
    assert model.training and model.mask.keep_last is False and torch.is_grad_enabled()


def test_leaky_relu_inputs_keep_negative_values(tmp_path):
    model = make_model()
    path = tmp_path / "t"
    record_trace(model, [torch.randn(3, 3, 8, 8)], path, META)
    rec = open_trace(path).layer("grouped")
    assert (rec.inputs.values < 0).any()  # LeakyReLU output fed as is
    assert rec.inputs.density_per_sample().min() > 0.95  # leaky: almost nothing is zero


def test_module_called_twice_is_an_error(tmp_path):
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(self.fc(x))

    with pytest.raises(AccelsimError, match="layer fc was called twice in one forward pass"):
        record_trace(Twice(), [torch.randn(2, 4)], tmp_path / "t", META)
    assert not (tmp_path / "t").exists()


def test_context_manager_with_plain_calls(tmp_path):
    model = make_model()
    model.mask.configure("off")  # an 'off' mask records no mask
    with TraceRecorder(model, output_samples=0) as rec:
        model(torch.randn(2, 3, 8, 8))
        model(torch.randn(3, 3, 8, 8))
    rec.write(tmp_path / "t", META)
    t = open_trace(tmp_path / "t")
    assert t.num_samples == 5 and t.output_samples == 0
    assert t.layer("fc").mask_params is None and t.layer("fc").outputs is None


def test_one_mask_feeding_two_layers_and_threshold_scheme(tmp_path):
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.mask = ActivationMask("threshold-prediction", winner_rate=0.3, eps=0.25)
            self.conv1 = nn.Conv2d(4, 4, 3, padding=1)
            self.shortcut = nn.Conv2d(4, 4, 1)

        def forward(self, x):
            h = self.mask(x)
            return self.conv1(h) + self.shortcut(h)

    torch.manual_seed(1)
    record_trace(Block(), [torch.randn(3, 4, 6, 6)], tmp_path / "b", META)
    t = validate_trace(tmp_path / "b")
    a, b = t.layer("conv1"), t.layer("shortcut")
    assert a.mask_params.scheme == "threshold-prediction" and a.mask_params.eps == 0.25
    np.testing.assert_array_equal(a.act_mask.indices, b.act_mask.indices)
    np.testing.assert_array_equal(a.inputs.to_dense(), b.inputs.to_dense())
    # threshold prediction keeps a varying count per sample, around 30% of 144
    assert 0.1 < a.inputs.density_per_sample().mean() < 0.6
