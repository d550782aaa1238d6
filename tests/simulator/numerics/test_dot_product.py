"""The dot-product-accumulate model: hand-checked cases, the exact mode, and the tree rule."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.numerics import decode, encode, get_format
from simulator.numerics.dot_product import (
    dot_product_accumulate,
    dot_product_step,
    slot_exponent,
)


def _codes(values: list[float], fmt: str) -> np.ndarray:
    return encode(np.array(values, dtype=np.float32), fmt)


def _step(a: list[float], b: list[float], acc: float, fmt: str = "e5m2", **kw: object) -> float:
    acc_fmt = "fp16_chip" if fmt == "e5m2_chip" else "fp16"
    y = dot_product_step(
        _codes(a, fmt)[None], _codes(b, fmt)[None], _codes([acc], acc_fmt), fmt, **kw
    )
    return float(decode(y, acc_fmt)[0])


def test_small_exact_sum() -> None:
    assert _step([1.0, 2.0, -0.5], [3.0, 0.5, 4.0], 0.25) == 2.25


def test_tree_truncates_below_the_grid() -> None:
    # 2048 has slot 12; with align_bits=11 the grid LSB is 2**1, so the 1.0 product vanishes
    # in the tree (2048 + 1 -> 2048) while the exact mode rounds 2049 to even (2048 as well),
    # and 2048 + 3 separates them: tree 2050 (3 truncates to 2), exact 2052 (RNE of 2051).
    assert _step([3.0], [1.0], 2048.0, align_bits=11) == 2050.0
    assert _step([3.0], [1.0], 2048.0, mode="exact") == 2052.0


def test_wide_grid_equals_exact_when_nothing_is_truncated() -> None:
    rng = np.random.default_rng(3)
    n = 20000
    e = rng.integers(13, 18, (n, 8))
    a = ((rng.integers(0, 2, (n, 8)) << 7) | (e << 2) | rng.integers(0, 4, (n, 8))).astype(np.uint8)
    b = a[::-1].copy()
    acc = np.zeros(n, np.uint16)
    # Products lie in [2**-4, 2**6): with 49 grid bits nothing falls below the grid.
    tree = dot_product_step(a, b, acc, "e5m2", align_bits=49)
    exact = dot_product_step(a, b, acc, "e5m2", mode="exact")
    np.testing.assert_array_equal(tree, exact)


def test_tree_and_exact_differ_sometimes_with_a_narrow_grid() -> None:
    rng = np.random.default_rng(4)
    n = 50000
    a = rng.integers(0, 256, (n, 8)).astype(np.uint8)
    b = rng.integers(0, 256, (n, 8)).astype(np.uint8)
    acc = rng.integers(0, 1 << 16, n).astype(np.uint16)
    tree = dot_product_step(a, b, acc, "e5m2_chip", align_bits=12)
    exact = dot_product_step(a, b, acc, "e5m2_chip", mode="exact")
    rate = float(np.mean(tree != exact))
    assert 0.0 < rate < 0.2


def test_specials() -> None:
    inf, nan = float("inf"), float("nan")
    assert _step([inf, 1.0], [1.0, 1.0], 0.0) == inf
    assert _step([inf, -inf], [1.0, 1.0], 0.0) != _step([inf, -inf], [1.0, 1.0], 0.0)  # NaN
    assert np.isnan(_step([inf], [0.0], 0.0))
    assert np.isnan(_step([nan], [1.0], 0.0, fmt="e4m3"))
    assert _step([1.0], [1.0], -inf) == -inf
    y = dot_product_step(
        _codes([inf, inf], "e5m2")[None],
        _codes([1.0, -1.0], "e5m2")[None],
        np.zeros(1, np.uint16),
        "e5m2",
    )
    assert int(y[0]) == 0x7E00  # Inf - Inf: the canonical, positive NaN


def test_overflow_and_saturation() -> None:
    big = 57344.0
    assert _step([big, big], [big, big], 0.0) == float("inf")
    chip_max = float(decode(np.array([0x7FFF], np.uint16), "fp16_chip")[0])
    assert _step([big * 2, big * 2], [big, big], 0.0, fmt="e5m2_chip") == chip_max


def test_zero_result_is_positive() -> None:
    y = dot_product_step(
        _codes([-0.0], "e5m2")[None], _codes([1.0], "e5m2")[None], _codes([-0.0], "fp16"), "e5m2"
    )
    assert int(y[0]) == 0
    y = dot_product_step(
        _codes([2.0, -2.0], "e5m2")[None],
        _codes([1.0, 1.0], "e5m2")[None],
        _codes([0.0], "fp16"),
        "e5m2",
    )
    assert int(y[0]) == 0


def test_stochastic_rounding_uses_the_random_bits() -> None:
    # 1 + 2**-12 sits a quarter of an FP16 ULP (2**-10) above 1: sr with r=2 rounds up iff S >= 3.
    a = _codes([1.0, 0.25], "e5m2")[None].repeat(4, 0)
    b = _codes([1.0, 2.0**-10], "e5m2")[None].repeat(4, 0)
    acc = np.zeros(4, np.uint16)
    y = dot_product_step(a, b, acc, "e5m2", "sr", r=2, random_bits=np.arange(4))
    assert decode(y, "fp16").tolist() == [1.0, 1.0, 1.0, 1.0 + 2.0**-10]


def test_slot_exponent_of_subnormals_is_the_smallest_normals() -> None:
    v = decode(np.array([0x01, 0x04, 0x3C], np.uint8), "e5m2").astype(np.float64)
    assert slot_exponent(v, get_format("e5m2")).tolist() == [-13, -13, 1]


def test_accumulate_runs_steps() -> None:
    a = np.stack([_codes([1.0] * 8, "e5m2")[None]] * 3)
    acc = dot_product_accumulate(a, a, np.zeros(1, np.uint16), "e5m2")
    assert float(decode(acc, "fp16")[0]) == 24.0


@pytest.mark.parametrize(
    "kwargs",
    [{"fmt": "e3m4"}, {"mode": "fast"}, {"align_bits": 5}, {"align_bits": 60}],
)
def test_bad_arguments(kwargs: dict[str, object]) -> None:
    a = np.zeros((1, 8), np.uint8)
    with pytest.raises(ValueError):
        dot_product_step(a, a, np.zeros(1, np.uint16), **kwargs)


def test_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="acc has shape"):
        dot_product_step(
            np.zeros((2, 8), np.uint8), np.zeros((2, 8), np.uint8), np.zeros(3, np.uint16)
        )
