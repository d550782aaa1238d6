"""Bit codes of format values: `encode` (values -> codes) and `decode` (codes -> values)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from simulator.numerics.formats import FloatFormat, InfNan, get_format
from simulator.numerics.quantize import quantize


def _decode_exact(codes: np.ndarray, f: FloatFormat) -> np.ndarray:
    """Vectorised exact decoding to float64 (float64 holds every format value exactly)."""
    c = codes.astype(np.int64)
    sign = (c >> (f.bits - 1)) & 1
    e_field = (c >> f.man_bits) & ((1 << f.exp_bits) - 1)
    m_field = c & ((1 << f.man_bits) - 1)
    top = (1 << f.exp_bits) - 1
    normal = e_field > 0
    if f.subnormals:
        sig = np.where(normal, m_field + (1 << f.man_bits), m_field).astype(np.float64)
    else:  # exponent field 0 is zero only; hardware flushes its other codes to zero
        sig = np.where(normal, m_field + (1 << f.man_bits), 0).astype(np.float64)
    exp = np.where(normal, e_field, 1) - f.bias - f.man_bits
    mag = np.ldexp(sig, exp.astype(np.int32))
    if f.inf_nan is InfNan.IEEE:
        mag = np.where((e_field == top) & (m_field == 0), np.inf, mag)
        mag = np.where((e_field == top) & (m_field != 0), np.nan, mag)
    elif f.inf_nan is InfNan.FN:
        mag = np.where((e_field == top) & (m_field == (1 << f.man_bits) - 1), np.nan, mag)
    return np.where(sign == 1, -mag, mag)


@lru_cache(maxsize=32)
def _decode_table(f: FloatFormat) -> np.ndarray:
    """float32 value of every code of a format of at most 16 bits."""
    table = _decode_exact(np.arange(1 << f.bits, dtype=np.int64), f).astype(np.float32)
    table.setflags(write=False)
    return table


def decode(codes: np.ndarray, fmt: str | FloatFormat) -> np.ndarray:
    """Values (float32, exact) of an array of bit codes of `fmt`.

    Codes must be unsigned integers below 2**bits. For formats without subnormals, exponent
    field 0 decodes to (signed) zero whatever the mantissa field holds, as the hardware does.
    """
    f = get_format(fmt)
    c = np.asarray(codes)
    if not np.issubdtype(c.dtype, np.integer):
        raise TypeError(f"codes must be an integer array, not {c.dtype}")
    if c.size and (int(c.min()) < 0 or int(c.max()) >> f.bits):
        bad = int(np.flatnonzero((c.ravel() < 0) | (c.ravel() >= (1 << f.bits)))[0])
        raise ValueError(
            f"codes[{bad}] = {int(c.ravel()[bad])} is not a {f.bits}-bit code of {f.name!r}"
        )
    if f.bits <= 16:
        return _decode_table(f)[c.astype(np.intp)]
    return _decode_exact(c, f).astype(np.float32)


def encode(x: np.ndarray, fmt: str | FloatFormat) -> np.ndarray:
    """Bit codes (uint8 / uint16 / uint32 by width) of values that are representable in `fmt`.

    NaN becomes the canonical quiet NaN code with the sign kept. A value that is not exactly
    representable (round it with `quantize` first) raises ValueError naming its index.
    """
    f = get_format(fmt)
    arr = np.asarray(x)
    if arr.dtype not in (np.float32, np.float64):
        raise TypeError(f"encode takes float32 or float64 arrays, not {arr.dtype}")
    flat = arr.reshape(-1)
    isnan = np.isnan(flat)
    if isnan.any() and not f.has_nan:
        first = int(np.flatnonzero(isnan)[0])
        raise ValueError(f"x[{first}] is NaN but format {f.name!r} has no NaN encoding")
    isinf = np.isinf(flat)
    if isinf.any() and not f.has_inf:
        first = int(np.flatnonzero(isinf)[0])
        raise ValueError(f"x[{first}] is infinite but format {f.name!r} has no Inf encoding")
    with np.errstate(invalid="ignore"):
        rounded = quantize(flat, f, "rne") if not isinf.any() else flat
        ok = (rounded == flat) | isnan | isinf
    if not ok.all():
        first = int(np.flatnonzero(~ok)[0])
        raise ValueError(
            f"x[{first}] = {flat[first]!r} is not representable in {f.name!r} "
            "(round it with quantize first)"
        )

    v = flat.astype(np.float64)
    sign = np.signbit(v).astype(np.int64)
    mag = np.abs(np.where(isnan | isinf, 1.0, v))
    _, e = np.frexp(mag)  # mag = m * 2**e with m in [0.5, 1)
    exp = e.astype(np.int64) - 1
    normal = (exp >= f.emin) & (mag > 0)
    lsb = np.where(normal, exp, f.emin) - f.man_bits
    sig = np.ldexp(mag, (-lsb).astype(np.int32)).astype(np.int64)
    e_field = np.where(normal, exp + f.bias, 0)
    m_field = np.where(normal, sig - (1 << f.man_bits), sig)
    m_field = np.where(mag == 0, 0, m_field)
    codes = (e_field << f.man_bits) | m_field
    top = (1 << f.exp_bits) - 1
    if f.has_inf:
        codes = np.where(isinf, top << f.man_bits, codes)
    if f.inf_nan is InfNan.IEEE:
        codes = np.where(isnan, (top << f.man_bits) | (1 << (f.man_bits - 1)), codes)
    elif f.inf_nan is InfNan.FN:
        codes = np.where(isnan, (1 << (f.bits - 1)) - 1, codes)
    codes = codes | (sign << (f.bits - 1))
    return codes.astype(f.code_dtype).reshape(arr.shape)
