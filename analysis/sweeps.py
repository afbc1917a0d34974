"""Activation-pruning sweeps of a checkpoint: winner-rate sensitivity, threshold-prediction
subsample rate, static vs dynamic masks (JPnet paper, Fig. 8, Fig. 9, Fig. 7).

Why here and not in the simulator: these sweeps measure accuracy, so they run the PyTorch model
(torch is imported by this module). Every measurement is taken on a validation split carved from
the TRAINING set (accelsim.models.data.train_val_split), never on the test set, so the choices
made from it (winner rates) do not leak test data. MAC % is exact: forward hooks count the
non-zero weight x non-zero activation pairs each sample really meets (see MacCounter).
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from accelsim.cli_options import parse_rates, parse_values  # noqa: F401 (kept in this API)
from accelsim.errors import AccelsimError

__all__ = [
    "parse_rates",
    "parse_values",
    "validation_set",
    "MacCounter",
    "EvalResult",
    "evaluate_model",
    "mask_groups",
    "select_groups",
    "dynamic_groups",
    "winner_rate_sweep",
    "eps_sweep",
    "static_vs_dynamic",
    "write_csv",
]

# ---- data -----------------------------------------------------------------------------------
def validation_set(dataset: str, val_size: int = 5000, seed: int = 0, data_dir=None,
                   limit: int | None = None):
    """The validation ImageSet: `val_size` images of the TRAINING split chosen by
    train_val_split(seed) (the same split a training run with that seed carves out); with
    `limit`, a seeded random `limit` of them. Never touches the test split."""
    from accelsim.models.data import load_dataset, train_val_split

    train = load_dataset(dataset, "train", data_dir)
    _, val_idx = train_val_split(len(train), int(val_size), int(seed))
    if limit is not None:
        if limit < 1:
            raise AccelsimError(f"--limit must be >= 1, got {limit}")
        if limit < len(val_idx):
            g = torch.Generator().manual_seed(int(seed) + 1)
            pick = torch.randperm(len(val_idx), generator=g)[:limit]
            val_idx = val_idx[pick].sort().values
    if len(val_idx) == 0:
        raise AccelsimError("--val-size must be >= 1")
    return train.subset(val_idx)


# ---- exact MAC counting ---------------------------------------------------------------------
def _effective_macs(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per-sample count (float64, shape (B,)) of (non-zero input, non-zero weight) pairs."""
    w = (module.weight != 0).to(torch.float32)
    if isinstance(module, nn.Conv2d):
        padding = module.padding
        if module.padding_mode != "zeros":  # reflect/replicate/circular pad with real data
            x = F.pad(x, module._reversed_padding_repeated_twice, mode=module.padding_mode)
            padding = 0
        nz = (x != 0).to(torch.float32)
        out = F.conv2d(nz, w, None, module.stride, padding, module.dilation, module.groups)
    else:
        nz = (x != 0).to(torch.float32)
        out = nz @ w.t()
    # each element is an exact small integer in float32; the sums need float64
    return out.to(torch.float64).reshape(out.shape[0], -1).sum(dim=1)


