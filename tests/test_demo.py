"""`accelsim demo` on the shipped reference traces: every demo array, the comparison, the plots."""

import pandas as pd
import pytest

from accelsim.cli import main


def test_demo_writes_report_and_figures(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["demo", "--out-dir", str(tmp_path)])
    assert info.value.code == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "vs baseline" in out and "vs dense net" in out and "vs WP" in out
    report = pd.read_csv(tmp_path / "report.csv")
    assert set(report["arch"]) == {"eie64", "cnvlutin", "scnn", "eie64[topk.scheme=threshold]",
                                   "cnvlutin[topk.scheme=threshold]", "scnn[topk.scheme=threshold]"}
    # each JP trace is replayed with the top-k unit of the scheme that made its masks
    masked = report[report["topk_unit"] != "none"]
    units = dict(zip(masked["mask_scheme"], masked["topk_unit"]))
    assert units == {"topk": "bitonic", "threshold-prediction": "threshold"}
    assert "warning:" not in captured.err
    assert {"mlp3-dense.trace.safetensors", "lenet4-dense.trace.safetensors"} <= set(report["trace"])
    for fig in ("energy.png", "cycles.png"):
        data = (tmp_path / fig).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    # zero skipping never makes the array slower than its baseline
    totals = report.groupby(["trace", "arch", "variant"])["compute_cycles"].sum().unstack()
    assert (totals["sparse"] <= totals["baseline"]).all()
