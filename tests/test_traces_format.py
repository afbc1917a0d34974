"""Trace format (v2, v1 still read): round trip of every field, corruption cases, atomic write, storage cost."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest

from accelsim.errors import AccelsimError
from accelsim.traces import format as fmt
from accelsim.traces import writer as writer_mod
from accelsim.traces.reader import open_trace, validate_trace
from accelsim.traces.schema import LayerGeometry, LayerRecord, MaskParams, SparseBatch
from accelsim.traces.writer import write_trace

META = {"model": "toy", "method": "jpnet", "dataset": "mnist", "split": "test", "seed": 3,
        "accuracy": {"value": 0.5, "num_samples": 4}}


def _torch_outputs(g, w, b, x):
    """The layer's outputs by torch (an independent reference for the functional check)."""
    import torch
    import torch.nn.functional as F
    x, w = torch.from_numpy(x), torch.from_numpy(w)
    b = None if b is None else torch.from_numpy(b)
    if g.kind == "linear":
        return F.linear(x, w, b).numpy()
    return F.conv2d(x, w, b, g.stride, g.padding, g.dilation, g.groups).numpy()


def make_layers(rng, s=4, s_out=2):
    """A masked-weight conv with bias and a dense-weight linear behind a top-k mask; outputs as
    torch computes them."""
    g0 = LayerGeometry("conv", "conv2d", (4, 7, 7), (6, 4, 4), (3, 3), (2, 2), (1, 1), (1, 1), 2,
                       True)
    w0 = rng.standard_normal(g0.weight_shape).astype(np.float32)
    m0 = rng.random(g0.weight_shape) < 0.4
    m0.flat[0] = True
    w0 = np.where(m0, w0, 0).astype(np.float32)
    w0.flat[0] = 0.0  # a kept weight that happens to be zero must survive the round trip
    x0 = np.maximum(rng.standard_normal((s, *g0.in_shape)), 0).astype(np.float32)
    b0 = rng.standard_normal(6).astype(np.float32)
    r0 = LayerRecord(g0, w0, m0, b0, SparseBatch.from_dense(x0),
                     outputs=_torch_outputs(g0, w0, b0, x0[:s_out]))
    g1 = LayerGeometry("fc", "linear", (96,), (10,))
    pre = np.maximum(rng.standard_normal((s, 96)), 0).astype(np.float32)
    k = 20
    win = np.zeros_like(pre, dtype=bool)
    top = np.argsort(-np.abs(pre), axis=1)[:, :k]
    np.put_along_axis(win, top, True, axis=1)
    w1 = rng.standard_normal((10, 96)).astype(np.float32)
    r1 = LayerRecord(g1, w1, None, None,
                     SparseBatch.from_dense(pre * win), SparseBatch.from_dense(pre),
                     SparseBatch.positions_from_bool(win), MaskParams("topk", k / 96),
                     _torch_outputs(g1, w1, None, (pre * win)[:s_out]))
    return [r0, r1]


@pytest.fixture
def trace_path(tmp_path):
    path = tmp_path / "t.trace.safetensors"
    write_trace(path, META, make_layers(np.random.default_rng(0)))
    return path


def test_round_trip_every_field(tmp_path):
    layers = make_layers(np.random.default_rng(1))
    path = tmp_path / "rt.trace.safetensors"
    write_trace(path, {**META, "sample_indices": [9, 8, 7, 6], "future_key": {"x": 1}}, layers)
    t = open_trace(path)
    assert len(t) == 2 and t.names == ["conv", "fc"]
    assert t.meta["format_version"] == 2 and t.meta["sample_indices"] == [9, 8, 7, 6]
    assert t.meta["future_key"] == {"x": 1} and t.meta["output_samples"] == 2
    assert t.meta["software"]["numpy"] == np.__version__
    assert [g for g in t.geometries] == [r.geometry for r in layers]
    assert t.meta["layers"][0]["weight_encoding"] == "masked"
    assert t.meta["layers"][1]["weight_encoding"] == "dense"
    for want, got in zip(layers, [t.layer("conv"), t.layer(1)]):
        assert got.geometry == want.geometry
        np.testing.assert_array_equal(got.weight, want.weight)
        if want.weight_mask is None:
            assert got.weight_mask is None
        else:
            np.testing.assert_array_equal(got.weight_mask, want.weight_mask)
        for a, b in ((got.bias, want.bias), (got.outputs, want.outputs)):
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_array_equal(a, b)
        for f in ("inputs", "premask", "act_mask"):
            a, b = getattr(got, f), getattr(want, f)
            assert (a is None) == (b is None)
            if a is not None:
                assert a.shape == b.shape
                np.testing.assert_array_equal(a.to_dense(), b.to_dense())
        assert got.mask_params == want.mask_params
    # activation indices are stored as uint16 (small layers)
    from safetensors import safe_open
    with safe_open(path, framework="numpy") as f:
        assert f.get_tensor("L000.inputs.indices").dtype == np.uint16
        assert f.get_tensor("L000.weight.indices").dtype == np.uint32


