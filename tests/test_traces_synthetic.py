"""Synthetic traces: zoo model, magnitude weight masks and top-k activation masks as asked."""

from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner

from accelsim.cli import cli
from accelsim.errors import AccelsimError
from accelsim.traces.reader import validate_trace
from accelsim.traces.synthetic import synthetic_trace


def test_lenet4_densities_are_exact(tmp_path):
    path = synthetic_trace("lenet4", tmp_path / "l.trace.safetensors", weight_density=0.1,
                           act_density={"fc1": 0.2, "conv2": 0.3}, num_samples=3, seed=1,
                           output_samples=2)
    t = validate_trace(path)
    assert t.meta["method"] == "synthetic" and t.meta["seed"] == 1 and t.output_samples == 2
    for rec in t:
        n = rec.weight.size
        assert rec.weight_mask.sum() == max(1, math.floor(0.1 * n + 0.5))
    conv2, fc1, fc2 = t.layer("conv2"), t.layer("fc1"), t.layer("fc2")
    size = conv2.inputs.size
    np.testing.assert_array_equal(conv2.act_mask.nnz_per_sample(), math.floor(0.3 * size + 0.5))
    np.testing.assert_array_equal(fc1.act_mask.nnz_per_sample(), math.floor(0.2 * fc1.inputs.size + 0.5))
    assert fc1.mask_params.winner_rate == 0.2 and fc2.mask_params is None  # not named: dense
    assert t.layer("conv1").mask_params is None  # the image is never masked
    # same seed, same trace content
    again = synthetic_trace("lenet4", tmp_path / "m", 0.1, {"fc1": 0.2, "conv2": 0.3}, 3, 1,
                            output_samples=2)
    a, b = validate_trace(again).layer("fc1"), fc1
    np.testing.assert_array_equal(a.weight, b.weight)
    np.testing.assert_array_equal(a.inputs.values, b.inputs.values)


def test_bad_density_is_a_user_error(tmp_path):
    with pytest.raises(AccelsimError, match="unknown layer"):
        synthetic_trace("lenet4", tmp_path / "x", 1.0, {"fc9": 0.2})
    with pytest.raises(AccelsimError, match=r"weight density for layer conv1 must be in \(0, 1\]"):
        synthetic_trace("lenet4", tmp_path / "x", 1.5, 1.0)


def test_cli_synth(tmp_path):
    out = tmp_path / "s.trace.safetensors"
    res = CliRunner().invoke(cli, ["trace", "synth", "--model", "mlp3", "--weight-density", "0.5",
                                   "--act-density", "0.25", "--samples", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    t = validate_trace(out)
    assert t.meta["model"] == "mlp3" and t.num_samples == 2
    assert all(abs(r.weight_mask.mean() - 0.5) < 1e-3 for r in t)


def test_magnitude_mask_keeps_the_largest():
    import torch

    from accelsim.traces.synthetic import magnitude_mask

    w = torch.tensor([[0.5, -3.0, 0.1], [2.0, -0.2, 1.0]])
    np.testing.assert_array_equal(magnitude_mask(w, 0.5).numpy(),
                                  [[False, True, False], [True, False, True]])
    assert magnitude_mask(w, 0.01).sum() == 1  # at least one weight survives
