"""Cnvlutin-style dataflow: dense weights, zero-free activation bricks, lanes that sync per brick group.

After "Cnvlutin: Ineffectual-Neuron-Free Deep Neural Network Computing". The model (docs/cnvlutin.md):

- `units` units, each with `lanes` (L) neuron lanes; a lane takes one activation per cycle and
  multiplies it with the unit's `filters_per_unit` filters. Filters (output channels) of a conv
  group go in passes of F = units * filters_per_unit; groups run one after another; every unit
  sees the same activations.
- Conv: per output position (a window), the valid taps (ky, kx) in row-major order (taps in the
  zero padding are skipped by the address generator in every mode), each split into bricks of
  `brick_size` consecutive input channels of the group. FC: one window, bricks of inputs.
- Brick i of a window goes to lane i mod L; bricks go in groups of L; a group takes
  max(1, max lane cost) cycles; brick cost = its non-zeros under act_mode "skip" (zero-free
  format), else its width.
- Weights are dense: weight_mode "gate" keeps every cycle and only saves MAC energy on zero
  weights; "skip" is not supported by this array.

The kernel is proven equal to the per-cycle model in accelsim.cnvlutin_reference by the tests.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from accelsim.errors import AccelsimError
from accelsim.result import DataflowResult
from traces_compat import *  # noqa: F401,F403  (placeholder removed below)
