"""Trace reader hardening: metadata checksum (v2), v1 still read, bounds before allocation,
non-finite numbers, the functional check in `trace validate`, fuzzing under a memory limit,
and a writer killed at random moments."""

from __future__ import annotations

import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.numpy import save_file
from test_traces_format import META, make_layers

from accelsim.atomic import STALE_AFTER_S
from accelsim.errors import AccelsimError
from accelsim.traces import format as fmt
from accelsim.traces.reader import open_trace, validate_trace
from accelsim.traces.schema import LayerGeometry
from accelsim.traces.validate import check_bounds
from accelsim.traces.writer import write_trace

WORKER = Path(__file__).with_name("trace_reader_worker.py")
LIMIT = 1 << 30  # 1 GiB of address space for the reader under test


class Worker:
    """One reader process under RLIMIT_AS, fed paths one at a time (restarted if it dies)."""

    def __init__(self):
        self.proc = None

    def _start(self):
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, str(WORKER), str(LIMIT)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        assert json.loads(self.proc.stdout.readline())["status"] == "ready"

    def read(self, path) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.proc.stdin.write(f"{path}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.proc = None
            return {"status": "crash", "msg": "reader process died (killed for memory?)"}
        return json.loads(line)

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    w.close()


class Valid(bytes):
    """The bytes of a small valid v2 trace (short repr: hypothesis prints its arguments)."""

    def __repr__(self):
        return f"<valid trace, {len(self)} bytes>"


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    path = tmp_path_factory.mktemp("valid") / "v.trace.safetensors"
    write_trace(path, META, make_layers(np.random.default_rng(7)))
    return Valid(path.read_bytes())


def _header(data: bytes) -> tuple[int, dict]:
    (n,) = struct.unpack("<Q", data[:8])
    return n, json.loads(data[8:8 + n])


def _resave(path, meta: dict | str, tensors: dict, crc: bool | str = True):
    text = meta if isinstance(meta, str) else json.dumps(meta)
    md = {fmt.METADATA_KEY: text}
    if crc is True:
        md[fmt.METADATA_CRC_KEY] = fmt.metadata_crc32(text)
    elif isinstance(crc, str):
        md[fmt.METADATA_CRC_KEY] = crc
    save_file(tensors, path, metadata=md)


def _load(path) -> tuple[dict, dict]:
    with safe_open(path, framework="numpy") as f:
        return json.loads(f.metadata()[fmt.METADATA_KEY]), {k: f.get_tensor(k) for k in f.keys()}


def _user_error(path, functional=True) -> str:
    with pytest.raises(AccelsimError) as ei:
        validate_trace(path, functional=functional)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(str(path))
    return msg


# ---------------------------------------------------------------- checksum and versions


def test_flipped_digit_in_metadata_is_caught(tmp_path, valid):
    """One digit of the JSON header changed (in_shape 96 -> 97): v1 had no way to see it."""
    path = tmp_path / "t.trace.safetensors"
    data = valid.replace(b'\\"in_shape\\": [96]', b'\\"in_shape\\": [97]')
    assert data != valid
    path.write_bytes(data)
    assert "metadata is corrupt (crc32 mismatch)" in _user_error(path)


def test_v2_without_checksum_is_refused_and_v1_still_reads(tmp_path, valid):
    path = tmp_path / "t.trace.safetensors"
    path.write_bytes(valid)
    meta, tensors = _load(path)
    _resave(path, meta, tensors, crc=False)
    assert "'accelsim_trace_crc32' is missing" in _user_error(path)
    _resave(path, {**meta, "format_version": 1}, tensors, crc=False)  # a v1 file: no checksum
    t = validate_trace(path)
    assert t.meta["format_version"] == 1 and len(t) == 2
    _resave(path, meta, tensors, crc="12345")
    assert "metadata is corrupt" in _user_error(path)


def test_reference_traces_still_validate_as_v1():
    """The shipped reference traces are v1 files: they pass every check, the functional one too."""
    ref = Path(__file__).parents[1] / "traces" / "reference"
    t = validate_trace(ref / "mlp3-jp.trace.safetensors")
    assert t.meta["format_version"] == 1 and t.output_samples > 0


@pytest.mark.parametrize("text,phrase", [
    ('{"format": "accelsim-trace", "x": NaN}', "non-finite number NaN"),
    ('{"format": "accelsim-trace", "x": -Infinity}', "non-finite number -Infinity"),
    ('{"format": "accelsim-trace", "x": 1e999}', "is not finite"),
    ('{"format": "accelsim-trace", "x": 123456789012345678901234}', "does not fit int64"),
    ("[" * 100000 + "]" * 100000, "nested too deeply"),
])
def test_non_finite_and_absurd_numbers_in_metadata(tmp_path, text, phrase):
    path = tmp_path / "t.trace.safetensors"
    _resave(path, text, {"a": np.zeros(2, np.float32)})
    assert phrase in _user_error(path)


def test_every_number_checked_in_mask_and_accuracy(tmp_path, valid):
    path = tmp_path / "t.trace.safetensors"
    path.write_bytes(valid)
    meta, tensors = _load(path)
    meta["layers"][1]["mask"]["winner_rate"] = -0.5
    _resave(path, meta, tensors)
    assert "winner_rate must be in [0, 1]" in _user_error(path)
    meta["layers"][1]["mask"]["winner_rate"] = 0.2
    meta["accuracy"] = {"value": 1.5, "num_samples": 4}
    _resave(path, meta, tensors)
    assert "'accuracy' must be null" in _user_error(path)


# ---------------------------------------------------------------- bounds


def _bomb(path, out_features=10**6, in_features=10**6):
    """A ~1.3 KB trace whose metadata claims an out x in masked linear layer with one weight."""
    layer = {"name": "fc", "kind": "linear", "in_shape": [in_features], "out_shape": [out_features],
             "kernel": [1, 1], "stride": [1, 1], "padding": [0, 0], "dilation": [1, 1], "groups": 1,
             "has_bias": False, "weight_encoding": "masked", "mask": None}
    tensors = {"L000.weight.indices": np.array([5], "<u4"), "L000.weight.values": np.ones(1, "<f4"),
               "L000.inputs.indptr": np.array([0, 1], "<i8"),
               "L000.inputs.indices": np.array([3], fmt.index_dtype(in_features)), "L000.inputs.values": np.ones(1, "<f4")}
    layer["tensors"] = {k: {"crc32": zlib.crc32(v.tobytes())} for k, v in tensors.items()}
    meta = {"format": "accelsim-trace", "format_version": 2, "model": "bomb", "method": "dense",
            "dataset": "random", "split": None, "sample_indices": [0], "accuracy": None,
            "seed": None, "software": {}, "command": [], "created": "2026-01-01T00:00:00+00:00",
            "num_samples": 1, "output_samples": 0, "layers": [layer]}
    _resave(path, meta, tensors)


def test_memory_bomb_is_refused_without_allocating(tmp_path, worker):
    path = tmp_path / "bomb.trace.safetensors"
    _bomb(path)
    assert os.path.getsize(path) < 1400
    got = worker.read(path)  # under a 1 GiB address-space limit
    assert got["status"] == "user", got
    assert "claims 1,000,000,000,000 weight elements" in got["msg"] and str(path) in got["msg"]
    _bomb(path, 20000, 20000)  # plausible sizes, three orders too many for the file
    got = worker.read(path)
    assert got["status"] == "user" and "claims 400,000,000 weight elements" in got["msg"], got
    _bomb(path, 1000, 1000)  # within the allowance: a valid, very sparse layer
    assert worker.read(path)["status"] == "ok"


def _bytes_of(g: LayerGeometry, weight_density: float, act_density: float, samples: int) -> int:
    """File bytes a trace of this one layer takes: masked weights (8 B per kept weight) and CSR
    activations (6 B per non-zero, 8 B per sample)."""
    w = int(np.prod(g.weight_shape)) * weight_density * 8
    a = samples * (int(np.prod(g.in_shape)) * act_density * 6 + 8)
    return int(w + a)


@pytest.mark.parametrize("geom,wd,ad", [
    (LayerGeometry("fc6", "linear", (25088,), (4096,)), 0.01, 0.1),  # VGG-16 fc6, 1% weights
    (LayerGeometry("fc6", "linear", (25088,), (4096,)), 0.001, 0.01),  # far below real pruning
    (LayerGeometry("conv1", "conv2d", (3, 224, 224), (64, 112, 112), (7, 7), (2, 2), (3, 3)),
     0.3, 1.0),  # ResNet-50 conv1: dense image input
    (LayerGeometry("res5", "conv2d", (512, 7, 7), (512, 7, 7), (3, 3), (1, 1), (1, 1)), 0.02, 0.05),
    (LayerGeometry("fc", "linear", (2048,), (1000,)), 0.01, 0.05),  # ResNet-50 fc
])
def test_bounds_pass_real_networks(geom, wd, ad):
    """The bounds are generous: VGG-16's fc6 and ResNet-50's largest layers pass even when the
    trace holds nothing but that layer, pruned far harder than published results."""
    for samples in (1, 256):
        check_bounds(geom, samples, "t", _bytes_of(geom, wd, ad, samples))


def test_padding_and_outputs_are_bounded(tmp_path):
    g = LayerGeometry("c", "conv2d", (1, 4, 4), (1, 4, 4), (1, 1), (1, 1), (0, 0))
    check_bounds(g, 1, "t", 100)
    huge = LayerGeometry("c", "conv2d", (1, 4, 4), (1, 4, 4), (3, 3), (1, 1), (10**6, 10**6),
                         (10**6, 10**6))
    with pytest.raises(AccelsimError, match="padded input elements"):
        check_bounds(huge, 1, "t", 100)
    with pytest.raises(AccelsimError, match="output elements"):
        check_bounds(LayerGeometry("f", "linear", (1,), (10**6,)), 10, "t", 100)


# ---------------------------------------------------------------- functional check


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "accelsim.cli", *args], capture_output=True,
                          text=True)


