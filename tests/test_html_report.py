"""The one-page HTML report: self-contained (no network, figures as data URIs), names escaped,
written by `run --html` and `report --html`, refused in one line on bad input, and rendered by
a real headless Chromium (non-blank screenshot, no console errors, tables in the DOM)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from accelsim.cli import main
from accelsim.cli_sim import reference_traces

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
EVIL = "<script>alert(1)</script>&"


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


@pytest.fixture(scope="module")
def mlp3_trace():
    return next(str(p) for p in reference_traces() if p.name == "mlp3-jp.trace.safetensors")


@pytest.fixture(scope="module")
def report_csv(tmp_path_factory, mlp3_trace):
    """The mlp3 reference trace's report, with a layer renamed to markup (a hostile file)."""
    import pandas as pd

    from accelsim.api import simulate
    from accelsim.report import write_report

    report = simulate(mlp3_trace, "eie64")
    report.loc[report["layer_index"] == 0, "layer"] = EVIL
    path = tmp_path_factory.mktemp("report") / "r.csv"
    write_report(report, path)
    assert len(pd.read_csv(path)) == len(report)
    return path


@pytest.fixture(scope="module")
def page(tmp_path_factory, report_csv):
    out = tmp_path_factory.mktemp("html") / "report.html"
    with pytest.raises(SystemExit) as info:
        main(["report", str(report_csv), "--html", str(out)])
    assert info.value.code == 0
    return out


def test_page_is_self_contained_and_escapes_names(page):
    text = page.read_text(encoding="utf-8")
    assert "http:" not in text and "https:" not in text and "<link" not in text
    sources = re.findall(r'src="([^"]*)"', text)
    assert len(sources) == 3 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<script" not in text  # the layer name is shown as text, never as markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&amp;" in text
    for heading in ("Summary", "Cycle breakdown", "Energy per inference by component",
                    "Cycles per inference: where they go", "Cycles per layer", "Per-layer tables",
                    "Configuration it ran with", "What was not simulated"):
        assert heading in text
    assert "eie64" in text and "mlp3-jp.trace.safetensors" in text
    assert "&quot;fifo_depth&quot;" in text  # the resolved configuration is on the page


def test_cycle_breakdown_adds_up(report_csv):
    import numpy as np

    from accelsim.html_report import cycle_breakdown
    from accelsim.report import read_report

    parts = cycle_breakdown(read_report(report_csv))
    assert len(parts) == 2  # one row per run: the sparse array and its dense baseline
    total = parts["compute_cycles"] + parts["topk_exposed_cycles"] + parts["memory_stall_cycles"]
    assert np.allclose(total, parts["cycles"])
    assert (parts["topk_exposed_cycles"] > 0).any()  # the jp trace's top-k unit shows


def test_energy_per_event_reads_back_the_table_it_ran_with(report_csv):
    from accelsim.energy import load_energy_table
    from accelsim.html_report import configurations
    from accelsim.plots import EVENT_LABELS
    from accelsim.report import read_report

    (meta, pretty, energy), = configurations(read_report(report_csv))
    assert meta["energy_table"] == "default-45nm" and '"fifo_depth": 8' in pretty
    table = load_energy_table("default")
    charged = energy.dropna(subset=["pj"]).set_index("event")["pj"]
    labels = {EVENT_LABELS[e]: pj for e, pj in table.pj.items()}
    assert len(charged) >= 8
    for event, pj in charged.items():
        assert pj == pytest.approx(labels[event], rel=1e-9)


def test_run_html_writes_the_page(mlp3_trace, tmp_path, capsys):
    out = tmp_path / "run.html"
    code, _, err = run_cli(capsys, "run", "--trace", mlp3_trace, "--quiet", "--html", str(out))
    assert code == 0, err
    assert out.read_text(encoding="utf-8").count("<table") >= 4


@pytest.mark.parametrize("make, needle", [
    (lambda d: d / "missing.csv", "report not found"),
    (lambda d: (d / "bad.csv").write_text("a,b\n1,2\n") and d / "bad.csv", "not an accelsim report"),
])
def test_bad_report_is_one_line_and_writes_nothing(tmp_path, capsys, make, needle):
    out = tmp_path / "out.html"
    code, _, err = run_cli(capsys, "report", str(make(tmp_path)), "--html", str(out))
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_unplottable_report_and_bad_html_path_are_refused(report_csv, tmp_path, capsys):
    import pandas as pd

    broken = tmp_path / "nan.csv"
    frame = pd.read_csv(report_csv)
    frame.loc[0, "cycles"] = float("nan")
    frame.to_csv(broken, index=False)
    out = tmp_path / "out.html"
    code, _, err = run_cli(capsys, "report", str(broken), "--html", str(out))
    assert code == 2 and "'cycles' row 1" in err and not out.exists()
    code, _, err = run_cli(capsys, "report", str(report_csv), "--html", str(tmp_path / "x.txt"))
    assert code == 2 and "unknown HTML report format" in err


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian package `chromium`; "
                                              ".ci/run installs it)")
def test_chromium_renders_the_page(page, tmp_path):
    from matplotlib.image import imread

    shot = tmp_path / "shot.png"
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2000"]
    run = subprocess.run(base + ["--enable-logging=stderr", "--v=0", f"--screenshot={shot}",
                                 page.as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.is_file(), run.stderr
    pixels = imread(shot)[..., :3].reshape(-1, 3)
    assert len({tuple(p) for p in pixels[:: 97]}) > 10  # text, tables and figures, not blank
    assert "Uncaught" not in run.stderr and "ERROR:CONSOLE" not in run.stderr, run.stderr
    dom = subprocess.run(base + ["--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    assert dom.count("<table") >= 4 and "What was not simulated" in dom
    assert dom.count('<img alt=') == 3 and "<script" not in dom
