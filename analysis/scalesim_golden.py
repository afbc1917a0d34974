"""Regenerate tests/golden/scalesim-v3.csv: SCALE-Sim v3.0.0's per-layer figures, the table the
systolic array is checked against (tests/test_systolic_scalesim.py).

Runs in SCALE-Sim's own virtual environment, never in accelsim's (it pins its own numpy):

    python -m venv /path/scalesim-venv && /path/scalesim-venv/bin/pip install scalesim==3.0.0
    V=/path/scalesim-venv/bin/python
    $V analysis/scalesim_golden.py                        # every case not yet in the table
    $V analysis/scalesim_golden.py --only alexnet --dataflow os --method full --rerun
    $V analysis/scalesim_golden.py --config scale_sparse.cfg   # N:M
    $V analysis/scalesim_golden.py --check                # counted path == every full-run row
    $V analysis/scalesim_golden.py --self-check 200       # CountingScratchpad == SCALE-Sim's memory

Two ways to get SCALE-Sim's figures, recorded per row in `method`:
- full: SCALE-Sim's run_scale, as its users run it (minutes to an hour per network here).
- counted (default): SCALE-Sim's own per-layer code, single_layer_sim.run() with its operand
  matrices, systolic_compute_os/ws/is demand matrices and its ofmap write_buffer, but with the
  double-buffered memory system swapped for CountingScratchpad. In InterfaceBandwidth CALC mode
  (every shipped scale.cfg run) SCALE-Sim's read buffers never stall, so cycles come from the
  demand matrices and the ofmap write buffer alone, SRAM counts from the compute classes, and the
  ifmap/filter DRAM reads are a count (dram_reads) that the original gets by scanning 50 sets per
  address, the slow part of a full run. Proof that nothing else changes: `--check` reruns the
  counted path on every layer the table holds from a full run and all stored figures (cycles,
  stalls, utilisations, SRAM and DRAM counts) are identical; `--self-check` compares
  CountingScratchpad with SCALE-Sim's double_buffered_scratchpad on random demand matrices with
  small SRAMs, where windows turn over and (with a narrow drain) the ofmap buffer stalls.
  USER bandwidth mode (configs/google.cfg) is refused: its read buffers stall.

Inputs are SCALE-Sim's own files, copied unchanged into tests/data/scalesim/ (topologies from its
repository's topologies/conv_nets and topologies/GEMM_mnk, configs/scale.cfg and
configs/sparsity.cfg); the 32x32 runs use scale.cfg with only `Dataflow` changed. `seconds` is
SCALE-Sim's wall time on this machine, `cpu_seconds` its CPU time (recorded since the machine got
loaded enough to inflate wall times many fold; older rows have none): the whole run on a full
case's first row, per layer for counted rows. Cases already in the table are skipped unless --rerun (their rows are then replaced).
Standard library, numpy and scalesim only: this file is not imported by accelsim.
"""

from __future__ import annotations

import argparse
import configparser
import csv
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

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
    "ifmap_dram_reads", "filter_dram_reads", "ofmap_dram_writes", "method", "seconds", "cpu_seconds",
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


def epoch_size(total_size_bytes: int, word_size: int, active_buf_frac: float) -> int:
    """Distinct addresses an estimate-mode read buffer holds before its window empties."""
    per_set = math.floor(math.floor(total_size_bytes / word_size) / 100)
    active_sets = int(round(active_buf_frac, 2) * 100)
    if active_sets != 100 - active_sets or per_set < 1:
        raise ValueError("the counting shortcut needs SCALE-Sim's active_buf_frac 0.5 and >= 100 words")
    return per_set * active_sets


def dram_reads(demand, epoch: int) -> int:
    """ReadBufferEstimateBw.num_access for a demand matrix, without its per-address window scan.

    SCALE-Sim's buffer groups the addresses it misses into sets of floor(words / 100); an address
    hits when it is in the set being filled or in a completed set of the read window. With
    active_buf_frac 0.5 the window is exactly the sets completed since the last 50-set boundary:
    at every 50th completed set it prefetches them and moves the window past them, so the window
    empties. Every miss is added to exactly one set and every set is prefetched exactly once
    (the last, partial one by complete_all_prefetches), so num_access = number of misses =
    addresses that are new within their epoch of `epoch` distinct addresses, in demand order
    (row by row, left to right, -1 skipped)."""
    flat = demand.ravel()
    seen: set = set()
    count = 0
    for addr in flat[flat != -1].tolist():
        if addr in seen:
            continue
        seen.add(addr)
        count += 1
        if len(seen) == epoch:
            seen = set()
    return count


