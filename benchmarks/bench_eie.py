"""Benchmark the EIE-style kernel on one core: step rate and a synthetic AlexNet inference.

    python benchmarks/bench_eie.py [--samples 1]

Layers are AlexNet-shaped (conv output sizes from Table V of the JPnet paper: 56, 28, 13, 13,
13; fc 9216-4096-4096-1000), built directly in numpy with EIE's densities (9% weights, 35%
activations), batch `--samples`. Times the sparse array (skip/skip) and its dense baseline
(none/none) after a JIT warm-up, functional outputs included. Target: < 2 s for both.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402

from accelsim.dataflows.eie.kernel import simulate_eie  # noqa: E402
from accelsim.traces.schema import LayerGeometry, LayerRecord, SparseBatch  # noqa: E402

# name, in_shape, out_shape, kernel, stride, padding, groups
ALEXNET = [
    ("conv1", (3, 227, 227), (96, 56, 56), 11, 4, 2, 1),
    ("conv2", (96, 28, 28), (256, 28, 28), 5, 1, 2, 2),
    ("conv3", (256, 13, 13), (384, 13, 13), 3, 1, 1, 1),
    ("conv4", (384, 13, 13), (384, 13, 13), 3, 1, 1, 2),
    ("conv5", (384, 13, 13), (256, 13, 13), 3, 1, 1, 2),
    ("fc1", (9216,), (4096,), 1, 1, 0, 1),
    ("fc2", (4096,), (4096,), 1, 1, 0, 1),
    ("fc3", (4096,), (1000,), 1, 1, 0, 1),
]
EIE = dict(num_pes=64, fifo_depth=8, index_bits=4, empty_slice_cycles=1)


def sparse(rng, shape, density):
    values = rng.standard_normal(shape, dtype=np.float32)
    values *= rng.random(shape, dtype=np.float32) < density
    return values


def build_layers(samples: int, weight_density=0.09, act_density=0.35, seed=0) -> list[LayerRecord]:
    rng = np.random.default_rng(seed)
    layers = []
    for name, in_shape, out_shape, k, s, p, g in ALEXNET:
        kind = "linear" if len(in_shape) == 1 else "conv2d"
        kw = {} if kind == "linear" else dict(kernel=(k, k), stride=(s, s), padding=(p, p), groups=g)
        geo = LayerGeometry(name, kind, in_shape, out_shape, has_bias=True, **kw)
        acts = np.abs(sparse(rng, (samples, *in_shape), act_density))
        layers.append(LayerRecord(
            geometry=geo,
            weight=sparse(rng, geo.weight_shape, weight_density),
            weight_mask=None,
            bias=rng.standard_normal(out_shape[0], dtype=np.float32),
            inputs=SparseBatch.from_dense(acts),
            outputs=np.zeros((samples, *out_shape), dtype=np.float32),
        ))
    return layers


def run(layers, act_mode, weight_mode):
    t0 = time.perf_counter()
    cycles = steps = 0
    for layer in layers:
        r = simulate_eie(layer, act_mode=act_mode, weight_mode=weight_mode, **EIE)
        cycles += r.counters["cycles"]
        steps += r.extra["broadcasts"] * EIE["num_pes"]
    return time.perf_counter() - t0, cycles, steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1)
    args = ap.parse_args()
    numba.set_num_threads(1)
    layers = build_layers(args.samples)
    warm = build_layers(1, seed=1)[-1:]
    for mode in ("skip", "none"):
        run(warm, mode, mode)  # JIT warm-up (or cache load)

    # step rate of the timing recurrence alone, on one core
    from accelsim.dataflows.eie.kernel import CostTables, _nonzero_inputs, _timing

    fc = layers[5]
    tables = CostTables.build(fc, 64, 4, 1, "skip")
    indptr, idx, _ = _nonzero_inputs(fc, fc.inputs.num_samples)
    idx_rep = np.tile(idx, 50)
    t0 = time.perf_counter()
    _timing(tables.cost, np.array([0, idx_rep.size]), idx_rep, 8, tables.entries_tot,
            tables.padding_tot)
    dt = time.perf_counter() - t0
    print(f"timing recurrence: {idx_rep.size * 64 / dt / 1e6:.1f} M activation x PE steps/s "
          f"(1 thread)")

    total = 0.0
    for label, mode in (("sparse (skip/skip)", "skip"), ("dense  (none/none)", "none")):
        wall, cycles, steps = run(layers, mode, mode)
        total += wall
        print(f"AlexNet {label}: {wall:.3f} s wall, {cycles:,} cycles "
              f"({cycles / 800e6 * 1e3:.3f} ms at 800 MHz), {steps / wall / 1e6:.1f} M steps/s")
    print(f"sparse + dense: {total:.3f} s (target < 2 s), samples={args.samples}")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
