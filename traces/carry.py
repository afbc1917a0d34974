"""The ops a dynamic mask is carried through on its way to a layer, in numpy (docs/trace-format.md,
section 3.3): `inputs = carry(premask restricted to the winners)`. The validator checks that
relation; nothing here imports torch.

Each op keeps a zero a zero, so the consumer's non-zeros come from winners only: relu and
leaky_relu act element by element (a masked-out position stays 0); max_pool2d's output at a
position is the largest winner of its window, or 0 when the window holds no positive winner
and some loser (a masked position is a 0 in the window, as in the network).
"""

from __future__ import annotations

import numpy as np

CARRY_OPS = ("relu", "leaky_relu", "max_pool2d")


def pool_out(size: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    """PyTorch's max-pool output size (a last window starting in the right padding is dropped)."""
    span = size + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil else 0)) // s + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    return out


def max_pool2d(x: np.ndarray, op: dict) -> np.ndarray:
    """(S, C, H, W) -> (S, C, OH, OW), padding with -inf (PyTorch's rule), one tap at a time."""
    (kh, kw), (sh, sw) = op["kernel"], op["stride"]
    (ph, pw), (dh, dw) = op["padding"], op["dilation"]
    s, c, h, w = x.shape
    oh = pool_out(h, kh, sh, ph, dh, op["ceil_mode"])
    ow = pool_out(w, kw, sw, pw, dw, op["ceil_mode"])
    # room for windows that run past the right edge under ceil_mode
    hp = max(h + 2 * ph, (oh - 1) * sh + dh * (kh - 1) + 1)
    wp = max(w + 2 * pw, (ow - 1) * sw + dw * (kw - 1) + 1)
    padded = np.full((s, c, hp, wp), -np.inf, dtype=x.dtype)
    padded[:, :, ph:ph + h, pw:pw + w] = x
    out = np.full((s, c, oh, ow), -np.inf, dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            tap = padded[:, :, i * dh: i * dh + (oh - 1) * sh + 1: sh,
                         j * dw: j * dw + (ow - 1) * sw + 1: sw]
            np.maximum(out, tap, out=out)
    return out


def out_shape(shape: tuple, carried) -> tuple:
    """Per-sample shape after the carried ops (views aside)."""
    for op in carried:
        if op["op"] == "max_pool2d":
            c, h, w = op["in_shape"]
            (kh, kw), (sh, sw) = op["kernel"], op["stride"]
            (ph, pw), (dh, dw) = op["padding"], op["dilation"]
            shape = (c, pool_out(h, kh, sh, ph, dh, op["ceil_mode"]),
                     pool_out(w, kw, sw, pw, dw, op["ceil_mode"]))
    return tuple(shape)


def apply(x: np.ndarray, carried) -> np.ndarray:
    """(S, *mask shape) masked activations -> what the carried ops make of them."""
    for op in carried:
        if op["op"] == "relu":
            x = np.maximum(x, np.float32(0))
        elif op["op"] == "leaky_relu":
            x = np.where(x < 0, x * np.float32(op["negative_slope"]), x).astype(np.float32)
        elif op["op"] == "max_pool2d":
            x = max_pool2d(x.reshape(x.shape[0], *op["in_shape"]), op)
        else:  # validated before
            raise ValueError(f"unknown carried op {op['op']!r}")
    return x


def check(mask: dict, in_shape, fail) -> None:
    """The `shape` and `carried` keys of a layer's mask object (section 3.3); fail(problem)."""
    shape, carried = mask.get("shape"), mask.get("carried", [])
    if shape is None and not carried:
        return
    if not (isinstance(shape, list) and 1 <= len(shape) <= 4
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape)):
        fail("mask 'shape' must be a list of 1 to 4 positive integers")
    if not isinstance(carried, list):
        fail("mask 'carried' must be a list of op objects")
    current = tuple(shape)
    for op in carried:
        if not isinstance(op, dict) or op.get("op") not in CARRY_OPS:
            fail(f"mask 'carried' ops must be objects with 'op' one of {', '.join(CARRY_OPS)}")
        if op["op"] == "leaky_relu":
            slope = op.get("negative_slope")
            if not (isinstance(slope, (int, float)) and not isinstance(slope, bool)
                    and np.isfinite(slope)):
                fail("carried leaky_relu needs a finite 'negative_slope'")
        if op["op"] == "max_pool2d":
            ints = {"in_shape": (3, 1), "kernel": (2, 1), "stride": (2, 1), "padding": (2, 0),
                    "dilation": (2, 1)}
            for key, (n, least) in ints.items():
                v = op.get(key)
                if not (isinstance(v, list) and len(v) == n and all(
                        isinstance(d, int) and not isinstance(d, bool) and d >= least for d in v)):
                    fail(f"carried max_pool2d {key!r} must be a list of {n} integers >= {least}")
            if not isinstance(op.get("ceil_mode"), bool):
                fail("carried max_pool2d 'ceil_mode' must be true or false")
            if int(np.prod(op["in_shape"])) != int(np.prod(current)):
                fail(f"carried max_pool2d in_shape {op['in_shape']} does not hold the "
                     f"{int(np.prod(current))} elements reaching it")
            if any(2 * p > k for p, k in zip(op["padding"], op["kernel"])) or any(
                    op["kernel"][i] > 64 for i in range(2)):
                fail("carried max_pool2d padding must be at most half the kernel (kernel <= 64)")
            if min(out_shape(tuple(op["in_shape"]), [op])[1:]) < 1:
                fail("carried max_pool2d leaves no output position")
        current = out_shape(current, [op])
    if int(np.prod(current)) != int(np.prod(in_shape)):
        fail(f"mask shape {shape} carried through {[op['op'] for op in carried]} gives "
             f"{int(np.prod(current))} elements, the layer's input has {int(np.prod(in_shape))}")
