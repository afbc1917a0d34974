"""Systolic array (TPU-style, as modelled by SCALE-Sim v3, "SCALE-Sim: Systolic CNN Accelerator
Simulator"): the [systolic] section, its storage footprint and its registry entry.

kernel.py holds the closed-form fold timing and access counts, reference.py the per-cycle
register-level oracle, mapping.py the GEMM view of a layer and the N:M compressed weights,
topology.py SCALE-Sim's topology CSV files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from accelsim.bounds import bounded
from accelsim.dataflows import Dataflow


@dataclass(frozen=True)
class SystolicSection:
    """[systolic]: SCALE-Sim's architecture fields (ArrayHeight, ArrayWidth, Dataflow, the three
    SRAM sizes in KB, Bandwidth) plus the N:M weight pattern the array decodes."""

    rows: int = bounded(32, 1, 4096)
    cols: int = bounded(32, 1, 4096)
    # "os" output-, "ws" weight-, "is" input-stationary
    dataflow: str = field(default="os", metadata={"choices": ("os", "ws", "is")})
    ifmap_sram_kb: int = bounded(64, 1, 1 << 30)
    filter_sram_kb: int = bounded(64, 1, 1 << 30)
    ofmap_sram_kb: int = bounded(64, 1, 1 << 30)
    bandwidth: float = bounded(0.0, 1e-3, 1e9, zero_ok=True)  # DRAM words/cycle; 0 = unlimited
    word_bytes: int = bounded(1, 1, 8)  # bytes per word in SRAM and DRAM (SCALE-Sim: 1)
    nm: str = ""  # N:M weight pattern used when sparsity.weights = "skip", e.g. "2:4"


def _kernel(layer, **kw):
    from accelsim.dataflows.systolic.kernel import simulate_systolic

    return simulate_systolic(layer, **kw)


def _reference(layer, **kw):
    from accelsim.dataflows.systolic.reference import simulate_systolic_reference

    return simulate_systolic_reference(layer, **kw)


def weight_bytes(layer, arch) -> np.ndarray:
    """The layer's (compressed) filter words in the one filter SRAM."""
    from accelsim.dataflows.systolic.kernel import memory_traffic

    return np.array([memory_traffic(layer, arch, np.zeros(1, np.int64)).weight_bytes], np.int64)


def _memory(layer, arch, cycles_per_sample):
    from accelsim.dataflows.systolic.kernel import memory_traffic

    return memory_traffic(layer, arch, cycles_per_sample)


def operand_load(part, sec, weight_mode: str) -> dict:
    """A matmul's per-sample operand is moved into the filter SRAM (read from where its producer
    wrote it, written as filter words); the array then runs the GEMM as for any weight, so the
    stationary fill stays inside every fold's timing. The move overlaps the previous head's
    folds (double-buffered SRAM, as SCALE-Sim assumes for every operand): no cycles."""
    elements = int(np.prod(part.geometry.weight_shape))
    return {"cycles": 0, "weight_write": elements, "act_read": elements}


DATAFLOW = Dataflow(
    name="systolic",
    section=SystolicSection,
    layer_kinds=("linear", "conv2d"),
    kernel=_kernel,
    reference=_reference,
    storage_units=lambda sec: 1,
    weight_bytes=weight_bytes,
    multipliers=lambda sec: sec.rows * sec.cols,
    doc="Systolic array (os/ws/is) with SCALE-Sim v3's fold timing; N:M structured weights",
    memory=_memory,
    lowering={"token_linear": "pixels", "matmul": "pixels"},
    operand_load=operand_load,
)