def test_validate_runs_the_functional_check(tmp_path, valid):
    path = tmp_path / "t.trace.safetensors"
    path.write_bytes(valid)
    res = _cli("trace", "validate", str(path))
    assert res.returncode == 0 and "outputs of 2 samples recomputed" in res.stdout
    meta, tensors = _load(path)
    tensors["L000.outputs"] = tensors["L000.outputs"].copy()
    tensors["L000.outputs"][1, 2, 1, 1] += 0.5  # one output that the weights do not explain
    meta["layers"][0]["tensors"]["L000.outputs"]["crc32"] = fmt.crc32(tensors["L000.outputs"])
    _resave(path, meta, tensors)
    assert "layer 0 (conv): functional check failed" in _user_error(path)
    assert "first at sample 1" in _user_error(path)
    validate_trace(path, functional=False)  # every other check passes: it is the recompute
    res = _cli("trace", "validate", str(path))
    assert res.returncode == 2 and res.stderr.startswith("error: ") and res.stderr.count("\n") == 1
    assert "functional check failed" in res.stderr


@settings(max_examples=40, deadline=None, database=None)
@given(data=st.data())
def test_functional_recompute_matches_torch(data):
    """traces.functional's numpy recompute equals torch's conv2d/linear on random geometries
    (groups, stride, padding, dilation, bias, sparse inputs)."""
    import torch
    import torch.nn.functional as F

    from accelsim.traces.functional import recompute_outputs
    from accelsim.traces.schema import LayerRecord, SparseBatch
    from accelsim.traces.validate import conv_out_size

    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    s = data.draw(st.integers(1, 3))
    if data.draw(st.booleans()):
        f, m = data.draw(st.integers(1, 20)), data.draw(st.integers(1, 8))
        g = LayerGeometry("fc", "linear", (f,), (m,), has_bias=data.draw(st.booleans()))
    else:
        groups = data.draw(st.integers(1, 3))
        c, m = groups * data.draw(st.integers(1, 3)), groups * data.draw(st.integers(1, 3))
        k, st_, p, d = (tuple(data.draw(st.integers(lo, hi)) for _ in range(2))
                        for lo, hi in ((1, 3), (1, 3), (0, 2), (1, 2)))
        h, w = (data.draw(st.integers(d[i] * (k[i] - 1) + 1, 8)) for i in range(2))
        out = (m, *(conv_out_size((h, w)[i], k[i], st_[i], p[i], d[i]) for i in range(2)))
        g = LayerGeometry("c", "conv2d", (c, h, w), out, k, st_, p, d, groups,
                          data.draw(st.booleans()))
    w = rng.standard_normal(g.weight_shape).astype(np.float32)
    b = rng.standard_normal(g.out_shape[0]).astype(np.float32) if g.has_bias else None
    x = np.where(rng.random((s, *g.in_shape)) < 0.5, rng.standard_normal((s, *g.in_shape)),
                 0).astype(np.float32)
    rec = LayerRecord(g, w, None, b, SparseBatch.from_dense(x))
    tb = None if b is None else torch.from_numpy(b)
    want = (F.linear(torch.from_numpy(x), torch.from_numpy(w), tb) if g.kind == "linear" else
            F.conv2d(torch.from_numpy(x), torch.from_numpy(w), tb, g.stride, g.padding,
                     g.dilation, g.groups)).numpy()
    np.testing.assert_allclose(recompute_outputs(rec, 0, s), want, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- fuzzing

FUZZ = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _check(worker, path, original_digest=None):
    got = worker.read(path)
    assert got["status"] != "crash", got["msg"]
    if got["status"] == "user":
        assert "\n" not in got["msg"] and got["msg"].startswith(str(path)), got["msg"]
    elif original_digest is not None:  # a change the reader accepted must change nothing read
        assert got["digest"] == original_digest
    return got


@pytest.fixture(scope="module")
def valid_digest(worker, valid, tmp_path_factory):
    path = tmp_path_factory.mktemp("d") / "v.trace.safetensors"
    path.write_bytes(valid)
    return worker.read(path)["digest"]


@FUZZ
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)),
                      min_size=1, max_size=4))
