"""The tensor core's dot-product-accumulate rule over whole tiles, in numba.

`tree_accumulate(A, B, acc, ...)` runs, for every output (p, k), the sequence of steps
s = 0..S-1 of `simulator.numerics.dot_product.dot_product_step` (mode `tree`): the dp_width
exact products A[p, s, :] x B[k, s, :] and the accumulator are truncated onto one grid
2**(E_max - align_bits), summed exactly, and rounded once into the accumulator format. It is
the same rule, written as compiled loop nests instead of one numpy call per step, so a tile
costs no Python per MAC. `tests/simulator/functional/test_tree.py` and `test_tree_fast.py`
check it against `dot_product_step` bit for bit, and the two kernels against each other.

A step whose products are all zero leaves the accumulator unchanged (rounding a value already
in the format is the identity in every mode), so zero padding and skipped zero operands cost
nothing here and change nothing.

Two kernels. `_tree_rne` (RNE per step, align_bits from the accumulator's width to 49: the
chip) works on float64 values, vectorised over the outputs k of a row: a step on which no
addend can fall below the grid (bounds from the largest slots and smallest LSBs of the step's
A and B operands and the accumulator's magnitude) is the exact float64 sum rounded once on
its bit pattern; any other step runs the integer rule (`_step_exact`). `_tree` (any
deterministic rounding, any align_bits) keeps the accumulator as an integer significand and
exponent and runs the integer rule on every step, with a one-pass exact sum where the grid
cannot be reached. B can be decoded once (`prepare_operand`) and reused across calls.
`tree_accumulate_words` runs `_tree_rne` on the accumulator format's words where they lie
(a tile that does not finish: its words stay in the buffer), decoding a row's words at its
start and encoding them at its end, with no float64 copy in and out.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from functools import lru_cache
from typing import NamedTuple

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange
from numba.core import types
from numba.extending import intrinsic

from simulator.functional.idle_cores import IdleCores
from simulator.numerics import decode, encode, get_format
from simulator.numerics._kernels import decide


def _env_int(name: str, default: int, least: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text, 0)
    except ValueError:
        value = least - 1
    if value < least:
        raise ValueError(f"environment variable {name}={text!r}: needs an integer >= {least}")
    return value


# Tensor-core tiles run on the caller's numba threads (one inside the executor) unless
# `tile_threads` (`fp8sim verify --threads`, FP8SIM_THREADS) says otherwise: N threads, or
# `auto` (the executor's default), as many as the other processes leave CPUs idle, one where
# they leave none (`idle_cores`). Only tiles of at least FP8SIM_PARALLEL_MACS
# (default 4096) products are split. A parallel launch waits for its slowest thread: with
# other jobs holding the second core of the 2-core machine, two threads made the whole step
# 3-6x slower, with the core idle they pay (docs/functional.md, "Speed"). Results are
# identical either way: threads split rows.
AUTO = "auto"
_tiles: dict = {"threads": 1, "min_macs": 4096}
_idle = IdleCores()
# numba's thread count before a tile kernel changed it; it stays changed for the next tile
# that wants the same (setting it costs microseconds, a tile call a few more) and goes back
# when a tile wants the caller's count or the `tile_threads` block ends (`settle_threads`)
_lent: list[int | None] = [None]


def _use_threads(n: int | None) -> None:
    """numba threads for the next tile kernel: n, or None for the caller's."""
    if n is None:
        settle_threads()
        return
    current = numba.get_num_threads()
    if current != n:
        if _lent[0] is None:
            _lent[0] = current
        numba.set_num_threads(n)


def settle_threads() -> None:
    """Give numba back the thread count the tiles found."""
    if _lent[0] is not None:
        numba.set_num_threads(_lent[0])
        _lent[0] = None


def max_threads() -> int:
    """The most numba threads a tile may use (NUMBA_NUM_THREADS, fixed at start-up)."""
    return int(numba.config.NUMBA_NUM_THREADS)


def parse_threads(text: str, what: str) -> int | str:
    """`auto` or a thread count in 1..max_threads() from text; a ValueError naming `what`."""
    value = text.strip().lower()
    if value == AUTO:
        return AUTO
    try:
        n = int(value, 10)
    except ValueError:
        raise ValueError(f"{what} must be 'auto' or a number of threads, not {text!r}") from None
    return _checked_count(n, what)


def _checked_count(n: int, what: str) -> int:
    if not 1 <= n <= max_threads():
        raise ValueError(
            f"{what} must be between 1 and {max_threads()} (NUMBA_NUM_THREADS), not {n}"
        )
    return n


@contextmanager
def tile_threads(n: int | str | None):
    """Within the block, tiles of at least FP8SIM_PARALLEL_MACS products run on n numba
    threads, or on as many as there are idle CPUs (`auto`); None: FP8SIM_THREADS, else
    `auto`. A bad value is a ValueError naming it."""
    if n is None:
        what = "environment variable FP8SIM_THREADS"
        threads = parse_threads(os.environ.get("FP8SIM_THREADS", "") or AUTO, what)
    elif isinstance(n, str):
        threads = parse_threads(n, "threads")
    else:
        threads = _checked_count(n, "threads")
    before = dict(_tiles)
    _tiles.update(threads=threads, min_macs=_env_int("FP8SIM_PARALLEL_MACS", 4096, 1))
    try:
        yield
    finally:
        settle_threads()
        _tiles.update(before)


def _threads_for(work: int) -> int | None:
    """The numba threads a tile of `work` products runs on (None: the caller's)."""
    if work < _tiles["min_macs"]:
        return None
    n = _tiles["threads"]
    if n == AUTO:
        n = _idle.threads(max_threads())
    return n if n > 1 else None


ROUNDING_CODE = {"rne": 0, "rna": 1, "rtz": 2, "sr": 3, "sr_half": 4, "sr_corrected": 5}


