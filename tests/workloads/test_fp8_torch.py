"""The torch FP8 quantizer equals `simulator.numerics.quantize` bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.numerics import PRESETS, quantize
from workloads.recipe.fp8_torch import quantize_torch

DETERMINISTIC = ("rne", "rna", "rtz")
STOCH = ("sr", "sr_half", "sr_corrected")


def _values(n_random: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    patterns = rng.integers(0, 2**32, size=n_random, dtype=np.uint64).astype(np.uint32)
    scaled = rng.standard_normal(n_random) * np.exp2(rng.integers(-40, 40, n_random))
    edges = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1.1754942e-38, 3.4028235e38]
    # Around e5m2/e5m2_chip/e4m3 limits: max, overflow rounding points, min normal/subnormal.
    for m in (57344.0, 61440.0, 114688.0, 122880.0, 448.0, 464.0, 480.0):
        edges += [m, -m, np.nextafter(np.float32(m), np.float32(0)), np.nextafter(m, np.inf)]
    for e in (-14, -15, -16, -17, -6, -9, -10):
        p = 2.0**e
        edges += [p, 0.5 * p, 0.75 * p, 1.5 * p, 1.25 * p, -1.5 * p]
    edges += [1.0 + k / 8 for k in range(16)] + [1.125, 1.375, 2.5, -3.5]  # ties
    with np.errstate(over="ignore", invalid="ignore"):  # overflow to inf is wanted
        return np.concatenate(
            [patterns.view(np.float32), scaled.astype(np.float32), np.array(edges, np.float32)]
        )


def _check(v: np.ndarray, fmt: str, mode: str, r: int | None, seed: int) -> None:
    if not PRESETS[fmt].has_nan:
        v = v[~np.isnan(v)]
    kw: dict = {}
    kt: dict = {}
    if r is not None:
        rb = np.random.default_rng(seed).integers(0, 2**r, size=v.shape, dtype=np.int64)
        kw = {"r": r, "random_bits": rb}
        kt = {"r": r, "random_bits": torch.from_numpy(rb)}
    want = quantize(v, fmt, mode, **kw).view(np.uint32)
    got = quantize_torch(torch.from_numpy(v), fmt, mode, **kt).numpy().view(np.uint32)
    bad = np.flatnonzero(want != got)
    assert bad.size == 0, (
        f"{fmt}/{mode}/r={r}: {bad.size} mismatches, first x={v[bad[0]]!r}: "
        f"numpy {want[bad[0]]:#010x} torch {got[bad[0]]:#010x}"
    )


@pytest.mark.parametrize("fmt", sorted(PRESETS))
@pytest.mark.parametrize("mode", DETERMINISTIC)
def test_deterministic_modes_bit_identical(fmt, mode):
    _check(_values(20_000, 1), fmt, mode, None, 0)


@pytest.mark.parametrize("fmt", ["e5m2", "e5m2_chip", "e4m3", "fp16_chip", "e6m9", "bf16"])
@pytest.mark.parametrize("mode", STOCH)
@pytest.mark.parametrize("r", [1, 3, 8, 16, 24, 32])
def test_stochastic_modes_bit_identical(fmt, mode, r):
    _check(_values(5_000, r), fmt, mode, r, seed=r + 100)


@settings(max_examples=60, deadline=None)
@given(
    bits=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=64),
    fmt=st.sampled_from(["e5m2", "e5m2_chip", "e4m3", "fp16_chip"]),
    mode=st.sampled_from(DETERMINISTIC + STOCH),
    r=st.integers(1, 32),
    seed=st.integers(0, 2**16),
)
def test_property_bit_identical(bits, fmt, mode, r, seed):
    v = np.array(bits, dtype=np.uint32).view(np.float32)
    _check(v, fmt, mode, r if mode in STOCH else None, seed)


def test_shape_kept_and_argument_errors():
    x = torch.randn(3, 4, 5)
    assert quantize_torch(x, "e5m2_chip").shape == (3, 4, 5)
    with pytest.raises(TypeError, match="float32"):
        quantize_torch(x.double(), "e5m2")
    with pytest.raises(ValueError, match="needs random_bits"):
        quantize_torch(x, "e5m2", "sr", r=8)
    with pytest.raises(ValueError, match="deterministic"):
        quantize_torch(x, "e5m2", "rne", random_bits=torch.zeros(3, 4, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match="has no NaN"):
        quantize_torch(torch.tensor([float("nan")]), "e5m2_chip")
