"""Small one-pass helpers of the executor's per-instruction work (docs/functional.md, Speed).

Each one is a shortcut for a composition of `simulator.numerics` calls that gives the same
bits (tests/simulator/functional/test_fastops.py compares them):
- `values(codes, fmt)`: `decode(codes, fmt)` of 8-bit codes as one table lookup;
- `rne_codes(x, fmt)`: `encode(quantize(x, fmt, "rne") + 0.0, fmt)` (the SRU's RNE result,
  zeros written as +0) in one pass on the float64 bits, for 8- and 16-bit formats without subnormals
  and Inf/NaN that saturate (`e5m2_chip`); other formats, and NaN inputs (which `quantize`
  refuses), take the composition itself;
- `sr_codes(x, fmt, rounding, r, words)`: `encode(quantize(x, fmt, rounding, r=r,
  random_bits=words) + 0.0, fmt)` (the SRU's stochastic result) in one pass on the float64
  bits, for the same formats as `rne_codes` (8-bit); other formats, NaN inputs and bad words
  take the composition itself;
- `seq_sum(start, vals)`: the FP32 running sums of batch norm, pixel after pixel;
- `gather(src, idx)`: `src[idx]` for byte arrays with int32 indices, 0 where idx < 0;
  `run_starts` / `gather_runs`: the same where each row of idx is one run of consecutive
  bytes then -1 (patches: a pixel's channels), as row copies; `gather_columns`: the same
  where runs are columns (tc.wgr's transposed patches), from the runs' starts;
  `gather_pattern`: the same where every row takes one pattern of offsets from its start
  (tc.bwd's compacted channels);
- `copy_rows`: a strided DMA's rows;
- `relu_fwd_codes(x)`: `np.where(x & 0x80, 0, x)` (negative codes and -0 to +0) in one pass;
- `relu_bwd_codes(e, y, table)`: `np.where(decode(y) > 0, e, 0)` for codes in one pass;
- `group_mean_above(vals, g, thr)`: `vals.reshape(-1, g).mean(axis=1) > thr` where every
  group's float64 sum is exact (the caller checks: then any summation order gives it);
- batch norm's FP32 kernels (`norm_stat_sums`, `norm_fwd_values`, ...) and, for results an
  RNE stream rounds, `norm_fwd_codes` / `norm_bwd_codes` / `sum_rne_codes`: `rne_codes` of
  the float64 value of each result in the same call.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit

from simulator.functional.tree import _f2i, _i2f
from simulator.numerics import decode, encode, get_format, quantize
from simulator.numerics.quantize import MAX_RANDOM_BITS


@lru_cache(maxsize=8)
def value_tables(fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """float32 and float64 value of every 8-bit code of `fmt` (read-only)."""
    t32 = decode(np.arange(256, dtype=np.uint8), fmt).astype(np.float32)
    t64 = t32.astype(np.float64)
    t32.setflags(write=False)
    t64.setflags(write=False)
    return t32, t64


@njit(cache=True)
def _lookup(codes, table, out):
    for i in range(codes.shape[0]):
        out[i] = table[codes[i]]


def values(codes: np.ndarray, fmt: str, dtype=np.float64) -> np.ndarray:
    """`decode(codes, fmt).astype(dtype)` for uint8 codes (a new array of codes' shape)."""
    t32, t64 = value_tables(fmt)
    table = t64 if dtype == np.float64 else t32
    flat = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1)
    out = np.empty(flat.shape, table.dtype)
    _lookup(flat, table, out)
    return out.reshape(np.shape(codes))


@lru_cache(maxsize=8)
def _rne_args(fmt: str) -> tuple[np.int64, ...] | None:
    """`_rne_params` as the kernel's int64 arguments (built once per format)."""
    p = _rne_params(fmt)
    return None if p is None else tuple(np.int64(v) for v in p)


@lru_cache(maxsize=8)
def _rne_params(fmt: str) -> tuple[int, ...] | None:
    """(fraction bits dropped, largest value's bits, smallest normal's bits, half of it,
    bias, mantissa bits, sign bit) of an 8- or 16-bit saturating format without subnormals
    and Inf/NaN."""
    f = get_format(fmt)
    if f.bits not in (8, 16) or f.subnormals or f.inf_nan.name != "NONE" or not f.saturate:
        return None
    emin = 1 - f.bias
    b = np.array([float(f.max_value), 2.0**emin, 2.0 ** (emin - 1)]).view(np.int64)
    return 52 - f.man_bits, int(b[0]), int(b[1]), int(b[2]), f.bias, f.man_bits, f.bits - 1


