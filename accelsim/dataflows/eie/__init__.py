"""EIE-style activation broadcast ("EIE: Efficient Inference Engine on Compressed Deep Neural
Network"): the [eie] section, its storage footprint and its registry entry.

kernel.py is the fast event recurrence, reference.py the per-cycle oracle, encoding.py the
interleaved-CSC weight encoding both the kernel and the storage footprint use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from accelsim.bounds import bounded
from accelsim.dataflows import Dataflow

POINTER_BITS = 16  # column pointers, one per column (+1) in every PE
QUEUE_MODES = ("hold", "pop")


@dataclass(frozen=True)
class EieSection:
    """[eie]: EIE-style broadcast array (docs/hardware-model.md)."""

    num_pes: int = bounded(64, 1, 4096)
    fifo_depth: int = bounded(8, 1, 1 << 16)
    index_bits: int = bounded(4, 1, 32)
    # cycles on a popped activation whose slice in the PE is empty
    empty_slice_cycles: int = bounded(1, 0, 1024)
    # when an activation leaves its FIFO slot: "hold" = once the PE has finished it (EIE's
    # queue, depth D decouples D activations), "pop" = as soon as the PE starts it (D + 1)
    queue: str = field(default="hold", metadata={"choices": QUEUE_MODES})


def _kernel(layer, **kw):
    from accelsim.dataflows.eie.kernel import simulate_eie

    return simulate_eie(layer, **kw)


def _reference(layer, **kw):
    from accelsim.dataflows.eie.reference import simulate_eie_reference

    kw.pop("functional", None)
    return simulate_eie_reference(layer, **kw)


def weight_bytes(layer, arch) -> np.ndarray:
    """(num_pes,) bytes of weight storage in each PE. Weights skipped: the PE's compressed
    entries (padding included) x memory.weight_entry_bits, plus (columns + 1) 16-bit column
    pointers. Otherwise the PE's dense rows (output rows m with m mod N = p) x data_bits.
    Once per layer and storage parameters (a sweep varies the FIFO depth around them)."""
    from accelsim.encoded import memo

    sec = arch.eie
    params = (sec.num_pes, sec.index_bits, arch.sparsity.weights, arch.memory.weight_entry_bits,
              arch.arch.data_bits)
    return memo(layer, "eie_weight_bytes", params, lambda: _weight_bytes(layer, arch))


def _weight_bytes(layer, arch) -> np.ndarray:
    sec = arch.eie
    geo = layer.geometry
    if arch.sparsity.weights == "skip":
        from accelsim.dataflows.eie.encoding import stored_entries_per_pe

        entries = stored_entries_per_pe(layer, sec.num_pes, sec.index_bits).astype(np.int64)
        columns = geo.in_shape[0] * geo.kernel[0] * geo.kernel[1]
        pointer_bytes = (columns + 1) * POINTER_BITS // 8
        return -(-entries * arch.memory.weight_entry_bits // 8) + pointer_bytes
    rows = geo.weight_shape[0]
    per_row = int(np.prod(geo.weight_shape[1:]))
    rows_per_pe = np.bincount(np.arange(rows) % sec.num_pes, minlength=sec.num_pes)
    return -(-rows_per_pe.astype(np.int64) * per_row * arch.arch.data_bits // 8)


def operand_load(part, sec, weight_mode: str) -> dict:
    """Loading a matmul's per-sample operand as a layer's weights (docs/hardware-model.md,
    "Transformer layers"): every element is read from the activation SRAM and, when weights are
    skipped, examined by the non-zero detector; each PE writes its own slice's stored entries
    (compressed, padding included, or its dense rows), one per cycle, all PEs at once. The
    product waits for the slowest PE."""
    from accelsim.dataflows.eie.encoding import layer_columns

    per_pe = layer_columns(part, sec.num_pes, sec.index_bits).entries(weight_mode).sum(axis=1)
    cycles = int(per_pe.max(initial=0))
    elements = int(np.prod(part.geometry.weight_shape))
    return {"cycles": cycles, "busy_pe_cycles": int(per_pe.sum()),
            "tail_pe_cycles": cycles * sec.num_pes - int(per_pe.sum()),
            "pe_cycle": cycles * sec.num_pes, "weight_write": int(per_pe.sum()),
            "act_read": elements,
            "nzd": elements if weight_mode == "skip" else 0}


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
    lowering={"token_linear": "rows", "matmul": "rows"},
    operand_load=operand_load,
)
