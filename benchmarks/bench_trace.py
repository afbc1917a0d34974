"""Trace cost on LeNet-4 over 1,000 MNIST test samples: bytes per stored non-zero, time to
record, time to read back (and validate) every layer, time for the exact MAC statistics.

Random weights with 10% magnitude masks and 30% top-k activation masks (a JPnet-like sparsity)
unless --dense. Real MNIST when accelsim.models.data.load_mnist finds it, else random images.

    python benchmarks/bench_trace.py [--samples 1000] [--output-samples 100] [--dense]
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import tempfile
import time

import torch


def mnist_batches(n: int, batch: int):
    try:
        from accelsim.models.data import load_mnist
        from accelsim.models.transforms import standard_transform

        ds = load_mnist("test")
        x = standard_transform("mnist", train=False)(ds.images[:n], None)
        idx, src = ds.indices[:n].tolist(), "MNIST test"
    except Exception as exc:  # benchmark still useful without the data set
        print(f"(MNIST unavailable: {exc}; using random images)")
        x = torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))
        idx, src = list(range(n)), "random"
    return [x[i:i + batch] for i in range(0, n, batch)], idx, src


def tensor_bytes(path: str) -> dict[str, int]:
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
    return {k: v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items()
            if k != "__metadata__"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--output-samples", type=int, default=100)
    ap.add_argument("--dense", action="store_true", help="no weight or activation masks")
    args = ap.parse_args()

    from accelsim.models import zoo
    from accelsim.traces.info import trace_stats
    from accelsim.traces.reader import open_trace, validate_trace
    from accelsim.traces.recorder import record_trace
    from accelsim.traces.synthetic import magnitude_mask

    torch.manual_seed(0)
    model = zoo.build("lenet4")
    if not args.dense:
        with torch.no_grad():
            for _, mod in zoo.compute_layers(model):
                keep = magnitude_mask(mod.weight, 0.1)
                mod.weight.mul_(keep)
                mod.register_buffer("weight_mask", keep)
        zoo.set_winner_rates(model, {k: 0.3 for k in zoo.activation_masks(model)})
    batches, idx, src = mnist_batches(args.samples, 100)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "lenet4.trace.safetensors")
        t0 = time.perf_counter()
        record_trace(model, batches, path, {"model": "lenet4", "method": "bench", "dataset": src,
                                            "sample_indices": idx}, args.output_samples)
        t_rec = time.perf_counter() - t0
        t0 = time.perf_counter()
        trace = open_trace(path)
        act_nnz = sum(int(r.inputs.indptr[-1]) + (0 if r.premask is None else
                      int(r.premask.indptr[-1]) + int(r.act_mask.indptr[-1])) for r in trace)
        t_read = time.perf_counter() - t0
        t0 = time.perf_counter()
        validate_trace(path)
        t_val = time.perf_counter() - t0
        t0 = time.perf_counter()
        stats = trace_stats(trace)
        t_stats = time.perf_counter() - t0
        sizes = tensor_bytes(path)
        total = os.path.getsize(path)
    act_bytes = sum(v for k, v in sizes.items() if ".inputs." in k or ".premask." in k or ".act_mask." in k)
    by_field: dict[str, int] = {}
    for k, v in sizes.items():
        by_field[k.split(".", 1)[1].split(".")[0]] = by_field.get(k.split(".", 1)[1].split(".")[0], 0) + v
    print(f"LeNet-4, {args.samples} samples ({src}), {'dense' if args.dense else 'W 10% / A 30% top-k'}, "
          f"outputs kept for {args.output_samples}")
    print(f"file: {total / 1e6:.2f} MB  " + "  ".join(f"{k}: {v / 1e6:.2f} MB" for k, v in by_field.items()))
    print(f"activation non-zeros stored (inputs + premask + act_mask): {act_nnz:,}  "
          f"-> {act_bytes / max(act_nnz, 1):.2f} bytes per non-zero (incl. indptr)")
    print(f"record: {t_rec:.2f} s   read all layers: {t_read:.2f} s   validate: {t_val:.2f} s   "
          f"stats (exact MACs): {t_stats:.2f} s")
    print(stats[["layer", "weight_density", "act_density_mean", "dense_macs", "effective_macs",
                 "estimated_macs"]].to_string(index=False))


if __name__ == "__main__":
    main()
