"""accelsim: replay traces of pruned networks on cycle-level sparse accelerator models.

The stable Python API (docs/api.md):

    import accelsim
    report = accelsim.simulate("net.trace.safetensors", arch="eie64", set={"eie.fifo_depth": 4})
    accelsim.summary(report)
    accelsim.open_trace("net.trace.safetensors")
    accelsim.sweep("net.trace.safetensors", grid={"eie.num_pes": [16, 32, 64]}, out="s.parquet")

Kept free of torch and numba imports so that `accelsim --help` starts fast: the functions load
their modules when called.
"""

import sys
import types
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("accelsim")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["simulate", "summary", "open_trace", "sweep", "load_arch", "load_energy_table",
           "AccelsimError", "__version__"]
_API = {"simulate", "summary", "open_trace", "sweep"}
_LAZY = {"load_arch": "accelsim.arch", "load_energy_table": "accelsim.energy",
         "AccelsimError": "accelsim.errors"}


# accelsim.api imports its heavy modules inside the functions: cheap to import here.
from accelsim.api import open_trace, simulate, summary, sweep  # noqa: E402


def __getattr__(name):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'accelsim' has no attribute {name!r}")


class _Package(types.ModuleType):
    """Keeps the API functions when a submodule of the same name is imported: importing
    accelsim.simulate (the replay engine) would otherwise rebind accelsim.simulate."""

    def __setattr__(self, name, value):
        if name in _API and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
