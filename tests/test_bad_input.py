"""Bad input on the command line, table-driven.

Each row of CASES is one bad input: the command line, the phrase its one `error:` line must
contain, and the output path that must hold no file afterwards. Every row must exit with code
2, print exactly one line on stderr, and be refused before any simulation, training or
checkpoint load starts (those entry points raise if they are reached). The classes:

- output: paths every writing command refuses before working (a parent that is a file, a
  directory or a pipe as --out, a missing directory, /proc and /sys, an unknown suffix);
- option: out-of-range values, refused before anything is allocated;
- report: reports that pass the column check but cannot make a figure;
- text: names that would be markup, mathtext or control characters in an error line.

Further tests below: OS errors while writing (full disk, read-only file system), names from
files printed and plotted as plain text, a progress line never followed by a blank line,
memory-bomb options under an address-space limit, and writers killed with SIGKILL.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from accelsim.cli import main

WORK = ("accelsim.cli_sim._simulate", "accelsim.traces.synthetic.synthetic_trace",
        "accelsim.models.record.record_checkpoint", "accelsim.models.train.train",
        "accelsim.models.recipes.get_recipe", "accelsim.models.checkpoint.load_checkpoint",
        "accelsim.plots.plot_energy", "accelsim.plots.plot_cycles", "accelsim.plots.plot_layers")

SWEEPS = ("winner-rates", "eps", "static-vs-dynamic")
TRACE_OUT = "{tmp}/t.trace.safetensors"


def _case(cls, argv, phrase, out=None):
    return pytest.param(cls, argv, phrase, out, id=f"{cls}: {' '.join(argv)[:70]}")


def _output_cases():
    rows = []
    run = ["run", "--trace", "{trace}", "--quiet", "--out"]
    for out, phrase in [
        ("{file}/r.csv", "afile is not a directory"),
        ("{dir}", "is a directory, not a report file"),
        ("{tmp}/missing/r.csv", "directory {tmp}/missing does not exist"),
        ("/proc/accelsim-r.csv", "cannot write in /proc"),
        ("/sys/accelsim-r.csv", "cannot write in /sys"),
        ("{pipe}", "exists and is not a regular file"),
        ("/dev/full", "unknown report format"),
        ("{tmp}/r.xlsx", "unknown report format '.xlsx'"),
        ("{tmp}/r.csv/", "names a directory"),
    ]:
        rows.append(_case("output", run + [out], phrase, out))
    for kind in ("energy", "cycles", "layers"):
        for out, phrase in [
            ("{file}/f.png", "afile is not a directory"),
            ("{dirpng}", "is a directory, not a figure file"),
            ("/proc/accelsim-f.png", "cannot write in /proc"),
            ("/sys/accelsim-f.png", "cannot write in /sys"),
            ("{tmp}/f.bmp", "unknown figure format '.bmp'"),
            ("{tmp}/missing/f.png", "does not exist"),
        ]:
            rows.append(_case("output", ["plot", kind, "{report}", "-o", out], phrase, out))
    for out, phrase in [
        ("{file}", "--out-dir {file}: exists and is not a directory"),
        ("{file}/demo", "afile is not a directory"),
        ("/proc/accelsim-demo", "cannot write in /proc"),
        ("/sys/accelsim-demo", "cannot write in /sys"),
        ("{blocked}", "report.csv: is a directory"),
    ]:
        rows.append(_case("output", ["demo", "--out-dir", out], phrase, out + "/report.csv"))
    trace_cmds = [["trace", "synth", "--model", "mlp3"],
                  ["trace", "record", "--checkpoint", "{tmp}/no-checkpoint"]]
    for cmd in trace_cmds:
        for out, phrase in [
            ("{file}/t.trace.safetensors", "afile is not a directory"),
            ("{dir}", "is a directory, not a trace file"),
            ("/proc/accelsim.trace.safetensors", "cannot write in /proc"),
            ("/sys/accelsim.trace.safetensors", "cannot write in /sys"),
            ("{tmp}/missing/t.trace.safetensors", "does not exist"),
        ]:
            rows.append(_case("output", cmd + ["--out", out], phrase, out))
    for out, phrase in [
        ("{file}", "--out {file}: exists and is not a directory"),
        ("{file}/run", "afile is not a directory"),
        ("/proc/accelsim-run", "cannot write in /proc"),
        ("/sys/accelsim-run", "cannot write in /sys"),
    ]:
        rows.append(_case("output", ["train", "--model", "mlp3", "--out", out], phrase,
                          out + "/state.pt"))
    for sweep in SWEEPS:
        base = ["sweep", sweep, "--checkpoint", "{tmp}/no-checkpoint"]
        for extra, phrase, out in [
            (["--out", "{file}/s.csv"], "afile is not a directory", "{file}/s.csv"),
            (["--out", "{dir}"], "is a directory, not a sweep CSV file", "{dir}"),
            (["--out", "{tmp}/s.txt"], "unknown sweep CSV format '.txt'", "{tmp}/s.txt"),
            (["--out", "/proc/accelsim-s.csv"], "cannot write in /proc", "/proc/accelsim-s.csv"),
            (["--out", "{tmp}/s.csv", "--plot", "{file}/p.png"], "--plot {file}/p.png",
             "{tmp}/s.csv"),
            (["--out", "{tmp}/s.csv", "--plot", "{tmp}/p.gif"], "unknown figure format '.gif'",
             "{tmp}/s.csv"),
        ]:
            rows.append(_case("output", base + extra, phrase, out))
    return rows


def _option_cases():
    rows = []
    train = ["train", "--model", "mlp3", "--out", "{tmp}/run"]
    for extra, phrase in [
        (["--threads", "100000"], "'--threads': 100000 is not in the range 1<=x<=256"),
        (["--threads", "-1"], "'--threads': -1 is not in the range"),
        (["--threads", "0"], "'--threads': 0 is not in the range"),
        (["--seed", "-1"], "'--seed': -1 is not in the range 0<=x<=4294967295"),
        (["--seed", str(2**32)], "'--seed'"),
        (["--epochs", "0"], "'--epochs': 0 is not in the range"),
        (["--limit-train", "0"], "'--limit-train': 0 is not in the range x>=1"),
        (["--eps", "nan"], "'--eps': nan is not a finite number"),
        (["--eps", "0"], "'--eps': 0.0 is not in the range 0.0<x<=1.0"),
        (["--budget", "inf"], "'--budget': inf is not a finite number"),
        (["--budget", "-1"], "'--budget': -1.0 is not in the range"),
    ]:
        rows.append(_case("option", train + extra, phrase, "{tmp}/run/state.pt"))
    for cmd in (["trace", "synth", "--model", "mlp3"],
                ["trace", "record", "--checkpoint", "{tmp}/no-checkpoint"]):
        for extra, phrase in [
            (["--samples", "0"], "'--samples': 0 is not in the range 1<=x<=65536"),
            (["--samples", str(10**9)], "'--samples': 1000000000 is not in the range"),
            (["--output-samples", "-1"], "'--output-samples': -1 is not in the range"),
        ]:
            rows.append(_case("option", cmd + ["--out", TRACE_OUT] + extra, phrase, TRACE_OUT))
    rows.append(_case("option", ["trace", "record", "--checkpoint", "{tmp}/c", "--out", TRACE_OUT,
                                 "--eps", "nan"], "'--eps': nan is not a finite number", TRACE_OUT))
    sweep = ["sweep", "winner-rates", "--checkpoint", "{tmp}/no-checkpoint", "--out", "{tmp}/s.csv"]
    for extra, phrase in [
        (["--rates", "1e-9:1:1e-9"], "--rates: '1e-9:1:1e-9' gives 1000000000 values; at most 10000"),
        (["--rates", ",".join(["0.5"] * 10001)], "--rates: 10001 values; at most 10000"),
        (["--rates", "nan"], "--rates: value nan out of range"),
        (["--rates", "0.1:1:0"], "step must be > 0"),
        (["--batch-size", "0"], "'--batch-size': 0 is not in the range 1<=x<=4096"),
        (["--batch-size", str(10**9)], "'--batch-size': 1000000000 is not in the range"),
        (["--val-size", "0"], "'--val-size': 0 is not in the range"),
        (["--limit", "0"], "'--limit': 0 is not in the range"),
        (["--seed", "-1"], "'--seed': -1 is not in the range"),
    ]:
        rows.append(_case("option", sweep + extra, phrase, "{tmp}/s.csv"))
    for sweep_name, extra, phrase in [
        ("eps", ["--eps", "0:1:1e-12"], "--eps: '0:1:1e-12' gives 1000000000001 values"),
        ("eps", ["--eps", "inf"], "--eps: value inf out of range (0.0, 1.0]"),
        ("static-vs-dynamic", ["--thresholds", "0:1e12:1e-3"], "--thresholds: '0:1e12:1e-3' gives"),
    ]:
        rows.append(_case("option", ["sweep", sweep_name, "--checkpoint", "{tmp}/c", "--out",
                                     "{tmp}/s.csv", *extra], phrase, "{tmp}/s.csv"))
    rows.append(_case("option", ["sweep", "choose", "--sweep", "{report}", "--budget", "nan"],
                      "'--budget': nan is not a finite number"))
    rows.append(_case("option", ["run", "--trace", "{trace}", "--per-multiplier", "0",
                                 "--out", "{tmp}/r.csv"], "'--per-multiplier'", "{tmp}/r.csv"))
    return rows


# Reports that pass read_report's column check but cannot make a figure: (name, edit, phrase).
BAD_REPORTS = {
    "header-only": (lambda f: f.iloc[:0], "report has no rows to plot"),
    "text-cycles": (lambda f: f.assign(cycles=["many"] + list(f["cycles"].iloc[1:])),
                    "column 'cycles' row 1 holds 'many' (not a number)"),
    "nan-cycles": (lambda f: f.assign(cycles=[np.nan] + list(f["cycles"].iloc[1:])),
                   "column 'cycles' row 1 holds nan"),
    "negative-cycles": (lambda f: f.assign(cycles=[-5] + list(f["cycles"].iloc[1:])),
                        "column 'cycles' row 1 holds -5"),
    "zero-cycles": (lambda f: f.assign(cycles=0), "every cycle count of trace"),
    "text-iso-cycles": (lambda f: f.assign(iso_cycles=["x"] + [1.0] * (len(f) - 1),
                                           iso_multipliers=64),
                        "column 'iso_cycles' row 1 holds 'x'"),
    "no-layer-index": (lambda f: f.drop(columns=["layer_index"]), "no 'layer_index' column"),
    "fractional-layer-index": (lambda f: f.assign(layer_index=f["layer_index"] + 0.5),
                               "'layer_index' holds a non-integer value"),
    "empty-layer": (lambda f: f.assign(layer=[np.nan] + list(f["layer"].iloc[1:])),
                    "column 'layer' row 1 is empty"),
    "inf-energy": (lambda f: f.assign(energy_mac_pj=[np.inf] + list(f["energy_mac_pj"].iloc[1:])),
                   "column 'energy_mac_pj' row 1 holds inf"),
    "text-energy": (lambda f: f.assign(energy_pe_cycle_pj="lots"),
                    "column 'energy_pe_cycle_pj' row 1 holds 'lots'"),
    "zero-energy": (lambda f: f.assign(**{c: 0.0 for c in f.columns
                                          if c.startswith("energy_") and c.endswith("_pj")}),
                    "every energy value is zero"),
    "no-energy-components": (lambda f: f.drop(columns=[c for c in f.columns if c.startswith(
        "energy_") and c.endswith("_pj") and c != "energy_pj"]), "no per-component energy"),
}
PLOT_OF = {"text-cycles": "cycles", "text-iso-cycles": "cycles", "nan-cycles": "cycles", "negative-cycles": "cycles",
           "zero-cycles": "cycles", "no-layer-index": "cycles", "fractional-layer-index": "cycles",
           "inf-energy": "energy", "text-energy": "energy", "zero-energy": "energy",
           "no-energy-components": "energy"}


def _report_cases():
    rows = []
    for name in BAD_REPORTS:
        kinds = [PLOT_OF[name]] if name in PLOT_OF else ["energy", "cycles"]
        for kind in kinds:
            rows.append(_case("report", ["plot", kind, f"{{bad_{name}}}", "-o", "{tmp}/f.png"],
                              BAD_REPORTS[name][1], "{tmp}/f.png"))
    rows.append(_case("report", ["plot", "energy", "{garbage}", "-o", "{tmp}/f.png"],
                      "garbage.csv: cannot read report", "{tmp}/f.png"))
    rows.append(_case("report", ["plot", "cycles", "{jsonlist}", "-o", "{tmp}/f.png"],
                      "list.json: not an accelsim report", "{tmp}/f.png"))
    return rows


def _text_cases():
    # names in error lines: one line, control characters visible, markup shown as typed
    return [
        _case("text", ["run", "--trace", "{trace}", "--arch", "[/evil]\nx", "--out", "{tmp}/r.csv"],
              "[/evil]\\nx", "{tmp}/r.csv"),
        _case("text", ["trace", "info", "{tmp}/[red]\x1b[2Jmissing.trace.safetensors"],
              "[red]\\x1b[2Jmissing.trace.safetensors"),
        _case("text", ["trace", "validate", "{tmp}/[/b]\r.trace.safetensors"],
              "[/b]\\r.trace.safetensors"),
        _case("text", ["plot", "cycles", "{tmp}/$\\frac{$\n.csv", "-o", "{tmp}/f.png"],
              "$\\frac{$\\n.csv", "{tmp}/f.png"),
        _case("text", ["sweep", "choose", "--sweep", "{tmp}/[/evil]\t.csv", "--budget", "1"],
              "[/evil]\\t.csv"),
    ]


CASES = _output_cases() + _option_cases() + _report_cases() + _text_cases()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Paths the cases refer to: a valid trace and report, a file, a directory, a pipe, bad
    reports."""
    from accelsim.traces.synthetic import synthetic_trace

    d = tmp_path_factory.mktemp("bad-input")
    trace = d / "mlp.trace.safetensors"
    synthetic_trace("mlp3", str(trace), weight_density=0.3, act_density=0.5, num_samples=2, seed=0)
    report = d / "report.csv"
    with pytest.raises(SystemExit) as done:
        main(["run", "--trace", str(trace), "--out", str(report), "--quiet"])
    assert done.value.code == 0
    paths = {"trace": trace, "report": report, "file": d / "afile", "dir": d / "adir.csv",
             "dirpng": d / "adir.png", "blocked": d / "blocked", "garbage": d / "garbage.csv",
             "jsonlist": d / "list.json"}
    paths["file"].write_text("not a directory\n")
    paths["dir"].mkdir()
    paths["dirpng"].mkdir()
    (paths["blocked"] / "report.csv").mkdir(parents=True)
    paths["garbage"].write_bytes(b"\x00\xff\xfe garbage \x00\n\x01,\x02\n")
    paths["jsonlist"].write_text("[1, 2, 3]")
    frame = pd.read_csv(report)
    for name, (edit, _) in BAD_REPORTS.items():
        paths[f"bad_{name}"] = d / f"bad-{name}.csv"
        edit(frame.copy()).to_csv(paths[f"bad_{name}"], index=False)
    return paths


