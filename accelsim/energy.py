"""Energy tables: per-event energy in pJ with a source line per entry, loaded from TOML.

Energy of a run = sum over events of count x pJ; the report keeps every component.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from accelsim.bounds import Bounds, check_bounds
from accelsim.errors import AccelsimError, read_user_text
from accelsim.result import EVENTS

DEFAULT_TABLE = "default"
_PRESETS = {"default": "energy-45nm.toml", "default-45nm": "energy-45nm.toml"}
SUPPORTED_VERSIONS = (1,)
# pJ per event: 1 uJ is far above any on- or off-chip access; 1e308 would make energies inf.
PJ_BOUNDS = Bounds(0, 1e6)


@dataclass(frozen=True)
class EnergyTable:
    """Energy per event (pJ) and where each number comes from."""

    name: str
    version: int
    pj: dict[str, float]
    sources: dict[str, str]

    def energy_pj(self, counts: dict[str, float]) -> dict[str, float]:
        """Per-event energy (pJ) of the given event counts; events absent count zero."""
        return {event: float(counts.get(event, 0)) * self.pj[event] for event in EVENTS}

    def fingerprint(self) -> str:
        blob = json.dumps({"name": self.name, "version": self.version, "pj": self.pj}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_energy_table(spec: str | Path = DEFAULT_TABLE) -> EnergyTable:
    """Load a shipped table by name ("default") or a TOML file by path, validated."""
    spec = str(spec)
    if spec in _PRESETS:
        label = f"energy table '{spec}'"
        text = resources.files("accelsim.presets").joinpath(_PRESETS[spec]).read_text()
    else:
        path = Path(spec)
        label = str(path)
        text = read_user_text(path, label, "energy table", " (use 'default' or a TOML file)")
    return parse_energy_table(text, label)


def parse_energy_table(text: str, label: str) -> EnergyTable:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AccelsimError(f"{label}: invalid TOML: {exc}") from None
    unknown = set(doc) - {"table", "events"}
    if unknown:
        raise AccelsimError(f"{label}: unknown section '{sorted(unknown)[0]}' (expected table, events)")
    table = doc.get("table", {})
    for key in set(table) - {"name", "version", "units"}:
        raise AccelsimError(f"{label}: unknown key 'table.{key}'")
    version = table.get("version", 1)
    if version not in SUPPORTED_VERSIONS:
        raise AccelsimError(f"{label}: unsupported energy table version {version!r} (supported: 1)")
    if table.get("units", "pJ") != "pJ":
        raise AccelsimError(f"{label}: table.units must be 'pJ', got {table.get('units')!r}")
    events = doc.get("events")
    if not isinstance(events, dict):
        raise AccelsimError(f"{label}: missing [events.*] entries")
    pj: dict[str, float] = {}
    sources: dict[str, str] = {}
    for event, entry in events.items():
        if event not in EVENTS:
            raise AccelsimError(f"{label}: unknown event 'events.{event}' (known: {', '.join(EVENTS)})")
        if not isinstance(entry, dict):
            raise AccelsimError(f"{label}: events.{event} must be a table with pj and source")
        for key in set(entry) - {"pj", "source"}:
            raise AccelsimError(f"{label}: unknown key 'events.{event}.{key}'")
        value = entry.get("pj")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise AccelsimError(f"{label}: events.{event}.pj must be a number, got {value!r}")
        check_bounds(label, f"events.{event}.pj", value, PJ_BOUNDS)
        source = entry.get("source")
        if not isinstance(source, str) or not source.strip():
            raise AccelsimError(f"{label}: events.{event}.source must say where the number comes from")
        pj[event] = float(value)
        sources[event] = source
    missing = [e for e in EVENTS if e not in pj]
    if missing:
        raise AccelsimError(f"{label}: missing energy for event(s): {', '.join(missing)}")
    return EnergyTable(name=str(table.get("name", label)), version=int(version), pj=pj, sources=sources)
