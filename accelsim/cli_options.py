"""Option types with bounds, shared by the commands: checked by click before anything is
allocated, shown in every `--help` (click prints the range beside the option).

The bounds are generous for real use and small enough that no option alone can exhaust a
machine: thread counts, sample counts and batch sizes are what a workstation runs; seeds are
what numpy and torch both accept. Value lists (--rates, --eps, --thresholds) are parsed here
too, without torch, so a bad list is refused at once and counted before it is built.
"""

from __future__ import annotations

import math

import click

from accelsim.errors import AccelsimError

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


_TOL = 1e-9


def parse_values(text: str, option: str, *, low: float, high: float | None,
                 low_open: bool = False) -> list[float]:
    """Sorted unique numbers from "start:stop:step" (stop included within float tolerance) or a
    comma list; each must lie in [low, high] ((low, high] with low_open)."""
    text = (text or "").strip()
    syntax = (f"{option}: bad value {text!r}; expected start:stop:step (e.g. 0.05:1:0.05) "
              "or a comma list")
    try:
        if ":" in text:
            parts = [float(p) for p in text.split(":")]
            if len(parts) != 3:
                raise ValueError
            start, stop, step = parts
            if not all(math.isfinite(p) for p in parts):
                raise ValueError
            if step <= 0:
                raise AccelsimError(f"{option}: step must be > 0 in {text!r}")
            if stop < start:
                raise AccelsimError(f"{option}: stop {stop} is below start {start} in {text!r}")
            count = math.floor((stop - start) / step + 1e-6) + 1
            if count > MAX_SWEEP_POINTS:  # refuse before building the list
                raise AccelsimError(f"{option}: {text!r} gives {count} values; at most "
                                    f"{MAX_SWEEP_POINTS} per sweep")
            values = [round(start + i * step, 10) for i in range(count)]
        else:
            values = [float(p) for p in text.split(",") if p.strip() != ""]
            if not values:
                raise ValueError
            if len(values) > MAX_SWEEP_POINTS:
                raise AccelsimError(f"{option}: {len(values)} values; at most {MAX_SWEEP_POINTS} "
                                    "per sweep")
    except ValueError:
        raise AccelsimError(syntax) from None
    for v in values:
        bad_low = v <= low if low_open else v < low
        if not math.isfinite(v) or bad_low or (high is not None and v > high + _TOL):
            rng = f"{'(' if low_open else '['}{low}, {high if high is not None else 'inf'}"
            rng += "]" if high is not None else ")"
            raise AccelsimError(f"{option}: value {v} out of range {rng} in {text!r}")
    return sorted({min(v, high) if high is not None else v for v in values})


def parse_rates(text: str, option: str = "--rates") -> list[float]:
    """Winner rates in (0, 1]: "0.05:1:0.05" (0.05, 0.10, ..., 1.0) or "0.1,0.5,1"."""
    return parse_values(text, option, low=0.0, high=1.0, low_open=True)