def _no_work(monkeypatch):
    """Make every expensive entry point fail loudly: a row must be refused before them."""
    import importlib

    for target in WORK:
        module, name = target.rsplit(".", 1)

        def refuse(*a, _t=target, **k):
            raise AssertionError(f"{_t} ran before the input was refused")

        monkeypatch.setattr(importlib.import_module(module), name, refuse)


def run_cli(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def _fill(text, env, tmp):
    """Replace {name} placeholders by the paths of env (and {tmp}); other braces stay."""
    for key, value in {"tmp": tmp, **env}.items():
        text = text.replace("{" + key + "}", str(value))
    return text


def _snapshot(folder: Path) -> dict:
    """Every path under folder with its file's modification time (None for directories)."""
    return {p: p.stat().st_mtime_ns if p.is_file() else None for p in folder.rglob("*")}


@pytest.mark.parametrize("cls, argv, phrase, out", CASES)
def test_bad_input_is_one_line_exit_2_and_no_file(env, tmp_path, capsys, monkeypatch, cls, argv,
                                                  phrase, out):
    pipe = tmp_path / "pipe.csv"
    os.mkfifo(pipe)
    env = {**env, "pipe": pipe}
    if cls != "text":  # text rows include errors found by the simulation's own checks
        _no_work(monkeypatch)
    monkeypatch.chdir(tmp_path)
    before = _snapshot(Path(env["file"]).parent)
    code, _, err = run_cli(capsys, [_fill(a, env, tmp_path) for a in argv])
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert _fill(phrase, env, tmp_path) in lines[0]
    if out is not None:
        target = Path(_fill(out, env, tmp_path))
        assert not target.is_file() or target in before, target
    # nothing written beside the inputs or in the working directory, no temp files left
    assert _snapshot(Path(env["file"]).parent) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.csv"]


# ---- OS errors while writing ------------------------------------------------------------------
def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("command", ["run", "plot", "synth"])
def test_full_disk_while_writing_is_one_line_and_keeps_the_old_file(env, tmp_path, capsys,
                                                                   monkeypatch, command):
    """The disk fills after half the bytes are written: one line naming the path, exit 2, the
    previous file intact, no temp file left."""
    out = tmp_path / {"run": "r.csv", "plot": "f.png", "synth": "t.trace.safetensors"}[command]
    out.write_bytes(b"previous contents\n")
    argv = {"run": ["run", "--trace", env["trace"], "--quiet", "--out", out],
            "plot": ["plot", "energy", env["report"], "-o", out],
            "synth": ["trace", "synth", "--model", "mlp3", "--out", out]}[command]
    real_fsync = os.fsync

    def full(fd):  # the data reached the file but the disk is full when it is flushed
        os.write(fd, b"half")
        _enospc()

    monkeypatch.setattr(os, "fsync", full)
    code, _, err = run_cli(capsys, argv)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert code == 2
    assert err == f"error: {out}: cannot write (No space left on device)\n"
    assert out.read_bytes() == b"previous contents\n"
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_full_disk_in_a_sweep_csv(tmp_path, monkeypatch):
    from accelsim.analysis.sweeps import write_csv
    from accelsim.errors import AccelsimError

    monkeypatch.setattr(pd.DataFrame, "to_csv", lambda self, path, **k: (
        Path(path).write_text("a,b\n1,"), _enospc()))
    with pytest.raises(AccelsimError, match=r"s\.csv: cannot write \(No space left on device\)"):
        write_csv(pd.DataFrame({"a": [1], "b": [2]}), tmp_path / "s.csv")
    assert list(tmp_path.iterdir()) == []


def _unshare_works() -> bool:
    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.skipif(not _unshare_works(), reason="needs unshare -m (a private mount namespace)")
@pytest.mark.parametrize("mount_opts, phrase", [
    ("size=4k", "{out}: cannot write (No space left on device)"),
    ("ro", "cannot write in {d} (Read-only file system)"),
], ids=["full", "read-only"])
@pytest.mark.parametrize("command", ["run", "synth"])
def test_real_full_and_read_only_file_systems(env, tmp_path, mount_opts, phrase, command):
    """A 4 KiB tmpfs (the output does not fit) and a read-only tmpfs, mounted in a private
    mount namespace that disappears with the process. The trace writer is safetensors (Rust):
    its I/O errors arrive as text, not as OSError."""
    assert env["report"].stat().st_size > 4096  # the report cannot fit in the small one
    d = tmp_path / "mnt"
    d.mkdir()
    out = d / ("r.csv" if command == "run" else "t.trace.safetensors")
    argv = (f"run --trace {env['trace']} --quiet --out {out}" if command == "run" else
            f"trace synth --model mlp3 --out {out}")
    script = (f"mount -t tmpfs -o {mount_opts} tmpfs {d} && "
              f"{sys.executable} -m accelsim.cli {argv}; echo rc=$?; ls -A {d}")
    res = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                         timeout=120)
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert phrase.format(d=d, out=out) in lines[0]
    assert res.stdout.splitlines() == ["rc=2"]  # exit 2 and the file system left empty


