"""Golden reports of the reference traces: any change in a cycle, event or energy figure fails
here until the golden files are regenerated with

    python -m accelsim.analysis.golden --update

and the commit says why the numbers moved."""

import pandas as pd
import pytest

from accelsim.analysis.golden import GOLDEN_ARCHS, current_report, differences, golden_path


@pytest.mark.parametrize("arch", GOLDEN_ARCHS)
def test_reference_reports_match_golden(arch):
    path = golden_path(arch)
    assert path.exists(), f"{path} missing: run python -m accelsim.analysis.golden --update"
    diffs = differences(current_report(arch), pd.read_csv(path))
    assert not diffs, "figures moved (regenerate the golden files if intended):\n" + "\n".join(diffs[:20])


def test_golden_comparison_catches_a_moved_cycle():
    frame = pd.DataFrame({"trace": ["t"], "layer": ["fc1"], "variant": ["sparse"], "cycles": [100.0]})
    moved = frame.copy()
    moved.loc[0, "cycles"] = 101.0
    assert differences(moved, frame) and not differences(frame.copy(), frame)
