"""The training recipe: config validation, FP8 autograd, gating, group-Lasso, skipping, SGD."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from simulator.numerics import PRESETS, quantize
from workloads.recipe import lasso
from workloads.recipe.config import RecipeConfig, RecipeConfigError, load_config
from workloads.recipe.gating import GatedConv2d, gating_penalty
from workloads.recipe.objectives import per_image_loss, skip_decisions
from workloads.recipe.optimizer import RoundedSGD
from workloads.recipe.quant import LayerNumerics, Rounder, round_error, round_forward


# ---- config ---------------------------------------------------------------------------------
def test_config_defaults_and_yaml(tmp_path):
    cfg = load_config()
    assert cfg.quant.weight_format == "e5m2_chip" and cfg.lasso.group_in == 8
    assert cfg.skip.threshold == 0.9 and cfg.gating.channel_group == 16
    p = tmp_path / "r.yaml"
    p.write_text("epochs: 7\ngating:\n  groups: 8\nupdate:\n  source:\n    kind: lfsr\n")
    cfg = load_config(p, seed=3)
    assert (cfg.epochs, cfg.gating.groups, cfg.update.source.kind, cfg.seed) == (7, 8, "lfsr", 3)
    assert load_config(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"gating": {"groups": 1}}, "gating.groups: Input should be greater than or equal to 2"),
        ({"quant": {"error_format": "e9m9"}}, "quant.error_format: unknown format 'e9m9'"),
        ({"lasso": {"group_size": 4}}, "lasso.group_size: unknown setting"),
        ({"skip": {"threshold": 1.5}}, "skip.threshold: a confidence threshold must be below 1"),
        ({"update": {"momentum": 1.0}}, "update.momentum: Input should be less than 1"),
        ({"loss": "hinge"}, "loss: Input should be 'mse' or 'ce'"),
    ],
)
def test_config_errors_name_field_and_rule(data, message):
    with pytest.raises(RecipeConfigError) as e:
        load_config(data)
    assert message in str(e.value)


def test_config_file_errors(tmp_path):
    with pytest.raises(RecipeConfigError, match="not found"):
        load_config(tmp_path / "none.yaml")
    p = tmp_path / "list.yaml"
    p.write_text("- 1\n- 2\n")
    with pytest.raises(RecipeConfigError, match="must be a mapping"):
        load_config(p)
    p.write_text("epochs: [unclosed\n")
    with pytest.raises(RecipeConfigError, match="not valid YAML"):
        load_config(p)


def test_dense_baseline_config():
    cfg = RecipeConfig.dense_fp32(epochs=2)
    assert not (cfg.quant.enabled or cfg.gating.enabled or cfg.lasso.enabled or cfg.skip.enabled)
    assert cfg.update.weight_format == "fp32" and cfg.epochs == 2


# ---- FP8 autograd ---------------------------------------------------------------------------
def test_rounder_backends_agree():
    x = torch.randn(4, 33, 7) * 100
    a = Rounder("e5m2_chip", "rne", "numerics")(x)
    b = Rounder("e5m2_chip", "rne", "torch")(x)
    assert torch.equal(a.view(torch.int32), b.view(torch.int32))
    assert not torch.equal(a, x)


def test_round_forward_is_straight_through_and_round_error_rounds_grad():
    r = Rounder("e5m2_chip")
    x = (torch.randn(50) * 3).requires_grad_()
    y = round_forward(x, r)
    assert np.array_equal(y.detach().numpy(), quantize(x.detach().numpy(), "e5m2_chip"))
    g = torch.randn(50) * 0.37
    y.backward(g)
    assert torch.equal(x.grad, g)
    x2 = (torch.randn(50)).requires_grad_()
    y2 = round_error(x2, r)
    assert torch.equal(y2, x2)
    y2.backward(g)
    assert np.array_equal(x2.grad.numpy(), quantize(g.numpy(), "e5m2_chip"))
    assert not torch.equal(x2.grad, g)


# ---- channel gating -------------------------------------------------------------------------
def _gated(threshold: float, c_in=16, c_out=32, G=4):
    torch.manual_seed(0)
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    ref = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    ref.load_state_dict(conv.state_dict())
    g = GatedConv2d.from_conv(conv, LayerNumerics(), G, 16, threshold, 1.0)
    return g, ref


def test_gating_all_on_equals_conv_and_all_off_is_base_path():
    g, ref = _gated(-1e9)
    x = torch.randn(2, 16, 6, 6)
    assert torch.allclose(g(x), ref(x), atol=1e-5)
    assert g.last_gate.shape == (2, 2, 6, 6) and bool(g.last_gate.all())
    g, ref = _gated(1e9)
    x = torch.randn(2, 16, 6, 6)
    base = nn.functional.conv2d(x[:, :4], ref.weight[:, :4], padding=1)
    assert torch.allclose(g(x), base, atol=1e-5)
    assert not bool(g.last_gate.any())


def test_gated_groups_get_no_conditional_gradient():
    g, _ = _gated(1e9)
    g(torch.randn(2, 16, 5, 5)).sum().backward()
    assert g.weight.grad[:, 4:].abs().sum() == 0
    assert g.weight.grad[:, :4].abs().sum() > 0
    assert g.threshold.grad is not None  # the straight-through gradient reaches thresholds


def test_gate_decision_follows_threshold_per_group():
    g, _ = _gated(0.0)
    x = torch.randn(4, 16, 5, 5)
    g(x)
    base = nn.functional.conv2d(x[:, :4], g.weight[:, :4].detach(), padding=1)
    mean, var = (
        base.mean((0, 2, 3), keepdim=True),
        base.var((0, 2, 3), unbiased=False, keepdim=True),
    )
    s = ((base - mean) / torch.sqrt(var + g.norm.eps)).view(4, 2, 16, 5, 5).mean(2)
    assert torch.equal(g.last_gate, s > 0)
    assert 0 < g.last_gate.float().mean() < 1
    assert float(gating_penalty(nn.Sequential(g), 0.0).detach()) > 0


# ---- group-Lasso ----------------------------------------------------------------------------
def test_group_norms_shapes_and_values():
    w = torch.zeros(2, 12, 3, 3)
    w[0, 9, 1, 1] = 3.0
    w[0, 10, 0, 0] = 4.0
    w[1, 0] = 1.0
    n = lasso.group_norms(w, 8)
    assert n.shape == (2, 2)
    assert torch.allclose(n, torch.tensor([[0.0, 5.0], [3.0, 0.0]]))
    sizes = lasso.group_sizes(w, 8)
    assert sizes.tolist() == [[72.0, 36.0], [72.0, 36.0]]


def test_proximal_step_and_zeroing():
    conv = nn.Conv2d(16, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, :8] = 1.0  # norm sqrt(8)
        conv.weight[1, 8:] = 0.01  # norm 0.01 * sqrt(8)
    model = nn.Sequential(conv)
    lasso.proximal_step(model, 8, step=0.1)  # shrink by 0.1 * sqrt(8) in norm
    w = conv.weight.detach()
    assert torch.allclose(w[0, :8], torch.full((8, 1, 1), 1 - 0.1))
    assert w[1].abs().sum() == 0  # its norm was below the shrinkage: exactly zero
    with torch.no_grad():
        conv.weight[1, 8:] = 1e-6
    mom = {id(conv.weight): torch.ones_like(conv.weight)}
    masks = lasso.zero_small_groups(model, 8, 1e-4, mom)
    assert masks["0"].tolist() == [[True, False], [False, False]]
    assert mom[id(conv.weight)][1].abs().sum() == 0 and mom[id(conv.weight)][0, 0] == 1


def test_target_fraction_zeroes_each_layers_smallest_groups():
    conv = nn.Conv2d(16, 5, 1, bias=False)  # 5 x 2 groups of 8 weights
    norms = torch.tensor([[5.0, 1.0], [0.0, 7.0], [3.0, 2.0], [9.0, 4.0], [6.0, 8.0]])
    with torch.no_grad():
        conv.weight.copy_(lasso.group_mask_to_weights(norms / 8**0.5, conv.weight.shape, 8))
    assert torch.allclose(lasso.group_norms(conv.weight, 8), norms)
    keep = lasso.smallest_fraction_mask(norms, 0.35)  # floor(3.5) = 3: the zero, 1 and 2
    want = [[True, False], [False, True], [True, False], [True, True], [True, True]]
    assert keep.tolist() == want
    assert lasso.smallest_fraction_mask(norms, 0.05).all()  # floor(0.5) = 0 groups
    mom = {id(conv.weight): torch.ones_like(conv.weight)}
    masks = lasso.zero_small_groups(nn.Sequential(conv), 8, 1e-4, mom, target_fraction=0.35)
    assert masks["0"].tolist() == keep.tolist()
    assert lasso.group_norms(mom[id(conv.weight)], 8)[~keep].sum() == 0
    # an absolute threshold alone leaves them; the zero group is the only one below 1e-4
    conv2 = nn.Conv2d(16, 5, 1, bias=False)
    with torch.no_grad():
        conv2.weight.copy_(lasso.group_mask_to_weights(norms / 8**0.5, conv.weight.shape, 8))
    assert int(lasso.zero_small_groups(nn.Sequential(conv2), 8, 1e-4, None)["0"].sum()) == 9


def test_rescale_keeps_the_layer_norm_and_min_in_channels_exempts():
    torch.manual_seed(0)
    wide, narrow = nn.Conv2d(32, 8, 3, bias=False), nn.Conv2d(1, 8, 3, bias=False)
    model = nn.Sequential(narrow, wide)
    before = float(wide.weight.detach().norm())
    narrow_w = narrow.weight.detach().clone()
    masks = lasso.zero_small_groups(
        model, 8, 1e-4, None, target_fraction=0.5, min_in_channels=16, rescale=True
    )
    assert int((~masks["1"]).sum()) == 16  # half of 8 x 4 groups
    assert float(wide.weight.detach().norm()) == pytest.approx(before, rel=1e-6)
    assert masks["0"].all() and torch.equal(narrow.weight, narrow_w)  # 1 input channel < 16
    lasso.proximal_step(model, 8, 0.5, min_in_channels=16)
    assert torch.equal(narrow.weight, narrow_w)
    w = wide.weight.detach()
    want = float((lasso.group_sizes(w, 8).sqrt() * lasso.group_norms(w, 8)).sum())
    got = float(lasso.lasso_penalty(model, 8, min_in_channels=16).detach())
    assert got == pytest.approx(want)


def test_lasso_schedule():
    from workloads.recipe.train import _lasso_now

    cfg = load_config(
        {
            "lasso": {
                "reg_weight": 0.1,
                "target_zero_fraction": 0.4,
                "start_epoch": 2,
                "ramp_epochs": 4,
            }
        }
    )
    assert _lasso_now(cfg, 2, 0.5) == (0.0, 0.0)  # epoch 2 is still before the start
    lam, frac = _lasso_now(cfg, 4, 0.0)  # 1 of 4 ramp epochs done
    assert lam == pytest.approx(0.025) and frac == pytest.approx(0.1)
    assert _lasso_now(cfg, 9, 0.0) == pytest.approx((0.1, 0.4))
    plain = load_config({"lasso": {"reg_weight": 0.1}})
    assert _lasso_now(plain, 1, 0.0) == (0.1, 0.0)  # default: full lambda from the first step
    with pytest.raises(RecipeConfigError, match=r"lasso\.target_zero_fraction: Input should be"):
        load_config({"lasso": {"target_zero_fraction": 1.0}})


# ---- gradient skipping and losses -----------------------------------------------------------
def test_skip_decisions():
    logits = torch.tensor([[0.95, 0.1, 0.0], [0.5, 0.4, 0.1], [0.95, 0.96, 0.0], [10.0, 0, 0]])
    labels = torch.tensor([0, 0, 0, 0])
    assert skip_decisions(logits, labels, "confidence", 0.9, "mse").tolist() == [
        True,
        False,
        False,
        True,
    ]
    assert skip_decisions(logits, labels, "confidence", 0.9, "ce").tolist() == [
        False,
        False,
        False,
        True,
    ]
    assert skip_decisions(logits, labels, "error", 0.2, "mse").tolist() == [
        True,
        False,
        False,
        False,
    ]


def test_mse_gradient_is_prediction_error():
    y = torch.tensor([[0.2, 0.9, -0.1]], requires_grad=True)
    per_image_loss(y, torch.tensor([1]), "mse").sum().backward()
    assert torch.allclose(y.grad, torch.tensor([[0.2, -0.1, -0.1]]))


# ---- optimizer ------------------------------------------------------------------------------
def test_fp32_update_matches_torch_sgd():
    torch.manual_seed(1)
    a = nn.Linear(5, 3)
    b = nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    cfg = RecipeConfig.dense_fp32().update
    mine = RoundedSGD(a.parameters(), cfg, 0)
    ref = torch.optim.SGD(b.parameters(), lr=0.1, momentum=cfg.momentum)
    for _ in range(3):
        x = torch.randn(4, 5)
        for m in (a, b):
            m.zero_grad()
            m(x).pow(2).sum().backward()
        mine.step(0.1)
        ref.step()
    assert torch.allclose(a.weight, b.weight, atol=1e-6)


@pytest.mark.parametrize("kind", ["uniform", "lfsr", "xorshift32"])
def test_sr_update_lands_on_format_grid(kind):
    torch.manual_seed(2)
    lin = nn.Linear(16, 8)
    cfg = load_config({"update": {"source": {"kind": kind}}}).update
    opt = RoundedSGD(lin.parameters(), cfg, 0)
    lin(torch.randn(4, 16)).sum().backward()
    opt.step(0.01)
    w = lin.weight.detach().numpy()
    assert np.array_equal(quantize(w, PRESETS["fp16_chip"], "rne"), w)
    v = opt.momentum[id(lin.weight)].numpy()
    assert np.array_equal(quantize(v, "fp16_chip", "rne"), v)


def test_gate_controller_and_ramp():
    from workloads.recipe.train import _gate_target, _steer_thresholds

    cfg = load_config({"gating": {"target_density": 0.4, "ramp_epochs": 2}})
    assert _gate_target(cfg, 1, 0.0) == pytest.approx(1.0)
    assert _gate_target(cfg, 2, 0.0) == pytest.approx(0.7)
    assert _gate_target(cfg, 5, 0.5) == pytest.approx(0.4)
    g, _ = _gated(-10.0)
    g.controller_gain = 0.1
    g(torch.randn(2, 16, 4, 4))  # every gate on: density 1 > target, thresholds rise
    before = g.threshold.detach().clone()
    _steer_thresholds({"g": g}, 0.4)
    assert torch.allclose(g.threshold.detach() - before, torch.full_like(before, 0.1 * 0.6))


def test_rms_normalisation_keeps_sign_for_biased_convs():
    torch.manual_seed(3)
    conv = nn.Conv2d(16, 16, 1, bias=True)
    g = GatedConv2d.from_conv(conv, LayerNumerics(), 4, 16, 0.0, 1.0)
    assert g.normalize == "rms"
    x = torch.randn(8, 16, 3, 3)
    g(x)
    est = 4 * nn.functional.conv2d(x[:, :4], conv.weight[:, :4].detach()) + conv.bias.detach().view(
        1, -1, 1, 1
    )
    s = est / torch.sqrt(est.pow(2).mean((0, 2, 3), keepdim=True) + 1e-5)
    assert torch.equal(g.last_gate, s.mean(1, keepdim=True) > 0)


def test_scaled_base_output_for_gated_groups():
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 16, 3, padding=1, bias=False)
    g = GatedConv2d.from_conv(conv, LayerNumerics(), 4, 16, 1e9, 1.0, gated_output="scaled_base")
    x = torch.randn(2, 16, 5, 5)
    base = nn.functional.conv2d(x[:, :4], conv.weight[:, :4].detach(), padding=1)
    assert torch.allclose(g(x), 4 * base, atol=1e-5)


def test_network_source_rounds_with_the_neighbouring_lanes_bits():
    """kind=network: element i of the update is rounded with the low bits of element i+1."""
    from workloads.recipe.config import UpdateConfig
    from workloads.recipe.optimizer import make_source

    cfg = UpdateConfig(
        weight_format="e5m2_chip",
        rounding="sr",
        random_bits=8,
        source={"kind": "network", "offset": 1},
    )
    assert make_source(cfg.source, 0) is None
    w = torch.nn.Parameter(torch.tensor([1.1, 1.3, 0.7, 2.9]))
    w.grad = torch.zeros(4)
    opt = RoundedSGD([w], cfg, run_seed=0)
    before = w.detach().numpy().copy()
    opt._round(w.data, "e5m2_chip")
    donors = np.roll(before, -1).view(np.uint32) & 0xFF
    want = quantize(before, "e5m2_chip", "sr", r=8, random_bits=donors)
    assert np.array_equal(w.detach().numpy(), want)