def test_no_outputs_and_empty_samples(tmp_path):
    g = LayerGeometry("fc", "linear", (5,), (3,))
    x = np.zeros((3, 5), np.float32)
    x[1, 2] = 1.5
    rec = LayerRecord(g, np.ones((3, 5), np.float32), None, None, SparseBatch.from_dense(x))
    write_trace(tmp_path / "a", {"model": "m", "method": "dense", "dataset": "d"}, [rec])
    got = validate_trace(tmp_path / "a").layer(0)
    assert got.outputs is None and list(got.inputs.nnz_per_sample()) == [0, 1, 0]


def _rewrite(path, mutate_meta=None, mutate_tensors=None):
    """Re-save a trace with edited metadata/tensors, as a consistent but wrong writer would:
    the metadata checksum is recomputed, tensor crcs are untouched unless the mutation does."""
    from safetensors import safe_open
    from safetensors.numpy import save_file
    with safe_open(path, framework="numpy") as f:
        meta = json.loads(f.metadata()[fmt.METADATA_KEY])
        tensors = {k: f.get_tensor(k).copy() for k in f.keys()}
    if mutate_meta:
        mutate_meta(meta)
    if mutate_tensors:
        mutate_tensors(tensors, meta)
    text = json.dumps(meta)
    save_file(tensors, path, metadata={fmt.METADATA_KEY: text,
                                       fmt.METADATA_CRC_KEY: fmt.metadata_crc32(text)})


