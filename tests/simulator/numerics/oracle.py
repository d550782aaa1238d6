"""A slow, exact reference of docs/numerics.md in Python Fractions: the tests' independent oracle.

It shares nothing with the numba kernels but the format descriptions.
"""

from __future__ import annotations

import math
from fractions import Fraction

from simulator.numerics.formats import FloatFormat, InfNan, get_format


def _floor_log2(m: Fraction) -> int:
    e = m.numerator.bit_length() - m.denominator.bit_length()
    if Fraction(2) ** e > m:
        e -= 1
    if Fraction(2) ** (e + 1) <= m:
        e += 1
    return e


def _rne_int(v: Fraction) -> int:
    k = math.floor(v)
    d = v - k
    return k + (1 if d > Fraction(1, 2) or (d == Fraction(1, 2) and k % 2 == 1) else 0)


def round_ref(
    x: float, fmt: str | FloatFormat, rounding: str, S: int | None = None, r: int | None = None
) -> float:
    f = get_format(fmt)
    if math.isnan(x):
        return math.nan
    sign = math.copysign(1.0, x)
    if math.isinf(x):
        if f.inf_nan is InfNan.IEEE:
            return x
        if f.inf_nan is InfNan.FN and not f.saturate:
            return math.nan
        return sign * f.max_value
    m = Fraction(abs(x))
    if m == 0:
        return x
    e = _floor_log2(m)
    if e >= f.emin:
        lsb = e - f.man_bits
    elif f.subnormals:
        lsb = f.emin - f.man_bits
    else:  # no subnormals: round between 0 and the smallest normal
        lsb = f.emin
    u = Fraction(2) ** lsb
    t = m / u
    k = math.floor(t)
    d = t - k
    if rounding == "rne":
        up = d > Fraction(1, 2) or (d == Fraction(1, 2) and k % 2 == 1)
    elif rounding == "rna":
        up = d >= Fraction(1, 2)
    elif rounding == "rtz":
        up = False
    elif rounding == "sr":
        up = math.floor(d * 2**r) + S >= 2**r
    elif rounding == "sr_half":
        up = math.floor(d * 2 ** (r + 1)) + 2 * S + 1 >= 2 ** (r + 1)
    elif rounding == "sr_corrected":
        up = _rne_int(d * 2**r) + S >= 2**r
    else:
        raise ValueError(rounding)
    q = (k + int(up)) * u
    if q > Fraction(f.max_value):
        if rounding == "rtz" or f.saturate:
            return sign * f.max_value
        return sign * math.inf if f.inf_nan is InfNan.IEEE else math.nan
    return sign * float(q)
