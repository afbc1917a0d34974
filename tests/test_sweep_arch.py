"""`accelsim sweep arch` and accelsim.sweep: the product of the grids x traces in one tidy table
that agrees with `accelsim run` point by point, a Pareto plot, per-point parts that make a
killed sweep resume without losing or recomputing a point, error rows, and the same table on a
LocalCluster of two worker processes and on a separate `dask scheduler` + `dask worker` (one of
whose workers is killed mid-sweep). Bad input: one line, exit 2."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import accelsim
from accelsim.cli import main
from accelsim.sweep_arch import run_sweep

ROOT = Path(__file__).resolve().parents[1]
MLP_JP = str(ROOT / "traces/reference/mlp3-jp.trace.safetensors")
MLP_WP = str(ROOT / "traces/reference/mlp3-wp.trace.safetensors")
LENET = str(ROOT / "traces/reference/lenet4-jp.trace.safetensors")
GRID = {"eie.num_pes": [16, 64], "eie.fifo_depth": [1, 8]}
FIGURES = ["cycles", "energy_uj", "speedup_vs_baseline", "energy_ratio_vs_baseline", "load_balance"]


def cli(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def accelsim_cmd(*args, **kw):
    return subprocess.run([sys.executable, "-m", "accelsim.cli", *args], capture_output=True,
                          text=True, cwd=kw.pop("cwd", None), timeout=kw.pop("timeout", 120), **kw)


def same_table(a: pd.DataFrame, b: pd.DataFrame) -> None:
    keys = ["trace", *GRID]
    a, b = a.sort_values(keys).reset_index(drop=True), b.sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[keys + FIGURES + ["point", "arch_hash"]],
                                  b[keys + FIGURES + ["point", "arch_hash"]])


@pytest.fixture(scope="module")
def local_table(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "s.parquet"
    return run_sweep([MLP_JP, MLP_WP], GRID, out=out, scheduler="in-process")


def test_cli_table_plot_and_front(capsys, tmp_path):
    out, fig = tmp_path / "s.csv", tmp_path / "p.png"
    code, stdout, err = cli(capsys, "sweep", "arch", "--trace", MLP_JP, "--trace", MLP_WP,
                            "--grid", "eie.num_pes=16,64", "--grid", "eie.fifo_depth=1,8",
                            "--grid", "topk.scheme=bitonic,threshold", "--out", str(out),
                            "--plot", str(fig), "--scheduler", "in-process")
    assert code == 0, err
    table = pd.read_csv(out)
    assert len(table) == 2 * 2 * 2 * 2
    assert {"eie.num_pes", "eie.fifo_depth", "topk.scheme"} <= set(table.columns)
    assert table.groupby(["trace", "eie.num_pes", "eie.fifo_depth", "topk.scheme"]).ngroups == 16
    assert "16 points: 16 computed, 0 reused, 0 errors" in err
    assert f"Pareto front of {Path(MLP_JP).name}" in stdout
    assert fig.stat().st_size > 10_000
    # every point is what `accelsim run` gives for that configuration
    row = table[(table["trace"] == Path(MLP_WP).name) & (table["eie.num_pes"] == 16)
                & (table["eie.fifo_depth"] == 1) & (table["topk.scheme"] == "threshold")].iloc[0]
    run = accelsim.summary(accelsim.simulate(MLP_WP, set=["eie.num_pes=16", "eie.fifo_depth=1",
                                                          "topk.scheme=threshold"])).iloc[0]
    assert row["cycles"] == pytest.approx(run["cycles"], rel=1e-9)  # CSV: 10 digits
    assert row["energy_uj"] == pytest.approx(run["energy_uj"], rel=1e-9)
    assert row["arch"] == run["arch"] and row["arch_hash"] == run["arch_hash"]


def test_front_is_the_non_dominated_points(local_table):
    from accelsim.pareto import pareto_mask

    for _, g in local_table.groupby("trace"):
        c, e = g["cycles"].to_numpy(), g["energy_uj"].to_numpy()
        mask = pareto_mask(c, e)
        for i in range(len(g)):
            beaten = any(c[j] <= c[i] and e[j] <= e[i] and (c[j] < c[i] or e[j] < e[i])
                         for j in range(len(g)))
            assert mask[i] == (not beaten)


@pytest.mark.parametrize("grid, message", [
    ("eie.num_pe=16", "unknown key 'eie.num_pe' (did you mean 'eie.num_pes'?)"),
    ("eie.num_pes=", "empty value"),
    ("eie.num_pes=16,,32", "empty value"),
    ("eie.num_pes=a", "--grid eie.num_pes=a: eie.num_pes must be an integer, got 'a'"),
    ("eie.num_pes=0", "--grid eie.num_pes=0: eie.num_pes must be >= 1"),
    ("eie.num_pes", "expected section.key=v1,v2"),
])
def test_bad_grid_is_one_line(capsys, tmp_path, grid, message):
    code, _, err = cli(capsys, "sweep", "arch", "--trace", MLP_JP, "--grid", grid,
                       "--out", str(tmp_path / "s.csv"))
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scheduler_error(address: str, tmp_path) -> list[str]:
    """The stderr lines of a sweep sent to `address`, which must fail within 10 s, exit 2,
    before writing anything."""
    start = time.monotonic()
    proc = accelsim_cmd("sweep", "arch", "--trace", MLP_JP, "--grid", "eie.num_pes=16,32",
                        "--out", str(tmp_path / "s.csv"), "--scheduler", address)
    assert time.monotonic() - start < 10
    assert proc.returncode == 2
    assert not (tmp_path / "s.parts").exists()
    return proc.stderr.strip().splitlines()


def test_unreachable_scheduler_fails_fast(tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    assert scheduler_error(address, tmp_path) == [
        f"error: --scheduler {address}: cannot reach the Dask scheduler (Connection refused)"]


@pytest.fixture(params=["silent", "http"])
def not_dask(request):
    """A plain TCP server on 127.0.0.1 that is not a Dask scheduler: silent, or answering
    every connection with an HTTP error."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            if request.param == "http":
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for conn in held:
        conn.close()


