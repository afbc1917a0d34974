"""accelsim: replay traces of pruned networks on cycle-level sparse accelerator models.

Kept free of torch and numba imports so that `accelsim --help` starts fast.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("accelsim")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
