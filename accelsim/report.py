"""The report: one tidy DataFrame (a row per trace x layer x architecture variant), its summary
against the baselines, console tables, and atomic CSV / Parquet / JSON files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from accelsim.atomic import atomic_write
from accelsim.errors import AccelsimError

REPORT_FORMATS = {".csv": "csv", ".parquet": "parquet", ".json": "json"}
ID_COLUMNS = ["trace", "model", "method", "arch", "dataflow", "variant", "layer_index", "layer", "kind",
              "arch_source", "arch_overrides", "arch_hash", "energy_table", "energy_hash"]
LAST_COLUMNS = ["arch_config"]  # the whole resolved configuration (JSON), long: kept at the end


def to_frame(rows: list[dict]) -> pd.DataFrame:
    keys = list(rows[0]) if rows else []
    if rows and all(len(r) == len(keys) and all(k in r for k in keys) for r in rows):
        frame = pd.DataFrame({k: [r[k] for r in rows] for k in keys})  # same columns: fast path
    else:
        frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    first = [c for c in ID_COLUMNS if c in frame.columns]
    last = [c for c in LAST_COLUMNS if c in frame.columns]
    return frame[first + [c for c in frame.columns if c not in first + last] + last]


def run_keys(report: pd.DataFrame) -> list[str]:
    """Columns that tell one run apart: (trace, arch) and, in reports that have them, the
    configuration and energy-table hashes (two arch files may share a name)."""
    return ["trace", "arch"] + [c for c in ("arch_hash", "energy_hash") if c in report.columns]


ISO_MULTIPLIERS = 64  # default common multiplier count of --per-multiplier (the eie64 array)


def per_multiplier(report: pd.DataFrame, multipliers: int = ISO_MULTIPLIERS) -> pd.DataFrame:
    """Iso-multiplier normalisation for tables that compare arrays of different sizes.

    iso_cycles = cycles x peak_macs_per_cycle / multipliers: the cycles the same array would
    take scaled to `multipliers` multipliers, assuming its throughput scales linearly with its
    multiplier count (a normalisation, not a simulation of the smaller or larger array).
    """
    out = report.copy()
    scale = out["peak_macs_per_cycle"] / float(multipliers)
    out["iso_multipliers"] = int(multipliers)
    out["iso_cycles"] = out["cycles"] * scale
    out["iso_time_us"] = out["time_us"] * scale
    return out


def totals(report: pd.DataFrame) -> pd.DataFrame:
    """Per (trace, arch, variant): cycles, energy, MACs summed over layers (per inference)."""
    run = run_keys(report)
    keys = run[:1] + ["model", "method"] + run[1:] + ["variant"]
    summed = [
        "cycles",
        "time_us",
        "energy_pj",
        "dense_macs",
        "effective_macs",
        "paper_estimate_macs",
        "dram_bytes",
        "topk_exposed_cycles",
        "topk_mismatches",
    ]
    summed += [c for c in ("iso_cycles", "iso_time_us") if c in report.columns]
    energy_cols = [c for c in report.columns if c.startswith("energy_") and c.endswith("_pj") and c != "energy_pj"]
    grouped = report.groupby(keys, sort=False, dropna=False)
    out = grouped[summed + energy_cols].sum().reset_index()
    # busy PE cycles over PE cycles per run; 1.0 where the array ran no cycles
    work = report[keys].assign(_busy=report["busy_pe_cycles"],
                               _pe=report["units"] * report["compute_cycles"])
    sums = work.groupby(keys, sort=False, dropna=False)[["_busy", "_pe"]].sum()
    busy, pe = sums["_busy"].to_numpy(dtype=float), sums["_pe"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["load_balance"] = np.where(pe != 0, busy / pe, 1.0)
    if {"ops", "simulated", "ops_listed"} <= set(report.columns):
        # coverage.coverage_pct per run, column-wise
        ops = report["ops"].astype(float)
        work = report[keys].assign(_ops=ops, _sim=ops.where(report["simulated"].astype(bool), 0.0),
                                   _listed=report["ops_listed"].astype(bool))
        agg = work.groupby(keys, sort=False, dropna=False).agg(
            total=("_ops", "sum"), sim=("_sim", "sum"), listed=("_listed", "all"))
        total = agg["total"].to_numpy(dtype=float)
        out["ops"] = grouped["ops"].sum().to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            out["coverage_pct"] = np.where(agg["listed"].to_numpy(dtype=bool) & (total > 0),
                                           100.0 * agg["sim"].to_numpy(dtype=float) / total, np.nan)
    return out


BASELINE = "baseline"  # the variant with skipping switched off; "dense" is the unpruned network
RENAMED_COLUMNS = {"speedup_vs_dense": "speedup_vs_baseline",  # before "baseline" had its name
                   "energy_ratio_vs_dense": "energy_ratio_vs_baseline"}
RENAMED_VARIANTS = {"dense": BASELINE}
REFERENCE_TRACES = {"dense": "dense_network", "wp": "wp"}  # method -> summary column suffix

RATIO_HEADINGS = {  # summary column -> heading (console table, HTML report)
    "speedup_vs_baseline": "speedup vs baseline", "energy_ratio_vs_baseline": "energy vs baseline",
    "speedup_vs_dense_network": "speedup vs dense net", "energy_ratio_vs_dense_network": "energy vs dense net",
    "speedup_vs_wp": "speedup vs WP", "energy_ratio_vs_wp": "energy vs WP",
}


def current_names(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with the names of tables written before the no-skip array was called "baseline"
    (variant "dense", speedup_vs_dense, energy_ratio_vs_dense) read as today's; every reader
    (read_report, summary, the plots, the HTML report, sweep tables) goes through it."""
    renames = {old: new for old, new in RENAMED_COLUMNS.items()
               if old in frame.columns and new not in frame.columns}
    old_variant = "variant" in frame.columns and frame["variant"].isin(list(RENAMED_VARIANTS)).any()
    if not renames and not old_variant:
        return frame
    frame = frame.rename(columns=renames)
    if old_variant:
        frame["variant"] = frame["variant"].replace(RENAMED_VARIANTS)
    return frame


