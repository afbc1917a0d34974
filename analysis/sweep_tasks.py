"""Winner-rate and eps sweeps as Dask tasks (accelsim.sweep_run): each evaluation, and each
fine-tuning run before it, is one point, stored as it finishes and skipped on a rerun.

A point's task loads the checkpoint (fresh, masks as saved) and the validation images (once
per worker process), sets the point's masks and evaluates with analysis.sweeps.evaluate_model,
so the table equals the in-process winner_rate_sweep / eps_sweep. With fine-tuning
(`--fine-tune-epochs N`), the network is first retrained with the point's masks in place: the
zoo's jp recipe (its optimisers, L1 on the weights) without its weight pruning, for N epochs,
on the training split less the validation images (their accuracy is what the training loop
reports); the run lives in `<parts>/<point>.run/` and resumes like `accelsim train`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

from accelsim.errors import AccelsimError
from accelsim.sweep_run import Point


@dataclass(frozen=True)
class EvalSpec:
    """What every point of one sweep shares (picklable: it travels to the workers)."""

    checkpoint: str
    val_size: int
    seed: int
    limit: int | None
    data_dir: str | None
    batch_size: int
    fine_tune_epochs: int = 0
    fine_tune_recipe: str | None = None
    limit_train: int | None = None
    runs: str | None = None  # folder of the fine-tuning runs (the sweep's parts folder)

    def definition(self, kind: str, **extra) -> dict:
        """What makes two sweeps the same (sweep.json): the checkpoint's content, the
        validation images, the fine-tuning and the sweep's own values."""
        from accelsim import __version__
        from accelsim.models.checkpoint import read_info

        info = read_info(self.checkpoint)
        return {"sweep": kind, "checkpoint": hashlib.sha256(
                    json.dumps(info.get("tensors"), sort_keys=True).encode()).hexdigest()[:16],
                "val_size": self.val_size, "seed": self.seed, "limit": self.limit,
                "fine_tune": [self.fine_tune_epochs, self.fine_tune_recipe, self.limit_train]
                if self.fine_tune_epochs else None, **extra, "version": __version__}


def make_points(spec: EvalSpec, definition: dict, params: list[tuple]) -> list[Point]:
    """One Point per parameter tuple, keyed by the definition and its parameters."""
    out = []
    for p in params:
        blob = json.dumps([definition, p], sort_keys=True, default=str)
        out.append(Point(hashlib.sha256(blob.encode()).hexdigest()[:16], p, spec))
    return out


_VAL: dict = {}


def _setup(spec: EvalSpec, checkpoint=None):
    """(model, info, validation images, transform): the checkpoint loaded fresh, the images
    once per process. In a Dask worker torch uses one thread (workers share the cores)."""
    import torch

    from accelsim.analysis.sweeps import validation_set
    from accelsim.models.checkpoint import load_checkpoint
    from accelsim.models.train import transform_for
    from accelsim.models.usermodel import dataset_of

    try:
        from distributed import get_worker

        get_worker()
        torch.set_num_threads(1)
    except (ImportError, ValueError):
        pass
    model, info = load_checkpoint(checkpoint or spec.checkpoint)
    key = (dataset_of(info), spec.val_size, spec.seed, spec.data_dir, spec.limit)
    if key not in _VAL:
        _VAL.clear()
        _VAL[key] = validation_set(*key)
    return model, info, _VAL[key], transform_for(info, False)


def _fine_tuned(spec: EvalSpec, point: Point, model, info, val):
    """The model retrained with its masks as they are now (see the module docstring), or the
    model itself without fine-tuning."""
    if not spec.fine_tune_epochs:
        return model
    from accelsim.models.checkpoint import load_checkpoint, save_checkpoint
    from accelsim.models.recipes import get_recipe
    from accelsim.models.train import train
    from accelsim.models.usermodel import is_user_model

    name = info["model"]
    if is_user_model(name):
        raise AccelsimError(f"--fine-tune-epochs: fine-tuning runs the zoo's jp recipe; {name} "
                            "is not a zoo model")
    run = Path(spec.runs) / f"{point.key}.run"
    start = run / "start"
    if not (start / "checkpoint.json").is_file():
        save_checkpoint(start, model, {k: v for k, v in info.items() if k != "tensors"})
    rec = get_recipe(name, "jp", spec.fine_tune_recipe)
    rec = replace(rec, prune=None, val_size=spec.val_size,
                  jp=replace(rec.jp, winner_rates={}, scale_dropout=False))
    train(name, "jp", run, recipe=rec, from_checkpoint=start, data_dir=spec.data_dir,
          epochs=spec.fine_tune_epochs, seed=spec.seed, limit_train=spec.limit_train,
          test_set=val, progress=False, threads=None, command=["accelsim", "sweep"])
    return load_checkpoint(run / "checkpoint")[0]


