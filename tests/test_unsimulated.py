"""An honest total: every op of the forward pass is in the trace (layers, or unsimulated ops with
their operation counts), compute ops a trace cannot represent are refused by name or listed with
their MACs, the report says what share of the operations its cycles cover, and BatchNorm folds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from accelsim.errors import AccelsimError
from accelsim.traces.reader import open_trace, validate_trace
from accelsim.traces.recorder import record_trace

META = {"model": "toy", "method": "dense", "dataset": "random"}


class Mixed(nn.Module):
    """Module and functional ops of every category."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.norm = nn.LayerNorm(16)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(64, 5)

    def forward(self, x):
        y = self.bn(self.conv(x))
        y = F.relu(y) + y  # functional activation and a residual add
        y = self.pool(y)  # 4 x 4 x 4, 2x2 windows
        y = self.norm(y.flatten(2)).flatten(1)  # functional view: not a row
        y = F.avg_pool1d(y.unsqueeze(1), 2).squeeze(1).repeat(1, 2)  # 64 -> 32 -> 64
        return torch.softmax(self.fc(self.drop(y)), dim=1)


def _record(model, tmp_path, x=None, **kw):
    path = tmp_path / "t.trace.safetensors"
    x = torch.randn(3, *model.in_shape) if x is None else x
    record_trace(model, [x], path, META, **kw)
    return path


def _ops(path):
    return {op["name"]: op for op in open_trace(path).meta["unsimulated"]}


def test_every_op_is_listed_with_its_documented_count(tmp_path):
    torch.manual_seed(0)
    model = Mixed()
    model.in_shape = (2, 8, 8)
    path = _record(model, tmp_path)
    t = validate_trace(path)
    assert t.names == ["conv", "fc"]
    ops = _ops(path)
    n = 4 * 8 * 8
    expected = {  # name: (op, category, operations per sample, after how many layers)
        "bn": ("BatchNorm2d", "normalisation", 2 * n, 1),
        "relu": ("relu", "activation", n, 1),
        "add": ("add", "elementwise", n, 1),
        "pool": ("MaxPool2d", "pooling", (4 - 1) * n // 4, 1),
        "norm": ("LayerNorm", "normalisation", (5 + 2) * 64, 1),
        "avg_pool1d": ("avg_pool1d", "pooling", 2 * 32, 1),
        "drop": ("Dropout", "data movement", 0, 1),
        "softmax": ("softmax", "softmax", 5 * 5, 2),
    }
    assert {k: (v["op"], v["category"], v["ops"], v["after_layers"]) for k, v in ops.items()} \
        == expected
    assert [op["name"] for op in t.meta["unsimulated"]] == list(expected)  # execution order


def test_ops_on_weights_alone_are_not_per_inference(tmp_path):
    class WeightNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 3)
            self.g = nn.Parameter(torch.ones(3))

        def forward(self, x):
            scale = self.g / self.g.abs().sum()  # on parameters only: preprocessing
            return self.fc(x) * scale

    m = WeightNorm()
    m.in_shape = (6,)
    assert [(o["name"], o["ops"]) for o in _ops(_record(m, tmp_path)).values()] == [("mul", 3)]


class Seq(nn.Module):
    def __init__(self, body: nn.Module, in_shape):
        super().__init__()
        self.body, self.head, self.in_shape = body, nn.Linear(1, 2), in_shape

    def forward(self, x):
        y = self.body(x)
        y = y[0] if isinstance(y, tuple) else y
        return self.head(y.float().reshape(len(x), -1).mean(1, keepdim=True))


