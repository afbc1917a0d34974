"""Checkpoint directory: round trip, explicit masks, atomic writes, clear errors."""

import json
import os

import pytest
import torch

from accelsim.errors import AccelsimError
from accelsim.models import checkpoint as C
from accelsim.models import methods as M
from accelsim.models import zoo


def _pruned_jp_lenet4():
    torch.manual_seed(0)
    model = zoo.build("lenet4", dropout=0.5)
    for name, mod in zoo.compute_layers(model):
        M.prune_layer(mod, density={"conv1": 0.6, "conv2": 0.1, "fc1": 0.08, "fc2": 0.18}[name])
    zoo.set_winner_rates(model, {"conv2": 0.066, "fc1": 0.019, "fc2": 0.122})
    zoo.activation_masks(model)["fc2"].configure("threshold-prediction", 0.122, None, 0.1)
    M.dropout_in_front(model, (1, 28, 28))["fc2"].p = 0.2
    return model


def test_round_trip_gives_identical_outputs(tmp_path):
    model = _pruned_jp_lenet4()
    info = {"model": "lenet4", "model_kwargs": {"dropout": 0.5}, "method": "jp", "seed": 3,
            "metrics": {"accuracy": {"value": 0.99, "num_samples": 10000, "split": "test"}}}
    C.save_checkpoint(tmp_path / "ck", model, info)
    names = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert names == ["checkpoint.json", "masks.safetensors", "weights.safetensors"]
    from safetensors.torch import load_file

    masks = load_file(str(tmp_path / "ck" / "masks.safetensors"))
    assert sorted(masks) == ["conv1.weight.mask", "conv2.weight.mask", "fc1.weight.mask",
                             "fc2.weight.mask"]
    assert masks["fc1.weight.mask"].dtype == torch.bool
    weights = load_file(str(tmp_path / "ck" / "weights.safetensors"))
    assert not any(k.endswith("_mask") for k in weights)
    assert torch.all(weights["fc1.weight"][~masks["fc1.weight.mask"]] == 0)

    loaded, meta = C.load_checkpoint(tmp_path / "ck")
    assert meta["seed"] == 3 and meta["method"] == "jp"
    assert meta["activation_masks"]["fc1"] == {"scheme": "topk", "winner_rate": 0.019,
                                               "threshold": None, "eps": None}
    assert meta["activation_masks"]["fc2"]["scheme"] == "threshold-prediction"
    assert meta["weight_masks"]["conv2.weight.mask"]["density"] == pytest.approx(0.1, abs=1e-4)
    assert set(meta["software"]) >= {"python", "torch", "numpy", "accelsim"}
    # where it ran: results from a borrowed machine must say so
    assert meta["hardware"]["device"] == "cpu"
    assert meta["hardware"]["logical_cpus"] == str(os.cpu_count())
    assert meta["hardware"]["torch_threads"] == str(torch.get_num_threads())
    for name, mod in zoo.compute_layers(loaded):
        assert torch.equal(mod.weight_mask, dict(zoo.compute_layers(model))[name].weight_mask)
    assert M.dropout_in_front(loaded, (1, 28, 28))["fc2"].p == 0.2
    model.eval()
    x = torch.randn(16, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_overwrite_is_atomic_and_leaves_no_temp(tmp_path, monkeypatch):
    model = zoo.build("mlp3")
    info = {"model": "mlp3", "model_kwargs": {}, "method": "dense"}
    C.save_checkpoint(tmp_path / "ck", model, {**info, "seed": 1})
    import safetensors.torch as st

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(st, "save_file", boom)
    with pytest.raises(RuntimeError):
        C.save_checkpoint(tmp_path / "ck", model, {**info, "seed": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temp dir left
    assert C.read_info(tmp_path / "ck")["seed"] == 1  # the old checkpoint is intact


def test_run_directory_resolves_to_its_checkpoint(tmp_path):
    model = zoo.build("mlp3")
    C.save_checkpoint(tmp_path / "run" / "checkpoint", model,
                      {"model": "mlp3", "model_kwargs": {}, "method": "dense"})
    assert C.resolve_checkpoint_dir(tmp_path / "run") == tmp_path / "run" / "checkpoint"


def test_bad_checkpoints_give_one_line_errors(tmp_path):
    with pytest.raises(AccelsimError, match="does not exist"):
        C.load_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AccelsimError, match="not a checkpoint"):
        C.load_checkpoint(tmp_path / "empty")
    model = zoo.build("mlp3")
    ck = tmp_path / "ck"
    C.save_checkpoint(ck, model, {"model": "mlp3", "model_kwargs": {}, "method": "dense"})
    meta = json.loads((ck / "checkpoint.json").read_text())
    (ck / "checkpoint.json").write_text(json.dumps({**meta, "format_version": 9}))
    with pytest.raises(AccelsimError, match="format_version 9"):
        C.load_checkpoint(ck)
    (ck / "checkpoint.json").write_text(json.dumps({**meta, "model": "lenet4"}))
    with pytest.raises(AccelsimError, match="weights.safetensors: does not fit model 'lenet4'"):
        C.load_checkpoint(ck)
    (ck / "checkpoint.json").write_text(json.dumps(meta))
    (ck / "weights.safetensors").write_bytes(b"\x00" * 5)
    with pytest.raises(AccelsimError, match="weights.safetensors: unreadable") as e:
        C.load_checkpoint(ck)
    assert "\n" not in str(e.value)


def test_training_state_round_trip_without_pickle(tmp_path):
    state = {"format": "x", "epoch": 3, "model": {"w": torch.ones(2)}, "hist": [{"a": 1.5}]}
    C.save_state(tmp_path / "state.pt", state)
    back = C.load_state(tmp_path / "state.pt")
    assert back["epoch"] == 3 and torch.equal(back["model"]["w"], torch.ones(2))
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(AccelsimError, match="bad.pt: unreadable training state"):
        C.load_state(tmp_path / "bad.pt")
