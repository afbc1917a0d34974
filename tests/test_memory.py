"""On-chip capacity and DRAM traffic, against counts worked out by hand on layers that do not fit.

The layer: fully connected, 5 inputs -> 6 outputs, every weight and activation non-zero, one
sample. On 4 EIE PEs, rows m live in PE m mod 4: PEs 0 and 1 hold two rows (10 weights), PEs 2
and 3 one row (5 weights). The slowest PEs spend 2 cycles per broadcast activation, so with a
FIFO deeper than the 5 broadcasts the layer takes 5 x 2 + 1 = 11 cycles.
"""

from __future__ import annotations

import numpy as np
import pytest

from accelsim.arch import load_arch
from accelsim.energy import load_energy_table
from accelsim.memory import memory_traffic
from accelsim.simulate import Variant, simulate_layer
from accelsim.traces.info import layer_stats
from accelsim.traces.schema import LayerGeometry, LayerRecord, SparseBatch

ENERGY = load_energy_table()


def _fc(samples: int = 1) -> LayerRecord:
    geo = LayerGeometry("fc", "linear", (5,), (6,))
    x = np.ones((samples, 5), np.float32)
    return LayerRecord(geometry=geo, weight=np.ones((6, 5), np.float32), weight_mask=None,
                       bias=None, inputs=SparseBatch.from_dense(x), outputs=None)


def _row(arch, layer, variant="sparse"):
    row, _ = simulate_layer("t", layer, Variant(variant, arch), ENERGY, layer_stats(layer))
    return row


EIE = ["eie.num_pes=4", "eie.fifo_depth=8", "eie.index_bits=4", "memory.weight_entry_bits=8"]


def test_eie_weights_that_do_not_fit_are_charged_by_their_real_bytes():
    # per PE: entries x 8 bits + (5 columns + 1) x 16-bit pointers = 10+12, 10+12, 5+12, 5+12
    arch = load_arch("eie64", EIE + ["memory.weight_sram_bytes_per_pe=21"])
    mem = memory_traffic(_fc(), arch, np.array([11]))
    assert not mem.weights_on_chip and mem.acts_on_chip
    assert (mem.weight_bytes_per_unit, mem.weight_bytes) == (22, 78)
    assert mem.dram_bytes == 78  # not the fullest PE x 4 = 88
    assert mem.stall_cycles == 0  # unlimited bandwidth
    fits = load_arch("eie64", EIE + ["memory.weight_sram_bytes_per_pe=22"])
    assert memory_traffic(_fc(), fits, np.array([11])).dram_bytes == 0


def test_eie_bandwidth_stalls_and_their_energy():
    arch = load_arch("eie64", EIE + ["memory.weight_sram_bytes_per_pe=21",
                                     "memory.dram_bytes_per_cycle=2"])
    row = _row(arch, _fc())
    assert row["compute_cycles"] == 11
    # 78 bytes at 2 bytes per cycle: 39 cycles of transfer against 11 of compute
    assert row["memory_stall_cycles"] == 39 - 11 and row["cycles"] == 39
    assert row["dram_bytes"] == 78 and row["events_dram_byte"] == 78
    assert row["energy_dram_byte_pj"] == pytest.approx(78 * ENERGY.pj["dram_byte"])
    assert row["events_pe_cycle"] == 4 * 39  # the 4 PEs clock while waiting for DRAM
    # activations spill too: (5 in + 6 out) x 2 bytes = 22, 6 per PE > 5 bytes of SRAM
    spill = load_arch("eie64", EIE + ["memory.weight_sram_bytes_per_pe=21", "memory.act_sram_bytes_per_pe=5",
                                      "memory.dram_bytes_per_cycle=0.5"])
    row = _row(spill, _fc(samples=3))
    assert row["dram_bytes"] == 78 + 22 and row["weights_on_chip"] is False
    assert row["memory_stall_cycles"] == 200 - 11 and row["cycles"] == 200  # per sample


def test_eie_dense_storage_counts_each_pes_rows():
    # dense baseline: PE p stores its rows x 5 weights x 16 bits: 20, 20, 10, 10 bytes
    arch = load_arch("eie64", EIE + ["memory.weight_sram_bytes_per_pe=19"]).with_sparsity("none", "none")
    mem = memory_traffic(_fc(), arch, np.array([11]))
    assert (mem.weight_bytes_per_unit, mem.dram_bytes) == (20, 60)


CNV = ["cnvlutin.units=4", "cnvlutin.filters_per_unit=1", "cnvlutin.lanes=2", "cnvlutin.brick_size=2"]


@pytest.mark.parametrize("bits, total", [(16, 60), (8, 30)])
def test_cnvlutin_weight_entry_bits_and_real_bytes(bits, total):
    # 4 filters per pass: filters 0..3 in units 0..3, filters 4, 5 in units 0, 1 -> rows 2, 2, 1, 1
    arch = load_arch("cnvlutin", CNV + [f"memory.weight_entry_bits={bits}",
                                        "memory.weight_sram_bytes_per_pe=1", "memory.dram_bytes_per_cycle=1"])
    row = _row(arch, _fc())
    # 2 passes x (bricks of 2, 2 | 1 on 2 lanes: 2 + 1 cycles) = 6 cycles of compute
    assert row["compute_cycles"] == 6
    assert row["dram_bytes"] == total
    assert row["memory_stall_cycles"] == total - 6 and row["cycles"] == total
