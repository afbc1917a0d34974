"""The systolic array against SCALE-Sim v3.0.0's own figures (tests/golden/scalesim-v3.csv, made
by analysis/scalesim_golden.py in SCALE-Sim's virtual environment), and SCALE-Sim topology files
through `accelsim run --topology`."""

from __future__ import annotations

import pandas as pd
import pytest

from accelsim.analysis.scalesim_compare import DATA, compare, golden_rows
from accelsim.cli import main
from accelsim.topology import read_topology

TOPOLOGIES = DATA / "topologies"


def _dense_topologies():
    """SCALE-Sim's shipped dense topology files (no Sparsity column) in tests/data/scalesim."""
    return sorted(path.stem for path in TOPOLOGIES.glob("*.csv")
                  if all(item.nm is None for item in read_topology(path)))


def test_golden_table_covers_the_shipped_topologies_layer_by_layer():
    rows = pd.DataFrame(golden_rows())
    dense = rows[rows["config"] == "scale.cfg"]
    assert len(_dense_topologies()) == 8
    for topo in _dense_topologies():  # every shipped dense topology, every dataflow stored
        assert set(dense[dense["topology"] == topo]["dataflow"]) == {"os", "ws", "is"}, topo
    for (topo, config, dataflow), case in rows.groupby(["topology", "config", "dataflow"]):
        layers = len(read_topology(TOPOLOGIES / f"{topo}.csv"))  # every stored case is whole
        assert sorted(case["layer_index"].astype(int)) == list(range(layers)), (topo, dataflow)
    assert {"sparse_gemm", "sparse_conv", "vit_s_2_4"} <= set(rows["topology"])
    assert set(rows["method"]) <= {"full", "counted"}


def test_cycles_sram_and_dram_equal_scalesim_layer_by_layer():
    """Every layer of every stored dense SCALE-Sim run: compute cycles (SCALE-Sim's last-cycle
    index + 1), the SRAM reads and writes of each operand, the filter DRAM reads and ofmap DRAM
    writes are equal; ifmap DRAM reads too where no two windows share an input word."""
    results = [c for c in compare() if c.sparsity == "off"]
    assert len(results) >= 414
    keys = ("cycles", "ifmap_sram_reads", "filter_sram_reads", "ofmap_sram_writes",
            "filter_dram_reads", "ofmap_dram_writes")
    for c in results:
        where = (c.topology, c.dataflow, c.layer)
        for key in keys + (("ifmap_dram_reads",) if c.distinct else ()):
            assert c.accelsim[key] == c.scalesim[key], (where, key, c.accelsim[key], c.scalesim[key])
    assert sum(c.distinct for c in results) >= 20


def test_ws_ifmap_dram_with_overlapping_windows_follows_each_row_fold():
    """Weight stationary, overlapping windows, an input larger than the SRAM's active half: each
    row fold fetches its own distinct input words again (kernel.slice_words), as SCALE-Sim
    counts on most such layers. Where not: a fold spanning several taps (first layers of few
    channels) meets its words again across an epoch boundary (SCALE-Sim up to 8 % more, on
    YOLO-tiny's Conv1: all 27 taps in one fold over an input 8.8 active buffers long), or a
    fold's words are far fewer than an epoch and a later fold of a neighbouring tap finds them
    still held (SCALE-Sim fewer, here up to 1.53x)."""
    results = [c for c in compare() if c.sparsity == "off" and c.dataflow == "ws" and not c.distinct]
    ratios = [c.accelsim["ifmap_dram_reads"] / c.scalesim["ifmap_dram_reads"] for c in results]
    assert len(ratios) >= 40
    assert all(0.92 <= r <= 1.6 for r in ratios), [(c.topology, c.layer) for c in results]
    assert sum(r == 1 for r in ratios) >= 0.8 * len(ratios)


def test_nm_cycles_equal_scalesim_sparse_mode_where_m_divides_k():
    """SCALE-Sim's sparse mode (layer-wise N:M from the Sparsity column) maps the compressed
    filter like accelsim: equal cycles, filter reads and ofmap writes. It refuses nothing; accelsim
    refuses a layer whose reduction dimension M does not divide (N:M hardware cannot pack it)."""
    results = [c for c in compare() if c.sparsity != "off"]
    assert results
    for c in results:
        if c.refused:
            assert "needs the reduction dimension to be a multiple of M" in c.refused
            continue
        for key in ("cycles", "filter_sram_reads", "ofmap_sram_writes"):
            assert c.accelsim[key] == c.scalesim[key], (c.topology, c.dataflow, c.layer, key)
        if c.dataflow == "ws":  # SCALE-Sim scales activation reads by M / N only in ws
            assert c.accelsim["ifmap_sram_reads"] == c.scalesim["ifmap_sram_reads"]
    assert sum(1 for c in results if not c.refused) >= 6


def test_topology_forms():
    alex = read_topology(TOPOLOGIES / "alexnet.csv")
    conv1 = alex[0].geometry
    # SCALE-Sim: ofmap = ceil((224 - 11 + 4) / 4) = 55, i.e. the partial last window counts
    assert conv1.out_shape == (96, 55, 55) and conv1.in_shape == (3, 224, 224)
    assert (224 + 2 * conv1.padding[0] - 11) // 4 + 1 == 55
    gemm = read_topology(TOPOLOGIES / "test_mnk_input.csv")[0].geometry
    assert (gemm.in_shape, gemm.out_shape, gemm.kernel) == ((256, 256, 1), (128, 256, 1), (1, 1))


