"""The README's quick path runs as written: its command block is examples/quickstart.sh line for
line, and the script runs top to bottom in an empty folder (with smaller sizes: fewer training
and test images, fewer recorded samples) and leaves every file its commands promise."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "quickstart.sh"

# the sizes the test shrinks (option -> value): the commands themselves stay as written
SMALLER = {"--limit-train": "600", "--samples": "4", "--limit": "100"}


def _script_commands() -> list[str]:
    return [l for l in SCRIPT.read_text(encoding="utf-8").splitlines() if l.startswith("accelsim ")]


def _readme_quick_block() -> list[str]:
    """The indented commands under the README's "Quick path" heading."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Quick path", 1)[1].split("\n#", 1)[0]
    return [l[4:] for l in section.splitlines() if l.startswith("    accelsim ")]


def test_readme_quick_path_is_the_script():
    commands = _script_commands()
    assert len(commands) >= 10, "the quick-path script lost its commands"
    assert _readme_quick_block() == commands


def test_every_trace_the_script_runs_is_recorded_before():
    made: set[str] = set()
    for line in _script_commands():
        for used in re.findall(r"--trace (\S+)", line):
            assert used in made, f"{used} is replayed before any command writes it"
        made.update(re.findall(r"--out (\S+)", line))


def _shrink(line: str) -> str:
    for opt, value in SMALLER.items():
        line = re.sub(rf"{opt} \d+\b", f"{opt} {value}", line)
    if line.startswith("accelsim train "):
        line += " --limit-test 200 --no-progress"
    return line


@pytest.mark.slow
def test_quickstart_script_runs(mnist_dir, tmp_path):
    body = "set -euo pipefail\n" + "\n".join(_shrink(l) for l in _script_commands()) + "\n"
    env = dict(os.environ, ACCELSIM_DATA=str(mnist_dir), MPLBACKEND="Agg",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    done = subprocess.run(["bash", "-c", body], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    for out in ("lenet4-wp.trace.safetensors", "lenet4-jp.trace.safetensors",
                "lenet4-jp-threshold.trace.safetensors", "report.csv", "energy.png", "sweep.csv",
                "fig8.png", "runs/lenet4-jp/checkpoint/checkpoint.json"):
        assert (tmp_path / out).stat().st_size > 0, out
    report = (tmp_path / "report.csv").read_text()
    assert "lenet4-jp" in report and "lenet4-wp" in report
