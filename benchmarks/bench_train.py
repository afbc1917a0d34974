"""Training cost of joint pruning: one dense epoch and one JP epoch of LeNet-4 on MNIST, timed
in the same process by the training loop itself (models/train.py: the epoch's "seconds", which
excludes the test evaluation and the checkpoint write).

The JP epoch is a steady-state one: top-k activation masks at the paper recipe's winner rates,
weights already pruned to the recipe's densities (masks re-applied every step), L1 gradients,
Adadelta; it starts from the dense network trained in the same run. Dense and JP epochs
alternate --repeat times and the fastest of each is kept (other processes only add time).

    python benchmarks/bench_train.py [--limit-train N] [--repeat 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit-train", type=int, default=None,
                    help="train on the first N images (default: the recipe's full split)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()

    from accelsim.models.data import load_dataset, train_val_split
    from accelsim.models.recipes import get_recipe
    from accelsim.models.train import train

    dense = get_recipe("lenet4", "dense")
    jp = get_recipe("lenet4", "jp")
    jp = replace(jp, jp=replace(jp.jp, warmup_epochs=0), prune=replace(jp.prune, prune_epochs=(0,)))
    train_set = load_dataset("mnist", "train", args.data_dir)
    train_set = train_set.subset(train_val_split(len(train_set), dense.val_size, 0)[0])
    if args.limit_train:
        train_set = train_set.subset(range(min(args.limit_train, len(train_set))))
    test_set = load_dataset("mnist", "test", args.data_dir).subset(range(100))
    kw = dict(train_set=train_set, test_set=test_set, progress=False, threads=args.threads,
              epochs=1)
    times: dict[str, list[float]] = {"dense": [], "jp": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):
            t0 = time.perf_counter()
            info = train("lenet4", "dense", Path(tmp, f"dense{r}"), recipe=dense, **kw)
            times["dense"].append(info["metrics"]["history"][-1]["seconds"])
            info = train("lenet4", "jp", Path(tmp, f"jp{r}"), recipe=jp,
                         from_checkpoint=Path(tmp, f"dense{r}"), **kw)
            times["jp"].append(info["metrics"]["history"][-1]["seconds"])
            print(f"repeat {r + 1}: dense {times['dense'][-1]:.2f} s, jp {times['jp'][-1]:.2f} s "
                  f"(wall {time.perf_counter() - t0:.1f} s incl. evaluation and checkpoints)")
    d, j = min(times["dense"]), min(times["jp"])
    print(f"LeNet-4, {len(train_set)} MNIST training images, batch {dense.batch_size}, "
          f"{args.threads} threads, fastest of {args.repeat}")
    print(f"jp/dense epoch time ratio: {j / d:.2f} (jp {j:.2f} s, dense {d:.2f} s)")


if __name__ == "__main__":
    main()
