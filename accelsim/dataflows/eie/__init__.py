"""EIE-style activation broadcast ("EIE: Efficient Inference Engine on Compressed Deep Neural
Network"): the [eie] section, its storage footprint and its registry entry.

kernel.py is the fast event recurrence, reference.py the per-cycle oracle, encoding.py the
interleaved-CSC weight encoding both the kernel and the storage footprint use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from accelsim.bounds import bounded
from accelsim.dataflows import Dataflow

POINTER_BITS = 16  # column pointers, one per column (+1) in every PE


@dataclass(frozen=True)
class EieSection:
    """[eie]: EIE-style broadcast array (docs/hardware-model.md)."""

    num_pes: int = bounded(64, 1, 4096)
    fifo_depth: int = bounded(8, 1, 1 << 16)
    index_bits: int = bounded(4, 1, 32)
    # cycles on a popped activation whose slice in the PE is empty
    empty_slice_cycles: int = bounded(1, 0, 1024)


def _kernel(layer, **kw):
    from accelsim.dataflows.eie.kernel import simulate_eie

    return simulate_eie(layer, **kw)


def _reference(layer, **kw):
    from accelsim.dataflows.eie.reference import simulate_eie_reference

    kw.pop("functional", None)
    return simulate_eie_reference(layer, **kw)


def weight_bytes(layer, arch) -> np.ndarray:
    """Bytes of weight storage in each PE: compressed entries and column pointers when weights
    are skipped, the PE's dense rows otherwise."""
    sec = arch.eie
    geo = layer.geometry
    rows = geo.weight_shape[0]
    per_row = int(np.prod(geo.weight_shape[1:]))
    if arch.sparsity.weights == "skip":
        from accelsim.dataflows.eie.encoding import stored_entries_per_pe

        entries = stored_entries_per_pe(layer, sec.num_pes, sec.index_bits)
        columns = geo.in_shape[0] * geo.kernel[0] * geo.kernel[1]
        pointer_bytes = (columns + 1) * POINTER_BITS // 8
        full = int(math.ceil(int(entries.max(initial=0)) * arch.memory.weight_entry_bits / 8))
        return np.full(sec.num_pes, full + pointer_bytes, dtype=np.int64)
    rows_per_unit = math.ceil(rows / sec.num_pes)
    full = int(math.ceil(rows_per_unit * per_row * arch.arch.data_bits / 8))
    return np.full(sec.num_pes, full, dtype=np.int64)


DATAFLOW = Dataflow(
    name="eie",
    section=EieSection,
    layer_kinds=("linear", "conv2d"),
    kernel=_kernel,
    reference=_reference,
    storage_units=lambda sec: sec.num_pes,
    weight_bytes=weight_bytes,
    multipliers=lambda sec: sec.num_pes,
    doc="EIE-style activation broadcast, compressed weights (one MAC per PE per cycle)",
)
