"""EIE's activation-queue depth study, reproduced: idle PE-cycles vs FIFO depth, both queues.

"EIE: Efficient Inference Engine on Compressed Deep Neural Network" swept the queue depth from
1 to 256 on 64 PEs over AlexNet's FC layers: at depth 1 about half of all cycles were idle, and
gains flattened past depth 8. Here the same sweep runs on the FC layers of a synthetic AlexNet
trace at EIE's densities (ReLU zeros), once per queue semantics (eie.queue "hold": an entry
holds its slot until the PE has finished it, as EIE built it; "pop": the slot is freed when the
PE starts the entry), so each depth D is shown as EIE meant it and as a D + 1 queue.

    accelsim trace synth --model alexnet --weight-density fc1=0.09,fc2=0.09,fc3=0.25 \\
        --act-density fc1=0.351,fc2=0.353,fc3=0.375 --samples 4 --out alexnet-eie.trace.safetensors
    python -m accelsim.analysis.fifo_depth alexnet-eie.trace.safetensors
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from accelsim.dataflows.eie import QUEUE_MODES

DEPTHS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def fifo_depth_study(layers, depths=DEPTHS, queues=QUEUE_MODES, num_pes: int = 64,
                     empty_slice_cycles: int = 1) -> pd.DataFrame:
    """One row per (layer, queue, depth): cycles per sample and where the PE-cycles went."""
    from accelsim.dataflows.eie.kernel import simulate_eie

    rows = []
    for layer in layers:
        for queue in queues:
            for depth in depths:
                r = simulate_eie(
                    layer, num_pes=num_pes, fifo_depth=depth, index_bits=4,
                    empty_slice_cycles=empty_slice_cycles, act_mode="skip", weight_mode="skip",
                    queue=queue, functional=False,
                )
                cycles = int(r.cycles.sum())
                pe_cycles = num_pes * cycles
                rows.append({
                    "layer": layer.geometry.name,
                    "queue": queue,
                    "fifo_depth": depth,
                    "cycles_per_sample": cycles / len(r.cycles),
                    "idle_share": 1 - r.counter("busy_pe_cycles") / pe_cycles,
                    "starved_share": r.counter("starve_pe_cycles") / pe_cycles,
                    "tail_share": r.counter("tail_pe_cycles") / pe_cycles,
                    "stall_share": r.counter("stall_cycles") / cycles,
                })
    return pd.DataFrame(rows)


def as_markdown(frame: pd.DataFrame) -> str:
    """Depth x (layer, queue) table: idle % of PE-cycles, and cycles per inference."""
    layers = list(dict.fromkeys(frame["layer"]))
    queues = list(dict.fromkeys(frame["queue"]))
    cols = [(la, q) for la in layers for q in queues]
    head = " | ".join(f"{la} {q}: idle % / cycles" for la, q in cols)
    lines = [f"| FIFO depth | {head} |", "|---:|" + "---:|" * len(cols)]
    for depth, part in frame.groupby("fifo_depth", sort=True):
        cells = []
        for la, q in cols:
            row = part[(part["layer"] == la) & (part["queue"] == q)].iloc[0]
            cells.append(f"{100 * row['idle_share']:.1f} / {row['cycles_per_sample']:.0f}")
        lines.append(f"| {depth} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def linear_layers(path: str):
    """The linear layers of a trace file."""
    from accelsim.traces.reader import open_trace

    return [rec for rec in open_trace(path) if rec.geometry.kind == "linear"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace", help="trace whose linear layers are swept")
    parser.add_argument("--layers", default="", help="comma-separated layer names (default all)")
    args = parser.parse_args(argv)
    from accelsim.errors import AccelsimError

    keep = {s for s in args.layers.split(",") if s}
    try:
        layers = [rec for rec in linear_layers(args.trace) if not keep or rec.geometry.name in keep]
    except AccelsimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(as_markdown(fifo_depth_study(layers)))


if __name__ == "__main__":
    main()