class _RustIOError(Exception):
    """What safetensors raises when the disk fills: the OS error only as text."""


@pytest.mark.parametrize("error, line", [
    (_RustIOError("Error while serializing: I/O error: No space left on device (os error 28)"),
     "error: {tmp}/run: cannot write the run directory (No space left on device)"),
    (OSError(errno.EROFS, "Read-only file system", "{tmp}/run/state.pt"),
     "error: {tmp}/run: cannot write the run directory (Read-only file system)"),
    (OSError(errno.EIO, "Input/output error", "{tmp}/data/train-images"),
     "error: {tmp}/data/train-images: Input/output error"),
], ids=["safetensors-full", "read-only-state", "data-read-error"])
def test_train_write_errors_name_the_run_directory(tmp_path, capsys, monkeypatch, error, line):
    """OS errors while training: those on the run directory name it; others (reading data)
    keep their own file name. Never a traceback."""
    import accelsim.models.train as T

    if isinstance(error, OSError):
        error.filename = error.filename.replace("{tmp}", str(tmp_path))

    def failing_train(*a, **k):
        raise error

    monkeypatch.setattr(T, "train", failing_train)
    code, _, err = run_cli(capsys, ["train", "--model", "mlp3", "--out", tmp_path / "run"])
    assert code == 2 and err == line.replace("{tmp}", str(tmp_path)) + "\n"


