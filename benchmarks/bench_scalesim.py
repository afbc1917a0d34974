"""accelsim vs SCALE-Sim v3 on the same topology, array and dataflow: wall seconds of each.

    python benchmarks/bench_scalesim.py --topology tests/data/scalesim/topologies/vit_s.csv \\
        --dataflow ws --scalesim-python /path/scalesim-venv/bin/python

Both run as subprocesses from the command line a user types, interpreter start-up included:
`accelsim run --topology FILE --arch systolic-<df> --quiet --out ...` and SCALE-Sim (its own
virtual environment, `pip install scalesim==3.0.0`) through analysis/scalesim_golden.py under
SCALE-Sim's scale.cfg with that dataflow, the same 32x32 array and 64 KB SRAMs: its full
run_scale by default (--scalesim-method counted times the faster path that fills the golden
table instead). The per-layer
cycles of both are checked equal (accelsim = SCALE-Sim's last-cycle index + 1) before timing
is reported. The last line is the ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"error: {' '.join(cmd[:3])}... failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return seconds, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", required=True, help="SCALE-Sim topology CSV (conv or M,N,K form)")
    parser.add_argument("--dataflow", choices=("os", "ws", "is"), default="ws")
    parser.add_argument("--scalesim-python", required=True,
                        help="python of a virtual environment with scalesim==3.0.0")
    parser.add_argument("--scalesim-method", choices=("full", "counted"), default="full",
                        help="full: SCALE-Sim's run_scale as its users run it (default); counted: "
                             "its compute path without the read-buffer scan (analysis/scalesim_golden.py)")
    args = parser.parse_args()

    from accelsim.topology import is_gemm_header

    topo = Path(args.topology).resolve()
    gemm = is_gemm_header(open(topo).readline().split(","))
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.csv"
        acc_s, _ = timed([sys.executable, "-m", "accelsim.cli", "run", "--topology", str(topo),
                          "--arch", f"systolic-{args.dataflow}", "--quiet", "--out", str(report)])
        ss_cmd = [args.scalesim_python, str(ROOT / "analysis" / "scalesim_golden.py"),
                  "--topology-file", str(topo), "--dataflow", args.dataflow, "--print",
                  "--method", args.scalesim_method]
        ss_s, ss_out = timed(ss_cmd + (["--gemm"] if gemm else []))
        import pandas as pd

        mine = pd.read_csv(report)
        mine = mine[mine["variant"] == "baseline"]["compute_cycles"].astype(int).tolist()
    theirs = [json.loads(line)["compute_cycles"] + 1 for line in ss_out.splitlines() if line.startswith("{")]
    if mine != theirs:
        sys.exit(f"error: cycles differ: accelsim {mine}, SCALE-Sim {theirs}")
    print(f"topology {topo.name}, {args.dataflow}, 32x32: {len(mine)} layers, "
          f"{sum(mine):,} cycles, equal in both")
    print(f"accelsim {acc_s:.2f} s, SCALE-Sim {ss_s:.2f} s")
    print(f"SCALE-Sim ({args.scalesim_method}) / accelsim wall time: {ss_s / acc_s:.1f}x "
          f"(accelsim {acc_s:.2f} s, SCALE-Sim {ss_s:.2f} s)")


if __name__ == "__main__":
    main()
