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


# ---- activation-pruning sweeps of a checkpoint (torch-side: loaded when called) ---------------


def _sweep_checks(val_size, seed, limit, batch_size, fine_tune_epochs, limit_train, out) -> None:
    """The bounds the CLI's options enforce, as one-line AccelsimErrors naming the argument."""
    import click

    from accelsim import cli_options as O

    for name, value, kind in (("val_size", val_size, O.VAL_SIZE), ("seed", seed, O.SEED),
                              ("limit", limit, O.COUNT), ("batch_size", batch_size, O.BATCH),
                              ("fine_tune_epochs", fine_tune_epochs, click.IntRange(0, O.MAX_EPOCHS)),
                              ("limit_train", limit_train, O.COUNT)):
        if value is None and name in ("limit", "limit_train"):
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise AccelsimError(f"{name}: expected an integer, got {value!r}")
        try:
            kind.convert(value, None, None)
        except click.BadParameter as exc:
            raise AccelsimError(f"{name}: {exc.message}") from None
    if out is not None:
        from accelsim.atomic import check_output_file

        check_output_file(out, (".csv",), kind="sweep CSV")


def _values(values, name: str) -> list[float]:
    """A "start:stop:step" or comma string, or a sequence of numbers, in (0, 1]."""
    from accelsim.cli_options import parse_rates

    text = values if isinstance(values, str) else ",".join(str(v) for v in values)
    return parse_rates(text, name)


def _checkpoint_sweep(checkpoint, check, run, *, val_size, seed, limit, data_dir, batch_size,
                      out, scheduler, workers, fine_tune_epochs, fine_tune_recipe, limit_train,
                      progress):
    """Check the arguments, load the checkpoint (`check(model)`: the masks asked for exist),
    run(spec, model, ...) -> (table, rows) the points, write the CSV when asked."""
    from accelsim.analysis import sweep_tasks as T

    _sweep_checks(val_size, seed, limit, batch_size, fine_tune_epochs, limit_train, out)
    spec, model = T.prepare(checkpoint, val_size=val_size, seed=seed, limit=limit,
                            data_dir=data_dir, batch_size=batch_size, out=out,
                            scheduler=scheduler, fine_tune_epochs=fine_tune_epochs,
                            fine_tune_recipe=fine_tune_recipe, limit_train=limit_train,
                            check=check)
    frame, _ = run(spec, model, out=out, scheduler=scheduler, workers=workers,
                   progress=progress)
    if out is not None:
        from accelsim.analysis.sweeps import write_csv

        write_csv(frame, out)
    return frame


def sweep_winner_rates(checkpoint, rates="0.05:1:0.05", layers: Sequence[str] | None = None, *,
                       val_size: int = 5000, seed: int = 0, limit: int | None = None,
                       data_dir=None, batch_size: int = 500, out=None,
                       scheduler: str | None = None, workers: int | None = None,
                       fine_tune_epochs: int = 0, fine_tune_recipe: str = "quick",
                       limit_train: int | None = None, progress: bool = False):
    """Accuracy and MAC % against one masked layer's top-k winner rate, layer by layer: the
    table of `accelsim sweep winner-rates` (a pandas DataFrame, a row per layer x rate).

    checkpoint: a checkpoint or training run folder. rates: values in (0, 1], a list or
    "start:stop:step". layers: the masked layers to sweep (default all). Measured on `val_size`
    images carved from the training split (`limit`: a seeded random subset of them).
    out: a .csv written at the end; each point is also stored as it finishes in the parts
    folder beside it, so an interrupted sweep resumes. scheduler, workers: as accelsim.sweep.
    fine_tune_epochs: retrain with each point's masks first (needs out: the runs live in its
    parts folder), with the zoo's jp recipe `fine_tune_recipe`, on `limit_train` images.
    """
    from accelsim.analysis.sweep_tasks import run_winner_rates
    from accelsim.analysis.sweeps import select_groups

    rate_list = _values(rates, "rates")
    layers = [layers] if isinstance(layers, str) else list(layers or [])
    return _checkpoint_sweep(
        checkpoint, lambda m: select_groups(m, layers),
        lambda spec, model, **kw: run_winner_rates(spec, model, layers, rate_list, **kw),
        val_size=val_size, seed=seed, limit=limit, data_dir=data_dir, batch_size=batch_size,
        out=out, scheduler=scheduler, workers=workers, fine_tune_epochs=fine_tune_epochs,
        fine_tune_recipe=fine_tune_recipe, limit_train=limit_train, progress=progress)


def sweep_eps(checkpoint, eps="0.01,0.02,0.05,0.1,0.2,0.5,1",
              winner_rates: Mapping[str, float] | None = None, *, val_size: int = 5000,
              seed: int = 0, limit: int | None = None, data_dir=None, batch_size: int = 500,
              out=None, scheduler: str | None = None, workers: int | None = None,
              fine_tune_epochs: int = 0, fine_tune_recipe: str = "quick",
              limit_train: int | None = None, progress: bool = False):
    """Accuracy and kept activations against threshold prediction's subsample rate eps: the
    table of `accelsim sweep eps` (a row per scope x eps: all studied masks, then each alone).

    eps: values in (0, 1], a list or "start:stop:step". winner_rates: {layer: rate} of the
    masks to study (default: the checkpoint's top-k masks). The other arguments are those of
    sweep_winner_rates.
    """
    from accelsim.analysis.sweep_tasks import run_eps
    from accelsim.analysis.sweeps import dynamic_groups

    eps_values = _values(eps, "eps")
    rates = None
    if winner_rates is not None:
        if not isinstance(winner_rates, Mapping) or not winner_rates or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool)
                for v in winner_rates.values()):
            raise AccelsimError("winner_rates: expected a non-empty mapping of layer -> rate")
        rates = {str(k): float(v) for k, v in winner_rates.items()}
    return _checkpoint_sweep(
        checkpoint, lambda m: dynamic_groups(m, rates),
        lambda spec, model, **kw: run_eps(spec, model, eps_values, rates, **kw),
        val_size=val_size, seed=seed, limit=limit, data_dir=data_dir, batch_size=batch_size,
        out=out, scheduler=scheduler, workers=workers, fine_tune_epochs=fine_tune_epochs,
        fine_tune_recipe=fine_tune_recipe, limit_train=limit_train, progress=progress)
