"""Bounds declared next to each numeric config field, checked before a value is used.

Why beside the field: a dataflow's section (accelsim/dataflows/*) carries its own limits, so the
loader checks every section the same way and docs/hardware-model.md lists them from one place.
Every number is also checked finite (nan compares false with everything, so a `> 0` check alone
lets it through). Upper bounds are far above any real array; they exist so that a typo such as
num_pes = 1000000000 is one line, not a memory error or an integer overflow in a kernel.
"""

from __future__ import annotations

import math
from dataclasses import Field, field
from typing import Any, NamedTuple

from accelsim.errors import AccelsimError


class Bounds(NamedTuple):
    low: float
    high: float
    strict: bool = False  # value must be > low instead of >= low
    zero_ok: bool = False  # 0 is also allowed (e.g. "0 = unlimited")


def bounded(default: Any, low: float, high: float, *, strict: bool = False,
            zero_ok: bool = False) -> Field:
    """A dataclass field whose value must be finite and lie in [low, high] ((low, high] when
    strict; or be exactly 0 when zero_ok)."""
    return field(default=default, metadata={"bounds": Bounds(low, high, strict, zero_ok)})


def field_bounds(f: Field) -> Bounds | None:
    return f.metadata.get("bounds")


def describe(b: Bounds) -> str:
    """'>= 1 and <= 4096', '0 or >= 0.0009765625 and <= 1e+09', ..."""
    text = f"{'>' if b.strict else '>='} {b.low:g} and <= {b.high:g}"
    return f"0 or {text}" if b.zero_ok else text


def check_bounds(label: str, key: str, value: Any, b: Bounds) -> None:
    """One-line error naming the source, the key and the bounds when value is outside them."""
    if isinstance(value, float) and not math.isfinite(value):
        raise AccelsimError(f"{label}: {key} must be a finite number {describe(b)}, got {value!r}")
    if b.zero_ok and value == 0:
        return
    too_low = (value <= b.low) if b.strict else (value < b.low)
    if too_low or value > b.high:
        shown = value if abs(value) < 1e18 else f"{float(value):.3g}"
        raise AccelsimError(f"{label}: {key} must be {describe(b)}, got {shown}")
