"""Benchmark the whole replay (`accelsim run` minus printing) of an AlexNet-shaped trace on eie64.

    python benchmarks/bench_run.py [--samples 1] [--threads 1] [--masks relu|topk]

Makes (once, cached under the temp dir) a synthetic AlexNet trace with EIE's densities (9%
weights, 35% activations on every hidden layer) through the normal recorder: ReLU zeros by
default (no masks, so no top-k unit, as in EIE's benchmark), or top-k masks with --masks topk.
Then times accelsim.simulate.simulate_trace: trace read and validation, exact MAC statistics, the
EIE kernel, the top-k unit (top-k traces only), memory and energy, for the sparse array and its
baseline. Reports a cold run (JIT cache already on disk, fresh process state otherwise), the
warm time, simulated events per second and peak RSS.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path


def alexnet_trace(samples: int, masks: str = "relu") -> Path:
    """The AlexNet-shaped trace with EIE's densities, made once and kept in the temp dir."""
    trace = Path(tempfile.gettempdir()) / f"accelsim-bench-alexnet-{masks}-{samples}.trace.safetensors"
    if not trace.exists():
        from accelsim.traces.synthetic import synthetic_trace

        start = time.perf_counter()
        synthetic_trace("alexnet", str(trace), weight_density=0.09, act_density=0.35,
                        num_samples=samples, seed=0, masks=masks)
        print(f"made {trace} in {time.perf_counter() - start:.1f} s ({trace.stat().st_size / 1e6:.1f} MB)")
        if "torch" in sys.modules:
            print("(torch was imported to make the trace; rerun for a torch-free timing)")
    return trace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--masks", choices=("relu", "topk"), default="relu",
                        help="activation zeros: ReLU (no top-k unit) or top-k masks")
    args = parser.parse_args()
    os.environ["NUMBA_NUM_THREADS"] = str(args.threads)

    trace = alexnet_trace(args.samples, args.masks)

    from accelsim.arch import load_arch
    from accelsim.energy import load_energy_table
    from accelsim.simulate import simulate_trace

    arch = load_arch("eie64")
    energy = load_energy_table()
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        rows = simulate_trace(trace, arch, energy)
        timings.append(time.perf_counter() - start)
    sparse = [r for r in rows if r["variant"] == "sparse"]
    baseline = [r for r in rows if r["variant"] == "baseline"]
    steps = sum((r["events_fifo_push"]) for r in rows) * args.samples  # activation x PE steps
    cycles_s = sum(r["cycles"] for r in sparse)
    cycles_b = sum(r["cycles"] for r in baseline)
    unit = "top-k masks, top-k unit included" if args.masks == "topk" else "ReLU zeros, no top-k unit"
    print(f"AlexNet-shaped ({unit}), {args.samples} sample(s), eie64, {args.threads} thread(s)")
    print(f"  first run (JIT from cache): {timings[0]:.2f} s; warm: {min(timings[1:]):.2f} s "
          "(sparse + baseline, all 8 layers)")
    print(f"  simulated activation x PE steps: {steps:,.0f} -> {steps / min(timings[1:]):,.0f} per second")
    print(f"  cycles per inference: sparse {cycles_s:,.0f}, baseline {cycles_b:,.0f} "
          f"(speedup {cycles_b / cycles_s:.2f}x)")
    print(f"  peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
