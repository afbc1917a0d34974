"""Rows for the ops a trace lists without simulating them, and the share of the network's
operations the simulated layers cover (docs/trace-format.md, section 2.2).

A listed op is a report row with zero cycles and zero energy, its operation count, and, for a
compute op the trace could not represent, its MACs counted as dense (the trace holds none of
its operands, so no sparsity is claimed for it): every MAC total includes it.
"""

from __future__ import annotations

import math

from accelsim.traces.unsimulated import OPS_PER_MAC, listed

KIND = "unsimulated"
KEEP = ("samples", "units", "peak_macs_per_cycle")  # the array and the run, not the layer


def layer_columns(row: dict, ops_listed: bool) -> dict:
    """The coverage columns of a simulated layer's row."""
    return {"simulated": True, "op": row["kind"], "ops": OPS_PER_MAC * row["dense_macs"],
            "ops_listed": ops_listed}


def op_row(template: dict, op: dict) -> dict:
    """A report row for one unsimulated op, shaped like `template` (a layer row of the same run):
    every figure zero except its operations and MACs."""
    row = {}
    for key, value in template.items():
        if key in KEEP:
            row[key] = value
        elif isinstance(value, bool):
            row[key] = value
        elif isinstance(value, (int, float)):
            row[key] = 0.0 if isinstance(value, float) else 0
        else:
            row[key] = value
    macs = float(op["macs"])
    row.update(layer=op["name"], kind=KIND, layer_index=-1, dense_macs=macs,
               effective_macs=macs, paper_estimate_macs=macs, weight_density=math.nan,
               act_density=math.nan, load_balance=math.nan, mask_scheme="none",
               topk_unit="none", weights_on_chip=True, simulated=False,
               op=f"{op['op']} ({op['category']})", ops=float(op["ops"]),
               ops_listed=True)
    return row


def with_unsimulated(meta: dict, layer_rows: list[list[dict]]) -> list[dict]:
    """All rows of one trace in execution order: each layer's rows (one per variant) with the
    unsimulated ops that ran before it placed in front, the rest at the end."""
    ops = listed(meta)
    for rows in layer_rows:
        for row in rows:
            row.update(layer_columns(row, ops is not None))
    if not ops or not layer_rows:
        return [row for rows in layer_rows for row in rows]
    out: list[dict] = []
    templates = layer_rows[0]
    for index in range(len(layer_rows) + 1):
        for op in ops:
            if op["after_layers"] == index:
                out += [op_row(t, op) for t in templates]
        if index < len(layer_rows):
            out += layer_rows[index]
    return out


def coverage_pct(ops, simulated, listed_flags) -> float:
    """100 x simulated operations / all operations; NaN where a trace did not list its other
    ops (coverage unknown)."""
    total = float(sum(ops))
    if not all(bool(f) for f in listed_flags) or total <= 0:
        return math.nan
    return 100.0 * float(sum(o for o, s in zip(ops, simulated) if s)) / total
