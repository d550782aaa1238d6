"""`fp8sim rtl ...` through click's CliRunner: arguments, errors, output shapes."""

from __future__ import annotations

import json

from click.testing import CliRunner

from simulator.cli import main
from tests.rtl.conftest import require


def test_verilog_writes_a_module(tmp_path) -> None:
    out = tmp_path / "sru.v"
    res = CliRunner().invoke(
        main,
        ["rtl", "verilog", "sru", "--param", "r=5", "--param", "rounding=sr_half", "-o", str(out)],
    )
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert "module sru(" in text and "input [4:0] rbits;" in text


def test_verilog_bad_block_and_params_are_clear_errors(tmp_path) -> None:
    out = str(tmp_path / "x.v")
    for args, msg in (
        (["rtl", "verilog", "nope", "-o", out], "unknown block 'nope'"),
        (["rtl", "verilog", "sru", "--param", "q=1", "-o", out], "has no parameter 'q'"),
        (["rtl", "verilog", "sru", "--param", "r=99", "-o", out], "r=99 must be in 1..32"),
        (["rtl", "verilog", "lfsr", "--param", "width=x", "-o", out], "needs an integer"),
        (["rtl", "verilog", "sru", "--param", "r", "-o", out], "name=value"),
    ):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 2, res.output
        assert msg in res.output
        assert "Traceback" not in res.output


def test_check_rejects_unknown_bench_and_simulator() -> None:
    res = CliRunner().invoke(main, ["rtl", "check", "--sim", "icarus", "--bench", "nope"])
    assert res.exit_code == 2 and "unknown bench 'nope'" in res.output
    res = CliRunner().invoke(main, ["rtl", "check", "--sim", "modelsim"])
    assert res.exit_code == 2 and "Invalid value for '--sim'" in res.output
    res = CliRunner().invoke(main, ["rtl", "check", "--sim", "icarus", "--vectors", "0"])
    assert res.exit_code == 2


def test_check_json_under_icarus(tmp_path) -> None:
    require("icarus")
    res = CliRunner().invoke(
        main,
        [
            "rtl",
            "check",
            "--sim",
            "icarus",
            "--bench",
            "fp8_mul",
            "--vectors",
            "2000",
            "--build-dir",
            str(tmp_path),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["params"]["fmt"] for r in rows] == ["e5m2", "e4m3", "e5m2_chip"]
    for r in rows:
        assert set(r) == {"block", "params", "vectors", "mismatches", "seconds"}
        assert r["block"] == "fp8_mul" and r["mismatches"] == 0
        assert r["vectors"] == 65536 + 2000  # every operand pair, then the random ones
