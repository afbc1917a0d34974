"""The training loop on real MNIST subsets: learns, resumes exactly, prunes to the targets."""

import json
from dataclasses import replace

import pytest
import torch

from accelsim.errors import AccelsimError
from accelsim.models import checkpoint as C
from accelsim.models import zoo
from accelsim.models.recipes import GRegParams, get_recipe
from accelsim.models.train import train


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    from accelsim.models.data import load_dataset

    tr, te = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    return tr.subset(range(1280)), te.subset(range(500))


@pytest.fixture(scope="module")
def dense_ckpt(mnist, tmp_path_factory):
    out = tmp_path_factory.mktemp("dense")
    rec = replace(get_recipe("mlp3", "dense", "quick"), batch_size=32)
    info = train("mlp3", "dense", out, recipe=rec, epochs=3, train_set=mnist[0],
                 test_set=mnist[1], progress=False)
    return out, info


def test_short_dense_run_learns(dense_ckpt):
    out, info = dense_ckpt
    h = info["metrics"]["history"]
    assert [e["epoch"] for e in h] == [1, 2, 3]
    assert h[-1]["train_loss"] < 0.6 * h[0]["train_loss"]
    acc = info["metrics"]["accuracy"]
    assert acc["num_samples"] == 500 and acc["split"] == "test"
    assert acc["value"] > 0.8  # chance is 0.1
    model, meta = C.load_checkpoint(out)
    assert meta["method"] == "dense" and meta["epochs"] == {"done": 3, "planned": 3}


def test_resume_continues_exactly(mnist, tmp_path):
    kw = dict(recipe="quick", train_set=mnist[0], test_set=mnist[1], progress=False, seed=5)
    train("mlp3", "dense", tmp_path / "a", epochs=2, **kw)
    train("mlp3", "dense", tmp_path / "b", epochs=1, **kw)
    info_b = train("mlp3", "dense", tmp_path / "b", epochs=2, **kw)  # same command continues
    assert [e["epoch"] for e in info_b["metrics"]["history"]] == [1, 2]
    ma, _ = C.load_checkpoint(tmp_path / "a")
    mb, _ = C.load_checkpoint(tmp_path / "b")
    for (n, ta), (_, tb) in zip(ma.state_dict().items(), mb.state_dict().items()):
        assert torch.equal(ta, tb), n
    msgs = []
    again = train("mlp3", "dense", tmp_path / "b", epochs=2, echo=msgs.append, **kw)
    assert any("already complete" in m for m in msgs) and again["epochs"]["done"] == 2
    with pytest.raises(AccelsimError, match="holds a different run"):
        train("mlp3", "dense", tmp_path / "b", epochs=3, **{**kw, "seed": 6})


def _density(info):
    return {n: round(v["weight_density"], 4) for n, v in info["layers"].items()}


def test_jp_reaches_targets_and_records_a_trace(mnist, dense_ckpt, tmp_path):
    info = train("mlp3", "jp", tmp_path / "jp", recipe="quick", from_checkpoint=dense_ckpt[0],
                 train_set=mnist[0], test_set=mnist[1], progress=False)
    assert _density(info) == {"fc1": 0.12, "fc2": 0.11, "fc3": 0.2}
    assert info["activation_masks"]["fc2"]["winner_rate"] == 0.12
    assert info["from"]["method"] == "dense"
    assert [h["optimizer"] for h in info["metrics"]["history"]] == ["sgd", "adadelta", "adadelta"]
    assert info["metrics"]["accuracy"]["value"] > 0.6
    model, _ = C.load_checkpoint(tmp_path / "jp")
    masks = zoo.activation_masks(model)
    masks["fc3"].keep_last = True
    model(torch.randn(3, 1, 28, 28))
    assert masks["fc3"].last_mask.sum(1).tolist() == [24, 24, 24]

    from accelsim.models.record import record_checkpoint
    from accelsim.traces.reader import open_trace

    meta = record_checkpoint(tmp_path / "jp", 20, tmp_path / "jp.trace.safetensors",
                             output_samples=5, command=["test"])
    assert info["input_normalization"] == {"mean": [0.0], "std": [1.0], "input_size": [28, 28]}
    tr = open_trace(tmp_path / "jp.trace.safetensors")
    assert tr.meta["method"] == "jp" and tr.meta["sample_indices"] == list(range(20))
    assert tr.meta["accuracy"]["num_samples"] == 20 == meta["accuracy"]["num_samples"]
    fc2 = tr.layer("fc2")
    assert fc2.weight_mask is not None and fc2.weight_mask.mean() == pytest.approx(0.11)
    assert (fc2.inputs.nnz_per_sample() <= 36).all()
    # a checkpoint made with other preprocessing is flagged when recorded
    import json

    path = tmp_path / "jp" / "checkpoint" / "checkpoint.json"
    meta = json.loads(path.read_text())
    meta["input_normalization"]["mean"] = [0.1307]
    path.write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="trained with input mean/std"):
        record_checkpoint(tmp_path / "jp", 5, tmp_path / "jp2.trace.safetensors")


