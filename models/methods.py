"""Pruning methods as hook objects plugged into the one training loop (models/train.py).

The loop calls, in order: `setup` (once, fresh start only), per epoch `optimizer_spec` and
`on_epoch_start`, per iteration `penalty` (added to the loss), `after_backward` (gradient
penalties), then the loop zeroes masked gradients, steps, re-applies the weight masks and calls
`after_step`; `on_epoch_end`; `finish` (end of training). A method only overrides what it changes.
Schedule state that cannot be derived from the epoch number lives in `state_dict()` so a resumed
run continues exactly.

Weight masks are bool buffers `weight_mask` (and `bias_mask` for filter pruning) on the
Conv2d/Linear modules; the trace recorder reads `weight_mask`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from accelsim.maskfn import kept_count
from accelsim.models import penalties as P
from accelsim.models.recipes import Recipe

MASK_BUFFERS = ("weight_mask", "bias_mask")


# ---- weight masks ------------------------------------------------------------------------------
def compute_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Conv2d/Linear layers in execution order (the zoo's helper when the model is a zoo model)."""
    try:
        from accelsim.models.zoo import compute_layers as zoo_layers
    except ImportError:  # pragma: no cover - zoo not installed
        zoo_layers = None
    if zoo_layers is not None:
        try:
            return list(zoo_layers(model))
        except Exception:  # not a zoo model: fall back to registration order
            pass
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def set_mask(module: nn.Module, mask: torch.Tensor, which: str = "weight") -> None:
    """Register (or replace) `<which>_mask` as a bool buffer and zero the masked values now."""
    param = getattr(module, which)
    mask = mask.to(device=param.device, dtype=torch.bool).reshape(param.shape)
    name = f"{which}_mask"
    if name in module._buffers:
        module._buffers[name] = mask
    else:
        module.register_buffer(name, mask)
    with torch.no_grad():
        param.mul_(mask)


def get_mask(module: nn.Module, which: str = "weight") -> torch.Tensor | None:
    return module._buffers.get(f"{which}_mask")


def apply_masks(model: nn.Module) -> None:
    """Multiply every masked parameter by its mask (after each optimizer step)."""
    with torch.no_grad():
        for mod in model.modules():
            for which in ("weight", "bias"):
                m = mod._buffers.get(f"{which}_mask")
                if m is not None:
                    getattr(mod, which).mul_(m)


def mask_gradients(model: nn.Module) -> None:
    """Zero the gradients of masked parameters (after backward, before the step)."""
    for mod in model.modules():
        for which in ("weight", "bias"):
            m = mod._buffers.get(f"{which}_mask")
            p = getattr(mod, which, None) if m is not None else None
            if p is not None and p.grad is not None:
                p.grad.mul_(m)


def mask_buffer_names(model: nn.Module) -> list[str]:
    """State-dict keys of the mask buffers (e.g. "fc1.weight_mask")."""
    return [f"{n}.{b}" if n else b for n, mod in model.named_modules()
            for b in MASK_BUFFERS if b in mod._buffers]


def register_masks_from_state(model: nn.Module, state: dict) -> None:
    """Create the mask buffers named in a state dict so load_state_dict(strict=True) works."""
    mods = dict(model.named_modules())
    for key, t in state.items():
        mod_name, _, buf = key.rpartition(".")
        if buf in MASK_BUFFERS and mod_name in mods:
            set_mask(mods[mod_name], t, buf[: -len("_mask")])


def weight_density(module: nn.Module) -> float:
    m = get_mask(module)
    if m is None:
        return float((module.weight != 0).float().mean())
    return float(m.float().mean())


def prune_layer(module: nn.Module, density: float | None = None, q: float | None = None) -> dict:
    """Han's rule on one layer: keep |w| >= q x std(w) (intersected with any existing mask).

    With `density`, q is solved so exactly round(density x n) weights survive (magnitude order,
    ties by torch.topk); returns {"q", "threshold", "weight_density"} for the checkpoint."""
    w = module.weight.detach()
    old = get_mask(module)
    a = w.abs().flatten()
    if old is not None:
        a = torch.where(old.flatten(), a, torch.full_like(a, -1.0))
    std = float(w.float().std(unbiased=False))
    if density is not None:
        n_keep = kept_count(a.numel(), density)
        idx = torch.topk(a, n_keep, largest=True, sorted=True).indices
        keep = torch.zeros(a.numel(), dtype=torch.bool, device=a.device)
        keep[idx] = True
        thr = float(a[idx[-1]])
        q = thr / std if std > 0 else 0.0
    else:
        thr = P.han_threshold(w, q)
        keep = a >= thr
    set_mask(module, keep.reshape(w.shape))
    return {"q": q, "threshold": thr, "weight_density": float(keep.float().mean())}


