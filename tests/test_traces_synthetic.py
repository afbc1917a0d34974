"""Synthetic traces: zoo model, magnitude weight masks, and ReLU zeros (default) or dynamic
activation masks at the asked densities."""

from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner

from accelsim.cli import cli
from accelsim.errors import AccelsimError
from accelsim.traces.reader import validate_trace
from accelsim.traces.synthetic import synthetic_trace


def test_relu_zeros_by_default_no_masks(tmp_path):
    path = synthetic_trace("lenet4", tmp_path / "l.trace.safetensors", weight_density=0.1,
                           act_density={"fc1": 0.2, "conv2": 0.3}, num_samples=3, seed=1,
                           output_samples=2)
    t = validate_trace(path)
    assert t.meta["method"] == "synthetic" and t.output_samples == 2
    assert t.meta["synthetic"]["act_zeros"] == "relu"
    assert set(t.meta["synthetic"]["relu_bias_shift"]) == {"conv2", "fc1"}
    for rec in t:
        assert rec.mask_params is None and rec.act_mask is None  # no mask: no top-k unit
        assert rec.weight_mask.sum() == max(1, math.floor(0.1 * rec.weight.size + 0.5))
    # the mean input density over the samples is the asked one; samples differ, as with ReLUs
    for name, want in (("conv2", 0.3), ("fc1", 0.2)):
        dens = t.layer(name).inputs.density_per_sample()
        assert abs(dens.mean() - want) < 0.01, (name, dens)
    assert t.layer("conv1").inputs.density_per_sample().min() == 1.0  # the image is untouched
    # the zeros are the producer's ReLU zeros: its recorded outputs, through ReLU and pooling,
    # are the next layer's inputs (so the functional check of `accelsim run` holds)
    import torch

    out = torch.from_numpy(t.layer("conv1").outputs[:2])
    x = torch.nn.functional.max_pool2d(torch.relu(out), 2).numpy()
    np.testing.assert_allclose(t.layer("conv2").inputs.to_dense()[:2].reshape(x.shape), x,
                               rtol=1e-6, atol=1e-6)


def test_topk_masks_on_request_are_exact(tmp_path):
    path = synthetic_trace("lenet4", tmp_path / "l.trace.safetensors", weight_density=0.1,
                           act_density={"fc1": 0.2, "conv2": 0.3}, num_samples=3, seed=1,
                           output_samples=2, masks="topk")
    t = validate_trace(path)
    assert t.meta["synthetic"]["act_zeros"] == "topk"
    conv2, fc1, fc2 = t.layer("conv2"), t.layer("fc1"), t.layer("fc2")
    size = conv2.inputs.size
    np.testing.assert_array_equal(conv2.act_mask.nnz_per_sample(), math.floor(0.3 * size + 0.5))
    np.testing.assert_array_equal(fc1.act_mask.nnz_per_sample(), math.floor(0.2 * fc1.inputs.size + 0.5))
    assert fc1.mask_params.winner_rate == 0.2 and fc2.mask_params is None  # not named: no mask
    assert t.layer("conv1").mask_params is None  # the image is never masked
    # same seed, same trace content
    again = synthetic_trace("lenet4", tmp_path / "m", 0.1, {"fc1": 0.2, "conv2": 0.3}, 3, 1,
                            output_samples=2, masks="topk")
    a = validate_trace(again).layer("fc1")
    np.testing.assert_array_equal(a.weight, fc1.weight)
    np.testing.assert_array_equal(a.inputs.values, fc1.inputs.values)


def test_threshold_masks_record_their_scheme(tmp_path):
    path = synthetic_trace("mlp3", tmp_path / "t.trace.safetensors", act_density=0.25,
                           num_samples=2, masks="threshold", eps=0.2)
    t = validate_trace(path)
    assert t.meta["synthetic"]["act_zeros"] == "threshold" and t.meta["synthetic"]["eps"] == 0.2
    mp = t.layer("fc2").mask_params
    assert mp.scheme == "threshold-prediction" and mp.eps == 0.2 and mp.winner_rate == 0.25


