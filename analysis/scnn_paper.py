"""SCNN's own comparison, reproduced in kind: the `scnn` array against its baseline on the conv
layers of AlexNet, GoogLeNet and VGG-16 at pruned-network densities.

"SCNN: An Accelerator for Compressed-sparse Convolutional Neural Networks" reports 2.7x
performance and 2.3x energy over a comparably provisioned dense accelerator (DCNN, the same
1,024 multipliers) on these three networks. Here each conv layer is a random layer
(accelsim.synth.random_layer) at the network's per-layer weight density and an activation
density, replayed on the `scnn` preset and on its baseline (the same array with skipping off);
the script prints both ratios per network, and the speed-up over an ideal dense array of the
same multipliers (dense MACs / 1,024 cycles, every multiplier busy every cycle).

    python -m accelsim.analysis.scnn_paper [--networks alexnet,googlenet,vgg16] [--layers N]
        [--csv rows.csv]; --from-csv rows.csv prints the table again without simulating

Densities (docs/results.md says where each comes from):
- weights: AlexNet and VGG-16 per layer as pruned in "Learning both Weights and Connections for
  Efficient Neural Networks" (Tables 4 and 5, recalled); GoogLeNet 0.35 per layer (assumption:
  about a third of the weights kept, as in the other two);
- activations: the image dense; every later conv layer's input 0.5 (assumption: "Cnvlutin:
  Ineffectual-Neuron-Free Deep Neural Network Computing" finds about 44 % of conv-layer inputs
  zero on average, recalled).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from accelsim.traces.schema import LayerGeometry

HIDDEN_ACT_DENSITY = 0.5
GOOGLENET_WEIGHT_DENSITY = 0.35
PAPER = {"speedup": 2.7, "energy": 2.3}  # SCNN over DCNN, the three networks together (abstract)
GOOGLENET_TOPOLOGY = Path(__file__).resolve().parents[1] / "tests/data/scalesim/topologies/Googlenet.csv"


def _conv(name, c, hw, m, k, stride=1, pad=0) -> LayerGeometry:
    out = (hw + 2 * pad - k) // stride + 1
    return LayerGeometry(name, "conv2d", (c, hw, hw), (m, out, out), (k, k), (stride, stride),
                         (pad, pad))


def alexnet() -> list[tuple[LayerGeometry, float]]:
    """AlexNet's conv layers (ungrouped) with Han et al.'s kept weights."""
    return [(_conv("conv1", 3, 227, 96, 11, 4), 0.84), (_conv("conv2", 96, 27, 256, 5, 1, 2), 0.38),
            (_conv("conv3", 256, 13, 384, 3, 1, 1), 0.35), (_conv("conv4", 384, 13, 384, 3, 1, 1), 0.37),
            (_conv("conv5", 384, 13, 256, 3, 1, 1), 0.37)]


def vgg16() -> list[tuple[LayerGeometry, float]]:
    """VGG-16's 13 conv layers (3x3, padding 1) with Han et al.'s kept weights."""
    plan = [(3, 64, 224, .58), (64, 64, 224, .22), (64, 128, 112, .34), (128, 128, 112, .36),
            (128, 256, 56, .53), (256, 256, 56, .24), (256, 256, 56, .42), (256, 512, 28, .32),
            (512, 512, 28, .27), (512, 512, 28, .34), (512, 512, 14, .35), (512, 512, 14, .29),
            (512, 512, 14, .36)]
    names = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
             "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3"]
    return [(_conv(n, c, hw, m, 3, 1, 1), d) for n, (c, m, hw, d) in zip(names, plan)]


def googlenet() -> list[tuple[LayerGeometry, float]]:
    """GoogLeNet's conv layers from SCALE-Sim's topology file (its padded input sizes; the
    file's last row, the classifier FC6, is left out as in the other two)."""
    from accelsim.topology import read_topology

    return [(t.geometry, GOOGLENET_WEIGHT_DENSITY) for t in read_topology(GOOGLENET_TOPOLOGY)
            if not t.geometry.name.upper().startswith("FC")]


NETWORKS = {"alexnet": alexnet, "googlenet": googlenet, "vgg16": vgg16}


def compare(network: str, layers: int | None = None, seed: int = 0, arch_spec: str = "scnn"):
    """Per-layer rows (cycles and energy of the scnn array and its baseline) of one network."""
    from accelsim.arch import load_arch
    from accelsim.dataflows import get
    from accelsim.energy import load_energy_table
    from accelsim.simulate import Variant, simulate_layer
    from accelsim.synth import random_layer
    from accelsim.traces.info import layer_stats

    arch = load_arch(arch_spec)
    energy = load_energy_table(arch.energy.table)
    peak = get(arch.arch.dataflow).peak_macs_per_cycle(arch)
    rows = []
    for i, (geo, w_density) in enumerate(NETWORKS[network]()[:layers]):
        a_density = 1.0 if i == 0 else HIDDEN_ACT_DENSITY
        layer = random_layer(geo, w_density, a_density, samples=1, seed=seed + i)
        stats = layer_stats(layer)
        out = {"network": network, "layer": geo.name, "weight_density": w_density,
               "act_density": a_density, "dense_macs": float(geo.dense_macs),
               "ideal_dense_cycles": float(geo.dense_macs) / peak}
        for label, variant in (("sparse", arch), ("baseline", arch.with_sparsity("none", "none"))):
            row, _ = simulate_layer(network, layer, Variant(label, variant), energy, stats)
            out[f"{label}_cycles"] = row["cycles"]
            out[f"{label}_energy_pj"] = row["energy_pj"]
            if label == "sparse":
                out.update({k: row[k] for k in ("fragmentation_slots", "imbalance_pe_cycles",
                                                "bank_conflict_cycles", "discarded_products",
                                                "effective_macs", "events_mac")})
        rows.append(out)
    return rows


def table(rows) -> str:
    """Markdown: per network, cycles of both, the speed-up and energy ratio over the baseline and
    the speed-up over an ideal dense array; then all layers pooled and the mean of the networks
    (the paper's figures are means over its networks)."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    lines = ["| network | conv layers | scnn cycles | baseline cycles | speed-up | energy ratio | "
             "speed-up vs ideal dense | paper (speed-up, energy) |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    ratios = []
    for name, g in list(frame.groupby("network", sort=False)) + [("all layers pooled", frame)]:
        s, b = g["sparse_cycles"].sum(), g["baseline_cycles"].sum()
        r = (b / s, g["baseline_energy_pj"].sum() / g["sparse_energy_pj"].sum(),
             g["ideal_dense_cycles"].sum() / s)
        if name != "all layers pooled":
            ratios.append(r)
        lines.append(f"| {name} | {len(g)} | {s:,.0f} | {b:,.0f} | {r[0]:.2f}x | {r[1]:.2f}x | "
                     f"{r[2]:.2f}x | |")
    mean = [sum(r[i] for r in ratios) / len(ratios) for i in range(3)]
    lines.append(f"| mean of the networks | | | | {mean[0]:.2f}x | {mean[1]:.2f}x | {mean[2]:.2f}x | "
                 f"{PAPER['speedup']}x, {PAPER['energy']}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default="alexnet,googlenet,vgg16",
                        help="comma-separated: " + ", ".join(NETWORKS))
    parser.add_argument("--layers", type=int, default=None, help="first N conv layers of each")
    parser.add_argument("--csv", default=None, help="also write the per-layer rows here")
    parser.add_argument("--from-csv", default=None,
                        help="print the table of per-layer rows written earlier with --csv")
    args = parser.parse_args(argv)
    if args.from_csv:
        import pandas as pd

        need = {"network", "sparse_cycles", "baseline_cycles", "sparse_energy_pj",
                "baseline_energy_pj", "ideal_dense_cycles"}
        try:
            frame = pd.read_csv(args.from_csv)
        except (OSError, ValueError) as exc:
            print(f"error: {args.from_csv}: {exc}", file=sys.stderr)
            return 2
        if not need <= set(frame.columns):
            print(f"error: {args.from_csv}: not rows of this script (--csv)", file=sys.stderr)
            return 2
        print(table(frame.to_dict("records")))
        return 0
    names = [n.strip() for n in args.networks.split(",") if n.strip()]
    unknown = [n for n in names if n not in NETWORKS]
    if unknown or (args.layers is not None and args.layers < 1):
        print(f"error: --networks takes {', '.join(NETWORKS)} and --layers N >= 1", file=sys.stderr)
        return 2
    start = time.monotonic()
    rows = []
    for name in names:
        rows += compare(name, args.layers)
        print(f"{name}: {time.monotonic() - start:.0f} s", file=sys.stderr)
    if args.csv:
        import pandas as pd

        from accelsim.report import write_report

        write_report(pd.DataFrame(rows), Path(args.csv))
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