def _write(tmp_path, text, name="t.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


CONV_HEADER = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"


def test_depthwise_rows_and_sparsity_column(tmp_path):
    path = _write(tmp_path, CONV_HEADER.replace("Strides,", "Strides, Sparsity,")
                  + "DP1, 8, 8, 3, 3, 4, 1, 1, 2:4,\nConv2, 8, 8, 1, 1, 4, 6, 1,\n")
    dp, conv = read_topology(path)
    assert dp.geometry.groups == 4 and dp.geometry.out_shape == (4, 6, 6) and dp.nm == (2, 4)
    assert conv.nm is None and conv.geometry.groups == 1


def run_cli(args):
    with pytest.raises(SystemExit) as info:
        main(args)
    return info.value.code


@pytest.mark.parametrize("text, extra, message", [
    ("Layer name, IFMAP Height, IFMAP Width, Filter Height,\nC1, 8, 8, 3,\n", [],
     "line 1: missing column(s) Filter Width, Channels, Num Filter, Strides"),
    (CONV_HEADER + "C1, 8, 8, 3, 3, 4\n", [], "line 2 (C1): missing column(s) Num Filter, Strides"),
    (CONV_HEADER + "C1, 8, -8, 3, 3, 4, 2, 1,\n", [], "line 2 (C1): IFMAP Width must be a positive integer, got -8"),
    (CONV_HEADER + "C1, 8, 8, 3, 3, 0, 2, 1,\n", [], "line 2 (C1): Channels must be a positive integer, got 0"),
    (CONV_HEADER + "C1, 4, 8, 5, 3, 4, 2, 1,\n", [], "line 2 (C1): filter 5x3 is larger than the 4x8 input"),
    ("Layer, M, N, K,\nG1, 4, 8, x,\n", [], "line 2 (G1): K must be an integer, got 'x'"),
    (CONV_HEADER + "C1, 8, 8, 3, 3, 4, 2, 1,\n", ["--nm", "4:2"], "--nm: N:M pattern 4:2 keeps more weights"),
    (CONV_HEADER + "C1, 8, 8, 3, 3, 3, 2, 1,\n", ["--nm", "2:4"],
     "line 2: layer 'C1': N:M pattern 2:4 needs the reduction dimension to be a multiple of M=4, but it is 27"),
    (CONV_HEADER + "C1, 8, 8, 3, 3, 4, 2, 1, 5:4,\n", [], "line 2 (C1): Sparsity: N:M pattern 5:4"),
    (CONV_HEADER + "C1, 8, 8, 3, 3, 4, 2, 1,\n", ["--weight-density", "0"], "--weight-density must be in (0, 1], got 0.0"),
    ("", [], "empty topology file"),
    (CONV_HEADER + "C1, 100000, 100000, 3, 3, 64, 64, 1,\n", [],
     "GiB of weights and activations (limit 8 GiB)"),
])
def test_bad_topology_is_one_line_exit_2(tmp_path, capsys, text, extra, message):
    path = _write(tmp_path, text)
    out = tmp_path / "r.csv"
    assert run_cli(["run", "--topology", path, "--arch", "systolic-ws", "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err, err
    assert not out.exists()


def test_run_topology_dense_and_nm(tmp_path, capsys):
    """A SCALE-Sim GEMM file runs unchanged; --nm 2:4 halves the reduction steps on the
    weight-stationary array, so K/32 row folds become K/64 (the baseline runs beside it)."""
    path = _write(tmp_path, "Layer, M, N, K,\nG1, 40, 64, 256,\n")
    out = tmp_path / "r.csv"
    assert run_cli(["run", "--topology", path, "--arch", "systolic-ws", "--out", str(out), "--quiet",
                    "--nm", "2:4", "--act-density", "0.5"]) == 0
    r = pd.read_csv(out).set_index("variant")
    # ws: folds = ceil(K/32) x ceil(64/32), each 2*32 + 32 + 40 - 2 = 134 cycles
    assert r.loc["baseline", "cycles"] == 8 * 2 * 134
    assert r.loc["sparse", "cycles"] == 4 * 2 * 134
    assert r.loc["sparse", "weight_density"] == pytest.approx(0.5)
    assert 0 < r.loc["sparse", "utilisation"] <= 1


def test_dram_traffic_and_bandwidth_stalls_in_the_report():
    """SCALE-Sim's GEMM 'Test 1' (M=256, N=128, K=256) on the 32x32 output-stationary array: the
    64 KB ifmap SRAM's epoch (50 sets of 655 words = 32,750) cannot hold the 65,536-word input,
    so it is read again on each of the 4 column folds; each 8,192-word filter column slice is
    read 8 times in a row, and the epoch fills 18 words into the 4th slice, so 8,174 of it are
    read again: 32,768 + 8,174 = 40,942 filter words (as in the golden table); the 32,768
    outputs move once. At 10 words per cycle the 335,854 words take 33,586 cycles: 23,410 stall
    cycles beyond the 10,176 of compute."""
    from accelsim.analysis.scalesim_compare import _shell_record
    from accelsim.arch import load_arch
    from accelsim.energy import load_energy_table
    from accelsim.simulate import Variant, simulate_layer

    geo = read_topology(TOPOLOGIES / "test_mnk_input.csv")[0].geometry
    layer = _shell_record(geo)
    stats = {"effective_macs": 0.0, "estimated_macs": 0.0, "weight_density": 1.0, "act_density_mean": 1.0}
    for extra, stall in (([], 0), (["systolic.bandwidth=10"], 23410)):
        arch = load_arch("systolic-os", extra).with_sparsity("none", "none")
        row, _ = simulate_layer("t", layer, Variant("baseline", arch), load_energy_table(), stats)
        assert row["dram_bytes"] == 4 * 65536 + 40942 + 32768
        assert row["events_dram_byte"] == row["dram_bytes"]
        assert row["compute_cycles"] == 10176 and row["memory_stall_cycles"] == stall
        assert row["cycles"] == 10176 + stall
