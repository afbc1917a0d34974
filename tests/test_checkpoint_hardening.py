"""Checkpoint hardening: per-tensor checksums, every field of checkpoint.json validated with the
file named, the pickle refusal in one line, replacement that always leaves a loadable checkpoint
(or a recovery that says so), stale temp folders removed, and a writer killed at random."""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys

import pytest
import torch

from accelsim.errors import AccelsimError
from accelsim.models import checkpoint as C
from accelsim.models import checkpoint_meta as CM
from accelsim.models import zoo
from accelsim.staging import _HOST

INFO = {"model": "lenet4", "model_kwargs": {"dropout": 0.5}, "method": "dense", "seed": 1}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A lenet4 checkpoint: (folder, its checkpoint.json text, weights bytes)."""
    torch.manual_seed(0)
    ck = tmp_path_factory.mktemp("ck") / "checkpoint"
    C.save_checkpoint(ck, zoo.build("lenet4", dropout=0.5), INFO)
    return ck, (ck / "checkpoint.json").read_text(), (ck / "weights.safetensors").read_bytes()


@pytest.fixture
def ck(saved, tmp_path):
    """A fresh copy of the saved checkpoint to damage."""
    src, text, weights = saved
    d = tmp_path / "checkpoint"
    d.mkdir()
    (d / "checkpoint.json").write_text(text)
    (d / "weights.safetensors").write_bytes(weights)
    (d / "masks.safetensors").write_bytes((src / "masks.safetensors").read_bytes())
    return d


def _error(ck) -> str:
    with pytest.raises(AccelsimError) as ei:
        C.load_checkpoint(ck)
    msg = str(ei.value)
    assert "\n" not in msg
    return msg


def _edit(ck, change):
    info = json.loads((ck / "checkpoint.json").read_text())
    change(info)
    (ck / "checkpoint.json").write_text(json.dumps(info))


def test_checksums_are_written_and_a_flipped_weight_bit_is_caught(ck):
    info = json.loads((ck / "checkpoint.json").read_text())
    assert info["format_version"] == 2
    assert set(info["tensors"]["weights.safetensors"]) == {
        f"{n}.{p}" for n in ("conv1", "conv2", "fc1", "fc2") for p in ("weight", "bias")}
    data = bytearray((ck / "weights.safetensors").read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    start, _ = json.loads(data[8:8 + n])["fc1.weight"]["data_offsets"]
    data[8 + n + start + 1001] ^= 0x01  # one bit of one weight: still a finite float
    (ck / "weights.safetensors").write_bytes(bytes(data))
    msg = _error(ck)
    assert msg == f"{ck / 'weights.safetensors'}: tensor 'fc1.weight' is corrupt (crc32 mismatch)"


def test_a_tensor_missing_from_the_list_is_caught(ck):
    _edit(ck, lambda i: i["tensors"]["weights.safetensors"].pop("fc2.bias"))
    assert "tensors do not match the list in checkpoint.json (missing [], unexpected " \
           "['fc2.bias'])" in _error(ck)


def test_format_1_without_checksums_still_loads(ck):
    _edit(ck, lambda i: (i.pop("tensors"), i.update(format_version=1)))
    model, info = C.load_checkpoint(ck)
    assert info["format_version"] == 1 and isinstance(model, torch.nn.Module)
    _edit(ck, lambda i: i.update(format_version=2))
    assert "lacks 'tensors'" in _error(ck)


# one row per field case: how checkpoint.json is damaged, a phrase the one line must contain
FIELD_CASES = [
    ("dropout rate 7.0", lambda i: i["dropout"].update(fc1_drop=7.0),
     "field 'dropout'.fc1_drop must be a number in [0, 1], got 7.0"),
    ("dropout for a module the model lacks", lambda i: i["dropout"].update(fc9_drop=0.1),
     "'dropout' names 'fc9_drop', which is not a dropout module of model 'lenet4'"),
    ("dropout naming a non-dropout module", lambda i: i["dropout"].update(fc1=0.1),
     "'dropout' names 'fc1', which is not a dropout module"),
    ("winner rate 1.5", lambda i: i["activation_masks"].update(
        fc1={"scheme": "topk", "winner_rate": 1.5}),
     "field 'activation_masks'.fc1.winner_rate must be a number in [0, 1]"),
    ("unknown mask scheme", lambda i: i["activation_masks"].update(fc1={"scheme": "magic"}),
     "field 'activation_masks'.fc1.scheme must be one of off, topk"),
    ("mask on a layer without one", lambda i: i["activation_masks"].update(
        nope={"scheme": "topk", "winner_rate": 0.5}),
     "'activation_masks' names 'nope', which is not an activation mask"),
    ("threshold prediction without eps", lambda i: i["activation_masks"].update(
        fc1={"scheme": "threshold-prediction", "winner_rate": 0.5, "eps": None}),
     "'activation_masks':"),
    ("accuracy above 1", lambda i: i.update(metrics={"accuracy": {"value": 2, "num_samples": 9}}),
     "field 'metrics'.accuracy.value must be a number in [0, 1], got 2"),
    ("seed a string", lambda i: i.update(seed="x"), "field 'seed' must be an integer"),
    ("negative mask density", lambda i: i["weight_masks"].update(
        {"x.mask": {"density": -1, "shape": [1]}}), "field 'weight_masks'.x.mask.density"),
    ("epochs done > planned", lambda i: i.update(epochs={"done": 5, "planned": 3}),
     "done 5 > planned 3"),
    ("format_version 3", lambda i: i.update(format_version=3),
     "unsupported checkpoint format_version 3"),
    ("command not a list", lambda i: i.update(command="train"), "field 'command' must be a list"),
    ("model missing", lambda i: i.pop("model"), "lacks 'model'"),
    ("crc not an integer", lambda i: i["tensors"]["masks.safetensors"].update(
        {"conv1.weight.mask": {"crc32": "abc"}}), "field 'tensors'.masks.safetensors"),
    ("negative std", lambda i: i.update(input_normalization={"mean": [0], "std": [-1]}),
     "field 'input_normalization'.std[0] must be a number in (0, inf]"),
    ("software not strings", lambda i: i.update(software={"torch": 2}),
     "field 'software'.torch must be a string or null"),
]


@pytest.mark.parametrize("change,phrase", [c[1:] for c in FIELD_CASES],
                         ids=[c[0] for c in FIELD_CASES])
def test_every_field_is_validated_with_the_file_named(ck, change, phrase):
    _edit(ck, change)
    msg = _error(ck)
    assert msg.startswith(str(ck / "checkpoint.json") + ": ") and phrase in msg, msg


@pytest.mark.parametrize("text,phrase", [
    ('{"format": "accelsim-checkpoint", "seed": NaN}', "non-finite number NaN"),
    ('{"format": "accelsim-checkpoint", "x": 1e999}', "is not finite"),
    ("{oops", "is not valid JSON"),
])
def test_non_finite_numbers_and_bad_json(ck, text, phrase):
    (ck / "checkpoint.json").write_text(text)
    msg = _error(ck)
    assert msg.startswith(str(ck / "checkpoint.json")) and phrase in msg


def test_new_fields_register_their_own_check(ck, monkeypatch):
    monkeypatch.setitem(CM.FIELDS, "source", CM.mapping(keys={"sha256": CM.string(nonempty=True)}))
    _edit(ck, lambda i: i.update(source={"sha256": ""}))
    assert "field 'source'.sha256 must be a non-empty string" in _error(ck)
    _edit(ck, lambda i: i.update(source={"sha256": "ab"}, other_future_key=[1, 2]))
    C.load_checkpoint(ck)  # unknown keys are accepted


def test_pickle_payload_is_refused_in_one_line(tmp_path):
    import argparse

    torch.save({"epoch": 1, "x": argparse.Namespace(a=1)}, tmp_path / "state.pt")
    with pytest.raises(AccelsimError) as ei:
        C.load_state(tmp_path / "state.pt")
    msg = str(ei.value)
    assert msg == (f"{tmp_path / 'state.pt'}: refused: the training state holds a pickled Python "
                   "object (argparse.Namespace), not only tensors and plain containers; accelsim "
                   "never unpickles; delete it to restart")
    assert "weights_only" not in msg


# ---------------------------------------------------------------- replacement and leftovers


def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True).stdout)


def test_interrupted_swap_is_recovered_on_next_read(ck, capsys):
    """The two-rename fallback killed between its renames: no checkpoint/ but the previous one
    aside. The next read puts it back and says so."""
    aside = ck.parent / f".checkpoint.old-{_dead_pid()}@{_HOST}"
    os.replace(ck, aside)
    model, info = C.load_checkpoint(ck.parent)  # a run directory, as `trace record` gets it
    assert info["seed"] == 1 and (ck / "checkpoint.json").is_file() and not aside.exists()
    assert "restored the previous checkpoint" in capsys.readouterr().err


def test_fallback_swap_without_exchange(tmp_path, monkeypatch):
    monkeypatch.setattr(C, "_exchange", lambda a, b: False)
    ck = tmp_path / "checkpoint"
    model = zoo.build("mlp3")
    for seed in (1, 2):
        C.save_checkpoint(ck, model, {"model": "mlp3", "model_kwargs": {}, "method": "dense",
                                      "seed": seed})
    assert C.read_info(ck)["seed"] == 2 and os.listdir(tmp_path) == ["checkpoint"]


def test_write_errors_are_one_line_naming_the_checkpoint(tmp_path):
    info = {"model": "mlp3", "model_kwargs": {}, "method": "dense"}
    (tmp_path / "file").write_text("x")  # a parent that is a file
    with pytest.raises(AccelsimError, match=r"file/checkpoint: cannot write the checkpoint \("):
        C.save_checkpoint(tmp_path / "file" / "checkpoint", zoo.build("mlp3"), info)
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o555)
    try:
        if os.access(tmp_path / "ro", os.W_OK):
            pytest.skip("running as a user who can write anywhere (root): read-only case")
        with pytest.raises(AccelsimError, match=r"ro/checkpoint: cannot write the checkpoint "
                                                r"\(Permission denied\)"):
            C.save_checkpoint(tmp_path / "ro" / "checkpoint", zoo.build("mlp3"), info)
    finally:
        os.chmod(tmp_path / "ro", 0o755)


def test_stale_folders_of_killed_writers_are_removed(tmp_path):
    ck = tmp_path / "checkpoint"
    dead = _dead_pid()
    stale = tmp_path / f".checkpoint.tmp-{dead}@{_HOST}-x1y2z3"
    stale.mkdir()
    (stale / ".tmpAbC123").write_bytes(b"\0" * 4096)  # safetensors' own temp file
    legacy = tmp_path / ".checkpoint.tmp-ab12cd34"  # an earlier version's temp folder
    legacy.mkdir()
    live = tmp_path / f".checkpoint.tmp-{os.getpid()}@{_HOST}-live00"  # a running writer's
    live.mkdir()
    C.save_checkpoint(ck, zoo.build("mlp3"), {"model": "mlp3", "model_kwargs": {}, "method": "d"})
    assert sorted(os.listdir(tmp_path)) == sorted(["checkpoint", live.name])


# One process imports torch once, then forks a writer per trial and SIGKILLs it after the delay
# it is sent (one thread: fork is safe). The writer replaces one checkpoint in a loop.
_KILLER = """
import os, signal, sys, time, torch
torch.set_num_threads(1)
from accelsim.models import checkpoint as C, zoo
if {fallback}:
    C._exchange = lambda a, b: False