class Functional(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind, self.w = kind, nn.Parameter(torch.randn(4, 2, 3, 3))

    def forward(self, x):
        if self.kind == "conv2d":
            return F.conv2d(x, self.w, padding=1)
        return x.flatten(1) @ x.flatten(1).T  # an activation x activation product


CASES = [  # (module, input shape per sample, type named, MACs per sample)
    (nn.Conv1d(3, 5, 3), (3, 10), "Conv1d", 8 * 5 * 3 * 3),
    (nn.ConvTranspose2d(2, 3, 2, stride=2), (2, 4, 4), "ConvTranspose2d", 2 * 16 * 3 * 4),
    (nn.LSTM(4, 6, batch_first=True), (5, 4), "LSTM", 5 * 4 * 6 * (4 + 6)),
    (nn.MultiheadAttention(8, 2, batch_first=True), (3, 8), "MultiheadAttention",
     3 * 64 + 3 * 8 * 16 + 2 * 3 * 3 * 8 + 3 * 64),
    (nn.Embedding(10, 4), (), "Embedding", 0),
    (Functional("conv2d"), (2, 5, 5), "Functional", 4 * 25 * 2 * 9),
    (Functional("matmul"), (2, 2, 2), "Functional", 3 * 8),  # x @ x.T over 3 samples of 8
]


class Attn(nn.Module):
    def __init__(self, mha):
        super().__init__()
        self.mha = mha

    def forward(self, x):
        return self.mha(x, x, x)[0]


@pytest.mark.parametrize("module, shape, what, macs", CASES, ids=[c[2] + str(i) for i, c in enumerate(CASES)])
def test_unrepresentable_compute_is_an_error_naming_the_module_unless_allowed(tmp_path, module, shape,
                                                                              what, macs):
    torch.manual_seed(0)
    body = Attn(module) if isinstance(module, nn.MultiheadAttention) else module
    model = Seq(body, shape)
    x = torch.randint(0, 10, (3, 2)) if what == "Embedding" else torch.randn(3, *shape)
    name = "body.mha" if body is not module else "body"
    path = tmp_path / "t.trace.safetensors"
    with pytest.raises(AccelsimError, match=rf"module '{name}' \({what}\).*--allow-unsimulated"):
        record_trace(model, [x], path, META)
    assert not path.exists()
    record_trace(model, [x], path, META, allow_unsimulated=True)
    ops = _ops(path)
    row = ops[name]
    assert (row["op"], row["category"], row["macs"]) == (what, "compute", macs)
    assert row["ops"] >= 2 * macs


def test_report_rows_and_coverage(tmp_path):
    import accelsim

    torch.manual_seed(0)
    model = Seq(nn.Conv1d(3, 5, 3), (3, 10))
    path = tmp_path / "t.trace.safetensors"
    record_trace(model, [torch.randn(4, 3, 10)], path, META, allow_unsimulated=True)
    report = accelsim.simulate(str(path), arch="eie64")
    listed = open_trace(path).meta["unsimulated"]
    extra = report[~report["simulated"]]
    assert set(extra["layer"]) == {op["name"] for op in listed}
    assert (extra["cycles"] == 0).all() and (extra["energy_pj"] == 0).all()
    layer_ops = 2 * 2  # head: 1 -> 2, twice its MACs
    all_ops = layer_ops + sum(op["ops"] for op in listed)
    summary = accelsim.summary(report)
    assert summary["coverage_pct"].iloc[0] == pytest.approx(100 * layer_ops / all_ops)
    # the Conv1d's MACs are in every MAC total, counted as dense (no sparsity claimed)
    sparse = report[report["variant"] == "sparse"]
    assert sparse["dense_macs"].sum() == 2 + 8 * 5 * 3 * 3
    assert summary["mac_pct"].iloc[0] == pytest.approx(
        100 * sparse["effective_macs"].sum() / sparse["dense_macs"].sum())


def test_traces_without_the_list_have_unknown_coverage(tmp_path):
    import accelsim
    from accelsim.cli_sim import reference_traces

    trace = str(next(t for t in reference_traces() if "mlp3" in t.name))
    report = accelsim.simulate(trace, arch="eie64")
    assert report["simulated"].all() and not report["ops_listed"].any()
    assert math.isnan(accelsim.summary(report)["coverage_pct"].iloc[0])


def test_cli_and_html_show_the_unsimulated_rows_and_coverage(tmp_path, capsys):
    from accelsim.cli import main

    torch.manual_seed(0)
    model = Mixed()
    model.in_shape = (2, 8, 8)
    path = _record(model, tmp_path)
    html = tmp_path / "r.html"
    with pytest.raises(SystemExit) as info:
        main(["run", "--trace", str(path), "--html", str(html)])
    out = capsys.readouterr().out
    assert info.value.code == 0
    assert "│ bn " in out and "not simulated" in out
    layers = 2 * (4 * 64 * 2 * 9 + 64 * 5)
    listed = sum(op["ops"] for op in open_trace(path).meta["unsimulated"])
    assert (f"coverage of t.trace.safetensors: {100 * layers / (layers + listed):.1f}% of "
            f"{layers + listed:,} operations per inference") in out.replace("\n", " ")
    page = html.read_text()
    assert "coverage %" in page and "BatchNorm2d (normalisation) x1" in page
    with pytest.raises(SystemExit):
        main(["trace", "info", str(path)])
    info = capsys.readouterr().out
    assert (f"not simulated: 8 op(s) (BatchNorm2d x1, relu x1, add x1, MaxPool2d x1, LayerNorm x1, "
            f"avg_pool1d x1, Dropout x1, softmax x1); the layers hold "
            f"{100 * layers / (layers + listed):.1f}% of {layers + listed:,} operations") in info


def test_fold_batchnorm_keeps_the_outputs_and_removes_the_rows(tmp_path):
    import sys
    from pathlib import Path

    from accelsim.traces.foldbn import fold_batchnorm

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "examples"))
    from small_resnet import build_mnist_small

    torch.manual_seed(0)
    model = build_mnist_small()
    for m in model.modules():  # trained-looking statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    x = torch.randn(4, 1, 28, 28)
    plain = tmp_path / "plain.trace.safetensors"
    record_trace(model, [x], plain, META)
    with torch.no_grad():
        want = model.eval()(x)
    pairs = fold_batchnorm(model, x[:1])
    assert pairs == [("stem", "bn"), ("res.conv1", "res.bn1"), ("res.conv2", "res.bn2"),
                     ("sep.depthwise", "sep.bn1"), ("sep.pointwise", "sep.bn2")]
    with torch.no_grad():
        torch.testing.assert_close(model(x), want, rtol=1e-5, atol=1e-5)
    folded = tmp_path / "folded.trace.safetensors"
    record_trace(model, [x], folded, META)
    t = validate_trace(folded)  # the functional check recomputes the folded layers
    assert not any(op["op"].startswith("BatchNorm") for op in t.meta["unsimulated"])
    assert any(op["op"] == "BatchNorm2d" for op in open_trace(plain).meta["unsimulated"])
    np.testing.assert_allclose(t.layer("fc").outputs, want.numpy(), rtol=1e-5, atol=1e-5)
    # res.conv2's folded output is the unfolded res.bn2 output: the residual add reads it
    with torch.no_grad():
        ref = model.res.conv2(model.res.relu1(model.res.conv1(model.pool(model.relu(model.stem(x))))))
    np.testing.assert_allclose(t.layer("res.conv2").outputs, ref.numpy(), rtol=1e-5, atol=1e-5)


