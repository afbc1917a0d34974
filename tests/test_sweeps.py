"""Activation-pruning sweeps (analysis/sweeps.py), the winner-rate chooser, the `sweep` CLI.

The sweeps run on a small mlp3 trained for one quick pass over 3,000 real MNIST training
images (a second), evaluated on 200 validation images carved from the training set.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from accelsim.analysis import sweeps as S
from accelsim.analysis.chooser import choose_winner_rates, read_sweep
from accelsim.cli import main
from accelsim.errors import AccelsimError

VAL_SIZE, LIMIT, SEED = 5000, 200, 0


# ---- fixtures -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mnist_train(mnist_dir):
    from accelsim.models.data import load_dataset

    return load_dataset("mnist", "train")


@pytest.fixture(scope="module")
def checkpoint(mnist_train, tmp_path_factory):
    """A saved mlp3 (masks off), trained one pass on 3,000 images outside the validation split."""
    from accelsim.models import zoo
    from accelsim.models.checkpoint import save_checkpoint
    from accelsim.models.data import make_batches, train_val_split
    from accelsim.models.train import transform_for

    train_idx, _ = train_val_split(len(mnist_train), VAL_SIZE, SEED)
    part = mnist_train.subset(train_idx[:3000])
    torch.manual_seed(0)
    model = zoo.build("mlp3")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    tf = transform_for("mlp3", True)
    for x, y in make_batches(part, 100, shuffle=True, seed=0, transform=tf):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = tmp_path_factory.mktemp("ckpt") / "mlp3"
    save_checkpoint(out, model, {"model": "mlp3", "model_kwargs": {}, "method": "dense"})
    return out


@pytest.fixture(scope="module")
def loaded(checkpoint, mnist_train):
    """(model, validation set of 200 training images, eval transform)."""
    from accelsim.models.checkpoint import load_checkpoint
    from accelsim.models.train import transform_for

    model, _ = load_checkpoint(checkpoint)
    val = S.validation_set("mnist", VAL_SIZE, SEED, limit=LIMIT)
    return model, val, transform_for("mlp3", False)


def _run(argv, capsys):
    with pytest.raises(SystemExit) as ei:
        main(argv)
    out = capsys.readouterr()
    return ei.value.code, out.out, out.err


# ---- option parsing -------------------------------------------------------------------------
def test_parse_rates_ranges_and_lists():
    r = S.parse_rates("0.05:1:0.05")
    assert len(r) == 20 and r[0] == 0.05 and r[-1] == 1.0 and r[5] == 0.3
    assert S.parse_rates("0.1:0.35:0.1") == [0.1, 0.2, 0.3]  # stop not on the grid: left out
    assert S.parse_rates("1, 0.5,0.5") == [0.5, 1.0]
    assert S.parse_rates("0.3:0.3:0.1") == [0.3]
    assert S.parse_values("0.07:0.14:0.01", "--thresholds", low=0.0, high=None)[-1] == 0.14


@pytest.mark.parametrize("text, msg", [
    ("0.1:1", "expected start:stop:step"),
    ("a,b", "expected start:stop:step"),
    ("", "expected start:stop:step"),
    ("0:1:0.1", "value 0.0 out of range (0.0, 1.0]"),
    ("0.5,1.5", "value 1.5 out of range"),
    ("0.5:0.1:0.1", "stop 0.1 is below start 0.5"),
    ("0.1:1:0", "step must be > 0"),
    ("nan", "out of range"),
])
def test_parse_rates_errors(text, msg):
    with pytest.raises(AccelsimError) as ei:
        S.parse_rates(text)
    assert msg in str(ei.value) and str(ei.value).startswith("--rates")


# ---- chooser --------------------------------------------------------------------------------
def _frame(drops: dict[str, dict[float, float]], base: float = 0.9) -> pd.DataFrame:
    rows = [{"layer": layer, "rate": r, "accuracy": base - d / 100, "unmasked_accuracy": base}
            for layer, per in drops.items() for r, d in per.items()]
    return pd.DataFrame(rows)


def test_chooser_smallest_rate_within_budget():
    frame = _frame({
        "conv1": {0.1: 3.0, 0.2: 0.4, 0.3: 0.1, 1.0: 0.0},
        "conv2": {0.1: 0.2, 0.2: 2.0, 0.5: 0.1, 1.0: 0.0},  # 0.1 is a lucky point past a failure
        "fc1": {0.1: 0.0, 0.5: 0.0, 1.0: 0.0},
        "fc2": {0.5: 5.0, 1.0: 1.0},  # nothing passes: keep everything
    })
    assert choose_winner_rates(frame, 0.5) == {"conv1": 0.2, "conv2": 0.5, "fc1": 0.1, "fc2": 1.0}
    assert choose_winner_rates(frame, 0.0)["conv1"] == 1.0
    assert choose_winner_rates(frame, 1.9)["conv2"] == 0.5
    assert choose_winner_rates(frame, 2.0)["conv2"] == 0.1
    assert choose_winner_rates(frame, 0.4)["conv1"] == 0.2  # a drop equal to the budget passes


def test_chooser_baseline_from_rate_one_and_errors():
    frame = _frame({"fc2": {0.1: 1.0, 0.3: 0.3, 1.0: 0.0}}).drop(columns="unmasked_accuracy")
    assert choose_winner_rates(frame, 0.5) == {"fc2": 0.3}
    with pytest.raises(AccelsimError, match="no unmasked_accuracy and no rate 1.0"):
        choose_winner_rates(frame[frame["rate"] < 1], 0.5)
    with pytest.raises(AccelsimError, match="--budget must be"):
        choose_winner_rates(frame, -1)
    with pytest.raises(AccelsimError, match="missing column"):
        choose_winner_rates(frame.drop(columns="accuracy"), 0.5)


def test_cli_choose_prints_json(tmp_path, capsys):
    path = tmp_path / "sweep.csv"
    _frame({"fc2": {0.1: 1.0, 0.3: 0.3, 1.0: 0.0}, "fc3": {0.1: 0.0, 1.0: 0.0}}).to_csv(path)
    code, out, _ = _run(["sweep", "choose", "--sweep", str(path), "--budget", "0.5"], capsys)
    assert code == 0 and json.loads(out) == {"fc2": 0.3, "fc3": 0.1}
    code, _, err = _run(["sweep", "choose", "--sweep", str(tmp_path / "no.csv"), "--budget", "1"],
                        capsys)
    assert code == 2 and err.count("\n") == 1 and "file not found" in err
    (tmp_path / "bad.csv").write_text("layer,rate\nfc2,0.1\n")
    with pytest.raises(AccelsimError, match="missing column"):
        read_sweep(tmp_path / "bad.csv")


def test_old_sweep_csvs_read_in_todays_units(tmp_path, capsys, monkeypatch):
    """A CSV written before the units were named: baseline_accuracy, a fractional accuracy_drop,
    act_pct. The chooser picks the same rates; the figures draw the same numbers."""
    from accelsim.analysis import figures
    from accelsim.analysis.figures import plot_static_vs_dynamic, plot_winner_rates
    from accelsim.analysis.sweep_names import current_sweep_names

    today = _frame({"fc2": {0.1: 1.0, 0.3: 0.3, 1.0: 0.0}})
    today["accuracy_drop_pp"] = 100 * (today["unmasked_accuracy"] - today["accuracy"])
    old = today.rename(columns={"unmasked_accuracy": "baseline_accuracy"})
    old["accuracy_drop"] = old.pop("accuracy_drop_pp") / 100
    path = tmp_path / "old.csv"
    old.to_csv(path, index=False)
    read = read_sweep(path)
    assert np.allclose(read["accuracy_drop_pp"], [1.0, 0.3, 0.0])
    assert choose_winner_rates(read, 0.5) == choose_winner_rates(today, 0.5) == {"fc2": 0.3}
    code, out, _ = _run(["sweep", "choose", "--sweep", str(path), "--budget", "0.5"], capsys)
    assert code == 0 and json.loads(out) == {"fc2": 0.3}
    static = pd.DataFrame({"mode": ["unmasked", "static"], "threshold": [np.nan, 0.1],
                           "accuracy": [0.98, 0.97], "act_pct": [40.0, 12.5]})
    assert list(current_sweep_names(static)["act_density"]) == [0.4, 0.125]
    drawn = []
    monkeypatch.setattr(figures, "_save", lambda fig, out: drawn.append(
        [tuple(line.get_ydata()) for line in fig.axes[0].lines]))
    plot_winner_rates(old, tmp_path / "fig8.png")
    plot_static_vs_dynamic(static, tmp_path / "fig7.png")
    assert np.allclose(drawn[0][0], [1.0, 0.3, 0.0])  # percentage points, rates 0.1, 0.3, 1
    assert np.allclose(drawn[1][0], [0.97])  # accuracy as the fraction the CSV holds


# ---- exact MAC counting ---------------------------------------------------------------------
def _brute_conv(x: np.ndarray, w: np.ndarray, stride, padding, dilation, groups) -> int:
    """Count (non-zero input, non-zero weight) pairs by walking every output and every tap."""
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    oh = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    ow = (wd + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    count = 0
    for s in range(n):
        for o in range(m):
            g = o // (m // groups)
            for i in range(oh):
                for j in range(ow):
                    for ci in range(cg):
                        for a in range(kh):
                            for b in range(kw):
                                r = i * stride - padding + a * dilation
                                q = j * stride - padding + b * dilation
                                if 0 <= r < h and 0 <= q < wd and w[o, ci, a, b] != 0 \
                                        and x[s, g * cg + ci, r, q] != 0:
                                    count += 1
    return count


def test_mac_counter_matches_brute_force():
    from accelsim.models.counting import count_layers

    g = torch.Generator().manual_seed(3)
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1, groups=2)
    conv2 = nn.Conv2d(6, 4, 2, dilation=2, bias=False)
    lin = nn.Linear(4 * 3 * 3, 5)
    with torch.no_grad():
        for layer in (conv, conv2, lin):
            layer.weight.mul_(torch.rand(layer.weight.shape, generator=g) < 0.5)
    model = nn.Sequential(conv, nn.ReLU(), conv2, nn.ReLU(), nn.Flatten(), lin)
    x = torch.randn(3, 4, 9, 9, generator=g) * (torch.rand(3, 4, 9, 9, generator=g) < 0.4)

    with S.MacCounter(model) as counter, torch.no_grad():
        model(x)
    acts = {}
    hooks = [m.register_forward_hook(lambda mod, a, o, k=k: acts.__setitem__(k, a[0].numpy()))
             for k, m in (("0", conv), ("2", conv2), ("5", lin))]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    w0, w2, w5 = (m.weight.detach().numpy() for m in (conv, conv2, lin))
    assert counter.effective["0"] == _brute_conv(acts["0"], w0, 2, 1, 1, 2)
    assert counter.effective["2"] == _brute_conv(acts["2"], w2, 1, 0, 2, 1)
    lin_pairs = int(((acts["5"] != 0).astype(int) @ (w5 != 0).T.astype(int)).sum())
    assert counter.effective["5"] == lin_pairs
    dense = {c.name: c.macs for c in count_layers(model, (4, 9, 9))}
    assert counter.dense == {k: 3 * v for k, v in dense.items()}
    assert counter.density("2") == pytest.approx((acts["2"] != 0).mean())
    total = sum(counter.effective.values())
    assert counter.mac_pct() == pytest.approx(100 * total / (3 * sum(dense.values())))


def test_shared_masks_form_one_group():
    """A residual block's conv1 and projection shortcut read one mask: one sweep entry."""
    from accelsim.models import zoo

    model = zoo.build("wrn32")
    groups = S.mask_groups(model)
    assert groups["unit2.0.conv1"][1] == ["unit2.0.conv1", "unit2.0.shortcut"]
    assert "unit2.0.shortcut" not in groups and len(groups) == 31  # 15 blocks x 2 + fc
    picked = S.select_groups(model, ["unit3.0.shortcut", "fc"])
    assert list(picked) == ["unit3.0.conv1", "fc"]
    with pytest.raises(AccelsimError, match="--winner-rates: layers sharing the mask"):
        S.dynamic_groups(model, {"unit2.0.conv1": 0.5, "unit2.0.shortcut": 0.3})


