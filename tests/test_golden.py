"""Golden reports of the reference traces: any change in a cycle, event or energy figure fails
here until the golden files are regenerated with

    python -m accelsim.analysis.golden --update

and the commit says why the numbers moved.

A golden file only records what the code printed; so every golden row is also checked against
invariants that do not depend on the code that produced it: utilisation <= 1 and equal to
effective MACs / (peak MACs per cycle x cycles), busy + starve + tail + empty = units x compute
cycles,
cycles = compute + exposed top-k + memory stalls, energy = sum of components = sum of event
count x pJ of the table, effective MACs <= dense MACs, and the summary's speed-up and energy
ratios recomputed from the per-layer rows."""

import json

import numpy as np
import pandas as pd
import pytest

from accelsim.analysis.golden import GOLDEN_ARCHS, current_report, differences, golden_path
from accelsim.energy import load_energy_table
from accelsim.report import summary
from accelsim.result import EVENTS


@pytest.fixture(scope="module", params=GOLDEN_ARCHS)
def golden(request):
    path = golden_path(request.param)
    assert path.exists(), f"{path} missing: run python -m accelsim.analysis.golden --update"
    return request.param, pd.read_csv(path)


def test_reference_reports_match_golden(golden):
    arch, frame = golden
    diffs = differences(current_report(arch), frame)
    assert not diffs, "figures moved (regenerate the golden files if intended):\n" + "\n".join(diffs[:20])


def test_golden_rows_keep_the_invariants(golden):
    _, g = golden
    assert (g.loc[~g["simulated"].astype(bool), ["cycles", "effective_macs"]] == 0).all().all()
    g = g[g["simulated"].astype(bool)]  # listed-only ops (the ViT traces' LayerNorm, softmax, ...)
    assert (g["utilisation"] >= 0).all() and (g["utilisation"] <= 1).all()
    assert np.allclose(g["utilisation"], g["effective_macs"] / (g["peak_macs_per_cycle"] * g["cycles"]))
    pe = g["busy_pe_cycles"] + g["starve_pe_cycles"] + g["tail_pe_cycles"] + g["empty_pe_cycles"]
    assert np.allclose(pe, g["units"] * g["compute_cycles"])
    assert np.allclose(g["cycles"], g["compute_cycles"] + g["topk_exposed_cycles"] + g["memory_stall_cycles"])
    assert np.allclose(g["load_balance"], g["busy_pe_cycles"] / (g["units"] * g["compute_cycles"]))
    assert (g["effective_macs"] <= g["dense_macs"]).all()
    # the sparse array multiplies at least every non-zero pair; the baseline at least as much
    sparse, baseline = g[g["variant"] == "sparse"], g[g["variant"] == "baseline"]
    assert (sparse["events_mac"] >= sparse["effective_macs"] - 1e-9).all()
    assert (baseline["events_mac"].to_numpy() >= sparse["events_mac"].to_numpy() - 1e-9).all()
    table = load_energy_table()
    parts = [f"energy_{e}_pj" for e in EVENTS]
    assert np.allclose(g[parts].sum(axis=1), g["energy_pj"])
    for e in EVENTS:
        assert np.allclose(g[f"energy_{e}_pj"], g[f"events_{e}"] * table.pj[e]), e
    # clock energy: every unit pays every cycle of the layer, busy or waiting
    assert np.allclose(g["events_pe_cycle"], g["units"] * g["cycles"])


def test_summary_ratios_recomputed_from_the_per_layer_rows(golden):
    _, g = golden
    per = g.groupby(["trace", "variant"])[["cycles", "energy_pj"]].sum()
    method = g.groupby("trace")["method"].first()
    model = g.groupby("trace")["model"].first()
    run = g.groupby("trace")["arch_hash"].first()
    # a trace without dynamic masks (dense, WP) is also the reference of runs on the same hardware
    # with another top-k unit: its configuration without the topk section, and the energy table
    unmasked = g.groupby("trace")["mask_scheme"].apply(lambda s: (s == "none").all())
    hardware = g.groupby("trace")["arch_config"].first().map(
        lambda blob: json.dumps({k: v for k, v in json.loads(blob).items() if k != "topk"}))
    energy = g.groupby("trace")["energy_hash"].first()
    summ = summary(g).set_index("trace")
    assert set(summ.index) == set(g["trace"])
    for trace, r in summ.iterrows():
        s, d = per.loc[(trace, "sparse")], per.loc[(trace, "baseline")]
        assert r["cycles"] == pytest.approx(s["cycles"])
        assert r["speedup_vs_baseline"] == pytest.approx(d["cycles"] / s["cycles"])
        assert r["energy_ratio_vs_baseline"] == pytest.approx(d["energy_pj"] / s["energy_pj"])
        for ref_method, suffix in (("wp", "wp"), ("dense", "dense_network")):
            mine = [t for t in method.index if method[t] == ref_method and model[t] == model[trace]]
            refs = [t for t in mine if run[t] == run[trace]] or [
                t for t in mine if unmasked[t] and hardware[t] == hardware[trace] and energy[t] == energy[trace]]
            if method[trace] != ref_method and refs:
                w = per.loc[(refs[0], "sparse")]
                assert r[f"speedup_vs_{suffix}"] == pytest.approx(w["cycles"] / s["cycles"])
                assert r[f"energy_ratio_vs_{suffix}"] == pytest.approx(w["energy_pj"] / s["energy_pj"])
            else:
                column = f"speedup_vs_{suffix}"
                assert column not in summ.columns or r[column] != r[column]
    # the threshold-prediction traces ran with another top-k unit: WP and dense still pair
    for model_name in ("mlp3", "lenet4"):
        thr = summ.loc[f"{model_name}-jp-threshold.trace.safetensors"]
        assert thr["speedup_vs_wp"] > 0 and thr["energy_ratio_vs_dense_network"] > 0


def test_golden_comparison_catches_a_moved_cycle():
    frame = pd.DataFrame({"trace": ["t"], "layer": ["fc1"], "variant": ["sparse"], "cycles": [100.0]})
    moved = frame.copy()
    moved.loc[0, "cycles"] = 101.0
    assert differences(moved, frame) and not differences(frame.copy(), frame)
