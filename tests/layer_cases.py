"""Small layers for the array tests: records from dense tensors, and hypothesis-drawn layers whose
parameters and contents shrink on failure (fast kernel vs per-cycle reference)."""

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from accelsim.traces.schema import LayerGeometry, LayerRecord, SparseBatch

VALUES = [0.0, 1.5, -0.75, 2.0, 0.25]  # 0 first: hypothesis shrinks contents towards zeros


def out_size(n, k, s, p, d):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def conv_record(x, wt, k, stride=(1, 1), pad=(0, 0), dil=(1, 1), groups=1, s_out=None,
                bias=None):
    """A conv LayerRecord from dense (S, C, H, W) inputs and (M, C/groups, kh, kw) weights
    (bias 0, 1, 2, ... unless given)."""
    s, c, h, w = x.shape
    m = wt.shape[0]
    oh = out_size(h, k[0], stride[0], pad[0], dil[0])
    ow = out_size(w, k[1], stride[1], pad[1], dil[1])
    geo = LayerGeometry("conv", "conv2d", (c, h, w), (m, oh, ow), tuple(k), tuple(stride),
                        tuple(pad), tuple(dil), groups, True)
    s_out = s if s_out is None else s_out
    bias = np.arange(m, dtype=np.float32) if bias is None else bias
    return LayerRecord(geo, wt, None, bias, SparseBatch.from_dense(x),
                       outputs=np.zeros((s_out, m, oh, ow), np.float32))


def draw_layer(draw, samples, *, fc, channels, filters, stride_w, pad_w, height):
    """A linear layer (features, outputs up to `fc`) or a grouped, strided, padded, dilated conv
    (input channels per group up to `channels`, filters per group up to `filters`, horizontal
    stride and padding up to `stride_w` / `pad_w`, height up to `height`, width up to 6)."""
    elems = st.sampled_from(VALUES)
    if draw(st.booleans()):  # linear
        f, m = draw(st.integers(1, fc[0])), draw(st.integers(1, fc[1]))
        x = draw(hnp.arrays(np.float32, (samples, f), elements=elems))
        wt = draw(hnp.arrays(np.float32, (m, f), elements=elems))
        geo = LayerGeometry("fc", "linear", (f,), (m,), has_bias=True)
        return LayerRecord(geo, wt, None, np.arange(m, dtype=np.float32),
                           SparseBatch.from_dense(x), outputs=np.zeros((samples, m), np.float32))
    groups = draw(st.sampled_from([1, 2]))
    c, m = groups * draw(st.integers(1, channels)), groups * draw(st.integers(1, filters))
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, stride_w)))
    pad = (draw(st.integers(0, 2)), draw(st.integers(0, pad_w)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    h = draw(st.integers(max(1, dil[0] * (k[0] - 1) + 1 - 2 * pad[0]), height))
    w = draw(st.integers(max(1, dil[1] * (k[1] - 1) + 1 - 2 * pad[1]), 6))
    x = draw(hnp.arrays(np.float32, (samples, c, h, w), elements=elems))
    wt = draw(hnp.arrays(np.float32, (m, c // groups, *k), elements=elems))
    return conv_record(x, wt, k, stride, pad, dil, groups, s_out=draw(st.integers(0, samples)))


def same_result(fast, ref):
    """A fast kernel's DataflowResult equals its per-cycle reference's: every counter, the
    per-sample cycles, the unit count, and the outputs (to float32 rounding)."""
    assert fast.counters == ref.counters
    assert fast.cycles.tolist() == ref.cycles.tolist()
    assert fast.num_units == ref.num_units
    if ref.outputs is None:
        assert fast.outputs is None
    else:
        np.testing.assert_allclose(fast.outputs, ref.outputs, rtol=1e-5, atol=1e-5)
