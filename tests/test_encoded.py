"""Encode once: the weight-side work of a layer is done once per (layer, encoding parameters)
and reused by both variants, the storage footprint, every sweep point and, through the disk
cache, the next process; reuse never changes a figure."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

import accelsim
from accelsim.dataflows.eie import encoding
from accelsim.simulate import _LOADED

TRACE = "traces/reference/lenet4-jp.trace.safetensors"


@pytest.fixture()
def counted(monkeypatch, tmp_path):
    """A private copy of the trace and cache folder; counts of eie_columns and _csc calls."""
    monkeypatch.setenv("ACCELSIM_CACHE", str(tmp_path / "cache"))
    trace = tmp_path / "t.trace.safetensors"
    shutil.copy(TRACE, trace)
    calls = {"columns": 0, "csc": 0}
    real_cols, real_csc = encoding.eie_columns, encoding.nonzero_csc

    def cols(*a, **k):
        calls["columns"] += 1
        return real_cols(*a, **k)

    def csc(*a, **k):
        calls["csc"] += 1
        return real_csc(*a, **k)

    monkeypatch.setattr(encoding, "eie_columns", cols)
    monkeypatch.setattr(encoding, "nonzero_csc", csc)
    _LOADED.clear()
    yield trace, calls
    _LOADED.clear()


def test_once_per_layer_and_parameters(counted):
    trace, calls = counted
    layers = len(accelsim.open_trace(trace))
    first = accelsim.simulate(trace, set={"eie.fifo_depth": 8})
    # sparse and baseline variants, storage footprint: one count of each layer, one CSC
    assert calls == {"columns": layers, "csc": layers}
    accelsim.simulate(trace, set={"eie.fifo_depth": 2, "topk.scheme": "radix"})
    assert calls == {"columns": layers, "csc": layers}  # same encoding parameters: nothing new
    accelsim.simulate(trace, set={"eie.num_pes": 32})
    assert calls == {"columns": 2 * layers, "csc": layers}
    # a new process state finds the column counts on disk
    _LOADED.clear()
    again = accelsim.simulate(trace, set={"eie.fifo_depth": 8})
    assert calls["columns"] == 2 * layers
    pd.testing.assert_frame_equal(first, again)


def test_reuse_changes_no_figure(counted, monkeypatch):
    trace, _ = counted
    accelsim.simulate(trace, set={"eie.num_pes": 16})  # fills memory and disk
    warm = accelsim.simulate(trace, set={"eie.num_pes": 16, "eie.fifo_depth": 2})
    _LOADED.clear()
    monkeypatch.setenv("ACCELSIM_CACHE", "off")
    cold = accelsim.simulate(trace, set={"eie.num_pes": 16, "eie.fifo_depth": 2})
    pd.testing.assert_frame_equal(warm, cold)


def test_damaged_cache_file_is_recomputed(counted):
    trace, calls = counted
    layers = len(accelsim.open_trace(trace))
    first = accelsim.simulate(trace)
    files = sorted((trace.parent / "cache").glob("*eie_columns*.npz"))
    assert len(files) == layers
    for f in files:
        f.write_bytes(b"not an npz")
    _LOADED.clear()
    again = accelsim.simulate(trace)
    assert calls["columns"] == 2 * layers
    pd.testing.assert_frame_equal(first, again)
    with np.load(files[0], allow_pickle=False) as data:  # rewritten whole
        assert set(data.files) == {"nonzeros", "padding", "rows"}


def test_changed_trace_is_not_served_from_cache(counted, tmp_path):
    trace, calls = counted
    accelsim.simulate(trace)
    other = tmp_path / "t2.trace.safetensors"
    shutil.copy("traces/reference/lenet4-wp.trace.safetensors", other)
    shutil.copy(other, trace)  # same path, other content
    _LOADED.clear()
    moved = accelsim.simulate(trace)
    fresh = accelsim.simulate(other)
    assert np.allclose(moved["cycles"], fresh["cycles"])
