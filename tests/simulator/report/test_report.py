"""The report directory: files, data beside every figure, provenance, overwrite protection."""

from __future__ import annotations

import csv
import json

from click.testing import CliRunner

from simulator.cli import main


def test_report_writes_everything_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "rep"
    res = CliRunner().invoke(main, ["report", "--trace", "vgg7-tiny", "-o", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "report.md" in res.output
    for name in (
        "report.md", "report.html", "summary.json", "headline.csv", "per_layer.csv",
        "per_phase.csv", "units.csv", "operating_points.csv", "energy_by_component.png",
        "energy_by_component_pj.json", "energy_by_phase.png", "energy_by_phase_pj.json",
        "roofline.png", "timeline.png", "timeline.json", "efficiency.png", "instructions.csv",
        "calibration_gap.csv", "config.csv",
    ):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    # every chip parameter with its provenance, e.g. this session's assumed CGU streaming
    par = {r["parameter"]: r for r in csv.DictReader((out / "config.csv").open())}
    assert par["cgu.streams_base_sums"]["provenance"] == "assumed"
    assert par["cgu.streams_base_sums"]["source"]
    kinds = {r["provenance"] for r in par.values()}
    assert kinds <= {"published", "hinted", "assumed"} and {"hinted", "assumed"} <= kinds
    assert f"Chip parameters: {len(par)}, of which" in (out / "report.md").read_text()
    rows = list(csv.DictReader((out / "headline.csv").open()))
    assert [r["mode"] for r in rows] == ["dense", "gating", "weight_sparsity", "grad_skip", "all"]
    ins = list(csv.DictReader((out / "instructions.csv").open()))
    sparse = [r for r in ins if r["program"] == "sparse"]
    dense = [r for r in ins if r["program"] == "dense"]  # the dense baseline's own program
    assert sum(int(r["cycles_all"]) for r in sparse if r["op"].startswith("tc.")) > 0
    assert sum(int(r["cycles_dense"]) for r in dense if r["op"].startswith("tc.")) > 0
    assert not any(r["op"] == "cg.gate" for r in dense)
    md = (out / "report.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["manifest"]["config_hash"][:16] in md
    assert "TFLOPS/W dense-equivalent" in md and "actual work" in md
    # A second run into the same directory fails without --force and leaves it intact.
    before = (out / "report.md").read_text()
    res = CliRunner().invoke(main, ["report", "--trace", "vgg7-tiny", "-o", str(out), "--quiet"])
    assert res.exit_code != 0 and "--force" in res.output
    assert (out / "report.md").read_text() == before


def test_gap_analysis_is_the_runs_own_numbers():
    from simulator.config import load_config
    from simulator.report.tables import gap_analysis
    from simulator.run import load_workload, run_workload

    s = run_workload(load_workload("vgg7-tiny"), load_config("ref28")).summary
    rows = {r["quantity"]: r["value"] for r in gap_analysis(s)}
    here = "simulated speedup, all over dense, at v0.9_f400"
    assert rows[here] == s["speedup"]["all"]
    assert rows["MAC reduction the program executes (mode all)"] > rows[here]
    best = s["tflops_per_w"]["operating_point"]
    pts = {p["name"]: p for p in s["operating_points"]}
    there = rows[f"simulated speedup, all over dense, at {best} (its own DRAM cycles)"]
    assert there == pts[best]["speedup"]
    busy = s["units_report"]["all"]["busy"]
    bound = s["cycles"]["dense"] / (busy["ld"] + busy["st"])
    assert rows["bound from DMA alone: cycles dense / DMA busy cycles in mode all"] == bound
    mb = {m: sum(r["dram_bytes"][m] for r in s["layers"]) / 1e6 for m in ("dense", "all")}
    assert rows["DRAM MB per step, dense"] == mb["dense"]
    # skipped images move no BP/WU data: mode all moves less than dense
    assert rows["DRAM MB per step, all (skipped images move no BP/WU data)"] < mb["dense"]
    assert 0 < rows["leakage share of on-chip energy at that point"] < 1
