"""On-chip capacity and DRAM traffic of one layer.

Each dataflow says how many weight bytes each of its PEs (or units) stores. If the fullest one
exceeds the per-PE weight SRAM, the layer's weights stream from DRAM for every inference: the
bytes charged are what the PEs really store, summed (not the fullest PE times the PE count,
which would charge the load imbalance as traffic). Activations that do not fit the per-PE activation SRAM are spilled (input read, output
written). With a bandwidth limit, a sample whose transfer takes longer than its compute stalls
for the difference (transfers overlap compute otherwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from accelsim.dataflows import get
from accelsim.traces.schema import LayerRecord


@dataclass(frozen=True)
class MemoryTraffic:
    weights_on_chip: bool
    acts_on_chip: bool
    weight_bytes_per_unit: int  # the fullest PE / unit
    weight_bytes: int  # all PEs / units together
    dram_bytes: int  # summed over samples
    stall_cycles: int  # summed over samples


def memory_traffic(layer: LayerRecord, arch, cycles_per_sample: np.ndarray) -> MemoryTraffic:
    samples = int(cycles_per_sample.shape[0])
    flow = get(arch.arch.dataflow)
    if flow.memory is not None:  # the array models its own buffers (e.g. the systolic SRAMs)
        return flow.memory(layer, arch, cycles_per_sample)
    units = flow.storage_units(flow.section_of(arch))
    geo = layer.geometry
    per_unit = flow.weight_bytes(layer, arch)
    w_unit, w_total = int(per_unit.max(initial=0)), int(per_unit.sum())
    weights_on_chip = w_unit <= arch.memory.weight_sram_bytes_per_pe
    act_elems = int(np.prod(geo.in_shape)) + int(np.prod(geo.out_shape))
    act_bytes = -(-act_elems * arch.arch.data_bits // 8)
    acts_on_chip = math.ceil(act_bytes / units) <= arch.memory.act_sram_bytes_per_pe
    per_sample = (0 if weights_on_chip else w_total) + (0 if acts_on_chip else act_bytes)
    stall = 0
    bw = float(arch.memory.dram_bytes_per_cycle)
    if per_sample and bw > 0:
        transfer = math.ceil(per_sample / bw)
        stall = int(np.maximum(transfer - cycles_per_sample.astype(np.int64), 0).sum())
    return MemoryTraffic(
        weights_on_chip=weights_on_chip,
        acts_on_chip=acts_on_chip,
        weight_bytes_per_unit=w_unit,
        weight_bytes=w_total,
        dram_bytes=per_sample * samples,
        stall_cycles=stall,
    )
