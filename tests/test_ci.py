"""Data-dependent tests skip, saying why, where the data sets are absent (a fresh clone), and fail
where CI says the data must be there (ACCELSIM_REQUIRE_DATA=1, set by .ci/run)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA_TEST = "tests/test_results.py::test_measure_checkpoint_on_real_images"


def _pytest(tmp_path, **env):
    empty = tmp_path / "no-data"
    empty.mkdir(exist_ok=True)
    environ = {k: v for k, v in os.environ.items() if k != "ACCELSIM_REQUIRE_DATA"}
    environ.update(ACCELSIM_DATA=str(empty), **env)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           DATA_TEST], cwd=ROOT, env=environ, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_without_data_the_data_tests_skip_with_the_reason_or_fail_where_required(tmp_path):
    run = _pytest(tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 skipped" in run.stdout and "mnist data not found" in run.stdout
    required = _pytest(tmp_path, ACCELSIM_REQUIRE_DATA="1")
    assert required.returncode == 1 and "ACCELSIM_REQUIRE_DATA=1" in required.stdout