def test_a_server_that_is_not_dask_is_one_line(not_dask, tmp_path):
    assert scheduler_error(not_dask, tmp_path) == [
        f"error: --scheduler {not_dask}: no Dask scheduler answers there (something listens, "
        "but it did not answer Dask's handshake within 3 s)"]


def test_other_sweeps_parts_refused_same_definition_resumes(tmp_path, capsys):
    out = tmp_path / "s.parquet"
    args = ["sweep", "arch", "--trace", MLP_JP, "--out", str(out), "--scheduler", "in-process"]
    assert cli(capsys, *args, "--grid", "eie.num_pes=16,32")[0] == 0
    code, _, err = cli(capsys, *args, "--grid", "eie.num_pes=16,64")
    assert code == 2 and "holds the parts of another sweep (grid differ)" in err
    code, _, err = cli(capsys, *args, "--grid", "eie.num_pes=16,32")
    assert code == 0 and "resuming: 2 of 2 points done (same sweep definition" in err
    assert "2 points: 0 computed, 2 reused" in err


def test_a_failing_point_is_an_error_row(monkeypatch, tmp_path):
    import accelsim.api

    real = accelsim.api.simulate_rows

    def flaky(traces, arch, overrides, energy, **kw):
        if "eie.num_pes=32" in overrides:
            raise RuntimeError("disk on fire")
        return real(traces, arch, overrides, energy, **kw)

    monkeypatch.setattr(accelsim.api, "simulate_rows", flaky)
    table = run_sweep(MLP_JP, {"eie.num_pes": [16, 32, 64]}, out=tmp_path / "s.csv",
                      scheduler="in-process")
    assert list(table["eie.num_pes"]) == [16, 32, 64]
    bad = table[table["eie.num_pes"] == 32].iloc[0]
    assert bad["error"] == "RuntimeError: disk on fire" and np.isnan(bad["cycles"])
    assert (table[table["eie.num_pes"] != 32]["cycles"] > 0).all()