def _err(path, full=True):
    with pytest.raises(AccelsimError) as ei:
        validate_trace(path) if full else open_trace(path)
    msg = str(ei.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_truncated(trace_path):
    data = trace_path.read_bytes()
    trace_path.write_bytes(data[: len(data) - 100])
    assert "truncated" in _err(trace_path, full=False)
    trace_path.write_bytes(data[:5])
    assert "too short" in _err(trace_path, full=False)


def test_not_safetensors(tmp_path):
    p = tmp_path / "x.trace.safetensors"
    p.write_bytes(b"hello world, this is not a trace at all")
    assert "not a safetensors file" in _err(p, full=False)
    assert "no such file" in _err(tmp_path / "missing", full=False)


def test_flipped_byte_is_a_crc_error(trace_path):
    data = bytearray(trace_path.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    start, end = header["L001.weight"]["data_offsets"]
    data[8 + n + start + 5] ^= 0x40
    trace_path.write_bytes(bytes(data))
    assert "tensor L001.weight is corrupt (crc32 mismatch)" in _err(trace_path)


def test_nan(trace_path):
    def poison(t, meta):
        t["L000.outputs"].flat[3] = np.nan
        meta["layers"][0]["tensors"]["L000.outputs"]["crc32"] = fmt.crc32(t["L000.outputs"])
    _rewrite(trace_path, mutate_tensors=poison)
    assert "tensor L000.outputs holds 1 NaN/Inf value(s)" in _err(trace_path)


def test_bad_version(trace_path):
    _rewrite(trace_path, lambda m: m.update(format_version=3))
    assert "unsupported trace format_version 3" in _err(trace_path, full=False)


def test_bad_json_and_foreign_file(trace_path):
    from safetensors.numpy import save_file
    save_file({"a": np.zeros(2, np.float32)}, trace_path, metadata={fmt.METADATA_KEY: "{oops"})
    assert "is not valid JSON" in _err(trace_path, full=False)
    save_file({"a": np.zeros(2, np.float32)}, trace_path)
    assert "not an accelsim trace" in _err(trace_path, full=False)


def test_missing_tensor(trace_path):
    _rewrite(trace_path, mutate_tensors=lambda t, m: t.pop("L001.bias", None) or t.pop("L000.bias"))
    assert "missing tensor L000.bias" in _err(trace_path, full=False)


def test_shape_mismatch(trace_path):
    def reshape(t, meta):
        t["L001.weight"] = t["L001.weight"][:, :95].copy()
        meta["layers"][1]["tensors"]["L001.weight"]["crc32"] = fmt.crc32(t["L001.weight"])
    _rewrite(trace_path, mutate_tensors=reshape)
    assert "tensor L001.weight has shape (10, 95), expected (10, 96)" in _err(trace_path)


def test_wrong_dtype(trace_path):
    def retype(t, meta):
        t["L000.bias"] = t["L000.bias"].astype(np.float64)
    _rewrite(trace_path, mutate_tensors=retype)
    assert "tensor L000.bias has dtype F64, expected float32" in _err(trace_path)


def test_geometry_inconsistent(trace_path):
    _rewrite(trace_path, lambda m: m["layers"][0].update(out_shape=[6, 5, 5]))
    assert "geometry inconsistent" in _err(trace_path, full=False)


def test_mask_params_out_of_range(trace_path):
    _rewrite(trace_path, lambda m: m["layers"][1]["mask"].update(winner_rate=1.5))
    assert "mask winner_rate must be in [0, 1], got 1.5" in _err(trace_path, full=False)


def test_indices_not_increasing(trace_path):
    def swap(t, meta):
        idx = t["L001.inputs.indices"]
        idx[0], idx[1] = idx[1], idx[0]
        meta["layers"][1]["tensors"]["L001.inputs.indices"]["crc32"] = fmt.crc32(idx)
    _rewrite(trace_path, mutate_tensors=swap)
    assert "inputs.indices are not strictly increasing within a sample" in _err(trace_path)


def test_indptr_not_ending_at_nnz(trace_path):
    def cut(t, meta):
        p = t["L000.inputs.indptr"]
        p[-1] -= 1
        meta["layers"][0]["tensors"]["L000.inputs.indptr"]["crc32"] = fmt.crc32(p)
    _rewrite(trace_path, mutate_tensors=cut)
    assert "inputs.indptr ends at" in _err(trace_path)


def test_writer_rejects_bad_records(tmp_path):
    layers = make_layers(np.random.default_rng(2))
    layers[1].inputs.values[0] = np.inf
    with pytest.raises(AccelsimError, match="inputs.values holds 1 NaN/Inf"):
        write_trace(tmp_path / "x", META, layers)
    layers = make_layers(np.random.default_rng(2))
    layers[1].act_mask.indices[0] += 0  # untouched mask, but inputs no longer premask x mask:
    layers[1].inputs.values[0] *= 2
    with pytest.raises(AccelsimError, match="inputs are not premask x act_mask"):
        write_trace(tmp_path / "x", META, layers)
    assert not os.listdir(tmp_path)


def test_atomic_write_leaves_nothing(tmp_path, monkeypatch):
    def crash(tensors, metadata, tmp):
        with open(tmp, "wb") as fh:
            fh.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")  # half a file
        raise OSError("disk full")
    monkeypatch.setattr(writer_mod, "_save", crash)
    path = tmp_path / "crash.trace.safetensors"
    # the OS error becomes one line naming the trace path
    with pytest.raises(AccelsimError, match=r"crash\.trace\.safetensors: cannot write \(disk full\)"):
        write_trace(path, META, make_layers(np.random.default_rng(3)))
    assert os.listdir(tmp_path) == []
    # an existing complete trace at path survives a crashed overwrite unchanged
    monkeypatch.undo()
    write_trace(path, META, make_layers(np.random.default_rng(3)))
    before = path.read_bytes()
    monkeypatch.setattr(writer_mod, "_save", crash)
    with pytest.raises(AccelsimError):
        write_trace(path, META, make_layers(np.random.default_rng(4)))
    assert path.read_bytes() == before and os.listdir(tmp_path) == [path.name]


def test_bytes_per_activation_nonzero(tmp_path):
    """A sparse linear layer: file bytes per stored activation non-zero stay under 8."""
    rng = np.random.default_rng(5)
    s, f = 200, 4096
    x = np.where(rng.random((s, f)) < 0.1, rng.standard_normal((s, f)), 0).astype(np.float32)
    g = LayerGeometry("fc", "linear", (f,), (2,))
    rec = LayerRecord(g, np.ones((2, f), np.float32), None, None, SparseBatch.from_dense(x))
    path = tmp_path / "s.trace.safetensors"
    write_trace(path, {"model": "m", "method": "dense", "dataset": "d"}, [rec])
    nnz = int(np.count_nonzero(x))
    per_nnz = (os.path.getsize(path) - 2 * f * 4) / nnz  # minus the dense weight
    assert 6.0 <= per_nnz < 8.0  # 4 B value + 2 B uint16 index + indptr/header overhead


def test_spec_example_writes_a_valid_trace(tmp_path, monkeypatch):
    """The numpy + safetensors example in docs/trace-format.md yields a trace the reader accepts."""
    doc = (__import__("pathlib").Path(__file__).parents[1] / "docs" / "trace-format.md").read_text()
    code = doc.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "trace-format.md", "exec"), {})
    rec = validate_trace(tmp_path / "tiny.trace.safetensors").layer("fc")
    np.testing.assert_allclose(rec.inputs.to_dense() @ rec.weight.T, rec.outputs)
    assert list(rec.inputs.nnz_per_sample()) == [2, 1]


def test_reader_path_never_imports_torch(trace_path):
    import subprocess
    import sys
    code = ("import sys, accelsim.traces.cli, accelsim.traces.reader as r, accelsim.traces.info as i; "
            f"i.trace_stats(r.validate_trace({str(trace_path)!r})); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
