"""Architecture configuration: TOML files (or shipped presets) -> validated, frozen ArchConfig.

Why a strict loader: an architecture sweep with a typo'd key ("fifo_dpeth") silently running the
default is a wrong paper figure. Every key is checked against the dataclasses below; a bad file
or `--set` override fails with one line naming the file, the key and the problem.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import tomllib
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from accelsim.errors import AccelsimError

SPARSITY_MODES = ("skip", "gate", "none")
DATAFLOWS = ("eie", "cnvlutin")
TOPK_SCHEMES = ("bitonic", "insertion", "radix", "threshold")


@dataclass(frozen=True)
class ArchSection:
    """[arch]: identity, dataflow and the clock/data width shared by every part."""

    name: str = "custom"
    dataflow: str = "eie"
    clock_mhz: float = 800.0
    data_bits: int = 16


@dataclass(frozen=True)
class EieSection:
    """[eie]: EIE-style broadcast array (docs/hardware-model.md)."""

    num_pes: int = 64
    fifo_depth: int = 8
    index_bits: int = 4
    empty_slice_cycles: int = 1  # cycles on a popped activation whose slice in the PE is empty


@dataclass(frozen=True)
class CnvlutinSection:
    """[cnvlutin]: Cnvlutin-style units of neuron lanes working on zero-free bricks."""

    units: int = 16
    lanes: int = 16
    filters_per_unit: int = 16
    brick_size: int = 16


@dataclass(frozen=True)
class SparsitySection:
    """[sparsity]: per operand, skip (no cycle, no energy), gate (cycle, no MAC energy) or none."""

    activations: str = "skip"
    weights: str = "skip"


@dataclass(frozen=True)
class TopkSection:
    """[topk]: the hardware top-k unit between a layer's output and the next broadcast."""

    scheme: str = "bitonic"
    comparators: int = 64
    value_bits: int = 16
    radix_bits: int = 4


@dataclass(frozen=True)
class MemorySection:
    """[memory]: on-chip capacities per PE and DRAM bandwidth (0 = unlimited)."""

    weight_sram_bytes_per_pe: int = 131072
    act_sram_bytes_per_pe: int = 2048
    dram_bytes_per_cycle: float = 0.0
    weight_entry_bits: int = 8  # EIE: 4-bit value index + 4-bit relative index


@dataclass(frozen=True)
class EnergySection:
    """[energy]: "default" or a path to an energy TOML table."""

    table: str = "default"


