"""Points of a sweep as Dask tasks, each stored as a part as it finishes, resumed on a rerun.

Why one module: architecture sweeps (accelsim.sweep_arch) and the activation-pruning sweeps
with their fine-tuning runs (accelsim.analysis.sweep_tasks) fan out the same way. A sweep is a
list of points (each with a key: the name of its part) and a task, a picklable callable
`task(point) -> list of row dicts`. Here:

- where it runs: in this process (`scheduler="in-process"`, or a single point), on a local
  Dask cluster of worker processes (the default), or on an existing cluster (`--scheduler
  tcp://HOST:PORT`, or $DASK_SCHEDULER_ADDRESS). An address that is not reachable, or where no
  Dask scheduler answers, is one line within seconds;
- a point that raises becomes an error row (its message in `error`) and the sweep goes on; a
  worker that dies mid-point has its task rerun by the scheduler elsewhere;
- with an output path, each point's rows go to `<out stem>.parts/<key>.parquet` as they arrive
  (atomically), beside `sweep.json`, the sweep's definition. A rerun with the same definition
  prints `resuming: K of N points done` and computes only the rest; a folder holding another
  sweep's parts is refused, saying what differs.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from accelsim.errors import AccelsimError

PART_SUFFIX = ".parquet"
DEFINITION = "sweep.json"
CONNECT_TIMEOUT_S = 3
SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"
POINT_COLUMNS = ("point", "error", "point_seconds")  # after the swept parameters, last


@dataclass(frozen=True)
class Point:
    """One point: its key (the part's name), the swept (column, value) pairs, what the task
    needs (`spec`), and the identity columns an error row keeps (`label`)."""

    key: str
    params: tuple[tuple[str, Any], ...]
    spec: Any = None
    label: dict = field(default_factory=dict, hash=False, compare=False)


def run_guarded(task: Callable, point: Point) -> list[dict]:
    """task(point)'s rows, each with the point's parameters, key, error ("") and seconds; or
    one error row naming what went wrong (the sweep goes on)."""
    start = time.perf_counter()
    try:
        rows = task(point)
        error = ""
    except Exception as exc:  # noqa: BLE001 - a failing point is a row, the sweep goes on
        rows = [dict(point.label)]
        error = str(exc) if isinstance(exc, AccelsimError) else f"{type(exc).__name__}: {exc}"
    extra = {**dict(point.params), "point": point.key, "error": error,
             "point_seconds": time.perf_counter() - start}
    for row in rows:
        row.update(extra)
    return rows


def rows_frame(rows: list[dict], params: Sequence[str]):
    """The table of point rows: their own columns (accelsim.report.to_frame order), then the
    swept parameters and the point's key, error and seconds."""
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

    def __init__(self, folder: Path, definition: dict, params: Sequence[str]):
        self.folder = folder
        self.definition = definition
        self.params = list(params)

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

        frame = rows_frame(rows, self.params)
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


# ---- where the points run --------------------------------------------------------------------


def scheduler_address(scheduler: str | None) -> str | None:
    """The scheduler to use: the option, else $DASK_SCHEDULER_ADDRESS, else None (local)."""
    return scheduler or os.environ.get(SCHEDULER_ENV) or None


def check_reachable(address: str) -> None:
    """A plain TCP connect, then a Dask handshake, each bounded: a refused or unroutable
    address, or a server there that is not a Dask scheduler, fails in seconds with one line
    naming it, before any trace or checkpoint is read."""
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
    if parts.scheme == "tcp":
        _dask_handshake(f"tcp://{parts.hostname}:{port}", where)


def _dask_handshake(address: str, where: str) -> None:
    """Ask the server who it is, over Dask's own protocol, within CONNECT_TIMEOUT_S seconds
    in all (a silent server, or one speaking another protocol, never answers as Dask does)."""
    import asyncio

    from distributed.comm import connect  # imported before the clock starts

    async def identity():
        comm = await connect(address, timeout=CONNECT_TIMEOUT_S)
        try:
            await comm.write({"op": "identity"})
            return await comm.read()
        finally:
            comm.abort()

    try:
        reply = asyncio.run(asyncio.wait_for(identity(), CONNECT_TIMEOUT_S))
    except (asyncio.TimeoutError, TimeoutError):
        reply = None
    except Exception:  # noqa: BLE001 - whatever it sent, it is not a Dask scheduler's answer
        reply = None
    if not (isinstance(reply, dict) and reply.get("type") == "Scheduler"):
        raise AccelsimError(f"{where}: no Dask scheduler answers there (something listens, but "
                            f"it did not answer Dask's handshake within {CONNECT_TIMEOUT_S} s)")


def _connect(address: str):
    from distributed import Client

    try:
        return Client(address, timeout=f"{CONNECT_TIMEOUT_S}s", set_as_default=False)
    except Exception as exc:  # noqa: BLE001 - whatever answered there, it is not usable
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    raise AccelsimError(f"--scheduler {address}: cannot reach the Dask scheduler ({reason})")


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


def execute(todo: list[Point], task: Callable, on_done, scheduler: str | None = None,
            workers: int | None = None, progress: bool = False, total: int = 0,
            done: int = 0) -> None:
    """Run run_guarded(task, point) for every point (in-process, on a local cluster or on
    `scheduler`); on_done(point, rows) is called in this process as each finishes."""
    bar = _Bar(progress, total or len(todo), done)
    address = scheduler_address(scheduler)
    try:
        if address == "in-process" or (address is None and len(todo) <= 1 and workers is None):
            for point in todo:
                on_done(point, run_guarded(task, point))
                bar.advance()
            return
        from distributed import as_completed

        client = _connect(address) if address else _local_client(workers)
        try:
            futures = {client.submit(run_guarded, task, p, key=f"accelsim-point-{p.key}",
                                     pure=False): p for p in todo}
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


def run_points(points: list[Point], task: Callable, definition: dict, params: Sequence[str], *,
               out=None, scheduler=None, workers=None, progress=False,
               echo=None) -> list[list[dict]]:
    """Resume from the parts beside `out` (when given), run the other points, store each as it
    finishes; every point's rows, in the order of `points`."""
    echo = echo or (lambda line: None)
    results: dict[str, list[dict]] = {}
    store = None
    if out is not None:
        store = PartStore(parts_dir(out), definition, params)
        stored = store.open()
        for p in points:
            if p.key in stored:
                try:
                    results[p.key] = store.read(p.key)
                except AccelsimError as exc:
                    echo(f"recomputing: {exc}")
        if results:
            echo(f"resuming: {len(results)} of {len(points)} points done "
                 f"(same sweep definition in {store.folder})")
    todo = [p for p in points if p.key not in results]

    def on_done(point: Point, rows: list[dict]) -> None:
        results[point.key] = rows
        if store is not None:
            store.write(point.key, rows)

    execute(todo, task, on_done, scheduler, workers, progress, len(points), len(results))
    errors = sum(bool(results[p.key][0]["error"]) for p in points)
    echo(f"{len(points)} points: {len(todo)} computed, {len(points) - len(todo)} reused, "
         f"{errors} errors")
    return [results[p.key] for p in points]