def test_fold_batchnorm_leaves_a_layer_output_read_twice():
    from accelsim.traces.foldbn import foldable_pairs

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.bn, self.out = nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)

        def forward(self, x):
            y = self.fc(x)
            return self.out(self.bn(y) + y)

    assert foldable_pairs(Twice(), torch.randn(2, 4)) == []


def test_a_mask_carried_through_leaky_relu_validates_and_a_tampered_one_does_not(tmp_path):
    from accelsim.models.masks import ActivationMask
    from accelsim.traces.writer import write_trace

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.mask = nn.Conv2d(1, 3, 3), ActivationMask("topk", 0.4)
            self.act, self.pool, self.fc = nn.LeakyReLU(0.2), nn.MaxPool2d(3, 2, 1, ceil_mode=True), nn.Linear(27, 2)

        def forward(self, x):
            return self.fc(self.pool(self.act(self.mask(self.conv(x)))).flatten(1))

    torch.manual_seed(0)
    path = tmp_path / "m.trace.safetensors"
    record_trace(Net(), [torch.randn(5, 1, 7, 7)], path, META)
    fc = validate_trace(path).layer("fc")
    assert [op["op"] for op in fc.mask_params.carried] == ["leaky_relu", "max_pool2d"]
    assert fc.premask.shape == (3, 5, 5)
    t = open_trace(path)
    layers = [t.layer(i) for i in range(len(t))]
    pre = layers[1].premask  # the top-k unit's operand, signs flipped: the relation breaks
    layers[1].premask = type(pre)(pre.shape, pre.indptr, pre.indices, -pre.values)
    with pytest.raises(AccelsimError, match="not the masked premask carried through leaky_relu, "
                                            "max_pool2d"):
        write_trace(tmp_path / "bad.trace.safetensors", dict(t.meta), layers)