# ---- validation split -----------------------------------------------------------------------
def test_validation_set_comes_from_the_training_split(mnist_train):
    from accelsim.models.data import train_val_split

    val = S.validation_set("mnist", VAL_SIZE, SEED, limit=LIMIT)
    train_idx, val_idx = train_val_split(len(mnist_train), VAL_SIZE, SEED)
    assert val.split == "train" and len(val) == LIMIT
    got = set(val.indices.tolist())
    assert got <= set(val_idx.tolist()) and not got & set(train_idx.tolist())
    assert torch.equal(val.images, mnist_train.images[val.indices])
    again = S.validation_set("mnist", VAL_SIZE, SEED, limit=LIMIT)
    assert torch.equal(again.indices, val.indices)  # deterministic by seed
    other = S.validation_set("mnist", VAL_SIZE, SEED + 1, limit=LIMIT)
    assert not torch.equal(other.indices, val.indices)


# ---- the sweeps -----------------------------------------------------------------------------
def test_winner_rate_sweep(loaded):
    from accelsim.models.masks import kept_count
    from accelsim.models.train import evaluate

    model, val, tf = loaded
    rates = [0.05, 0.1, 0.3, 0.6, 1.0]
    frame = S.winner_rate_sweep(model, val, tf, rates)
    assert list(zip(frame["layer"], frame["rate"])) == [(l, r) for l in ("fc2", "fc3")
                                                        for r in rates]
    assert (frame["num_samples"] == LIMIT).all()
    unmasked, n = evaluate(model, val, tf)  # the checkpoint's masks are off
    assert n == LIMIT and unmasked > 0.7  # a real, trained network
    assert (frame["unmasked_accuracy"] == unmasked).all()
    # the drop is in percentage points, the unit of `sweep choose --budget`
    assert np.allclose(frame["accuracy_drop_pp"], 100 * (unmasked - frame["accuracy"]))
    for layer, rows in frame.groupby("layer"):
        rows = rows.sort_values("rate")
        assert rows["mac_pct"].is_monotonic_increasing
        assert rows["mac_pct"].iloc[0] < rows["mac_pct"].iloc[-1] - 0.01
        assert rows["mac_pct"].iloc[-1] == pytest.approx(rows["unmasked_mac_pct"].iloc[0])
        assert rows["accuracy"].iloc[-1] == unmasked  # rate 1.0 keeps everything
        n_in = 300 if layer == "fc2" else 100
        assert rows["act_density"].iloc[0] <= kept_count(n_in, 0.05) / n_in + 1e-12
    fc2 = frame[frame["layer"] == "fc2"].set_index("rate")
    assert fc2.loc[0.05, "accuracy_drop_pp"] > 0  # 15 of 300 hidden units lose accuracy
    assert all(m.scheme == "off" for m, _ in S.mask_groups(model).values())  # restored


