"""The encoding cache on disk is bounded (least recently used entries go first), can be
inspected and cleared, and never touches files it did not write."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from accelsim import diskcache
from accelsim.cli import main


@pytest.fixture()
def cache(monkeypatch, tmp_path):
    folder = tmp_path / "cache"
    monkeypatch.setenv("ACCELSIM_CACHE", str(folder))
    monkeypatch.setenv("ACCELSIM_CACHE_SIZE", "1M")
    return folder


def put(key: str, kib: int, when: float):
    path = diskcache.entry_path(key, "arrays")
    diskcache.store(path, "arrays", {"a": np.zeros(kib * 256, dtype=np.float32)})
    os.utime(path, (when, when))
    return path


def test_least_recently_used_entries_are_evicted_beyond_the_limit(cache):
    now = time.time()
    a, b, c = (put(k, 300, now - 100 + i) for i, k in enumerate("abc"))  # ~900 KiB
    assert diskcache.load(a, "arrays")["a"].shape == (300 * 256,)  # a is used: now the newest
    d = put("d", 300, now)  # over 1 MiB: b, the least recently used, goes
    assert [p.exists() for p in (a, b, c, d)] == [True, False, True, True]
    assert diskcache.info()["bytes"] <= 1 << 20


def test_clear_and_info_touch_only_cache_entries(cache, capsys):
    put("x", 4, time.time())
    diskcache.store(diskcache.entry_path("y", "json"), "json", {"v": 1.5})
    (cache / "notes.txt").write_text("mine")
    (cache / "v9-looks-like-an-entry-but-is-a-dir").mkdir()  # an entry name: counted
    with pytest.raises(SystemExit) as exit_:
        main(["cache", "info"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert f"path: {cache}" in out and "entries: 3" in out and "of 1.0 MiB" in out
    with pytest.raises(SystemExit):
        main(["cache", "clear"])
    assert "removed 3 entries" in capsys.readouterr().out
    assert sorted(p.name for p in cache.iterdir()) == ["notes.txt"]


def test_a_bad_size_limit_is_one_line(cache, monkeypatch, capsys):
    monkeypatch.setenv("ACCELSIM_CACHE_SIZE", "lots")
    with pytest.raises(SystemExit) as exit_:
        main(["cache", "info"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ACCELSIM_CACHE_SIZE='lots': expected a size") and err.count("\n") == 1


def test_sizes():
    assert diskcache.parse_size("4G") == 4 << 30
    assert diskcache.parse_size("1.5k") == 1536
    assert diskcache.parse_size("0") == 0


def test_cache_off(monkeypatch, capsys):
    monkeypatch.setenv("ACCELSIM_CACHE", "off")
    with pytest.raises(SystemExit):
        main(["cache", "clear"])
    assert "the cache is off" in capsys.readouterr().out