CONV1D_MODEL = '''
from torch import nn


class RowConv(nn.Module):
    """Each image row as a sequence: a Conv1d the trace cannot represent, then a Linear."""

    def __init__(self):
        super().__init__()
        self.rows = nn.Conv1d(28, 4, 3)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4 * 26, 10)

    def forward(self, x):
        return self.fc(self.act(self.rows(x.flatten(1, 2))).flatten(1))


def build():
    return RowConv()
'''


def test_trace_record_refuses_a_conv1d_by_name_unless_allowed(tmp_path, capsys):
    """CLI end to end: exit 2, one line naming the module and its type, nothing written; with
    --allow-unsimulated the Conv1d is a not-simulated row whose MACs every total carries."""
    from accelsim.cli import main
    from accelsim.models.data import load_dataset

    try:
        load_dataset("mnist", "test")
    except AccelsimError as exc:
        pytest.skip(f"MNIST not found: {exc}")

    def cli(*args):
        with pytest.raises(SystemExit) as info:
            main(list(args))
        out = capsys.readouterr()
        return info.value.code, out.out, out.err

    (tmp_path / "rowconv.py").write_text(CONV1D_MODEL)
    model = f"{tmp_path / 'rowconv.py'}:build"
    code, _, err = cli("train", "--model", model, "--dataset", "mnist", "--epochs", "1",
                       "--limit-train", "64", "--limit-test", "10", "--no-progress",
                       "--threads", "1", "--mask-before", "fc", "--out", str(tmp_path / "run"))
    assert code == 0, err
    trace = tmp_path / "t.trace.safetensors"
    code, out, err = cli("trace", "record", "--checkpoint", str(tmp_path / "run"), "--samples",
                         "4", "--out", str(trace))
    assert code == 2 and not trace.exists()
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert err.startswith("error: module 'rows' (Conv1d): a compute op the trace cannot represent")
    code, out, err = cli("trace", "record", "--checkpoint", str(tmp_path / "run"), "--samples",
                         "4", "--allow-unsimulated", "--out", str(trace))
    assert code == 0, err
    rows = _ops(trace)["rows"]
    assert (rows["op"], rows["category"], rows["macs"]) == ("Conv1d", "compute", 26 * 4 * 28 * 3)
    code, out, err = cli("run", "--trace", str(trace), "--out", str(tmp_path / "r.csv"))
    assert code == 0, err
    fc_ops, conv_ops = 2 * 104 * 10, 2 * 26 * 4 * 28 * 3
    total = fc_ops + sum(op["ops"] for op in open_trace(trace).meta["unsimulated"])
    assert f"coverage of t.trace.safetensors: {100 * fc_ops / total:.1f}%" in out.replace("\n", " ")
    assert total > fc_ops + conv_ops - 1
