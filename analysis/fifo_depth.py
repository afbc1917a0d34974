"""EIE's activation-queue depth study, reproduced: load-balance efficiency vs FIFO depth.

"EIE: Efficient Inference Engine on Compressed Deep Neural Network" swept the queue depth from
1 to 256 on 64 PEs over AlexNet's FC layers: at depth 1 about half of all cycles were bubbles,
and gains flattened past depth 8. Here the same sweep runs on AlexNet-fc-shaped synthetic layers
at EIE's densities (accelsim.synth.ALEXNET_FC).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from accelsim.synth import ALEXNET_FC, random_layer

DEPTHS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def fifo_depth_study(
    depths=DEPTHS,
    num_pes: int = 64,
    samples: int = 4,
    seed: int = 0,
    empty_slice_cycles: int = 1,
    row_skew: float = 0.0,
) -> pd.DataFrame:
    """One row per (layer, depth): cycles, load-balance efficiency, stall and starvation shares."""
    from accelsim.dataflows.eie.kernel import simulate_eie

    rows = []
    for i, (geometry, wd, ad) in enumerate(ALEXNET_FC):
        layer = random_layer(geometry, wd, ad, samples=samples, seed=seed + i, row_skew=row_skew)
        for depth in depths:
            r = simulate_eie(
                layer, num_pes=num_pes, fifo_depth=depth, index_bits=4,
                empty_slice_cycles=empty_slice_cycles, act_mode="skip", weight_mode="skip",
                functional=False,
            )
            cycles = int(r.cycles.sum())
            pe_cycles = num_pes * cycles
            rows.append({
                "layer": geometry.name,
                "fifo_depth": depth,
                "cycles_per_sample": cycles / samples,
                "load_balance": r.counter("busy_pe_cycles") / pe_cycles,
                "starved_share": r.counter("starve_pe_cycles") / pe_cycles,
                "tail_share": r.counter("tail_pe_cycles") / pe_cycles,
                "stall_share": r.counter("stall_cycles") / cycles,
            })
    return pd.DataFrame(rows)


def lockstep_load_balance(layer, num_pes: int = 64, empty_slice_cycles: int = 1) -> float:
    """Load balance with no decoupling at all: every PE must finish activation j before j+1 is
    broadcast (a queue whose only slot is held until the entry is processed). Then each
    broadcast costs the slowest PE's share: T = sum_j max_p cost_p(j) (+1 for the first
    broadcast), the textbook order-statistics bound that queues exist to beat."""
    from accelsim.dataflows.eie.encoding import eie_columns

    cols = eie_columns(layer.weight, layer.geometry, num_pes, 4).entries("skip")
    busy = total = 0
    for s in range(layer.inputs.num_samples):
        idx, _ = layer.inputs.sample(s)
        cost = np.maximum(cols[:, idx.astype(np.int64)], empty_slice_cycles)
        busy += int(cost.sum())
        total += num_pes * (int(cost.max(axis=0).sum()) + 1)
    return busy / total


def lockstep_study(num_pes: int = 64, samples: int = 4, seed: int = 0, row_skew: float = 0.0) -> dict:
    out = {}
    for i, (geometry, wd, ad) in enumerate(ALEXNET_FC):
        layer = random_layer(geometry, wd, ad, samples=samples, seed=seed + i, row_skew=row_skew)
        out[geometry.name] = lockstep_load_balance(layer, num_pes)
    return out


def as_markdown(frame: pd.DataFrame, lockstep: dict | None = None) -> str:
    """Depth x layer table of load-balance efficiency (the figure EIE plotted)."""
    pivot = frame.pivot(index="fifo_depth", columns="layer", values="load_balance")
    pivot = pivot[[g.name for g, _, _ in ALEXNET_FC]]
    lines = ["| FIFO depth | " + " | ".join(pivot.columns) + " |", "|---:|" + "---:|" * len(pivot.columns)]
    if lockstep:
        lines.append("| lockstep (no queue) | " + " | ".join(f"{lockstep[c]:.3f}" for c in pivot.columns) + " |")
    for depth, row in pivot.iterrows():
        lines.append(f"| {depth} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print("uniformly random sparsity:")
    print(as_markdown(fifo_depth_study(), lockstep_study()))
    print("\nrow densities skewed (lognormal sigma = 1):")
    print(as_markdown(fifo_depth_study(row_skew=1.0), lockstep_study(row_skew=1.0)))
