"""A tiny training run end to end (capture, codes, reproducibility) and the `fp8sim trace` CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from simulator.cli import main
from simulator.numerics import decode, quantize
from workloads.recipe.config import load_config
from workloads.recipe.train import train
from workloads.trace import load_trace, measured, save_trace
from workloads.trace.record import trace_from_training

TINY = {
    "steps": 3,
    "epochs": 1,
    "batch_size": 8,
    "capture": {"iterations": 2},
    "gating": {"target_density": 0.0, "reg_weight": 1.0},
}


@pytest.fixture(scope="module")
def tiny_run():
    cfg = load_config(TINY, seed=4)
    return train("vgg7", "digits", cfg, limit=40, progress=False, log=lambda s: None)


def test_tiny_training_captures(tiny_run):
    r = tiny_run
    assert r.steps == 3 and len(r.history) == 1 and len(r.captured) == 2
    it = r.captured[-1]
    assert set(it.gates) == {
        "features.conv2",
        "features.conv3",
        "features.conv4",
        "features.conv5",
    }  # conv1 reads 1 channel: not gated
    assert it.gates["features.conv3"].shape == (8, 8, 8, 8)
    assert it.wgroups["features.conv1"].shape == (32, 1)
    assert it.wgroups["features.conv5"].shape == (256, 16)
    assert it.skip.shape == (8,)
    assert 0.0 <= r.history[0].gate_density <= 1.0


def test_codes_are_fp8_and_replayable(tiny_run):
    t = trace_from_training(tiny_run, "test")
    c = t.codes
    assert c is not None and c.formats["weight"] == "e5m2_chip"
    assert c.inputs.dtype == np.uint8 and c.inputs.shape == (8, 1, 32, 32)
    x = decode(c.inputs, "e5m2_chip")
    assert np.array_equal(quantize(x, "e5m2_chip"), x)
    assert set(c.weights) == set(c.errors) == {n.name for n in t.graph.mac_layers}
    err = decode(c.errors["fc"], "e5m2_chip")
    skip = t.iterations[-1].skip
    assert not err[skip].any()  # skipped images have no error
    assert err[~skip].any()


def test_training_is_reproducible(tiny_run):
    cfg = load_config(TINY, seed=4)
    again = train("vgg7", "digits", cfg, limit=40, progress=False, log=lambda s: None)
    a, b = tiny_run.captured[-1], again.captured[-1]
    for n in a.gates:
        assert np.array_equal(a.gates[n], b.gates[n])
    assert np.array_equal(tiny_run.tensors.weights["fc"], again.tensors.weights["fc"])
    assert tiny_run.history[0].test_accuracy == again.history[0].test_accuracy


def test_trained_trace_round_trip(tiny_run, tmp_path):
    t = trace_from_training(tiny_run, "fp8sim trace ...")
    p = save_trace(t, tmp_path / "t.npz")
    back = load_trace(p)
    assert back.meta["seed"] == 4 and back.meta["command"] == "fp8sim trace ..."
    assert back.meta["recipe"]["lasso"]["group_in"] == 8
    assert np.array_equal(back.codes.errors["fc"], t.codes.errors["fc"])
    assert measured(back) == measured(t)


# ---- CLI ----------------------------------------------------------------------------------------
def _run(*args):
    return CliRunner().invoke(main, ["trace", *args])


def test_cli_synth_info_and_overwrite(tmp_path):
    out = tmp_path / "s.npz"
    r = _run(
        "synth",
        "--model",
        "resnet20",
        "--density",
        "gate=0.5",
        "--density",
        "grad_skip=0.25",
        "--batch",
        "8",
        "-o",
        str(out),
    )
    assert r.exit_code == 0, r.output
    assert "FLOPs reduction" in r.output
    r = _run("synth", "--model", "resnet20", "-o", str(out))
    assert r.exit_code == 1 and "exists; pass --force" in r.output
    r = _run("synth", "--model", "resnet20", "--force", "-o", str(out))
    assert r.exit_code == 0
    r = _run("info", str(out), "--json")
    assert r.exit_code == 0
    s = json.loads(r.output)
    assert s["model"] == "resnet20" and s["macs_fwd_per_image"] == 40_813_184
    assert s["measured"]["gate_density"] == 1.0  # overwritten with the default densities
    first = s["layers"][1]
    assert set(first) >= {"name", "kind", "in_shape", "out_shape", "macs_fwd"}
    r = _run("info", str(out))
    assert r.exit_code == 0 and "layer2.0.conv1" in r.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["synth", "--model", "vgg7", "--density", "gates=0.5", "-o", "x.npz"], "unknown key"),
        (["synth", "--model", "vgg7", "--density", "gate=1.5", "-o", "x.npz"], "outside [0, 1]"),
        (["synth", "--model", "vgg7", "--density", "gate", "-o", "x.npz"], "not KEY=VALUE"),
        (["synth", "--model", "vgg8", "-o", "x.npz"], "valid names are"),
        (
            ["--model", "vgg7", "--data", "digits", "--epochs", "1", "--steps", "2", "-o", "x"],
            "not both",
        ),
        (["--model", "vgg7", "-o", "x.npz"], "needs --data"),
        (["--model", "vgg7", "--data", "mnist", "-o", "x.npz"], "unknown data set 'mnist'"),
        (["--model", "vgg7", "--data", "cifar10", "-o", "x.npz"], "needs the directory"),
        (["info", "missing.npz"], "not found"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, args, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = _run(*args)
    assert r.exit_code != 0
    assert message in r.output
    assert "Traceback" not in r.output and not isinstance(r.exception, KeyError | TypeError)


def test_cli_info_on_garbage(tmp_path):
    p = tmp_path / "g.npz"
    p.write_bytes(b"PK\x03\x04garbage")
    r = _run("info", str(p))
    assert r.exit_code == 1 and "unreadable" in r.output


def test_cli_train_records(tmp_path):
    out = tmp_path / "t.npz"
    cfg = tmp_path / "r.yaml"
    cfg.write_text("capture:\n  iterations: 1\n  codes: false\nskip:\n  enabled: false\n")
    r = _run(
        "--model",
        "vgg7",
        "--data",
        "digits",
        "--config",
        str(cfg),
        "--steps",
        "2",
        "--batch",
        "8",
        "--limit",
        "24",
        "--seed",
        "3",
        "--quiet",
        "-o",
        str(out),
    )
    assert r.exit_code == 0, r.output
    assert "epoch 1:" in r.output and "wrote" in r.output
    s = json.loads(_run("info", str(out), "--json").output)
    assert s["meta"]["seed"] == 3 and s["meta"]["steps"] == 2
    assert s["meta"]["command"].startswith("fp8sim trace --model vgg7 --data digits")
    assert s["measured"]["grad_skip_fraction"] == 0.0 and not s["has_codes"]
    r = _run("--model", "vgg7", "--data", "digits", "--steps", "1", "-o", str(out))
    assert r.exit_code == 1 and "exists" in r.output


def test_capture_skips_a_short_final_batch():
    # 30 training images at batch 12: batches of 12, 12 and 6; the 6 is not captured.
    cfg = load_config({"steps": 3, "batch_size": 12, "capture": {"iterations": 2}})
    r = train("vgg7", "digits", cfg, limit=30, progress=False, log=lambda s: None)
    assert [c.step for c in r.captured] == [0, 1]
    assert all(c.skip.shape == (12,) for c in r.captured)
    assert r.tensors.step == 1 and r.tensors.inputs.shape == (12, 1, 32, 32)