def test_eps_sweep(loaded):
    from accelsim.models import zoo

    model, val, tf = loaded
    frame = S.eps_sweep(model, val, tf, [0.1, 1.0], {"fc2": 0.3, "fc3": 0.5})
    assert list(zip(frame["scope"], frame["eps"])) == [
        ("all", 0.1), ("all", 1.0), ("fc2", 0.1), ("fc2", 1.0), ("fc3", 0.1), ("fc3", 1.0)]
    exact = frame[frame["eps"] == 1.0]  # subsample = everything: the same non-zeros as top-k
    assert (exact["accuracy"] == exact["topk_accuracy"]).all()
    assert np.allclose(frame["accuracy_drop_pp"], 100 * (frame["topk_accuracy"] - frame["accuracy"]))
    assert np.allclose(exact["act_density"], exact["topk_act_density"])
    zoo.set_winner_rates(model, {"fc2": 0.3, "fc3": 0.5})
    res = S.evaluate_model(model, val, tf)
    zoo.set_winner_rates(model, {"fc2": 1.0, "fc3": 1.0}, scheme="off")
    assert frame["topk_accuracy"].iloc[0] == res.accuracy
    assert frame["topk_act_density"].iloc[2] == res.density["fc2"]
    with pytest.raises(AccelsimError, match="no top-k or threshold-prediction"):
        S.eps_sweep(model, val, tf, [0.1])  # the checkpoint has no dynamic masks


