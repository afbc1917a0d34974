"""accelsim: replay traces of pruned networks on cycle-level sparse accelerator models.

The stable Python API (docs/api.md):

    import accelsim
    report = accelsim.simulate("net.trace.safetensors", arch="eie64", set={"eie.fifo_depth": 4})
    accelsim.summary(report)
    accelsim.open_trace("net.trace.safetensors")
    accelsim.sweep("net.trace.safetensors", grid={"eie.num_pes": [16, 32, 64]}, out="s.parquet")
    accelsim.sweep_winner_rates("runs/mlp3", rates=[0.1, 0.5, 1], out="rates.csv")
    accelsim.sweep_eps("runs/mlp3-jp", eps=[0.05, 0.2, 1], out="eps.csv")

Kept free of torch and numba imports so that `accelsim --help` starts fast: the functions load
their modules when called.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("accelsim")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["simulate", "summary", "open_trace", "sweep", "sweep_winner_rates", "sweep_eps",
           "load_arch", "load_energy_table", "AccelsimError", "__version__"]


# accelsim.api imports its heavy modules inside the functions: cheap to import here.
from accelsim.api import open_trace, summary, sweep, sweep_eps, sweep_winner_rates  # noqa: E402

_LAZY = {"load_arch": "accelsim.arch", "load_energy_table": "accelsim.energy",
         "AccelsimError": "accelsim.errors"}


def __getattr__(name):
    # `simulate` is the engine module accelsim.simulate, made callable (it calls
    # accelsim.api.simulate): imported on first use, so `import accelsim` stays light.
    if name == "simulate":
        from importlib import import_module

        return import_module("accelsim.simulate")
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'accelsim' has no attribute {name!r}")
