"""SCNN-style two-sided sparse convolution ("SCNN: An Accelerator for Compressed-sparse
Convolutional Neural Networks", PT-IS-CP-sparse): the [scnn] section, its storage footprint and
its registry entry.

kernel.py is the fast kernel (tiling and output-channel groups in plan_layer), reference.py the
per-cycle oracle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from accelsim.bounds import bounded
from accelsim.dataflows import Dataflow

@dataclass(frozen=True)
class ScnnSection:
    """[scnn]: a pe_rows x pe_cols grid of PEs, each a weight_vector (F) x act_vector (I)
    multiplier array feeding `banks` (A) accumulator banks of `bank_entries` partial sums."""

    pe_rows: int = bounded(8, 1, 256)
    pe_cols: int = bounded(8, 1, 256)
    weight_vector: int = bounded(4, 1, 64)  # F: non-zero weights per step
    act_vector: int = bounded(4, 1, 64)  # I: non-zero input activations per step
    banks: int = bounded(32, 1, 4096)  # A: accumulator banks behind the F*I x A crossbar
    bank_entries: int = bounded(32, 1, 1 << 20)  # partial sums per bank (one buffer of two)
    kc: int = bounded(0, 1, 1 << 16, zero_ok=True)  # output channels per group; 0 = most that fit


def _kernel(layer, **kw):
    from accelsim.dataflows.scnn.kernel import simulate_scnn

    return simulate_scnn(layer, **kw)


def _reference(layer, **kw):
    from accelsim.dataflows.scnn.reference import simulate_scnn_reference

    return simulate_scnn_reference(layer, **kw)


def weight_bytes(layer, arch) -> np.ndarray:
    """(PEs,) bytes: the layer's weights spread evenly over the PEs' weight stores, from which
    each output-channel group's weights are broadcast. Skipped: non-zeros x
    memory.weight_entry_bits (value + zero-run index); otherwise every weight x data_bits."""
    sec = arch.scnn
    units = sec.pe_rows * sec.pe_cols
    w = np.asarray(layer.weight)
    if arch.sparsity.weights == "skip":
        bits = int(np.count_nonzero(w)) * arch.memory.weight_entry_bits
    else:
        bits = int(w.size) * arch.arch.data_bits
    total = -(-bits // 8)
    per = np.full(units, total // units, np.int64)
    per[: total % units] += 1
    return per


def operand_load(part, sec, weight_mode: str) -> dict:
    """Loading a matmul's per-sample operand as a layer's weights (docs/hardware-model.md,
    "Transformer layers"): SCNN keeps no weights on chip but streams each group's weights into
    the PEs' weight FIFOs, so the operand, which its producer wrote into the activation RAM, is
    read from there, examined by the non-zero detector when weights are skipped, and written as
    weight entries (non-zeros only when skipped) for the broadcast. The move overlaps the
    previous head's groups, as SCNN's weight stream overlaps compute: no cycles."""
    w = np.asarray(part.weight)
    elements = int(w.size)
    skip = weight_mode == "skip"
    return {"cycles": 0, "act_read": elements, "nzd": elements if skip else 0,
            "weight_write": int(np.count_nonzero(w)) if skip else elements}


DATAFLOW = Dataflow(
    name="scnn",
    section=ScnnSection,
    layer_kinds=("linear", "conv2d"),
    kernel=_kernel,
    reference=_reference,
    storage_units=lambda sec: sec.pe_rows * sec.pe_cols,
    weight_bytes=weight_bytes,
    multipliers=lambda sec: sec.pe_rows * sec.pe_cols * sec.weight_vector * sec.act_vector,
    doc="SCNN-style two-sided sparse convolution: Cartesian products of non-zero weights and "
        "activations per PE, planar tiles, accumulator banks",
    report_counters=("fragmentation_slots", "imbalance_pe_cycles", "bank_conflict_cycles",
                     "discarded_products", "halo_psums"),
    lowering={"token_linear": "pixels", "matmul": "pixels"},
    operand_load=operand_load,
)