def test_static_vs_dynamic(loaded):
    model, val, tf = loaded
    frame = S.static_vs_dynamic(model, val, tf, [0.0, 1.0])
    assert list(frame["mode"]) == ["unmasked", "static", "dynamic", "static", "dynamic"]
    base, static0 = frame.iloc[0], frame.iloc[1]
    # theta = 0 after ReLU keeps every non-zero: the unmasked network exactly
    assert static0["accuracy"] == base["accuracy"] and static0["act_density"] == base["act_density"]
    s1, d1 = frame.iloc[3], frame.iloc[4]
    assert 0 < s1["act_density"] < base["act_density"] - 0.05 and base["act_density"] <= 1
    assert abs(d1["act_density"] - s1["act_density"]) < 0.02  # dynamic at the same per-layer densities
    dens = json.loads(s1["layer_densities"])
    assert set(dens) == {"fc2", "fc3"} and 0 < dens["fc2"] < 1


# ---- the CLI --------------------------------------------------------------------------------
@pytest.fixture()
def splits(monkeypatch):
    """The data splits loaded (in this process) while the test runs."""
    import accelsim.models.data as D

    loaded = []
    real = D.load_dataset
    monkeypatch.setattr(D, "load_dataset", lambda name, split, *a, **k: (
        loaded.append(split), real(name, split, *a, **k))[1])
    return loaded