def simulated_rows(report: pd.DataFrame) -> pd.DataFrame:
    """The rows of simulated layers (a report may also hold unsimulated ops: zero cycles)."""
    if "simulated" not in report.columns:
        return report
    return report[report["simulated"].fillna(True).astype(bool)]


def hardware_key(report: pd.DataFrame) -> pd.Series:
    """Per row, which hardware it ran on whatever its top-k unit: the resolved configuration
    without its top-k section, and the energy table (the arch column where a report has no
    configuration column). A trace without dynamic masks never uses the unit, so its figures
    are the same on every row that shares this key."""
    def key(blob) -> str:
        try:
            config = json.loads(blob)
        except (TypeError, ValueError):
            return str(blob)
        if not isinstance(config, dict):
            return str(blob)
        config.pop("topk", None)
        return json.dumps(config, sort_keys=True)

    if "arch_config" in report.columns:  # one parse per distinct configuration (a sweep: per point)
        blobs = report["arch_config"]
        hw = blobs.map({blob: key(blob) for blob in blobs.drop_duplicates()})
    else:
        hw = report["arch"].astype(str)
    if "energy_hash" in report.columns:
        hw = hw + "|" + report["energy_hash"].astype(str)
    return hw


def _references(report: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per run (keys): its hardware key and whether its trace has dynamic masks (unknown, taken
    as yes, in a report without the mask_scheme column); unsimulated rows say nothing of it."""
    report = simulated_rows(report)
    masked = report["mask_scheme"].astype(str) != "none" if "mask_scheme" in report.columns \
        else pd.Series(True, index=report.index)
    frame = report[keys].assign(_hw=hardware_key(report), _masked=masked)
    return frame.groupby(keys, sort=False, dropna=False).agg(_hw=("_hw", "first"),
                                                            _masked=("_masked", "any")).reset_index()


def summary(report: pd.DataFrame) -> pd.DataFrame:
    """Speedup and energy ratio of each trace against its baseline (the same array with skipping
    switched off), and against the dense (unpruned, method "dense") and weight-pruned (method
    "wp") traces of the same model on the same array, when those were run: in the same run, or
    (a trace without dynamic masks, whose figures do not depend on the top-k unit) on the same
    hardware and energy table with another top-k unit. Column-wise over all runs at once (a
    sweep summarises hundreds)."""
    report = current_names(report)
    tot = totals(report)
    keys = run_keys(tot)
    tot = tot.merge(_references(report, keys), on=keys, how="left")
    sparse = tot[tot["variant"] == "sparse"].reset_index(drop=True)
    if sparse.empty:
        return pd.DataFrame()
    baseline = tot[tot["variant"] == BASELINE].drop_duplicates(subset=keys)
    base = sparse[keys].merge(baseline[keys + ["cycles", "energy_pj"]], on=keys, how="left")
    frame = sparse[["trace", "model", "method", *keys[1:], "cycles"]].copy()
    if "iso_cycles" in sparse.columns:
        frame["iso_cycles"] = sparse["iso_cycles"]
    frame["energy_uj"] = sparse["energy_pj"] * 1e-6
    dense = sparse["dense_macs"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        frame["mac_pct"] = np.where(dense != 0, 100.0 * sparse["effective_macs"] / dense, np.nan)
    frame["load_balance"] = sparse["load_balance"]
    # share of the network's operations (a MAC = 2) in the simulated layers; NaN when the
    # trace does not list its other ops
    frame["coverage_pct"] = sparse["coverage_pct"] if "coverage_pct" in sparse.columns else np.nan
    frame["speedup_vs_baseline"] = _ratios(base["cycles"], sparse["cycles"])
    frame["energy_ratio_vs_baseline"] = _ratios(base["energy_pj"], sparse["energy_pj"])
    for method, suffix in REFERENCE_TRACES.items():
        ref = _reference_rows(sparse, method, keys[1:])
        if ref["_found"].any():
            frame[f"speedup_vs_{suffix}"] = _ratios(ref["cycles"], sparse["cycles"])
            frame[f"energy_ratio_vs_{suffix}"] = _ratios(ref["energy_pj"], sparse["energy_pj"])
    return frame


def _reference_rows(sparse: pd.DataFrame, method: str, run: list[str]) -> pd.DataFrame:
    """Per row of `sparse`: the cycles and energy of the first trace of the same model with
    `method` in the same run (the same `run` columns), else on the same hardware without
    dynamic masks (see summary), and whether one was found (never for rows of that method)."""
    mine = sparse[sparse["method"] == method]
    n = len(sparse)
    ref = {"cycles": np.full(n, np.nan), "energy_pj": np.full(n, np.nan),
           "_found": np.zeros(n, dtype=bool)}
    for on, pool in ((["model", "_hw"], mine[~mine["_masked"].astype(bool)]),
                     (["model", *run], mine)):  # the same run last: it wins
        pool = pool.dropna(subset=on).drop_duplicates(subset=on)  # the first; NaN matches nothing
        hit = sparse[on].merge(pool[[*on, "cycles", "energy_pj"]].assign(_found=True), on=on,
                               how="left")
        take = hit["_found"].notna().to_numpy() & (sparse["method"] != method).to_numpy()
        for col in ("cycles", "energy_pj"):
            ref[col][take] = hit[col].to_numpy(dtype=float)[take]
        ref["_found"] |= take
    return pd.DataFrame(ref)


def _ratios(reference: pd.Series, row: pd.Series) -> np.ndarray:
    """reference / row: how many times fewer cycles or less energy the row takes (NaN where
    there is no reference or the row's figure is 0)."""
    ref, own = reference.to_numpy(dtype=float), row.to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((own != 0) & ~np.isnan(ref), ref / own, np.nan)


def write_report(report: pd.DataFrame, path: str | Path) -> None:
    """Write by extension (.csv, .parquet, .json), atomically: temp file then rename."""
    path = Path(path)
    fmt = REPORT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise AccelsimError(f"{path}: unknown report format '{path.suffix}' (use .csv, .parquet or .json)")
    if not path.parent.exists():
        raise AccelsimError(f"{path}: directory {path.parent} does not exist")

    def write(tmp: str) -> None:
        if fmt == "csv":
            report.to_csv(tmp, index=False, float_format="%.10g")
        elif fmt == "parquet":
            report.to_parquet(tmp, index=False)
        else:
            report.to_json(tmp, orient="records", indent=1, double_precision=10)

    atomic_write(path, write)


def read_report(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    fmt = REPORT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise AccelsimError(f"{path}: unknown report format '{path.suffix}' (use .csv, .parquet or .json)")
    if not path.is_file():
        raise AccelsimError(f"{path}: report not found")
    try:
        if fmt == "csv":
            frame = pd.read_csv(path)
        elif fmt == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_json(path, orient="records")
    except Exception as exc:  # any parse failure is the user's file, not our bug
        raise AccelsimError(f"{path}: cannot read report: {str(exc).splitlines()[0]}") from None
    needed = {"trace", "arch", "variant", "layer", "cycles", "energy_pj"}
    missing = needed - set(frame.columns)
    if missing:
        raise AccelsimError(f"{path}: not an accelsim report (missing columns: {', '.join(sorted(missing))})")
    return current_names(frame)