@lru_cache(maxsize=8)
def operand_tables(fmt: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per 8-bit code: integer significand, exponent of its LSB, slot exponent, sign (0/1)."""
    f = get_format(fmt)
    vals = decode(np.arange(256, dtype=np.uint8), f).astype(np.float64)
    if not np.all(np.isfinite(vals)):
        raise ValueError(f"operand format {fmt}: the functional tensor core takes finite formats")
    _, exp = np.frexp(np.abs(vals))  # |v| = mant * 2**exp, mant in [0.5, 1)
    top = exp.astype(np.int64) - 1
    lsb = np.where(top >= f.emin, top - f.man_bits, f.emin - f.man_bits)
    sig = np.where(vals != 0, np.ldexp(np.abs(vals), -lsb), 0).astype(np.int64)
    slot = np.maximum(top, f.emin) + 1
    sign = (np.signbit(vals)).astype(np.int64)
    return sig, lsb.astype(np.int64), slot.astype(np.int64), sign


@lru_cache(maxsize=8)
def acc_params(fmt: str) -> tuple[int, int, int, float, int]:
    """(man_bits, emin, exponent of the grid below emin, largest value, saturate) of `fmt`."""
    f = get_format(fmt)
    if f.inf_nan.name != "NONE" or not f.saturate:
        raise ValueError(f"accumulator format {fmt}: the functional model takes saturating formats")
    low = f.emin - f.man_bits if f.subnormals else f.emin
    return f.man_bits, f.emin, low, float(f.max_value), 1


@njit(cache=True, inline="always")
def _shift(sig, lsb, g):
    d = lsb - g
    if d >= 0:
        return sig << d
    if d <= -63:
        return np.int64(0)
    return sig >> (-d)  # truncation of the magnitude toward zero


@njit(cache=True, inline="always")
def _bitlen(m):
    """Bits of a positive integer below 2**62 (no float round trip)."""
    n = np.int64(0)
    if m >= np.int64(1) << 32:
        m >>= 32
        n += 32
    if m >= 1 << 16:
        m >>= 16
        n += 16
    if m >= 1 << 8:
        m >>= 8
        n += 8
    if m >= 1 << 4:
        m >>= 4
        n += 4
    if m >= 1 << 2:
        m >>= 2
        n += 2
    if m >= 1 << 1:
        m >>= 1
        n += 1
    return n + m


@njit(cache=True, inline="always")
def _canon(k, e, man, emin, emax):
    """(significand, LSB exponent) of the nonnegative value k * 2**e on the accumulator grid,
    significand of man + 1 bits (fewer only below emin), saturated at the largest value."""
    if k == 0:
        return np.int64(0), np.int64(0)
    top = e + _bitlen(k) - 1
    if top > emax:
        return (np.int64(1) << (man + 1)) - 1, emax - man
    lc = top - man if top >= emin else emin - man
    if e >= lc:
        return k << (e - lc), lc
    return k >> (lc - e), lc  # only exact here: the caller rounded onto the grid


@njit(cache=True, inline="always")
def _round_int(s, g, mode, man, emin, low, emax):
    """s * 2**g (exact) rounded into the accumulator format: (signed significand, LSB)."""
    if s == 0:
        return np.int64(0), np.int64(0)
    neg = s < 0
    m = -s if neg else s
    top = g + _bitlen(m) - 1
    lsb = top - man if top >= emin else low
    sh = lsb - g
    if sh <= 0:
        k, e = m, g
    else:
        D = m & ((np.int64(1) << sh) - 1)
        k = (m >> sh) + decide(mode, D, np.int64(sh), m >> sh, np.int64(0), np.int64(0))
        e = lsb
    k, e = _canon(k, e, man, emin, emax)
    return (-k if neg else k), e


@njit(parallel=True, cache=True)
def _tree(A, Bsig, Blsb, Bslot, Bsgn, Bmax, Bmin, acc, active, sig, lsb, slot, sgn, align, mode,
          man, emin, low, emax_f):  # fmt: skip
    P, S, D = A.shape
    K = Bsig.shape[0]
    big = np.int64(-(1 << 40))
    for p in prange(P):
        # A's nonzero operands of each step, compacted: zero products are skipped (they change
        # no step: zero addends neither set the grid nor add bits)
        cnt = np.zeros(S, np.int64)
        idx = np.empty((S, D), np.int64)
        asig = np.empty((S, D), np.int64)
        alsb = np.empty((S, D), np.int64)
        aslot = np.empty((S, D), np.int64)
        asgn = np.empty((S, D), np.int64)
        amax = np.empty(S, np.int64)  # largest slot and smallest LSB of the step's operands
        amin = np.empty(S, np.int64)
        for s in range(S):
            n = 0
            amax[s] = big
            amin[s] = -big
            for d in range(D):
                ca = A[p, s, d]
                if sig[ca] != 0:
                    idx[s, n] = d
                    asig[s, n] = sig[ca]
                    alsb[s, n] = lsb[ca]
                    aslot[s, n] = slot[ca]
                    asgn[s, n] = sgn[ca]
                    amax[s] = max(amax[s], slot[ca])
                    amin[s] = min(amin[s], lsb[ca])
                    n += 1
            cnt[s] = n
        for k in range(K):
            if not active[p, k]:
                continue
            v = acc[p, k]
            # the accumulator as (signed significand, LSB exponent): no float work per step
            vs, ve = np.int64(0), np.int64(0)
            if v != 0.0:
                _, ev = math.frexp(abs(v))
                vs, ve = _canon(np.int64(math.ldexp(abs(v), man + 1 - ev)), ev - man - 1,
                                man, emin, emax_f)  # fmt: skip
                if v < 0:
                    vs = -vs
            for s in range(S):
                n = cnt[s]
                if n == 0:
                    continue
                # Fast path: when even the smallest possible product LSB and the accumulator's
                # LSB lie on the grid of the largest possible slot, the tree truncates nothing
                # and its sum is the exact sum (one pass, no slot search).
                ub = amax[s] + np.int64(Bmax[k, s])
                if vs != 0 and ve + man + 1 > ub:
                    ub = ve + man + 1
                base = amin[s] + np.int64(Bmin[k, s])
                if base >= ub - align and (vs == 0 or ve >= ub - align):
                    if vs != 0 and ve < base:
                        base = ve
                    tot = np.int64(0)
                    for j in range(n):
                        d = idx[s, j]
                        bs = np.int64(Bsig[k, s, d])
                        if bs != 0:
                            t = (asig[s, j] * bs) << (alsb[s, j] + np.int64(Blsb[k, s, d]) - base)
                            tot += -t if asgn[s, j] != Bsgn[k, s, d] else t
                    if vs != 0:
                        tot += vs << (ve - base)
                    vs, ve = _round_int(tot, base, mode, man, emin, low, emax_f)
                    continue
                emax = big
                for j in range(n):
                    d = idx[s, j]
                    if Bsig[k, s, d] != 0:
                        e = aslot[s, j] + np.int64(Bslot[k, s, d])
                        if e > emax:
                            emax = e
                if emax == big:
                    continue  # no nonzero product: the accumulator is unchanged
                if vs != 0:
                    vslot = ve + man + 1
                    if vslot > emax:
                        emax = vslot
                g = emax - align
                tot = np.int64(0)
                for j in range(n):
                    d = idx[s, j]
                    bs = np.int64(Bsig[k, s, d])
                    if bs != 0:
                        t = _shift(asig[s, j] * bs, alsb[s, j] + np.int64(Blsb[k, s, d]), g)
                        tot += -t if asgn[s, j] != Bsgn[k, s, d] else t
                if vs != 0:
                    t = _shift(-vs if vs < 0 else vs, ve, g)
                    tot += -t if vs < 0 else t
                vs, ve = _round_int(tot, g, mode, man, emin, low, emax_f)
            acc[p, k] = math.ldexp(float(vs), ve) if vs != 0 else 0.0


@njit(cache=True)
def _step_exact(x, a, b, sig, lsb, slot, sgn, align, mode, man, emin, low, emax_f):
    """One step of the integer rule: accumulator value x, operand codes a[:], b[:]."""
    big = np.int64(-(1 << 40))
    vs, ve = np.int64(0), np.int64(0)
    if x != 0.0:
        _, ev = math.frexp(abs(x))
        vs, ve = _canon(np.int64(math.ldexp(abs(x), man + 1 - ev)), ev - man - 1,
                        man, emin, emax_f)  # fmt: skip
        if x < 0:
            vs = -vs
    emax = big
    for d in range(a.shape[0]):
        if sig[a[d]] != 0 and sig[b[d]] != 0:
            e = slot[a[d]] + slot[b[d]]
            if e > emax:
                emax = e
    if emax == big:
        return x + 0.0  # no nonzero product: unchanged (a zero is +0)
    if vs != 0:
        vslot = ve + man + 1
        if vslot > emax:
            emax = vslot
    g = emax - align
    tot = np.int64(0)
    for d in range(a.shape[0]):
        if sig[a[d]] != 0 and sig[b[d]] != 0:
            t = _shift(sig[a[d]] * sig[b[d]], lsb[a[d]] + lsb[b[d]], g)
            tot += -t if sgn[a[d]] != sgn[b[d]] else t
    if vs != 0:
        t = _shift(-vs if vs < 0 else vs, ve, g)
        tot += -t if vs < 0 else t
    vs, ve = _round_int(tot, g, mode, man, emin, low, emax_f)
    return math.ldexp(float(vs), ve) if vs != 0 else 0.0


@intrinsic
def _f2i(typingctx, x):
    """The bits of a float64 as an int64 (a bitcast, vectorisable)."""
    if x != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def _i2f(typingctx, x):
    """The float64 with the bits of an int64."""
    if x != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


# 2**e for e in [-POW2_OFF, POW2_OFF): the fast path's bounds as exact powers of two
POW2_OFF = 256


@lru_cache(maxsize=8)
def fast_tables(fmt: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per 8-bit code: float64 value, slot (-4096 for zero), LSB (+4096 for zero); and 2**e."""
    sig, lsb, slot, _ = operand_tables(fmt)
    val = decode(np.arange(256, dtype=np.uint8), fmt).astype(np.float64)
    slotz = np.where(sig != 0, slot, -4096).astype(np.int64)
    lsbz = np.where(sig != 0, lsb, 4096).astype(np.int64)
    pow2 = np.ldexp(1.0, np.arange(-POW2_OFF, POW2_OFF))
    return val, slotz, lsbz, pow2


@njit(cache=True)
def _prep_b(B, val, slotz, lsbz, pow2):
    """B (K, S, D) codes decoded into one (S, D + 3, K) float64 array, unit stride over k:
    rows 0..D-1 the operands' values; per (step, k), row D the operands' span (largest slot -
    smallest LSB; -4096 when all are zero), rows D + 1 and D + 2 2**largest slot and
    2**smallest LSB (0 and inf when all are zero: every bound passes). One array, so the
    kernel's loops over k read few arrays (LLVM vectorises them with few alias checks)."""
    K, S, D = B.shape
    Bv = np.empty((S, D + 3, K), np.float64)
    for s in range(S):
        for k in range(K):
            h = np.int64(-4096)
            lw = np.int64(4096)
            for d in range(D):
                c = B[k, s, d]
                Bv[s, d, k] = val[c]
                h = max(h, slotz[c])
                lw = min(lw, lsbz[c])
            if h == -4096:  # no nonzero operand: no product, every bound passes
                Bv[s, D, k], Bv[s, D + 1, k], Bv[s, D + 2, k] = -4096.0, 0.0, np.inf
            else:
                Bv[s, D, k] = float(h - lw)
                Bv[s, D + 1, k] = pow2[h + POW2_OFF]
                Bv[s, D + 2, k] = pow2[lw + POW2_OFF]
    return Bv


@njit(cache=True, inline="always")
def _rne_bits(w, db, rnd, keep, absm, maxbits, minbits, halfbits):
    """The float64 bits w rounded RNE into the accumulator format (saturating, below the
    smallest normal to 0 or it), as float64; a zero result is +0."""
    m = w & absm
    r = (m + rnd + ((m >> db) & 1)) & keep
    r = min(r, maxbits)
    r = (minbits if m > halfbits else np.int64(0)) if m < minbits else r
    return _i2f((r | (w & ~absm)) if r != 0 else np.int64(0))


@njit(cache=True, inline="always")
def _a_bounds(A, p, s, slotz, lsbz, fman, femask, foff):
    """Largest slot and smallest LSB of A[p, s]'s nonzero operands (-4096, 4096 if none).
    With fman >= 0 (`code_fields`: slot = exponent field + foff, LSB = slot - fman - 1, field
    0 zero) from the codes' bits in 32-bit lanes, which LLVM vectorises (a tenth of the tile
    time, against two table loads per code); else from the tables."""
    if fman < 0:
        h = np.int64(-4096)
        lw = np.int64(4096)
        for d in range(A.shape[2]):
            c = A[p, s, d]
            h = max(h, slotz[c])
            lw = min(lw, lsbz[c])
        return h, lw
    hi = np.int32(-4096)
    lo = np.int32(4096)
    sh, mask = np.int32(fman), np.int32(femask)
    for d in range(A.shape[2]):
        e = np.int32((np.int32(A[p, s, d]) >> sh) & mask)
        hi = max(hi, e if e != 0 else np.int32(-4096))
        lo = min(lo, e if e != 0 else np.int32(4096))
    if hi == -4096:
        return np.int64(-4096), np.int64(4096)
    return np.int64(hi) + foff, np.int64(lo) + foff - fman - 1


@lru_cache(maxsize=8)
def code_fields(fmt: str) -> tuple[int, int, int]:
    """(mantissa bits, exponent-field mask, slot offset) of an 8-bit operand format whose every
    code has slot = exponent field + offset and LSB = slot - mantissa bits - 1, field 0 being
    zero (no subnormals), checked against `operand_tables` code by code; (-1, 0, 0) for
    other formats (the kernel then reads the tables)."""
    f = get_format(fmt)
    sig, lsb, slot, _ = operand_tables(fmt)
    codes = np.arange(256)
    field = (codes >> f.man_bits) & ((1 << f.exp_bits) - 1)
    nz = sig != 0
    off = 1 - f.bias
    if (
        f.bits == 8
        and np.array_equal(nz, field != 0)
        and np.array_equal(slot[nz], field[nz] + off)
        and np.array_equal(lsb[nz], slot[nz] - f.man_bits - 1)
    ):
        return f.man_bits, (1 << f.exp_bits) - 1, off
    return -1, 0, 0


@njit(parallel=True, cache=True, fastmath={"contract"})
def _tree_rne(A, B, Bv, acc, active, words, wmode, wfmt, val, slotz, lsbz, pow2, sig, lsb,
              slot, sgn, align, man, emin, low, emax_f, maxbits, minbits, halfbits, fman, femask,
              foff):  # fmt: skip
    """RNE steps with an exact-sum fast path vectorised over the outputs k of a row p.

    The accumulators: wmode 0, the float64 values acc (P, K); else the format's words
    `words` (P, K) (any strides, e.g. a transposed view of a buffer), decoded at a row's start
    (wmode 1) or zeros (wmode 2: every word the tile does not store is written 0, as the
    float64 path's zeros would be encoded), encoded at its end (`wfmt`: bias, mantissa and
    exponent bits, a format without subnormals; its values are exact in float64).

    A step of output (p, k) takes the fast path when no addend can fall below the grid. With
    hA, lA (hB, lB) the largest slot and smallest LSB of A's (B's) nonzero operands of the
    step: span_A + span_B <= align (span = h - l) and the accumulator x is zero or has
    2**(hA + hB - align + man) <= |x| < 2**(lA + lB + align) (its LSB on the grid of the
    largest possible slot, its slot not lifting the grid above the products' LSBs). Then every
    addend is a multiple of 2**(U - align) below 2**U (U the largest possible slot), so the
    float64 sum is exact in any order, the tree truncates nothing, and the rule is one RNE of
    that sum into the accumulator format (done on the float64 bits: no subnormals, saturating).
    Other steps run the integer rule (`_step_exact`): the fast pass marks them NaN in y (the
    accumulators are finite), so its loop over k stores to one array only. `contract` lets
    LLVM fuse a product into a sum (FMA): on a fast-path step the products and every partial
    sum are exact, so fusing changes no bit, and other steps' fast values are discarded."""
    P, S, D = A.shape
    K = B.shape[0]
    db = np.int64(52) - man  # float64 fraction bits below the accumulator's significand
    rnd = (np.int64(1) << (db - 1)) - 1
    keep = ~((np.int64(1) << db) - 1)
    absm = np.int64(0x7FFFFFFFFFFFFFFF)
    fa = float(align)
    for p in prange(P):
        # the row's outputs from its first to its last active one, k0 <= k < k1: only they
        # are computed in the dp = 8 loop (a gated output is never stored); none active:
        # the row is skipped
        k0 = 0
        while k0 < K and not active[p, k0]:
            k0 += 1
        if wmode == 2:  # starting from zeros: what is not stored below is a zero
            for k in range(K):
                words[p, k] = 0
        if k0 == K:
            continue
        k1 = K
        while not active[p, k1 - 1]:
            k1 -= 1
        # unsigned bounds: with a signed start numba tests every index for wraparound, and
        # the loop no longer vectorises (3x slower)
        k0u, k1u = np.uint64(k0), np.uint64(k1)
        x = np.empty(K, np.float64)
        if wmode == 0:
            for k in range(K):
                x[k] = acc[p, k]
        elif wmode == 1:
            for k in range(K):
                x[k] = word_value(words[p, k], wfmt[0], wfmt[1], wfmt[2])
        else:
            for k in range(K):
                x[k] = 0.0
        y = np.empty(K, np.float64)
        t = np.empty(K, np.float64)
        for s in range(S):
            h, lw = _a_bounds(A, p, s, slotz, lsbz, fman, femask, foff)
            if h == -4096:
                continue  # A's operands all zero: no product, the accumulators are unchanged
            sr = fa - float(h - lw)  # B's span may be at most this
            fh = pow2[h - align + man + POW2_OFF]
            fl = pow2[lw + align + POW2_OFF]
            nbad = np.int64(0)
            if D == 8:
                # one pass over k: eight products, the bounds test and the rounding
                a0, a1 = val[A[p, s, 0]], val[A[p, s, 1]]
                a2, a3 = val[A[p, s, 2]], val[A[p, s, 3]]
                a4, a5 = val[A[p, s, 4]], val[A[p, s, 5]]
                a6, a7 = val[A[p, s, 6]], val[A[p, s, 7]]
                for k in range(k0u, k1u):
                    t0 = (a0 * Bv[s, 0, k] + a1 * Bv[s, 1, k]) + (
                        a2 * Bv[s, 2, k] + a3 * Bv[s, 3, k]
                    )
                    t1 = (a4 * Bv[s, 4, k] + a5 * Bv[s, 5, k]) + (
                        a6 * Bv[s, 6, k] + a7 * Bv[s, 7, k]
                    )
                    xk = x[k]
                    ax = abs(xk)
                    ok = (Bv[s, 8, k] <= sr) & (
                        (xk == 0.0) | ((ax >= fh * Bv[s, 9, k]) & (ax < fl * Bv[s, 10, k]))
                    )
                    nbad += np.int64(1) - np.int64(ok)
                    r = _rne_bits(_f2i(xk + (t0 + t1)), db, rnd, keep, absm, maxbits, minbits,
                                  halfbits)  # fmt: skip
                    y[k] = r if ok else np.nan
            else:
                for k in range(K):
                    t[k] = 0.0
                for d in range(D):
                    av = val[A[p, s, d]]
                    if av != 0.0:
                        for k in range(K):
                            t[k] += av * Bv[s, d, k]
                for k in range(K):
                    xk = x[k]
                    ax = abs(xk)
                    ok = (Bv[s, D, k] <= sr) & (
                        (xk == 0.0) | ((ax >= fh * Bv[s, D + 1, k]) & (ax < fl * Bv[s, D + 2, k]))
                    )
                    nbad += np.int64(1) - np.int64(ok)
                    r = _rne_bits(_f2i(xk + t[k]), db, rnd, keep, absm, maxbits, minbits,
                                  halfbits)  # fmt: skip
                    y[k] = r if ok else np.nan
            if nbad != 0:
                for k in range(K):
                    if y[k] != y[k] and active[p, k]:  # NaN: the bounds failed
                        y[k] = _step_exact(x[k], A[p, s], B[k, s], sig, lsb, slot, sgn, align,
                                           np.int64(0), man, emin, low, emax_f)  # fmt: skip
                    elif y[k] != y[k]:
                        y[k] = x[k]  # an inactive output (never stored)
            x, y = y, x
        if wmode == 0:
            for k in range(K):
                if active[p, k]:
                    acc[p, k] = x[k] + 0.0  # a zero is +0
        else:
            for k in range(K):
                if active[p, k]:
                    code, _ = encode_bits(_f2i(x[k] + 0.0), wfmt[0], wfmt[1], wfmt[2])
                    words[p, k] = code


_NO_WORDS = np.zeros((0, 0), np.uint16)  # `_tree_rne`'s words where it takes float64 values
_NO_WFMT = (np.int64(0), np.int64(0), np.int64(0))
_NO_VALUES = np.zeros((0, 0), np.float64)  # and its values where it takes words


class PreparedB(NamedTuple):
    """A streamed operand B (K, S, D) of `tree_accumulate`, decoded for the RNE kernel once
    (the weights of a tile serve every image of the batch): `v` (S, D + 3, K), `_prep_b`."""

    codes: np.ndarray
    fmt: str
    v: np.ndarray


def prepare_operand(B: np.ndarray, operand_format: str) -> PreparedB:
    B = np.ascontiguousarray(B, dtype=np.uint8)
    if B.ndim != 3:
        raise ValueError(f"B {B.shape} must be (K, S, D)")
    val, slotz, lsbz, pow2 = fast_tables(operand_format)
    return PreparedB(B, operand_format, _prep_b(B, val, slotz, lsbz, pow2))


@njit(cache=True)
def _prep_cols(X, codes, Bv, val, slotz, lsbz, pow2):
    """`_prep_b` of X (P, K) codes taken as columns: codes[k, s, d] = X[s D + d, k] (0 past
    P) and Bv as `_prep_b(codes)` gives it. Rows of X are read in order, so the loops run
    over k innermost (per (s, k) the largest slot and smallest LSB are order-free)."""
    P, K = X.shape
    _, S, D = codes.shape
    h = np.empty(K, np.int64)
    lw = np.empty(K, np.int64)
    for s in range(S):
        h[:] = -4096
        lw[:] = 4096
        for d in range(D):
            p = s * D + d
            if p < P:
                for k in range(K):
                    c = X[p, k]
                    codes[k, s, d] = c
                    Bv[s, d, k] = val[c]
                    h[k] = max(h[k], slotz[c])
                    lw[k] = min(lw[k], lsbz[c])
            else:  # chunk padding: code 0, a zero (no change to the bounds)
                for k in range(K):
                    codes[k, s, d] = 0
                    Bv[s, d, k] = val[0]
                    h[k] = max(h[k], slotz[0])
                    lw[k] = min(lw[k], lsbz[0])
        for k in range(K):
            if h[k] == -4096:
                Bv[s, D, k], Bv[s, D + 1, k], Bv[s, D + 2, k] = -4096.0, 0.0, np.inf
            else:
                Bv[s, D, k] = float(h[k] - lw[k])
                Bv[s, D + 1, k] = pow2[h[k] + POW2_OFF]
                Bv[s, D + 2, k] = pow2[lw[k] + POW2_OFF]


def prepare_columns(X: np.ndarray, dp: int, operand_format: str) -> PreparedB:
    """`prepare_operand` of X (P, K) transposed into (K, ceil(P / dp), dp) chunks, the last
    zero-padded, in one pass (tc.wgr's dY tile; the same codes and values)."""
    X = np.ascontiguousarray(X, dtype=np.uint8)
    if X.ndim != 2 or dp < 1:
        raise ValueError(f"X {X.shape} must be (P, K) with dp >= 1, not {dp}")
    P, K = X.shape
    S = -(-P // dp)
    codes = np.empty((K, S, dp), np.uint8)
    Bv = np.empty((S, dp + 3, K), np.float64)
    _prep_cols(X, codes, Bv, *fast_tables(operand_format))
    return PreparedB(codes, operand_format, Bv)


@njit(cache=True)
def _gate_groups(rows, starts, cn, dy, gate, g, dp, accT, words, wmode, wfmt, activeT, tables,
                 consts):  # fmt: skip
    """`accumulate_gate_groups`' loop: per gate group, its operands built and its tile run
    on the RNE kernel, without a return to Python between groups. The accumulators as
    `_tree_rne` takes them (wmode 0: accT's values, else the words)."""
    val, slotz, lsbz, pow2 = tables
    taps = starts.shape[0]
    P, kn = dy.shape
    R = taps * cn
    if wmode == 2:  # from zeros: a group with no open pixel leaves its zeros
        for r in range(R):
            for k in range(kn):
                words[r, k] = 0
    no_words = np.zeros((0, 0), np.uint16)
    open_ = np.empty(P, np.int64)
    at = np.empty(P, np.int64)  # the open pixels' row starts at one tap (-1: padding)
    for j in range(0, kn, g):
        n = 0
        for q in range(P):
            if gate[q, j // g]:
                open_[n] = q
                n += 1
        if n == 0:
            continue
        S = -(-n // dp)
        # the patch columns of the open pixels, in chunks of dp (zeros after the last), each
        # row (tap t, channel c) written in order (2.6x faster than pixel by pixel)
        A = np.empty((R, S, dp), np.uint8)
        Af = A.reshape(R, S * dp)
        for t in range(taps):
            for i in range(n):
                at[i] = starts[t, open_[i]]
            for c in range(cn):
                r = t * cn + c
                for i in range(n):
                    o = at[i]
                    Af[r, i] = rows[o + c] if o >= 0 else np.uint8(0)
                for i in range(n, S * dp):
                    Af[r, i] = 0
        X = np.empty((n, g), np.uint8)  # the group's dY at the open pixels
        for i in range(n):
            for k in range(g):
                X[i, k] = dy[open_[i], j + k]
        codes = np.empty((g, S, dp), np.uint8)
        Bv = np.empty((S, dp + 3, g), np.float64)
        _prep_cols(X, codes, Bv, val, slotz, lsbz, pow2)
        acc = np.empty((R, g), np.float64)
        act = np.empty((R, g), np.bool_)
        for r in range(R):
            for k in range(g):
                if wmode == 0:
                    acc[r, k] = accT[r, j + k]
                else:
                    acc[r, k] = word_value(words[r, j + k], wfmt[0], wfmt[1], wfmt[2])
                act[r, k] = activeT[r, j + k]
        _tree_rne(A, codes, Bv, acc, act, no_words, 0, wfmt, *consts)
        for r in range(R):
            for k in range(g):
                if wmode == 0:
                    accT[r, j + k] = acc[r, k]
                else:
                    code, _ = encode_bits(_f2i(acc[r, k]), wfmt[0], wfmt[1], wfmt[2])
                    words[r, j + k] = code


def accumulate_gate_groups(
    rows: np.ndarray,
    starts: np.ndarray,
    cn: int,
    dy: np.ndarray,
    gate: np.ndarray,
    g: int,
    dp: int,
    accT: np.ndarray,
    activeT: np.ndarray | None,
    *,
    operand_format: str,
    accumulator_format: str,
    align_bits: int,
    from_zero: bool = False,
) -> bool:
    """tc.wgr under gating in one call: for each group of g output channels k of the dY tile
    dy (P, kn), over its open pixels (`gate` (P, kn / g) bool) only, in order and in chunks of
    dp, `tree_accumulate` of the patch columns (rows[starts[t, q] + c] at tap t, channel c <
    cn; -1: zeros) with dY's columns into accT[:, group] ((taps cn, kn), updated), `activeT`
    (taps cn, kn) as its `active`. accT holds float64 values, or the accumulator format's
    words (uint16, any strides; `from_zero`: start from zeros, every word written; only where
    `accumulator_words` applies). False (nothing done) where the RNE kernel does not apply;
    the caller then runs the groups itself."""
    consts = _rne_args(operand_format, accumulator_format, align_bits)
    if consts is None:
        return False
    if activeT is None:
        activeT = _all_active(accT.shape)
    if accT.dtype == np.uint16:
        wfmt = _word_format(accumulator_format)
        acc, words, wmode = _NO_VALUES, accT, 2 if from_zero else 1
    else:
        acc, words, wmode, wfmt = accT, _NO_WORDS, 0, _NO_WFMT
    work = starts.shape[0] * cn * dy.shape[0] * g
    _use_threads(_threads_for(work))
    _gate_groups(
        np.ascontiguousarray(rows).reshape(-1), starts, np.int64(cn),
        np.ascontiguousarray(dy), np.ascontiguousarray(gate), np.int64(g), np.int64(dp),
        acc, words, wmode, wfmt, activeT, fast_tables(operand_format), consts,
    )  # fmt: skip
    return True


@lru_cache(maxsize=8)
def _word_format(fmt: str) -> tuple[np.int64, np.int64, np.int64]:
    p = _normal_params(fmt)
    if p is None or p[0] != 16:
        raise ValueError(f"{fmt}: the kernels keep only 16-bit accumulators without subnormals "
                         "and Inf/NaN as words")  # fmt: skip
    return p[1], p[2], p[3]


def accumulator_words(operand_format: str, accumulator_format: str, align_bits: int) -> bool:
    """Whether the RNE kernel applies and keeps the accumulators as `accumulator_format`'s
    words (`tree_accumulate_words`, `accumulate_gate_groups`): 16 bits, no subnormals."""
    p = _normal_params(accumulator_format)
    return (
        p is not None
        and p[0] == 16
        and (_rne_args(operand_format, accumulator_format, align_bits) is not None)
    )


def tree_accumulate_words(
    A: np.ndarray,
    B: np.ndarray | PreparedB,
    words: np.ndarray,
    *,
    from_zero: bool,
    operand_format: str,
    accumulator_format: str,
    align_bits: int,
    active: np.ndarray | None = None,
) -> None:
    """`tree_accumulate` with the accumulators as words (P, K) of the accumulator format (a
    view of a buffer, any strides), decoded and encoded in the kernel (`from_zero`: start
    from zeros, every word written): no float64 copy in and out. Only where
    `accumulator_words` says so (the RNE kernel); the words' values are the float64 path's."""
    consts = _rne_args(operand_format, accumulator_format, align_bits)
    wfmt = _word_format(accumulator_format)
    if consts is None or words.dtype != np.uint16 or words.ndim != 2:
        raise ValueError("tree_accumulate_words: needs the RNE kernel and uint16 (P, K) words")
    A, B, prepared, active = _checked(A, B, None, operand_format, active)
    if words.shape != (A.shape[0], B.shape[0]):
        raise ValueError(f"words {words.shape} must be (P, K) of A's P and B's K")
    pb = prepared if prepared is not None else prepare_operand(B, operand_format)
    _use_threads(_threads_for(A.size * B.shape[0]))
    _tree_rne(A, B, pb.v, _NO_VALUES, active, words, 2 if from_zero else 1, wfmt, *consts)


@lru_cache(maxsize=8)
def _acc_bits(fmt: str) -> tuple[np.int64, np.int64, np.int64]:
    """float64 bit patterns of the largest value, the smallest normal and half of it."""
    _, emin, _, maxv, _ = acc_params(fmt)
    b = np.array([maxv, 2.0**emin, 2.0 ** (emin - 1)]).view(np.int64)
    return b[0], b[1], b[2]


@lru_cache(maxsize=32)
def _rne_args(operand_format: str, accumulator_format: str, align_bits: int) -> tuple | None:
    """`_tree_rne`'s arguments after acc and active for these formats and align_bits, or None
    where the RNE kernel does not apply (align_bits outside [accumulator width, 49])."""
    sig, lsb, slot, sgn = operand_tables(operand_format)
    man, emin, low, maxv, _ = acc_params(accumulator_format)
    if not man + 1 <= align_bits <= 49:
        return None
    val, slotz, lsbz, pow2 = fast_tables(operand_format)
    bits = _acc_bits(accumulator_format)
    fields = tuple(np.int64(v) for v in code_fields(operand_format))
    return (val, slotz, lsbz, pow2, sig, lsb, slot, sgn, np.int64(align_bits), np.int64(man),
            np.int64(emin), np.int64(low), np.int64(math.frexp(maxv)[1] - 1), bits[0], bits[1],
            bits[2], *fields)  # fmt: skip


def _checked(A, B, acc, operand_format, active):
    """tree_accumulate's operands checked (acc float64 values, or None where the
    accumulators are words of the shape `active`'s): (A, B codes, B's PreparedB or None,
    active)."""
    prepared = B if isinstance(B, PreparedB) else None
    if prepared is not None and prepared.fmt != operand_format:
        raise ValueError(f"B was prepared for {prepared.fmt}, not {operand_format}")
    A = np.ascontiguousarray(A, dtype=np.uint8)
    B = prepared.codes if prepared is not None else np.ascontiguousarray(B, dtype=np.uint8)
    if A.ndim != 3 or B.ndim != 3 or A.shape[1:] != B.shape[1:]:
        raise ValueError(f"A {A.shape} and B {B.shape} must be (P, S, D) and (K, S, D)")
    shape = (A.shape[0], B.shape[0])
    if acc is not None and (acc.shape != shape or acc.dtype != np.float64):
        raise ValueError(f"acc must be float64 of shape {shape}")
    if active is None:
        return A, B, prepared, _all_active(shape)
    if active.shape != shape:
        raise ValueError(f"active must have the shape {shape}, not {active.shape}")
    return A, B, prepared, np.ascontiguousarray(active, dtype=np.bool_)


@lru_cache(maxsize=64)
def _all_active(shape: tuple[int, ...]) -> np.ndarray:
    """An all-True `active`, one per tile shape, shared: the kernels only read it (left
    writable, so the kernels keep one compiled signature with the callers' masks)."""
    return np.ones(shape, dtype=np.bool_)


def tree_accumulate(
    A: np.ndarray,
    B: np.ndarray | PreparedB,
    acc: np.ndarray,
    *,
    operand_format: str,
    accumulator_format: str,
    align_bits: int,
    rounding: str = "rne",
    active: np.ndarray | None = None,
    fast: bool = True,
) -> np.ndarray:
    """acc[p, k] after the steps s of A[p, s, :] . B[k, s, :] (codes); acc holds values.

    A: (P, S, D) uint8 codes; B: (K, S, D) uint8 codes; acc: (P, K) float64 values of the
    accumulator format, updated in place and returned. `active` (P, K) bool: outputs not
    active are left untouched (gated outputs). `rounding` is the per-step accumulator rounding
    (deterministic: the SRUs' stochastic rounding happens only when results leave as FP8).
    """
    if rounding not in ("rne", "rna", "rtz"):
        raise ValueError(f"per-step accumulator rounding must be deterministic, not {rounding!r}")
    if align_bits < 1:
        raise ValueError("the functional tensor core models the tree (alignment_width_bits >= 1)")
    if fast and rounding == "rne":
        consts = _rne_args(operand_format, accumulator_format, align_bits)
        if consts is not None:  # the RNE kernel: checks as below, no per-call table work
            A, B, prepared, active = _checked(A, B, acc, operand_format, active)
            pb = prepared if prepared is not None else prepare_operand(B, operand_format)
            _use_threads(_threads_for(A.size * B.shape[0]))
            _tree_rne(A, B, pb.v, acc, active, _NO_WORDS, 0, _NO_WFMT, *consts)
            return acc
    sig, lsb, slot, sgn = operand_tables(operand_format)
    man, emin, low, maxv, _ = acc_params(accumulator_format)
    A, B, prepared, active = _checked(A, B, acc, operand_format, active)
    work = A.size * B.shape[0]
    # the integer kernel (other roundings, align_bits below the accumulator's width).
    # Narrow copies for the streamed operand: B is read once per output row, so its size in
    # cache matters more than the widening (the kernel computes in int64)
    sig8, sgn8 = sig.astype(np.int8), sgn.astype(np.int8)
    lsb16, slot16 = lsb.astype(np.int16), slot.astype(np.int16)
    # per (k, step): largest slot and smallest LSB among B's nonzero operands (fast path)
    nz = sig[B] != 0
    bmax = np.where(nz, slot16[B], -(1 << 14)).max(axis=2).astype(np.int64)
    bmin = np.where(nz, lsb16[B], 1 << 14).min(axis=2).astype(np.int64)
    _use_threads(_threads_for(work))
    _tree(
        A,
        sig8[B],
        lsb16[B],
        slot16[B],
        sgn8[B],
        bmax,
        bmin,
        acc,
        active,
        sig,
        lsb,
        slot,
        sgn,
        np.int64(align_bits),
        np.int64(ROUNDING_CODE[rounding]),
        np.int64(man),
        np.int64(emin),
        np.int64(low),
        np.int64(math.frexp(maxv)[1] - 1),
    )
    return acc


# ---- the accumulators' FP16 words <-> float64 values, without per-call validation passes


@njit(cache=True, inline="always")
def word_bits(w, bias, man, ebits):
    """float64 bits of the value of code w of a format without subnormals and Inf/NaN
    (exponent field 0: zero)."""
    c = np.int64(w)
    e = (c >> man) & ((np.int64(1) << ebits) - 1)
    sign = (c >> (ebits + man)) << 63
    frac = c & ((np.int64(1) << man) - 1)
    return sign | (((e - bias + 1023) << 52) | (frac << (52 - man)) if e != 0 else 0)


@njit(cache=True, inline="always")
def word_value(w, bias, man, ebits):
    """`word_bits` as the float64 value."""
    return _i2f(word_bits(w, bias, man, ebits))


@njit(cache=True)
def _decode_normal(w, out, bias, man, ebits):
    """float64 values of codes of a format without subnormals and Inf/NaN (field 0: zero)."""
    ob = out.view(np.int64)
    for i in range(w.shape[0]):
        ob[i] = word_bits(w[i], bias, man, ebits)


@lru_cache(maxsize=8)
def _normal_params(fmt: str) -> tuple[int, np.int64, np.int64, np.int64] | None:
    """(bits, bias, mantissa bits, exponent bits) of an 8- or 16-bit format without
    subnormals and Inf/NaN (the one-pass codecs' arguments, built once), else None."""
    f = get_format(fmt)
    if f.bits not in (8, 16) or f.subnormals or f.inf_nan.name != "NONE":
        return None
    return f.bits, np.int64(f.bias), np.int64(f.man_bits), np.int64(f.exp_bits)


def acc_decode(words: np.ndarray, fmt: str) -> np.ndarray:
    """float64 values of 16-bit accumulator words (a copy)."""
    p = _normal_params(fmt)
    if p is None or p[0] != 16:
        return decode(np.asarray(words).copy(), fmt).astype(np.float64)
    flat = np.ascontiguousarray(words, dtype=np.uint16).reshape(-1)
    out = np.empty(flat.shape, np.float64)
    _decode_normal(flat, out, p[1], p[2], p[3])
    return out.reshape(np.shape(words))


def acc_decode_t(words: np.ndarray, fmt: str) -> np.ndarray:
    """`acc_decode(words, fmt).T` as a contiguous (C, R) array, for words (R, C): the 16-bit
    words are transposed, not the float64 values (a quarter of the bytes to move)."""
    return acc_decode(np.ascontiguousarray(np.asarray(words).T), fmt)


@njit(cache=True, inline="always")
def encode_bits(b, bias, man, ebits):
    """(code, 1 if not representable) of the float64 bits b of a value that should be zero
    or normal in a format without subnormals (`bias`, `man`, `ebits`); -0 keeps its sign."""
    absm = np.int64(0x7FFFFFFFFFFFFFFF)
    low = (np.int64(1) << (52 - man)) - 1
    top = (np.int64(1) << ebits) - 1
    fmask = (np.int64(1) << man) - 1
    sign = (b >> 63) & 1
    m = b & absm
    e = (m >> 52) - 1023 + bias
    frac = (m >> (52 - man)) & fmask
    code = (sign << (ebits + man)) | ((e << man) | frac if m != 0 else np.int64(0))
    bad = np.int64(m != 0) & np.int64((e < 1) | (e > top) | ((m & low) != 0))
    return code, bad


@njit(cache=True)
def _encode_normal(v, out, bias, man, ebits):
    """Codes of float64 values that are zero or normal in a format without subnormals.
    Returns the index of the first value that is not representable, or -1. The main loop
    has no branch (it vectorises); a value out of the format is looked for afterwards."""
    absm = np.int64(0x7FFFFFFFFFFFFFFF)
    low = (np.int64(1) << (52 - man)) - 1
    top = (np.int64(1) << ebits) - 1
    vb = v.view(np.int64)
    bad = np.int64(0)
    for i in range(v.shape[0]):
        code, b = encode_bits(vb[i], bias, man, ebits)
        bad |= b
        out[i] = code
    if bad == 0:
        return -1
    for i in range(v.shape[0]):
        m = vb[i] & absm
        e = (m >> 52) - 1023 + bias
        if m != 0 and (e < 1 or e > top or (m & low) != 0):
            return i
    return -1  # pragma: no cover


def _encode_one_pass(vals: np.ndarray, fmt: str) -> np.ndarray | None:
    """Codes of vals (in vals' order, vals' shape) by the one-pass codec, or None where
    `fmt` is outside it or a value is not representable (the caller then raises through
    `encode`, naming the value)."""
    p = _normal_params(fmt)
    if p is None:
        return None
    flat = np.ascontiguousarray(vals, dtype=np.float64).reshape(-1)
    out = np.empty(flat.shape, np.uint8 if p[0] == 8 else np.uint16)
    if _encode_normal(flat, out, p[1], p[2], p[3]) >= 0:
        return None
    return out.reshape(np.shape(vals))


def acc_encode(vals: np.ndarray, fmt: str) -> np.ndarray:
    """Codes of values of `fmt` (as `encode`: -0 keeps its sign, an unrepresentable value
    raises) in one pass, for an 8- or 16-bit format without subnormals and Inf/NaN (every
    exponent field but 0 normal; the accumulator, e5m2_chip); other formats go through
    `encode`."""
    codes = _encode_one_pass(vals, fmt)
    return encode(np.asarray(vals, np.float32), fmt) if codes is None else codes


def acc_encode_t(valsT: np.ndarray, fmt: str) -> np.ndarray:
    """`acc_encode(valsT.T, fmt)` for values valsT (C, R): the codes are encoded in valsT's
    order and returned transposed (a view), so only the codes are moved, not the values."""
    codes = _encode_one_pass(valsT, fmt)
    # None: `acc_encode` of the transpose, which raises naming the first value in R, C order
    return acc_encode(valsT.T, fmt) if codes is None else codes.T