def test_cli_winner_rates_writes_csv_and_plot_from_training_data(checkpoint, tmp_path, capsys,
                                                                 splits):
    out, fig = tmp_path / "w.csv", tmp_path / "w.png"
    code, stdout, err = _run(["sweep", "winner-rates", "--checkpoint", str(checkpoint),
                              "--rates", "0.1,1", "--layer", "fc3", "--limit", "100",
                              "--out", str(out), "--plot", str(fig), "--no-progress",
                              "--scheduler", "in-process"], capsys)
    assert code == 0, err
    assert splits == ["train"]  # the test set is never read
    frame = pd.read_csv(out)
    assert list(frame["layer"]) == ["fc3", "fc3"] and list(frame["rate"]) == [0.1, 1.0]
    assert (frame["num_samples"] == 100).all()
    assert fig.stat().st_size > 1000 and "wrote 2 rows" in stdout


@pytest.mark.parametrize("args, msg", [
    (["--rates", "0.1:1"], "error: --rates: bad value '0.1:1'"),
    (["--layer", "fc9"], "error: --layer: unknown masked layer 'fc9'; valid: fc2, fc3"),
    (["--plot", "x.gif"], "unknown figure format '.gif'"),
])
def test_cli_errors(checkpoint, tmp_path, capsys, args, msg):
    argv = ["sweep", "winner-rates", "--checkpoint", str(checkpoint), "--limit", "10",
            "--out", str(tmp_path / "w.csv"), "--no-progress", *args]
    code, _, err = _run(argv, capsys)
    assert code == 2 and err.count("\n") == 1 and msg in err


def test_cli_missing_checkpoint(tmp_path, capsys):
    code, _, err = _run(["sweep", "eps", "--checkpoint", str(tmp_path / "nope"),
                         "--out", str(tmp_path / "e.csv")], capsys)
    assert code == 2 and err.count("\n") == 1 and "checkpoint directory does not exist" in err