def test_jp_adds_mlp3_input_threshold_to_a_dense_checkpoint(mnist, dense_ckpt, tmp_path):
    from accelsim.models.recipes import mlp3_tradeoff_recipe
    from accelsim.models.record import record_checkpoint
    from accelsim.traces.reader import open_trace

    rec = mlp3_tradeoff_recipe("jp-fc1-06-in50")
    quick = replace(get_recipe("mlp3", "jp", "quick"), jp=rec.jp, prune=replace(
        rec.prune, prune_epochs=(1, 2)), model_kwargs=rec.model_kwargs)
    info = train("mlp3", "jp", tmp_path / "jp", recipe=quick, from_checkpoint=dense_ckpt[0],
                 train_set=mnist[0], test_set=mnist[1], progress=False)
    assert info["model_kwargs"] == {"input_mask": True}
    assert _density(info) == {"fc1": 0.06, "fc2": 0.1, "fc3": 0.2}
    assert info["activation_masks"]["fc1"]["threshold"] == 0.5
    record_checkpoint(tmp_path / "jp", 10, tmp_path / "t.trace.safetensors", command=["test"])
    fc1 = open_trace(tmp_path / "t.trace.safetensors").layer("fc1")
    assert fc1.mask_params.scheme == "static-threshold" and fc1.mask_params.threshold == 0.5
    assert (fc1.inputs.values > 0.5).all()  # the pixels fc1 reads: the bright ones only
    assert fc1.premask.nnz_per_sample().sum() > fc1.inputs.nnz_per_sample().sum()


def test_wp_reaches_han_targets_and_keeps_masked_weights_zero(mnist, dense_ckpt, tmp_path):
    info = train("mlp3", "wp", tmp_path / "wp", recipe="quick", from_checkpoint=dense_ckpt[0],
                 train_set=mnist[0], test_set=mnist[1], progress=False)
    assert _density(info) == {"fc1": 0.08, "fc2": 0.09, "fc3": 0.26}
    assert info["layers"]["fc1"]["q"] > 0
    model, _ = C.load_checkpoint(tmp_path / "wp")
    for _, mod in zoo.compute_layers(model):
        assert torch.all(mod.weight[~mod.weight_mask] == 0)
        assert torch.count_nonzero(mod.weight[mod.weight_mask]) > 0.99 * mod.weight_mask.sum()


def test_l0_and_greg_reach_targets(mnist, dense_ckpt, tmp_path):
    kw = dict(from_checkpoint=dense_ckpt[0], train_set=mnist[0], test_set=mnist[1],
              progress=False)
    info = train("mlp3", "l0", tmp_path / "l0", recipe="quick", **kw)
    assert _density(info) == {"fc1": 0.12, "fc2": 0.11, "fc3": 0.2}
    assert info["method_params"]["layer_alpha0"]["fc1"] == pytest.approx(1e-5)
    rec = replace(get_recipe("mlp3", "greg2", "quick"), epochs=3,
                  greg=GRegParams(delta_lambda=0.5, k_u=1, k_s=3, uniform_delta=5e-3))
    msgs = []
    info = train("mlp3", "greg2", tmp_path / "g", recipe=rec, echo=msgs.append, **kw)
    assert _density(info) == {"fc1": 0.12, "fc2": 0.11, "fc3": 0.2}
    assert info["method_params"]["phase"] == "finetune"
    assert not any("unfinished" in m for m in msgs)


