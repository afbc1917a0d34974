"""What a dataflow kernel returns for one layer, and the event vocabulary shared by all dataflows.

Energy is sum(count[event] * pJ[event]) over EVENTS (accelsim/energy.py); the timing counters are
kept beside the events so a report can show where the cycles went.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Energy-bearing events, counted per layer and summed over samples.
EVENTS = (
    "mac",  # multiply-accumulates that spend MAC energy (skipped or gated ones are not counted)
    "weight_read",  # weight(+index) entries read from on-chip SRAM, padding entries included
    "weight_write",  # weight entries written on chip: a matmul's per-sample operand loaded as weights
    "pointer_read",  # column-pointer reads (EIE: one per PE per popped activation)
    "act_read",  # activations read from the source activation SRAM
    "act_write",  # output activations written to the destination activation SRAM
    "fifo_push",  # activation-queue pushes (one per PE per broadcast)
    "fifo_pop",  # activation-queue pops
    "nzd",  # activations examined by the non-zero detector
    "acc_update",  # partial sums added into an accumulator bank (SCNN: products and halos)
    "topk_compare",  # comparisons in the top-k unit
    "dram_byte",  # bytes moved to/from DRAM
    "pe_cycle",  # clock/leakage: PEs (or lanes) x cycles, busy or idle
)

# Timing counters, summed over samples. PE-cycles are cycles x units.
TIMING = (
    "cycles",  # wall cycles of the layer
    "busy_pe_cycles",  # PE-cycles spent on stored entries (useful or padding)
    "starve_pe_cycles",  # PE-cycles idle with an empty queue while the layer still runs
    "tail_pe_cycles",  # PE-cycles idle after the PE finished its share, waiting for the slowest
    "empty_pe_cycles",  # PE-cycles of PEs given no work (Cnvlutin: units with no filter in a pass)
    "stall_cycles",  # cycles the broadcast (or brick issue) waited because a queue was full
    "padding_entries",  # stored padding entries processed (EIE relative-index overflow)
)


@dataclass
class DataflowResult:
    """One layer on one array, summed over the samples of the trace."""

    cycles: np.ndarray  # (S,) int64, cycles of each sample
    counters: dict[str, int]  # every name in TIMING and EVENTS that the dataflow produces
    num_units: int  # PEs (EIE) or lanes x units (Cnvlutin): the denominator of utilisation
    outputs: np.ndarray | None = None  # (S_out, *out_shape) float32 from the processed operands
    extra: dict = field(default_factory=dict)

    def counter(self, name: str) -> int:
        return int(self.counters.get(name, 0))