# ---- names from files as plain text -----------------------------------------------------------
WEIRD = {"model": "[bold]m[/evil] $x", "layers": ["[/evil]", "$\\frac{$", "x\ny\x1b[2J\t"]}


@pytest.fixture(scope="module")
def weird(tmp_path_factory):
    """A trace whose model, layer and file names are markup, mathtext and control characters,
    and its report."""
    import torch
    from torch import nn

    from accelsim.traces.recorder import record_trace

    d = tmp_path_factory.mktemp("weird")
    torch.manual_seed(0)
    a, b, c = WEIRD["layers"]
    model = nn.Sequential(OrderedDict([(a, nn.Linear(16, 8)), ("r1", nn.ReLU()),
                                       (b, nn.Linear(8, 6)), ("r2", nn.ReLU()),
                                       (c, nn.Linear(6, 4))]))
    trace = d / "[b]$x$.trace.safetensors"
    record_trace(model, [torch.randn(3, 16)], str(trace),
                 {"model": WEIRD["model"], "method": "dense", "dataset": "random"})
    return trace


def test_weird_names_print_as_typed_in_run_and_trace_info(weird, tmp_path, capsys):
    code, stdout, err = run_cli(capsys, ["run", "--trace", weird, "--out", tmp_path / "r.csv"])
    assert code == 0, err
    for shown in ("[/evil]", "$\\frac{$", "x\\ny\\x1b[2J\\t", "[b]$x$.trace.safetensors"):
        assert shown in stdout
    assert "\x1b" not in stdout and "\ny\\x1b" not in stdout  # no raw escape, no broken row
    code, stdout, err = run_cli(capsys, ["trace", "info", weird])
    assert code == 0, err
    assert "[bold]m[/evil] $x" in stdout and "x\\ny\\x1b[2J\\t" in stdout
    assert "\x1b" not in stdout


