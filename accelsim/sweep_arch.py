"""Architecture sweeps: the product of parameter grids x traces, one simulation per point, run
as Dask tasks, each point's rows stored as it finishes so an interrupted sweep resumes
(accelsim.sweep_run: where points run, parts, resume, error rows).

A point is (trace, overrides). Its key is a hash of (trace content id, resolved configuration,
energy table, package version): the name of its Parquet part under `<out stem>.parts/`.
See docs/sweeps.md ("Architecture sweeps").
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from accelsim.errors import AccelsimError
from accelsim.sweep_run import Point, check_reachable, rows_frame, run_points, scheduler_address

MAX_POINTS = 10_000


# ---- definition ------------------------------------------------------------------------------


def parse_grid(items: Sequence[str]) -> dict[str, list[str]]:
    """CLI `--grid section.key=v1,v2,...` items -> {key: [raw values]} (checked by check_grid)."""
    grid: dict[str, list[str]] = {}
    for item in items:
        if "=" not in item:
            raise AccelsimError(f"--grid {item!r}: expected section.key=v1,v2,...")
        key, raw = (part.strip() for part in item.split("=", 1))
        values = [v.strip() for v in raw.split(",")]
        if not raw or any(v == "" for v in values):
            raise AccelsimError(f"--grid {item!r}: empty value (expected section.key=v1,v2,...)")
        if key in grid:
            raise AccelsimError(f"--grid {key}: given twice")
        grid[key] = values
    return grid


def check_grid(grid: Mapping[str, Sequence[Any]], arch: str, base: Sequence[str]) -> dict[str, list]:
    """{key: [typed values]}: every key an arch field, every value loadable with the base
    overrides (one line naming the grid item otherwise); duplicates dropped, order kept."""
    from accelsim.arch import _ALL_KEYS, _parse_override, _suggest, load_arch
    from accelsim.provenance import overrides_list

    if not grid:
        raise AccelsimError("--grid: no parameter to sweep (e.g. --grid eie.num_pes=16,32)")
    base_keys = {item.split("=", 1)[0].strip() for item in base}
    out: dict[str, list] = {}
    for key, values in grid.items():
        if key not in _ALL_KEYS:
            raise AccelsimError(f"--grid: unknown key {key!r}{_suggest(key, _ALL_KEYS)}")
        if key in base_keys:
            raise AccelsimError(f"--grid {key}: also given with --set")
        if isinstance(values, (str, bytes)) or not len(values):
            raise AccelsimError(f"--grid {key}: expected a non-empty list of values")
        typed = []
        for v in values:
            item = overrides_list({key: v})[0] if not isinstance(v, str) else f"{key}={v}"
            try:
                value = _parse_override(item)[2]
                load_arch(arch, [*base, item])
            except AccelsimError as exc:
                raise AccelsimError(f"--grid {item}: {str(exc).split(': ', 1)[-1]}") from None
            if value not in typed:
                typed.append(value)
        out[key] = typed
    return out


@dataclass(frozen=True)
class Plan:
    arch: str
    base: tuple[str, ...]  # --set overrides common to every point
    energy: str | None
    grid: dict[str, list]
    points: list[Point]  # spec: the trace's path
    definition: dict  # what makes two sweeps the same (stored as sweep.json)


def make_plan(traces, grid, arch="eie64", set=None, energy=None) -> Plan:
    from accelsim import __version__
    from accelsim.api import resolve, trace_list
    from accelsim.provenance import canonical_overrides, config_json, overrides_list

    paths = trace_list(traces)
    base = canonical_overrides(overrides_list(set))
    table = resolve(arch, base, energy)[1]
    typed = check_grid(grid, arch, base)
    count = len(paths) * int(__import__("math").prod(len(v) for v in typed.values()))
    if count > MAX_POINTS:
        raise AccelsimError(f"--grid: {count} points, more than the {MAX_POINTS} allowed")
    from accelsim.encoded import trace_content_id

    ids = {p: trace_content_id(p) for p in paths}
    points = []
    for path in paths:
        for combo in itertools.product(*typed.values()):
            params = tuple(zip(typed, combo))
            config = resolve(arch, [*base, *overrides_list(dict(params))], energy)[0]
            blob = json.dumps([ids[path], config_json(config), table.fingerprint(), __version__])
            points.append(Point(hashlib.sha256(blob.encode()).hexdigest()[:16], params, path,
                                {"trace": Path(path).name}))
    definition = {
        "traces": [ids[p] for p in paths], "arch": str(arch), "set": base,
        "grid": {k: list(v) for k, v in typed.items()}, "energy": table.fingerprint(),
        "version": __version__,
    }
    return Plan(str(arch), tuple(base), energy, typed, points, definition)


def simulate_point(arch: str, base: Sequence[str], energy: str | None, point: Point) -> list[dict]:
    """The per-layer rows of one point (its trace on the base arch with its overrides)."""
    from accelsim import api
    from accelsim.provenance import overrides_list

    return api.simulate_rows(point.spec, arch, [*base, *overrides_list(dict(point.params))], energy)


def run_sweep(traces, grid, arch="eie64", set=None, energy=None, *, out=None, scheduler=None,
              workers=None, progress=False, echo=None, per_layer=False):
    """Plan, resume from the stored parts, run the rest, return the table (one row per point;
    per_layer=True: the per-layer rows)."""
    address = scheduler_address(scheduler)
    if address and address != "in-process":
        check_reachable(address)
    plan = make_plan(traces, grid, arch, set, energy)
    task = functools.partial(simulate_point, plan.arch, plan.base, plan.energy)
    results = run_points(plan.points, task, plan.definition, list(plan.grid), out=out,
                         scheduler=scheduler, workers=workers, progress=progress, echo=echo)
    rows = rows_frame([r for rows in results for r in rows], list(plan.grid))
    table = rows if per_layer else point_table(rows, list(plan.grid))
    if out is not None:
        from accelsim.report import write_report

        write_report(table, out)
    return table


def point_table(rows, params: list[str]):
    """One row per point: its swept parameters, the sparse array's totals per inference and the
    ratios against its baseline (accelsim.report.summary, over all points at once), or
    its error."""
    import pandas as pd

    from accelsim.report import run_keys, summary

    failed = rows["error"].astype(bool)
    ok = rows[~failed]
    extra = ["point", "point_seconds", "arch_config", *params]
    out = []
    if len(ok):
        summ = summary(ok.drop(columns=["error", "point", "point_seconds", *params]))
        keys = run_keys(ok)
        first = ok.drop_duplicates(subset=keys)[keys + extra]
        summ = summ.merge(first, on=keys, how="left", validate="one_to_one")
        summ["energy_pj"] = summ["energy_uj"] * 1e6
        summ["error"] = ""
        out.append(summ)
    bad = rows[failed].drop_duplicates(subset=["point"])
    if len(bad):
        out.append(bad[["trace", "point", "error", "point_seconds", *params]])
    table = pd.concat(out, ignore_index=True) if out else pd.DataFrame()
    order = {key: i for i, key in enumerate(rows["point"].drop_duplicates())}
    table = table.sort_values("point", key=lambda c: c.map(order), kind="stable")
    lead = ["trace", *params, "cycles", "energy_uj"]
    return table[[c for c in lead if c in table] + [c for c in table if c not in lead]].reset_index(drop=True)
