"""Replay a trace on an architecture: dataflow kernel, top-k unit, memory, energy, per layer.

This is the one place that knows how the parts fit together; each part (a dataflow from the
accelsim.dataflows registry, accelsim.topk, accelsim.memory, accelsim.energy) knows only its
own job. Nothing here names a dataflow.
"""

from __future__ import annotations

import hashlib
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from accelsim.coverage import with_unsimulated
from accelsim.dataflows import get as get_dataflow
from accelsim.encoded import is_done, memo, remember_done
from accelsim.energy import EnergyTable
from accelsim.errors import AccelsimError
from accelsim.memory import memory_traffic
from accelsim.result import EVENTS, DataflowResult
from accelsim.traces.schema import LayerRecord

# Functional check tolerance: the array accumulates in a different order than the framework.
FUNCTIONAL_RTOL = 1e-3
FUNCTIONAL_ATOL_SCALE = 1e-3


@dataclass(frozen=True)
class Variant:
    """One replay of a trace: the sparse array as configured, or its baseline (the same array
    with skipping switched off; "dense" is kept for the unpruned network)."""

    label: str  # "sparse" or "baseline"
    arch: object  # accelsim.arch.ArchConfig


def variants_for(arch) -> list[Variant]:
    """The configured array and, unless it already is one, its baseline (skipping off)."""
    out = [Variant("sparse", arch)]
    baseline = arch.with_sparsity("none", "none")
    if baseline != arch:
        out.append(Variant("baseline", baseline))
    else:
        out[0] = Variant("baseline", arch)
    return out


def run_dataflow(layer: LayerRecord, arch, functional: bool) -> DataflowResult:
    """One layer on the arch's dataflow (looked up in the registry)."""
    return get_dataflow(arch.arch.dataflow).run(layer, arch, functional=functional)


def check_outputs(trace_name: str, layer: LayerRecord, result: DataflowResult) -> None:
    """Fail loudly when the array's outputs differ from the recorded ones."""
    if layer.outputs is None or result.outputs is None or len(result.outputs) == 0:
        return
    ref = np.asarray(layer.outputs[: len(result.outputs)], dtype=np.float64)
    got = np.asarray(result.outputs, dtype=np.float64)
    if got.shape != ref.shape:
        raise AccelsimError(
            f"{trace_name}: layer {layer.name}: functional check: simulator outputs have shape "
            f"{got.shape}, trace has {ref.shape}"
        )
    atol = FUNCTIONAL_ATOL_SCALE * max(1.0, float(np.abs(ref).max(initial=0.0)))
    bad = ~np.isclose(got, ref, rtol=FUNCTIONAL_RTOL, atol=atol)
    if bad.any():
        s = int(np.argwhere(bad)[0][0])
        diff = float(np.abs(got - ref).max())
        raise AccelsimError(
            f"{trace_name}: layer {layer.name}: functional check failed: outputs computed from the "
            f"processed operands differ from the recorded outputs ({int(bad.sum())} values, max abs "
            f"diff {diff:.3g}, first at sample {s})"
        )