# ---- activation masks and dropout in front of each compute layer -------------------------------
def dropout_in_front(model: nn.Module, input_shape: tuple) -> dict[str, nn.Dropout]:
    """{compute layer name: the Dropout module executed between it and the previous compute
    layer}, found by one eval-mode forward on zeros with hooks (works for any module order)."""
    from accelsim.models.forward import one_forward

    order: list[tuple[str, nn.Module]] = []
    one_forward(model, input_shape, [(m, "pre", lambda mod, inp, n=n: order.append((n, mod)))
                                     for n, m in model.named_modules()
                                     if isinstance(m, (nn.Conv2d, nn.Linear, nn.Dropout))])
    out, pending = {}, None
    for n, m in order:
        if isinstance(m, nn.Dropout):
            pending = m
        else:
            if pending is not None:
                out[n] = pending
            pending = None
    return out


def activation_masks(model: nn.Module) -> dict:
    try:
        from accelsim.models.zoo import activation_masks as zoo_masks
    except ImportError:  # pragma: no cover
        return {}
    return dict(zoo_masks(model))


def configure_mask(mask: nn.Module, scheme: str, winner_rate=None, threshold=None, eps=None):
    """Set an ActivationMask's configuration in place (attributes as in mask_params())."""
    if hasattr(mask, "configure"):
        mask.configure(scheme, 1.0 if winner_rate is None else float(winner_rate), threshold, eps)
        return
    mask.scheme = scheme
    mask.winner_rate = 1.0 if winner_rate is None else float(winner_rate)
    mask.threshold = None if threshold is None else float(threshold)
    mask.eps = None if eps is None else float(eps)


def use_threshold_prediction(model: nn.Module, eps: float) -> int:
    """Inference option (JPnet Eq. 11): every top-k mask predicts its threshold from an
    eps-subsample instead, same winner rate. Returns how many masks changed."""
    n = 0
    for m in activation_masks(model).values():
        if m.scheme == "topk":
            configure_mask(m, "threshold-prediction", m.winner_rate, None, eps)
            n += 1
    return n


def activation_config(model: nn.Module) -> dict:
    return {name: dict(m.mask_params()) for name, m in activation_masks(model).items()}


def apply_activation_config(model: nn.Module, cfg: dict) -> None:
    masks = activation_masks(model)
    for name, p in cfg.items():
        if name not in masks:
            raise KeyError(name)
        configure_mask(masks[name], p.get("scheme", "off"), p.get("winner_rate"),
                       p.get("threshold"), p.get("eps"))


def dropout_config(model: nn.Module) -> dict:
    return {n: float(m.p) for n, m in model.named_modules() if isinstance(m, nn.Dropout)}


def apply_dropout_config(model: nn.Module, cfg: dict) -> None:
    mods = dict(model.named_modules())
    for n, p in cfg.items():
        mods[n].p = float(p)


# ---- the methods ---------------------------------------------------------------------------
@dataclass(frozen=True)
class OptimSpec:
    name: str
    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False


class Method:
    """Plain training ("dense"); the base every method overrides selectively."""

    name = "dense"

    def __init__(self, recipe: Recipe):
        self.recipe = recipe
        self.layer_info: dict[str, dict] = {}  # per-layer q / threshold / density (JSON)

    # schedule
    def optimizer_spec(self, epoch: int) -> OptimSpec:
        r = self.recipe
        lr = r.lr * r.lr_gamma ** sum(1 for m in r.lr_milestones if epoch >= m)
        return OptimSpec(r.optimizer, lr, r.momentum, r.weight_decay, r.nesterov)

    def setup(self, ctx) -> None:
        pass

    def on_epoch_start(self, ctx) -> None:
        pass

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        return None

    def after_backward(self, ctx) -> None:
        pass

    def after_step(self, ctx) -> None:
        pass

    def on_epoch_end(self, ctx) -> None:
        pass

    def finish(self, ctx) -> None:
        pass

    # persistence
    def params(self) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {"layer_info": self.layer_info}

    def load_state_dict(self, state: dict) -> None:
        self.layer_info = dict(state.get("layer_info", {}))


