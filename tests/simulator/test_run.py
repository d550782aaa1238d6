"""`simulator.run` and the `fp8sim run` / `fp8sim report` commands on the smallest workload."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from simulator.cli import main
from simulator.run import NAMED_TRACES, load_workload, synthesize_named
from simulator.timing import MODES

TINY = "vgg7-tiny"


@pytest.fixture(scope="module")
def run_json():
    res = CliRunner().invoke(main, ["run", "--trace", TINY, "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def test_run_json_has_the_promised_keys(run_json):
    s = run_json
    for key in ("cycles", "speedup", "energy_pj"):
        assert set(s[key]) == set(MODES)
    assert s["speedup"]["dense"] == 1.0
    assert s["speedup"]["all"] > 1.0
    assert set(s["tflops_per_w"]) >= {"dense_equivalent", "actual"}
    assert s["tflops_per_w"]["dense_equivalent"] > s["tflops_per_w"]["actual"] > 0
    assert s["flops_reduction"] > 1
    man = s["manifest"]
    assert {"version", "config_hash", "trace_hash", "seeds"} <= set(man)
    row = s["layers"][0]
    assert {"layer", "phase", "cycles", "utilization", "gate_density"} <= set(row)
    assert set(row["cycles"]) == set(MODES)


def test_named_trace_hits_its_reduction_and_is_deterministic():
    r = NAMED_TRACES[TINY]
    a, b = load_workload(TINY), load_workload(TINY)
    assert a.masks.digest() == b.masks.digest()
    from simulator.run import _reduction

    assert _reduction(synthesize_named(TINY)) == pytest.approx(r.target_reduction, rel=0.05)


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--trace", "nosuch"], "neither a file nor a named trace"),
        (["run", "--trace", TINY, "--config", "nosuch.yaml"], "nosuch"),
        (["run", "--trace", TINY, "--iteration", "99"], "iteration 99 out of range"),
    ],
)
def test_bad_input_is_one_clear_line(args, message):
    res = CliRunner().invoke(main, args)
    assert res.exit_code != 0
    assert message in res.output
    assert "Traceback" not in res.output


def test_run_writes_summary_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "out"
    args = ["run", "--trace", TINY, "-o", str(out), "--quiet"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    first = json.loads((out / "summary.json").read_text())
    assert first["cycles"]["all"] < first["cycles"]["dense"]
    (out / "summary.json").write_text("{}")
    res = CliRunner().invoke(main, args)
    assert res.exit_code != 0 and "--force" in res.output
    assert (out / "summary.json").read_text() == "{}"
    assert CliRunner().invoke(main, [*args, "--force"]).exit_code == 0
    assert json.loads((out / "summary.json").read_text())["cycles"] == first["cycles"]


def test_shipped_trace_by_name():
    from simulator.run import shipped_traces

    names = shipped_traces()
    if not names:
        pytest.skip("no shipped traces in workloads/traces")
    name = min(names, key=lambda n: names[n].stat().st_size)
    w = load_workload(name)
    assert w.source["kind"] == "file" and w.trace.batch == w.masks.batch


def test_run_checks_hazards_on_request():
    res = CliRunner().invoke(main, ["run", "--trace", TINY, "--json", "--quiet", "--check-hazards"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["hazards"] == {m: [] for m in MODES}


def test_efficiency_sweep_simulates_each_operating_point(run_json):
    """With the DRAM on its own clock (ref28), each operating point is simulated with its own
    channel cycles: slower clocks see more bytes per cycle, so no fewer cycles are saved."""
    pts = {p["name"]: p for p in run_json["operating_points"]}
    assert pts["v0.9_f400"]["cycles"] == run_json["cycles"]["all"]
    assert pts["v0.9_f400"]["cycles_dense"] == run_json["cycles"]["dense"]
    assert pts["v0.6_f100"]["dram_bytes_per_cycle"] == 64
    assert pts["v0.6_f100"]["cycles"] <= pts["v0.9_f400"]["cycles"] <= pts["v1.0_f500"]["cycles"]
    for p in pts.values():
        assert p["speedup"] == pytest.approx(p["cycles_dense"] / p["cycles"])
    best = run_json["tflops_per_w"]
    assert best["speedup"] == pts[best["operating_point"]]["speedup"]
    assert run_json["dram"]["gb_per_s"] == pytest.approx(6.4)


def test_run_at_another_operating_point():
    res = CliRunner().invoke(
        main, ["run", "--trace", TINY, "--json", "--quiet", "--operating-point", "v0.6_f100"]
    )
    assert res.exit_code == 0, res.output
    s = json.loads(res.output)
    assert s["operating_point"] == "v0.6_f100" and s["dram"]["bytes_per_cycle"] == 64
    pts = {p["name"]: p for p in s["operating_points"]}
    assert pts["v0.6_f100"]["cycles"] == s["cycles"]["all"]
    bad = CliRunner().invoke(main, ["run", "--trace", TINY, "--operating-point", "turbo"])
    assert bad.exit_code != 0 and "'turbo' is not one of v0.6_f100" in bad.output
    assert "Traceback" not in bad.output


def test_run_picks_a_captured_iteration():
    """resnet20_digits holds two captured iterations: their masks differ, so do the cycles."""
    runs = {}
    for it in (0, 1):
        res = CliRunner().invoke(
            main, ["run", "--trace", "resnet20_digits", "--json", "--quiet", "--iteration", str(it)]
        )
        assert res.exit_code == 0, res.output
        runs[it] = json.loads(res.output)
        assert runs[it]["manifest"]["trace_iteration"] == it
    assert runs[0]["cycles"]["dense"] == runs[1]["cycles"]["dense"]  # no masks in dense
    assert runs[0]["cycles"]["all"] != runs[1]["cycles"]["all"]
    bad = CliRunner().invoke(main, ["run", "--trace", "resnet20_digits", "--iteration", "2"])
    assert bad.exit_code != 0 and "iteration 2 out of range; it holds 2" in bad.output
    assert "Traceback" not in bad.output
