"""Reports say exactly what was simulated: the arch label names the overrides, every row holds
the source, the overrides, the whole resolved configuration and hashes of it and of the energy
table, so concatenated runs are never confused."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from accelsim.arch import load_arch
from accelsim.cli import main
from accelsim.report import summary

MLP = "traces/reference/mlp3-wp.trace.safetensors"


def run(capsys, tmp_path, name, *args):
    out = tmp_path / name
    with pytest.raises(SystemExit) as info:
        main(["run", "--trace", MLP, "--quiet", "--out", str(out), *args])
    capsys.readouterr()
    assert info.value.code == 0
    return pd.read_csv(out)


def test_overrides_are_named_and_hashed(capsys, tmp_path):
    base = run(capsys, tmp_path, "a.csv")
    small = run(capsys, tmp_path, "b.csv", "--set", "eie.num_pes=32", "--set", "eie.fifo_depth=4")
    assert set(base["arch"]) == {"eie64"} and set(base["arch_overrides"]) == {"[]"}
    assert set(small["arch"]) == {"eie64[eie.num_pes=32,eie.fifo_depth=4]"}
    assert set(small["arch_source"]) == {"eie64"}
    assert json.loads(small["arch_overrides"].iloc[0]) == ["eie.num_pes=32", "eie.fifo_depth=4"]
    # the JSON column is the configuration the loader resolves, for both variants of the run
    config = json.loads(small["arch_config"].iloc[0])
    assert config == load_arch("eie64", ["eie.num_pes=32", "eie.fifo_depth=4"]).to_dict()
    assert small["arch_config"].nunique() == 1 and small["arch_hash"].nunique() == 1
    assert base["arch_hash"].iloc[0] != small["arch_hash"].iloc[0]
    assert set(base["energy_hash"]) == set(small["energy_hash"])
    # a concatenated table keeps the two runs apart
    both = summary(pd.concat([base, small], ignore_index=True))
    assert len(both) == 2 and both["cycles"].nunique() == 2


def test_same_name_different_files_stay_apart(capsys, tmp_path):
    for sub, pes in (("x", 64), ("y", 16)):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "mine.toml").write_text(f"[arch]\ndataflow = 'eie'\n[eie]\nnum_pes = {pes}\n")
    a = run(capsys, tmp_path, "a.csv", "--arch", str(tmp_path / "x" / "mine.toml"))
    b = run(capsys, tmp_path, "b.csv", "--arch", str(tmp_path / "y" / "mine.toml"))
    assert set(a["arch"]) == set(b["arch"]) == {"mine"}
    assert a["arch_source"].iloc[0].endswith("x/mine.toml")
    assert a["arch_hash"].iloc[0] != b["arch_hash"].iloc[0]
    both = summary(pd.concat([a, b], ignore_index=True))
    assert len(both) == 2
    assert sorted(both["cycles"]) == sorted([summary(a)["cycles"].iloc[0], summary(b)["cycles"].iloc[0]])
