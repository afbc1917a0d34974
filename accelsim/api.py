"""The Python API behind `import accelsim`: simulate traces, summarise, open a trace, sweep.

The CLI is a thin layer over these functions; docs/api.md documents them (its examples are run
by tests/test_api.py). Errors are accelsim.errors.AccelsimError with the same one-line message
the CLI prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from accelsim.errors import AccelsimError

def trace_list(traces) -> list[str]:
    """One path or a sequence of paths -> list of existing trace files (else AccelsimError)."""
    items = [traces] if isinstance(traces, (str, Path)) else list(traces)
    if not items:
        raise AccelsimError("no trace given")
    for t in items:
        if not Path(t).is_file():
            raise AccelsimError(f"{t}: trace file not found")
    return [str(t) for t in items]


def resolve(arch: str = "eie64", set: Mapping[str, Any] | Sequence[str] | None = None,
            energy: str | None = None):
    """(ArchConfig, EnergyTable, canonical override list) of a preset or file and overrides."""
    from accelsim.arch import load_arch
    from accelsim.energy import load_energy_table
    from accelsim.provenance import overrides_list

    overrides = overrides_list(set)
    config = _cached(load_arch, str(arch), tuple(overrides))
    table = _cached(load_energy_table, energy or config.energy.table)
    return config, table, overrides


_RESOLVED: dict = {}


def _cached(load, spec: str, *args):
    """load(spec, *args) once per process while a file `spec` is unchanged (configurations and
    energy tables are frozen: sharing them is safe); a sweep resolves many points."""
    import os

    try:
        st = os.stat(spec)
        stamp = (os.path.abspath(spec), st.st_size, st.st_mtime_ns)
    except OSError:
        stamp = None  # a preset name
    key = (load.__name__, spec, args, stamp)
    if key not in _RESOLVED:
        if len(_RESOLVED) > 4096:
            _RESOLVED.clear()
        _RESOLVED[key] = load(spec, *args)
    return _RESOLVED[key]


def simulate(traces, arch: str = "eie64", set: Mapping[str, Any] | Sequence[str] | None = None,
             energy: str | None = None, *,
             progress: Callable[[str, str], None] | None = None):
    """Replay traces on an architecture and its baseline (skipping off): the report of `accelsim run`.

    traces: a path or a list of paths. arch: a preset name ("eie64", "cnvlutin") or a TOML file.
    set: overrides, {"eie.fifo_depth": 4} or ["eie.fifo_depth=4"]. energy: an energy table TOML
    (default: the arch's table). Returns a pandas DataFrame, a row per trace x layer x variant.
    """
    from accelsim.report import to_frame

    return to_frame(simulate_rows(traces, arch, set, energy, progress=progress))


def simulate_rows(traces, arch="eie64", set=None, energy=None, *, progress=None) -> list[dict]:
    """The rows of `simulate` as dicts (a sweep builds one table from many points)."""
    from accelsim.simulate import simulate_trace

    config, table, overrides = resolve(arch, set, energy)
    rows: list[dict] = []
    for t in trace_list(traces):
        rows += simulate_trace(t, config, table, on_layer=progress, source=str(arch),
                               overrides=overrides)
    return rows


def summary(report):
    """Per trace and architecture: cycles, energy, MAC %, speed-up and energy ratio against the
    baseline (the same array, skipping off) and against the dense and weight-pruned traces of the
    same model when they ran (docs/report.md). Reports written before the rename also work."""
    from accelsim.report import summary as _summary

    return _summary(report)


def open_trace(path):
    """Open a trace file lazily (accelsim.traces.reader.Trace): metadata now, layers on demand."""
    from accelsim.traces import open_trace as _open

    return _open(path)


def sweep(traces, grid: Mapping[str, Sequence[Any]], arch: str = "eie64",
          set: Mapping[str, Any] | Sequence[str] | None = None, energy: str | None = None, *,
          out: str | Path | None = None, scheduler: str | None = None, progress: bool = False):
    """Simulate every point of the product of `grid` ({"eie.num_pes": [16, 32], ...}) on every
    trace; one row per (trace, point) with a column per swept parameter (accelsim.sweep_arch).

    out: a .parquet/.csv/.json table; each point is also stored as it finishes in the parts
    folder beside it, so an interrupted sweep resumes. scheduler: "tcp://host:port" of a Dask
    scheduler (default: DASK_SCHEDULER_ADDRESS, else a local cluster, or in-process for a
    single point).
    """
    from accelsim.sweep_arch import run_sweep

    return run_sweep(traces, grid, arch=arch, set=set, energy=energy, out=out,
                     scheduler=scheduler, progress=progress)