def _dense_macs(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Dense MACs of one sample (biases excluded, as in the paper's tables)."""
    per_out = module.weight[0].numel() if isinstance(module, nn.Conv2d) else module.in_features
    return int(y[0].numel()) * int(per_out)


class MacCounter:
    """Forward hooks on every Conv2d/Linear that sum, over the samples seen, the dense MACs, the
    effective MACs (non-zero weight x non-zero activation pairs: a conv2d of (input != 0) with
    (weight != 0), summed) and the non-zero fraction of each layer's input. Use as a context."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.layers = [(n, m) for n, m in model.named_modules()
                       if isinstance(m, (nn.Conv2d, nn.Linear))]
        self.reset()
        self._handles: list = []

    def reset(self) -> None:
        self.dense: dict[str, int] = {n: 0 for n, _ in self.layers}
        self.effective: dict[str, float] = {n: 0.0 for n, _ in self.layers}
        self.in_nonzero: dict[str, int] = {n: 0 for n, _ in self.layers}
        self.in_total: dict[str, int] = {n: 0 for n, _ in self.layers}
        self.samples = 0

    def _hook(self, name: str):
        def hook(module, args, output):
            x = args[0]
            self.dense[name] += _dense_macs(module, x, output) * int(x.shape[0])
            self.effective[name] += float(_effective_macs(module, x).sum())
            self.in_nonzero[name] += int((x != 0).sum())
            self.in_total[name] += int(x.numel())

        return hook

    def __enter__(self) -> "MacCounter":
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.layers]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def mac_pct(self) -> float:
        """Effective MACs of the whole network as a percentage of its dense MACs."""
        dense = sum(self.dense.values())
        return 100.0 * sum(self.effective.values()) / dense if dense else float("nan")

    def density(self, layer: str) -> float:
        """Non-zero fraction of the inputs `layer` received."""
        total = self.in_total[layer]
        return self.in_nonzero[layer] / total if total else float("nan")


@dataclass
class EvalResult:
    """One evaluation: accuracy on the validation images, exact MAC %, input densities."""

    accuracy: float
    num_samples: int
    mac_pct: float
    density: dict[str, float] = field(default_factory=dict)  # layer -> input non-zero fraction
    elements: dict[str, int] = field(default_factory=dict)  # layer -> input elements per sample


@torch.no_grad()
def evaluate_model(model: nn.Module, image_set, transform, batch_size: int = 500) -> EvalResult:
    """Accuracy (eval mode, every mask active) and exact MAC % on `image_set`."""
    from accelsim.models.data import make_batches

    was = model.training
    model.eval()
    correct = n = 0
    try:
        with MacCounter(model) as counter:
            for x, y in make_batches(image_set, batch_size, shuffle=False, transform=transform):
                correct += int((model(x).argmax(1) == y).sum())
                n += int(y.numel())
    finally:
        model.train(was)
    if n == 0:
        raise AccelsimError("validation set is empty")
    names = [name for name, _ in counter.layers]
    return EvalResult(
        accuracy=correct / n, num_samples=n, mac_pct=counter.mac_pct(),
        density={k: counter.density(k) for k in names},
        elements={k: counter.in_total[k] // n for k in names},
    )


# ---- masks ----------------------------------------------------------------------------------
def mask_groups(model: nn.Module) -> "OrderedDict[str, tuple[nn.Module, list[str]]]":
    """{name: (ActivationMask, layers it feeds)}, one entry per distinct mask in module
    registration order, named after the first layer it feeds (a residual block's conv1 and
    projection shortcut share one mask and one winner rate)."""
    from accelsim.models.zoo import activation_masks

    groups: OrderedDict[str, tuple[nn.Module, list[str]]] = OrderedDict()
    by_id: dict[int, str] = {}
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    fed_by = activation_masks(model)  # registration order = execution order for zoo models
    for layer in sorted(fed_by, key=lambda n: order.get(n, len(order))):
        mask = fed_by[layer]
        key = id(mask)
        if key in by_id:
            groups[by_id[key]][1].append(layer)
        else:
            by_id[key] = layer
            groups[layer] = (mask, [layer])
    if not groups:
        raise AccelsimError(f"{type(model).__name__}: the model has no activation masks")
    return groups


def select_groups(model: nn.Module, layers=None,
                  option: str = "--layer") -> "OrderedDict[str, tuple[nn.Module, list[str]]]":
    """mask_groups restricted to `layers` (any layer a mask feeds names its group); an unknown
    name is an error that lists the valid ones."""
    groups = mask_groups(model)
    if not layers:
        return groups
    owner = {layer: g for g, (_, fed) in groups.items() for layer in fed}
    chosen: OrderedDict = OrderedDict()
    for layer in layers:
        if layer not in owner:
            raise AccelsimError(f"{option}: unknown masked layer {layer!r}; valid: "
                                + ", ".join(owner))
        chosen[owner[layer]] = groups[owner[layer]]
    return OrderedDict((g, groups[g]) for g in groups if g in chosen)


def _snapshot(model: nn.Module) -> dict:
    return {g: dict(m.mask_params()) for g, (m, _) in mask_groups(model).items()}


def _restore(model: nn.Module, snap: dict) -> None:
    for g, (m, _) in mask_groups(model).items():
        p = snap[g]
        m.configure(p["scheme"], p["winner_rate"], p["threshold"], p["eps"])


def _all_off(model: nn.Module) -> None:
    for m, _ in mask_groups(model).values():
        m.configure("off")


def _progress(enabled: bool, total: int, description: str):
    """(context, advance(text)) for a rich progress bar on stderr, or no-ops."""
    if not enabled:
        return nullcontext(), (lambda text=None: None)
    from rich.console import Console
    from rich.markup import escape

    from accelsim.plaintext import visible
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    prog = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=False)
    task = prog.add_task(escape(visible(description)), total=total)

    def advance(text=None):
        prog.update(task, advance=1, description=escape(visible(text or description)))

    return prog, advance


# ---- the sweeps -----------------------------------------------------------------------------
def winner_rate_sweep(model: nn.Module, val_set, transform, rates, layers=None, *,
                      batch_size: int = 500, progress: bool = False) -> pd.DataFrame:
    """Fig. 8: for each masked layer (one at a time; the others keep their current setting) and
    each winner rate, exact top-k on that layer -> accuracy, MAC % and the layer's input density.

    Columns: layer, rate, accuracy, num_samples, mac_pct, act_density, unmasked_accuracy (every
    mask off), accuracy_drop_pp (unmasked - accuracy, in percentage points), unmasked_mac_pct.
    Units: docs/report.md ("Units").
    """
    groups = select_groups(model, layers)
    rates = [float(r) for r in rates]
    snap = _snapshot(model)
    ctx, advance = _progress(progress, 1 + len(groups) * len(rates), "winner-rate sweep")
    rows = []
    try:
        with ctx:
            _all_off(model)
            base = evaluate_model(model, val_set, transform, batch_size)
            advance("unmasked baseline")
            _restore(model, snap)
            for g, (mask, fed) in groups.items():
                for r in rates:
                    mask.configure("topk", r)
                    res = evaluate_model(model, val_set, transform, batch_size)
                    rows.append({"layer": g, "rate": r, "accuracy": res.accuracy,
                                 "num_samples": res.num_samples, "mac_pct": res.mac_pct,
                                 "act_density": res.density[fed[0]]})
                    advance(f"{g} rate {r:g}")
                _restore(model, snap)
    finally:
        _restore(model, snap)
    frame = pd.DataFrame(rows, columns=["layer", "rate", "accuracy", "num_samples", "mac_pct",
                                        "act_density"])
    frame["unmasked_accuracy"] = base.accuracy
    frame["accuracy_drop_pp"] = 100.0 * (base.accuracy - frame["accuracy"])
    frame["unmasked_mac_pct"] = base.mac_pct
    return frame


def dynamic_groups(model: nn.Module, winner_rates: dict | None = None):
    """{group: (mask, fed layers, winner rate)} of the masks to study: those named in
    `winner_rates` (any fed layer names its group), else the model's masks whose scheme is
    top-k or threshold prediction."""
    groups = mask_groups(model)
    out: OrderedDict = OrderedDict()
    if winner_rates:
        chosen = select_groups(model, list(winner_rates), "--winner-rates")
        owner = {layer: g for g, (_, fed) in groups.items() for layer in fed}
        for layer, rate in winner_rates.items():
            rate = float(rate)
            if not 0.0 < rate <= 1.0:
                raise AccelsimError(f"--winner-rates: rate {rate} of {layer!r} not in (0, 1]")
            g = owner[layer]
            if g in out and out[g][2] != rate:
                raise AccelsimError(f"--winner-rates: layers sharing the mask of {g!r} got "
                                    f"different rates {out[g][2]} and {rate}")
            out[g] = (chosen[g][0], chosen[g][1], rate)
        return OrderedDict((g, out[g]) for g in groups if g in out)
    for g, (m, fed) in groups.items():
        if m.scheme in ("topk", "threshold-prediction"):
            out[g] = (m, fed, float(m.winner_rate))
    if not out:
        raise AccelsimError("the checkpoint has no top-k or threshold-prediction activation "
                            "masks; pass --winner-rates (e.g. the JSON of `accelsim sweep choose`)")
    return out


def eps_sweep(model: nn.Module, val_set, transform, eps_values, winner_rates: dict | None = None,
              *, batch_size: int = 500, progress: bool = False) -> pd.DataFrame:
    """Fig. 9: threshold prediction from an eps-subsample (Eq. 11) instead of exact top-k, at
    the same winner rates; scope "all" switches every studied mask, scope <layer> only that one
    (the others stay exact top-k).

    Columns: scope, eps, accuracy, num_samples, mac_pct, act_density (measured non-zero fraction
    of the inputs of the scope's layers, which differs from the winner rate), winner_rate (mean
    over the scope), topk_accuracy (exact top-k everywhere), accuracy_drop_pp (topk_accuracy -
    accuracy, in percentage points), topk_act_density.
    """
    groups = dynamic_groups(model, winner_rates)
    eps_values = [float(e) for e in eps_values]
    snap = _snapshot(model)
    scopes = [("all", list(groups))] + [(g, [g]) for g in groups]
    ctx, advance = _progress(progress, 1 + len(scopes) * len(eps_values), "eps sweep")

    def exact():
        for m, _, r in groups.values():
            m.configure("topk", r)

    def scope_density(res: EvalResult, names) -> float:
        fed = [groups[g][1][0] for g in names]
        total = sum(res.elements[f] for f in fed)
        return sum(res.density[f] * res.elements[f] for f in fed) / total

    rows = []
    try:
        with ctx:
            exact()
            ref = evaluate_model(model, val_set, transform, batch_size)
            advance("exact top-k")
            for scope, names in scopes:
                for e in eps_values:
                    exact()
                    for g in names:
                        m, _, r = groups[g]
                        m.configure("threshold-prediction", r, eps=e)
                    res = evaluate_model(model, val_set, transform, batch_size)
                    rows.append({
                        "scope": scope, "eps": e, "accuracy": res.accuracy,
                        "num_samples": res.num_samples, "mac_pct": res.mac_pct,
                        "act_density": scope_density(res, names),
                        "winner_rate": sum(groups[g][2] for g in names) / len(names),
                        "topk_accuracy": ref.accuracy,
                        "accuracy_drop_pp": 100.0 * (ref.accuracy - res.accuracy),
                        "topk_act_density": scope_density(ref, names),
                    })
                    advance(f"{scope} eps {e:g}")
    finally:
        _restore(model, snap)
    return pd.DataFrame(rows)


def static_vs_dynamic(model: nn.Module, val_set, transform, thresholds, *, batch_size: int = 500,
                      progress: bool = False) -> pd.DataFrame:
    """Fig. 7: a static threshold theta (keep |a| > theta) on every mask, then exact dynamic
    top-k with each layer's winner rate set to the density the static threshold produced there.

    Columns: mode (static | dynamic), threshold, accuracy, num_samples, act_density (non-zero
    fraction of all masked layers' inputs together), mac_pct, layer_densities (JSON: group ->
    density).
    """
    import json

    groups = mask_groups(model)
    thresholds = [float(t) for t in thresholds]
    snap = _snapshot(model)
    ctx, advance = _progress(progress, 1 + 2 * len(thresholds), "static vs dynamic")

    def summary(res: EvalResult):
        fed = {g: f[0] for g, (_, f) in groups.items()}
        total = sum(res.elements[f] for f in fed.values())
        act = sum(res.density[f] * res.elements[f] for f in fed.values()) / total
        return act, {g: res.density[f] for g, f in fed.items()}

    rows = []

    def measure(mode: str, threshold: float) -> dict[str, float]:
        """Evaluate with the masks as set now; append the row; return the layer densities."""
        res = evaluate_model(model, val_set, transform, batch_size)
        act, dens = summary(res)
        rows.append({"mode": mode, "threshold": threshold, "accuracy": res.accuracy,
                     "num_samples": res.num_samples, "act_density": act,
                     "mac_pct": res.mac_pct, "layer_densities": json.dumps(dens)})
        return dens

    try:
        with ctx:
            _all_off(model)
            measure("unmasked", float("nan"))
            advance("unmasked")
            for t in thresholds:
                for m, _ in groups.values():
                    m.configure("static-threshold", threshold=t)
                dens = measure("static", t)
                advance(f"static theta {t:g}")
                for g, (m, _) in groups.items():
                    m.configure("topk", min(1.0, max(dens[g], 0.0)))
                measure("dynamic", t)
                advance(f"dynamic at theta {t:g}")
    finally:
        _restore(model, snap)
    return pd.DataFrame(rows)


# ---- output ---------------------------------------------------------------------------------
def write_csv(frame: pd.DataFrame, out) -> Path:
    """Write `frame` atomically (temp file + rename) to `out`."""
    out = Path(out)
    if not out.parent.exists():
        raise AccelsimError(f"--out {out}: directory {out.parent} does not exist")
    from accelsim.atomic import atomic_write

    return atomic_write(out, lambda tmp: frame.to_csv(tmp, index=False))