def test_killed_sweep_resumes_without_losing_or_redoing_points(tmp_path):
    out = tmp_path / "s.parquet"
    parts = tmp_path / "s.parts"
    args = ["sweep", "arch", "--trace", LENET, "--grid", "eie.num_pes=8,16,32,64",
            "--grid", "eie.fifo_depth=1,2,4,8", "--out", str(out), "--scheduler", "in-process"]
    proc = subprocess.Popen([sys.executable, "-m", "accelsim.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(list(parts.glob("*.parquet"))) < 3 and time.monotonic() < deadline \
            and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    done = {p.name: p.stat().st_mtime_ns for p in parts.glob("*.parquet")}
    assert 3 <= len(done) < 16, "kill the sweep part way"
    # No half-written file at a documented path: the table is absent and every part stored is
    # whole (a part killed mid-write can only leave its hidden temp file, which is not a part).
    assert not out.exists()
    assert all(len(pd.read_parquet(p)) > 0 for p in parts.glob("*.parquet"))
    resumed = accelsim_cmd(*args, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    k = len(done)
    assert f"resuming: {k} of 16 points done" in resumed.stderr
    assert f"16 points: {16 - k} computed, {k} reused, 0 errors" in resumed.stderr
    after = {p.name: p.stat().st_mtime_ns for p in parts.glob("*.parquet")}
    assert len(after) == 16 and all(after[n] == t for n, t in done.items())  # none redone
    table = pd.read_parquet(out)
    assert len(table) == 16 and table["point"].is_unique and (table["error"] == "").all()


def test_local_cluster_of_two_worker_processes(local_table, tmp_path):
    table = run_sweep([MLP_JP, MLP_WP], GRID, out=tmp_path / "s.parquet", workers=2)
    same_table(table, local_table)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """`dask scheduler` and `dask worker --nworkers 2` as subprocesses on 127.0.0.1."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path_factory.mktemp("dask")
    bin_dir = Path(sys.executable).parent
    sched = subprocess.Popen([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1",
                              "--port", str(port), "--no-dashboard"],
                             stdout=open(logs / "s.log", "w"), stderr=subprocess.STDOUT)
    worker = subprocess.Popen([str(bin_dir / "dask"), "worker", address, "--nworkers", "2",
                               "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"],
                              stdout=open(logs / "w.log", "w"), stderr=subprocess.STDOUT)
    from distributed import Client

    try:
        client = Client(address, timeout="60s", set_as_default=False)
        client.wait_for_workers(2, timeout=90)
        yield address, client
        client.close()
    finally:
        for p in (worker, sched):
            p.terminate()
        for p in (worker, sched):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def test_external_scheduler_gives_the_local_table(dask_cluster, local_table, tmp_path):
    address, _ = dask_cluster
    proc = accelsim_cmd("sweep", "arch", "--trace", MLP_JP, "--trace", MLP_WP,
                        "--grid", "eie.num_pes=16,64", "--grid", "eie.fifo_depth=1,8",
                        "--out", str(tmp_path / "s.parquet"), "--scheduler", address,
                        timeout=300)
    assert proc.returncode == 0, proc.stderr
    same_table(pd.read_parquet(tmp_path / "s.parquet"), local_table)


def test_worker_killed_mid_sweep_the_sweep_completes(dask_cluster, tmp_path):
    address, client = dask_cluster
    grid = {"eie.num_pes": [8, 16, 32, 64], "eie.fifo_depth": [1, 2, 3, 4]}
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(
        table=run_sweep(LENET, grid, out=tmp_path / "s.parquet", scheduler=address)))
    thread.start()
    parts = tmp_path / "s.parts"
    deadline = time.monotonic() + 120
    while len(list(parts.glob("*.parquet"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    pids = client.run(os.getpid)
    victim = sorted(pids.values())[0]
    os.kill(victim, signal.SIGKILL)
    thread.join(timeout=300)
    assert not thread.is_alive()
    table = result["table"]
    assert len(table) == 16 and (table["error"] == "").all() and table["point"].is_unique
    assert len(list(parts.glob("*.parquet"))) == 16
    assert victim not in client.run(os.getpid).values()  # the nanny started a new one