def counting_scratchpad_class():
    """SCALE-Sim's double-buffered memory system in CALC mode, with the same report figures but
    without its per-address read-buffer scan (the slow part of a full run)."""
    from scalesim.memory.double_buffered_scratchpad_mem import double_buffered_scratchpad

    class CountingScratchpad(double_buffered_scratchpad):
        def set_params(self, **kw):
            super().set_params(**kw)
            if not self.estimate_bandwidth_mode:
                raise ValueError("the counting shortcut covers InterfaceBandwidth CALC only")
            self.epochs = [epoch_size(kw[f"{op}_buf_size_bytes"], kw["word_size"],
                                      kw["rd_buf_active_frac"]) for op in ("ifmap", "filter")]

        def service_memory_requests(self, ifmap_demand_mat, filter_demand_mat, ofmap_demand_mat):
            # In CALC mode the read buffers always hit (service_reads returns cycle + hit
            # latency), so only the ofmap write buffer can stall. One service_writes call over all
            # rows, cycle i for row i, equals SCALE-Sim's row-by-row loop: its per-call offset
            # accumulates exactly as the loop's stall_cycles do.
            rows = ofmap_demand_mat.shape[0]
            out = self.ofmap_buf.service_writes(ofmap_demand_mat,
                                                np.arange(rows, dtype=float).reshape(rows, 1))
            self.ofmap_buf.empty_all_buffers(out[-1])
            self.total_cycles = int(out.max())
            self.stall_cycles = int(out[-1, 0]) - (rows - 1)
            self.ifmap_dram_reads = dram_reads(ifmap_demand_mat, self.epochs[0])
            self.filter_dram_reads = dram_reads(filter_demand_mat, self.epochs[1])
            self.ofmap_dram_writes = self.ofmap_buf.get_num_accesses()
            self.traces_valid = True

    return CountingScratchpad


def _load(topology: str, form: str, base_cfg: Path, dataflow: str, tmp_path: Path):
    """SCALE-Sim's top-level object for one case (config with Dataflow replaced)."""
    from scalesim.scale_sim import scalesim

    cfg = config_for(base_cfg, dataflow, tmp_path)
    layout = tmp_path / "layout.csv"  # SCALE-Sim opens a layout file even when unused
    layout.write_text("Layer name,\n")
    return scalesim(save_disk_space=True, verbose=False, config=str(cfg),
                    topology=str(DATA / "topologies" / topology)
                    if not Path(topology).is_absolute() else topology, layout=str(layout),
                    input_type_gemm=form == "gemm")


def _row(sim, topology, form, base_cfg, dataflow, index, method, seconds, figures):
    """seconds = (wall, CPU) of SCALE-Sim's work for this row; CPU is what a loaded machine
    does not inflate (rows stored before it was recorded have none)."""
    conf = sim.config
    rows_arr, cols_arr = conf.get_array_dims()
    kb = conf.get_mem_sizes()
    return {
        "topology": Path(topology).stem, "form": form, "config": base_cfg.name,
        "dataflow": dataflow, "array_rows": rows_arr, "array_cols": cols_arr,
        "ifmap_sram_kb": kb[0], "filter_sram_kb": kb[1], "ofmap_sram_kb": kb[2],
        "bandwidth_mode": "USER" if conf.use_user_dram_bandwidth() else "CALC",
        "bandwidth": (conf.get_bandwidths_as_list() or [""])[0],  # CALC: none
        "sparsity": "on" if conf.sparsity_support else "off",
        "layer_index": index, "layer": sim.topo.topo_arrays[index][0],
        **figures, "method": method, "seconds": seconds[0], "cpu_seconds": seconds[1],
    }


def full_figures(layer) -> dict:
    """A layer's figures from SCALE-Sim's own report items, after a full run."""
    total, _, stall, util, mapping, compute_util = layer.get_compute_report_items()[:6]
    detail = layer.get_detail_report_items()
    return {
        # COMPUTE_REPORT's "Total Cycles" includes stalls; compute = total - stall
        "total_cycles": int(layer.total_cycles), "stall_cycles": int(stall),
        "compute_cycles": int(layer.total_cycles) - int(stall),
        "overall_util_pct": round(float(util), 6), "mapping_eff_pct": round(float(mapping), 6),
        "compute_util_pct": round(float(compute_util), 6),
        "ifmap_sram_reads": int(detail[2]), "filter_sram_reads": int(detail[5]),
        "ofmap_sram_writes": int(detail[8]), "ifmap_dram_reads": int(detail[11]),
        "filter_dram_reads": int(detail[14]), "ofmap_dram_writes": int(detail[17]),
    }