def simulate_layer(
    trace_name: str,
    layer: LayerRecord,
    variant: Variant,
    energy: EnergyTable,
    layer_stats: dict,
    producer_cycles: np.ndarray | None = None,
    mask_shared: bool = False,
) -> tuple[dict, np.ndarray]:
    """One row of the report: a layer of a trace on one variant of the array.

    mask_shared: the layer's input mask was already computed by the top-k unit for an earlier
    consumer (a residual block's conv and its shortcut read one mask): nothing is charged again.
    """
    arch = variant.arch
    # The outputs do not depend on the array's parameters: one check per layer and dataflow
    # covers the variants and every sweep point that shares the layer (accelsim.encoded).
    checked = ("functional_checked", (arch.arch.dataflow,))
    functional = variant.label == "sparse" and not is_done(layer, *checked)
    result = run_dataflow(layer, arch, functional=functional)
    if functional:
        check_outputs(trace_name, layer, result)
        remember_done(layer, *checked)
    samples = int(result.cycles.shape[0])
    counts = {name: float(result.counter(name)) for name in EVENTS}

    # Top-k unit: only where the trace says a dynamic mask produced this layer's input, and only
    # on the array that exploits it (the baseline has no masking hardware).
    topk = {"topk_latency": 0.0, "topk_exposed_cycles": 0.0, "topk_mismatches": 0.0, "topk_kept": 0.0,
            "topk_shared": float(mask_shared and has_dynamic_mask(layer))}
    topk_exposed_total = 0
    unit = "none"
    if variant.label == "sparse" and has_dynamic_mask(layer) and not mask_shared:
        from accelsim.topk import simulate_topk

        t = arch.topk
        unit = t.scheme
        tk = simulate_topk(
            layer,
            scheme=t.scheme,
            comparators=t.comparators,
            value_bits=t.value_bits,
            radix_bits=t.radix_bits,
            producer_cycles=producer_cycles,
        )
        counts["topk_compare"] += float(np.sum(tk.compares))
        topk_exposed_total = int(np.sum(tk.exposed))
        topk = {
            "topk_latency": float(np.sum(tk.latency)) / samples,
            "topk_exposed_cycles": topk_exposed_total / samples,
            "topk_mismatches": float(np.sum(tk.mismatches)) / samples,
            "topk_kept": float(np.sum(tk.kept)) / samples,
            "topk_shared": 0.0,
        }

    # Which masks made the operands the arrays time, and which unit's cost is charged for them.
    topk["mask_scheme"] = layer.mask_params.scheme if layer.mask_params is not None else "none"
    topk["topk_unit"] = unit

    compute_cycles = int(np.sum(result.cycles))
    mem = memory_traffic(layer, arch, result.cycles)
    counts["dram_byte"] += float(mem.dram_bytes)
    total_cycles = compute_cycles + topk_exposed_total + mem.stall_cycles
    # Idle PEs still pay clock energy while the array waits for the top-k unit or for DRAM.
    counts["pe_cycle"] += float(result.num_units) * (topk_exposed_total + mem.stall_cycles)

    energy_pj = energy.energy_pj(counts)
    units = result.num_units
    peak = get_dataflow(arch.arch.dataflow).peak_macs_per_cycle(arch)
    pe_cycles = units * compute_cycles
    busy = result.counter("busy_pe_cycles")
    eff_macs = float(layer_stats["effective_macs"])  # per sample (mean)
    row = {
        "trace": trace_name,
        "arch": arch.arch.name,
        "dataflow": arch.arch.dataflow,
        "variant": variant.label,
        "layer": layer.name,
        "kind": layer.geometry.kind,
        "samples": samples,
        "units": units,
        "peak_macs_per_cycle": peak,
        "cycles": total_cycles / samples,
        "compute_cycles": compute_cycles / samples,
        "busy_pe_cycles": busy / samples,
        "stall_cycles": result.counter("stall_cycles") / samples,
        "starve_pe_cycles": result.counter("starve_pe_cycles") / samples,
        "tail_pe_cycles": result.counter("tail_pe_cycles") / samples,
        "empty_pe_cycles": result.counter("empty_pe_cycles") / samples,
        "padding_entries": result.counter("padding_entries") / samples,
        "memory_stall_cycles": mem.stall_cycles / samples,
        "load_balance": busy / pe_cycles if pe_cycles else 1.0,
        # useful MACs over what the multipliers could do in the layer's cycles: <= 1
        "utilisation": eff_macs * samples / (peak * total_cycles) if total_cycles else 0.0,
        "dense_macs": float(layer.geometry.dense_macs),
        "effective_macs": eff_macs,
        "paper_estimate_macs": float(layer_stats["estimated_macs"]),
        "weight_density": float(layer_stats["weight_density"]),
        "act_density": float(layer_stats["act_density_mean"]),
        "weights_on_chip": mem.weights_on_chip,
        "dram_bytes": mem.dram_bytes / samples,
        **topk,
        "time_us": total_cycles / samples / arch.arch.clock_mhz,
    }
    for name in get_dataflow(arch.arch.dataflow).report_counters:
        row[name] = result.counter(name) / samples
    for event in EVENTS:
        row[f"events_{event}"] = counts[event] / samples
    for event in EVENTS:
        row[f"energy_{event}_pj"] = energy_pj[event] / samples
    row["energy_pj"] = sum(energy_pj.values()) / samples
    return row, result.cycles


