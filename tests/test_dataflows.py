"""The dataflow registry: every array is a plug-in and the engine never names one."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

import accelsim
from accelsim import dataflows
from accelsim.arch import ArchConfig, load_arch
from accelsim.errors import AccelsimError
from accelsim.traces.schema import LayerGeometry, LayerRecord, SparseBatch

ENGINE = ("simulate.py", "memory.py", "arch.py", "energy.py", "result.py")


def test_registry_lists_the_shipped_arrays_and_arch_has_their_sections():
    assert set(dataflows.names()) >= {"eie", "cnvlutin"}
    fields = {f.name: f.type for f in dataclasses.fields(ArchConfig)}
    for name, flow in dataflows.registry().items():
        assert name in fields
        assert isinstance(getattr(ArchConfig(), name), flow.section)


def test_engine_never_names_a_dataflow():
    root = Path(accelsim.__file__).parent
    for module in ENGINE:
        text = (root / module).read_text(encoding="utf-8")
        for name in dataflows.names():
            # a comparison with the name or an attribute of that name is a per-dataflow branch
            hits = re.findall(rf"(?:==|!=|\bin)\s*\(?[\"']{name}[\"']|\.{name}\b", text)
            assert not hits, f"{module} names the {name} dataflow: {hits}"


def test_unknown_dataflow_is_one_line():
    with pytest.raises(AccelsimError, match="unknown dataflow 'tpu' \\(known: cnvlutin, eie"):
        dataflows.get("tpu")


def _layer(kind: str) -> LayerRecord:
    geo = LayerGeometry("att", kind, (4,), (3,))
    x = np.ones((1, 4), np.float32)
    return LayerRecord(geometry=geo, weight=np.ones((3, 4), np.float32), weight_mask=None,
                       bias=None, inputs=SparseBatch.from_dense(x), outputs=None)


@pytest.mark.parametrize("name", ["eie", "cnvlutin", "scnn"])
def test_a_dataflow_refuses_layer_kinds_it_does_not_run(name):
    arch = load_arch(name if name != "eie" else "eie64")
    flow = dataflows.get(name)
    with pytest.raises(AccelsimError, match=f"layer 'att': the {name} dataflow runs linear, conv2d, "
                                            "token_linear, matmul layers, not 'attention'"):
        flow.run(_layer("attention"), arch, functional=False)
    assert flow.run(_layer("linear"), arch, functional=False).cycles.shape == (1,)


def test_multipliers_are_peak_macs_per_cycle():
    assert dataflows.get("eie").multipliers(load_arch("eie64").eie) == 64
    assert dataflows.get("cnvlutin").multipliers(load_arch("cnvlutin").cnvlutin) == 16 * 16 * 16
    assert dataflows.get("scnn").multipliers(load_arch("scnn").scnn) == 8 * 8 * 4 * 4


def _random_layer(rng, kind, samples=2):
    if kind == "linear":
        c, m = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        geo = LayerGeometry("fc", "linear", (c,), (m,), has_bias=False)
        xshape = (samples, c)
    else:
        c, m = int(rng.integers(1, 6)), int(rng.integers(1, 9))
        h, w = int(rng.integers(3, 7)), int(rng.integers(3, 9))  # non-square on purpose
        k = (int(rng.integers(1, 4)), int(rng.integers(1, 3)))
        pad = (int(rng.integers(0, 2)), int(rng.integers(0, 2)))
        stride = (int(rng.integers(1, 3)), 1)
        oh = (h + 2 * pad[0] - k[0]) // stride[0] + 1
        ow = (w + 2 * pad[1] - k[1]) // stride[1] + 1
        geo = LayerGeometry("conv", "conv2d", (c, h, w), (m, oh, ow), k, stride, pad)
        xshape = (samples, c, h, w)
    wt = rng.standard_normal(geo.weight_shape) * (rng.random(geo.weight_shape) < rng.random())
    x = rng.standard_normal(xshape) * (rng.random(xshape) < rng.random())
    return LayerRecord(geometry=geo, weight=wt.astype(np.float32), weight_mask=None, bias=None,
                       inputs=SparseBatch.from_dense(x.astype(np.float32)), outputs=None)


@pytest.mark.parametrize("preset", ["eie64", "cnvlutin", "scnn"])
def test_utilisation_never_exceeds_one_and_pe_cycles_add_up(preset):
    """utilisation = effective MACs / (peak MACs per cycle x cycles) <= 1 on every array, in every
    mode, at every size; busy + starve + tail + empty PE-cycles = units x compute cycles."""
    from accelsim.energy import load_energy_table
    from accelsim.simulate import Variant, simulate_layer
    from accelsim.traces.info import layer_stats

    rng = np.random.default_rng(7)
    energy = load_energy_table()
    base = load_arch(preset)
    small = {"eie64": ["eie.num_pes=3", "eie.fifo_depth=2"],
             "cnvlutin": ["cnvlutin.units=2", "cnvlutin.lanes=3", "cnvlutin.filters_per_unit=2",
                          "cnvlutin.brick_size=2"],
             "scnn": ["scnn.pe_rows=2", "scnn.pe_cols=3", "scnn.weight_vector=3",
                      "scnn.act_vector=2", "scnn.banks=3"]}[preset]
    weight_modes = ("gate", "none") if preset == "cnvlutin" else ("skip", "gate", "none")
    for arch in (base, load_arch(preset, small)):
        for i in range(8):
            layer = _random_layer(rng, "linear" if i % 2 else "conv2d")
            stats = layer_stats(layer)
            for am in ("skip", "gate", "none"):
                for wm in weight_modes:
                    variant = Variant("baseline", arch.with_sparsity(am, wm))
                    row, _ = simulate_layer("t", layer, variant, energy, stats)
                    peak = dataflows.get(arch.arch.dataflow).peak_macs_per_cycle(arch)
                    assert row["peak_macs_per_cycle"] == peak
                    assert 0.0 <= row["utilisation"] <= 1.0, (preset, am, wm, row["utilisation"])
                    if row["cycles"]:
                        assert row["utilisation"] == pytest.approx(
                            row["effective_macs"] / (peak * row["cycles"]))
                    pe = (row["busy_pe_cycles"] + row["starve_pe_cycles"] + row["tail_pe_cycles"]
                          + row["empty_pe_cycles"])
                    assert pe == pytest.approx(row["units"] * row["compute_cycles"])


def test_run_per_multiplier_scales_cycles_to_a_common_multiplier_count(tmp_path, capsys):
    """`accelsim run --per-multiplier [N]`: iso_cycles = cycles x peak MACs per cycle / N, so
    arrays of different sizes compare at equal multiplier counts."""
    import pandas as pd

    from accelsim.cli import main
    from accelsim.traces.synthetic import synthetic_trace

    trace = tmp_path / "mlp.trace.safetensors"
    synthetic_trace("mlp3", str(trace), weight_density=0.2, act_density=0.4, num_samples=2, seed=3)
    frames = {}
    for preset, extra in (("eie64", ["--per-multiplier"]), ("cnvlutin", ["--per-multiplier", "64"]),
                          ("eie64", ["--per-multiplier", "16"])):
        out = tmp_path / f"{preset}{extra[-1]}.csv"
        with pytest.raises(SystemExit) as info:
            main(["run", "--trace", str(trace), "--arch", preset, "--out", str(out), *extra])
        assert info.value.code == 0
        frames[(preset, extra[-1])] = pd.read_csv(out)
    stdout = capsys.readouterr().out
    assert "cycles @64 mult." in stdout and "cycles @16 mult." in stdout
    for (preset, n), r in frames.items():
        n = 64 if n == "--per-multiplier" else int(n)
        assert (r["iso_multipliers"] == n).all()
        assert np.allclose(r["iso_cycles"], r["cycles"] * r["peak_macs_per_cycle"] / n)
    assert (frames[("cnvlutin", "64")]["peak_macs_per_cycle"] == 4096).all()
    assert np.allclose(frames[("eie64", "--per-multiplier")]["iso_cycles"],
                       frames[("eie64", "--per-multiplier")]["cycles"])  # 64 PEs at 64


def test_plot_layers_draws_iso_cycles_of_a_per_multiplier_report(tmp_path, monkeypatch):
    import pandas as pd

    import accelsim.plots as plots
    from accelsim.report import per_multiplier

    report = pd.DataFrame({"trace": ["t"] * 2, "layer_index": [0, 0], "layer": ["fc"] * 2,
                           "arch": ["eie64", "cnvlutin"], "variant": ["sparse"] * 2,
                           "cycles": [100.0, 10.0], "time_us": [0.125, 0.0125],
                           "peak_macs_per_cycle": [64, 4096], "energy_pj": [1.0, 1.0]})
    drawn = {}

    def keep(fig, out):
        ax = fig.axes[0]
        drawn["heights"] = sorted(p.get_height() for p in ax.patches)
        drawn["ylabel"] = ax.get_ylabel()

    monkeypatch.setattr(plots, "save_figure", keep)
    plots.plot_layers(per_multiplier(report, 64), tmp_path / "c.png")
    assert drawn["heights"] == [100.0, 640.0] and drawn["ylabel"] == "cycles at 64 multipliers (log)"
    plots.plot_layers(report, tmp_path / "c.png")
    assert drawn["heights"] == [10.0, 100.0] and drawn["ylabel"] == "cycles per inference (log)"
