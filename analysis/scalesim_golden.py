"""Regenerate tests/golden/scalesim-v3.csv: SCALE-Sim v3.0.0's per-layer figures, the table the
systolic array is checked against (tests/test_systolic_scalesim.py).

Runs in SCALE-Sim's own virtual environment, never in accelsim's (it pins its own numpy):

    python -m venv /path/scalesim-venv && /path/scalesim-venv/bin/pip install scalesim==3.0.0
    /path/scalesim-venv/bin/python analysis/scalesim_golden.py               # every case below
    /path/scalesim-venv/bin/python analysis/scalesim_golden.py --only alexnet --dataflow os
    /path/scalesim-venv/bin/python analysis/scalesim_golden.py --config scale_sparse.cfg  # N:M

Inputs are SCALE-Sim's own files, copied unchanged into tests/data/scalesim/ (topologies from its
repository's topologies/conv_nets and topologies/GEMM_mnk, configs/scale.cfg and
configs/sparsity.cfg); the 32x32 runs use scale.cfg with only `Dataflow` changed. Rows already in
the table for a (topology, config, dataflow) are replaced, others kept, so a case can be rerun
alone. Standard library plus scalesim only: this file is not imported by accelsim.
"""

from __future__ import annotations

import argparse
import configparser
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "scalesim"
GOLDEN = ROOT / "tests" / "golden" / "scalesim-v3.csv"

# (topology file, form) in the order they run; GEMM files use SCALE-Sim's M,N,K form.
TOPOLOGIES = (
    ("alexnet.csv", "conv"),
    ("test_mnk_input.csv", "gemm"),
    ("vit_s.csv", "gemm"),
    ("Resnet18.csv", "conv"),
    ("mobilenet.csv", "conv"),
    ("yolo_tiny.csv", "conv"),
    ("NCF.csv", "gemm"),
    ("Googlenet.csv", "conv"),
)
# N:M runs (config scale_sparse.cfg = scale.cfg with SparsitySupport on, OptimizedMapping off):
# SCALE-Sim's topologies/sparsity files and vit_s with a 2:4 Sparsity column.
SPARSE_TOPOLOGIES = (
    ("sparse_gemm.csv", "gemm"),
    ("sparse_conv.csv", "conv"),
    ("vit_s_2_4.csv", "gemm"),
)
SPARSE_CONFIG = "scale_sparse.cfg"
DATAFLOWS = ("os", "ws", "is")

COLUMNS = (
    "topology", "form", "config", "dataflow", "array_rows", "array_cols",
    "ifmap_sram_kb", "filter_sram_kb", "ofmap_sram_kb", "bandwidth_mode", "bandwidth",
    "sparsity", "layer_index", "layer",
    "total_cycles", "stall_cycles", "compute_cycles", "overall_util_pct", "mapping_eff_pct",
    "compute_util_pct", "ifmap_sram_reads", "filter_sram_reads", "ofmap_sram_writes",
    "ifmap_dram_reads", "filter_dram_reads", "ofmap_dram_writes", "seconds",
)


def config_for(base: Path, dataflow: str, out_dir: Path) -> Path:
    """base config with Dataflow replaced; everything else as SCALE-Sim ships it."""
    parser = configparser.ConfigParser()
    parser.optionxform = str  # keep SCALE-Sim's key spelling
    parser.read(base)
    parser.set("architecture_presets", "Dataflow", dataflow)
    parser.set("general", "run_name", f"{base.stem}_{dataflow}")
    path = out_dir / f"{base.stem}_{dataflow}.cfg"
    with open(path, "w") as fh:
        parser.write(fh)
    return path


