"""Dataflow plug-ins: one sub-package per array, found and registered by name.

Why a registry: the engine (accelsim.simulate, accelsim.memory, accelsim.arch) must not know
which arrays exist. Each sub-package of accelsim.dataflows defines `DATAFLOW`, a `Dataflow`
holding its config section, fast kernel, per-cycle reference, storage footprint and peak MACs
per cycle; adding an array is a new sub-package, a preset and its tests.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from dataclasses import dataclass
from functools import cache
from typing import Any, Callable

import numpy as np

from accelsim.errors import AccelsimError


@dataclass(frozen=True)
class Dataflow:
    """One array. Kernels take (layer, **section fields, act_mode, weight_mode, functional,
    samples) and return an accelsim.result.DataflowResult; the reference is the per-cycle
    simulation the kernel is proven against (same keyword arguments)."""

    name: str
    section: type  # frozen dataclass: the [name] table of an arch file
    layer_kinds: tuple[str, ...]  # geometry kinds the array runs; others are refused
    kernel: Callable[..., Any]
    reference: Callable[..., Any]
    storage_units: Callable[[Any], int]  # section -> units the weights are spread over
    weight_bytes: Callable[[Any, Any], np.ndarray]  # (layer, arch) -> bytes stored per unit
    multipliers: Callable[[Any], int]  # section -> peak MACs per cycle
    doc: str = ""
    # (layer, arch, cycles per sample) -> accelsim.memory.MemoryTraffic, for an array that models
    # its own buffers and DRAM traffic; None: the generic per-unit model of accelsim.memory
    memory: Callable[..., Any] | None = None
    # counters of the kernel's result shown as report columns of their own (per inference), for
    # what only this array has (e.g. SCNN's multiplier fragmentation)
    report_counters: tuple[str, ...] = ()

    def section_of(self, arch):
        """This dataflow's section of an ArchConfig."""
        return getattr(arch, self.name)

    def peak_macs_per_cycle(self, arch) -> int:
        return int(self.multipliers(self.section_of(arch)))

    def check_kind(self, layer) -> None:
        kind = layer.geometry.kind
        if kind not in self.layer_kinds:
            raise AccelsimError(
                f"layer {layer.geometry.name!r}: the {self.name} dataflow runs "
                f"{', '.join(self.layer_kinds)} layers, not {kind!r}"
            )

    def run(self, layer, arch, *, functional: bool, samples=None):
        """Replay one layer on the fast kernel with the arch's [name] section and modes."""
        self.check_kind(layer)
        return self.kernel(
            layer,
            **dataclasses.asdict(self.section_of(arch)),
            act_mode=arch.sparsity.activations,
            weight_mode=arch.sparsity.weights,
            functional=functional,
            samples=samples,
        )


@cache
def registry() -> dict[str, Dataflow]:
    """{name: Dataflow} of every sub-package of accelsim.dataflows, sorted by name."""
    found: dict[str, Dataflow] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        entry = getattr(module, "DATAFLOW", None)
        if isinstance(entry, Dataflow):
            found[entry.name] = entry
    return found


def names() -> tuple[str, ...]:
    return tuple(registry())


def get(name: str) -> Dataflow:
    try:
        return registry()[name]
    except KeyError:
        raise AccelsimError(
            f"unknown dataflow {name!r} (known: {', '.join(names())})"
        ) from None