def test_fuzz_byte_flips(tmp_path, worker, valid, valid_digest, flips):
    data = bytearray(valid)
    for where, bit in flips:
        data[int(where * len(data))] ^= 1 << bit
    path = tmp_path / "f.trace.safetensors"
    path.write_bytes(bytes(data))
    _check(worker, path, valid_digest)


@FUZZ
@given(keep=st.floats(0, 1, exclude_max=True))
def test_fuzz_truncation(tmp_path, worker, valid, keep):
    path = tmp_path / "f.trace.safetensors"
    path.write_bytes(valid[: int(keep * len(valid))])
    assert _check(worker, path)["status"] == "user"


_VALUES = st.one_of(
    st.integers(-2, 40), st.sampled_from([0, 10**6, 10**9, 10**12, 2**32, 2**63 - 1, 65537]),
    st.floats(allow_nan=False, allow_infinity=False), st.none(), st.booleans(),
    st.text(max_size=5), st.lists(st.integers(-1, 10**7), max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _paths(doc, prefix=()):
    """Every (path, value) in a JSON document, containers included."""
    yield prefix, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


def _set(doc, path, value):
    for k in path[:-1]:
        doc = doc[k]
    doc[path[-1]] = value


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_metadata_mutations(tmp_path, worker, valid, data):
    """Random values at random places of the metadata, written with a valid checksum (a wrong
    but self-consistent writer): a one-line error or a valid trace, never a traceback or a
    memory blow-up. Without the checksum update, always the checksum error."""
    path = tmp_path / "f.trace.safetensors"
    path.write_bytes(valid)
    meta, tensors = _load(path)
    original = json.dumps(meta)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p, _ in _paths(meta) if p]
        _set(meta, data.draw(st.sampled_from(paths)), data.draw(_VALUES))
    _resave(path, meta, tensors)
    _check(worker, path)
    if json.dumps(meta) != original:
        _resave(path, meta, tensors, crc=fmt.metadata_crc32(original))
        got = _check(worker, path)
        assert got["status"] == "user" and "metadata is corrupt" in got["msg"]


@FUZZ
@given(out_f=st.integers(1, 10**7), in_f=st.integers(4, 10**7))
def test_fuzz_claimed_sizes(tmp_path, worker, out_f, in_f):
    """A one-weight masked layer claiming random sizes: accepted exactly when within the
    bounds, refused with the bounds message otherwise, always under the memory limit."""
    if out_f * in_f <= 5:
        return
    path = tmp_path / "b.trace.safetensors"
    _bomb(path, out_f, in_f)
    got = _check(worker, path)
    within = out_f * in_f <= fmt.element_allowance(os.path.getsize(path))
    assert (got["status"] == "ok") == within, got
    if not within:
        assert "claims" in got["msg"] and "section 4.1" in got["msg"]


# ---------------------------------------------------------------- killed writer

_WRITER = """
import sys, numpy as np
sys.path.insert(0, {tests!r})
from test_traces_format import META, make_layers
from accelsim.traces.writer import write_trace
layers = [make_layers(np.random.default_rng(s), s=64, s_out=64) for s in (1, 2)]
print("ready", flush=True)
i = 0
while True:
    write_trace({path!r}, {{**META, "seed": i % 2}}, layers[i % 2])
    i += 1
"""


def test_killed_writer_leaves_a_whole_trace_or_nothing(tmp_path):
    """SIGKILL a writer that overwrites one trace in a loop, at random moments: the path always
    holds a trace that passes every check (or nothing yet), and the next write removes what the
    killed one left behind."""
    path = tmp_path / "k.trace.safetensors"
    rng = random.Random(0)
    seen = set()
    for trial in range(6):
        code = _WRITER.format(tests=str(Path(__file__).parent), path=str(path))
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        if path.exists():
            t = validate_trace(path)
            seen.add(t.meta["seed"])
        leftovers = [p for p in tmp_path.iterdir() if p.name != path.name]
        past = time.time() - 2 * STALE_AFTER_S  # accelsim.atomic's temp files: dead and old
        for p in leftovers:
            os.utime(p, (past, past))
        write_trace(path, META, make_layers(np.random.default_rng(0)))
        assert sorted(os.listdir(tmp_path)) == [path.name], leftovers
    assert seen  # at least one kill landed after a complete write


def test_stale_staging_of_a_dead_writer_is_removed_a_live_ones_kept(tmp_path):
    from accelsim.staging import _HOST

    path = tmp_path / "s.trace.safetensors"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".{path.name}.tmp-{dead}@{_HOST}-abc123"
    stale.mkdir()
    (stale / ".tmpQw3rTy").write_bytes(b"x" * 1000)  # safetensors' own temp file inside
    live = tmp_path / f".{path.name}.tmp-{os.getppid()}@{_HOST}-def456"
    live.mkdir()
    other = tmp_path / ".unrelated.tmp"
    other.write_bytes(b"z")
    write_trace(path, META, make_layers(np.random.default_rng(0)))
    assert sorted(os.listdir(tmp_path)) == sorted([path.name, live.name, other.name])
    open_trace(path)
