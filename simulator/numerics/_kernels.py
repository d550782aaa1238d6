"""numba kernels behind `quantize`: bit-level rounding of float32/float64 into any `FloatFormat`.

The kernel works on the input's own bit pattern (viewed as a signed integer). Where the target
grid at a magnitude is a sub-grid of the input's grid, rounding is "clear the low `s` bits,
maybe add one target ULP", and a carry into the exponent field is exactly the step into the
next binade. The loop body is branch-free (selects only) so LLVM vectorises it; the rounding
decision is a separate inlined function passed in, so each mode compiles to its own loop.
All integer work is int64 (numba promotes mixed signed/unsigned arithmetic to float).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Shifts are clamped here; a sticky bit keeps every decision exact beyond it (float64 inputs).
_MAX_SHIFT = 62


# ---- rounding decisions --------------------------------------------------------------------
# Each returns 1 to step the magnitude up by one target ULP, 0 to truncate. D is the discarded
# part (s bits; d = D / 2**s), k the kept integer, S the random integer, r its width.


@njit(cache=True, inline="always")
def decide_rne(D, s, k, S, r):
    half = (np.int64(1) << s) >> 1
    return np.int64((half < D) | ((half == D) & (half > 0) & ((k & 1) == 1)))


@njit(cache=True, inline="always")
def decide_rna(D, s, k, S, r):
    half = (np.int64(1) << s) >> 1
    return np.int64((half <= D) & (half > 0))


@njit(cache=True, inline="always")
def decide_rtz(D, s, k, S, r):
    return np.int64(0)


@njit(cache=True, inline="always")
def _floor_scaled(D, s, bits):
    """floor(d * 2**bits) for d = D / 2**s."""
    return (D << max(bits - s, 0)) >> max(s - bits, 0)


@njit(cache=True, inline="always")
def decide_sr(D, s, k, S, r):
    # round away iff floor(d 2^r) + S >= 2^r
    return np.int64(_floor_scaled(D, s, r) + S >= (np.int64(1) << r))


@njit(cache=True, inline="always")
def decide_sr_half(D, s, k, S, r):
    # round away iff floor(d 2^(r+1)) + 2S + 1 >= 2^(r+1)
    return np.int64(_floor_scaled(D, s, r + 1) + 2 * S + 1 >= (np.int64(1) << (r + 1)))


@njit(cache=True, inline="always")
def decide_sr_corrected(D, s, k, S, r):
    # round away iff rne(d 2^r) + S >= 2^r
    s2 = max(s - r, 0)
    q = (D << max(r - s, 0)) >> s2
    rem = D & ((np.int64(1) << s2) - 1)
    half2 = (np.int64(1) << s2) >> 1
    g = q + np.int64((rem > half2) | ((rem == half2) & (half2 > 0) & ((q & 1) == 1)))
    return np.int64(g + S >= (np.int64(1) << r))


# The mode is an integer code (0 rne, 1 rna, 2 rtz, 3 sr, 4 sr_half, 5 sr_corrected), never a
# decide_* function passed in: a cached kernel whose argument is a dispatcher can fail in a
# fresh process ("underlying object has vanished"). Each per-mode kernel below passes its
# code as a constant, so this selection folds to the one decision at compile time.
@njit(cache=True, inline="always")
def decide(mode, D, s, k, S, r):
    return (
        np.int64(mode == 0) * decide_rne(D, s, k, S, r)
        + np.int64(mode == 1) * decide_rna(D, s, k, S, r)
        + np.int64(mode == 3) * decide_sr(D, s, k, S, r)
        + np.int64(mode == 4) * decide_sr_half(D, s, k, S, r)
        + np.int64(mode == 5) * decide_sr_corrected(D, s, k, S, r)
    )


@njit(cache=True, inline="always")
def round_bits(b, S, r, mode, params):
    """One element of `_quantize_loop`: the raw float bits b (as int64) rounded with random
    integer S (ignored by the deterministic modes); returns (the result's bits, sign
    included; whether b is a NaN). `params` as `_quantize_loop` describes them."""
    (
        mbits,
        bias_in,
        man_t,
        emin_t,
        low_lsb,
        max_abs,
        ovf_abs,
        inf_to,
        nan_abs,
        abs_mask,
        sign_mask,
    ) = params
    one = np.int64(1)
    e_ones = abs_mask >> mbits
    a = b & abs_mask
    E = a >> mbits
    mfield = a & ((one << mbits) - 1)
    M = mfield | (np.int64(E > 0) << mbits)
    e_eff = max(E, 1) - bias_in
    e_top = E - bias_in  # for input subnormals this is below every target's emin
    lsb = e_top - man_t if e_top >= emin_t else low_lsb
    shift = max(lsb - e_eff + mbits, 0)
    # Beyond _MAX_SHIFT keep the top bits and OR the rest into a sticky bit.
    t = min(max(shift - _MAX_SHIFT, 0), _MAX_SHIFT)
    Mr = (M >> t) | np.int64((M & ((one << t) - 1)) != 0)
    s = min(shift, _MAX_SHIFT)
    D = Mr & ((one << s) - 1)
    k = Mr >> s
    up = decide(mode, D, s, k, S, r)
    # Rounded within the input's binade (s <= mbits), or all significand bits discarded.
    inside = ((a >> s) << s) + (up << s)
    if lsb >= 1 - bias_in:
        pow2 = (lsb + bias_in) << mbits
    else:
        pow2 = one << max(lsb - (1 - bias_in - mbits), 0)
    res = inside if s <= mbits else up * pow2
    res = ovf_abs if res > max_abs else res
    special = e_ones == E
    isnan = special & (mfield != 0)
    res = (nan_abs if isnan else inf_to) if special else res
    return res | (b & sign_mask), isnan


@njit(cache=True, inline="always")
def _quantize_loop(bits, out, rand, r, mode, params):
    """Quantize raw float bits `bits` into `out` (same int dtype).

    Returns (NaN inputs seen, random integers outside [0, 2**r)); the caller turns either
    into an error where it matters, so valid input costs no extra pass over the data.

    Args:
        rand: one random integer per element. Deterministic modes ignore it but pass any
            array of n elements (a plain indexed load keeps the loop vectorised, where a
            branch or a stride does not); their bad-word count is meaningless.
        r: random bits; mode: the code `decide` takes (a constant in each per-mode kernel).
        params: the tuple (mbits, bias_in, man_t, emin_t, low_lsb, max_abs, ovf_abs, inf_to,
            nan_abs, abs_mask, sign_mask), described here:
        mbits, bias_in: the input float's mantissa width and bias.
        man_t, emin_t: target mantissa width and smallest normal exponent.
        low_lsb: exponent of the target grid step below the smallest normal (emin_t - man_t
            with subnormals; emin_t without, so tiny values round on {0, smallest normal}).
        max_abs: target's largest finite value (input encoding); ovf_abs: what overflow becomes.
        inf_to, nan_abs: what Inf and NaN inputs become (abs bits); masks for abs and sign.
    The element's rounding is `round_bits`.
    """
    n = bits.shape[0]
    nans = 0
    bad_rand = 0
    limit = np.int64(1) << r
    for i in prange(n):
        b = np.int64(bits[i])
        S = np.int64(rand[i])
        bad_rand += np.int64((S < 0) | (limit <= S))
        res, isnan = round_bits(b, S, r, mode, params)
        nans += np.int64(isnan)
        out[i] = res
    return nans, bad_rand


# One cached parallel kernel per mode: the mode is a constant of each body, so LLVM drops the
# other modes' decisions from the loop (a runtime mode costs about 2x in the loop).
@njit(parallel=True, cache=True)
def quantize_rne(bits, out, rand, r, params):
    return _quantize_loop(bits, out, rand, r, 0, params)


@njit(parallel=True, cache=True)
def quantize_rna(bits, out, rand, r, params):
    return _quantize_loop(bits, out, rand, r, 1, params)


@njit(parallel=True, cache=True)
def quantize_rtz(bits, out, rand, r, params):
    return _quantize_loop(bits, out, rand, r, 2, params)


@njit(parallel=True, cache=True)
def quantize_sr(bits, out, rand, r, params):
    return _quantize_loop(bits, out, rand, r, 3, params)


@njit(parallel=True, cache=True)
def quantize_sr_half(bits, out, rand, r, params):
    return _quantize_loop(bits, out, rand, r, 4, params)


@njit(parallel=True, cache=True)
def quantize_sr_corrected(bits, out, rand, r, params):
    return _quantize_loop(bits, out, rand, r, 5, params)


KERNELS = {
    "rne": quantize_rne,
    "rna": quantize_rna,
    "rtz": quantize_rtz,
    "sr": quantize_sr,
    "sr_half": quantize_sr_half,
    "sr_corrected": quantize_sr_corrected,
}


@njit(parallel=True, cache=True)
def encode_bits(
    bits,
    out,
    mbits,
    bias_in,
    abs_mask,
    man_t,
    bias_t,
    emin_t,
    top_field_t,
    subnormals_t,
    max_abs,
    inf_code,
    nan_code,
    sign_shift,
):
    """Codes of the target format for raw float bits whose values lie on the target's grid.

    Returns the number of elements that are not representable (off the grid, out of range,
    or a special the format lacks: inf_code / nan_code < 0 mean "no such code"). Those get
    code 0; the caller raises.
    """
    n = bits.shape[0]
    one = np.int64(1)
    e_ones = abs_mask >> mbits
    bad = 0
    for i in prange(n):
        b = np.int64(bits[i])
        a = b & abs_mask
        sign = np.int64(b < 0) << sign_shift
        E = a >> mbits
        mfield = a & ((one << mbits) - 1)
        code = np.int64(0)
        ok = True
        if E == e_ones:
            special = nan_code if mfield != 0 else inf_code
            ok = special >= 0
            code = special
        elif a != 0:
            if a > max_abs:
                ok = False
            M = mfield | (np.int64(E > 0) << mbits)
            lsb_in = max(E, 1) - bias_in - mbits
            # exponent of the leading one (a loop only for subnormal inputs)
            top = E - bias_in
            if E == 0:
                top = lsb_in
                m = M
                while m > 1:
                    m >>= 1
                    top += 1
            if top >= emin_t:
                lsb_t = top - man_t
                e_field = top + bias_t
            elif subnormals_t:
                lsb_t = emin_t - man_t
                e_field = np.int64(0)
            else:
                ok = False
                lsb_t = top
                e_field = np.int64(0)
            shift = lsb_t - lsb_in
            if shift > 0:
                if shift > 62 or (M & ((one << shift) - 1)) != 0:
                    ok = False
                mant = M >> min(shift, 62)
            else:
                mant = M << min(-shift, 62)
            if e_field > top_field_t:
                ok = False
            code = (e_field << man_t) | (mant & ((one << man_t) - 1))
        if ok:
            out[i] = code | sign
        else:
            out[i] = 0
            bad += 1
    return bad