@pytest.mark.parametrize("kind", ["energy", "cycles", "layers"])
def test_weird_names_plot_as_plain_text(weird, tmp_path, capsys, monkeypatch, kind):
    report = tmp_path / "r.csv"
    assert run_cli(capsys, ["run", "--trace", weird, "--out", report, "--quiet"])[0] == 0
    drawn = []
    from matplotlib.axes import Axes

    real = Axes.set_xticks
    monkeypatch.setattr(Axes, "set_xticks", lambda self, ticks, labels=None, **k: (
        drawn.extend(labels or []), real(self, ticks, labels, **k))[1])
    fig = tmp_path / f"{kind}.png"
    code, _, err = run_cli(capsys, ["plot", kind, report, "-o", fig])
    assert code == 0 and err == f"figure written to {fig}\n"
    assert fig.read_bytes()[:4] == b"\x89PNG"
    if kind == "layers":  # each layer name is drawn literally ($ escaped for mathtext)
        assert drawn == ["[/evil]", "\\$\\frac{\\$", "x\\ny\\x1b[2J\\t"]


def test_sweep_figures_and_progress_take_weird_layer_names(tmp_path, capsys):
    from accelsim.analysis.figures import plot_eps, plot_winner_rates
    from accelsim.analysis.sweeps import _progress

    names = WEIRD["layers"]
    frame = pd.DataFrame({"layer": np.repeat(names, 2), "scope": np.repeat(names, 2),
                          "rate": [0.5, 1.0] * 3, "eps": [0.1, 1.0] * 3,
                          "accuracy_drop_pp": [1.0, 0.0] * 3, "act_density": [0.2, 0.3] * 3})
    for plot in (plot_winner_rates, plot_eps):
        out = plot(frame, tmp_path / f"{plot.__name__}.png", title=names[1])
        assert out.read_bytes()[:4] == b"\x89PNG"
    context, advance = _progress(True, 2, names[0])
    with context:
        advance(f"{names[0]} rate 0.5")
        advance(f"{names[2]} rate 1")
    err = capsys.readouterr().err
    assert "x\\ny\\x1b[2J" in err and "\x1b" not in err


