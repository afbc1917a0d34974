"""accelsim's systolic array against SCALE-Sim v3's golden table (tests/golden/scalesim-v3.csv,
written by analysis/scalesim_golden.py), layer by layer.

    python -m accelsim.analysis.scalesim_compare        # agreement table per case

Conventions bridged (docs/hardware-model.md, "Systolic array"):
- SCALE-Sim reports the index of the cycle in which the last output is written, counting from 0;
  accelsim counts cycles, so accelsim = SCALE-Sim + 1 on every layer.
- SCALE-Sim's output-stationary ofmap SRAM count adds R + C per fold to the P x F outputs it
  writes (systolic_compute_os.create_ofmap_demand_mat adds the fold's shape to its count); the
  comparison removes that before comparing.
- DRAM: filter reads and ofmap writes follow SCALE-Sim's read and write buffers on every layer;
  ifmap reads only where no two windows share an input word (`distinct`: GEMMs, 1x1
  convolutions). Elsewhere accelsim's ifmap figure is a model (docs/hardware-model.md).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "scalesim"
GOLDEN = ROOT / "tests" / "golden" / "scalesim-v3.csv"


@dataclass
class Compared:
    topology: str
    config: str
    dataflow: str
    sparsity: str  # "off", or the layer's N:M pattern in SCALE-Sim's sparse mode
    layer: str
    scalesim: dict
    accelsim: dict  # empty when accelsim refuses the layer (refused says why)
    refused: str = ""
    distinct: bool = False  # no two windows share an input word: ifmap DRAM reads are exact


def golden_rows(path: Path = GOLDEN) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _shell_record(geometry):
    """A layer with the right shapes and no data: enough for dense timing and access counts."""
    from accelsim.traces.schema import LayerRecord, SparseBatch

    inputs = SparseBatch(tuple(geometry.in_shape), np.zeros(2, np.int64), np.zeros(0, np.int64),
                         np.zeros(0, np.float32))
    return LayerRecord(geometry=geometry, weight=np.zeros(geometry.weight_shape, np.float32),
                       weight_mask=None, bias=None, inputs=inputs)


def compare(rows: list[dict] | None = None) -> list[Compared]:
    """Run every golden layer through accelsim's systolic kernel with the same array."""
    from accelsim.arch import load_arch
    from accelsim.dataflows import get
    from accelsim.dataflows.systolic.kernel import distinct_windows
    from accelsim.errors import AccelsimError
    from accelsim.topology import read_topology

    rows = golden_rows() if rows is None else rows
    flow = get("systolic")
    topo_cache: dict[str, list] = {}
    out = []
    for r in rows:
        if r["topology"] not in topo_cache:
            topo_cache[r["topology"]] = read_topology(DATA / "topologies" / f"{r['topology']}.csv")
        item = topo_cache[r["topology"]][int(r["layer_index"])]
        nm = item.nm if r["sparsity"] == "on" else None
        overrides = [
            f"systolic.dataflow={r['dataflow']}", f"systolic.rows={r['array_rows']}",
            f"systolic.cols={r['array_cols']}", f"systolic.ifmap_sram_kb={r['ifmap_sram_kb']}",
            f"systolic.filter_sram_kb={r['filter_sram_kb']}",
            f"systolic.ofmap_sram_kb={r['ofmap_sram_kb']}"]
        if nm is not None:
            overrides.append(f"systolic.nm={nm[0]}:{nm[1]}")
        arch = load_arch("systolic-os", overrides).with_sparsity("none", "none" if nm is None else "skip")
        sparsity = "off" if r["sparsity"] == "off" else (f"{nm[0]}:{nm[1]}" if nm else "1:1")
        rr, cc = int(r["array_rows"]), int(r["array_cols"])
        record = _shell_record(item.geometry)
        try:
            res = flow.run(record, arch, functional=False)
        except AccelsimError as exc:
            out.append(Compared(r["topology"], r["config"], r["dataflow"], sparsity, r["layer"],
                                {"cycles": int(r["compute_cycles"]) + 1}, {}, str(exc)))
            continue
        quirk = int(res.extra["folds"]) * (rr + cc) if r["dataflow"] == "os" else 0
        ss = {
            "cycles": int(r["compute_cycles"]) + 1,
            "ifmap_sram_reads": int(r["ifmap_sram_reads"]),
            "filter_sram_reads": int(r["filter_sram_reads"]),
            "ofmap_sram_writes": int(r["ofmap_sram_writes"]) - quirk,
            "ifmap_dram_reads": int(r["ifmap_dram_reads"]),
            "filter_dram_reads": int(r["filter_dram_reads"]),
            "ofmap_dram_writes": int(r["ofmap_dram_writes"]),
        }
        mine = {
            "cycles": int(res.cycles[0]),
            "ifmap_sram_reads": res.counter("act_read"),
            "filter_sram_reads": res.counter("weight_read"),
            "ofmap_sram_writes": res.counter("act_write"),
            "ifmap_dram_reads": int(res.extra["ifmap_dram_reads"]),
            "filter_dram_reads": int(res.extra["filter_dram_reads"]),
            "ofmap_dram_writes": int(res.extra["ofmap_dram_writes"]),
        }
        out.append(Compared(r["topology"], r["config"], r["dataflow"], sparsity, r["layer"], ss, mine,
                            distinct=distinct_windows(record)))
    return out


def agreement_table(results: list[Compared]):
    """Per (topology, config, dataflow): layers compared and layers equal, per figure."""
    import pandas as pd

    recs = []
    keys = ("cycles", "ifmap_sram_reads", "filter_sram_reads", "ofmap_sram_writes",
            "ifmap_dram_reads", "filter_dram_reads", "ofmap_dram_writes")
    for c in results:
        rec = {"topology": c.topology, "config": c.config, "dataflow": c.dataflow, "layers": 1,
               "refused": int(bool(c.refused)), "distinct": int(c.distinct)}
        for key in keys:
            rec[f"{key}_equal"] = int(bool(c.accelsim) and c.scalesim[key] == c.accelsim[key])
        recs.append(rec)
    frame = pd.DataFrame(recs)
    return frame.groupby(["topology", "config", "dataflow"], sort=False).sum().reset_index()


def main() -> None:
    import pandas as pd

    results = compare()
    table = agreement_table(results)
    short = {c: c.replace("_equal", "").replace("_sram", "").replace("_dram", "@dram")
             for c in table.columns}
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(table.rename(columns=short).to_string(index=False))
    for c in results:
        if c.refused:
            print(f"refused: {c.topology} {c.dataflow} {c.layer}: {c.refused}")
    dense = table[table["config"] != "scale_sparse.cfg"].sum(numeric_only=True)
    sparse = table[table["config"] == "scale_sparse.cfg"].sum(numeric_only=True)
    print(f"dense: layers compared {dense['layers']}; equal: cycles {dense['cycles_equal']}, SRAM "
          f"ifmap {dense['ifmap_sram_reads_equal']} filter {dense['filter_sram_reads_equal']} "
          f"ofmap {dense['ofmap_sram_writes_equal']}, DRAM filter {dense['filter_dram_reads_equal']} "
          f"ofmap {dense['ofmap_dram_writes_equal']} ifmap {dense['ifmap_dram_reads_equal']} "
          f"(layers with distinct windows: {dense['distinct']})")
    print(f"N:M: layers {sparse['layers']}, refused {sparse['refused']}, "
          f"cycles equal {sparse['cycles_equal']}")


if __name__ == "__main__":
    main()