def counted_figures(layer) -> dict:
    """The same figures after single_layer_sim.run() with the counting memory system: the
    formulas of single_layer_sim.calc_report_data for the items the table keeps."""
    mem, comp = layer.memory_system, layer.compute_system
    total, stall = mem.get_total_compute_cycles(), mem.get_stall_cycles()
    return {
        "total_cycles": total, "stall_cycles": stall, "compute_cycles": total - stall,
        "overall_util_pct": round(layer.num_compute * 100 / (total * layer.num_mac_unit), 6),
        "mapping_eff_pct": round(comp.get_avg_mapping_efficiency() * 100, 6),
        "compute_util_pct": round(comp.get_avg_compute_utilization() * 100, 6),
        "ifmap_sram_reads": int(comp.get_ifmap_requests()),
        "filter_sram_reads": int(comp.get_filter_requests()),
        "ofmap_sram_writes": int(comp.get_ofmap_requests()),
        "ifmap_dram_reads": mem.ifmap_dram_reads, "filter_dram_reads": mem.filter_dram_reads,
        "ofmap_dram_writes": mem.ofmap_dram_writes,
    }


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = _clock()
    return round(wall - start[0], 3), round(cpu - start[1], 3)


def run_case(topology: str, form: str, base_cfg: Path, dataflow: str,
             method: str = "full", layers=None) -> list[dict]:
    """One topology under one config and dataflow: a row per layer. method "full" is SCALE-Sim's
    run_scale; "counted" runs SCALE-Sim's own compute path (operand matrices, systolic_compute_*
    demand matrices, its ofmap write buffer) with CountingScratchpad for the read buffers."""
    from scalesim.single_layer_sim import single_layer_sim

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        sim = _load(topology, form, base_cfg, dataflow, tmp_path)
        if method == "full":
            start = _clock()
            sim.run_scale(top_path=str(tmp_path / "out"))
            seconds = _since(start)
            return [_row(sim, topology, form, base_cfg, dataflow, i, method,
                         seconds if i == 0 else ("", ""), full_figures(layer))
                    for i, layer in enumerate(sim.runner.single_layer_sim_object_list)]
        scratchpad = counting_scratchpad_class()
        rows = []
        for index in range(sim.topo.get_num_layers()) if layers is None else layers:
            start = _clock()
            layer = single_layer_sim()
            layer.set_params(layer_id=index, config_obj=sim.config, topology_obj=sim.topo,
                             layout_obj=sim.layout, verbose=False)
            layer.memory_system = scratchpad()  # run() still calls its set_params
            layer.run()
            rows.append(_row(sim, topology, form, base_cfg, dataflow, index, method,
                             _since(start), counted_figures(layer)))
            # progress on stderr: a long case shows its pace per layer before it ends
            print(f"{Path(topology).stem} {dataflow} {rows[-1]['layer']}: {rows[-1]['seconds']} s "
                  f"(CPU {rows[-1]['cpu_seconds']} s)", file=sys.stderr, flush=True)
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


def read_golden() -> list[dict]:
    if not GOLDEN.exists():
        return []
    with open(GOLDEN, newline="") as fh:
        return list(csv.DictReader(fh))


FIGURES = COLUMNS[COLUMNS.index("total_cycles"):COLUMNS.index("method")]


def check_against_golden() -> int:
    """Rerun the counted path on every layer the table holds from a full run; print and compare
    every stored figure. Exit status 1 if any differs."""
    cases: dict = {}
    for r in read_golden():
        if r["method"] == "full":
            cases.setdefault((r["topology"], r["form"], r["config"], r["dataflow"]), []).append(r)
    layers = figures = equal = 0
    for (topology, form, config, dataflow), stored in cases.items():
        index = [int(r["layer_index"]) for r in stored]
        got = run_case(f"{topology}.csv", form, DATA / "configs" / config, dataflow, "counted", index)
        for old, new in zip(stored, got):
            same = [f for f in FIGURES if float(old[f]) == float(new[f])]
            layers, figures, equal = layers + 1, figures + len(FIGURES), equal + len(same)
            differ = [f"{f} {old[f]} vs {new[f]}" for f in FIGURES if f not in same]
            print(f"{topology} {config} {dataflow} {old['layer']}: "
                  + ("all equal" if not differ else "DIFFER " + "; ".join(differ)), flush=True)
    print(f"counted vs full: {layers} layers, {equal} of {figures} figures equal")
    return 0 if equal == figures else 1


