"""One word per thing: "baseline" is the array with skipping switched off, "dense" only the
unpruned network. Reports written before the rename (variant "dense", speedup_vs_dense,
energy_ratio_vs_dense) still read, on every path a user has: read_report, summary, the plots,
`accelsim plot`, `accelsim report --html` and the sweep tables."""

from __future__ import annotations

import pandas as pd
import pytest

from accelsim.analysis.golden import golden_path
from accelsim.report import current_names, read_report, summary, write_report


@pytest.fixture(scope="module")
def today():
    """The golden eie64 report of the MLP-3 reference traces (dense, WP, JP networks)."""
    g = pd.read_csv(golden_path("eie64"))
    return g[g["model"] == "mlp3"].reset_index(drop=True)


def old_style(report: pd.DataFrame) -> pd.DataFrame:
    """The same table as a report written before the rename."""
    old = report.copy()
    old["variant"] = old["variant"].replace({"baseline": "dense"})
    return old


def test_today_the_no_skip_array_is_the_baseline_and_dense_is_a_network(today):
    assert set(today["variant"]) == {"sparse", "baseline"}
    summ = summary(today).set_index("trace")
    assert not any("vs_dense" in c and not c.endswith("_dense_network") for c in summ.columns)
    jp = summ.loc["mlp3-jp.trace.safetensors"]
    dense_net = summ.loc["mlp3-dense.trace.safetensors"]
    # "vs dense network": the unpruned network's trace on the same (sparse) array
    assert jp["speedup_vs_dense_network"] == pytest.approx(dense_net["cycles"] / jp["cycles"])
    assert jp["energy_ratio_vs_dense_network"] == pytest.approx(dense_net["energy_uj"] / jp["energy_uj"])
    assert dense_net["speedup_vs_dense_network"] != dense_net["speedup_vs_dense_network"]  # NaN


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".json"])
def test_an_old_report_reads_as_today(today, tmp_path, suffix):
    path = tmp_path / f"old{suffix}"
    write_report(old_style(today), path)
    read = read_report(path)
    assert set(read["variant"]) == {"sparse", "baseline"}
    pd.testing.assert_frame_equal(summary(read), summary(today))


def test_summary_of_an_old_frame_read_by_pandas(today):
    # a user who read an old CSV with pandas and called accelsim.summary on it
    pd.testing.assert_frame_equal(summary(old_style(today)), summary(today))


def test_old_summary_and_sweep_columns_are_renamed():
    old = pd.DataFrame({"trace": ["t"], "speedup_vs_dense": [2.0], "energy_ratio_vs_dense": [3.0]})
    new = current_names(old)
    assert list(new.columns) == ["trace", "speedup_vs_baseline", "energy_ratio_vs_baseline"]
    assert new["speedup_vs_baseline"].iloc[0] == 2.0
    # a table that already has the new name keeps it (nothing is overwritten)
    both = old.assign(speedup_vs_baseline=[5.0])
    assert current_names(both)["speedup_vs_baseline"].iloc[0] == 5.0


def test_plot_and_html_of_an_old_report(today, tmp_path, cli):
    path = tmp_path / "old.csv"
    write_report(old_style(today), path)
    for figure in ("energy", "cycles"):
        code, _, err = cli("plot", figure, str(path), "-o", str(tmp_path / f"{figure}.png"))
        assert code == 0, err
    html = tmp_path / "old.html"
    code, _, err = cli("report", str(path), "--html", str(html))
    assert code == 0, err
    text = html.read_text(encoding="utf-8")
    assert "speedup vs baseline" in text and "<td>baseline</td>" in text
    # "dense" is left only where it names the network: the method of mlp3-dense in the traces table
    assert "speedup vs dense<" not in text and text.count("<td>dense</td>") == 1
