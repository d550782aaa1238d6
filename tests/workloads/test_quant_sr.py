"""Stochastic rounding on the forward (activation, weight) and backward (error) quantisers: the
bits used are the configured source's, bit for bit as simulator.numerics.quantize uses them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simulator.numerics import quantize
from simulator.numerics.random_sources import LFSRSource, UniformSource
from workloads.recipe.config import RecipeConfigError, load_config
from workloads.recipe.quant import LayerNumerics, QuantConv2d, Rounder, round_error
from workloads.recipe.sources import make_stream_source

FMT = "e5m2_chip"


def _x(shape, seed=0, scale=3.0) -> torch.Tensor:
    return torch.from_numpy(
        (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)
    )


@pytest.mark.parametrize("mode", ["sr", "sr_half", "sr_corrected"])
@pytest.mark.parametrize("backend", ["numerics", "torch"])
def test_rounder_uses_its_sources_bits(mode, backend):
    x = _x((3, 5, 7))
    rounder = Rounder(FMT, mode, backend, 6, LFSRSource(16, seed=77, lanes=4))
    got1, got2 = rounder(x), rounder(x)  # the stream continues between calls
    ref = LFSRSource(16, seed=77, lanes=4)
    b1, b2 = ref.draw(x.numel(), 6), ref.draw(x.numel(), 6)
    for got, bits in ((got1, b1), (got2, b2)):
        want = quantize(x.numpy(), FMT, mode, r=6, random_bits=bits.reshape(x.shape))
        assert np.array_equal(got.numpy().view(np.uint32), want.view(np.uint32))
    assert not torch.equal(got1, got2)  # different bits, different roundings somewhere


def test_network_bits_are_the_neighbours_low_bits():
    x = _x((64,), seed=1)
    got = Rounder(FMT, "sr", "numerics", 8, network_offset=3)(x)
    donors = np.roll(x.numpy(), -3).view(np.uint32) & 0xFF
    assert np.array_equal(got.numpy(), quantize(x.numpy(), FMT, "sr", r=8, random_bits=donors))


def test_rounder_argument_errors():
    with pytest.raises(ValueError, match="needs r"):
        Rounder(FMT, "sr", source=UniformSource(0))
    with pytest.raises(ValueError, match="exactly one of a source or a network offset"):
        Rounder(FMT, "sr", r=4)
    with pytest.raises(ValueError, match="deterministic"):
        Rounder(FMT, "rne", source=UniformSource(0))


def _sr_cfg(**quant):
    return load_config(
        {
            "quant": {
                "activation_rounding": "sr",
                "error_rounding": "sr_corrected",
                "random_bits": 5,
                "source": {"kind": "lfsr", "width": 20, "lanes": 8},
                **quant,
            }
        },
        seed=11,
    )


def test_config_paths_get_their_own_streams():
    cfg = _sr_cfg()
    num = LayerNumerics.from_config(cfg.quant, cfg.seed)
    assert num.weight is not None and num.weight.rounding == "rne"  # falls back to `rounding`
    assert num.accumulate is not None and num.accumulate.rounding == "rne"
    assert (num.activation.rounding, num.error.rounding) == ("sr", "sr_corrected")
    x = _x((2, 4, 6, 6))
    for path, rounder in (("activation", num.activation), ("error", num.error)):
        src = make_stream_source(cfg.quant.source, 11, path)
        bits = src.draw(x.numel(), 5).reshape(x.shape)
        want = quantize(x.numpy(), FMT, rounder.rounding, r=5, random_bits=bits)
        assert np.array_equal(rounder(x).numpy(), want)
    a = make_stream_source(cfg.quant.source, 11, "activation").draw(64, 16)
    e = make_stream_source(cfg.quant.source, 11, "error").draw(64, 16)
    assert not np.array_equal(a, e)


def test_fp32_path_with_a_stochastic_mode_is_the_identity():
    cfg = load_config({"quant": {"error_format": "fp32", "error_rounding": "sr"}})
    num = LayerNumerics.from_config(cfg.quant, 0)
    x = _x((5,))
    assert num.error is not None and num.error(x) is x


def test_sr_error_in_backward_is_bit_exact():
    """The gradient reaching a layer's input is the SR-rounded error, with the error stream's
    bits (a conv whose weights are the identity passes the error through unchanged)."""
    cfg = _sr_cfg(weight_format="fp32", accumulate_format=None)
    num = LayerNumerics.from_config(cfg.quant, cfg.seed)
    conv = torch.nn.Conv2d(4, 4, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(4)[:, :, None, None])
    q = QuantConv2d.from_conv(conv, num)
    x = (_x((2, 4, 3, 3), seed=2) * 0 + 1).requires_grad_()  # 1.0 is exact in FP8
    g = _x((2, 4, 3, 3), seed=3)
    q(x).backward(g)
    bits = make_stream_source(cfg.quant.source, 11, "error").draw(g.numel(), 5)
    want = quantize(g.numpy(), FMT, "sr_corrected", r=5, random_bits=bits.reshape(g.shape))
    assert np.array_equal(x.grad.numpy(), want)
    # and the error path alone, through the autograd function
    y = torch.zeros(10, requires_grad=True)
    r = Rounder(FMT, "sr", "numerics", 7, UniformSource(5))
    g = _x((10,), seed=4)
    round_error(y, r).backward(g)
    bits = UniformSource(5).draw(10, 7)
    assert np.array_equal(y.grad.numpy(), quantize(g.numpy(), FMT, "sr", r=7, random_bits=bits))


@pytest.mark.parametrize("mode", ["sr", "sr_corrected"])
def test_sr_is_unbiased_in_mean_on_a_large_tensor(mode):
    """Mean rounding error in units of the local FP8 step: ~0 for SR (r=10), -0.5 for RTZ."""
    rng = np.random.default_rng(7)
    x = torch.from_numpy((rng.uniform(1.0, 2.0, 1_000_000)).astype(np.float32))  # ulp = 0.25
    sr = Rounder(FMT, mode, "numerics", 10, UniformSource(3))(x)
    rtz = Rounder(FMT, "rtz")(x)
    err_sr = float(((sr - x) / 0.25).double().mean())
    err_rtz = float(((rtz - x) / 0.25).double().mean())
    assert abs(err_sr) < 0.005, err_sr  # standard error ~0.0005; r=10 bias <= 2**-11
    assert err_rtz < -0.45


def test_sr_config_errors_name_the_field():
    with pytest.raises(RecipeConfigError, match=r"quant\.activation_rounding: Input should be"):
        load_config({"quant": {"activation_rounding": "stochastic"}})
    with pytest.raises(RecipeConfigError, match=r"quant\.random_bits: Input should be less"):
        load_config({"quant": {"random_bits": 40}})
    with pytest.raises(RecipeConfigError, match=r"quant\.source\.kind: Input should be"):
        load_config({"quant": {"source": {"kind": "dice"}}})
    with pytest.raises(RecipeConfigError, match=r"quant\.random_bits: a network source"):
        load_config({"quant": {"random_bits": 24, "source": {"kind": "network"}}})


def test_training_with_sr_quantisers_is_reproducible():
    from workloads.recipe.train import train

    cfg = load_config(
        {
            "steps": 2,
            "epochs": 1,
            "batch_size": 8,
            "quant": {
                "weight_rounding": "sr",
                "activation_rounding": "sr",
                "error_rounding": "sr",
                "source": {"kind": "network"},
            },
        },
        seed=1,
    )
    runs = [
        train("vgg7", "digits", cfg, limit=24, progress=False, log=lambda s: None) for _ in range(2)
    ]
    a, b = (r.tensors for r in runs)
    assert np.array_equal(a.errors["fc"], b.errors["fc"])
    assert np.array_equal(a.weights["features.conv3"], b.weights["features.conv3"])
