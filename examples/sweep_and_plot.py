"""Simulate a trace, sweep the EIE array's PE count and FIFO depth, plot the Pareto front.

    python examples/sweep_and_plot.py [TRACE] [--out-dir DIR]

Copy into a notebook cell by cell; every call is documented in docs/api.md.
"""

import argparse
from pathlib import Path

import accelsim
from accelsim.pareto import pareto_mask, plot_pareto

HERE = Path(__file__).resolve().parent
DEFAULT_TRACE = HERE.parent / "traces" / "reference" / "lenet4-jp.trace.safetensors"

def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("trace", nargs="?", default=str(DEFAULT_TRACE))
    parser.add_argument("--out-dir", default="example-out")
    parser.add_argument("--scheduler", default=None, help="in-process, tcp://host:port or none: local")
    args = parser.parse_args()
    out = Path(args.out_dir)
    out.mkdir(exist_ok=True)

    # 1. one run: a row per layer and variant (sparse array, baseline), as `accelsim run`
    report = accelsim.simulate(args.trace, arch="eie64", set={"eie.fifo_depth": 4})
    print(accelsim.summary(report)[["trace", "arch", "cycles", "energy_uj", "speedup_vs_baseline"]])

    # 2. a sweep: one row per point, stored per point under example-out/sweep.parts (resumable)
    table = accelsim.sweep(args.trace, grid={"eie.num_pes": [16, 32, 64], "eie.fifo_depth": [1, 4, 8]},
                           out=out / "sweep.parquet", scheduler=args.scheduler)
    front = table[pareto_mask(table["cycles"], table["energy_uj"])]
    print("Pareto front:")
    print(front[["eie.num_pes", "eie.fifo_depth", "cycles", "energy_uj"]].to_string(index=False))

    # 3. the figure
    plot_pareto(table, out / "pareto.png")
    print(f"wrote {out / 'sweep.parquet'} and {out / 'pareto.png'}")


# the guard matters: the sweep's local Dask cluster starts worker processes that import this file
if __name__ == "__main__":
    main()
