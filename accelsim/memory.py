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
    parts = flow.parts(layer)  # transformer layers: the linear / conv2d parts the array runs
    if flow.memory is not None:  # the array models its own buffers (e.g. the systolic SRAMs)
        if parts is None:
            return flow.memory(layer, arch, cycles_per_sample)
        return _sum_parts(layer, parts, arch, cycles_per_sample, flow.memory)
    units = flow.storage_units(flow.section_of(arch))
    geo = layer.geometry
    if parts is None:
        per_unit = flow.weight_bytes(layer, arch)
        w_unit, w_total = int(per_unit.max(initial=0)), int(per_unit.sum())
    else:  # a token linear's one weight, or every (sample, head) operand of a matmul in turn
        stored = [flow.weight_bytes(p.layer, arch) for p in parts]
        w_unit = max(int(b.max(initial=0)) for b in stored)
        w_total = -(-sum(int(b.sum()) for b in stored) // (1 if geo.kind != "matmul" else
                                                          layer.inputs.num_samples))
    weights_on_chip = w_unit <= arch.memory.weight_sram_bytes_per_pe
    act_elems = math.prod(geo.in_shape) + math.prod(geo.out_shape)
    if geo.kind == "matmul":
        act_elems += math.prod(geo.operand_shape)
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


def _sum_parts(layer, parts, arch, cycles_per_sample, memory) -> MemoryTraffic:
    """An array's own buffer model over a lowered layer's parts: each part against the cycles of
    the samples it belongs to (a matmul part against its whole sample's time), traffic summed."""
    found = []
    for p in parts:
        if p.sample is None:
            found.append(memory(p.layer, arch, cycles_per_sample))
        elif p.sample < len(cycles_per_sample):
            found.append(memory(p.layer, arch, cycles_per_sample[p.sample:p.sample + 1]))
    return MemoryTraffic(
        weights_on_chip=all(f.weights_on_chip for f in found),
        acts_on_chip=all(f.acts_on_chip for f in found),
        weight_bytes_per_unit=max(f.weight_bytes_per_unit for f in found),
        weight_bytes=max(f.weight_bytes for f in found),
        dram_bytes=sum(f.dram_bytes for f in found),
        stall_cycles=sum(f.stall_cycles for f in found),
    )