def run_case(topology: str, form: str, base_cfg: Path, dataflow: str) -> list[dict]:
    """One topology under one config and dataflow: a row per layer."""
    from scalesim.scale_sim import scalesim

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        cfg = config_for(base_cfg, dataflow, tmp_path)
        layout = tmp_path / "layout.csv"  # SCALE-Sim opens a layout file even when unused
        layout.write_text("Layer name,\n")
        sim = scalesim(save_disk_space=True, verbose=False, config=str(cfg),
                       topology=str(DATA / "topologies" / topology)
                       if not Path(topology).is_absolute() else topology, layout=str(layout),
                       input_type_gemm=form == "gemm")
        conf = sim.config
        start = time.perf_counter()
        sim.run_scale(top_path=str(tmp_path / "out"))
        seconds = time.perf_counter() - start
        rows = []
        rows_arr, cols_arr = conf.get_array_dims()
        kb = conf.get_mem_sizes()
        for index, layer in enumerate(sim.runner.single_layer_sim_object_list):
            total, _, stall, util, mapping, compute_util = layer.get_compute_report_items()[:6]
            detail = layer.get_detail_report_items()
            rows.append({
                "topology": Path(topology).stem, "form": form, "config": base_cfg.name,
                "dataflow": dataflow, "array_rows": rows_arr, "array_cols": cols_arr,
                "ifmap_sram_kb": kb[0], "filter_sram_kb": kb[1], "ofmap_sram_kb": kb[2],
                "bandwidth_mode": "USER" if conf.use_user_dram_bandwidth() else "CALC",
                "bandwidth": (conf.get_bandwidths_as_list() or [""])[0],  # CALC: none
                "sparsity": "on" if conf.sparsity_support else "off",
                "layer_index": index, "layer": sim.topo.topo_arrays[index][0],
                # COMPUTE_REPORT's "Total Cycles" includes stalls; compute = total - stall
                "total_cycles": int(layer.total_cycles), "stall_cycles": int(stall),
                "compute_cycles": int(layer.total_cycles) - int(stall),
                "overall_util_pct": round(float(util), 6), "mapping_eff_pct": round(float(mapping), 6),
                "compute_util_pct": round(float(compute_util), 6),
                "ifmap_sram_reads": int(detail[2]), "filter_sram_reads": int(detail[5]),
                "ofmap_sram_writes": int(detail[8]), "ifmap_dram_reads": int(detail[11]),
                "filter_dram_reads": int(detail[14]), "ofmap_dram_writes": int(detail[17]),
                "seconds": round(seconds, 3) if index == 0 else "",
            })
        return rows


def merge_and_write(new_rows: list[dict]) -> None:
    """Replace the rows of the cases just run, keep the others; write atomically."""
    key = lambda r: (r["topology"], r["config"], r["dataflow"])  # noqa: E731
    done = {key(r) for r in new_rows}
    old = []
    if GOLDEN.exists():
        with open(GOLDEN, newline="") as fh:
            old = [r for r in csv.DictReader(fh) if key(r) not in done]
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    tmp = GOLDEN.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(old + new_rows)
    os.replace(tmp, GOLDEN)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[],
                        help="topology stem to run (repeatable; default: all)")
    parser.add_argument("--dataflow", action="append", choices=DATAFLOWS, default=[])
    parser.add_argument("--config", default="scale.cfg", help="config in tests/data/scalesim/configs")
    parser.add_argument("--topology-file", default=None,
                        help="run this topology file instead of the stored ones (with --print)")
    parser.add_argument("--gemm", action="store_true", help="--topology-file is in M,N,K form")
    parser.add_argument("--print", dest="print_only", action="store_true",
                        help="print the rows as JSON lines instead of storing them")
    args = parser.parse_args(argv)
    if args.topology_file:
        for dataflow in args.dataflow or DATAFLOWS:
            for row in run_case(str(Path(args.topology_file).resolve()),
                                "gemm" if args.gemm else "conv", DATA / "configs" / args.config,
                                dataflow):
                print(json.dumps(row), flush=True)
        return 0
    base_cfg = DATA / "configs" / args.config
    for topology, form in SPARSE_TOPOLOGIES if args.config == SPARSE_CONFIG else TOPOLOGIES:
        if args.only and Path(topology).stem not in args.only:
            continue
        for dataflow in args.dataflow or DATAFLOWS:
            start = time.perf_counter()
            rows = run_case(topology, form, base_cfg, dataflow)
            if args.print_only:
                for row in rows:
                    print(json.dumps(row), flush=True)
                continue
            merge_and_write(rows)
            print(f"{topology} {args.config} {dataflow}: {len(rows)} layers, "
                  f"{time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
