"""Bounds declared next to each numeric config field, checked before a value is used.

Why beside the field: a dataflow's section (accelsim/dataflows/*) carries its own limits, so the
loader checks every section the same way and docs/hardware-model.md can list them from one place.
Every number is also checked finite (nan compares false with everything, so a `> 0` check alone
lets it through).
"""

from __future__ import annotations

import math
from dataclasses import Field, field
from typing import Any

from accelsim.errors import AccelsimError


def bounded(default: Any, low: float, high: float | None = None, *, strict: bool = False) -> Field:
    """A dataclass field whose value must lie in [low, high] ((low, high] when strict)."""
    return field(default=default, metadata={"bounds": (low, high, strict)})


def field_bounds(f: Field) -> tuple[float, float | None, bool] | None:
    return f.metadata.get("bounds")


def describe(bounds: tuple[float, float | None, bool]) -> str:
    low, high, strict = bounds
    left = f"> {low:g}" if strict else f">= {low:g}"
    return left if high is None else f"{left} and <= {high:g}"


def check_bounds(label: str, key: str, value: Any, bounds: tuple[float, float | None, bool]) -> None:
    """One-line error naming the source, the key and the bounds when value is outside them."""
    low, high, strict = bounds
    if not math.isfinite(value):
        raise AccelsimError(f"{label}: {key} must be a finite number {describe(bounds)}, got {value!r}")
    if ((value <= low) if strict else (value < low)) or (high is not None and value > high):
        raise AccelsimError(f"{label}: {key} must be {describe(bounds)}, got {value!r}")
