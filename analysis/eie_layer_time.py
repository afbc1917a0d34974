"""Microseconds per inference of each linear layer on an EIE-style preset, decomposed.

The cycles of a layer split exactly into PE-cycle shares (each divided by the PE count): the
ideal MACs / N, padding entries, empty slices (empty_slice_cycles per PE with nothing in the
activation's column), PEs starved (queue empty, more to come: FIFO and load balance) and the
tail (waiting for the slowest PE: static load balance). Used for docs/results.md's AlexNet fc
table:

    python -m accelsim.analysis.eie_layer_time alexnet-eie.trace.safetensors [--arch eie64]
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd


def layer_times(layers, arch) -> pd.DataFrame:
    """One row per layer: µs per inference and its decomposition in µs."""
    from accelsim.dataflows import registry

    flow = registry()[arch.arch.dataflow]
    n = flow.section_of(arch).num_pes
    us_per_cycle = 1.0 / arch.arch.clock_mhz
    rows = []
    for layer in layers:
        r = flow.run(layer, arch, functional=False)
        c = r.counters
        samples = len(r.cycles)
        per = lambda pe_cycles: pe_cycles / n / samples * us_per_cycle  # noqa: E731
        rows.append({
            "layer": layer.geometry.name,
            "us": c["cycles"] / samples * us_per_cycle,
            "ideal_macs_us": per(c["mac"]),
            "padding_us": per(c["padding_entries"]),
            "empty_slices_us": per(c["busy_pe_cycles"] - c["weight_read"]),
            "starved_us": per(c["starve_pe_cycles"]),
            "tail_us": per(c["tail_pe_cycles"]),
        })
    return pd.DataFrame(rows)


def as_markdown(frame: pd.DataFrame) -> str:
    cols = ("us", "ideal_macs_us", "padding_us", "empty_slices_us", "starved_us", "tail_us")
    lines = ["| layer | µs / inference | MACs / N | padding | empty slices | "
             "starved (FIFO, load balance) | tail (static load balance) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for _, r in frame.iterrows():
        lines.append(f"| {r['layer']} | " + " | ".join(f"{r[c]:.2f}" for c in cols) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace", help="trace whose linear layers are timed")
    parser.add_argument("--arch", default="eie64", help="preset or TOML of an EIE-style array")
    parser.add_argument("--set", action="append", default=[], help="override, e.g. eie.queue=pop")
    args = parser.parse_args(argv)
    from accelsim.analysis.fifo_depth import linear_layers
    from accelsim.arch import load_arch
    from accelsim.errors import AccelsimError

    try:
        arch = load_arch(args.arch, args.set)
        if arch.arch.dataflow != "eie":
            raise AccelsimError(f"{args.arch}: dataflow {arch.arch.dataflow!r}, not 'eie'")
        layers = linear_layers(args.trace)
    except AccelsimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(as_markdown(layer_times(layers, arch)))


if __name__ == "__main__":
    main()