# ---- the sweeps' points as Dask tasks (accelsim.sweep_run) -------------------------------------
def test_cli_winner_rates_points_stored_and_resumed(checkpoint, loaded, tmp_path, capsys):
    model, val, tf = loaded
    out = tmp_path / "w.csv"
    argv = ["sweep", "winner-rates", "--checkpoint", str(checkpoint), "--rates", "0.1,0.6",
            "--limit", str(LIMIT), "--out", str(out), "--no-progress", "--scheduler", "in-process"]
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    assert "5 points: 5 computed, 0 reused, 0 errors" in err  # the baseline + 2 layers x 2 rates
    frame = pd.read_csv(out)
    same = S.winner_rate_sweep(model, val, tf, [0.1, 0.6])  # the in-process sweep
    cols = ["layer", "rate", "accuracy", "num_samples", "mac_pct", "act_density",
            "unmasked_accuracy", "accuracy_drop_pp", "unmasked_mac_pct"]
    pd.testing.assert_frame_equal(frame[cols], same[cols])
    assert frame["error"].isna().all()
    assert len(list((tmp_path / "w.parts").glob("*.parquet"))) == 5
    code, _, err = _run(argv, capsys)  # a rerun computes nothing
    assert code == 0 and "resuming: 5 of 5 points done" in err and "0 computed, 5 reused" in err
    code, _, err = _run([*argv[:5], "0.1,0.3", *argv[6:]], capsys)
    assert code == 2 and "holds the parts of another sweep (rates differ)" in err


def test_cli_eps_on_a_local_cluster_equals_in_process(checkpoint, loaded, tmp_path, capsys):
    model, val, tf = loaded
    out = tmp_path / "e.csv"
    code, _, err = _run(["sweep", "eps", "--checkpoint", str(checkpoint), "--eps", "0.1,1",
                         "--winner-rates", '{"fc2": 0.3, "fc3": 0.5}', "--limit", str(LIMIT),
                         "--out", str(out), "--no-progress", "--workers", "2"], capsys)
    assert code == 0, err
    frame = pd.read_csv(out)
    same = S.eps_sweep(model, val, tf, [0.1, 1.0], {"fc2": 0.3, "fc3": 0.5})
    cols = list(same.columns)
    pd.testing.assert_frame_equal(frame[cols], same[cols], check_exact=False, rtol=1e-12)


def test_a_failing_point_is_an_error_row(checkpoint, tmp_path, capsys, monkeypatch):
    real = S.evaluate_model

    def flaky(model, *a, **k):
        if any(m.mask_params()["winner_rate"] == 0.2 for m, _ in S.mask_groups(model).values()):
            raise RuntimeError("no memory left")
        return real(model, *a, **k)

    monkeypatch.setattr(S, "evaluate_model", flaky)
    out = tmp_path / "w.csv"
    code, _, err = _run(["sweep", "winner-rates", "--checkpoint", str(checkpoint), "--layer",
                         "fc3", "--rates", "0.2,1", "--limit", "50", "--out", str(out),
                         "--no-progress", "--scheduler", "in-process"], capsys)
    assert code == 0 and "3 points: 3 computed, 0 reused, 1 errors" in err
    frame = pd.read_csv(out, keep_default_na=False)
    assert list(frame["error"]) == ["RuntimeError: no memory left", ""]
    assert frame["accuracy"].iloc[0] == "" and float(frame["accuracy"].iloc[1]) > 0.5


