"""SCALE-Sim topology CSV files -> layer geometries, so its users bring their files unchanged.

Two forms, told apart by the header (SCALE-Sim v3's topologies/conv_nets and topologies/GEMM_mnk):

    Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides[, Sparsity],
    Layer, M, N, K[, Sparsity],

SCALE-Sim's conventions, kept so cycle counts match it: the IFMAP is already padded; the output
side is ceil((H - R + s) / s), which rounds a partial last window up (recorded here as the
symmetric padding that gives the same output size); a GEMM row is an M x K input times a K x N
weight, i.e. a 1x1 convolution of K channels over M x 1 pixels; a layer whose name contains "DP"
is depthwise (SCALE-Sim runs one layer per channel; here one grouped layer with the same GEMMs).
The optional Sparsity column is an N:M pattern per layer. Rows end with a trailing comma in
SCALE-Sim's files; rows without it are read the same way.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from accelsim.errors import AccelsimError, read_user_text
from accelsim.traces.schema import LayerGeometry

CONV_COLUMNS = ("Layer name", "IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width",
                "Channels", "Num Filter", "Strides")
GEMM_COLUMNS = ("Layer", "M", "N", "K")


@dataclass(frozen=True)
class TopologyLayer:
    geometry: LayerGeometry
    nm: tuple[int, int] | None  # the file's Sparsity column ("1:1" = dense -> None)
    line: int


def _cells(row: list[str]) -> list[str]:
    cells = [c.strip() for c in row]
    while cells and cells[-1] == "":
        cells.pop()
    return cells


def _positive(path, line, name, column, text) -> int:
    try:
        value = int(text)
    except ValueError:
        raise AccelsimError(f"{path}: line {line} ({name}): {column} must be an integer, "
                            f"got {text!r}") from None
    if value <= 0:
        raise AccelsimError(f"{path}: line {line} ({name}): {column} must be a positive integer, "
                            f"got {value}")
    return value


def _sparsity(path, line, name, text) -> tuple[int, int] | None:
    from accelsim.dataflows.systolic.mapping import parse_nm

    nm = parse_nm(text, where=f"{path}: line {line} ({name}): Sparsity")
    return None if nm is None or nm[0] == nm[1] else nm


def conv_geometry(name, h, w, r, s, c, m, stride, depthwise=False) -> LayerGeometry:
    """A SCALE-Sim conv row as a LayerGeometry with its output size and implied padding."""
    oh = math.ceil((h - r + stride) / stride)
    ow = math.ceil((w - s + stride) / stride)
    py = math.ceil(max(0, (oh - 1) * stride + r - h) / 2)
    px = math.ceil(max(0, (ow - 1) * stride + s - w) / 2)
    groups = c if depthwise else 1
    return LayerGeometry(name, "conv2d", (c, h, w), (m * groups if depthwise else m, oh, ow),
                         (r, s), (stride, stride), (py, px), (1, 1), groups)


def gemm_geometry(name, m, n, k) -> LayerGeometry:
    """M x K times K x N as a 1x1 convolution: K channels, M x 1 pixels, N filters."""
    return LayerGeometry(name, "conv2d", (k, m, 1), (n, m, 1))


def is_gemm_header(header: list[str]) -> bool:
    """SCALE-Sim's M,N,K form (its -i gemm), told from the conv form by the header."""
    return [h.strip().lower() for h in header[1:4]] == ["m", "n", "k"]


def read_topology(path: str | Path) -> list[TopologyLayer]:
    """Layers of a SCALE-Sim topology file (conv or GEMM form); one-line errors on bad input."""
    path = Path(path)
    text = read_user_text(path, str(path), "topology file", encoding="utf-8-sig")
    rows = [(i + 1, _cells(r)) for i, r in enumerate(csv.reader(text.splitlines()))]
    rows = [(i, r) for i, r in rows if r]
    if not rows:
        raise AccelsimError(f"{path}: empty topology file (expected a header row)")
    header_line, header = rows[0]
    gemm = is_gemm_header(header)
    columns = GEMM_COLUMNS if gemm else CONV_COLUMNS
    if len(header) < len(columns):
        missing = ", ".join(columns[len(header):])
        raise AccelsimError(f"{path}: line {header_line}: missing column(s) {missing} "
                            f"(header has {len(header)} of {len(columns)}: {', '.join(columns)})")
    layers: list[TopologyLayer] = []
    seen: dict[str, int] = {}
    for line, cells in rows[1:]:
        name = cells[0] or f"layer{len(layers)}"
        if len(cells) < len(columns):
            raise AccelsimError(f"{path}: line {line} ({name}): missing column(s) "
                                f"{', '.join(columns[len(cells):])}")
        dims = [_positive(path, line, name, col, cells[i]) for i, col in enumerate(columns[1:], 1)]
        nm = _sparsity(path, line, name, cells[len(columns)]) if len(cells) > len(columns) else None
        unique = name if name not in seen else f"{name}_{seen[name]}"
        seen[name] = seen.get(name, 0) + 1
        if gemm:
            geo = gemm_geometry(unique, *dims)
        else:
            h, w, r, s, c, m, stride = dims
            if r > h or s > w:
                raise AccelsimError(
                    f"{path}: line {line} ({name}): filter {r}x{s} is larger than the {h}x{w} "
                    "input (SCALE-Sim inputs are given already padded)")
            geo = conv_geometry(unique, h, w, r, s, c, m, stride, depthwise="DP" in name)
        layers.append(TopologyLayer(geo, nm, line))
    if not layers:
        raise AccelsimError(f"{path}: no layers after the header")
    return layers


