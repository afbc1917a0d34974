"""Sweep CSV columns as written today, from CSVs written before units were put in the names.

Today (docs/report.md, "Units"): accuracies and densities are fractions in [0, 1], MAC % is a
percentage (`mac_pct`), accuracy drops are percentage points (`accuracy_drop_pp`, the unit of
`sweep choose --budget`), and the accuracy with every mask off is `unmasked_accuracy` ("baseline"
is the no-skip array of the simulator's report). Older CSVs stored the drop as a fraction
(`accuracy_drop`), called the unmasked network `baseline_accuracy` / `baseline_mac_pct`, and the
static-threshold sweep stored `act_pct`. Every reader (the chooser, the figures) goes through
`current_sweep_names`, so both read the same.
"""

from __future__ import annotations

import pandas as pd

RENAMED = {"baseline_accuracy": "unmasked_accuracy", "baseline_mac_pct": "unmasked_mac_pct"}
RESCALED = {  # old column -> (today's column, factor from the old unit to today's)
    "accuracy_drop": ("accuracy_drop_pp", 100.0),  # fraction -> percentage points
    "act_pct": ("act_density", 0.01),  # percent -> fraction
}


def current_sweep_names(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with old sweep columns renamed and converted to today's units (a column that
    already has today's name is kept as it is)."""
    out = frame.rename(columns={o: n for o, n in RENAMED.items()
                                if o in frame.columns and n not in frame.columns})
    for old, (new, factor) in RESCALED.items():
        if old in out.columns and new not in out.columns:
            out = out.assign(**{new: pd.to_numeric(out[old], errors="coerce") * factor}).drop(columns=old)
    return out