def test_plain_text_helpers():
    from matplotlib.mathtext import MathTextParser

    from accelsim.plaintext import mpl_text, visible

    assert visible("fc1") == "fc1" and visible("a\nb\x1b[0m\u200b") == "a\\nb\\x1b[0m\\u200b"
    assert mpl_text("$\\frac{$") == "\\$\\frac{\\$"
    with pytest.raises(ValueError):  # what mathtext would have done with the raw name
        MathTextParser("agg").parse("$\\frac{$")


# ---- messages ---------------------------------------------------------------------------------
def test_no_blank_line_before_error_after_a_progress_line(env, tmp_path, capsys, monkeypatch):
    """A run that fails after its progress line was due: stderr is the error line alone (a
    transient progress line in a log file used to end as a blank line before it)."""
    import importlib

    import accelsim.cli_sim as S
    from accelsim.errors import AccelsimError

    sim = importlib.import_module("accelsim.simulate")  # the module: accelsim.simulate is the API function

    def fail_after_progress(path, arch, energy, on_layer=None, **k):
        time.sleep(0.01)
        on_layer(str(path), "layer 1")
        raise AccelsimError(f"{path}: functional check failed")

    monkeypatch.setattr(S, "PROGRESS_DELAY_S", 0.0)
    monkeypatch.setattr(sim, "simulate_trace", fail_after_progress)
    code, _, err = run_cli(capsys, ["run", "--trace", env["trace"], "--out", tmp_path / "r.csv"])
    assert code == 2 and err == f"error: {env['trace']}: functional check failed\n"


