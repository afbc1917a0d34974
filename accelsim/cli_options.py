"""Option types with bounds, shared by the commands: checked by click before anything is
allocated, shown in every `--help` (click prints the range beside the option).

The bounds are generous for real use and small enough that no option alone can exhaust a
machine: thread counts, sample counts and batch sizes are what a workstation runs; seeds are
what numpy and torch both accept.
"""

from __future__ import annotations

import math

import click

MAX_THREADS = 256          # torch CPU threads
MAX_SAMPLES = 65536        # images recorded into one trace (MNIST/CIFAR test splits hold 10000)
MAX_BATCH = 4096           # images per forward pass in sweeps
MAX_VAL_SIZE = 1_000_000   # validation images (bounded again by the training split's size)
MAX_EPOCHS = 100_000
MAX_SEED = 2**32 - 1       # numpy's seed range; torch accepts it too
MAX_SWEEP_POINTS = 10_000  # values in one --rates / --eps / --thresholds list


class FiniteFloat(click.FloatRange):
    """A float in a range that is also finite (click's FloatRange lets NaN through: every
    comparison with NaN is false)."""

    name = "float"

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{number} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


THREADS = click.IntRange(1, MAX_THREADS)
SAMPLES = click.IntRange(1, MAX_SAMPLES)
OUTPUT_SAMPLES = click.IntRange(0, MAX_SAMPLES)
BATCH = click.IntRange(1, MAX_BATCH)
VAL_SIZE = click.IntRange(1, MAX_VAL_SIZE)
COUNT = click.IntRange(1, None)            # --limit, --limit-train, --limit-test
EPOCHS = click.IntRange(1, MAX_EPOCHS)
SEED = click.IntRange(0, MAX_SEED)
FRACTION = FiniteFloat(0.0, 1.0, min_open=True)   # eps, rates: (0, 1]
BUDGET = FiniteFloat(0.0, 100.0)                  # accuracy points
