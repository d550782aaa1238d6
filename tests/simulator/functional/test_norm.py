"""Batch norm (statistics in the producing conv, normalisation in the consuming conv's load,
the fused BN -> add -> ReLU chain, the backward with its fused ReLU, gamma/beta updates) and
average pooling: the executor against the independent reference, bit for bit."""

import numpy as np
import pytest
import torch
from torch import nn

from simulator.functional.compare import config_for, prepare_model, verify_step
from simulator.functional.fastops import seq_sum
from simulator.functional.norm import derived
from simulator.functional.state import Modes


class TinyBN(nn.Module):
    """conv-BN-ReLU, conv-BN + identity shortcut, ReLU, a standalone BN on a conv whose
    output is read twice, global average pooling, FC."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(16, 16, 3, stride=2, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(16)
        self.relu3 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16, 10, bias=False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        nn.init.normal_(self.fc.weight, std=0.3)

    def forward(self, x):
        r = self.relu1(self.bn1(self.conv1(x)))
        r = self.relu2(self.bn2(self.conv2(r)) + r)
        r = self.relu3(self.bn3(self.conv3(r)))
        return self.fc(self.flatten(self.pool(r)))


@pytest.fixture
def tiny_bn():
    torch.manual_seed(0)
    return TinyBN(), (3, 8, 8)


def test_fp32_running_sum_is_sequential():
    """seq_sum adds left to right in float32 (np.sum would pair and round differently)."""
    vals = np.float32([[1.0], [2.0**-24], [2.0**-24]])
    assert seq_sum(np.float32([0.0]), vals)[0] == np.float32(1.0)
    assert seq_sum(np.float32([0.0]), vals[::-1])[0] > np.float32(1.0)
    mean, rstd = derived(np.float32([4.0]), np.float32([8.0]), 4)
    assert mean[0] == 1.0 and rstd[0] == np.float32(1) / np.sqrt(np.float32(1) + np.float32(1e-5))


def test_tiny_bn_dense_rne_bit_exact(tiny_bn):
    step = prepare_model(*tiny_bn, "tinybn", 2, config_for("rne"), seed=1)
    ops = {i["op"] for i in step.prog.instructions if i.op == "sfu"}
    assert {8, 9, 12, 13, 4, 5} <= ops  # norm_fwd/bwd, norm_stat/bwd_stat, avgpool_fwd/bwd
    res = verify_step(step)
    assert res["ok"], res["layers"]
    names = [la["layer"] for la in res["layers"]]
    assert {"bn1", "bn2", "bn3"} <= set(names)
    assert all(la["changed_codes"] > 0 for la in res["layers"]), res["layers"]
    # FP8 (e5m2) errors through two batch norms: far from 1, but clearly correlated
    assert all(la["cos_sim_update_vs_f32"] > 0.3 for la in res["layers"]), res["layers"]


def _cfg(rounding: str, confidence: float):
    cfg = config_for(rounding)
    gsu = cfg.gsu.model_copy(update={"threshold": confidence, "criterion": "confident"})
    return cfg.model_copy(update={"gsu": gsu})


@pytest.mark.parametrize(
    "rounding, modes", [("sr", Modes(gskip=True)), ("sr", Modes(True, True, True))]
)
def test_tiny_bn_sr_sparse_bit_exact(tiny_bn, rounding, modes):
    """Stochastic rounding (the norm_fwd words that a fused add rounds again are recorded per
    op) with gradient skipping: a skipped image adds nothing to the batch-norm gradient sums
    and gets no error; with all modes, a gated conv feeds a batch norm's statistics."""
    step = prepare_model(*tiny_bn, "tinybn", 3, _cfg(rounding, 0.5), seed=1)
    res = verify_step(step, modes)
    assert res["ok"], res["layers"]
    assert res["skipped_images"] == 1
    assert all(la["changed_codes"] > 0 for la in res["layers"]), res["layers"]
    if modes.gating:
        assert 0 < res["gate_density"]["conv2"] < 1, res["gate_density"]


@pytest.mark.slow
def test_resnet20_dense_rne_bit_exact_cli():
    """`fp8sim verify --model resnet20 --batch 2`: every conv, FC and batch norm identical."""
    import json

    from click.testing import CliRunner

    from simulator.cli import main

    r = CliRunner().invoke(main, ["verify", "--model", "resnet20", "--batch", "2", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["ok"] and len(res["layers"]) == 22 + 21  # convs and fc, batch norms
    assert all(np.isfinite(la["cos_sim_update_vs_f32"]) for la in res["layers"])