class _PruneSchedule:
    """Iterative magnitude pruning rounds at the start of given epochs (Han's prune/retrain)."""

    def __init__(self, method: Method, params):
        self.m = method
        self.p = params

    def maybe_prune(self, ctx, epochs=None) -> None:
        epochs = tuple(self.p.prune_epochs if epochs is None else epochs)
        if ctx.epoch not in epochs:
            return
        r, n = epochs.index(ctx.epoch), len(epochs)
        self.prune_round(ctx, (r + 1) / n)

    def prune_round(self, ctx, frac: float) -> None:
        layers = dict(ctx.layers)
        for name in list(self.p.weight_density) + list(self.p.q):
            if name not in layers:
                raise ValueError(f"recipe names layer {name!r}, model has {sorted(layers)}")
        for name, mod in ctx.layers:
            if name in self.p.weight_density:
                info = prune_layer(mod, density=self.p.weight_density[name] ** frac)
            elif name in self.p.q:
                info = prune_layer(mod, q=self.p.q[name] * frac)
            else:
                continue
            self.m.layer_info[name] = info
        ctx.log("pruned: " + ", ".join(f"{n} {i['weight_density']:.3f}"
                                       for n, i in self.m.layer_info.items()))


class WeightPruning(Method):
    """Han et al.: L2 (the recipe's weight decay), prune |w| < q x std per layer, retrain at the
    recipe's (1/10) learning rate, iterate; dropout scaled by D_o sqrt(C_ir / C_io)."""

    name = "wp"

    def __init__(self, recipe):
        super().__init__(recipe)
        self.sched = _PruneSchedule(self, recipe.prune)
        self.dropout_orig: dict[str, float] = {}

    def setup(self, ctx):
        self.dropout_orig = {n: float(d.p) for n, d in ctx.dropouts.items()}

    def on_epoch_start(self, ctx):
        before = ctx.epoch in tuple(self.recipe.prune.prune_epochs)
        self.sched.maybe_prune(ctx)
        if before:
            layers = dict(ctx.layers)
            for n, d in ctx.dropouts.items():
                if n in self.dropout_orig:
                    mod = layers[n]
                    c_o = mod.weight.numel()
                    c_r = int(get_mask(mod).sum()) if get_mask(mod) is not None else c_o
                    d.p = P.han_dropout(self.dropout_orig[n], c_r, c_o)

    def params(self):
        return {"prune": self.recipe.prune.__dict__, "dropout_original": self.dropout_orig}

    def state_dict(self):
        return {**super().state_dict(), "dropout_orig": self.dropout_orig}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.dropout_orig = dict(state.get("dropout_orig", {}))


