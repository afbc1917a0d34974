"""accelsim vs SCALE-Sim v3 on the same topology, array and dataflow: seconds of each and the ratio.

    python benchmarks/bench_scalesim.py --topology tests/data/scalesim/topologies/vit_s.csv \\
        --dataflow ws --scalesim-python /path/scalesim-venv/bin/python

Both run as subprocesses from the command line a user types, interpreter start-up included:
`accelsim run --topology FILE --arch systolic-<df> --quiet --out ...` and SCALE-Sim (its own
virtual environment, `pip install scalesim==3.0.0`) through analysis/scalesim_golden.py under
SCALE-Sim's scale.cfg with that dataflow, the same 32x32 array and 64 KB SRAMs: its full
run_scale by default (--scalesim-method counted times the faster path that fills the golden
table instead, so its ratio is a lower bound of the full one). The per-layer cycles of both are
checked equal (accelsim = SCALE-Sim's last-cycle index + 1) before timing is reported.

Each side is timed twice: wall seconds and CPU seconds (user + system of the subprocess). On a
machine shared with heavier work the wall time is mostly waiting for a core, so the CPU ratio
is the one that says which simulator does less work; the last line gives it, with the wall
ratio beside it.

`--scalesim-method stored` runs no SCALE-Sim: it takes SCALE-Sim's cycles and seconds for the
topology and dataflow from tests/golden/scalesim-v3.csv (summed over the rows, from whichever
method made them: `full` is run_scale, `counted` a lower bound of it; CPU seconds where the rows
have them, else their wall seconds, said on the last line) and times accelsim now. Those seconds
were measured when the table was made, not in this run. It is the one way to a ratio for the
topologies whose full SCALE-Sim run takes hours.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds, stdout) of one subprocess."""
    start, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu
    if done.returncode != 0:
        sys.exit(f"error: {' '.join(cmd[:3])}... failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return seconds, cpu, done.stdout


def stored(topo: Path, dataflow: str) -> tuple[float, float | None, list[dict], str]:
    """SCALE-Sim's rows, wall and CPU seconds (None unless every row has it) for this topology
    under scale.cfg, from the golden table."""
    from accelsim.analysis.scalesim_compare import golden_rows

    rows = [r for r in golden_rows() if r["topology"] == topo.stem and r["config"] == "scale.cfg"
            and r["dataflow"] == dataflow]
    if not rows:
        sys.exit(f"error: {topo.name}: no {dataflow} rows in tests/golden/scalesim-v3.csv "
                 "(run analysis/scalesim_golden.py first)")
    rows.sort(key=lambda r: int(r["layer_index"]))
    methods = "+".join(sorted({r["method"] for r in rows}))
    wall = sum(float(r["seconds"] or 0) for r in rows)
    timed_rows = [r for r in rows if r["seconds"]]
    cpu = (sum(float(r["cpu_seconds"]) for r in timed_rows)
           if all(r.get("cpu_seconds") for r in timed_rows) else None)
    return wall, cpu, rows, f"{methods}, stored in the golden table, not timed in this run"


def measure(topo: Path, dataflow: str, method: str, scalesim_python: str | None) -> dict:
    """Time accelsim (and SCALE-Sim unless stored) on one topology and dataflow; cycles checked."""
    from accelsim.topology import is_gemm_header

    gemm = is_gemm_header(open(topo).readline().split(","))
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.csv"
        acc_s, acc_cpu, _ = timed([sys.executable, "-m", "accelsim.cli", "run", "--topology", str(topo),
                                   "--arch", f"systolic-{dataflow}", "--quiet", "--out", str(report)])
        if method == "stored":
            ss_s, ss_cpu, ss_rows, label = stored(topo, dataflow)
        else:
            ss_cmd = [scalesim_python, str(ROOT / "analysis" / "scalesim_golden.py"),
                      "--topology-file", str(topo), "--dataflow", dataflow, "--print",
                      "--method", method]
            ss_s, ss_cpu, ss_out = timed(ss_cmd + (["--gemm"] if gemm else []))
            ss_rows = [json.loads(line) for line in ss_out.splitlines() if line.startswith("{")]
            label = f"{method}, timed in this run"
        import pandas as pd

        mine = pd.read_csv(report)
        mine = mine[mine["variant"] == "baseline"]["compute_cycles"].astype(int).tolist()
    theirs = [int(row["compute_cycles"]) + 1 for row in ss_rows]
    if mine != theirs:
        sys.exit(f"error: {topo.name} {dataflow}: cycles differ: accelsim {mine}, SCALE-Sim {theirs}")
    return {"topology": topo.stem, "dataflow": dataflow, "layers": len(mine), "cycles": sum(mine),
            "acc_s": acc_s, "acc_cpu": acc_cpu, "ss_s": ss_s, "ss_cpu": ss_cpu, "label": label,
            "method": "+".join(sorted({r["method"] for r in ss_rows})) if method == "stored" else method}


def stored_cases() -> list[tuple[Path, str]]:
    """Every dense topology and dataflow in the golden table (scale.cfg), in table order."""
    from accelsim.analysis.scalesim_compare import DATA, golden_rows

    cases = {}
    for r in golden_rows():
        if r["config"] == "scale.cfg":
            cases[(r["topology"], r["dataflow"])] = None
    return [(DATA / "topologies" / f"{topo}.csv", df) for topo, df in cases]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", help="SCALE-Sim topology CSV (conv or M,N,K form)")
    parser.add_argument("--all-stored", action="store_true",
                        help="every topology and dataflow in the golden table, with "
                             "--scalesim-method stored: a markdown table")
    parser.add_argument("--dataflow", choices=("os", "ws", "is"), default="ws")
    parser.add_argument("--scalesim-python",
                        help="python of a virtual environment with scalesim==3.0.0 (not with stored)")
    parser.add_argument("--scalesim-method", choices=("full", "counted", "stored"), default="full",
                        help="full: SCALE-Sim's run_scale as its users run it (default); counted: "
                             "its compute path without the read-buffer scan (analysis/scalesim_golden.py); "
                             "stored: the seconds in tests/golden/scalesim-v3.csv, no SCALE-Sim run")
    args = parser.parse_args()
    if args.all_stored:
        args.scalesim_method = "stored"
    elif not args.topology:
        parser.error("--topology or --all-stored is needed")
    if args.scalesim_method != "stored" and not args.scalesim_python:
        parser.error("--scalesim-python is needed unless --scalesim-method stored")
    if args.all_stored:
        return table([measure(topo, df, "stored", None) for topo, df in stored_cases()])

    m = measure(Path(args.topology).resolve(), args.dataflow, args.scalesim_method, args.scalesim_python)
    print(f"topology {m['topology']}, {m['dataflow']}, 32x32: {m['layers']} layers, "
          f"{m['cycles']:,} cycles, equal in both")
    ss_cpu_text = "not stored" if m["ss_cpu"] is None else f"{m['ss_cpu']:.2f} s"
    print(f"accelsim wall {m['acc_s']:.2f} s, CPU {m['acc_cpu']:.2f} s; "
          f"SCALE-Sim wall {m['ss_s']:.2f} s, CPU {ss_cpu_text}")
    wall = f"wall {m['ss_s'] / m['acc_s']:.1f}x (accelsim {m['acc_s']:.2f} s, SCALE-Sim {m['ss_s']:.2f} s)"
    if m["ss_cpu"] is None:
        print(f"SCALE-Sim ({m['label']}) / accelsim: {wall}")
    else:
        print(f"SCALE-Sim ({m['label']}) / accelsim: CPU {m['ss_cpu'] / m['acc_cpu']:.1f}x "
              f"(accelsim {m['acc_cpu']:.2f} s, SCALE-Sim {m['ss_cpu']:.2f} s); {wall}")


def table(rows: list[dict]) -> None:
    """One markdown row per case: CPU ratio where SCALE-Sim's CPU seconds are stored."""
    print("| topology | dataflow | layers | accelsim wall / CPU (s) | SCALE-Sim method | "
          "SCALE-Sim wall / CPU (s) | ratio CPU | ratio wall |")
    print("|---|---|---:|---:|---|---:|---:|---:|")
    for m in rows:
        ss_cpu = "-" if m["ss_cpu"] is None else f"{m['ss_cpu']:.1f}"
        ratio = "-" if m["ss_cpu"] is None else f"{m['ss_cpu'] / m['acc_cpu']:.1f}x"
        print(f"| {m['topology']} | {m['dataflow']} | {m['layers']} | {m['acc_s']:.1f} / "
              f"{m['acc_cpu']:.2f} | {m['method']} | {m['ss_s']:.1f} / {ss_cpu} | {ratio} | "
              f"{m['ss_s'] / m['acc_s']:.1f}x |")
    print(f"cases {len(rows)}; SCALE-Sim seconds stored in tests/golden/scalesim-v3.csv, "
          "not timed in this run; accelsim timed now")


if __name__ == "__main__":
    main()
