"""numba kernels behind `quantize`: bit-level rounding of float32/float64 into any `FloatFormat`.

The kernels work on the input's own bit pattern (viewed as a signed integer): the target grid at a
magnitude is a sub-grid of the input's grid, so rounding is "clear the low `shift` bits, maybe add
one target ULP", and a carry into the exponent field is exactly the step to the next binade.
All integer work is int64 (numba promotes mixed signed/unsigned arithmetic to float).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Rounding-mode codes shared with quantize.py.
RNE, RNA, RTZ, SR, SR_HALF, SR_CORRECTED = 0, 1, 2, 3, 4, 5

# What a finite overflow becomes.
OVF_SATURATE, OVF_INF, OVF_NAN = 0, 1, 2


@njit(cache=True, inline="always")
def _round_up(D, shift, k_odd, mode, S, r):
    """Decide whether to step the magnitude up by one target ULP.

    D is the discarded part (an integer of `shift` bits), so the discarded fraction is
    d = D / 2**shift with 0 <= d < 1; S is the random integer for the stochastic modes.
    """
    if mode == RTZ:
        return 0
    if mode == RNE or mode == RNA:
        if shift > 62:  # D < 2**53 is then far below half an ULP
            return 0
        half = np.int64(1) << (shift - 1)
        if D > half:
            return 1
        if D == half:
            return 1 if (mode == RNA or k_odd == 1) else 0
        return 0
    if mode == SR or mode == SR_HALF:
        rr = r if mode == SR else r + 1
        # floor(d * 2**rr)
        if shift <= rr:
            f = D << (rr - shift)
        elif shift - rr > 62:
            f = np.int64(0)
        else:
            f = D >> (shift - rr)
        if mode == SR:
            return 1 if f + S >= (np.int64(1) << r) else 0
        return 1 if f + 2 * S + 1 >= (np.int64(1) << rr) else 0
    # SR_CORRECTED: rne(d * 2**r) + S >= 2**r
    if shift <= r:
        g = D << (r - shift)
    elif shift - r > 62:
        g = np.int64(0)
    else:
        s2 = shift - r
        q = D >> s2
        rem = D & ((np.int64(1) << s2) - 1)
        half2 = np.int64(1) << (s2 - 1)
        if rem > half2 or (rem == half2 and (q & 1) == 1):
            q += 1
        g = q
    return 1 if g + S >= (np.int64(1) << r) else 0


@njit(cache=True, inline="always")
def _pow2_bits(p, mbits_in, bias_in):
    """Bit pattern (input encoding) of 2**p; p is within the input format's range."""
    if p >= 1 - bias_in:
        return np.int64(p + bias_in) << mbits_in
    return np.int64(1) << (p - (1 - bias_in - mbits_in))


@njit(cache=True, inline="always")
def _quantize_one(
    raw,
    mbits_in,
    ebits_in,
    bias_in,
    abs_mask,
    sign_bit,
    man_t,
    emin_t,
    subnormals_t,
    max_abs,
    overflow_mode,
    inf_to,
    nan_abs,
    mode,
    S,
    r,
):
    """Round one value given as its raw bits; returns (bits, nan_seen)."""
    raw = np.int64(raw)
    neg = raw < 0
    a = raw & abs_mask
    sign = sign_bit if neg else np.int64(0)
    e_field = a >> mbits_in
    e_all_ones = (np.int64(1) << ebits_in) - 1
    if e_field == e_all_ones:
        if (a & ((np.int64(1) << mbits_in) - 1)) != 0:  # NaN
            return nan_abs | sign, 1
        return inf_to | sign, 0  # Inf: kept, saturated to max, or NaN as the format says
    if a == 0:
        return raw, 0
    m_field = a & ((np.int64(1) << mbits_in) - 1)
    if e_field > 0:
        e_eff = e_field - bias_in
        M = m_field | (np.int64(1) << mbits_in)
        e_top = e_eff
    else:  # input subnormal: always below the target's normal range (formats fit float32)
        e_eff = 1 - bias_in
        M = m_field
        e_top = np.int64(-100000)
    if e_top >= emin_t:
        lsb_exp = e_top - man_t
    elif subnormals_t:
        lsb_exp = emin_t - man_t
    else:  # no subnormals: round on {0, smallest normal}
        lsb_exp = emin_t
    shift = lsb_exp - (e_eff - mbits_in)
    if shift <= 0:
        res = a
    elif shift <= mbits_in:
        D = M & ((np.int64(1) << shift) - 1)
        k_odd = (M >> shift) & 1
        up = _round_up(D, shift, k_odd, mode, S, r)
        res = ((a >> shift) << shift) + (np.int64(up) << shift)
    else:  # the whole significand is discarded: k = 0
        up = _round_up(M, shift, np.int64(0), mode, S, r)
        res = _pow2_bits(lsb_exp, mbits_in, bias_in) if up == 1 else np.int64(0)
    if res > max_abs:
        if mode == RTZ or overflow_mode == OVF_SATURATE:
            res = max_abs  # truncation never rounds past the largest finite (IEEE 754 7.4)
        elif overflow_mode == OVF_INF:
            res = e_all_ones << mbits_in
        else:
            res = nan_abs
    return res | sign, 0


@njit(parallel=True, cache=True)
def quantize_bits(
    bits,
    out,
    mbits_in,
    ebits_in,
    bias_in,
    abs_mask,
    sign_bit,
    man_t,
    emin_t,
    subnormals_t,
    max_abs,
    overflow_mode,
    inf_to,
    nan_abs,
    mode,
    rand,
    r,
):
    """Quantize every element of `bits` (raw float bits) into `out`; returns the NaN count.

    `rand` holds one random integer per element for the stochastic modes (ignored otherwise;
    pass a length-0 array).
    """
    n = bits.shape[0]
    use_rand = rand.shape[0] == n
    nans = 0
    for i in prange(n):
        S = np.int64(rand[i]) if use_rand else np.int64(0)
        v, isnan = _quantize_one(
            bits[i],
            mbits_in,
            ebits_in,
            bias_in,
            abs_mask,
            sign_bit,
            man_t,
            emin_t,
            subnormals_t,
            max_abs,
            overflow_mode,
            inf_to,
            nan_abs,
            mode,
            S,
            r,
        )
        out[i] = v
        nans += isnan
    return nans