def test_relu_zeros_need_a_relu():
    """Leaky ReLU leaves no zeros for a bias shift to make: a clear error, not a wrong trace."""
    import torch

    from accelsim.models import zoo
    from accelsim.traces.synthetic import _relu_zeros

    model = zoo.build("mlp3", activation="leaky_relu").eval()
    images = torch.randn((2, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), pytest.raises(AccelsimError, match="layer fc2: .*--masks topk"):
        _relu_zeros(model, zoo.activation_masks(model), {"fc2": 0.3}, images)


def test_relu_zeros_set_layers_in_execution_order():
    """Setting a later layer's density first would be undone by the earlier layer's shift: the
    layers are set in the order their inputs are computed, whatever order the masks are listed."""
    import torch
    from torch import nn

    from accelsim.models.masks import ActivationMask
    from accelsim.traces.synthetic import _relu_zeros

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc2_mask, self.fc2 = ActivationMask(), nn.Linear(32, 8)  # registered first
            self.fc1 = nn.Linear(16, 32)
            self.fc0 = nn.Linear(10, 16)
            self.fc1_mask = ActivationMask()

        def forward(self, x):
            x = self.fc1(self.fc1_mask(torch.relu(self.fc0(x))))
            return self.fc2(self.fc2_mask(torch.relu(x)))

    torch.manual_seed(0)
    net = Net().eval()
    masks = {"fc2": net.fc2_mask, "fc1": net.fc1_mask}  # listed later layer first
    images = torch.randn(64, 10)
    with torch.no_grad():
        _relu_zeros(net, masks, {"fc2": 0.25, "fc1": 0.15}, images)
        h1 = torch.relu(net.fc0(images))
        h2 = torch.relu(net.fc1(h1))
    assert abs(float((h1 != 0).float().mean()) - 0.15) < 0.01
    assert abs(float((h2 != 0).float().mean()) - 0.25) < 0.01


def test_bad_density_is_a_user_error(tmp_path):
    with pytest.raises(AccelsimError, match="unknown layer"):
        synthetic_trace("lenet4", tmp_path / "x", 1.0, {"fc9": 0.2})
    with pytest.raises(AccelsimError, match=r"weight density for layer conv1 must be in \(0, 1\]"):
        synthetic_trace("lenet4", tmp_path / "x", 1.5, 1.0)
    with pytest.raises(AccelsimError, match="--masks must be one of relu, topk, threshold"):
        synthetic_trace("lenet4", tmp_path / "x", 1.0, 0.5, masks="top-k")


def test_cli_synth_and_info_say_which_zeros(tmp_path):
    runner = CliRunner()
    for masks, said in (("relu", "ReLU, no masks: no top-k unit runs"),
                        ("topk", "top-k masks: the top-k unit runs")):
        out = tmp_path / f"{masks}.trace.safetensors"
        res = runner.invoke(cli, ["trace", "synth", "--model", "mlp3", "--weight-density", "0.5",
                                  "--act-density", "0.25", "--masks", masks, "--samples", "2",
                                  "--out", str(out)])
        assert res.exit_code == 0, res.output
        assert said in res.output
        t = validate_trace(out)
        assert t.meta["model"] == "mlp3" and t.num_samples == 2
        assert all(abs(r.weight_mask.mean() - 0.5) < 1e-3 for r in t)
        assert (t.layer("fc2").mask_params is None) == (masks == "relu")
        info = runner.invoke(cli, ["trace", "info", str(out)])
        assert info.exit_code == 0 and f"activation zeros: {said}" in info.output
    bad = runner.invoke(cli, ["trace", "synth", "--model", "mlp3", "--masks", "sorted",
                              "--out", str(tmp_path / "b.trace.safetensors")])
    assert bad.exit_code == 2 and "--masks" in bad.output


def test_magnitude_mask_keeps_the_largest():
    import torch

    from accelsim.traces.synthetic import magnitude_mask

    w = torch.tensor([[0.5, -3.0, 0.1], [2.0, -0.2, 1.0]])
    np.testing.assert_array_equal(magnitude_mask(w, 0.5).numpy(),
                                  [[False, True, False], [True, False, True]])
    assert magnitude_mask(w, 0.01).sum() == 1  # at least one weight survives
