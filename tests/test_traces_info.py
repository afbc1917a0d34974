"""trace info: exact effective MACs against a brute-force loop, the CLI table and its errors."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from accelsim.cli import cli, main
from accelsim.traces.info import effective_macs, layer_stats, trace_stats
from accelsim.traces.reader import open_trace
from accelsim.traces.schema import LayerGeometry, LayerRecord, SparseBatch
from accelsim.traces.validate import conv_out_size
from accelsim.traces.writer import write_trace


def brute_conv(x, w, g):
    """Count pairs (w != 0, x != 0) feeding each valid output position, one by one."""
    s, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    _, oh, ow = g.out_shape
    mg = m // g.groups
    counts = np.zeros(s, dtype=np.int64)
    for n in range(s):
        for o in range(m):
            grp = o // mg
            for ci in range(cg):
                cin = grp * cg + ci
                for ky in range(kh):
                    for kx in range(kw):
                        if w[o, ci, ky, kx] == 0:
                            continue
                        for oy in range(oh):
                            iy = oy * g.stride[0] - g.padding[0] + ky * g.dilation[0]
                            if not 0 <= iy < h:
                                continue
                            for ox in range(ow):
                                ix = ox * g.stride[1] - g.padding[1] + kx * g.dilation[1]
                                if 0 <= ix < wd and x[n, cin, iy, ix] != 0:
                                    counts[n] += 1
    return counts


@pytest.mark.parametrize("seed", range(6))
def test_conv_effective_macs_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    groups = int(rng.choice([1, 2, 3]))
    c, m = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    k = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    st = (int(rng.integers(1, 3)), int(rng.integers(1, 4)))
    pad = (int(rng.integers(0, 3)), int(rng.integers(0, 2)))
    dil = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    h, wd = int(rng.integers(5, 9)), int(rng.integers(5, 9))
    oh, ow = (conv_out_size(h, k[0], st[0], pad[0], dil[0]), conv_out_size(wd, k[1], st[1], pad[1], dil[1]))
    g = LayerGeometry("c", "conv2d", (c, h, wd), (m, oh, ow), k, st, pad, dil, groups)
    w = np.where(rng.random(g.weight_shape) < 0.5, 1.0, 0.0).astype(np.float32)
    x = np.where(rng.random((3, c, h, wd)) < 0.4, rng.standard_normal((3, c, h, wd)), 0).astype(np.float32)
    rec = LayerRecord(g, w, None, None, SparseBatch.from_dense(x))
    np.testing.assert_array_equal(effective_macs(rec), brute_conv(x, w, g))


def test_linear_effective_macs_and_estimate():
    rng = np.random.default_rng(7)
    w = np.where(rng.random((6, 9)) < 0.3, 1.0, 0.0).astype(np.float32)
    x = np.where(rng.random((4, 9)) < 0.5, 2.0, 0.0).astype(np.float32)
    rec = LayerRecord(LayerGeometry("fc", "linear", (9,), (6,)), w, None, None, SparseBatch.from_dense(x))
    want = [(w[:, x[s] != 0] != 0).sum() for s in range(4)]
    np.testing.assert_array_equal(effective_macs(rec), want)
    st = layer_stats(rec)
    assert st["effective_macs"] == np.mean(want) and st["dense_macs"] == 54
    assert st["estimated_macs"] == pytest.approx((w != 0).mean() * (x != 0).mean() * 54)
    assert st["act_density_min"] == (x != 0).mean(axis=1).min()


@pytest.fixture
def small_trace(tmp_path):
    rng = np.random.default_rng(0)
    g = LayerGeometry("conv1", "conv2d", (2, 6, 6), (4, 6, 6), (3, 3), padding=(1, 1))
    x = np.maximum(rng.standard_normal((5, 2, 6, 6)), 0).astype(np.float32)
    rec = LayerRecord(g, rng.standard_normal(g.weight_shape).astype(np.float32), None, None,
                      SparseBatch.from_dense(x))
    path = tmp_path / "s.trace.safetensors"
    write_trace(path, {"model": "tiny", "method": "dense", "dataset": "mnist", "split": "test",
                       "accuracy": {"value": 0.9871, "num_samples": 10000}}, [rec])
    return path


def test_trace_stats_frame(small_trace):
    df = trace_stats(open_trace(small_trace))
    assert list(df["layer"]) == ["conv1"] and df["dense_macs"].iloc[0] == 4 * 36 * 2 * 9
    assert 0 < df["effective_macs"].iloc[0] < df["dense_macs"].iloc[0]


def test_cli_info_table(small_trace):
    res = CliRunner().invoke(cli, ["trace", "info", str(small_trace)])
    assert res.exit_code == 0, res.output
    assert "model: tiny   method: dense   dataset: mnist (test)" in res.output
    assert "accuracy: 98.71% on 10000 samples" in res.output
    assert "conv1" in res.output and "2x6x6" in res.output and "total" in res.output
    assert "2,592" in res.output  # dense MACs of conv1


def test_cli_validate_and_errors(small_trace, capsys):
    with pytest.raises(SystemExit) as ei:
        main(["trace", "validate", str(small_trace)])
    assert ei.value.code == 0 and ": ok (1 layers, 5 samples" in capsys.readouterr().out
    small_trace.write_bytes(small_trace.read_bytes()[:-10])
    with pytest.raises(SystemExit) as ei:
        main(["trace", "info", str(small_trace)])
    err = capsys.readouterr().err
    assert ei.value.code == 2
    assert err.count("\n") == 1 and err.startswith(f"error: {small_trace}: truncated")