@njit(cache=True)
def _rne(x, out, db, maxbits, minbits, halfbits, bias, man, sbit):
    """RNE of float64 values into the format's codes (zero -> +0); the index of the first NaN,
    or -1. The main loop has no branch (it vectorises); a NaN is looked for afterwards."""
    absm = np.int64(0x7FFFFFFFFFFFFFFF)
    rnd = (np.int64(1) << (db - 1)) - 1
    keep = ~((np.int64(1) << db) - 1)
    mmask = (np.int64(1) << man) - 1
    xb = x.view(np.int64)
    nan = np.int64(0)
    for i in range(xb.shape[0]):
        w = xb[i]
        m = w & absm
        nan |= np.int64(m > np.int64(0x7FF0000000000000))
        r = (m + rnd + ((m >> db) & 1)) & keep
        r = min(r, maxbits)
        r = (minbits if m > halfbits else np.int64(0)) if m < minbits else r
        e = (r >> 52) - 1023 + bias
        code = (((w >> 63) & 1) << sbit) | (e << man) | ((r >> db) & mmask)
        out[i] = code if r != 0 else np.int64(0)
    if nan == 0:
        return -1
    for i in range(xb.shape[0]):
        if xb[i] & absm > np.int64(0x7FF0000000000000):
            return i
    return -1  # pragma: no cover


def rne_codes(x: np.ndarray, fmt: str) -> np.ndarray:
    """Codes of `x` (float32/float64) rounded to nearest even into `fmt`, zeros as +0:
    `encode(quantize(x, fmt, "rne") + 0.0, fmt)`; same shape."""
    p = _rne_args(fmt)
    arr = np.asarray(x)
    if p is not None:
        flat = np.ascontiguousarray(arr, dtype=np.float64).reshape(-1)
        out = np.empty(flat.shape, np.uint8 if p[-1] == 7 else np.uint16)
        if _rne(flat, out, *p) < 0:
            return out.reshape(arr.shape)
    q = quantize(arr, fmt, "rne")  # raises on NaN where the format has none
    return np.asarray(encode(q + np.asarray(0.0, q.dtype), fmt)).reshape(arr.shape)


# ---- stochastic rounding into codes in one pass, for float64 values and `_rne_params`'
# formats (saturating, no subnormals, no Inf/NaN: the chip's `e5m2_chip`). It is `quantize`'s
# rule (`_kernels.round_bits`, `decide_sr*`) at the only two kinds of magnitude it meets there:
#  - |x| >= the smallest normal 2**emin: the target keeps the top man bits of the float64
#    significand, so the discarded part is the low db = 52 - man fraction bits D, d = D / 2**db,
#    and floor(d 2**q) = D >> (db - q); a carry out of the kept bits is the step into the next
#    binade, above the largest value it saturates (an Inf's bits too: D = 0, so it never
#    rounds up, and it saturates).
#  - |x| < 2**emin: the grid is {0, 2**emin}, d = |x| / 2**emin, and d 2**q is |x| 2**(q -
#    emin), a float64 product by a power of two, exact; its conversion to int64 is the floor.
# Other formats take the composition (`quantize`'s general shifts cost about 3x as much).


