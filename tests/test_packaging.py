"""Packaging: one installed namespace. A wheel must carry accelsim/, accelsim/models/,
accelsim/traces/, accelsim/analysis/ and nothing at the top level named models, traces or
analysis (a wheel install must not make `import models` work)."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
         "-q", "-w", str(out)],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        pytest.fail(f"pip wheel failed: {proc.stderr[-2000:]}")
    wheel = next(out.glob("accelsim-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def test_wheel_has_one_namespace(wheel_names):
    tops = {n.split("/", 1)[0] for n in wheel_names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"accelsim"}
    for part in ("models", "traces", "analysis"):
        assert f"accelsim/{part}/__init__.py" in wheel_names


def test_wheel_ships_presets_and_reference_traces(wheel_names):
    assert "accelsim/presets/eie64.toml" in wheel_names
    assert "accelsim/presets/cnvlutin.toml" in wheel_names
    assert "accelsim/presets/energy-45nm.toml" in wheel_names
    assert any(n.startswith("accelsim/traces/reference/") and n.endswith(".trace.safetensors")
               for n in wheel_names)


def test_simulator_path_does_not_import_torch():
    code = ("import sys, accelsim.cli, accelsim.simulate, accelsim.dataflows.eie.kernel, accelsim.dataflows.cnvlutin.kernel, "
            "accelsim.topk, accelsim.traces; assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