# ---- winner rates ------------------------------------------------------------------------------


def winner_rate_point(spec: EvalSpec, point: Point) -> list[dict]:
    """Layer None: the unmasked network; else exact top-k at `rate` on that layer's mask (the
    others as the checkpoint has them), fine-tuned first when asked."""
    from accelsim.analysis.sweeps import _all_off, evaluate_model, select_groups

    p = dict(point.params)
    model, info, val, tf = _setup(spec)
    if p["layer"] is None:
        _all_off(model)
        res = evaluate_model(model, val, tf, spec.batch_size)
        return [{"accuracy": res.accuracy, "num_samples": res.num_samples, "mac_pct": res.mac_pct}]
    mask, fed = select_groups(model, [p["layer"]])[p["layer"]]
    mask.configure("topk", p["rate"])
    model = _fine_tuned(spec, point, model, info, val)
    mask, fed = select_groups(model, [p["layer"]])[p["layer"]]
    mask.configure("topk", p["rate"])
    res = evaluate_model(model, val, tf, spec.batch_size)
    return [{"accuracy": res.accuracy, "num_samples": res.num_samples, "mac_pct": res.mac_pct,
             "act_density": res.density[fed[0]]}]


def winner_rate_points(spec: EvalSpec, groups: list[str], rates: list[float]):
    params = [(("layer", None), ("rate", None))]
    params += [(("layer", g), ("rate", float(r))) for g in groups for r in rates]
    definition = spec.definition("winner-rates", layers=groups, rates=[float(r) for r in rates])
    return make_points(spec, definition, params), definition


def winner_rate_table(results: list[list[dict]]):
    """The columns of analysis.sweeps.winner_rate_sweep from the points' rows (the first
    point is the unmasked network), plus `error` and `point_seconds` per row."""
    import pandas as pd

    base = results[0][0]
    frame = pd.DataFrame([rows[0] for rows in results[1:]])
    for col in ("accuracy", "num_samples", "mac_pct", "act_density"):
        if col not in frame:
            frame[col] = math.nan
    frame["unmasked_accuracy"] = base.get("accuracy", math.nan)
    frame["accuracy_drop_pp"] = 100.0 * (frame["unmasked_accuracy"] - frame["accuracy"])
    frame["unmasked_mac_pct"] = base.get("mac_pct", math.nan)
    frame["error"] = [r[0]["error"] or base["error"] for r in results[1:]]
    cols = ["layer", "rate", "accuracy", "num_samples", "mac_pct", "act_density",
            "unmasked_accuracy", "accuracy_drop_pp", "unmasked_mac_pct", "error", "point_seconds"]
    return frame[cols]


# ---- eps ---------------------------------------------------------------------------------------


def eps_point(spec: EvalSpec, rates: dict, point: Point) -> list[dict]:
    """Scope None: exact top-k on every studied mask (the reference); else threshold
    prediction with subsample rate eps on the scope's masks ("all": every studied one),
    exact top-k on the others, fine-tuned first when asked."""
    from accelsim.analysis.sweeps import dynamic_groups, evaluate_model

    p = dict(point.params)
    model, info, val, tf = _setup(spec)

    def configure(m):
        groups = dynamic_groups(m, rates or None)
        names = [] if p["scope"] is None else list(groups) if p["scope"] == "all" else [p["scope"]]
        for g, (mask, _, r) in groups.items():
            if g in names:
                mask.configure("threshold-prediction", r, eps=p["eps"])
            else:
                mask.configure("topk", r)
        return groups, names

    configure(model)
    if p["scope"] is not None:
        model = _fine_tuned(spec, point, model, info, val)
    groups, names = configure(model)
    res = evaluate_model(model, val, tf, spec.batch_size)
    fed = {g: groups[g][1][0] for g in groups}
    row = {"accuracy": res.accuracy, "num_samples": res.num_samples, "mac_pct": res.mac_pct,
           "densities": json.dumps({g: [res.density[f], res.elements[f]] for g, f in fed.items()})}
    if names:
        row["winner_rate"] = sum(groups[g][2] for g in names) / len(names)
    return [row]


def eps_points(spec: EvalSpec, groups: list[str], eps_values: list[float], rates: dict):
    scopes = ["all", *groups]
    params = [(("scope", None), ("eps", None))]
    params += [(("scope", s), ("eps", float(e))) for s in scopes for e in eps_values]
    definition = spec.definition("eps", scopes=scopes, eps=[float(e) for e in eps_values],
                                 winner_rates=rates)
    return make_points(spec, definition, params), definition


