"""Architecture sweeps: the product of parameter grids x traces, one simulation per point, run
as Dask tasks, each point's rows stored as it finishes so an interrupted sweep resumes.

A point is (trace, overrides). Its key is a hash of (trace content id, resolved configuration,
energy table, package version): the name of its Parquet part under `<out stem>.parts/`. The
parts folder also holds `sweep.json`, the sweep's definition; a rerun with the same definition
resumes (computes only the missing points), a different one is refused. A point that raises
becomes an error row; a worker that dies mid-point has its task retried by the scheduler.
See docs/sweeps.md ("Architecture sweeps").
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from accelsim.errors import AccelsimError

MAX_POINTS = 10_000
PART_SUFFIX = ".parquet"
DEFINITION = "sweep.json"
CONNECT_TIMEOUT_S = 3
SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"


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
class Point:
    trace: str  # path
    params: tuple[tuple[str, Any], ...]  # the swept (key, value) pairs
    key: str  # hash: the part's file name


@dataclass(frozen=True)
class Plan:
    arch: str
    base: tuple[str, ...]  # --set overrides common to every point
    energy: str | None
    grid: dict[str, list]
    points: list[Point]
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
            points.append(Point(path, params, hashlib.sha256(blob.encode()).hexdigest()[:16]))
    definition = {
        "traces": [ids[p] for p in paths], "arch": str(arch), "set": base,
        "grid": {k: list(v) for k, v in typed.items()}, "energy": table.fingerprint(),
        "version": __version__,
    }
    return Plan(str(arch), tuple(base), energy, typed, points, definition)


# ---- one point -------------------------------------------------------------------------------


POINT_COLUMNS = ("point", "error", "point_seconds")  # after the swept parameters, last


def run_point(point: Point, arch: str, base: Sequence[str], energy: str | None) -> list[dict]:
    """Per-layer rows of one point (dicts: tables are built once, for the parts and the
    result), or one error row naming what went wrong."""
    from accelsim.api import simulate_rows
    from accelsim.provenance import overrides_list

    params = dict(point.params)
    start = time.perf_counter()
    try:
        rows = simulate_rows(point.trace, arch, [*base, *overrides_list(params)], energy)
        error = ""
    except Exception as exc:  # noqa: BLE001 - a failing point is a row, the sweep goes on
        rows = [{"trace": Path(point.trace).name}]
        error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, AccelsimError) else str(exc)
    extra = {**params, "point": point.key, "error": error,
             "point_seconds": time.perf_counter() - start}
    for row in rows:
        row.update(extra)
    return rows


def rows_frame(rows: list[dict], params: Sequence[str]):
    """The per-layer table of point rows: report columns (accelsim.report.to_frame order),
    then the swept parameters and the point's key, error and seconds."""
    from accelsim.report import to_frame

    frame = to_frame(rows)
    tail = [c for c in (*params, *POINT_COLUMNS) if c in frame.columns]
    return frame[[c for c in frame.columns if c not in tail] + tail]


# ---- stored parts ----------------------------------------------------------------------------


def parts_dir(out: str | Path) -> Path:
    out = Path(out)
    return out.parent / f"{out.name.split('.')[0]}.parts"


class PartStore:
    """The parts folder of a sweep: sweep.json and one Parquet part per finished point."""

    def __init__(self, folder: Path, definition: dict):
        self.folder = folder
        self.definition = definition

    def open(self) -> set[str]:
        """Create or check the folder; the keys of the points already stored."""
        from accelsim.atomic import atomic_write, make_output_dir

        make_output_dir(self.folder)
        spec = self.folder / DEFINITION
        if spec.exists():
            try:
                old = json.loads(spec.read_text())
            except (OSError, ValueError):
                raise AccelsimError(f"{spec}: unreadable sweep definition; remove the folder") from None
            if old != self.definition:
                which = [k for k in self.definition if old.get(k) != self.definition[k]]
                raise AccelsimError(
                    f"{self.folder}: holds the parts of another sweep ({', '.join(which)} "
                    "differ); refusing to mix them: use another --out or remove the folder")
        else:
            if any(self.folder.glob(f"*{PART_SUFFIX}")):
                raise AccelsimError(f"{self.folder}: holds parts but no {DEFINITION}; refusing")
            text = json.dumps(self.definition, indent=1, sort_keys=True)
            atomic_write(spec, lambda tmp: Path(tmp).write_text(text))
        return {p.name[: -len(PART_SUFFIX)] for p in self.folder.glob(f"*{PART_SUFFIX}")}

    def write(self, key: str, rows: list[dict]) -> None:
        from accelsim.atomic import atomic_write

        frame = rows_frame(rows, list(self.definition["grid"]))
        atomic_write(self.folder / f"{key}{PART_SUFFIX}",
                     lambda tmp: frame.to_parquet(tmp, index=False), fsync=False)

    def read(self, key: str) -> list[dict]:
        import pandas as pd

        path = self.folder / f"{key}{PART_SUFFIX}"
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 - a damaged part is recomputed, not trusted
            raise AccelsimError(f"{path}: unreadable part ({str(exc).splitlines()[0]})") from None
        return frame.to_dict("records")


