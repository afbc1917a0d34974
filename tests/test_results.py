"""The results tables follow the JPnet tables' conventions: fed the paper's own per-layer numbers,
the totals come out as the paper prints them (Tables II and III)."""

import pytest

from accelsim.analysis.results import LayerRow, ModelRow


def _row(name, weights, macs, out_elements, acti, weight_pct, mac_pct):
    return LayerRow(name=name, weights=weights, dense_macs=macs, weight_pct=weight_pct,
                    in_density=float("nan"), out_elements=out_elements, out_density=acti / 100,
                    mac_pct_estimate=mac_pct, mac_pct_exact=mac_pct)


def test_table_ii_totals():
    row = ModelRow("mlp3", "jp", 0.9842, 10000, "test", [
        _row("fc1", 235_200, 235_200, 300, 12, 10, 3.77),
        _row("fc2", 30_000, 30_000, 100, 24, 10, 2.62),
        _row("fc3", 1_000, 1_000, 10, 100, 20, 6.81),
    ])
    assert row.act_pct == pytest.approx(17.1, abs=0.05)
    assert row.weight_pct == pytest.approx(10.0, abs=0.05)
    assert row.mac_pct_estimate == pytest.approx(3.65, abs=0.01)


def test_table_iii_totals_use_the_pooled_sizes_the_next_layer_sees():
    row = ModelRow("lenet4", "jp", 0.99, 10000, "test", [
        _row("conv1", 500, 392_000, 20 * 14 * 14, 6.6, 60, 11.5),
        _row("conv2", 25_000, 4_900_000, 50 * 7 * 7, 1.9, 10, 0.7),
        _row("fc1", 1_225_000, 1_225_000, 500, 12.2, 8, 0.2),
        _row("fc2", 5_000, 5_000, 10, 100, 18, 2.2),
    ])
    assert row.act_pct == pytest.approx(5.5, abs=0.05)
    assert row.weight_pct == pytest.approx(8.1, abs=0.05)
    assert row.mac_pct_estimate == pytest.approx(1.2, abs=0.1)


def test_measure_checkpoint_on_real_images(tmp_path, mnist_dir):
    """Dense weights: the exact count equals the estimate layer by layer (independence is exact
    when every weight is non-zero); pruning a layer's weights shows up in Weight %."""
    import torch

    from accelsim.analysis.results import measure_checkpoint
    from accelsim.models import zoo
    from accelsim.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = zoo.build("mlp3")
    with torch.no_grad():
        w = model.fc2.weight
        w[w.abs() < w.abs().median()] = 0.0
    save_checkpoint(tmp_path / "ck", model, {"model": "mlp3", "model_kwargs": {}, "method": "dense"})
    row = measure_checkpoint(tmp_path / "ck", limit=200)
    assert row.num_samples == 200
    fc1, fc2, fc3 = row.layers
    assert fc1.mac_pct_exact == pytest.approx(fc1.mac_pct_estimate)
    assert fc1.weight_pct == 100.0 and fc2.weight_pct == pytest.approx(50.0, abs=0.01)
    assert 0 < fc1.in_density < 0.5  # MNIST background pixels are exact zeros
    assert fc3.out_density == 1.0 and fc1.out_elements == 300
