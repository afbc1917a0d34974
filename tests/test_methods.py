"""Pruning methods: penalty gradients vs autograd, Han/JPnet formulas, masks in a real model."""

import math

import pytest
import torch

from accelsim.models import methods as M
from accelsim.models import penalties as P
from accelsim.models import zoo
from accelsim.models.recipes import GRegParams, PruneParams, get_recipe
from accelsim.models.train import TrainContext


def _autograd(fn, w):
    w = w.clone().requires_grad_(True)
    fn(w).backward()
    return w.grad


def test_l0_gradient_matches_autograd():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(30, 20, generator=g, dtype=torch.float64) * 0.1
    for alpha0, beta, alpha2 in [(1e-5, 20.0, 1e-4), (0.3, 5.0, 0.0), (1.0, 10.0, 0.5)]:
        ref = _autograd(lambda t: P.l0_penalty(t, alpha0, beta, alpha2), w)
        torch.testing.assert_close(P.l0_grad(w, alpha0, beta, alpha2), ref, rtol=1e-12, atol=0)


def test_l0_layer_alpha_scales_with_sqrt_of_size():
    assert P.l0_layer_alpha(1e-5, 235200, 235200) == pytest.approx(1e-5)
    assert P.l0_layer_alpha(1e-5, 1000, 250000) == pytest.approx(1e-5 * math.sqrt(0.004))


@pytest.mark.parametrize("per", ["weight", "filter"])
def test_greg_gradient_matches_autograd(per):
    g = torch.Generator().manual_seed(1)
    w = torch.randn(8, 3, 5, 5, generator=g, dtype=torch.float64)
    lam = torch.rand(w.shape if per == "weight" else (8,), generator=g, dtype=torch.float64)
    lam_b = P.expand_group_lambda(lam, w)
    ref = _autograd(lambda t: P.greg_penalty(t, lam_b), w)
    torch.testing.assert_close(P.greg_grad(w, lam_b), ref, rtol=1e-12, atol=0)
    if per == "filter":  # a filter's gradient is lambda of that filter times its weights
        torch.testing.assert_close(P.greg_grad(w, lam_b)[3], lam[3] * w[3])


def test_l1_gradient_matches_autograd_off_zero():
    w = torch.tensor([-2.0, -0.5, 0.25, 3.0], dtype=torch.float64)
    ref = _autograd(lambda t: P.l1_penalty(t, 0.01), w)
    torch.testing.assert_close(P.l1_grad(w, 0.01), ref)


def test_han_threshold_and_dropout_formulas():
    w = torch.tensor([1.0, -1.0, 3.0, -3.0])  # std (population) = sqrt(5)
    assert P.han_threshold(w, 0.5) == pytest.approx(0.5 * math.sqrt(5.0))
    # Han: D_r = D_o sqrt(C_ir / C_io); LeNet-300-100 fc1 kept 8% of 235,200 connections
    assert P.han_dropout(0.5, 18816, 235200) == pytest.approx(0.5 * math.sqrt(0.08))
    assert P.han_dropout(0.5, 100, 100) == 0.5
    # JPnet Eq. 10: C_d sqrt(winner rate)
    assert P.jp_dropout(0.5, 0.25) == pytest.approx(0.25)


def test_prune_layer_q_rule_and_density_rule():
    torch.manual_seed(0)
    lin = torch.nn.Linear(50, 40)
    w0 = lin.weight.detach().clone()
    info = M.prune_layer(lin, q=0.7)
    thr = 0.7 * float(w0.std(unbiased=False))
    assert info["threshold"] == pytest.approx(thr)
    assert torch.equal(lin.weight_mask, w0.abs() >= thr)
    assert torch.all(lin.weight[~lin.weight_mask] == 0)
    # a second, stricter round by target density only removes more (masks only shrink)
    old = lin.weight_mask.clone()
    std_before = float(lin.weight.detach().std(unbiased=False))
    info = M.prune_layer(lin, density=0.1)
    assert int(lin.weight_mask.sum()) == 200
    assert not torch.any(lin.weight_mask & ~old)
    # the solved q reproduces the kept set under Han's rule
    assert info["q"] * std_before == pytest.approx(info["threshold"])
    assert float(lin.weight.detach().abs()[lin.weight_mask].min()) >= info["threshold"]


def _ctx(model, name, recipe):
    return TrainContext(model=model, layers=M.compute_layers(model),
                        dropouts=M.dropout_in_front(model, zoo.input_shape(name)), recipe=recipe,
                        input_shape=zoo.input_shape(name), steps_per_epoch=1)


def test_jp_topk_masks_losers_gradient_in_real_model():
    torch.manual_seed(0)
    model = zoo.build("mlp3", dropout=0.5)
    rec = get_recipe("mlp3", "jp")
    ctx = _ctx(model, "mlp3", rec)
    M.make_method(rec).setup(ctx)
    masks = zoo.activation_masks(model)
    assert masks["fc2"].scheme == "topk" and masks["fc2"].winner_rate == 0.12
    # JPnet Eq. 10 applied to the dropout in front of each masked layer
    assert ctx.dropouts["fc2"].p == pytest.approx(0.5 * math.sqrt(0.12))
    model.eval()
    masks["fc2"].keep_last = True
    x = torch.randn(1, 1, 28, 28)
    model(x).sum().backward()
    win = masks["fc2"].last_mask[0]
    assert int(win.sum()) == 36  # k = floor(0.12 * 300 + 0.5)
    g2 = model.fc2.weight.grad
    assert torch.all(g2[:, ~win] == 0)  # no gradient reaches fc2 through a loser
    assert torch.count_nonzero(g2[:, win]) > 0
    assert torch.all(model.fc1.weight.grad[~win] == 0)  # nor flows back to the loser's unit