def has_dynamic_mask(layer: LayerRecord) -> bool:
    return layer.act_mask is not None and layer.premask is not None


def mask_digest(layer: LayerRecord) -> str:
    """Identity of a layer's input mask (pre-mask values, winners, parameters): two layers with
    the same digest read the same mask."""
    h = hashlib.blake2b(digest_size=16)
    for batch in (layer.premask, layer.act_mask):
        for part in (batch.shape, batch.indptr, batch.indices, batch.values):
            h.update(repr(part).encode() if not isinstance(part, np.ndarray) else part.tobytes())
    h.update(repr(layer.mask_params.unit_key()).encode())  # not the ops it is carried through
    return h.hexdigest()


def simulate_trace(
    path: str | Path,
    arch,
    energy: EnergyTable,
    on_layer: Callable[[str, str], None] | None = None,
    source: str | None = None,
    overrides: Sequence[str] = (),
) -> list[dict]:
    """Rows for every layer of one trace on the array and its baseline (skipping off).

    source, overrides: the preset or file the arch came from and the `--set` items applied to
    it, recorded in every row (accelsim.provenance) with the resolved config and its hash.
    """
    from accelsim.provenance import run_columns

    trace = loaded_trace(path)
    name = Path(path).name
    meta = trace.meta
    provenance = run_columns(arch, energy, source, overrides)
    plans = variants_for(arch)
    previous: dict[str, np.ndarray | None] = {v.label: None for v in plans}
    masks_seen: set[str] = set()
    per_layer: list[list[dict]] = []
    for index in range(len(trace)):
        layer = trace.layer(index)
        stats = cached_stats(layer)
        shared = False
        if has_dynamic_mask(layer):
            digest = memo(layer, "mask_digest", (), lambda: mask_digest(layer))
            shared = digest in masks_seen
            masks_seen.add(digest)
        per_layer.append([])
        for variant in plans:
            # A streaming top-k unit works while the previous layer produces its outputs.
            row, cycles = simulate_layer(name, layer, variant, energy, stats, previous[variant.label],
                                         mask_shared=shared)
            previous[variant.label] = cycles
            row["model"] = meta.get("model")
            row["method"] = meta.get("method")
            row["layer_index"] = index
            row.update(provenance)
            per_layer[-1].append(row)
            if on_layer is not None:
                on_layer(name, f"{layer.name} ({variant.label})")
    return with_unsimulated(meta, per_layer)


def mask_mismatch_warning(trace_name: str, unit: str, mask_schemes) -> str | None:
    """One warning line when the top-k unit is not the scheme that made the trace's masks.

    The arrays always time the trace's operands; a threshold unit replayed on exact top-k masks
    (or an exact unit on threshold-prediction masks) charges one scheme's latency and compares
    for the activations another scheme kept."""
    from accelsim.topk import EXACT

    computes = "topk" if EXACT.get(unit, True) else "threshold-prediction"
    other = sorted({"topk", "threshold-prediction"} & set(mask_schemes) - {computes})
    if not other:
        return None
    fix = ("record it with `accelsim trace record --eps` to time threshold prediction" if other[0] == "topk"
           else "replay it with `--set topk.scheme=threshold`, or record it without --eps")
    return (f"warning: {trace_name}: masks made by {other[0]}, top-k unit {unit}: the arrays time the "
            f"{other[0]} activations; {fix}")


def trace_mask_schemes(path: str | Path) -> set[str]:
    """The dynamic-mask schemes that made a trace's masks (empty without dynamic masks)."""
    from accelsim.traces import open_trace

    return {layer["mask"]["scheme"] for layer in open_trace(path).meta["layers"] if layer.get("mask")}