def test_cli_train_and_its_errors(tmp_path, capsys, mnist):
    from click.testing import CliRunner

    from accelsim.cli import cli, main

    r = CliRunner().invoke(cli, ["train", "--model", "mlp3", "--recipe", "quick", "--epochs", "1",
                                 "--limit-train", "256", "--limit-test", "100", "--out",
                                 str(tmp_path / "c"), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "test accuracy" in r.output and "on 100 images" in r.output
    assert (tmp_path / "c" / "checkpoint" / "checkpoint.json").is_file()
    # --weight-density over a zoo recipe's per-layer targets: the named layer only
    r = CliRunner().invoke(cli, ["train", "--model", "mlp3", "--method", "jp", "--recipe", "quick",
                                 "--from", str(tmp_path / "c"), "--weight-density", '{"fc1": 0.3}',
                                 "--limit-train", "256", "--limit-test", "100", "--out",
                                 str(tmp_path / "w"), "--no-progress"])
    assert r.exit_code == 0, r.output
    info = json.loads((tmp_path / "w" / "checkpoint" / "checkpoint.json").read_text())
    assert _density(info) == {"fc1": 0.3, "fc2": 0.11, "fc3": 0.2}
    for extra, message in (([], "unknown layer conv9 (mlp3 prunes fc1, fc2, fc3)"),
                           (["--method", "dense"], "the dense recipe of mlp3 prunes no weights")):
        with pytest.raises(SystemExit) as e:
            main(["train", "--model", "mlp3", "--method", "jp", *extra, "--weight-density",
                  '{"conv9": 0.5}', "--out", str(tmp_path / "x")])
        assert e.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["train", "--model", "mlp3", "--method", "jp", "--from", str(tmp_path / "missing"),
              "--out", str(tmp_path / "d")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "missing" in err and "\n" not in err
    with pytest.raises(SystemExit) as e:
        main(["train", "--model", "alexnet", "--out", str(tmp_path / "e")])
    assert e.value.code == 2 and "no training recipe" in capsys.readouterr().err


def test_jp_on_leaky_relu_keeps_exactly_k(mnist, tmp_path):
    kw = dict(recipe="quick", train_set=mnist[0], test_set=mnist[1], progress=False)
    train("mlp3", "dense", tmp_path / "d", epochs=1, model_options={"activation": "leaky_relu"},
          **kw)
    info = train("mlp3", "jp", tmp_path / "jp", from_checkpoint=tmp_path / "d", **kw)
    assert info["model_kwargs"] == {"activation": "leaky_relu"}
    model, _ = C.load_checkpoint(tmp_path / "jp")
    assert isinstance(model.relu1, torch.nn.LeakyReLU)
    seen = {}
    model.fc2.register_forward_pre_hook(lambda m, inp: seen.update(x=inp[0]))
    model(torch.randn(4, 1, 28, 28))
    # leaky ReLU has no intrinsic zeros: the layer sees exactly the k = 36 winners per sample
    assert (seen["x"] != 0).sum(1).tolist() == [36] * 4
    with pytest.raises(AccelsimError, match="apply to a fresh model"):
        train("mlp3", "jp", tmp_path / "x", from_checkpoint=tmp_path / "d",
              model_options={"activation": "relu"}, **kw)


def test_onecycle_lr_shape_and_the_loop_follows_it_per_step(mnist, tmp_path):
    from accelsim.models.recipes import ONECYCLE_WARMUP, lr_factor

    rec = replace(get_recipe("mlp3", "dense", "quick"), batch_size=64, lr=0.2, nesterov=True,
                  lr_schedule="onecycle", label_smoothing=0.1)
    assert lr_factor(rec, 0, 100) == pytest.approx(0.1)
    assert lr_factor(rec, int(100 * ONECYCLE_WARMUP), 100) == pytest.approx(1.0)
    assert lr_factor(rec, 100, 100) == 0.0
    f = [lr_factor(rec, s, 100) for s in range(101)]
    peak = f.index(max(f))
    assert all(a <= b for a, b in zip(f[:peak], f[1:peak + 1]))  # rises, then falls
    assert all(a >= b for a, b in zip(f[peak:], f[peak + 1:]))
    assert lr_factor(replace(rec, lr_schedule="step"), 50, 100) == 1.0
    with pytest.raises(AccelsimError, match="unknown lr_schedule 'cosine'"):
        lr_factor(replace(rec, lr_schedule="cosine"), 0, 100)
    info = train("mlp3", "dense", tmp_path, recipe=rec, epochs=2, train_set=mnist[0],
                 test_set=mnist[1], progress=False)
    assert info["metrics"]["accuracy"]["value"] > 0.7
    state = C.load_state(tmp_path / "state.pt")
    (group,) = state["optimizer"]["param_groups"]
    steps = 2 * 1280 // 64
    assert state["step"] == steps and group["nesterov"]
    assert group["lr"] == pytest.approx(0.2 * lr_factor(rec, steps - 1, steps))


def test_jp_fine_tune_optimizer_keeps_the_recipes_own_after_the_warm_up():
    from dataclasses import replace

    from accelsim.models.methods import JointPruning
    from accelsim.models.recipes import get_recipe

    r = get_recipe("convnet5", "jp", "paper")
    paper = JointPruning(r)
    assert paper.optimizer_spec(0).name == "sgd" and paper.optimizer_spec(5).name == "adadelta"
    kept = JointPruning(replace(r, weight_decay=5e-4,
                                jp=replace(r.jp, fine_tune_optimizer="recipe")))
    late = kept.optimizer_spec(r.lr_milestones[0])  # after the first cut: warm-up rate / 10
    assert (late.name, late.nesterov, late.weight_decay) == ("sgd", r.nesterov, 5e-4)
    assert late.lr == pytest.approx(r.lr * r.jp.warmup_lr_scale * r.lr_gamma)
    with pytest.raises(ValueError, match="choose adadelta or recipe"):
        JointPruning(replace(r, jp=replace(r.jp, fine_tune_optimizer="adam"))).optimizer_spec(5)
