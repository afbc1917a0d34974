"""Choose per-layer winner rates from a winner-rate sensitivity sweep (JPnet paper, Section
III-A and V-C: "the winner rate is set empirically according to the tolerable accuracy loss").

Input: the frame of `accelsim sweep winner-rates` (columns layer, rate, accuracy and
unmasked_accuracy, the accuracy of the unmasked network on the same validation images; older
CSVs' baseline_accuracy is read as it). Per layer the chosen rate is the smallest swept rate r
such that r and every larger swept rate lose at most `budget_pct` percentage points of accuracy
against the unmasked network. Requiring the
larger rates to pass too keeps a lucky low-rate point (validation noise) from being chosen past
a failing one. A layer where no swept rate passes gets 1.0 (keep every activation).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from accelsim.analysis.sweep_names import current_sweep_names
from accelsim.errors import AccelsimError

__all__ = ["choose_winner_rates", "read_sweep", "as_json", "REQUIRED_COLUMNS"]

REQUIRED_COLUMNS = ("layer", "rate", "accuracy")
_TOL = 1e-9


def _unmasked(frame: pd.DataFrame, layer: str, rows: pd.DataFrame) -> float:
    """The unmasked accuracy: the unmasked_accuracy column, else the layer's rate-1.0 row."""
    if "unmasked_accuracy" in frame.columns:
        vals = rows["unmasked_accuracy"].dropna().unique()
        if len(vals) == 1:
            return float(vals[0])
        if len(vals) > 1:
            raise AccelsimError(f"sweep: layer {layer!r} has several unmasked accuracies "
                                f"{sorted(vals)}; one sweep per file")
    full = rows[(rows["rate"] - 1.0).abs() <= _TOL]
    if full.empty:
        raise AccelsimError(f"sweep: layer {layer!r} has no unmasked_accuracy and no rate 1.0 row "
                            "to compare against")
    return float(full["accuracy"].max())


def choose_winner_rates(sweep_frame: pd.DataFrame, budget_pct: float) -> dict[str, float]:
    """{layer: smallest rate whose accuracy drop (and every larger swept rate's drop) vs the
    unmasked network is at most budget_pct percentage points}, layers in sweep order."""
    if budget_pct is None or not math.isfinite(float(budget_pct)) or float(budget_pct) < 0:
        raise AccelsimError(f"--budget must be a finite number >= 0 (percentage points), "
                            f"got {budget_pct!r}")
    sweep_frame = current_sweep_names(sweep_frame)
    missing = [c for c in REQUIRED_COLUMNS if c not in sweep_frame.columns]
    if missing:
        raise AccelsimError(f"sweep: missing column(s) {', '.join(missing)}; expected the CSV of "
                            "`accelsim sweep winner-rates`")
    if sweep_frame.empty:
        raise AccelsimError("sweep: no rows")
    budget = float(budget_pct) / 100.0
    chosen: dict[str, float] = {}
    for layer, rows in sweep_frame.groupby("layer", sort=False):
        base = _unmasked(sweep_frame, str(layer), rows)
        # mean over repeated (layer, rate) rows, largest rate first
        acc = rows.groupby("rate")["accuracy"].mean().sort_index(ascending=False)
        rate = 1.0
        for r, a in acc.items():
            if base - a > budget + _TOL:
                break
            rate = float(r)
        chosen[str(layer)] = rate
    return chosen


def read_sweep(path) -> pd.DataFrame:
    """A winner-rate sweep CSV, checked for the columns the chooser needs."""
    p = Path(path)
    if not p.is_file():
        raise AccelsimError(f"--sweep {p}: file not found")
    try:
        frame = pd.read_csv(p)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise AccelsimError(f"--sweep {p}: not a readable CSV ({str(exc).splitlines()[0]})") \
            from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise AccelsimError(f"--sweep {p}: missing column(s) {', '.join(missing)}")
    for col in ("rate", "accuracy"):
        if not pd.api.types.is_numeric_dtype(frame[col]) or frame[col].isna().any():
            raise AccelsimError(f"--sweep {p}: column {col!r} must be numbers without gaps")
    frame["layer"] = frame["layer"].astype(str)
    return current_sweep_names(frame)


def as_json(rates: dict[str, float]) -> str:
    """The chosen rates as the JSON `accelsim sweep eps --winner-rates` reads."""
    return json.dumps(rates, indent=1)


# The grid `--winner-rates auto` sweeps: fine at the low end, where the layers differ.
AUTO_RATES = (0.02, 0.03, 0.05, 0.07, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)


def resolve_winner_rates(spec: str, checkpoint, *, budget: float = 0.5, data_dir=None,
                         seed: int = 0, val_size: int = 5000, echo=print) -> dict[str, float]:
    """Winner rates for a JP run: "auto" (sweep the checkpoint one layer at a time on a
    validation split of the training set, then choose_winner_rates with `budget`), a JSON
    object, or a JSON file holding one."""
    if spec != "auto":
        text = Path(spec).read_text() if Path(spec).is_file() else spec
        try:
            rates = json.loads(text)
        except json.JSONDecodeError:
            raise AccelsimError(f"--winner-rates {spec!r}: not 'auto', a JSON object or a JSON "
                                "file") from None
        if not isinstance(rates, dict) or not all(
            isinstance(v, (int, float)) and 0 < v <= 1 for v in rates.values()
        ):
            raise AccelsimError(f"--winner-rates {spec!r}: expected {{layer: rate in (0, 1]}}")
        return {str(k): float(v) for k, v in rates.items()}
    if checkpoint is None:
        raise AccelsimError("--winner-rates auto needs --from CHECKPOINT (the network to analyse)")
    from accelsim.analysis.sweeps import validation_set, winner_rate_sweep
    from accelsim.models.checkpoint import load_checkpoint
    from accelsim.models.train import transform_for
    from accelsim.models.usermodel import dataset_of

    model, info = load_checkpoint(checkpoint)
    model.eval()
    val = validation_set(dataset_of(info), val_size=val_size, seed=seed, data_dir=data_dir)
    frame = winner_rate_sweep(model, val, transform_for(info, train=False), AUTO_RATES)
    rates = choose_winner_rates(frame, budget)
    echo(f"winner rates chosen on {len(val)} validation images (budget {budget} points): "
         + ", ".join(f"{k} {v:g}" for k, v in rates.items()))
    return rates
