"""The SCNN paper comparison script: its rows are the simulator's, its ratios their quotients."""

import pytest

from accelsim.analysis import scnn_paper
from accelsim.traces.schema import LayerGeometry


@pytest.fixture
def tiny(monkeypatch):
    geo = LayerGeometry("c", "conv2d", (4, 9, 7), (5, 9, 7), (3, 3), (1, 1), (1, 1))
    monkeypatch.setitem(scnn_paper.NETWORKS, "tiny", lambda: [(geo, 0.4), (geo, 0.3)])


def test_rows_and_ratios(tiny):
    from accelsim.arch import load_arch
    from accelsim.dataflows import get
    from accelsim.synth import random_layer

    rows = scnn_paper.compare("tiny")
    assert [r["act_density"] for r in rows] == [1.0, scnn_paper.HIDDEN_ACT_DENSITY]
    arch = load_arch("scnn")
    layer = random_layer(LayerGeometry("c", "conv2d", (4, 9, 7), (5, 9, 7), (3, 3), (1, 1), (1, 1)),
                         0.3, 0.5, samples=1, seed=1)
    direct = get("scnn").run(layer, arch, functional=False)
    assert rows[1]["sparse_cycles"] == direct.counters["cycles"]
    assert rows[1]["baseline_cycles"] > rows[1]["sparse_cycles"]
    text = scnn_paper.table(rows)
    s = sum(r["sparse_cycles"] for r in rows)
    b = sum(r["baseline_cycles"] for r in rows)
    assert f"| tiny | 2 | {s:,.0f} | {b:,.0f} | {b / s:.2f}x |" in text
    assert f"| mean of the networks | | | | {b / s:.2f}x |" in text and "2.7x, 2.3x" in text


def test_table_from_stored_rows(tiny, tmp_path, capsys):
    out = tmp_path / "rows.csv"
    assert scnn_paper.main(["--networks", "tiny", "--csv", str(out)]) == 0
    printed = capsys.readouterr().out
    assert scnn_paper.main(["--from-csv", str(out)]) == 0
    assert capsys.readouterr().out == printed


def test_bad_arguments_exit_2(capsys):
    assert scnn_paper.main(["--networks", "lenet"]) == 2
    assert capsys.readouterr().err.startswith("error: --networks takes alexnet")
