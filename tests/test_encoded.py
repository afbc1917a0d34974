"""Encode once: the weight-side work of a layer is done once per (layer, encoding parameters)
and reused by both variants, the storage footprint, every sweep point and, through the disk
cache, the next process; reuse never changes a figure."""

from __future__ import annotations

import os
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


def test_damaged_cache_entries_are_recomputed(counted):
    trace, calls = counted
    layers = len(accelsim.open_trace(trace))
    first = accelsim.simulate(trace)
    cache = trace.parent / "cache"
    columns = sorted(cache.glob("*eie_columns*"))
    assert len(columns) == layers
    for f in cache.glob("*/*.npy"):  # every stored array: garbage, or cut short
        f.write_bytes(b"not an npy" if f.name[0] < "m" else f.read_bytes()[:100])
    for f in cache.glob("*.json"):
        f.write_text("{")
    _LOADED.clear()
    again = accelsim.simulate(trace)
    assert calls["columns"] == 2 * layers  # nothing damaged was used
    pd.testing.assert_frame_equal(first, again)
    stored = {f.name for f in columns[0].glob("*.npy")}
    assert stored == {"nonzeros.npy", "padding.npy", "rows.npy"}  # rewritten whole
    assert np.load(columns[0] / "rows.npy", allow_pickle=False).ndim == 2


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


@pytest.fixture()
def weight_reads(counted, monkeypatch):
    """The trace of `counted` and a list of the layer weights (and, separately read, outputs)
    read from trace files."""
    from accelsim.traces import reader

    trace, _ = counted
    reads = []
    real, real_out = reader.Trace._weights, reader.Trace._deferred_outputs

    def weights(self, i, get):
        reads.append((self.path, i))
        return real(self, i, get)

    def outputs(self, i):
        reads.append((self.path, i, "outputs"))
        return real_out(self, i)

    monkeypatch.setattr(reader.Trace, "_weights", weights)
    monkeypatch.setattr(reader.Trace, "_deferred_outputs", outputs)
    return trace, reads


def _flip_byte(path, tensor: str):
    """Change one byte inside layer 0's stored weights or outputs; the header (and so the
    content id and every recorded crc32) stays as it was."""
    import json
    import struct

    data = bytearray(path.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    name = next(k for k in (f"L000.{tensor}.values", f"L000.{tensor}") if k in header)
    start = 8 + n + header[name]["data_offsets"][0]
    data[start + 1] ^= 0x40
    path.write_bytes(bytes(data))


def test_weights_checked_once_per_file_are_not_read_again(weight_reads):
    trace, reads = weight_reads
    opened = accelsim.open_trace(trace)
    layers = len(opened)
    assert opened.output_samples > 0  # the trace records outputs: the functional check runs
    first = accelsim.simulate(trace)
    assert len(reads) == 2 * layers  # weights and outputs of every layer
    _LOADED.clear()
    again = accelsim.simulate(trace)  # same file, encodings and checks cached: nothing read
    assert len(reads) == 2 * layers
    pd.testing.assert_frame_equal(first, again)
    _LOADED.clear()
    os.utime(trace)  # any write or touch changes the file's status: read and checked again
    accelsim.simulate(trace)
    assert len(reads) == 4 * layers


@pytest.mark.parametrize("tensor", ["weight", "outputs"])
def test_a_corrupt_copy_is_caught_with_the_cache_warm(weight_reads, tmp_path, tensor):
    trace, reads = weight_reads
    accelsim.simulate(trace)  # the cache holds every encoding and check of this content id
    copy = tmp_path / "copy.trace.safetensors"
    shutil.copy(trace, copy)
    _flip_byte(copy, tensor)
    _LOADED.clear()
    with pytest.raises(accelsim.AccelsimError, match=r"copy\.trace\.safetensors: layer 0 .*crc32 mismatch"):
        accelsim.simulate(copy)