# ---- memory bombs under an address-space limit -------------------------------------------------
MEMORY_LIMIT = 1536 * 2**20  # imports need about 1 GiB of address space; no case may need more


@pytest.mark.parametrize("argv, phrase", [
    (["sweep", "winner-rates", "--checkpoint", "c", "--out", "s.csv", "--rates", "1e-9:1:1e-9"],
     "gives 1000000000 values"),
    (["sweep", "static-vs-dynamic", "--checkpoint", "c", "--out", "s.csv",
      "--thresholds", "0:1e15:1e-3"], "values; at most 10000"),
    (["trace", "synth", "--model", "alexnet", "--samples", str(10**9), "--out", "t.safetensors"],
     "'--samples'"),
    (["sweep", "eps", "--checkpoint", "c", "--out", "s.csv", "--batch-size", str(10**9)],
     "'--batch-size'"),
    (["train", "--model", "mlp3", "--out", "run", "--threads", "100000"], "'--threads'"),
    (["trace", "synth", "--model", "alexnet", "--samples", "65536", "--out", "t.safetensors"],
     "--samples 65536: the recording would hold about 447.7 GiB"),
], ids=["rates", "thresholds", "samples", "batch-size", "threads", "alexnet-samples"])
def test_memory_bomb_options_refused_under_a_memory_limit(tmp_path, argv, phrase):
    """The alexnet case is within --samples' range: it is refused by what its activations
    would take (measured on one sample), before the 40 GB of images are made."""
    def limit():
        cap = MEMORY_LIMIT if "alexnet" not in argv else 2 * MEMORY_LIMIT  # its weights: 0.25 GB
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    res = subprocess.run([sys.executable, "-m", "accelsim.cli", *argv], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, preexec_fn=limit)
    assert res.returncode == 2, res.stderr[-2000:]
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and phrase in lines[0], res.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []


