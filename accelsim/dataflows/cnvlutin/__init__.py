"""Cnvlutin-style bricks ("Cnvlutin: Ineffectual-Neuron-Free Deep Neural Network Computing"):
the [cnvlutin] section, its storage footprint and its registry entry.

kernel.py is the fast kernel, reference.py the per-cycle oracle.
"""

from __future__ import annotations

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
    pack_taps: bool = False  # deal bricks of several taps into one brick group (not DaDianNao's way)


def _kernel(layer, **kw):
    from accelsim.dataflows.cnvlutin.kernel import simulate_cnvlutin

    return simulate_cnvlutin(layer, **kw)


def _reference(layer, **kw):
    from accelsim.dataflows.cnvlutin.reference import simulate_cnvlutin_reference

    return simulate_cnvlutin_reference(layer, **kw)


def weight_bytes(layer, arch) -> np.ndarray:
    """(units,) bytes of dense weight storage in each unit: filter mm of a conv group lives in
    unit (mm mod F) // filters_per_unit (F = units x filters_per_unit filters per pass), each
    weight memory.weight_entry_bits wide."""
    sec = arch.cnvlutin
    geo = layer.geometry
    groups = geo.groups if geo.kind == "conv2d" else 1
    per_group = geo.weight_shape[0] // groups
    per_row = int(np.prod(geo.weight_shape[1:]))
    f = sec.units * sec.filters_per_unit
    unit_of = (np.arange(per_group) % f) // sec.filters_per_unit
    rows = groups * np.bincount(unit_of, minlength=sec.units).astype(np.int64)
    return -(-rows * per_row * arch.memory.weight_entry_bits // 8)


def operand_load(part, sec, weight_mode: str) -> dict:
    """Loading a matmul's per-sample operand as a layer's filters (docs/hardware-model.md,
    "Transformer layers"): every element is read from the activation memory and written, dense,
    into the synapse buffer of the unit holding its filter; each unit writes one weight per lane
    per cycle, all units at once, and the product waits for the slowest unit."""
    geo = part.geometry
    per_row = int(np.prod(geo.weight_shape[1:]))
    f = sec.units * sec.filters_per_unit
    unit_of = (np.arange(geo.weight_shape[0]) % f) // sec.filters_per_unit
    weights = np.bincount(unit_of, minlength=sec.units).astype(np.int64) * per_row
    unit_cycles = -(-weights // sec.lanes)
    cycles = int(unit_cycles.max(initial=0))
    busy = int(weights.sum())  # lane-cycles writing a weight
    return {"cycles": cycles, "busy_pe_cycles": busy,
            "tail_pe_cycles": cycles * sec.units * sec.lanes - busy,
            "pe_cycle": cycles * sec.units * sec.lanes, "weight_write": int(weights.sum()),
            "act_read": int(weights.sum())}


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
    lowering={"token_linear": "pixels", "matmul": "pixels"},
    operand_load=operand_load,
)