@dataclass(frozen=True)
class ArchConfig:
    """One accelerator configuration; compare, hash and derive variants from it."""

    arch: ArchSection = field(default_factory=ArchSection)
    eie: EieSection = field(default_factory=EieSection)
    cnvlutin: CnvlutinSection = field(default_factory=CnvlutinSection)
    sparsity: SparsitySection = field(default_factory=SparsitySection)
    topk: TopkSection = field(default_factory=TopkSection)
    memory: MemorySection = field(default_factory=MemorySection)
    energy: EnergySection = field(default_factory=EnergySection)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """{section: {key: value}}: writes back as an equivalent TOML file."""
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON form: the architecture part of a result-cache key."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def with_sparsity(self, activations: str, weights: str) -> "ArchConfig":
        """Same array, other skip/gate switches; ("none", "none") is the dense baseline."""
        for key, value in (("activations", activations), ("weights", weights)):
            if value not in SPARSITY_MODES:
                raise AccelsimError(
                    f"sparsity.{key} must be one of {_choices(SPARSITY_MODES)}, got {value!r}"
                )
        return dataclasses.replace(
            self, sparsity=SparsitySection(activations=activations, weights=weights)
        )

    def eie_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of accelsim.eie.simulate_eie for this configuration."""
        e = self.eie
        return dict(
            num_pes=e.num_pes,
            fifo_depth=e.fifo_depth,
            index_bits=e.index_bits,
            empty_slice_cycles=e.empty_slice_cycles,
            act_mode=self.sparsity.activations,
            weight_mode=self.sparsity.weights,
        )


_SECTION_TYPES = {
    "arch": ArchSection,
    "eie": EieSection,
    "cnvlutin": CnvlutinSection,
    "sparsity": SparsitySection,
    "topk": TopkSection,
    "memory": MemorySection,
    "energy": EnergySection,
}
_ALL_KEYS = [f"{s}.{f.name}" for s, cls in _SECTION_TYPES.items() for f in fields(cls)]

# (minimum, strict): value must be > minimum when strict, else >= minimum.
_BOUNDS: dict[str, tuple[float, bool]] = {
    "arch.clock_mhz": (0, True),
    "arch.data_bits": (1, False),
    "eie.num_pes": (1, False),
    "eie.fifo_depth": (1, False),
    "eie.index_bits": (1, False),
    "eie.empty_slice_cycles": (0, False),
    "cnvlutin.units": (1, False),
    "cnvlutin.lanes": (1, False),
    "cnvlutin.filters_per_unit": (1, False),
    "cnvlutin.brick_size": (1, False),
    "topk.comparators": (1, False),
    "topk.value_bits": (1, False),
    "topk.radix_bits": (1, False),
    "memory.weight_sram_bytes_per_pe": (1, False),
    "memory.act_sram_bytes_per_pe": (1, False),
    "memory.dram_bytes_per_cycle": (0, False),
    "memory.weight_entry_bits": (1, False),
}
_ENUMS: dict[str, tuple[str, ...]] = {
    "arch.dataflow": DATAFLOWS,
    "sparsity.activations": SPARSITY_MODES,
    "sparsity.weights": SPARSITY_MODES,
    "topk.scheme": TOPK_SCHEMES,
}


def _choices(values: Sequence[str]) -> str:
    return ", ".join(repr(v) for v in values)


def _suggest(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def preset_names() -> list[str]:
    """Names of the architecture presets shipped in accelsim/presets (energy tables excluded)."""
    names = []
    for entry in resources.files("accelsim.presets").iterdir():
        if entry.name.endswith(".toml") and not entry.name.startswith("energy"):
            names.append(entry.name[: -len(".toml")])
    return sorted(names)


def _read_source(spec: str) -> tuple[str, str, Path | None]:
    """(label for errors, TOML text, directory for relative paths) of a preset or a file."""
    path = Path(spec)
    looks_like_path = spec.endswith(".toml") or "/" in spec or "\\" in spec or path.exists()
    if not looks_like_path:
        res = resources.files("accelsim.presets").joinpath(f"{spec}.toml")
        if spec in preset_names() and res.is_file():
            return f"preset {spec!r}", res.read_text(encoding="utf-8"), None
        raise AccelsimError(
            f"arch {spec!r}: no such preset or file (presets: {', '.join(preset_names())})"
        )
    if not path.is_file():
        raise AccelsimError(f"{spec}: arch file not found")
    try:
        return spec, path.read_text(encoding="utf-8"), path.resolve().parent
    except (OSError, UnicodeDecodeError) as exc:
        raise AccelsimError(f"{spec}: cannot read arch file: {exc}") from None


def _check_type(label: str, key: str, value: Any, expected: type) -> Any:
    """Coerce int -> float where a float is expected; reject everything else of the wrong type."""
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise AccelsimError(f"{label}: {key} must be an integer, got {value!r}")
        return value
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise AccelsimError(f"{label}: {key} must be a number, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise AccelsimError(f"{label}: {key} must be a string, got {value!r}")
    return value


def _field_type(section: str, key: str) -> type:
    ann = {f.name: f.type for f in fields(_SECTION_TYPES[section])}[key]
    return {"int": int, "float": float, "str": str}[ann] if isinstance(ann, str) else ann


def _check_value(label: str, key: str, value: Any) -> None:
    if key in _ENUMS and value not in _ENUMS[key]:
        raise AccelsimError(
            f"{label}: {key} must be one of {_choices(_ENUMS[key])}, got {value!r}"
        )
    if key in _BOUNDS:
        low, strict = _BOUNDS[key]
        if (value <= low) if strict else (value < low):
            raise AccelsimError(f"{label}: {key} must be {'>' if strict else '>='} {low:g}, got {value!r}")
    if key == "topk.radix_bits" and value > 16:
        raise AccelsimError(f"{label}: {key} must be <= 16, got {value!r}")
    if key in ("arch.name", "energy.table") and not value.strip():
        raise AccelsimError(f"{label}: {key} must not be empty")


def _parse_override(item: str) -> tuple[str, str, Any]:
    """'section.key=value' -> (section, key, value); value parsed as TOML, else a bare string."""
    label = f"--set {item!r}"
    if "=" not in item:
        raise AccelsimError(f"{label}: expected section.key=value")
    dotted, raw = (part.strip() for part in item.split("=", 1))
    if dotted.count(".") != 1:
        raise AccelsimError(f"{label}: expected section.key=value, e.g. eie.num_pes=32")
    section, key = dotted.split(".")
    if dotted not in _ALL_KEYS:
        raise AccelsimError(f"--set: unknown key {dotted!r}{_suggest(dotted, _ALL_KEYS)}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    if _field_type(section, key) is str and not isinstance(value, str):
        value = raw  # `--set arch.name=128` means the string "128"
    return section, key, value


def _validated(label: str, data: dict[str, Any], base_dir: Path | None) -> dict[str, dict]:
    """Check sections, keys and types of parsed TOML; return {section: {key: value}}."""
    out: dict[str, dict] = {}
    for section, table in data.items():
        if section not in _SECTION_TYPES:
            if not isinstance(table, dict):
                raise AccelsimError(f"{label}: unknown key {section!r}{_suggest(section, _ALL_KEYS)}")
            raise AccelsimError(
                f"{label}: unknown section {section!r}{_suggest(section, list(_SECTION_TYPES))}"
            )
        if not isinstance(table, dict):
            raise AccelsimError(f"{label}: {section!r} must be a [{section}] table, got {table!r}")
        out[section] = {}
        for key, value in table.items():
            dotted = f"{section}.{key}"
            if dotted not in _ALL_KEYS:
                raise AccelsimError(f"{label}: unknown key {dotted!r}{_suggest(dotted, _ALL_KEYS)}")
            value = _check_type(label, dotted, value, _field_type(section, key))
            if dotted == "energy.table" and value != "default" and base_dir is not None:
                if not Path(value).is_absolute():
                    value = str(base_dir / value)
            out[section][key] = value
    return out


def load_arch(spec: str, overrides: Sequence[str] = ()) -> ArchConfig:
    """Load a preset name ("eie64", "cnvlutin") or a .toml path, apply `--set` overrides, validate.

    Every section and key is optional (dataclass defaults); relative energy-table paths in a file
    are taken relative to that file.
    """
    label, text, base_dir = _read_source(spec)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AccelsimError(f"{label}: invalid TOML: {exc}") from None
    values = _validated(label, data, base_dir)
    if base_dir is not None and "name" not in values.get("arch", {}):
        values.setdefault("arch", {})["name"] = Path(spec).stem
    sources = {f"{s}.{k}": label for s, table in values.items() for k in table}
    for item in overrides:
        section, key, value = _parse_override(item)
        olabel = f"--set {section}.{key}"
        values.setdefault(section, {})[key] = _check_type(
            olabel, f"{section}.{key}", value, _field_type(section, key)
        )
        sources[f"{section}.{key}"] = olabel
    for section, table in values.items():
        for key, value in table.items():
            _check_value(sources[f"{section}.{key}"], f"{section}.{key}", value)
    topk = values.get("topk", {})
    bits = topk.get("value_bits", TopkSection.value_bits)
    if topk.get("radix_bits", TopkSection.radix_bits) > bits:
        where = sources.get("topk.radix_bits", sources.get("topk.value_bits", label))
        raise AccelsimError(f"{where}: topk.radix_bits must be <= topk.value_bits ({bits})")
    return ArchConfig(**{s: _SECTION_TYPES[s](**values.get(s, {})) for s in _SECTION_TYPES})
