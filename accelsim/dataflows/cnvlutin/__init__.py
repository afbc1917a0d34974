"""Cnvlutin-style bricks ("Cnvlutin: Ineffectual-Neuron-Free Deep Neural Network Computing"):
the [cnvlutin] section, its storage footprint and its registry entry.

kernel.py is the fast kernel, reference.py the per-cycle oracle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from accelsim.bounds import bounded
from accelsim.dataflows import Dataflow


@dataclass(frozen=True)
class CnvlutinSection:
    """[cnvlutin]: Cnvlutin-style units of neuron lanes working on zero-free bricks."""

    units: int = bounded(16, 1, 1024)
    lanes: int = bounded(16, 1, 1024)
    filters_per_unit: int = bounded(16, 1, 1024)
    brick_size: int = bounded(16, 1, 4096)


def _kernel(layer, **kw):
    from accelsim.dataflows.cnvlutin.kernel import simulate_cnvlutin

    return simulate_cnvlutin(layer, **kw)


def _reference(layer, **kw):
    from accelsim.dataflows.cnvlutin.reference import simulate_cnvlutin_reference

    return simulate_cnvlutin_reference(layer, **kw)


def weight_bytes(layer, arch) -> np.ndarray:
    """Bytes of (dense) weight storage in each unit."""
    units = arch.cnvlutin.units
    geo = layer.geometry
    rows = geo.weight_shape[0]
    per_row = int(np.prod(geo.weight_shape[1:]))
    rows_per_unit = math.ceil(rows / units)
    full = int(math.ceil(rows_per_unit * per_row * arch.arch.data_bits / 8))
    return np.full(units, full, dtype=np.int64)


DATAFLOW = Dataflow(
    name="cnvlutin",
    section=CnvlutinSection,
    layer_kinds=("linear", "conv2d"),
    kernel=_kernel,
    reference=_reference,
    storage_units=lambda sec: sec.units,
    weight_bytes=weight_bytes,
    multipliers=lambda sec: sec.units * sec.lanes * sec.filters_per_unit,
    doc="Cnvlutin-style zero-free activation bricks, dense weights",
)
