"""Architecture configuration: TOML files (or shipped presets) -> validated, frozen ArchConfig.

Why a strict loader: an architecture sweep with a typo'd key ("fifo_dpeth") silently running the
default is a wrong paper figure. Every key is checked against the dataclasses below; a bad file
or `--set` override fails with one line naming the file, the key and the problem.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from accelsim import dataflows
from accelsim.bounds import bounded, check_bounds, field_bounds
from accelsim.errors import AccelsimError, read_user_text

SPARSITY_MODES = ("skip", "gate", "none")
DATAFLOWS = dataflows.names()
TOPK_SCHEMES = ("bitonic", "insertion", "radix", "threshold")


@dataclass(frozen=True)
class ArchSection:
    """[arch]: identity, dataflow and the clock/data width shared by every part."""

    name: str = "custom"
    dataflow: str = "eie"
    clock_mhz: float = bounded(800.0, 0, 100_000, strict=True)  # up to 100 GHz
    data_bits: int = bounded(16, 1, 64)


@dataclass(frozen=True)
class SparsitySection:
    """[sparsity]: per operand, skip (no cycle, no energy), gate (cycle, no MAC energy) or none."""

    activations: str = "skip"
    weights: str = "skip"


@dataclass(frozen=True)
class TopkSection:
    """[topk]: the hardware top-k unit between a layer's output and the next broadcast."""

    scheme: str = "bitonic"
    comparators: int = bounded(64, 1, 1 << 20)
    value_bits: int = bounded(16, 1, 32)  # radix keys: the top bits of a float32 magnitude
    radix_bits: int = bounded(4, 1, 16)


@dataclass(frozen=True)
class MemorySection:
    """[memory]: on-chip capacities per PE and DRAM bandwidth (0 = unlimited)."""

    weight_sram_bytes_per_pe: int = bounded(131072, 1, 1 << 40)
    act_sram_bytes_per_pe: int = bounded(2048, 1, 1 << 40)
    dram_bytes_per_cycle: float = bounded(0.0, 1e-3, 1e9, zero_ok=True)
    weight_entry_bits: int = bounded(8, 1, 64)  # EIE: 4-bit value index + 4-bit relative index


@dataclass(frozen=True)
class EnergySection:
    """[energy]: "default" or a path to an energy TOML table."""

    table: str = "default"


class _ArchMethods:
    """Methods of ArchConfig (its fields come from the common sections and the registry)."""

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """{section: {key: value}}: writes back as an equivalent TOML file."""
        return dataclasses.asdict(self)

    def with_sparsity(self, activations: str, weights: str):
        """Same array, other skip/gate switches; ("none", "none") is the baseline."""
        for key, value in (("activations", activations), ("weights", weights)):
            if value not in SPARSITY_MODES:
                raise AccelsimError(
                    f"sparsity.{key} must be one of {_choices(SPARSITY_MODES)}, got {value!r}"
                )
        return dataclasses.replace(
            self, sparsity=SparsitySection(activations=activations, weights=weights)
        )


_COMMON = {"arch": ArchSection, "sparsity": SparsitySection, "topk": TopkSection,
           "memory": MemorySection, "energy": EnergySection}
assert not set(_COMMON) & set(DATAFLOWS), "a dataflow may not take a common section's name"
# [arch], then one section per registered dataflow, then the common parts.
_SECTION_TYPES: dict[str, type] = {
    "arch": ArchSection,
    **{name: flow.section for name, flow in dataflows.registry().items()},
    **{k: v for k, v in _COMMON.items() if k != "arch"},
}
ArchConfig = dataclasses.make_dataclass(
    "ArchConfig",
    [(name, cls, field(default_factory=cls)) for name, cls in _SECTION_TYPES.items()],
    bases=(_ArchMethods,),
    frozen=True,
)
ArchConfig.__module__ = __name__
ArchConfig.__doc__ = """One accelerator configuration; compare, hash and derive variants from it."""

_ALL_KEYS = [f"{s}.{f.name}" for s, cls in _SECTION_TYPES.items() for f in fields(cls)]
_FIELD_BOUNDS = {
    f"{s}.{f.name}": field_bounds(f)
    for s, cls in _SECTION_TYPES.items()
    for f in fields(cls)
    if field_bounds(f) is not None
}
_ENUMS: dict[str, tuple[str, ...]] = {
    "arch.dataflow": DATAFLOWS,
    "sparsity.activations": SPARSITY_MODES,
    "sparsity.weights": SPARSITY_MODES,
    "topk.scheme": TOPK_SCHEMES,
}


# A dataflow section's string fields declare their values as field metadata {"choices": (...)}.
_ENUMS.update({
    f"{s}.{f.name}": tuple(f.metadata["choices"])
    for s, cls in _SECTION_TYPES.items()
    for f in fields(cls)
    if "choices" in f.metadata
})


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
    return spec, read_user_text(path, spec, "arch file"), path.resolve().parent


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
    if expected is bool:
        if not isinstance(value, bool):
            raise AccelsimError(f"{label}: {key} must be true or false, got {value!r}")
        return value
    if not isinstance(value, str):
        raise AccelsimError(f"{label}: {key} must be a string, got {value!r}")
    return value


def _field_type(section: str, key: str) -> type:
    ann = {f.name: f.type for f in fields(_SECTION_TYPES[section])}[key]
    return {"int": int, "float": float, "str": str, "bool": bool}[ann] if isinstance(ann, str) else ann


def _check_value(label: str, key: str, value: Any) -> None:
    if key in _ENUMS and value not in _ENUMS[key]:
        raise AccelsimError(
            f"{label}: {key} must be one of {_choices(_ENUMS[key])}, got {value!r}"
        )
    if key in _FIELD_BOUNDS:
        check_bounds(label, key, value, _FIELD_BOUNDS[key])
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


_PARSED: dict = {}


def _parsed(spec: str) -> tuple[str, dict, Path | None]:
    """(label, validated values, base dir) of a preset or file, parsed once per process while
    a file is unchanged (a sweep loads one base with many override sets); a fresh copy each
    call, since overrides are applied to it."""
    import copy
    import os

    try:
        st = os.stat(spec)
        stamp = (os.path.abspath(spec), st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    except OSError:
        stamp = None  # a preset name (or a missing file: _read_source says so)
    key = (spec, stamp)
    if key not in _PARSED:
        label, text, base_dir = _read_source(spec)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise AccelsimError(f"{label}: invalid TOML: {exc}") from None
        if len(_PARSED) > 256:
            _PARSED.clear()
        _PARSED[key] = (label, _validated(label, data, base_dir), base_dir)
    label, values, base_dir = _PARSED[key]
    return label, copy.deepcopy(values), base_dir


def load_arch(spec: str, overrides: Sequence[str] = ()) -> ArchConfig:
    """Load a preset name ("eie64", "cnvlutin") or a .toml path, apply `--set` overrides, validate.

    Every section and key is optional (dataclass defaults); relative energy-table paths in a file
    are taken relative to that file.
    """
    label, values, base_dir = _parsed(spec)
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