def test_jp_static_input_threshold_beside_topk_masks():
    from dataclasses import replace

    model = zoo.build("mlp3", input_mask=True)
    rec = get_recipe("mlp3", "jp")
    rec = replace(rec, jp=replace(rec.jp, thresholds={"fc1": 0.5}))
    M.make_method(rec).setup(_ctx(model, "mlp3", rec))
    masks = zoo.activation_masks(model)
    assert masks["fc1"].mask_params() == {"scheme": "static-threshold", "winner_rate": 1.0,
                                          "threshold": 0.5, "eps": None}
    assert masks["fc2"].scheme == "topk"
    clash = replace(rec, jp=replace(rec.jp, thresholds={"fc2": 0.5}))
    with pytest.raises(ValueError, match="both a winner rate and a static threshold"):
        M.make_method(clash).setup(_ctx(zoo.build("mlp3"), "mlp3", clash))


def test_static_threshold_configures_every_mask():
    model = zoo.build("lenet4")
    rec = get_recipe("lenet4", "static-threshold")
    M.make_method(rec).setup(_ctx(model, "lenet4", rec))
    params = [m.mask_params() for m in zoo.activation_masks(model).values()]
    assert len(params) == 3
    assert all(p["scheme"] == "static-threshold" and p["threshold"] == 0.1 for p in params)


def _drive_greg(variant, structure, steps):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 8, 3), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 4 * 4, 4))
    rec = get_recipe("mlp3", f"greg{variant}")
    from dataclasses import replace
    rec = replace(rec, greg=GRegParams(structure=structure, delta_lambda=0.1, tau=0.5, k_u=2,
                                       k_s=3, uniform_delta=0.01, uniform_max=0.02),
                  prune=PruneParams(weight_density={"0": 0.25, "2": 0.5}))
    ctx = TrainContext(model=model, layers=M.compute_layers(model), dropouts={}, recipe=rec,
                       input_shape=(2, 6, 6), steps_per_epoch=1)
    meth = M.make_method(rec)
    meth.setup(ctx)
    phases = []
    for _ in range(steps):
        model.zero_grad()
        model(torch.randn(4, 2, 6, 6)).sum().backward()
        before = model[0].weight.grad.clone()
        meth.after_backward(ctx)
        if meth.phase != "finetune":
            lam = P.expand_group_lambda(meth.lam["0"], model[0].weight)
            torch.testing.assert_close(model[0].weight.grad - before,
                                       lam * model[0].weight.detach())
        meth.after_step(ctx)
        phases.append(meth.phase)
    return model, meth, phases


@pytest.mark.parametrize("variant", [1, 2])
def test_greg_schedule_grows_holds_and_removes(variant):
    model, meth, phases = _drive_greg(variant, "unstructured", 40)
    assert phases[-1] == "finetune"
    assert "hold" in phases
    if variant == 2:
        assert phases[0] == "uniform"
        kept = meth.lam["0"][~meth.pruned["0"]]
        assert torch.allclose(kept, torch.full_like(kept, -1e-4))  # GReg-2: kept groups
    assert float(model[0].weight_mask.float().mean()) == pytest.approx(0.25, abs=1 / 144)
    assert float(model[2].weight_mask.float().mean()) == pytest.approx(0.5, abs=1 / 512)
    # the pruned groups are the ones lambda grew on
    assert meth.lam["0"][meth.pruned["0"]].min() > 0.5


def test_greg_filter_structure_prunes_whole_filters():
    model, meth, _ = _drive_greg(1, "filter", 40)
    wm = model[0].weight_mask
    per_filter = wm.flatten(1).all(1)
    assert torch.equal(per_filter, wm.flatten(1).any(1))  # all-or-nothing filters
    assert int(per_filter.sum()) == 2  # 25% of 8 filters kept
    assert torch.equal(model[0].bias_mask, per_filter)


def test_threshold_prediction_inference_option_switches_topk_masks():
    model = zoo.build("lenet4")
    zoo.set_winner_rates(model, {"conv2": 0.066, "fc1": 0.019})
    assert M.use_threshold_prediction(model, 0.1) == 2
    p = {n: m.mask_params() for n, m in zoo.activation_masks(model).items()}
    assert p["fc1"] == {"scheme": "threshold-prediction", "winner_rate": 0.019,
                        "threshold": None, "eps": 0.1}
    assert p["fc2"]["scheme"] == "off"  # masks that were off stay off


def test_every_recipe_round_trips_through_json_and_names_real_layers():
    import json

    from accelsim.models.recipes import list_recipes, recipe_from_dict

    for model_name, method, name in list_recipes():
        r = get_recipe(model_name, method, name)
        assert recipe_from_dict(json.loads(json.dumps(r.to_dict()))) == r
        layers = {n for n, _ in zoo.compute_layers(zoo.build(model_name))}
        if r.prune:
            assert set(r.prune.weight_density) <= layers
        if r.jp:
            assert set(r.jp.winner_rates) <= set(zoo.activation_masks(zoo.build(model_name)))
    with pytest.raises(Exception, match="unknown recipe"):
        get_recipe("mlp3", "jp", "slow")
