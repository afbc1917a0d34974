"""Encode once: whole replay and a 100-point EIE sweep against the timing kernels' own time.

    python benchmarks/bench_sweep.py [--samples 1] [--points 100] [--repeat 20]

One core (NUMBA_NUM_THREADS=1), the AlexNet-shaped synthetic trace of bench_run.py (EIE's
densities: 9% weights, 35% activations; ReLU zeros, or top-k masks with --masks topk). The timing kernel
(accelsim.dataflows.eie.kernel._timing, the event recurrence) is wrapped to add up its own CPU
time; everything else (trace reading and validation, weight-side encoding, statistics, the
functional check, the top-k unit, memory, energy, rows) is the overhead the ratios measure.
CPU time (process_time) is used for both sides of each ratio, so other load on the machine
does not skew them; wall seconds are printed beside them.

1. replay: `simulate_trace` on eie64 (sparse + dense baseline, all 8 layers), fresh in-memory
   state, first with an empty encoding cache, then with the cache on disk warm (the warm replay
   --repeat times, CPU times summed: one is too short to time alone);
2. sweep: num_pes in (16, 32, 64, 128) x fifo_depth in 1..N/4, in-process, fresh in-memory
   state, with an empty cache (cold) and again with it warm.
"""

from __future__ import annotations

import os

os.environ["NUMBA_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402


class KernelClock:
    """Wraps the EIE timing kernel; `seconds` is its CPU time since the last reset."""

    def __init__(self):
        import accelsim.dataflows.eie.kernel as kernel

        self.seconds, self.steps = 0.0, 0
        inner = kernel._timing

        def timed(cost, indptr, idx, *rest):
            start = time.process_time()
            out = inner(cost, indptr, idx, *rest)
            self.seconds += time.process_time() - start
            self.steps += int(indptr[-1] - indptr[0]) * int(cost.shape[1])
            return out

        kernel._timing = timed

    def reset(self):
        self.seconds, self.steps = 0.0, 0


def fresh_process_state():
    """Forget loaded traces and their in-memory encodings (the disk cache stays)."""
    from accelsim.simulate import _LOADED

    _LOADED.clear()


def measure(label, clock, run, repeat: int = 1):
    """CPU time of `run` (fresh in-memory state each time) over its kernels' CPU time; with
    repeat > 1 both are summed over the repeats (a warm replay is ~50 ms, too short to time
    once on a shared machine) and reported per run."""
    clock.reset()
    wall = cpu = 0.0
    for _ in range(repeat):
        fresh_process_state()
        w, c = time.perf_counter(), time.process_time()
        run()
        wall, cpu = wall + time.perf_counter() - w, cpu + time.process_time() - c
    ratio = cpu / clock.seconds
    wall, cpu = wall / repeat, cpu / repeat
    clock.seconds, clock.steps = clock.seconds / repeat, clock.steps // repeat
    if repeat > 1:
        label = f"{label}, mean of {repeat}"
    print(f"  {label}: {cpu:.2f} s CPU ({wall:.2f} s wall), kernels {clock.seconds:.3f} s, "
          f"{clock.steps:,} activation x PE steps -> {clock.steps / clock.seconds:,.0f} per "
          f"kernel second, {clock.steps / cpu:,.0f} per second overall; ratio {ratio:.2f}")
    return ratio, cpu, clock.seconds, clock.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=20,
                        help="warm replays timed together (their CPU times summed)")
    parser.add_argument("--masks", choices=("relu", "topk"), default="relu",
                        help="activation zeros: ReLU (EIE's benchmark, no top-k unit) or top-k masks")
    args = parser.parse_args()
    from bench_run import alexnet_trace

    trace = alexnet_trace(args.samples, args.masks)
    try:
        run(trace, args)
    finally:
        for folder in CACHES:
            shutil.rmtree(folder, ignore_errors=True)


CACHES: list[str] = []


def fresh_cache() -> None:
    """An empty encoding cache (removed at exit)."""
    CACHES.append(tempfile.mkdtemp(prefix="accelsim-bench-cache-"))
    os.environ["ACCELSIM_CACHE"] = CACHES[-1]


def run(trace, args) -> None:
    fresh_cache()
    from accelsim.arch import load_arch
    from accelsim.energy import load_energy_table
    from accelsim.simulate import simulate_trace
    from accelsim.sweep_arch import run_sweep

    clock = KernelClock()
    arch, energy = load_arch("eie64"), load_energy_table()
    simulate_trace(trace, arch, energy)  # JIT from cache, warms nothing else that is kept
    fresh_cache()
    print(f"AlexNet-shaped ({args.masks} zeros), {args.samples} sample(s), one core")
    replay = [measure(f"replay ({state} cache)", clock, lambda: simulate_trace(trace, arch, energy),
                      repeat=1 if state == "empty" else args.repeat)
              for state in ("empty", "warm")]
    per = max(1, args.points // 4)
    grid = {"eie.num_pes": [16, 32, 64, 128], "eie.fifo_depth": list(range(1, per + 1))}
    fresh_cache()
    sweep = [measure(f"sweep of {4 * per} points ({state} cache)", clock,
                     lambda: run_sweep(trace, grid, scheduler="in-process"))
             for state in ("empty", "warm")]
    print(f"replay/kernel time ratio: {replay[1][0]:.2f} (empty cache: {replay[0][0]:.2f}; "
          f"{replay[1][1]:.2f} s vs {replay[1][2]:.3f} s)")
    print(f"sweep/kernel time ratio: {sweep[1][0]:.2f} (empty cache: {sweep[0][0]:.2f}; "
          f"{sweep[1][1]:.2f} s vs {sweep[1][2]:.3f} s)")


if __name__ == "__main__":
    main()