# ---- writers killed mid-write -----------------------------------------------------------------
WRITER = """
import sys
import pandas as pd
from accelsim.report import write_report
from accelsim.plots import plot_energy, plottable_report
report = pd.read_csv(sys.argv[2])
small, big = report.iloc[:2], pd.concat([report] * 200, ignore_index=True)
i = 0
while True:
    i += 1
    frame = big if i % 2 else small
    if sys.argv[1] == "report":
        write_report(frame, sys.argv[3])
    else:
        plot_energy(plottable_report(frame, sys.argv[2], "energy"), sys.argv[3])
    print(i, flush=True)
"""


@pytest.mark.parametrize("writer", ["report", "plot"])
def test_writer_killed_mid_write_leaves_old_file_or_nothing(env, tmp_path, writer):
    """SIGKILL at random moments while a writer alternately rewrites the same path: the path is
    always absent or a complete file (a whole report, a PNG that decodes); stale temp files of
    the killed writers are removed by the next writer once they are old."""
    from accelsim.atomic import STALE_AFTER_S, remove_stale_temps

    out = tmp_path / ("r.csv" if writer == "report" else "f.png")
    rng = np.random.default_rng(7)
    full_rows = {2, 200 * len(pd.read_csv(env["report"]))}
    kills = 0
    for delay in rng.uniform(0.0, 0.4, size=3):
        child = subprocess.Popen([sys.executable, "-c", WRITER, writer, str(env["report"]), str(out)],
                                 stdout=subprocess.PIPE, text=True)
        child.stdout.readline()  # one complete write happened
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        kills += 1
        if writer == "report":
            assert len(pd.read_csv(out)) in full_rows
        else:
            import matplotlib.image

            data = out.read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[-8:-4] == b"IEND"
            assert matplotlib.image.imread(out).ndim == 3
    assert kills == 3
    temps = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    past = time.time() - 2 * STALE_AFTER_S
    for p in temps:
        os.utime(p, (past, past))
    assert sorted(remove_stale_temps(out)) == sorted(temps)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]
