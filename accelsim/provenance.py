"""What a report row was simulated with: where the architecture came from, the overrides, the
whole resolved configuration and short hashes of it and of the energy table.

Why: a concatenated table of runs (a sweep, two `accelsim run` calls) must never mix up two
configurations that share a preset name. The `arch` label says the overrides; `arch_hash`
and `energy_hash` tell apart what labels cannot (two files with the same stem).
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any, Mapping, Sequence

HASH_CHARS = 12  # short hashes in reports: 48 bits, enough to tell configurations apart


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]


@functools.lru_cache(maxsize=4096)
def config_json(arch) -> str:
    """The resolved configuration as canonical JSON (sorted keys, no spaces); once per
    configuration (an ArchConfig is frozen and hashable; a sweep labels every point's rows)."""
    return json.dumps(arch.to_dict(), sort_keys=True, separators=(",", ":"))


def overrides_list(overrides: Sequence[str] | Mapping[str, Any] | None) -> list[str]:
    """`--set` items from a list of "section.key=value" or a {"section.key": value} mapping."""
    if not overrides:
        return []
    if isinstance(overrides, Mapping):
        return [f"{k}={json.dumps(v) if isinstance(v, str) else v}" for k, v in overrides.items()]
    return [str(item) for item in overrides]


def canonical_overrides(overrides: Sequence[str]) -> list[str]:
    """"section.key=value" with the value as the loader parsed it (last one of a key wins)."""
    from accelsim.arch import _parse_override

    out: dict[str, Any] = {}
    for item in overrides:
        section, key, value = _parse_override(item)
        out.pop(f"{section}.{key}", None)
        out[f"{section}.{key}"] = value
    return [f"{k}={v}" for k, v in out.items()]


def arch_label(name: str, overrides: Sequence[str]) -> str:
    """"eie64" or "eie64[eie.num_pes=32,eie.fifo_depth=4]" (a new arch.name is the name)."""
    shown = [o for o in overrides if not o.startswith("arch.name=")]
    return f"{name}[{','.join(shown)}]" if shown else name


def run_columns(arch, energy, source: str | None = None, overrides: Sequence[str] = ()) -> dict:
    """Provenance columns of every row of a run on `arch` with `energy`.

    The dense-baseline rows carry the configuration of the array they are the baseline of
    (their own switches are sparsity none/none), so both variants of a run share a hash.
    """
    canon = canonical_overrides(overrides)
    blob = config_json(arch)
    return {
        "arch": arch_label(arch.arch.name, canon),
        "arch_source": source if source is not None else arch.arch.name,
        "arch_overrides": json.dumps(canon),  # a JSON list: "[]" survives CSV
        "arch_hash": short_hash(blob),
        "energy_table": energy.name,
        "energy_hash": energy.fingerprint()[:HASH_CHARS],
        "arch_config": blob,
    }
