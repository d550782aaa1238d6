"""Sweeps on the local pool and on a Dask LocalCluster, including a worker killed mid-sweep."""

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from simulator.cli import main
from simulator.dse.config import SweepConfig
from simulator.dse.runner import run_sweep

SMALL = {
    "name": "t",
    "numeric_samples": 4000,
    "nist_bits": 10_000,
    "training": {"enabled": False},
    "hardware": False,
    "grid": [
        {
            "rounding": ["sr"],
            "r": [2, 5],
            "source": [{"kind": "lfsr", "width": 6}, {"kind": "uniform"}],
        },
        {"rounding": ["rne"]},
    ],
}


def _lines_per_key(out: Path) -> collections.Counter:
    rows = [json.loads(x) for x in (out / "points.jsonl").read_text().splitlines() if x.strip()]
    return collections.Counter(r["key"] for r in rows)


def test_cli_sweep_writes_results_and_resume_reuses_them(tmp_path):
    cfg_path = tmp_path / "s.yaml"
    cfg_path.write_text(json.dumps(SMALL))  # JSON is YAML
    out = tmp_path / "out"
    runner = CliRunner()
    res = runner.invoke(
        main, ["sweep", "sru", str(cfg_path), "-o", str(out), "--workers", "2", "--no-progress"]
    )
    assert res.exit_code == 0, res.output
    assert "5 point(s) computed" in res.output
    for name in ("points.jsonl", "results.csv", "results.json", "summary.md", "bias_vs_r.png"):
        assert (out / name).stat().st_size > 0
    summary = (out / "summary.md").read_text()
    assert "5 point(s) checked, 0 outside 5 standard errors" in summary
    # a second run without --resume refuses and changes nothing
    before = (out / "points.jsonl").read_text()
    res = runner.invoke(main, ["sweep", "sru", str(cfg_path), "-o", str(out)])
    assert res.exit_code == 1 and "pass --resume" in res.output
    assert (out / "points.jsonl").read_text() == before
    res = runner.invoke(
        main, ["sweep", "sru", str(cfg_path), "-o", str(out), "--resume", "--no-progress"]
    )
    assert res.exit_code == 0 and "0 point(s) computed, 5 reused" in res.output


def test_bad_config_is_a_clear_cli_error(tmp_path):
    cfg_path = tmp_path / "s.yaml"
    cfg_path.write_text("name: t\ngrid: [{r: [99]}]\n")
    res = CliRunner().invoke(main, ["sweep", "sru", str(cfg_path), "-o", str(tmp_path / "o")])
    assert res.exit_code == 1 and "grid.0.r: r=99 must be in 1..32" in res.output
    assert "Traceback" not in res.output


def _wait_for_results(out: Path, n: int, proc: subprocess.Popen | None, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        path = out / "points.jsonl"
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"sweep ended early: {proc.stdout.read() if proc.stdout else ''}")
        time.sleep(0.2)
    pytest.fail(f"no {n} result(s) within {limit} s")


def test_killing_a_local_worker_loses_nothing_and_resume_finishes(tmp_path):
    cfg = dict(
        SMALL,
        grid=[
            {
                "rounding": ["sr", "sr_half"],
                "r": [2, 3, 4, 5],
                "source": [{"kind": "lfsr", "width": 7}],
            }
        ],
        numeric_samples=20_000,
        nist_bits=20_000,
    )
    cfg_path = tmp_path / "s.yaml"
    cfg_path.write_text(json.dumps(cfg))
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "simulator.cli",
        "sweep",
        "sru",
        str(cfg_path),
        "-o",
        str(out),
        "--workers",
        "2",
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for_results(out, 1, proc, limit=240)
        workers = [
            c
            for c in psutil.Process(proc.pid).children(recursive=True)
            if "spawn_main" in " ".join(c.cmdline())
        ]
        assert workers, "no pool worker found"
        os.kill(workers[0].pid, signal.SIGKILL)
        output, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, output
    assert "a worker process died" in output and "--resume" in output
    first = (out / "points.jsonl").read_text()
    done_before = len(first.splitlines())
    assert 1 <= done_before < 8

    res = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{8 - done_before} point(s) computed, {done_before} reused" in res.stdout
    assert (out / "points.jsonl").read_text().startswith(first)  # nothing rewritten
    counts = _lines_per_key(out)
    assert len(counts) == 8 and set(counts.values()) == {1}  # nothing computed twice


def test_dask_local_cluster_survives_a_killed_worker(tmp_path):
    from distributed import LocalCluster

    cfg = SweepConfig.model_validate(
        dict(
            SMALL,
            grid=[
                {
                    "rounding": ["sr"],
                    "r": [1, 2, 3, 4, 5, 6],
                    "source": [{"kind": "lfsr", "width": 9}],
                }
            ],
            numeric_samples=20_000,
            nist_bits=20_000,
        )
    )
    out = tmp_path / "out"
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        result = {}
        thread = threading.Thread(
            target=lambda: result.setdefault(
                "outcome", run_sweep(cfg, out, scheduler=cluster.scheduler_address, progress=False)
            )
        )
        thread.start()
        _wait_for_results(out, 1, None, limit=240)
        worker_pids = [
            p.pid
            for p in psutil.Process().children(recursive=True)
            if "distributed" in " ".join(p.cmdline()) or "spawn_main" in " ".join(p.cmdline())
        ]
        assert worker_pids
        os.kill(worker_pids[-1], signal.SIGKILL)
        thread.join(timeout=400)
    outcome = result["outcome"]
    assert outcome.failed == [] and len(outcome.results) == 6
    counts = _lines_per_key(out)
    assert len(counts) == 6 and set(counts.values()) == {1}
