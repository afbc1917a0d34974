"""The top-k unit is timed on the activations its own scheme keeps.

The reference JP networks ship twice: with exact top-k masks and with threshold-prediction masks
(`accelsim trace record --eps`). `accelsim run` says in every row which masks made the operands
it timed, and warns (one line) when the top-k unit is not the scheme that made them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from accelsim import maskfn
from accelsim.cli import main
from accelsim.cli_sim import reference_traces
from accelsim.traces import open_trace

REF = {p.name.replace(".trace.safetensors", ""): p for p in reference_traces()}


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


@pytest.mark.parametrize("model", ["mlp3", "lenet4"])
def test_threshold_traces_are_the_jp_network_with_threshold_masks(model):
    """Same weights, same images; each mask is threshold prediction (JPnet Eq. 11) of the
    recorded pre-mask activations, and it keeps a different set than exact top-k."""
    exact, thr = open_trace(REF[f"{model}-jp"]), open_trace(REF[f"{model}-jp-threshold"])
    assert exact.meta["sample_indices"] == thr.meta["sample_indices"]
    assert exact.names == thr.names
    masked = 0
    for i in range(len(exact)):
        a, b = exact.layer(i), thr.layer(i)
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
        if b.mask_params is None:
            continue
        masked += 1
        assert a.mask_params.scheme == "topk" and b.mask_params.scheme == "threshold-prediction"
        assert b.mask_params.winner_rate == a.mask_params.winner_rate
        pre = b.premask.to_dense().reshape(b.premask.num_samples, -1)
        kept = b.act_mask.to_dense().reshape(len(pre), -1) != 0
        want, _ = maskfn.threshold_prediction_mask(pre, b.mask_params.winner_rate, b.mask_params.eps)
        assert np.array_equal(kept, want)
        # threshold prediction keeps a per-sample count, exact top-k keeps k
        counts = kept.sum(axis=1)
        assert len(set(counts.tolist())) > 1
    assert masked == len([r for r in exact.meta["layers"] if r["mask"]])


def test_threshold_unit_on_exact_masks_warns_and_reports_the_masks_it_timed(tmp_path, capsys):
    out = tmp_path / "r.csv"
    code, _, err = run_cli(capsys, "run", "--trace", str(REF["mlp3-jp"]), "--set", "topk.scheme=threshold",
                           "--out", str(out), "--quiet")
    assert code == 0
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert "mlp3-jp.trace.safetensors" in warnings[0] and "masks made by topk" in warnings[0]
    assert "--eps" in warnings[0]
    r = pd.read_csv(out)
    sparse = r[r["variant"] == "sparse"].set_index("layer")
    assert sparse["mask_scheme"].to_dict() == {"fc1": "none", "fc2": "topk", "fc3": "topk"}
    assert sparse["topk_unit"].to_dict() == {"fc1": "none", "fc2": "threshold", "fc3": "threshold"}
    # the unit's own masks differ from the ones the arrays processed
    assert sparse.loc["fc2", "topk_mismatches"] > 0


def test_matching_unit_runs_silently_on_its_own_masks(tmp_path, capsys):
    out = tmp_path / "r.csv"
    code, _, err = run_cli(capsys, "run", "--trace", str(REF["mlp3-jp-threshold"]),
                           "--trace", str(REF["mlp3-jp"]), "--set", "topk.scheme=threshold",
                           "--out", str(out), "--quiet")
    assert code == 0
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "mlp3-jp.trace" in warnings[0]  # only the exact-mask trace
    r = pd.read_csv(out)
    thr = r[(r["variant"] == "sparse") & (r["trace"] == "mlp3-jp-threshold.trace.safetensors")]
    assert set(thr["mask_scheme"]) == {"none", "threshold-prediction"}
    assert thr["topk_mismatches"].sum() == 0
    # the arrays multiply the activations threshold prediction kept (its mask is their input)
    trace = open_trace(REF["mlp3-jp-threshold"])
    for _, row in thr[thr["mask_scheme"] != "none"].iterrows():
        layer = trace.layer(int(row["layer_index"]))
        assert row["topk_kept"] == pytest.approx(layer.act_mask.nnz_per_sample().mean())
        assert row["topk_kept"] == pytest.approx(layer.inputs.nnz_per_sample().mean())