def topology_trace(path: str | Path, out: str | Path, *, weight_density: float = 1.0,
                   act_density: float = 1.0, nm: tuple[int, int] | None = None,
                   samples: int = 1, seed: int = 0) -> str:
    """Write a synthetic trace of the topology's layers (accelsim.synth.random_layer at the given
    densities, weights then pruned to N:M along the reduction dimension) and return its path."""
    from accelsim.dataflows.systolic.mapping import check_nm_divides, gemm_view, nm_prune
    from accelsim.synth import random_layer
    from accelsim.traces.writer import write_trace

    for what, value in (("--weight-density", weight_density), ("--act-density", act_density)):
        if not (math.isfinite(value) and 0 < value <= 1):
            raise AccelsimError(f"{what} must be in (0, 1], got {value}")
    layers = read_topology(path)
    if nm is not None:
        for item in layers:
            try:
                check_nm_divides(item.geometry.name, gemm_view(_Shape(item.geometry)), nm)
            except AccelsimError as exc:
                raise AccelsimError(f"{path}: line {item.line}: {exc}") from None
    check_topology_size(path, layers, samples)
    records = []
    for index, item in enumerate(layers):
        rec = random_layer(item.geometry, weight_density, act_density, samples=samples,
                           seed=seed + index)
        records.append(nm_prune(rec, nm) if nm is not None else rec)
    meta = {"model": Path(path).stem, "method": "topology", "dataset": "random", "seed": int(seed),
            "topology": {"file": str(path), "weight_density": weight_density,
                         "act_density": act_density, "nm": None if nm is None else f"{nm[0]}:{nm[1]}"}}
    write_trace(out, meta, records)
    return str(out)


# A topology's synthetic trace holds every layer's dense weights, inputs and outputs in memory
# before it is written (4 bytes an element, plus masks and CSR copies): bounded like a recording.
MAX_TOPOLOGY_BYTES = 8 * 2**30
BYTES_PER_ELEMENT = 12


def check_topology_size(path, layers: list[TopologyLayer], samples: int) -> None:
    """Refuse, before any weight is drawn, a topology whose synthetic trace would not fit."""
    from accelsim.traces.validate import claimed_elements

    total = 0
    for item in layers:
        counts = claimed_elements(item.geometry, samples)
        total += BYTES_PER_ELEMENT * (counts["weight"] + counts["input"] + counts["output"])
    if total > MAX_TOPOLOGY_BYTES:
        raise AccelsimError(
            f"{path}: its synthetic trace of {samples} sample(s) would hold about "
            f"{total / 2**30:.1f} GiB of weights and activations (limit "
            f"{MAX_TOPOLOGY_BYTES / 2**30:.0f} GiB); use fewer --samples or smaller layers")


@dataclass(frozen=True)
class _Shape:
    """Just the geometry, for checks made before any weights exist."""

    geometry: LayerGeometry


def topology_options(topologies, tmp_dir, arch_spec: str, overrides: list[str], weight_density: float,
                     act_density: float, nm_text: str | None, samples: int) -> tuple[list[str], list[str]]:
    """`accelsim run --topology ...`: trace files built in tmp_dir, and the --set overrides with
    the N:M pattern added for a systolic array that does not name one itself."""
    from accelsim.arch import load_arch
    from accelsim.dataflows.systolic.mapping import parse_nm

    nm = parse_nm(nm_text, where="--nm") if nm_text else None
    if nm is not None and not topologies:
        raise AccelsimError("--nm applies to --topology runs only")
    if nm is not None:
        arch = load_arch(arch_spec, overrides)
        if arch.arch.dataflow == "systolic" and not arch.systolic.nm:
            overrides = [*overrides, f"systolic.nm={nm[0]}:{nm[1]}", "sparsity.weights=skip"]
    built = []
    for i, topo in enumerate(topologies):
        out = Path(tmp_dir) / f"{Path(topo).stem}.trace.safetensors"
        if out.exists():
            out = Path(tmp_dir) / f"{Path(topo).stem}-{i}.trace.safetensors"
        built.append(topology_trace(topo, out, weight_density=weight_density,
                                    act_density=act_density, nm=nm, samples=samples))
    return built, overrides