class JointPruning(Method):
    """JPnet: top-k activation masks + L1 weights + threshold weight pruning (static masks);
    warm-up with the original optimizer at reduced lr, then Adadelta (or, with
    fine_tune_optimizer="recipe", the original optimizer at the warm-up rate)."""

    name = "jp"

    def __init__(self, recipe):
        super().__init__(recipe)
        self.p = recipe.jp
        self.sched = _PruneSchedule(self, recipe.prune) if recipe.prune else None

    def optimizer_spec(self, epoch):
        r = self.recipe
        decay = r.lr_gamma ** sum(1 for m in r.lr_milestones if epoch >= m)
        if self.p.fine_tune_optimizer not in ("adadelta", "recipe"):
            raise ValueError(f"jp fine_tune_optimizer {self.p.fine_tune_optimizer!r}: "
                             "choose adadelta or recipe")
        if epoch < self.p.warmup_epochs or self.p.fine_tune_optimizer == "recipe":
            return OptimSpec(r.optimizer, r.lr * self.p.warmup_lr_scale * decay, r.momentum,
                             r.weight_decay, r.nesterov)
        return OptimSpec("adadelta", self.p.adadelta_lr * decay, 0.0, r.weight_decay)

    def setup(self, ctx):
        masks = activation_masks(ctx.model)
        for name, rate in self.p.winner_rates.items():
            if name not in masks:
                raise ValueError(f"no activation mask in front of {name!r} (have {sorted(masks)})")
            configure_mask(masks[name], self.p.mask_scheme, rate, None, self.p.eps)
            if self.p.scale_dropout and name in ctx.dropouts:
                d = ctx.dropouts[name]
                d.p = P.jp_dropout(d.p, rate)
        for name, theta in self.p.thresholds.items():
            if name not in masks:
                raise ValueError(f"no activation mask in front of {name!r} (have {sorted(masks)})")
            if name in self.p.winner_rates:
                raise ValueError(f"{name!r} has both a winner rate and a static threshold")
            configure_mask(masks[name], "static-threshold", 1.0, theta, None)

    def on_epoch_start(self, ctx):
        if self.sched:
            self.sched.maybe_prune(ctx)

    def after_backward(self, ctx):
        if self.p.l1_alpha:
            for _, mod in ctx.layers:
                if mod.weight.grad is not None:
                    mod.weight.grad.add_(P.l1_grad(mod.weight.detach(), self.p.l1_alpha))

    def params(self):
        return {"jp": self.p.__dict__, "prune": self.recipe.prune.__dict__ if self.sched else None}


class StaticThreshold(Method):
    """One theta for all masked activations (JPnet V-B baseline); optional fine-tuning."""

    name = "static-threshold"

    def setup(self, ctx):
        for m in activation_masks(ctx.model).values():
            configure_mask(m, "static-threshold", 1.0, self.recipe.static.theta, None)

    def params(self):
        return {"theta": self.recipe.static.theta}


class L0Pruning(Method):
    """l0 surrogate + l2 until `prune_epoch`, then prune small weights, fine-tune with l2 only."""

    name = "l0"

    def __init__(self, recipe):
        super().__init__(recipe)
        self.p = recipe.l0
        self.sched = _PruneSchedule(self, recipe.prune)
        self.alphas: dict[str, float] = {}

    def _alphas(self, ctx) -> dict[str, float]:
        if not self.alphas:
            sizes = {n: m.weight.numel() for n, m in ctx.layers}
            n_ref = self.p.n_ref or max(sizes.values())
            self.alphas = {n: P.l0_layer_alpha(self.p.alpha0, s, n_ref) for n, s in sizes.items()}
        return self.alphas

    def on_epoch_start(self, ctx):
        self.sched.maybe_prune(ctx, epochs=(self.p.prune_epoch,))

    def after_backward(self, ctx):
        regularise = ctx.epoch < self.p.prune_epoch
        alphas = self._alphas(ctx)
        for n, mod in ctx.layers:
            g = mod.weight.grad
            if g is None:
                continue
            w = mod.weight.detach()
            if regularise:
                g.add_(P.l0_grad(w, alphas[n], self.p.beta, self.p.alpha2))
            else:
                g.add_(w, alpha=2.0 * self.p.alpha2)

    def finish(self, ctx):
        if not any(get_mask(m) is not None for _, m in ctx.layers):
            self.sched.prune_round(ctx, 1.0)  # training ended before the prune epoch

    def params(self):
        return {"l0": self.p.__dict__, "layer_alpha0": self.alphas,
                "prune": self.recipe.prune.__dict__}


