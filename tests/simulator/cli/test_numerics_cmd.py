import json

import numpy as np
from click.testing import CliRunner

from simulator import __version__
from simulator.cli import main


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_version_and_help():
    res = invoke("--version")
    assert res.exit_code == 0 and __version__ in res.output
    for args in (
        ["--help"],
        ["numerics", "--help"],
        ["numerics", "stats", "--help"],
        ["numerics", "formats", "--help"],
    ):
        assert invoke(*args).exit_code == 0


def test_formats_json_lists_every_preset():
    rows = json.loads(invoke("numerics", "formats", "--json").output)
    assert {r["name"] for r in rows} >= {"e5m2", "e4m3", "e5m2_chip", "fp16_chip", "e6m9"}
    assert next(r for r in rows if r["name"] == "e4m3")["max"] == 448.0


def test_stats_json_for_an_lfsr():
    res = invoke(
        "numerics",
        "stats",
        "--source",
        "lfsr",
        "--width",
        "6",
        "-r",
        "6",
        "-n",
        "4000",
        "--no-nist",
        "--json",
    )
    data = json.loads(res.output)
    assert data["source"].startswith("lfsr6") and data["samples"] == 4000
    assert data["expected_bias_ulp"] > 0  # the missing zero state pushes sr up
    assert len(data["autocorrelation"]) == 8


def test_stats_table_and_tensor_source(tmp_path):
    stream = tmp_path / "acts.npy"
    np.save(stream, np.random.default_rng(0).standard_normal(3000).astype(np.float32))
    res = invoke(
        "numerics",
        "stats",
        "--source",
        "tensor",
        "--stream",
        str(stream),
        "-r",
        "4",
        "-n",
        "3000",
        "--no-nist",
    )
    assert res.exit_code == 0 and "bias (measured)" in res.output and "ULP" in res.output


def test_bad_options_are_clear_errors(tmp_path):
    res = CliRunner().invoke(
        main, ["numerics", "stats", "--source", "lfsr", "--width", "4", "--seed", "0"]
    )
    assert res.exit_code == 2 and "seed must be a nonzero 4-bit LFSR state" in res.output
    res = CliRunner().invoke(main, ["numerics", "stats", "--source", "tensor"])
    assert res.exit_code == 2 and "needs `stream`" in res.output
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not numpy")
    res = CliRunner().invoke(
        main, ["numerics", "stats", "--source", "tensor", "--stream", str(bad)]
    )
    assert res.exit_code == 2 and "cannot read tensor stream" in res.output
    res = CliRunner().invoke(
        main,
        [
            "numerics",
            "stats",
            "--rounding",
            "sr",
            "-n",
            "10",
            "--source",
            "tensor",
            "--stream",
            str(tmp_path / "no.npy"),
        ],
    )
    assert res.exit_code == 2 and "Traceback" not in res.output
