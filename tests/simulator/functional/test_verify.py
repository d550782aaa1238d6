"""The functional simulator against the independent PyTorch reference: updated FP8 weight codes
identical, gradients close to float32 autograd."""

import numpy as np
import pytest

from simulator.functional import Modes
from simulator.functional.compare import config_for, prepare_model, verify_step


@pytest.mark.parametrize("batch", [3])
def test_tiny_dense_rne_bit_exact(tiny, batch):
    step = prepare_model(*tiny, "tiny", batch, config_for("rne"), seed=batch)
    res = verify_step(step)
    assert res["ok"], res["layers"]
    names = [la["layer"] for la in res["layers"]]
    assert names == ["features.conv1", "features.conv2", "features.conv3", "fc"]
    for la in res["layers"]:
        assert la["mismatched_codes"] == 0
        assert la["changed_codes"] > 0  # the step did update the weights
        assert la["cos_sim_update_vs_f32"] > 0.8
    # the gated conv really took the base/cond split (two tc.fwd passes)
    ops = [i for i in step.prog.instructions if i.op == "tc.fwd" and i["pass"] == 2]
    assert ops


def test_a_wrong_weight_is_detected(tiny):
    """Corrupting one weight code in DRAM before the run makes the comparison fail."""
    from simulator.functional import compare as v

    step = prepare_model(*tiny, "tiny", 1, config_for("rne"))
    real_load = v.load

    def corrupt(m, prog, *args, **kw):
        real_load(m, prog, *args, **kw)
        reg = prog.memmap["w:features.conv2"]
        m.dram[reg.addr + 5] ^= 0x04  # one mantissa bit

    v.load = corrupt
    try:
        res = verify_step(step)
    finally:
        v.load = real_load
    bad = {la["layer"]: la["mismatched_codes"] for la in res["layers"]}
    assert not res["ok"]
    assert bad["features.conv2"] >= 1


def test_unknown_model_is_a_clear_error():
    from simulator.functional.compare import VerifyError, prepare

    with pytest.raises(VerifyError, match="unknown model"):
        prepare("nope", 2, config_for("rne"))


@pytest.mark.slow
def test_vgg7_dense_rne_bit_exact_cli():
    """`fp8sim verify --model vgg7` (about a minute: the reference is plain torch ops)."""
    import json

    from click.testing import CliRunner

    from simulator.cli import main

    r = CliRunner().invoke(main, ["verify", "--model", "vgg7", "--batch", "1", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["ok"] and len(res["layers"]) == 6
    assert all(np.isfinite(la["cos_sim_update_vs_f32"]) for la in res["layers"])


def test_cli_verify_errors_are_one_line():
    from click.testing import CliRunner

    from simulator.cli import main

    r = CliRunner().invoke(main, ["verify", "--model", "mobilenet_v9", "--batch", "1"])
    assert r.exit_code != 0
    assert "unknown model 'mobilenet_v9'" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["verify", "--model", "vgg7", "--batch", "0"])
    assert r.exit_code != 0 and "batch must be at least 1" in r.output


@pytest.mark.parametrize("rounding", ["sr"])
def test_tiny_stochastic_rounding_same_bits(tiny, rounding):
    """With the SRUs' recorded random words the reference reproduces every code."""
    step = prepare_model(*tiny, "tiny", 3, config_for(rounding), seed=1)
    res = verify_step(step)
    assert res["ok"], res["layers"]
    assert res["rounding"] == rounding
    assert all(la["changed_codes"] > 0 for la in res["layers"])


def _sparse_cfg(rounding="sr", confidence=0.4):
    cfg = config_for(rounding)
    gsu = cfg.gsu.model_copy(update={"threshold": confidence, "criterion": "confident"})
    wsu = cfg.wsu.model_copy(update={"threshold": 0.64})  # about 1 group in 10 (conv2)
    return cfg.model_copy(update={"gsu": gsu, "wsu": wsu})


@pytest.mark.parametrize(
    "modes",
    [
        Modes(gating=True),
        Modes(gskip=True),
        Modes(wsparse=True),
        Modes(gating=True, wsparse=True, gskip=True),
    ],
    ids=lambda m: "+".join(k for k, v in vars(m).items() if v),
)
def test_tiny_sparsity_modes_bit_exact(tiny, modes):
    """Gating (gate masks the CGU computes), zero-group pruning and skipping, and gradient
    skipping, as the units apply them, match the reference; each mechanism really acts."""
    step = prepare_model(*tiny, "tiny", 4, _sparse_cfg(), seed=1)
    res = verify_step(step, modes, gate_threshold=0.0)
    assert res["ok"], res["layers"]
    if modes.gating:
        dens = res["gate_density"]
        assert set(dens) == {"features.conv2", "features.conv3"}
        assert all(0.0 < d < 1.0 for d in dens.values())
    if modes.gskip:
        assert 0 < res["skipped_images"] < 4
    if modes.wsparse and not modes.gskip:
        from simulator.functional.loader import read_region

        w = read_region(step.machine, step.prog, "w:features.conv2").reshape(32, 9, 4, 8)
        zero_groups = ~(w != 0).any(axis=(1, 3))  # groups: 1 output x 8 inputs x 9 taps
        gmap = read_region(step.machine, step.prog, "gmap:features.conv2").reshape(32, 4)
        assert 0 < zero_groups.sum() < 64
        assert np.array_equal(gmap == 0, zero_groups)  # the group map the WSU wrote


def test_cli_run_functional_mode_json():
    import json

    from click.testing import CliRunner

    from simulator.cli import main

    r = CliRunner().invoke(main, ["run", "--trace", "vgg7-tiny", "--mode", "functional", "--json"])
    assert r.exit_code == 0, r.output
    f = json.loads(r.output)["functional"]
    assert f["model"] == "vgg7" and f["mode"] == "all"
    assert sum(la["changed_codes"] for la in f["layers"]) > 0


@pytest.mark.parametrize("rounding, modes", [("rne", Modes()), ("sr", Modes(gskip=True))])
def test_residual_add_and_error_merge_bit_exact(tiny_res, rounding, modes):
    """Residual add forward, its shared error storage and the merge of two error parts (an
    `add` into err, skipped for skipped images)."""
    step = prepare_model(*tiny_res, "tinyres", 3, _sparse_cfg(rounding, 2.0), seed=1)
    assert any(i.op == "sfu" and i["op"] == 6 and i["bufo"] == 2 for i in step.prog.instructions)
    res = verify_step(step, modes)
    assert res["ok"], res["layers"]
    assert all(la["changed_codes"] > 0 for la in res["layers"])
    if modes.gskip:
        assert 0 < res["skipped_images"] < 3
