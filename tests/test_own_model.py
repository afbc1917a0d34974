"""A researcher's own network (docs/own-model.md): masks attached by name or type, dense -> JP
through the CLI, checkpoints rebuilt from file + factory, traces replayed; one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from accelsim.cli import main
from accelsim.errors import AccelsimError
from accelsim.models import usermodel as U

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "small_resnet.py"
SMALL = f"{EXAMPLE}:build_mnist_small"


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def _small():
    return U.load_factory(SMALL)[0]


def test_mask_locations_by_type_and_name_in_execution_order():
    m = _small()
    locs = U.resolve_locations(m, (1, 28, 28), before=nn.Conv2d)
    assert locs["before"] == ["res.conv1", "res.conv2", "sep.depthwise", "sep.pointwise"]  # not stem
    locs = U.resolve_locations(m, (1, 28, 28), after="ReLU")
    assert locs["after"] == ["relu", "res.relu1", "res.relu2", "sep.relu1"]  # the last is left out
    assert U.resolve_locations(m, (1, 28, 28), after="ReLU", skip_last=False)["after"][-1] == \
        "sep.relu2"
    assert U.resolve_locations(m, (1, 28, 28), before="stem")["before"] == ["stem"]  # by name


def test_attached_masks_do_what_the_zoo_masks_do():
    m = _small()
    masks = U.attach_masks(m, (1, 28, 28), after="res.relu1")
    assert list(masks) == ["res.relu1"] and m.mask_map == {"res.relu1": "res.relu1.out_mask"}
    assert "res.relu1.out_mask" not in "".join(m.state_dict())  # no parameters, no buffers
    seen = {}
    m.res.conv2.register_forward_pre_hook(lambda mod, args: seen.update(x=args[0]))
    masks["res.relu1"].configure("topk", 0.1)
    m.eval()
    m(torch.randn(3, 1, 28, 28))
    n = seen["x"][0].numel()
    assert [int((s != 0).sum()) <= round(0.1 * n) for s in seen["x"]] == [True] * 3


def test_a_module_run_twice_cannot_take_one_mask():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.act = nn.Linear(4, 4), nn.Linear(4, 2), nn.ReLU()

        def forward(self, x):
            return self.fc2(self.act(self.fc1(self.act(x))))

    with pytest.raises(AccelsimError, match="'act' runs 2 times"):
        U.resolve_locations(Twice(), (4,), after="act")
    with pytest.raises(AccelsimError, match="matches no module"):
        U.resolve_locations(Twice(), (4,), after="GELU")


def test_recorder_carries_a_mask_through_max_pool_or_names_where_it_stops(tmp_path):
    from accelsim.traces.reader import validate_trace
    from accelsim.traces.recorder import TraceRecorder

    m = _small()
    masks = U.attach_masks(m, (1, 28, 28), after=["relu", "res.bn2"])
    masks["relu"].configure("topk", 0.5)  # relu -> max-pool -> res.conv1 (and the residual add)
    x = torch.randn(3, 1, 28, 28)
    with TraceRecorder(m) as rec:
        m(x)
    # res.bn2's mask feeds the residual add: zeros do not survive an add, so it reaches no layer
    masks["res.bn2"].configure("topk", 0.5)
    with pytest.raises(AccelsimError, match=r"'res.bn2.out_mask' reaches no Conv2d/Linear: its "
                                            r"zeros stop at add in 'res'"):
        with TraceRecorder(m) as rec2:
            m(x)
        rec2.records()
    path = tmp_path / "carried.trace.safetensors"
    rec.write(path, {"model": "small", "method": "jp", "dataset": "random"})
    conv1 = validate_trace(path).layer("res.conv1")
    mp = conv1.mask_params
    assert mp.shape == (8, 28, 28) and [op["op"] for op in mp.carried] == ["max_pool2d"]
    # the top-k unit's operand: the ReLU map the mask saw, half of it kept per sample
    assert conv1.premask.shape == (8, 28, 28)
    np.testing.assert_array_equal(conv1.act_mask.nnz_per_sample(), np.full(3, 8 * 28 * 28 // 2))
    # the consumer's operand: the max-pool of the masked map, exactly what the network fed it
    with torch.no_grad():
        y = m.eval().pool(m.relu(m.bn(m.stem(x))))  # m.relu's hook applies its mask
    np.testing.assert_array_equal(conv1.inputs.to_dense(), y.numpy())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """dense -> jp of the small example through `accelsim train`, on few MNIST images."""
    from accelsim.models.data import load_dataset

    try:
        load_dataset("mnist", "test")
    except AccelsimError as exc:
        pytest.skip(f"MNIST not found: {exc}")
    d = tmp_path_factory.mktemp("own")
    common = ["--model", SMALL, "--dataset", "mnist", "--limit-train", "256", "--limit-test",
              "100", "--no-progress", "--threads", "1"]
    for args in (["--epochs", "1", "--out", str(d / "dense")],
                 ["--method", "jp", "--recipe", "quick", "--from", str(d / "dense"),
                  "--winner-rates", '{"res.conv2": 0.2, "fc": 0.5}', "--weight-density", "0.5",
                  "--out", str(d / "jp")]):
        with pytest.raises(SystemExit) as e:
            main(["train", *common, *args])
        assert e.value.code == 0
    return d


def test_checkpoint_records_the_source_and_rebuilds_the_same_network(runs):
    from accelsim.models.checkpoint import load_checkpoint

    info = json.loads((runs / "jp" / "checkpoint" / "checkpoint.json").read_text())
    assert info["model"] == "small_resnet.py:build_mnist_small" and info["dataset"] == "mnist"
    assert info["source"] == {"file": str(EXAMPLE), "factory": "build_mnist_small",
                              "sha256": U.file_sha256(EXAMPLE)}
    assert info["mask_locations"]["before"][0] == "res.conv1"
    assert info["activation_masks"]["res.conv2"]["winner_rate"] == 0.2
    assert info["activation_masks"]["res.conv1"]["scheme"] == "off"  # not named: left off
    assert {v["weight_density"] for v in info["layers"].values()} == {0.5}
    model, _ = load_checkpoint(runs / "jp")
    again, _ = load_checkpoint(runs / "jp")
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(model(x), again(x))
    assert model.res.conv2.in_mask.scheme == "topk" and model.res.conv2.in_mask.winner_rate == 0.2


def test_rerunning_a_finished_run_reports_it_complete(runs, capsys):
    code, out, _ = run_cli(capsys, "train", "--model", SMALL, "--dataset", "mnist",
                           "--limit-train", "256", "--limit-test", "100", "--no-progress",
                           "--threads", "1", "--epochs", "1", "--out", str(runs / "dense"))
    assert code == 0 and "already complete" in out


def test_trace_record_and_run_on_an_own_model(runs, capsys, tmp_path):
    from accelsim.traces.reader import open_trace

    trace = tmp_path / "jp.trace.safetensors"
    code, out, err = run_cli(capsys, "trace", "record", "--checkpoint", str(runs / "jp"),
                             "--samples", "8", "--out", str(trace))
    assert code == 0, err
    t = open_trace(str(trace))
    names = list(t.names)
    assert names == ["stem", "res.conv1", "res.conv2", "sep.depthwise", "sep.pointwise", "fc"]
    masked = t.layer("res.conv2")
    assert masked.mask_params.winner_rate == 0.2 and masked.geometry.kind == "conv2d"
    assert t.layer("sep.depthwise").geometry.groups == 8  # depthwise: one group per channel
    code, out, err = run_cli(capsys, "run", "--trace", str(trace), "--out",
                             str(tmp_path / "r.csv"))
    assert code == 0, err
    import pandas as pd

    rep = pd.read_csv(tmp_path / "r.csv")
    assert set(rep.loc[rep["simulated"], "layer"]) == set(names)
    listed = {op["name"]: op["op"] for op in t.meta["unsimulated"]}
    assert listed["res.bn1"] == "BatchNorm2d" and listed["res.add"] == "add"
    assert set(rep.loc[~rep["simulated"], "layer"]) == set(listed)
    # --fold-batchnorm: the BatchNorm rows go, the folded trace passes the functional check
    folded = tmp_path / "folded.trace.safetensors"
    code, out, err = run_cli(capsys, "trace", "record", "--checkpoint", str(runs / "jp"),
                             "--samples", "8", "--fold-batchnorm", "--out", str(folded))
    assert code == 0 and "folded 5 BatchNorm layer(s)" in out, err
    assert run_cli(capsys, "trace", "validate", str(folded))[0] == 0
    ft = open_trace(str(folded))
    assert not any(op["op"] == "BatchNorm2d" for op in ft.meta["unsimulated"])
    assert ft.meta["accuracy"] == t.meta["accuracy"]


def test_sweeps_work_on_an_own_checkpoint(runs, capsys, tmp_path):
    code, _, err = run_cli(capsys, "sweep", "winner-rates", "--checkpoint", str(runs / "dense"),
                           "--limit", "50", "--rates", "0.2,1", "--layer", "fc", "--out",
                           str(tmp_path / "wr.csv"), "--no-progress")
    assert code == 0, err
    code, out, err = run_cli(capsys, "sweep", "choose", "--sweep", str(tmp_path / "wr.csv"),
                             "--budget", "1")
    assert code == 0 and set(json.loads(out[out.index("{"):])) == {"fc"}


@pytest.mark.parametrize("model, extra, words", [
    ("missing.py:build", [], "missing.py: model file does not exist"),
    (f"{EXAMPLE}:nope", [], "no factory function 'nope'"),
    ("BAD:raises", [], "the factory raised ValueError: boom"),
    ("BAD:not_a_module", [], "returned a value of type int, not a torch.nn.Module"),
    ("BAD:wrong_input", [], "does not take the data set's input shape (1, 28, 28)"),
    (SMALL, ["--mask-after", "GELU"], "mask location after='GELU' matches no module"),
])
def test_bad_own_models_give_one_line_and_write_nothing(model, extra, words, tmp_path, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\n"
                   "def raises():\n    raise ValueError('boom')\n"
                   "def not_a_module():\n    return 3\n"
                   "def wrong_input():\n    return torch.nn.Linear(10, 10)\n")
    model = model.replace("BAD", str(bad))
    code, out, err = run_cli(capsys, "train", "--model", model, "--dataset", "mnist",
                             "--out", str(tmp_path / "run"), "--no-progress", *extra)
    assert code == 2 and words in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_train_model_from_dataloaders_resumes_exactly(tmp_path):
    """The Python API on the researcher's own DataLoader: an interrupted run continued by the
    same call ends with the weights of an uninterrupted one."""
    from torch.utils.data import DataLoader, TensorDataset

    from accelsim.models.checkpoint import load_checkpoint
    from accelsim.models.own import train_model

    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(48, 1, 28, 28, generator=g), torch.randint(0, 10, (48,), generator=g))
    train, test = DataLoader(data, batch_size=16, shuffle=True), DataLoader(data, batch_size=48)
    kw = dict(method="jp", recipe="quick", winner_rate=0.25, weight_density=0.5,
              progress=False, threads=1)
    full = train_model(SMALL, tmp_path / "a", train, test, epochs=2, **kw)
    train_model(SMALL, tmp_path / "b", train, test, epochs=1, **kw)
    again = train_model(SMALL, tmp_path / "b", train, test, epochs=2, **kw)
    assert again["epochs"] == full["epochs"] == {"done": 2, "planned": 2}
    assert full["input_shape"] == [1, 28, 28] and "dataset" not in full
    ma, _ = load_checkpoint(tmp_path / "a")
    mb, _ = load_checkpoint(tmp_path / "b")
    for (n, ta), (_, tb) in zip(ma.state_dict().items(), mb.state_dict().items()):
        assert torch.equal(ta, tb), n
    assert ma.fc.in_mask.winner_rate == 0.25
    # quick JP prunes in rounds at epochs 1 and 2; after epoch 2 one round of two: 0.5 ** (1/2)
    assert abs(float(ma.fc.weight_mask.float().mean()) - 0.5 ** 0.5) < 0.01