# ---- execution -------------------------------------------------------------------------------


def scheduler_address(scheduler: str | None) -> str | None:
    """The scheduler to use: the option, else $DASK_SCHEDULER_ADDRESS, else None (local)."""
    return scheduler or os.environ.get(SCHEDULER_ENV) or None


def check_reachable(address: str) -> None:
    """A plain TCP connect first: a refused or unroutable address fails in seconds, with one
    line naming it, before any trace is read or Dask is imported."""
    import socket
    from urllib.parse import urlsplit

    where = f"--scheduler {address}"
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme not in ("tcp", "tls") or not parts.hostname:
        raise AccelsimError(f"{where}: expected tcp://HOST:PORT, 'in-process' or nothing (local)")
    try:
        port = parts.port or 8786
    except ValueError:
        raise AccelsimError(f"{where}: bad port") from None
    try:
        socket.create_connection((parts.hostname, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise AccelsimError(f"{where}: cannot reach the Dask scheduler ({reason})") from None


def _connect(address: str):
    from distributed import Client

    try:
        return Client(address, timeout=f"{CONNECT_TIMEOUT_S}s", set_as_default=False)
    except Exception as exc:  # noqa: BLE001 - whatever answered there, it is not usable
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise AccelsimError(f"--scheduler {address}: cannot reach the Dask scheduler ({reason})") from None


def _local_client(workers: int | None):
    from distributed import Client, LocalCluster

    n = workers or max(1, min(os.cpu_count() or 1, 4))
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=40)
    return Client(cluster, set_as_default=False)


class _Bar:
    """points done / total and the time left, on stderr (rich), when asked for."""

    def __init__(self, enabled: bool, total: int, done: int):
        self.progress = None
        if enabled and total:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeRemainingColumn)

            self.progress = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("points, left"), TimeRemainingColumn(),
                                     console=Console(stderr=True))
            self.progress.start()
            self.task = self.progress.add_task("sweep", total=total, completed=done)

    def advance(self) -> None:
        if self.progress is not None:
            self.progress.advance(self.task)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def execute(plan: Plan, todo: list[Point], on_done, scheduler: str | None = None,
            workers: int | None = None, progress: bool = False, done: int = 0) -> None:
    """Run the points (in-process, on a local cluster or on `scheduler`); on_done(point, frame)
    is called in this process as each finishes."""
    bar = _Bar(progress, len(plan.points), done)
    address = scheduler_address(scheduler)
    try:
        if address == "in-process" or (address is None and len(todo) <= 1 and workers is None):
            for point in todo:
                on_done(point, run_point(point, plan.arch, plan.base, plan.energy))
                bar.advance()
            return
        from distributed import as_completed

        client = _connect(address) if address else _local_client(workers)
        try:
            futures = {client.submit(run_point, p, plan.arch, plan.base, plan.energy,
                                     key=f"accelsim-point-{p.key}", pure=False): p for p in todo}
            for future in as_completed(list(futures), loop=client.loop):
                on_done(futures[future], future.result())
                bar.advance()
        finally:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None:
                cluster.close()
    finally:
        bar.close()


def run_sweep(traces, grid, arch="eie64", set=None, energy=None, *, out=None, scheduler=None,
              workers=None, progress=False, echo=None, per_layer=False):
    """Plan, resume from the stored parts, run the rest, return the table (one row per point;
    per_layer=True: the per-layer rows)."""

    address = scheduler_address(scheduler)
    if address and address != "in-process":
        check_reachable(address)
    plan = make_plan(traces, grid, arch, set, energy)
    echo = echo or (lambda line: None)
    results: dict[str, Any] = {}
    store = None
    if out is not None:
        store = PartStore(parts_dir(out), plan.definition)
        stored = store.open()
        for p in plan.points:
            if p.key in stored:
                try:
                    results[p.key] = store.read(p.key)
                except AccelsimError as exc:
                    echo(f"recomputing: {exc}")
        if results:
            echo(f"resuming: {len(results)} of {len(plan.points)} points done "
                 f"(same sweep definition in {store.folder})")
    todo = [p for p in plan.points if p.key not in results]

    def on_done(point: Point, rows: list[dict]) -> None:
        results[point.key] = rows
        if store is not None:
            store.write(point.key, rows)

    execute(plan, todo, on_done, scheduler, workers, progress, done=len(results))
    errors = sum(bool(results[p.key][0]["error"]) for p in plan.points)
    echo(f"{len(plan.points)} points: {len(todo)} computed, {len(plan.points) - len(todo)} "
         f"reused, {errors} errors")
    rows = rows_frame([r for p in plan.points for r in results[p.key]], list(plan.grid))
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
