"""The EIE studies of docs/: the FIFO-depth sweep and the per-layer time decomposition."""

from __future__ import annotations

import numpy as np
import pytest

from accelsim.analysis.eie_layer_time import layer_times
from accelsim.analysis.fifo_depth import fifo_depth_study
from accelsim.arch import load_arch
from accelsim.synth import random_layer
from accelsim.traces.schema import LayerGeometry


@pytest.fixture(scope="module")
def fc():
    geo = LayerGeometry("fc", "linear", (300,), (96,))
    return random_layer(geo, 0.2, 0.4, samples=2, seed=3)


def test_fifo_study_hold_is_pop_one_deeper(fc):
    """Every hold row at depth D + 1 equals the pop row at depth D; hold at depth 1 idles more."""
    f = fifo_depth_study([fc], depths=(1, 2, 3, 4, 5), num_pes=8).set_index(["queue", "fifo_depth"])
    for d in (1, 2, 3, 4):
        assert f.loc[("hold", d + 1)].equals(f.loc[("pop", d)])
    assert f.loc[("hold", 1), "idle_share"] > f.loc[("pop", 1), "idle_share"] > 0
    shares = f["starved_share"] + f["tail_share"]
    np.testing.assert_allclose(shares, f["idle_share"], atol=1e-12)


def test_layer_time_decomposition_adds_up(fc):
    """MACs / N + padding + empty slices + starved + tail = the layer's time, exactly."""
    arch = load_arch("eie64", ["eie.num_pes=8", "eie.index_bits=2"])
    t = layer_times([fc], arch).iloc[0]
    parts = t[["ideal_macs_us", "padding_us", "empty_slices_us", "starved_us", "tail_us"]]
    assert parts["padding_us"] > 0 and parts["ideal_macs_us"] > 0
    assert parts.sum() == pytest.approx(t["us"], rel=1e-12)
