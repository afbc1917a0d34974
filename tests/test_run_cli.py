"""`accelsim run` end to end on a small synthetic trace: report contents, determinism,
the functional check, and one clear line with exit code 2 for every kind of bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from accelsim.cli import main
from accelsim.traces import format as fmt


@pytest.fixture(scope="module")
def lenet_trace(tmp_path_factory):
    from accelsim.traces.synthetic import synthetic_trace

    path = tmp_path_factory.mktemp("traces") / "lenet.trace.safetensors"
    synthetic_trace("lenet4", str(path), weight_density=0.1, act_density=0.3, num_samples=3, seed=1)
    return path


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_run_writes_a_row_per_layer_and_variant(lenet_trace, tmp_path, capsys):
    out = tmp_path / "r.csv"
    code, stdout, _ = run_cli(capsys, "run", "--trace", str(lenet_trace), "--out", str(out))
    assert code == 0
    everything = pd.read_csv(out)
    report = everything[everything["simulated"]]
    assert list(report["layer"].unique()) == ["conv1", "conv2", "fc1", "fc2"]
    # the ReLUs, pools and the flatten ran too: listed in execution order, not simulated
    listed = everything[~everything["simulated"]]
    assert list(everything["layer"].unique()) == ["conv1", "relu1", "pool1", "conv2", "relu2",
                                                  "pool2", "flatten", "fc1", "relu3", "fc2_drop",
                                                  "fc2"]
    assert (listed["cycles"] == 0).all() and (listed["ops"] > 0).sum() == 2 * 5
    assert set(report["variant"]) == {"sparse", "baseline"}
    sparse = report[report["variant"] == "sparse"].set_index("layer")
    baseline = report[report["variant"] == "baseline"].set_index("layer")
    # skipping zeros never costs cycles on the array itself
    assert (sparse["compute_cycles"] <= baseline["compute_cycles"]).all()
    # the exact count of non-zero pairs is what the sparse array multiplies
    assert np.allclose(sparse["events_mac"], sparse["effective_macs"])
    # energy components add up to the total
    parts = [c for c in report.columns if c.startswith("energy_") and c.endswith("_pj") and c != "energy_pj"]
    assert np.allclose(report[parts].sum(axis=1), report["energy_pj"])
    assert "vs baseline" in stdout and "vs dense" not in stdout


def test_same_trace_same_config_gives_identical_report(lenet_trace, tmp_path, capsys):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    for out in (a, b):
        assert run_cli(capsys, "run", "--trace", str(lenet_trace), "--out", str(out), "--quiet")[0] == 0
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("ext", [".parquet", ".json"])
def test_report_formats(lenet_trace, tmp_path, capsys, ext):
    out = tmp_path / f"r{ext}"
    assert run_cli(capsys, "run", "--trace", str(lenet_trace), "--out", str(out), "--quiet")[0] == 0
    from accelsim.report import read_report

    report = read_report(out)
    assert len(report) == 2 * 11 and report["simulated"].sum() == 2 * 4  # 4 layers, 7 other ops


def _rewrite(src, dst, edit_tensors=None, edit_meta=None):
    """Copy a trace, editing tensors and/or metadata, with valid checksums (a well-formed file
    whose content is wrong)."""
    with safe_open(str(src), framework="numpy") as f:
        meta = json.loads(f.metadata()["accelsim_trace"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if edit_tensors:
        edit_tensors(tensors)
    for layer in meta["layers"]:
        for name in layer["tensors"]:
            layer["tensors"][name]["crc32"] = fmt.crc32(tensors[name])
    if edit_meta:
        edit_meta(meta)
    text = json.dumps(meta)
    save_file(tensors, str(dst), metadata={fmt.METADATA_KEY: text,
                                           fmt.METADATA_CRC_KEY: fmt.metadata_crc32(text)})
    return dst


def test_functional_check_catches_wrong_operands(lenet_trace, tmp_path, capsys):
    def scale_weights(t):
        key = next(k for k in t if k.startswith("L002.weight") and not k.endswith("indices"))
        t[key] = (t[key] * np.float32(1.5)).astype(np.float32)

    bad = _rewrite(lenet_trace, tmp_path / "bad.trace.safetensors", edit_tensors=scale_weights)
    code, _, err = run_cli(capsys, "run", "--trace", str(bad), "--out", str(tmp_path / "r.csv"))
    assert code == 2
    assert "functional check failed" in err and "fc1" in err
    assert not (tmp_path / "r.csv").exists()
    code, _, err = run_cli(capsys, "trace", "validate", str(bad))  # validate sees it too
    assert code == 2 and "fc1" in err and "functional check failed" in err


def _truncated(src, dst):
    dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    return dst


def _flipped(src, dst):
    data = bytearray(src.read_bytes())
    data[-100] ^= 0xFF
    dst.write_bytes(bytes(data))
    return dst


def _nan(src, dst):
    def put_nan(t):
        key = next(k for k in t if k.endswith("inputs.values"))
        t[key] = t[key].copy()
        t[key][0] = np.nan

    return _rewrite(src, dst, edit_tensors=put_nan)


def _shape(src, dst):
    def drop_bias(t):
        key = next(k for k in t if k.endswith(".bias"))
        t[key] = t[key][:-1].copy()

    return _rewrite(src, dst, edit_tensors=drop_bias)


def _version(src, dst):
    return _rewrite(src, dst, edit_meta=lambda m: m.update(format_version=99))


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (_truncated, "trace"),
        (_flipped, "crc32"),
        (_nan, "NaN"),
        (_shape, "shape"),
        (_version, "version"),
    ],
)
def test_bad_trace_gives_one_line_and_exit_2(lenet_trace, tmp_path, capsys, corrupt, message):
    bad = corrupt(lenet_trace, tmp_path / "bad.trace.safetensors")
    out = tmp_path / "r.csv"
    code, _, err = run_cli(capsys, "run", "--trace", str(bad), "--out", str(out))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "bad.trace.safetensors" in lines[0] and message.lower() in lines[0].lower()
    assert "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--trace", "missing.trace.safetensors"], "not found"),
        (["--arch", "nosuch"], "nosuch"),
        (["--set", "eie.fifo_dpeth=4"], "fifo_dpeth"),
        (["--set", "eie.num_pes=0"], "num_pes"),
        (["--out", "r.xlsx"], "unknown report format"),
    ],
)
def test_bad_options_give_one_line_and_exit_2(lenet_trace, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    if "--trace" not in args:
        args = ["--trace", str(lenet_trace), *args]
    code, _, err = run_cli(capsys, "run", *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


def test_bad_arch_and_energy_files(lenet_trace, tmp_path, capsys):
    arch = tmp_path / "a.toml"
    arch.write_text("[eie]\nnum_pe = 4\n")
    code, _, err = run_cli(capsys, "run", "--trace", str(lenet_trace), "--arch", str(arch))
    assert code == 2 and "a.toml" in err and "num_pe" in err
    energy = tmp_path / "e.toml"
    energy.write_text("[table]\nversion = 1\n[events.mac]\npj = 1.0\nsource = 'x'\n")
    code, _, err = run_cli(capsys, "run", "--trace", str(lenet_trace), "--energy", str(energy))
    assert code == 2 and "e.toml" in err and "missing energy" in err


def test_plot_commands(lenet_trace, tmp_path, capsys):
    report = tmp_path / "r.csv"
    assert run_cli(capsys, "run", "--trace", str(lenet_trace), "--out", str(report), "--quiet")[0] == 0
    for kind in ("energy", "cycles", "layers"):
        fig = tmp_path / f"{kind}.png"
        assert run_cli(capsys, "plot", kind, str(report), "-o", str(fig))[0] == 0
        assert fig.read_bytes()[:4] == b"\x89PNG"
    code, _, err = run_cli(capsys, "plot", "energy", str(report), "-o", str(tmp_path / "e.bmp"))
    assert code == 2 and "figure format" in err
    code, _, err = run_cli(capsys, "plot", "energy", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "e.png"))
    assert code == 2 and "report not found" in err
