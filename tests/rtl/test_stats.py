"""Yosys cell counts: the gate-equivalent rule and one real synthesis through the CLI."""

from __future__ import annotations

import json

from click.testing import CliRunner

from rtl.stats import design_points, gate_equivalents
from simulator.cli import main


def _cell(kind: str, **widths: int) -> dict[str, object]:
    return {"type": kind, "parameters": {k: format(v, "032b") for k, v in widths.items()}}


def test_gate_equivalent_rules() -> None:
    assert gate_equivalents(_cell("$_AND_")) == 1
    assert gate_equivalents(_cell("$add", A_WIDTH=8, B_WIDTH=8, Y_WIDTH=9)) == 45
    assert gate_equivalents(_cell("$shr", A_WIDTH=16, B_WIDTH=4, Y_WIDTH=16)) == 64
    assert gate_equivalents(_cell("$mul", A_WIDTH=3, B_WIDTH=3, Y_WIDTH=6)) == 9 + 30
    assert gate_equivalents(_cell("$scopeinfo")) == 0


def test_design_points_cover_the_sru_sweep() -> None:
    pts = design_points()
    pairs = {p["r"] for b, p in pts if b == "sru_lfsr"}
    widths = {p["width"] for b, p in pts if b == "lfsr"}
    assert set(range(1, 25)) <= pairs
    assert widths == set(range(3, 25))


def test_stats_cli_synthesises_and_caches(tmp_path) -> None:
    cache = tmp_path / "cache.json"
    args = ["rtl", "stats", "--block", "channel_gate", "--cache", str(cache), "--json"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.stdout)
    assert row["block"] == "channel_gate"
    assert row["total"] == sum(row["cells"].values()) > 16  # at least one compare per channel
    assert row["gate_equivalents"] >= row["total"]
    assert cache.exists()
    again = CliRunner().invoke(main, args)
    assert json.loads(again.stdout) == [row]
    bad = CliRunner().invoke(main, ["rtl", "stats", "--block", "nope"])
    assert bad.exit_code == 2 and "unknown block 'nope'" in bad.output