@njit(cache=True, inline="always")
def _sr_normal(mode, x, rand, out, r, db, maxbits, minbits, lowscale, bias, man, sbit):
    """Codes of x (float32 or float64) into out; 0, or 1 (fall back: nothing usable) on a NaN
    or a word outside r bits. mode: 3 sr, 4 sr_half, 5 sr_corrected (`_kernels.decide`);
    lowscale = 2**(q - emin), q = r + 1 for sr_half, else r."""
    absm = np.int64(0x7FFFFFFFFFFFFFFF)
    keep = ~((np.int64(1) << db) - 1)
    dmask = (np.int64(1) << db) - 1
    mmask = (np.int64(1) << man) - 1
    limit = np.int64(1) << r
    q = r + 1 if mode == 4 else r
    sh = db - q
    rmask = (np.int64(1) << sh) - 1
    half2 = (np.int64(1) << sh) >> 1
    cap = _i2f(minbits)  # |x| above the smallest normal takes the other branch: keep it finite
    bad = np.int64(0)
    for i in range(x.shape[0]):
        v = np.float64(x[i])  # a float32 value is rounded as the float64 value it equals
        w = _f2i(v)
        m = w & absm
        S = np.int64(rand[i])
        bad |= np.int64(m > np.int64(0x7FF0000000000000)) | np.int64((S < 0) | (limit <= S))
        D = m & dmask
        lowv = min(abs(v), cap) * lowscale
        if mode == 5:  # rne(d 2**r) + S >= 2**r
            f = D >> sh
            rem = D & rmask
            f += np.int64((rem > half2) | ((rem == half2) & ((f & 1) == 1)))
            fl = np.int64(np.rint(lowv))
        else:
            f = D >> sh
            fl = np.int64(lowv)
        if mode == 4:  # floor(d 2**(r + 1)) + 2 S + 1 >= 2**(r + 1)
            upn = np.int64(f + 2 * S + 1 >= 2 * limit)
            upl = np.int64(fl + 2 * S + 1 >= 2 * limit)
        else:
            upn = np.int64(f + S >= limit)
            upl = np.int64(fl + S >= limit)
        res = min((m & keep) + (upn << db), maxbits) if m >= minbits else upl * minbits
        e = (res >> 52) - 1023 + bias
        code = (((w >> 63) & 1) << sbit) | (e << man) | ((res >> db) & mmask)
        out[i] = code if res != 0 else np.int64(0)  # a zero of either sign: code 0 (+0)
    return np.int64(bad != 0)


@njit(cache=True)
def _sr_normal_sr(x, rand, out, r, db, maxbits, minbits, lowscale, bias, man, sbit):
    return _sr_normal(3, x, rand, out, r, db, maxbits, minbits, lowscale, bias, man, sbit)


@njit(cache=True)
def _sr_normal_half(x, rand, out, r, db, maxbits, minbits, lowscale, bias, man, sbit):
    return _sr_normal(4, x, rand, out, r, db, maxbits, minbits, lowscale, bias, man, sbit)


@njit(cache=True)
def _sr_normal_corrected(x, rand, out, r, db, maxbits, minbits, lowscale, bias, man, sbit):
    return _sr_normal(5, x, rand, out, r, db, maxbits, minbits, lowscale, bias, man, sbit)


_SR_NORMAL = {"sr": _sr_normal_sr, "sr_half": _sr_normal_half, "sr_corrected": _sr_normal_corrected}


@lru_cache(maxsize=32)
def _sr_normal_args(fmt: str, rounding: str, r: int) -> tuple | None:
    """(kernel, its arguments after `out`) of the specialised pass, or None where it does not
    apply: not one of `_rne_params`' 8-bit formats, or r outside 1 .. `MAX_RANDOM_BITS` (the
    composition refuses it) or above db - 2."""
    p = _rne_params(fmt)
    if p is None or p[-1] != 7 or rounding not in _SR_NORMAL:
        return None
    if not 1 <= r <= min(MAX_RANDOM_BITS, p[0] - 2):
        return None
    db, maxbits, minbits, _, bias, man, sbit = p
    q = r + 1 if rounding == "sr_half" else r
    lowscale = 2.0 ** (q - (1 - bias))
    args = (np.int64(r), np.int64(db), np.int64(maxbits), np.int64(minbits), lowscale)
    return _SR_NORMAL[rounding], (*args, np.int64(bias), np.int64(man), np.int64(sbit))


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def sr_codes(x: np.ndarray, fmt: str, rounding: str, r: int, words: np.ndarray) -> np.ndarray:
    """Codes of `x` (float32/float64) rounded stochastically (`rounding`: sr, sr_half,
    sr_corrected) with r-bit `words` (one per element, in x's order) into `fmt`, zeros as +0:
    `encode(quantize(x, fmt, rounding, r=r, random_bits=words) + 0.0, fmt)`, in one call for
    8-bit saturating formats without subnormals and Inf/NaN (`e5m2_chip`); others, and inputs
    the composition refuses (NaN, bad words, r outside 1..32), take the composition itself.
    Same shape as x."""
    arr = np.asarray(x)
    fast = _sr_normal_args(fmt, rounding, r) if arr.dtype in _FLOATS else None
    if fast is not None:
        kernel, args = fast
        # float32 values are rounded as the float64 values they equal: the rule depends on
        # the value only (tested against quantize of the float32 values)
        flat = np.ascontiguousarray(arr).reshape(-1)
        rand = np.ascontiguousarray(words).reshape(-1)
        if rand.shape == flat.shape and rand.dtype.kind in "ui":
            out = np.empty(flat.shape, np.uint8)
            if kernel(flat, rand, out, *args) == 0:
                return out.reshape(arr.shape)
    q = quantize(arr, fmt, rounding, r=r, random_bits=np.asarray(words).reshape(arr.shape))
    return np.asarray(encode(q + np.asarray(0.0, q.dtype), fmt)).reshape(arr.shape)


