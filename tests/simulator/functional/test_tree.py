"""The compiled tile kernel follows `dot_product_step` (the numerics' tree rule) bit for bit."""

import numpy as np
import pytest

from simulator.functional.tree import tree_accumulate
from simulator.numerics import decode, encode
from simulator.numerics.dot_product import dot_product_step


def _codes(rng, shape, zero_frac=0.2, wild_frac=0.1):
    # exponents near the bias so products overlap and cancel; some zeros and random codes
    sign = rng.integers(0, 2, shape) << 7
    exp = rng.integers(11, 20, shape) << 2
    man = rng.integers(0, 4, shape)
    c = (sign | exp | man).astype(np.uint8)
    wild = rng.random(shape) < wild_frac
    c[wild] = rng.integers(0, 256, int(wild.sum()))
    c[rng.random(shape) < zero_frac] = 0
    return c


@pytest.mark.parametrize("align_bits, wild", [(24, 0.1), (12, 0.1), (24, 1.0)])
def test_tree_matches_dot_product_step(align_bits, wild):
    """Random accumulators and codes; wild = 1: uniformly random codes (saturation, values
    below the smallest normal, huge cancellations)."""
    rng = np.random.default_rng(align_bits + int(10 * wild))
    P, K, S, D = 7, 5, 13, 8
    A, B = _codes(rng, (P, S, D), wild_frac=wild), _codes(rng, (K, S, D), wild_frac=wild)
    acc0 = decode(rng.integers(0, 1 << 16, (P, K)).astype(np.uint16), "fp16_chip")
    acc = acc0.astype(np.float64)
    tree_accumulate(
        A,
        B,
        acc,
        operand_format="e5m2_chip",
        accumulator_format="fp16_chip",
        align_bits=align_bits,
    )
    ref = encode(acc0, "fp16_chip")
    a = np.broadcast_to(A[:, None], (P, K, S, D))
    b = np.broadcast_to(B[None, :], (P, K, S, D))
    for s in range(S):
        ref = dot_product_step(
            a[:, :, s], b[:, :, s], ref, "e5m2_chip", "rne", align_bits=align_bits
        )
    assert np.array_equal(encode(acc, "fp16_chip"), ref)
    assert np.count_nonzero(ref) > P * K // 2  # the case is not trivially zero


def test_inactive_outputs_untouched():
    rng = np.random.default_rng(1)
    A, B = _codes(rng, (4, 3, 8), 0.0), _codes(rng, (2, 3, 8), 0.0)
    acc = np.full((4, 2), 0.5)
    active = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], bool)
    tree_accumulate(
        A,
        B,
        acc,
        operand_format="e5m2_chip",
        accumulator_format="fp16_chip",
        align_bits=24,
        active=active,
    )
    assert np.all(acc[~active] == 0.5)
    assert np.all(acc[active] != 0.5)
