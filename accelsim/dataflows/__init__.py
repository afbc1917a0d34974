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
    # transformer kinds this array runs through accelsim.lowering: {kind: "rows" | "pixels"}
    lowering: dict = dataclasses.field(default_factory=dict)
    # (part layer, section, weight_mode) -> {"cycles", "busy_pe_cycles", "tail_pe_cycles",
    # event: count}: what loading a matmul's per-sample operand into the weight storage costs
    operand_load: Callable[..., dict] | None = None

    def section_of(self, arch):
        """This dataflow's section of an ArchConfig."""
        return getattr(arch, self.name)

    def peak_macs_per_cycle(self, arch) -> int:
        return int(self.multipliers(self.section_of(arch)))

    @property
    def kinds(self) -> tuple[str, ...]:
        """Every layer kind the array runs: its kernels' own and the lowered ones."""
        return tuple(self.layer_kinds) + tuple(k for k in self.lowering if k not in self.layer_kinds)

    def check_kind(self, layer) -> None:
        kind = layer.geometry.kind
        if kind not in self.kinds:
            raise AccelsimError(
                f"layer {layer.geometry.name!r}: the {self.name} dataflow runs "
                f"{', '.join(self.kinds)} layers, not {kind!r}"
            )

    def parts(self, layer):
        """The accelsim.lowering parts of a transformer layer; None for a kind the kernels run."""
        style = self.lowering.get(layer.geometry.kind)
        if style is None or layer.geometry.kind in self.layer_kinds:
            return None
        from accelsim.lowering import lowered

        return lowered(layer, style)

    def run(self, layer, arch, *, functional: bool, samples=None, reference: bool = False):
        """Replay one layer on the fast kernel (or, with reference, the per-cycle reference)
        with the arch's [name] section and modes; transformer kinds run as their lowered parts."""
        self.check_kind(layer)
        section = self.section_of(arch)  # flat: its fields are the kernel's keywords
        kw = {f.name: getattr(section, f.name) for f in dataclasses.fields(section)}
        kw.update(act_mode=arch.sparsity.activations, weight_mode=arch.sparsity.weights)
        fn = self.reference if reference else self.kernel
        parts = self.parts(layer)
        if parts is None:
            return fn(layer, **kw, functional=functional, samples=samples)
        from accelsim.lowering import run_lowered

        load = None
        if self.operand_load is not None:
            load = lambda part: self.operand_load(part, section, kw["weight_mode"])  # noqa: E731
        return run_lowered(layer, parts,
                           lambda part, rows: fn(part, **kw, functional=functional, samples=rows),
                           load, samples, functional)


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