models = [zoo.build("mlp3") for _ in range(2)]
print("ready", flush=True)
for line in sys.stdin:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        i = 0
        while True:
            C.save_checkpoint({path!r}, models[i % 2], {{"model": "mlp3", "model_kwargs": {{}},
                              "method": "dense", "seed": i}})
            if i == 0:
                os.write(w, b"1")
            i += 1
    os.close(w)
    os.read(r, 1)  # the first checkpoint is complete
    time.sleep(float(line))
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(r)
    print("killed", flush=True)
"""


@pytest.mark.parametrize("fallback", [False, True], ids=["exchange", "two-renames"])
def test_killed_checkpoint_writer_leaves_a_loadable_checkpoint(tmp_path, fallback):
    """SIGKILL a writer replacing one checkpoint in a loop, at random moments: the documented
    path always loads (after a recovery that says so, in the two-rename mode), and the next save
    leaves nothing else behind."""
    ck = tmp_path / "run" / "checkpoint"
    rng = random.Random(1 + fallback)
    proc = subprocess.Popen([sys.executable, "-c", _KILLER.format(path=str(ck), fallback=fallback)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        for _ in range(5):
            proc.stdin.write(f"{rng.uniform(0.0, 0.3)}\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "killed"
            model, info = C.load_checkpoint(ck.parent)
            assert isinstance(info["seed"], int)
            C.save_checkpoint(ck, model, {"model": "mlp3", "model_kwargs": {}, "method": "dense"})
            assert os.listdir(ck.parent) == ["checkpoint"]
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
