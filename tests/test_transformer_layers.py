"""Transformer layers: token_linear and matmul (attention's activation x activation products).

The trace carries them (format, validation, functional recompute), the recorder makes them from
any module that runs Linear on (batch, tokens, features) and the zoo's ActivationProduct, and
every array runs them with the same cycles on its fast kernel and its per-cycle reference. The
mapping itself (tokens one after the other; a matmul's second operand as the stationary weight
loaded before each head) is checked against layers built here by hand, without
accelsim.lowering.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accelsim import dataflows
from accelsim.arch import load_arch
from accelsim.errors import AccelsimError
from accelsim.traces import validate_trace, write_trace
from accelsim.traces.info import layer_stats
from accelsim.traces.schema import LayerGeometry, LayerRecord, SparseBatch

SMALL = {
    "eie64": ["eie.num_pes=3", "eie.fifo_depth=2"],
    "cnvlutin": ["cnvlutin.units=2", "cnvlutin.lanes=3", "cnvlutin.filters_per_unit=2",
                 "cnvlutin.brick_size=2"],
    "systolic-os": ["systolic.rows=3", "systolic.cols=2"],
    "systolic-ws": ["systolic.rows=2", "systolic.cols=3"],
    "systolic-is": ["systolic.rows=3", "systolic.cols=3"],
    "scnn": ["scnn.pe_rows=2", "scnn.pe_cols=2", "scnn.weight_vector=2", "scnn.act_vector=3",
             "scnn.banks=3"],
}
MODES = {"eie64": [("skip", "skip"), ("gate", "gate"), ("none", "none"), ("skip", "none")],
         "cnvlutin": [("skip", "gate"), ("gate", "none"), ("none", "none")],
         "systolic-os": [("gate", "gate"), ("none", "none")],
         "systolic-ws": [("none", "gate")], "systolic-is": [("gate", "none")],
         "scnn": [("skip", "skip"), ("gate", "none"), ("none", "none")]}


def _sparse(rng, shape, density):
    x = rng.standard_normal(shape) * (rng.random(shape) < density)
    return x.astype(np.float32)


def token_layer(rng, s, t, f, m, density=0.5, wdensity=0.6, bias=True, name="tok"):
    x = _sparse(rng, (s, t, f), density)
    w = _sparse(rng, (m, f), wdensity)
    b = rng.standard_normal(m).astype(np.float32) if bias else None
    out = (x @ w.T + (0 if b is None else b)).astype(np.float32)
    geo = LayerGeometry(name, "token_linear", (t, f), (t, m), has_bias=bias)
    return LayerRecord(geo, w, None, b, SparseBatch.from_dense(x), outputs=out)


def matmul_layer(rng, s, h, t, k, n, density=0.6, odensity=0.6, name="mm"):
    a = _sparse(rng, (s, h, t, k), density)
    b = _sparse(rng, (s, h, k, n), odensity)
    geo = LayerGeometry(name, "matmul", (h, t, k), (h, t, n))
    return LayerRecord(geo, None, None, None, SparseBatch.from_dense(a),
                       outputs=np.matmul(a, b).astype(np.float32), operand=SparseBatch.from_dense(b))


# ------------------------------------------------------------------ format


def test_token_linear_and_matmul_round_trip_and_validate(tmp_path):
    rng = np.random.default_rng(0)
    layers = [token_layer(rng, 3, 4, 5, 6), matmul_layer(rng, 3, 2, 4, 3, 5)]
    path = tmp_path / "t.trace.safetensors"
    write_trace(path, {"model": "m", "method": "dense", "dataset": "random"}, layers)
    trace = validate_trace(path)  # loads every layer and recomputes the outputs
    tok, mm = trace.layer(0), trace.layer(1)
    assert [g.kind for g in trace.geometries] == ["token_linear", "matmul"]
    assert mm.weight is None and mm.operand.shape == (2, 3, 5)
    assert np.array_equal(mm.operand.to_dense(), layers[1].operand.to_dense())
    assert np.array_equal(tok.inputs.to_dense(), layers[0].inputs.to_dense())
    # exact effective MACs: non-zero x non-zero pairs, counted here the slow way
    a, b = layers[1].inputs.to_dense() != 0, layers[1].operand.to_dense() != 0
    pairs = np.einsum("shtk,shkn->s", a.astype(int), b.astype(int))
    assert layer_stats(mm)["effective_macs"] == pytest.approx(pairs.mean())
    assert layer_stats(mm)["dense_macs"] == 2 * 4 * 3 * 5
    x, w = layers[0].inputs.to_dense() != 0, layers[0].weight != 0
    assert layer_stats(tok)["effective_macs"] == pytest.approx(
        np.einsum("stf,mf->s", x.astype(int), w.astype(int)).mean())


def test_validate_catches_a_matmul_operand_that_does_not_explain_the_outputs(tmp_path):
    rng = np.random.default_rng(1)
    layer = matmul_layer(rng, 2, 2, 3, 4, 3, density=1.0, odensity=1.0)
    bad = LayerRecord(layer.geometry, None, None, None, layer.inputs, outputs=layer.outputs,
                      operand=SparseBatch.from_dense(2 * layer.operand.to_dense()))
    path = tmp_path / "bad.trace.safetensors"
    write_trace(path, {"model": "m", "method": "dense", "dataset": "random"}, [bad])
    with pytest.raises(AccelsimError, match=r"layer 0 \(mm\): functional check failed"):
        validate_trace(path)


@pytest.mark.parametrize("change, message", [
    (dict(has_bias=True), "matmul layer has no bias"),
    (dict(out_shape=(2, 4, 3)), "keeps its leading dimensions"),
    (dict(in_shape=(3, 4)), "matmul layer needs 3-d in/out shapes"),
])
def test_bad_transformer_geometry_is_one_line(tmp_path, change, message):
    import dataclasses

    rng = np.random.default_rng(2)
    layer = matmul_layer(rng, 1, 2, 3, 4, 3)
    layer.geometry = dataclasses.replace(layer.geometry, **change)
    with pytest.raises(AccelsimError, match=message):
        write_trace(tmp_path / "x.trace.safetensors", {"model": "m", "method": "d", "dataset": "r"},
                    [layer])


# ------------------------------------------------------------------ arrays: kernel = reference


@st.composite
def transformer_layers(draw):
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    s = draw(st.integers(1, 2))
    dens = draw(st.sampled_from([0.0, 0.3, 0.7, 1.0]))
    if draw(st.booleans()):
        return token_layer(rng, s, draw(st.integers(1, 4)), draw(st.integers(1, 9)),
                           draw(st.integers(1, 7)), density=dens, bias=draw(st.booleans()))
    return matmul_layer(rng, s, draw(st.integers(1, 2)), draw(st.integers(1, 4)),
                        draw(st.integers(1, 6)), draw(st.integers(1, 5)), density=dens)


@pytest.mark.parametrize("preset", sorted(SMALL))
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(layer=transformer_layers())
def test_fast_kernel_equals_per_cycle_reference_on_transformer_layers(preset, layer):
    base = load_arch(preset, SMALL[preset])
    flow = dataflows.get(base.arch.dataflow)
    for act, wgt in MODES[preset]:
        arch = base.with_sparsity(act, wgt)
        fast = flow.run(layer, arch, functional=True)
        slow = flow.run(layer, arch, functional=True, reference=True)
        assert np.array_equal(fast.cycles, slow.cycles), (act, wgt)
        shared = set(fast.counters) & set(slow.counters)  # the systolic reference counts no idling
        assert {"cycles", "mac", "weight_read", "act_read"} <= shared
        if layer.geometry.kind == "matmul":  # every stored entry of the operand is written
            assert fast.counter("weight_write") >= layer.operand.values.size
        else:
            assert fast.counter("weight_write") == 0
        for name in shared:
            assert fast.counter(name) == slow.counter(name), (name, act, wgt)
        np.testing.assert_allclose(fast.outputs, layer.outputs, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(slow.outputs, layer.outputs, rtol=1e-4, atol=1e-4)
        units = fast.num_units
        pe = sum(fast.counter(c) for c in ("busy_pe_cycles", "starve_pe_cycles",
                                           "tail_pe_cycles", "empty_pe_cycles"))
        assert pe == units * int(fast.cycles.sum())


# ------------------------------------------------------------------ the mapping, by hand


def _linear(name, weight, rows):
    """A plain linear layer: `rows` (R, K) are R samples."""
    geo = LayerGeometry(name, "linear", (weight.shape[1],), (weight.shape[0],))
    return LayerRecord(geo, weight, None, None, SparseBatch.from_dense(rows))


def _eie_entries(weight, num_pes, index_bits):
    """Stored entries per PE of a (rows, columns) weight in EIE's interleaved CSC, written out:
    row r in PE r mod N; per column, each non-zero stores the zeros since the previous one and a
    padding entry is added per 2^b zeros."""
    per_pe = [0] * num_pes
    for p in range(num_pes):
        for col in range(weight.shape[1]):
            zeros = 0
            for r in range(p, weight.shape[0], num_pes):
                if weight[r, col] != 0:
                    per_pe[p] += 1 + zeros // (2 ** index_bits)
                    zeros = 0
                else:
                    zeros += 1
    return per_pe


def test_eie_runs_tokens_one_after_the_other_and_loads_each_heads_operand_first():
    from accelsim.dataflows.eie.reference import simulate_eie_reference

    rng = np.random.default_rng(5)
    arch = load_arch("eie64", ["eie.num_pes=4", "eie.fifo_depth=2"])
    kw = dict(num_pes=4, fifo_depth=2, index_bits=4, empty_slice_cycles=1, act_mode="skip",
              weight_mode="skip", queue="hold")
    flow = dataflows.get("eie")
    tok = token_layer(rng, 2, 3, 7, 9, density=0.5, bias=False)
    got = flow.run(tok, arch, functional=False).cycles
    x = tok.inputs.to_dense()
    for s in range(2):
        per_token = [simulate_eie_reference(_linear("t", tok.weight, x[s, t:t + 1]), **kw)["cycles_per_sample"][0]
                     for t in range(3)]
        assert got[s] == sum(per_token)
    mm = matmul_layer(rng, 2, 2, 3, 5, 6, odensity=0.4)
    got = flow.run(mm, arch, functional=False).cycles
    a, b = mm.inputs.to_dense(), mm.operand.to_dense()
    for s in range(2):
        want = 0
        for h in range(2):
            weight = np.ascontiguousarray(b[s, h].T)  # the keys / values as rows of a weight
            want += max(_eie_entries(weight, 4, 4))  # every PE writes its own entries
            want += int(np.asarray(simulate_eie_reference(_linear("h", weight, a[s, h]), **kw)["cycles_per_sample"]).sum())
        assert got[s] == want


def test_cnvlutin_runs_tokens_as_positions_of_a_one_by_one_convolution():
    from accelsim.dataflows.cnvlutin.reference import simulate_cnvlutin_reference

    rng = np.random.default_rng(6)
    arch = load_arch("cnvlutin", SMALL["cnvlutin"]).with_sparsity("skip", "gate")
    tok = token_layer(rng, 2, 5, 7, 9, density=0.5, bias=False)
    x = tok.inputs.to_dense()  # (S, T, F) -> (S, F, T, 1)
    geo = LayerGeometry("c", "conv2d", (7, 5, 1), (9, 5, 1))
    conv = LayerRecord(geo, tok.weight.reshape(9, 7, 1, 1), None, None,
                       SparseBatch.from_dense(x.transpose(0, 2, 1)[..., None]))
    want = simulate_cnvlutin_reference(conv, units=2, lanes=3, filters_per_unit=2, brick_size=2,
                                       act_mode="skip", weight_mode="gate")
    got = dataflows.get("cnvlutin").run(tok, arch, functional=False)
    assert np.array_equal(got.cycles, want.cycles) and got.counters == want.counters


# ------------------------------------------------------------------ recorder and replay


def test_a_small_vit_records_replays_and_passes_the_functional_check(tmp_path):
    import torch

    import accelsim
    from accelsim.models import zoo
    from accelsim.traces.recorder import record_trace

    torch.manual_seed(0)
    model = zoo.build("vit", dim=8, depth=1, heads=2, mlp_ratio=2, patch=14)
    zoo.set_winner_rates(model, {"blocks.0.fc2": 0.25})
    path = tmp_path / "vit.trace.safetensors"
    x = torch.randn(2, 1, 28, 28)
    record_trace(model, [x], path, {"model": "vit", "method": "jp", "dataset": "random"})
    trace = validate_trace(path)
    assert [(g.name, g.kind) for g in trace.geometries] == [
        ("patch", "conv2d"), ("blocks.0.attn.q", "token_linear"), ("blocks.0.attn.k", "token_linear"),
        ("blocks.0.attn.v", "token_linear"), ("blocks.0.attn.scores", "matmul"),
        ("blocks.0.attn.context", "matmul"), ("blocks.0.attn.proj", "token_linear"),
        ("blocks.0.fc1", "token_linear"), ("blocks.0.fc2", "token_linear"), ("head", "linear")]
    scores = trace.layer("blocks.0.attn.scores")
    assert scores.geometry.in_shape == (2, 4, 4) and scores.geometry.out_shape == (2, 4, 4)
    # the stationary operand of the scores is K^T: the k projection's output, per head
    k = trace.layer("blocks.0.attn.k").outputs.reshape(2, 4, 2, 4).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(scores.operand.to_dense(), k, rtol=1e-6)
    fc2 = trace.layer("blocks.0.fc2")
    assert fc2.mask_params.scheme == "topk" and (fc2.act_mask.nnz_per_sample() == 16).all()
    for arch in ("eie64", "cnvlutin", "systolic-os", "scnn"):
        report = accelsim.simulate(str(path), arch=arch)  # raises if the outputs disagree
        # LayerNorm, softmax, GELU and the adds are listed as not simulated
        assert set(report["kind"]) == {"conv2d", "token_linear", "matmul", "linear", "unsimulated"}
        sparse = report[report["variant"] == "sparse"]
        assert (sparse.loc[sparse["kind"] == "matmul", "events_weight_write"] > 0).all()