def matching_topk_unit(path: str | Path, unit: str) -> str:
    """`unit`, or the threshold unit where the trace's masks came from threshold prediction
    (and an exact unit, bitonic, where a threshold unit would meet exact top-k masks)."""
    from accelsim.topk import EXACT

    schemes = trace_mask_schemes(path)
    if EXACT.get(unit, True) and "threshold-prediction" in schemes:
        return "threshold"
    if not EXACT.get(unit, True) and "topk" in schemes:
        return "bitonic"
    return unit


STATS_KEYS = ("effective_macs", "estimated_macs", "weight_density", "act_density_mean")


def cached_stats(layer: LayerRecord) -> dict:
    """The layer statistics the report uses, once per layer (in memory and on disk)."""
    from accelsim.traces.info import layer_stats

    return memo(
        layer, "stats", (),
        lambda: {k: float(layer_stats(layer)[k]) for k in STATS_KEYS},
        pack=lambda d: d,
        unpack=lambda a: {k: float(a[k]) for k in STATS_KEYS},
    )


class LoadedTrace:
    """An open trace whose layers, once loaded and validated, stay loaded, each carrying a
    content key so their weight-side encodings are found on disk (accelsim.encoded).

    Weights and recorded outputs are read lazily (reader: defer_weights) when this very file's
    weights and outputs passed their checks before: the cache remembers the check under the
    file's identity (device,
    inode, size, modification and status-change times, and the content id). Any write to the
    file changes its status-change time, so a modified or replaced file, or a copy, is read
    and checked again; what is trusted is that a file the system reports unchanged holds the
    bytes that were checked. Without a cache (ACCELSIM_CACHE=off) everything is read."""

    def __init__(self, path, stat=None):
        from accelsim.encoded import trace_content_id
        from accelsim.traces import open_trace

        self.trace = open_trace(path)
        self.meta = self.trace.meta
        self.content_id = trace_content_id(path)
        st = stat or os.stat(path)
        ident = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
        self.identity = hashlib.sha256(ident.encode()).hexdigest()[:16]
        self.layers: dict[int, LayerRecord] = {}

    def __len__(self) -> int:
        return len(self.trace)

    def layer(self, index: int) -> LayerRecord:
        if index not in self.layers:
            layer = self.trace.layer(index, defer_weights=True)
            layer.extra["content_key"] = f"{self.content_id}-{index}"
            checked = ("weights_checked", (self.identity,))
            if not is_done(layer, *checked):
                layer.weight, layer.outputs  # noqa: B018 - read and check them now
                remember_done(layer, *checked)
            self.layers[index] = layer
        return self.layers[index]


_LOADED: dict[tuple, LoadedTrace] = {}
KEEP_TRACES = 2  # traces kept loaded in a process (a sweep's points reuse them)


def loaded_trace(path) -> LoadedTrace:
    """The trace at `path`, loaded once per process while its file is unchanged (same size and
    modification time); the least recently used beyond KEEP_TRACES are dropped."""

    try:
        st = os.stat(path)
    except OSError:
        from accelsim.traces import open_trace

        open_trace(path)  # raises the reader's one-line error
        raise
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    found = _LOADED.pop(key, None) or LoadedTrace(path, st)
    _LOADED[key] = found
    while len(_LOADED) > KEEP_TRACES:
        _LOADED.pop(next(iter(_LOADED)))
    return found


class _CallableModule(types.ModuleType):
    """`accelsim.simulate` is both this engine module (`import accelsim.simulate as sim` keeps
    working) and the API function: calling the module is accelsim.api.simulate."""

    def __call__(self, traces, arch="eie64", set=None, energy=None, **kwargs):
        from accelsim.api import simulate

        return simulate(traces, arch, set, energy, **kwargs)


_CallableModule.__call__.__doc__ = __import__("accelsim.api").api.simulate.__doc__
sys.modules[__name__].__class__ = _CallableModule