def test_fine_tuning_runs_per_point_on_training_images_only(checkpoint, tmp_path, capsys,
                                                            splits):
    out = tmp_path / "f.csv"
    argv = ["sweep", "winner-rates", "--checkpoint", str(checkpoint), "--layer", "fc3",
            "--rates", "0.1", "--limit", "50", "--fine-tune-epochs", "1", "--limit-train", "200",
            "--out", str(out), "--no-progress", "--scheduler", "in-process"]
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    assert set(splits) == {"train"}  # fine-tuning never reads the test set either
    runs = list((tmp_path / "f.parts").glob("*.run"))
    assert len(runs) == 1  # the masked point only: the unmasked baseline is not retrained
    info = json.loads((runs[0] / "checkpoint" / "checkpoint.json").read_text())
    assert info["method"] == "jp" and info["epochs"]["done"] == 1 and info["limit_train"] == 200
    assert info["activation_masks"]["fc3"]["winner_rate"] == 0.1
    assert info["metrics"]["accuracy"]["num_samples"] == 50  # validated on the sweep's images
    assert pd.read_csv(out)["num_samples"].tolist() == [50]
    code, _, err = _run(argv, capsys)
    assert code == 0 and "resuming: 2 of 2 points done" in err


# ---- the Python API: accelsim.sweep_winner_rates / accelsim.sweep_eps ------------------------
def test_api_winner_rates_equal_the_in_process_sweep_and_resume(checkpoint, loaded, tmp_path,
                                                               monkeypatch):
    import accelsim

    model, val, tf = loaded
    out = tmp_path / "w.csv"
    frame = accelsim.sweep_winner_rates(checkpoint, rates=[0.1, 0.6], limit=LIMIT, out=out,
                                        scheduler="in-process")
    same = S.winner_rate_sweep(model, val, tf, [0.1, 0.6])
    cols = ["layer", "rate", "accuracy", "num_samples", "mac_pct", "act_density",
            "unmasked_accuracy", "accuracy_drop_pp", "unmasked_mac_pct"]
    pd.testing.assert_frame_equal(frame[cols], same[cols])
    assert (frame["error"] == "").all()
    pd.testing.assert_frame_equal(pd.read_csv(out)[cols], same[cols])  # the CLI's CSV
    assert len(list((tmp_path / "w.parts").glob("*.parquet"))) == 5
    monkeypatch.setattr(S, "evaluate_model", lambda *a, **k: 1 / 0)  # nothing may run again
    again = accelsim.sweep_winner_rates(checkpoint, "0.1,0.6", limit=LIMIT, out=out,
                                        scheduler="in-process")
    pd.testing.assert_frame_equal(again[cols], same[cols])


def test_api_eps_equals_the_in_process_sweep(checkpoint, loaded):
    import accelsim

    model, val, tf = loaded
    rates = {"fc2": 0.3, "fc3": 0.5}
    frame = accelsim.sweep_eps(checkpoint, eps=[0.1, 1], winner_rates=rates, limit=LIMIT,
                               scheduler="in-process")
    same = S.eps_sweep(model, val, tf, [0.1, 1.0], rates)
    pd.testing.assert_frame_equal(frame[list(same.columns)], same)


@pytest.mark.parametrize("call, msg", [
    (lambda a, c: a.sweep_winner_rates(c, rates="0.1:1"), "rates: bad value '0.1:1'"),
    (lambda a, c: a.sweep_winner_rates(c, rates=[0.5, 2]), "rates: value 2.0 out of range"),
    (lambda a, c: a.sweep_winner_rates(c, layers=["fc9"]), "unknown masked layer 'fc9'"),
    (lambda a, c: a.sweep_winner_rates(c, val_size=0), "val_size: 0 is not in the range"),
    (lambda a, c: a.sweep_winner_rates(c, out="w.txt"), "w.txt"),
    (lambda a, c: a.sweep_eps(c, fine_tune_epochs=1), "fine-tuning needs an output table"),
    (lambda a, c: a.sweep_eps(c, winner_rates={"fc2": "x"}), "winner_rates: expected"),
    (lambda a, c: a.sweep_eps(c, scheduler="tcp://127.0.0.1:1"), "--scheduler tcp://127.0.0.1:1"),
])
def test_api_sweep_errors_are_one_line(checkpoint, call, msg):
    import accelsim

    with pytest.raises(AccelsimError) as ei:
        call(accelsim, checkpoint)
    assert msg in str(ei.value) and "\n" not in str(ei.value)
