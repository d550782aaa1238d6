"""The tensor core's dot-product-accumulate step, bit for bit as the RTL computes it.

One step takes `dp_width` FP8 pairs and an accumulator code (FP16: `fp16`, or `fp16_chip` for
the chip's formats) and returns the new accumulator code:

* `tree` mode (the hardware): every addend (the dp_width exact products and the accumulator)
  is placed on one fixed-point grid whose LSB is 2**(E_max - align_bits), where E_max is the
  largest *slot exponent* among the nonzero addends; bits below the grid are truncated (toward
  zero, on the magnitude); the integer sum is exact; the result is rounded once into the
  accumulator format. docs/dot-product.md states the rule in full.
* `exact` mode: the infinitely precise sum of the products and the accumulator, rounded once.

Roundings go through `quantize` and operands through `decode`: no second copy of the format
semantics lives here.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from simulator.numerics.codec import decode, encode
from simulator.numerics.formats import FloatFormat, get_format
from simulator.numerics.quantize import quantize

#: accumulator format used with each FP8 operand format.
ACC_FORMAT: Final[dict[str, str]] = {"e5m2": "fp16", "e4m3": "fp16", "e5m2_chip": "fp16_chip"}
#: default number of grid bits below the largest addend's slot exponent.
DEFAULT_ALIGN_BITS: Final = 24
MODES: Final = ("tree", "exact")


def slot_exponent(values: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Exponent just above an operand's hidden-bit position: |v| < 2**slot.

    It comes from the exponent field alone (a subnormal sits in the smallest normal's slot),
    as the hardware reads it; zero and non-finite values get a meaningless slot (callers mask).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        _, e = np.frexp(np.abs(values))  # |v| = f * 2**e, f in [0.5, 1): floor(log2|v|) = e - 1
    return np.maximum(e.astype(np.int64) - 1, fmt.emin) + 1


def _check(a: np.ndarray, b: np.ndarray, acc: np.ndarray) -> None:
    if a.shape != b.shape or a.ndim < 1:
        raise ValueError(f"a and b must have one shape (..., dp_width), not {a.shape}, {b.shape}")
    if acc.shape != a.shape[:-1]:
        raise ValueError(f"acc has shape {acc.shape}, expected {a.shape[:-1]}")


def dot_product_step(
    a: np.ndarray,
    b: np.ndarray,
    acc: np.ndarray,
    fmt: str = "e5m2",
    rounding: str = "rne",
    *,
    r: int | None = None,
    random_bits: np.ndarray | None = None,
    align_bits: int = DEFAULT_ALIGN_BITS,
    mode: str = "tree",
    acc_fmt: str | None = None,
) -> np.ndarray:
    """New accumulator codes of one dot-product-accumulate step.

    Args:
        a, b: FP8 codes of `fmt`, shape (..., dp_width).
        acc: accumulator codes of `acc_fmt`, shape (...).
        fmt: `e5m2`, `e4m3` or `e5m2_chip`.
        rounding: `rne`, `sr`, `sr_half` or `sr_corrected` (with `r` and `random_bits`, one
            random integer per output).
        align_bits: tree grid width below the largest slot exponent (tree mode), 11..49.
        mode: `tree` (hardware) or `exact`.
        acc_fmt: accumulator format, default `ACC_FORMAT[fmt]`.

    Returns:
        Accumulator codes (uint16), shape (...). NaN results are the canonical positive NaN;
        a zero result is +0 (the tree has no signed zero).
    """
    if fmt not in ACC_FORMAT:
        raise ValueError(f"fmt must be one of {list(ACC_FORMAT)}, not {fmt!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    f = get_format(fmt)
    fa = get_format(acc_fmt or ACC_FORMAT[fmt])
    acc_width = fa.man_bits + 1
    if mode == "tree" and not max(acc_width, 2 * (f.man_bits + 1)) <= align_bits <= 49:
        raise ValueError(f"align_bits={align_bits} must be in {acc_width}..49")
    a, b, acc = np.asarray(a), np.asarray(b), np.asarray(acc)
    _check(a, b, acc)

    va = decode(a, f).astype(np.float64)
    vb = decode(b, f).astype(np.float64)
    vc = decode(acc, fa).astype(np.float64)
    with np.errstate(invalid="ignore"):
        prods = va * vb  # exact: two significands of at most 4 bits
        # Inf/NaN follow IEEE addition of the addends; the finite part cannot overflow float64.
        special = prods.sum(axis=-1) + vc
    nonfinite = ~np.isfinite(special)

    if mode == "tree":
        total = _tree_sum(prods, va, vb, vc, f, fa, align_bits)
    else:
        total = _exact_sum(prods, vc)
    special = np.where(np.isnan(special), np.nan, special)  # NaN results are made positive
    total = np.where(nonfinite, special, total)
    total = np.where(total == 0, 0.0, total)  # +0
    q = quantize(total, fa, rounding, r=r, random_bits=random_bits)
    return encode(q, fa)


def _tree_sum(
    prods: np.ndarray,
    va: np.ndarray,
    vb: np.ndarray,
    vc: np.ndarray,
    f: FloatFormat,
    fa: FloatFormat,
    align_bits: int,
) -> np.ndarray:
    """Sum on the tree's grid (float64, exact: the integer sum has at most 53 bits)."""
    slots = np.concatenate(
        [slot_exponent(va, f) + slot_exponent(vb, f), slot_exponent(vc, fa)[..., None]], axis=-1
    )
    addends = np.concatenate([prods, vc[..., None]], axis=-1)
    addends = np.where(np.isfinite(addends), addends, 0.0)  # rows with Inf/NaN are replaced
    live = addends != 0
    e_max = np.max(np.where(live, slots, np.iinfo(np.int64).min // 2), axis=-1)
    e_max = np.where(live.any(axis=-1), e_max, 0)
    scale = (align_bits - e_max)[..., None]
    grid = np.floor(
        np.ldexp(np.abs(addends), scale.astype(np.int32))
    )  # truncation of the magnitude
    ints = np.where(addends < 0, -grid, grid).astype(np.int64)
    return np.ldexp(ints.sum(axis=-1).astype(np.float64), (e_max - align_bits).astype(np.int32))


def _exact_sum(prods: np.ndarray, vc: np.ndarray) -> np.ndarray:
    """The exact sum, reduced to 53 bits with a sticky bit (float64), rows with specials 0.

    Every addend is an integer multiple of 2**-_EXACT_LSB; the sum can need ~70 bits, so it is
    formed with Python integers. Keeping the top 53 bits and OR-ing every lower bit into the last
    one changes no rounding decision of `quantize` into an 11-bit format with r <= 32 random
    bits (those look at most 11 + 33 bits down, plus "anything nonzero below").
    """
    addends = np.concatenate([prods, vc[..., None]], axis=-1)
    addends = np.where(np.isfinite(addends), addends, 0.0)
    flat = addends.reshape(-1, addends.shape[-1])
    # Split v * 2**EXACT_LSB into an integer high part and a 32-bit fraction part (both exact).
    scaled = np.ldexp(flat, _EXACT_LSB)
    hi = np.trunc(np.ldexp(scaled, -32))
    lo = (scaled - np.ldexp(hi, 32)).astype(np.int64)
    his = hi.astype(np.int64).sum(axis=1)
    los = lo.sum(axis=1)
    out = np.empty(flat.shape[0], dtype=np.float64)
    for i in range(flat.shape[0]):
        t = (int(his[i]) << 32) + int(los[i])
        mag = abs(t)
        n = mag.bit_length()
        if n > 53:
            sh = n - 53
            kept = (mag >> sh) | (1 if mag & ((1 << sh) - 1) else 0)
            v = float(np.ldexp(float(kept), sh - _EXACT_LSB))
        else:
            v = float(np.ldexp(float(mag), -_EXACT_LSB))
        out[i] = -v if t < 0 else v
    return out.reshape(addends.shape[:-1])


# 2**-48 divides every product (>= 2**-32 for e5m2) and every FP16 accumulator (>= 2**-24).
_EXACT_LSB: Final = 48


def dot_product_accumulate(
    a: np.ndarray,
    b: np.ndarray,
    acc0: np.ndarray,
    fmt: str = "e5m2",
    rounding: str = "rne",
    *,
    r: int | None = None,
    random_bits: np.ndarray | None = None,
    **kwargs: object,
) -> np.ndarray:
    """Run `dot_product_step` over steps: a, b have shape (steps, ..., dp_width).

    `random_bits` (stochastic modes) has shape (steps, ...). Returns the final accumulator codes.
    """
    acc = np.asarray(acc0)
    for s in range(np.asarray(a).shape[0]):
        rb = None if random_bits is None else np.asarray(random_bits)[s]
        acc = dot_product_step(a[s], b[s], acc, fmt, rounding, r=r, random_bits=rb, **kwargs)
    return acc
