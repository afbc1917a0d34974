"""Shared fixtures. Data-dependent tests find MNIST / CIFAR-10 the way users do (--data-dir,
$ACCELSIM_DATA, the default search path). Where the data is absent they skip, saying why; with
ACCELSIM_REQUIRE_DATA=1 (set by .ci/run when it finds the data) a missing data set fails them.
The encoding cache (accelsim.encoded) goes to a temporary folder, never the user's."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from accelsim.errors import AccelsimError

os.environ.setdefault("ACCELSIM_CACHE", tempfile.mkdtemp(prefix="accelsim-test-cache-"))


def dataset_dir(name: str) -> Path:
    """The folder holding data set `name`, else skip (or fail where the data is required)."""
    from accelsim.models.data import find_dataset_dir

    try:
        return find_dataset_dir(name)
    except AccelsimError as exc:
        reason = f"{name} data not found: {exc}"
        if os.environ.get("ACCELSIM_REQUIRE_DATA") == "1":
            pytest.fail(f"{reason} (ACCELSIM_REQUIRE_DATA=1)", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    return dataset_dir("mnist")


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    return dataset_dir("cifar10")


@pytest.fixture
def cli(capsys):
    """`cli("run", "--trace", ...)` -> (exit code, stdout, stderr) of the accelsim command line."""
    from accelsim.cli import main

    def run(*args):
        with pytest.raises(SystemExit) as info:
            main([str(a) for a in args])
        out = capsys.readouterr()
        return info.value.code, out.out, out.err

    return run
