"""The Python API: docs/api.md's examples run as written, `import accelsim` stays light, the
API functions survive the import of the engine module of the same name, the example script
runs, and the API gives the same report as the CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def in_repo_copy(tmp_path, monkeypatch):
    """A working folder whose traces/reference/ is the repository's."""
    (tmp_path / "traces").mkdir()
    (tmp_path / "traces" / "reference").symlink_to(ROOT / "traces" / "reference")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_docs_examples_run(in_repo_copy):
    text = (ROOT / "docs" / "api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 4
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), namespace)
    assert (in_repo_copy / "pareto.png").stat().st_size > 10_000
    assert len(list((in_repo_copy / "sweep.parts").glob("*.parquet"))) == 4


def test_docs_checkpoint_sweep_examples_run(tmp_path, monkeypatch, mnist_dir):
    """The winner-rate and eps sweep examples (they train a small checkpoint: MNIST needed)."""
    text = (ROOT / "docs" / "api.md").read_text()
    blocks = re.findall(r"```python checkpoint\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), namespace)
    assert (tmp_path / "rates.csv").is_file() and not (tmp_path / "eps.parts").exists()


def test_import_is_light_and_simulate_is_callable_and_the_module():
    code = ("import sys, accelsim; heavy = [m for m in ('numba', 'pandas', 'torch') if m in sys.modules]; "
            "assert not heavy, heavy; import accelsim.simulate as sim; "
            "assert callable(accelsim.simulate) and sim is accelsim.simulate; "
            "assert callable(accelsim.sweep_winner_rates) and callable(accelsim.sweep_eps); "
            "from accelsim.simulate import simulate_trace; from accelsim import simulate")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_api_report_equals_cli_report(tmp_path):
    import accelsim
    from accelsim.cli import main

    trace = str(ROOT / "traces" / "reference" / "mlp3-jp.trace.safetensors")
    out = tmp_path / "r.parquet"
    with pytest.raises(SystemExit):
        main(["run", "--trace", trace, "--set", "eie.num_pes=32", "--quiet", "--out", str(out)])
    api = accelsim.simulate(trace, set={"eie.num_pes": 32})
    pd.testing.assert_frame_equal(api, pd.read_parquet(out))


def test_api_errors_are_one_line():
    import accelsim

    with pytest.raises(accelsim.AccelsimError, match="unknown key 'eie.num_pe'"):
        accelsim.simulate(str(ROOT / "traces/reference/mlp3-jp.trace.safetensors"), set={"eie.num_pe": 3})
    with pytest.raises(accelsim.AccelsimError, match="nope.trace.safetensors: trace file not found"):
        accelsim.simulate("nope.trace.safetensors")


def test_example_script_runs(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "sweep_and_plot.py"),
         str(ROOT / "traces/reference/mlp3-jp.trace.safetensors"), "--out-dir", str(tmp_path / "o"),
         "--scheduler", "in-process"],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Pareto front:" in proc.stdout
    assert (tmp_path / "o" / "pareto.png").exists()