@njit(cache=True)
def _seq_sum(start, vals, out):
    for c in range(start.shape[0]):
        out[c] = start[c]
    for p in range(vals.shape[0]):
        for c in range(vals.shape[1]):
            out[c] = out[c] + vals[p, c]


def seq_sum(start: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """start (ch,) + vals[0] + vals[1] + ... per channel, in FP32, left to right."""
    out = np.empty(start.shape[0], np.float32)
    _seq_sum(
        np.ascontiguousarray(start, dtype=np.float32),
        np.ascontiguousarray(vals, dtype=np.float32),
        out,
    )
    return out


@njit(cache=True)
def _gather(src, idx, out):
    for i in range(idx.shape[0]):
        j = idx[i]
        out[i] = src[j] if j >= 0 else np.uint8(0)


def gather(src: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """src[idx] with 0 where idx < 0 (1-D uint8 source, int32 indices of any shape below
    src.size: the caller checks, nothing here does)."""
    flat = idx.reshape(-1)
    out = np.empty(flat.shape, np.uint8)
    _gather(np.ascontiguousarray(src).reshape(-1), flat, out)
    return out.reshape(idx.shape)


def run_starts(idx: np.ndarray, run: int) -> np.ndarray | None:
    """For idx (..., W) int32 whose every row is either start + 0..run-1 followed by -1 or
    all -1: the rows' starts (-1 for the all -1 rows), flattened, read-only; else None."""
    rows = idx.reshape(-1, idx.shape[-1])
    if not 0 < run <= rows.shape[1]:
        return None
    starts = rows[:, 0].astype(np.int32)
    ref = np.full(rows.shape, -1, np.int64)
    ok = starts >= 0
    ref[ok, :run] = starts[ok, None].astype(np.int64) + np.arange(run)
    if not np.array_equal(rows, ref):
        return None
    starts.setflags(write=False)
    return starts


@njit(cache=True)
def _gather_runs(src, starts, run, out):
    for r in range(out.shape[0]):
        s0 = starts[r]
        if s0 >= 0:
            for j in range(run):
                out[r, j] = src[s0 + j]
            for j in range(run, out.shape[1]):
                out[r, j] = 0
        else:
            for j in range(out.shape[1]):
                out[r, j] = 0


def gather_runs(src: np.ndarray, starts: np.ndarray, run: int, width: int) -> np.ndarray:
    """(len(starts), width) uint8: row r is src[starts[r] : starts[r] + run] then zeros, or
    zeros where starts[r] < 0 (`gather` of the index `run_starts` came from; the caller
    checks the bounds, nothing here does)."""
    out = np.empty((starts.shape[0], width), np.uint8)
    _gather_runs(np.ascontiguousarray(src).reshape(-1), starts, np.int64(run), out)
    return out


@njit(cache=True)
def _gather_pattern(src, starts, pat, out):
    T, L = starts.shape[1], pat.shape[0]
    for r in range(starts.shape[0]):
        for t in range(T):
            st = starts[r, t]
            o = t * L
            if st < 0:
                for i in range(L):
                    out[r, o + i] = 0
            else:
                for i in range(L):
                    k = pat[i]
                    out[r, o + i] = src[st + k] if k >= 0 else np.uint8(0)


def gather_pattern(src: np.ndarray, starts: np.ndarray, pat: np.ndarray) -> np.ndarray:
    """(R, T len(pat)) uint8: out[r, t L + i] = src[starts[r, t] + pat[i]], 0 where
    starts[r, t] < 0 or pat[i] < 0 (`gather` of the index starts[..., None] + pat, without
    building it: tc.bwd's compacted rows). The caller checks the bounds."""
    out = np.empty((starts.shape[0], starts.shape[1] * pat.shape[0]), np.uint8)
    _gather_pattern(np.ascontiguousarray(src).reshape(-1), starts, pat, out)
    return out


@njit(cache=True)
def _gather_columns(src, off, run, out):
    for t in range(off.shape[0]):
        for c in range(run):
            r = t * run + c
            for q in range(off.shape[1]):
                o = off[t, q]
                out[r, q] = src[o + c] if o >= 0 else np.uint8(0)


def gather_columns(src: np.ndarray, off: np.ndarray, run: int) -> np.ndarray:
    """(T run, Q) uint8: row t run + c, column q is src[off[t, q] + c], or 0 where
    off[t, q] < 0 (tc.wgr's patches transposed: off holds each tap's and pixel's first
    channel byte; the caller checks the bounds, nothing here does)."""
    out = np.empty((off.shape[0] * run, off.shape[1]), np.uint8)
    _gather_columns(np.ascontiguousarray(src).reshape(-1), off, np.int64(run), out)
    return out


@njit(cache=True)
def copy_rows(src, s0, sstride, dst, d0, dstride, rows, row_bytes):
    """dst[d0 + i dstride + j] = src[s0 + i sstride + j] for rows i, bytes j < row_bytes
    (a strided DMA; distinct arrays, ranges checked by the caller)."""
    for i in range(rows):
        a, b = s0 + i * sstride, d0 + i * dstride
        for j in range(row_bytes):
            dst[b + j] = src[a + j]


@njit(cache=True)
def _relu_fwd(x, out):
    for i in range(out.shape[0]):
        out[i] = x[i] if (x[i] & 0x80) == 0 else np.uint8(0)


def relu_fwd_codes(x: np.ndarray) -> np.ndarray:
    """`np.where(x & 0x80, 0, x)` (a new array): sign-magnitude codes with the sign bit set
    (negative values and -0) become +0."""
    out = np.empty(x.size, np.uint8)
    _relu_fwd(x.reshape(-1), out)
    return out


@njit(cache=True)
def _relu_bwd(e, y, table, out):
    for i in range(out.shape[0]):
        out[i] = e[i] if table[y[i]] > 0 else np.uint8(0)


@njit(cache=True)
def _relu_bwd_range(e, y, lo, out):
    for i in range(out.shape[0]):
        out[i] = e[i] if (y[i] >= lo) & (y[i] < 0x80) else np.uint8(0)


@lru_cache(maxsize=8)
def _positive_codes(table_bytes: bytes) -> int:
    """The smallest code lo with a value > 0 where the positive codes are exactly lo..127
    (sign-magnitude, no NaN among them; checked on all 256 codes of the table), else -1."""
    t = np.frombuffer(table_bytes, np.float64)
    c = np.arange(256)
    pos = np.nonzero(t > 0)[0]
    if pos.size == 0:
        return -1
    lo = int(pos[0])
    return lo if np.array_equal(t > 0, (c >= lo) & (c < 0x80)) else -1


def relu_bwd_codes(e: np.ndarray, y: np.ndarray, table: np.ndarray) -> np.ndarray:
    """`np.where(table[y] > 0, e, 0)` (a new array): the error codes e where the forward
    output y (codes, values in the float64 `table`) is positive, else +0. Where the positive
    codes are one range lo..127 (checked on every code), a range test replaces the lookup."""
    out = np.empty(e.size, np.uint8)
    lo = _positive_codes(table.tobytes())
    if lo >= 0:
        _relu_bwd_range(e.reshape(-1), y.reshape(-1), np.uint8(lo), out)
    else:
        _relu_bwd(e.reshape(-1), y.reshape(-1), table, out)
    return out


@njit(cache=True)
def _group_mean_above(vals, g, thr, out):
    for i in range(out.shape[0]):
        t = 0.0
        for j in range(g):
            t += vals[i * g + j]
        out[i] = (t / float(g)) > thr


def group_mean_above(vals: np.ndarray, g: int, thr: float) -> np.ndarray:
    """(n / g,) bool: the mean of each group of g consecutive float64 values exceeds thr, as
    `vals.reshape(-1, g).mean(axis=1) > thr` (the sum, then one division by g) when each
    group's sum is exact in float64 (np.mean sums pairwise; the caller checks exactness)."""
    flat = np.ascontiguousarray(vals, dtype=np.float64).reshape(-1)
    out = np.empty(flat.size // g, np.bool_)
    _group_mean_above(flat, np.int64(g), float(thr), out)
    return out


# ---- batch norm's element-wise FP32 work (norm.py); every operation rounds to FP32 (no
# fused multiply-add: numba emits separate IEEE float32 operations without fastmath)


@njit(cache=True)
def _norm_y(x, mean, rstd, gamma, beta):
    """((x - mean) rstd) gamma + beta, float32 operands and operations."""
    xh = (x - mean) * rstd
    return xh * gamma + beta


@njit(cache=True)
def _norm_dx(dy, x, mean, rstd, k, bm, gm):
    """k ((dy - bm) - xh gm), xh = (x - mean) rstd, float32 operands and operations."""
    xh = (x - mean) * rstd
    return k * ((dy - bm) - xh * gm)


@njit(cache=True)
def norm_stat_sums(codes, table, s, q):
    """s[c] += x and q[c] += x x, x = table[codes[p, c]], pixel after pixel, in FP32 (`seq_sum`
    of the values and of their squares, in one pass)."""
    for p in range(codes.shape[0]):
        for c in range(codes.shape[1]):
            x = table[codes[p, c]]
            s[c] = s[c] + x
            q[c] = q[c] + x * x


@njit(cache=True)
def norm_fwd_values(codes, table, mean, rstd, gamma, beta, out):
    """out[p, c] = ((x - mean) rstd) gamma + beta in FP32, x = table[codes[p, c]]."""
    for p in range(codes.shape[0]):
        for c in range(codes.shape[1]):
            out[p, c] = _norm_y(table[codes[p, c]], mean[c], rstd[c], gamma[c], beta[c])


@njit(cache=True)
def norm_bwd_sums(dcodes, xcodes, table, mean, rstd, sg, sb):
    """sg[c] += dy (x - mean) rstd and sb[c] += dy, pixel after pixel, in FP32."""
    for p in range(dcodes.shape[0]):
        for c in range(dcodes.shape[1]):
            dy = table[dcodes[p, c]]
            xh = (table[xcodes[p, c]] - mean[c]) * rstd[c]
            sg[c] = sg[c] + dy * xh
            sb[c] = sb[c] + dy


@njit(cache=True)
def norm_bwd_values(dcodes, xcodes, table, mean, rstd, k, bm, gm, out):
    """out[p, c] = k ((dy - bm) - xh gm) in FP32, xh = (x - mean) rstd."""
    for p in range(dcodes.shape[0]):
        for c in range(dcodes.shape[1]):
            x, dy = table[xcodes[p, c]], table[dcodes[p, c]]
            out[p, c] = _norm_dx(dy, x, mean[c], rstd[c], k[c], bm[c], gm[c])


# ---- element-wise results rounded RNE into FP8 codes by the same kernel call (`rne_codes` of
# the float64 value of each result, which the callers otherwise build first): the results go
# to a float64 scratch array, then `_rne` (whose branch-free loop vectorises; rounding in the
# first loop was 3x slower). Each returns 1 when a result is a NaN (`out` is then not usable:
# the caller takes the composition), else 0


@njit(cache=True)
def sum_rne_codes(a, b, ta, tb, out, db, maxbits, minbits, halfbits, bias, man, sbit):
    """out[i] = RNE code of ta[a[i]] + tb[b[i]] (float64 tables of the codes' values)."""
    t = np.empty(out.shape[0], np.float64)
    for i in range(out.shape[0]):
        t[i] = ta[a[i]] + tb[b[i]]
    return np.int64(_rne(t, out, db, maxbits, minbits, halfbits, bias, man, sbit) >= 0)


@njit(cache=True)
def norm_fwd_codes(codes, table, mean, rstd, gamma, beta, out, db, maxbits, minbits,
                   halfbits, bias, man, sbit):  # fmt: skip
    """out[p ch + c] = RNE code of `norm_fwd_values`' out[p, c]."""
    ch = codes.shape[1]
    t = np.empty(out.shape[0], np.float64)
    for p in range(codes.shape[0]):
        for c in range(ch):
            t[p * ch + c] = _norm_y(table[codes[p, c]], mean[c], rstd[c], gamma[c], beta[c])
    return np.int64(_rne(t, out, db, maxbits, minbits, halfbits, bias, man, sbit) >= 0)


@njit(cache=True)
def norm_bwd_codes(dcodes, xcodes, table, mean, rstd, k, bm, gm, out, db, maxbits, minbits,
                   halfbits, bias, man, sbit):  # fmt: skip
    """out[p ch + c] = RNE code of `norm_bwd_values`' out[p, c]."""
    ch = dcodes.shape[1]
    t = np.empty(out.shape[0], np.float64)
    for p in range(dcodes.shape[0]):
        for c in range(ch):
            x, dy = table[xcodes[p, c]], table[dcodes[p, c]]
            t[p * ch + c] = _norm_dx(dy, x, mean[c], rstd[c], k[c], bm[c], gm[c])
    return np.int64(_rne(t, out, db, maxbits, minbits, halfbits, bias, man, sbit) >= 0)