def self_check(trials: int, seed: int = 0) -> int:
    """CountingScratchpad against SCALE-Sim's own double_buffered_scratchpad on random demand
    matrices with small SRAMs (so windows turn over and the ofmap buffer stalls): total and stall
    cycles, DRAM reads and writes must be equal."""
    from scalesim.memory.double_buffered_scratchpad_mem import double_buffered_scratchpad

    rng = np.random.default_rng(seed)
    counting = counting_scratchpad_class()
    stalled = turned = 0
    for trial in range(trials):
        rows, cols = int(rng.integers(20, 400)), int(rng.integers(1, 9))
        kw = dict(word_size=1, rd_buf_active_frac=0.5, wr_buf_active_frac=0.5,
                  ifmap_buf_size_bytes=int(rng.integers(100, 3000)),
                  filter_buf_size_bytes=int(rng.integers(100, 3000)),
                  ofmap_buf_size_bytes=int(rng.integers(8, 400)),
                  ifmap_backing_buf_bw=10, filter_backing_buf_bw=10,
                  # CALC mode drains arr_col words a cycle; narrower here so that it stalls
                  ofmap_backing_buf_bw=int(rng.integers(1, cols + 1)),
                  estimate_bandwidth_mode=True, verbose=False)
        mats = []
        for space in (int(rng.integers(50, 5000)), int(rng.integers(50, 5000)), 10**6):
            mat = rng.integers(0, space, (rows, cols)).astype(float)
            mat[rng.random((rows, cols)) < 0.8 * rng.random()] = -1
            mats.append(mat)
        mats[2][:, :] = np.where(mats[2] == -1, -1, np.arange(rows * cols).reshape(rows, cols))
        figures = []
        for cls in (double_buffered_scratchpad, counting):
            mem = cls()
            mem.set_params(**kw)
            mem.service_memory_requests(*[m.copy() for m in mats])
            figures.append((mem.get_total_compute_cycles(), mem.get_stall_cycles(),
                            mem.get_ifmap_dram_details()[2] if cls is double_buffered_scratchpad
                            else mem.ifmap_dram_reads,
                            mem.get_filter_dram_details()[2] if cls is double_buffered_scratchpad
                            else mem.filter_dram_reads,
                            mem.ofmap_buf.get_num_accesses()))
        if figures[0] != figures[1]:
            print(f"trial {trial}: SCALE-Sim {figures[0]} vs counted {figures[1]}")
            return 1
        stalled += figures[0][1] > 0
        turned += figures[0][2] > len(set(mats[0][mats[0] != -1].tolist()))
    print(f"self-check: {trials} random cases equal (total, stall cycles, DRAM reads, writes); "
          f"{stalled} with ofmap stalls, {turned} reading an ifmap word again after its window emptied")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[],
                        help="topology stem to run (repeatable; default: all)")
    parser.add_argument("--dataflow", action="append", choices=DATAFLOWS, default=[])
    parser.add_argument("--config", default="scale.cfg", help="config in tests/data/scalesim/configs")
    parser.add_argument("--method", choices=("counted", "full"), default="counted",
                        help="counted: SCALE-Sim's compute path with CountingScratchpad (default); "
                             "full: SCALE-Sim's run_scale")
    parser.add_argument("--rerun", action="store_true",
                        help="run cases already in the table again (default: skip them)")
    parser.add_argument("--check", action="store_true",
                        help="rerun the counted path on every full-run row of the table and compare")
    parser.add_argument("--self-check", type=int, default=0, metavar="N",
                        help="compare CountingScratchpad with SCALE-Sim's memory system on N random cases")
    parser.add_argument("--topology-file", default=None,
                        help="run this topology file instead of the stored ones (with --print)")
    parser.add_argument("--gemm", action="store_true", help="--topology-file is in M,N,K form")
    parser.add_argument("--print", dest="print_only", action="store_true",
                        help="print the rows as JSON lines instead of storing them")
    parser.add_argument("--merge", metavar="JSONL",
                        help="store rows printed by --print (cases run in parallel) and stop")
    args = parser.parse_args(argv)
    if args.merge:
        with open(args.merge) as fh:
            merge_and_write([json.loads(line) for line in fh if line.startswith("{")])
        return 0
    if args.self_check:
        return self_check(args.self_check)
    if args.check:
        return check_against_golden()
    if args.topology_file:
        for dataflow in args.dataflow or DATAFLOWS:
            for row in run_case(str(Path(args.topology_file).resolve()),
                                "gemm" if args.gemm else "conv", DATA / "configs" / args.config,
                                dataflow, args.method):
                print(json.dumps(row), flush=True)
        return 0
    base_cfg = DATA / "configs" / args.config
    stored = {(r["topology"], r["config"], r["dataflow"]) for r in read_golden()}
    for topology, form in SPARSE_TOPOLOGIES if args.config == SPARSE_CONFIG else TOPOLOGIES:
        if args.only and Path(topology).stem not in args.only:
            continue
        for dataflow in args.dataflow or DATAFLOWS:
            if (Path(topology).stem, base_cfg.name, dataflow) in stored and not args.rerun:
                continue
            start = time.perf_counter()
            rows = run_case(topology, form, base_cfg, dataflow, args.method)
            if args.print_only:
                for row in rows:
                    print(json.dumps(row), flush=True)
                continue
            merge_and_write(rows)
            print(f"{topology} {args.config} {dataflow} {args.method}: {len(rows)} layers, "
                  f"{time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
