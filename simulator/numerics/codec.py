"""Bit codes of format values: `encode` (values -> codes) and `decode` (codes -> values)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from simulator.numerics import _kernels as kernels
from simulator.numerics.formats import FloatFormat, InfNan, get_format
from simulator.numerics.quantize import _INPUT_LAYOUT, _encode_in, quantize


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

    NaN becomes the canonical quiet NaN code with the sign kept; -0.0 keeps its sign bit. A
    value that is not exactly representable (round it with `quantize` first), or a special
    the format lacks, raises ValueError naming the first such index.
    """
    f = get_format(fmt)
    arr = np.asarray(x)
    layout = _INPUT_LAYOUT.get(arr.dtype)
    if layout is None:
        raise TypeError(f"encode takes float32 or float64 arrays, not {arr.dtype}")
    int_dtype, mbits_in, ebits_in, bias_in = layout
    abs_mask = (1 << (ebits_in + mbits_in)) - 1
    top_field = (1 << f.exp_bits) - 1
    if f.inf_nan is InfNan.IEEE:
        inf_code, nan_code = (
            top_field << f.man_bits,
            (top_field << f.man_bits) | (1 << (f.man_bits - 1)),
        )
        top_finite = top_field - 1
    elif f.inf_nan is InfNan.FN:
        inf_code, nan_code, top_finite = -1, (1 << (f.bits - 1)) - 1, top_field
    else:
        inf_code, nan_code, top_finite = -1, -1, top_field
    flat = np.ascontiguousarray(arr).reshape(-1)
    codes = np.empty(flat.size, dtype=f.code_dtype)
    bad = kernels.encode_bits(
        flat.view(int_dtype),
        codes,
        mbits_in,
        bias_in,
        abs_mask,
        f.man_bits,
        f.bias,
        f.emin,
        top_finite,
        f.subnormals,
        _encode_in(f.max_value, arr.dtype),
        inf_code,
        nan_code,
        f.bits - 1,
    )
    if bad:
        _raise_unencodable(flat, f)
    return codes.reshape(arr.shape)


def _raise_unencodable(flat: np.ndarray, f: FloatFormat) -> None:
    """Name the first element `encode` could not give a code (the error path only)."""
    isnan, isinf = np.isnan(flat), np.isinf(flat)
    finite = ~(isnan | isinf)
    with np.errstate(invalid="ignore"):
        off_grid = finite.copy()
        off_grid[finite] = quantize(flat[finite], f, "rne") != flat[finite]
    for mask, why in (
        (isnan & (not f.has_nan), f"is NaN but format {f.name!r} has no NaN encoding"),
        (isinf & (not f.has_inf), f"is infinite but format {f.name!r} has no Inf encoding"),
    ):
        if mask.any():
            raise ValueError(f"x[{int(np.flatnonzero(mask)[0])}] {why}")
    first = int(np.flatnonzero(off_grid)[0]) if off_grid.any() else 0
    raise ValueError(
        f"x[{first}] = {flat[first]!r} is not representable in {f.name!r} "
        "(round it with quantize first)"
    )
