"""Golden reports of the reference traces: the regression net under every cycle and pJ.

Any change in a cycle, event or energy figure of a reference trace fails the test suite until
the golden files are regenerated with

    python -m accelsim.analysis.golden --update

and the commit says why the numbers moved.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "tests" / "golden"
GOLDEN_ARCHS = ("eie64", "cnvlutin", "scnn")


def current_report(arch_spec: str, overrides: tuple[str, ...] | list[str] = ()) -> pd.DataFrame:
    """Report of every reference trace on one preset, as `accelsim run` computes it, each trace
    with the top-k unit of the scheme that made its masks (exact top-k: the preset's unit)."""
    from accelsim.arch import load_arch
    from accelsim.cli_sim import reference_traces
    from accelsim.energy import load_energy_table
    from accelsim.report import to_frame
    from accelsim.simulate import matching_topk_unit, simulate_trace

    arch = load_arch(arch_spec, overrides)
    energy = load_energy_table(arch.energy.table)
    rows = []
    for trace in reference_traces():
        unit = matching_topk_unit(trace, arch.topk.scheme)
        mine_overrides = list(overrides) if unit == arch.topk.scheme else [*overrides, f"topk.scheme={unit}"]
        mine = arch if unit == arch.topk.scheme else load_arch(arch_spec, mine_overrides)
        rows += simulate_trace(trace, mine, energy, source=arch_spec, overrides=mine_overrides)
    return to_frame(rows)


def golden_path(arch_spec: str) -> Path:
    return GOLDEN_DIR / f"reference-{arch_spec}.csv"


def differences(current: pd.DataFrame, golden: pd.DataFrame, rtol: float = 1e-9) -> list[str]:
    """Human-readable list of every figure that moved (empty when identical)."""
    problems = []
    if list(current.columns) != list(golden.columns):
        added = sorted(set(current.columns) - set(golden.columns))
        removed = sorted(set(golden.columns) - set(current.columns))
        problems.append(f"columns changed: added {added}, removed {removed}")
        common = [c for c in golden.columns if c in current.columns]
        current, golden = current[common], golden[common]
    if len(current) != len(golden):
        return problems + [f"row count {len(current)} != golden {len(golden)}"]
    for col in golden.columns:
        a, b = current[col].to_numpy(), golden[col].to_numpy()
        if np.issubdtype(np.asarray(b).dtype, np.number) and np.issubdtype(np.asarray(a).dtype, np.number):
            bad = ~np.isclose(a.astype(float), b.astype(float), rtol=rtol, atol=0.0, equal_nan=True)
        else:
            bad = a.astype(str) != b.astype(str)
        for i in np.flatnonzero(bad)[:3]:
            problems.append(
                f"{golden.loc[i, 'trace']} {golden.loc[i, 'layer']} {golden.loc[i, 'variant']}: "
                f"{col} = {a[i]!r}, golden {b[i]!r}"
            )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="rewrite the golden files")
    args = parser.parse_args(argv)
    from accelsim.report import write_report

    status = 0
    for arch in GOLDEN_ARCHS:
        current = current_report(arch)
        path = golden_path(arch)
        if args.update:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_report(current, path)
            print(f"wrote {path} ({len(current)} rows)")
            continue
        if not path.exists():
            print(f"{path}: missing (run with --update)")
            status = 1
            continue
        diffs = differences(current, pd.read_csv(path))
        print(f"{arch}: {'identical' if not diffs else f'{len(diffs)} differences'}")
        for line in diffs:
            print("  " + line)
        status |= bool(diffs)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