def _scope_density(densities: str | None, names: list[str]) -> float:
    if not densities:
        return math.nan
    d = json.loads(densities)
    total = sum(d[g][1] for g in names)
    return sum(d[g][0] * d[g][1] for g in names) / total


def eps_table(results: list[list[dict]], groups: list[str]):
    """The columns of analysis.sweeps.eps_sweep (the first point is the exact reference)."""
    import pandas as pd

    ref = results[0][0]
    rows = []
    for res in results[1:]:
        r = res[0]
        names = list(groups) if r["scope"] == "all" else [r["scope"]]
        rows.append({
            "scope": r["scope"], "eps": r["eps"], "accuracy": r.get("accuracy", math.nan),
            "num_samples": r.get("num_samples", math.nan), "mac_pct": r.get("mac_pct", math.nan),
            "act_density": _scope_density(r.get("densities"), names),
            "winner_rate": r.get("winner_rate", math.nan),
            "topk_accuracy": ref.get("accuracy", math.nan),
            "accuracy_drop_pp": 100.0 * (ref.get("accuracy", math.nan) - r.get("accuracy", math.nan)),
            "topk_act_density": _scope_density(ref.get("densities"), names),
            "error": r["error"] or ref["error"], "point_seconds": r["point_seconds"],
        })
    return pd.DataFrame(rows)


# ---- a whole sweep: checks, points, table (the CLI and accelsim.sweep_winner_rates / sweep_eps) --


def prepare(checkpoint, *, val_size: int, seed: int, limit: int | None, data_dir, batch_size: int,
            out, scheduler: str | None, fine_tune_epochs: int, fine_tune_recipe: str | None,
            limit_train: int | None, check):
    """Check the scheduler and the checkpoint (and `check(model)`), cheaply and before any
    point runs; (the points' shared EvalSpec, the loaded model). out: the sweep's table (its
    parts folder beside it keeps the points and the fine-tuning runs), or None."""
    from accelsim.models.checkpoint import load_checkpoint, resolve_checkpoint_dir
    from accelsim.sweep_run import check_reachable, parts_dir, scheduler_address

    if fine_tune_epochs and out is None:
        raise AccelsimError("fine-tuning needs an output table: its runs are kept in the parts "
                            "folder beside it")
    address = scheduler_address(scheduler)
    if address and address != "in-process":
        check_reachable(address)
    model, info = load_checkpoint(checkpoint)
    check(model)
    if fine_tune_epochs:
        from accelsim.models.recipes import get_recipe

        get_recipe(info["model"], "jp", fine_tune_recipe)  # a zoo model with that recipe
    spec = EvalSpec(str(resolve_checkpoint_dir(checkpoint)), val_size, seed, limit, data_dir,
                    batch_size, fine_tune_epochs, fine_tune_recipe, limit_train,
                    None if out is None else str(parts_dir(out)))
    return spec, model


def run_winner_rates(spec: EvalSpec, model, layers, rates: list[float], *, out=None,
                     scheduler=None, workers=None, progress=False, echo=None):
    """(table, points' rows) of a winner-rate sweep: the unmasked network, then each masked
    layer (`layers`, default all) at each rate."""
    import functools

    from accelsim.analysis.sweeps import select_groups
    from accelsim.sweep_run import run_points

    groups = list(select_groups(model, layers))
    points, definition = winner_rate_points(spec, groups, rates)
    results = run_points(points, functools.partial(winner_rate_point, spec), definition,
                         ["layer", "rate"], out=out, scheduler=scheduler, workers=workers,
                         progress=progress, echo=echo)
    return winner_rate_table(results), results


def run_eps(spec: EvalSpec, model, eps_values: list[float], rates: dict | None, *, out=None,
            scheduler=None, workers=None, progress=False, echo=None):
    """(table, points' rows) of an eps sweep: exact top-k everywhere, then threshold
    prediction at each eps on all studied masks and on each alone."""
    import functools

    from accelsim.analysis.sweeps import dynamic_groups
    from accelsim.sweep_run import run_points

    groups = list(dynamic_groups(model, rates))
    points, definition = eps_points(spec, groups, eps_values, rates or {})
    results = run_points(points, functools.partial(eps_point, spec, rates or {}), definition,
                         ["scope", "eps"], out=out, scheduler=scheduler, workers=workers,
                         progress=progress, echo=echo)
    return eps_table(results, groups), results
