"""Random sparse layers in numpy, for architecture studies, benchmarks and tests.

Uniformly random positions at exact densities: weights keep round(d * size) entries per layer,
activations round(d * size) per sample. (Trained or zoo-shaped traces come from
accelsim.traces.synthetic, which needs torch; these need nothing but numpy.)
"""

from __future__ import annotations

import numpy as np

from accelsim.traces.schema import LayerGeometry, LayerRecord, SparseBatch

# AlexNet's fully-connected layers with EIE's benchmark densities (EIE Table III: weight %, act %).
ALEXNET_FC = (
    (LayerGeometry("fc6", "linear", (9216,), (4096,)), 0.09, 0.351),
    (LayerGeometry("fc7", "linear", (4096,), (4096,)), 0.09, 0.353),
    (LayerGeometry("fc8", "linear", (4096,), (1000,)), 0.25, 0.375),
)


def _exact_positions(rng: np.random.Generator, size: int, density: float) -> np.ndarray:
    k = int(round(density * size))
    return np.sort(rng.choice(size, size=k, replace=False)) if k else np.zeros(0, np.int64)


def _skewed_positions(rng: np.random.Generator, shape: tuple[int, ...], density: float, sigma: float) -> np.ndarray:
    """Exactly round(density * size) positions, rows (output channels) kept with lognormal(sigma)
    relative weights: magnitude pruning of trained layers leaves some rows much denser than others."""
    rows, per_row = shape[0], int(np.prod(shape[1:]))
    k = int(round(density * rows * per_row))
    row_weight = rng.lognormal(0.0, sigma, rows)
    p = np.repeat(row_weight / per_row, per_row)
    p /= p.sum()
    return np.sort(rng.choice(rows * per_row, size=k, replace=False, p=p))


def random_layer(
    geometry: LayerGeometry,
    weight_density: float,
    act_density: float,
    samples: int = 1,
    seed: int = 0,
    row_skew: float = 0.0,
) -> LayerRecord:
    """A layer with weights and activations at exactly the given densities (no recorded outputs).

    row_skew = 0 spreads the kept weights uniformly; row_skew = sigma > 0 draws each output row's
    share from a lognormal(0, sigma), the imbalance that hurts an interleaved PE array.
    """
    rng = np.random.default_rng(seed)
    wsize = int(np.prod(geometry.weight_shape))
    weight = np.zeros(wsize, np.float32)
    if row_skew > 0:
        kept = _skewed_positions(rng, geometry.weight_shape, weight_density, row_skew)
    else:
        kept = _exact_positions(rng, wsize, weight_density)
    weight[kept] = rng.standard_normal(kept.size).astype(np.float32) + np.float32(0.5)
    weight[kept[weight[kept] == 0]] = 1.0
    mask = np.zeros(wsize, bool)
    mask[kept] = True
    acts = np.zeros((samples, int(np.prod(geometry.in_shape))), np.float32)
    for s in range(samples):
        pos = _exact_positions(rng, acts.shape[1], act_density)
        acts[s, pos] = rng.uniform(0.1, 2.0, pos.size).astype(np.float32)
    return LayerRecord(
        geometry=geometry,
        weight=weight.reshape(geometry.weight_shape),
        weight_mask=mask.reshape(geometry.weight_shape),
        bias=None,
        inputs=SparseBatch.from_dense(acts.reshape((samples, *geometry.in_shape))),
    )
