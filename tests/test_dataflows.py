"""The dataflow registry: every array is a plug-in and the engine never names one."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

import accelsim
from accelsim import dataflows
from accelsim.arch import ArchConfig, load_arch
from accelsim.errors import AccelsimError
from accelsim.traces.schema import LayerGeometry, LayerRecord, SparseBatch

ENGINE = ("simulate.py", "memory.py", "arch.py", "energy.py", "result.py")


def test_registry_lists_the_shipped_arrays_and_arch_has_their_sections():
    assert set(dataflows.names()) >= {"eie", "cnvlutin"}
    fields = {f.name: f.type for f in dataclasses.fields(ArchConfig)}
    for name, flow in dataflows.registry().items():
        assert name in fields
        assert isinstance(getattr(ArchConfig(), name), flow.section)


def test_engine_never_names_a_dataflow():
    root = Path(accelsim.__file__).parent
    for module in ENGINE:
        text = (root / module).read_text(encoding="utf-8")
        for name in dataflows.names():
            # a comparison with the name or an attribute of that name is a per-dataflow branch
            hits = re.findall(rf"(?:==|!=|\bin)\s*\(?[\"']{name}[\"']|\.{name}\b", text)
            assert not hits, f"{module} names the {name} dataflow: {hits}"


def test_unknown_dataflow_is_one_line():
    with pytest.raises(AccelsimError, match="unknown dataflow 'scnn' \\(known: cnvlutin, eie"):
        dataflows.get("scnn")


def _layer(kind: str) -> LayerRecord:
    geo = LayerGeometry("att", kind, (4,), (3,))
    x = np.ones((1, 4), np.float32)
    return LayerRecord(geometry=geo, weight=np.ones((3, 4), np.float32), weight_mask=None,
                       bias=None, inputs=SparseBatch.from_dense(x), outputs=None)


@pytest.mark.parametrize("name", ["eie", "cnvlutin"])
def test_a_dataflow_refuses_layer_kinds_it_does_not_run(name):
    arch = load_arch(name if name == "cnvlutin" else "eie64")
    flow = dataflows.get(name)
    with pytest.raises(AccelsimError, match=f"layer 'att': the {name} dataflow runs linear, conv2d "
                                            "layers, not 'attention'"):
        flow.run(_layer("attention"), arch, functional=False)
    assert flow.run(_layer("linear"), arch, functional=False).cycles.shape == (1,)


def test_multipliers_are_peak_macs_per_cycle():
    assert dataflows.get("eie").multipliers(load_arch("eie64").eie) == 64
    assert dataflows.get("cnvlutin").multipliers(load_arch("cnvlutin").cnvlutin) == 16 * 16 * 16