class GrowingRegularization(Method):
    """GReg-1 / GReg-2 (Wang et al.): grad += lambda (.) W per group, lambda grown on the pruned
    groups every K_u iterations until tau, held K_s iterations, then removed; fine-tune after."""

    def __init__(self, recipe, variant: int):
        super().__init__(recipe)
        self.name = f"greg{variant}"
        self.variant = variant
        self.p = recipe.greg
        self.dens = recipe.prune.weight_density
        self.phase = "uniform" if variant == 2 else "pick"
        self.it = 0  # iterations in the current phase
        self.lam: dict[str, torch.Tensor] = {}
        self.pruned: dict[str, torch.Tensor] = {}  # bool per group: True = to be pruned

    def _groups_score(self, w: torch.Tensor) -> torch.Tensor:
        a = w.detach().abs()
        return a if self.p.structure == "unstructured" else a.flatten(1).mean(1)

    def _pick(self, ctx) -> None:
        for n, mod in ctx.layers:
            s = self._groups_score(mod.weight)
            sel = torch.zeros(s.numel(), dtype=torch.bool)
            if n in self.dens:
                n_keep = kept_count(s.numel(), self.dens[n])
                order = torch.argsort(s.flatten(), descending=True, stable=True)
                sel[order[n_keep:]] = True
            self.pruned[n] = sel.reshape(s.shape)
            if n not in self.lam:
                self.lam[n] = torch.zeros(s.shape)

    def setup(self, ctx):
        for n, mod in ctx.layers:
            self.lam[n] = torch.zeros(self._groups_score(mod.weight).shape)
        if self.variant == 1:
            self._pick(ctx)
            self.phase = "grow"

    def after_backward(self, ctx):
        if self.phase == "finetune":
            return
        for n, mod in ctx.layers:
            g = mod.weight.grad
            if g is not None and n in self.lam:
                lam = P.expand_group_lambda(self.lam[n].to(g), mod.weight)
                g.add_(P.greg_grad(mod.weight.detach(), lam))

    def after_step(self, ctx):
        if self.phase == "finetune":
            return
        self.it += 1
        p = self.p
        if self.phase == "uniform":
            if self.it % p.k_u == 0:
                for n in self.lam:
                    self.lam[n] += p.uniform_delta
                if max(float(v.max()) for v in self.lam.values()) >= p.uniform_max:
                    self._pick(ctx)
                    for n in self.lam:
                        self.lam[n] = torch.where(self.pruned[n], self.lam[n],
                                                  torch.full_like(self.lam[n], p.kept_lambda))
                    self.phase, self.it = "grow", 0
        elif self.phase == "grow":
            if self.it % p.k_u == 0:
                for n in self.lam:
                    self.lam[n] = self.lam[n] + p.delta_lambda * self.pruned[n].float()
                if max(float(v.max()) for v in self.lam.values()) > p.tau:
                    self.phase, self.it = "hold", 0
        elif self.phase == "hold" and self.it >= p.k_s:
            self._remove(ctx)

    def _remove(self, ctx):
        for n, mod in ctx.layers:
            if n not in self.dens:
                continue
            keep = ~self.pruned[n]
            if self.p.structure == "filter":
                set_mask(mod, keep.reshape(-1, *([1] * (mod.weight.dim() - 1)))
                         .expand_as(mod.weight))
                if mod.bias is not None:
                    set_mask(mod, keep, "bias")
            else:
                set_mask(mod, keep)
            self.layer_info[n] = {"weight_density": weight_density(mod),
                                  "final_lambda_max": float(self.lam[n].max())}
        self.phase, self.it = "finetune", 0
        ctx.log(f"{self.name}: removed pruned groups, fine-tuning")

    def finish(self, ctx):
        if self.phase != "finetune":
            if not self.pruned:
                self._pick(ctx)
            ctx.log(f"warning: {self.name} schedule unfinished at the end (phase {self.phase}); "
                    "removing the pruned groups now")
            self._remove(ctx)

    def params(self):
        return {"greg": self.p.__dict__, "weight_density": self.dens, "phase": self.phase}

    def state_dict(self):
        return {**super().state_dict(), "phase": self.phase, "it": self.it,
                "lam": dict(self.lam), "pruned": dict(self.pruned)}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.phase, self.it = state["phase"], int(state["it"])
        self.lam, self.pruned = dict(state["lam"]), dict(state["pruned"])


def make_method(recipe: Recipe) -> Method:
    m = recipe.method
    if m == "dense":
        return Method(recipe)
    if m == "wp":
        return WeightPruning(recipe)
    if m == "jp":
        return JointPruning(recipe)
    if m == "static-threshold":
        return StaticThreshold(recipe)
    if m == "l0":
        return L0Pruning(recipe)
    if m in ("greg1", "greg2"):
        return GrowingRegularization(recipe, int(m[-1]))
    raise ValueError(f"unknown method {m!r}")
