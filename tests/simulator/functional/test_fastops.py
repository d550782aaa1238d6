"""The executor's one-pass helpers (`simulator.functional.fastops`) and the tensor core's cached
gather indices equal the numpy compositions they replace, bit for bit."""

import numpy as np
import pytest

from isa.layouts import aligned_chunks, compacted_k
from simulator.config import load_config
from simulator.functional import Machine
from simulator.functional.fastops import (
    _rne_args,
    _sr_normal_args,
    copy_rows,
    gather,
    gather_columns,
    gather_pattern,
    gather_runs,
    group_mean_above,
    norm_bwd_codes,
    norm_bwd_sums,
    norm_bwd_values,
    norm_fwd_codes,
    norm_fwd_values,
    norm_stat_sums,
    relu_bwd_codes,
    relu_fwd_codes,
    rne_codes,
    run_starts,
    seq_sum,
    sr_codes,
    sum_rne_codes,
    value_tables,
    values,
)
from simulator.functional.norm import derived
from simulator.functional.sru import SRUs
from simulator.functional.state import Descriptor
from simulator.functional.tensor_core import TensorCore
from simulator.functional.tree import acc_decode
from simulator.functional.units import exact_group_sums
from simulator.numerics import decode, encode, quantize

OPF, ACCF = "e5m2_chip", "fp16_chip"


def _slow_codes(x, fmt):
    q = quantize(x, fmt, "rne")
    return encode(q + np.asarray(0.0, q.dtype), fmt)


def _edges(fmt):
    """Values around every grid point's rounding boundaries, the smallest normal, its half,
    the largest value, overflow, zeros and infinities."""
    t = decode(
        np.arange(1 << (8 if fmt == OPF else 16), dtype=np.uint16 if fmt == ACCF else np.uint8), fmt
    )
    g = np.unique(np.abs(t.astype(np.float64)))
    mid = (g[:-1] + g[1:]) / 2
    low = g[1:2] / 2  # half the smallest normal
    near = [np.nextafter(mid, 0), np.nextafter(mid, np.inf), low, np.nextafter(low, 1), low / 2]
    pts = np.concatenate([g, mid, *near, g[-1:] * 1.2, [1e300, np.inf]])
    return np.concatenate([pts, -pts, [0.0, -0.0]])


@pytest.mark.parametrize("fmt", [OPF, ACCF])
def test_rne_codes_equals_quantize_encode(fmt):
    rng = np.random.default_rng(0)
    x64 = np.concatenate(
        [_edges(fmt), rng.standard_normal(20000) * 2.0 ** rng.integers(-30, 30, 20000)]
    )
    bits = rng.integers(0, 1 << 32, 200000, dtype=np.uint64).astype(np.uint32)
    x32 = bits.view(np.float32)
    x32 = x32[~np.isnan(x32)]
    with np.errstate(over="ignore"):
        x64_32 = x64.astype(np.float32)
    for x in (x64, x64_32, x32):
        got = rne_codes(x, fmt)
        assert got.dtype == (np.uint8 if fmt == OPF else np.uint16)
        assert np.array_equal(got, _slow_codes(x, fmt))
    assert rne_codes(x64.reshape(-1, 2), fmt).shape == (x64.size // 2, 2)
    with pytest.raises(ValueError):  # NaN: quantize refuses it for a format without NaN
        rne_codes(np.array([1.0, np.nan]), fmt)


def test_rne_codes_other_formats_take_the_composition():
    x = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
    assert np.array_equal(rne_codes(x, "e4m3"), _slow_codes(x, "e4m3"))


def _slow_sr_codes(x, fmt, rounding, r, words):
    q = quantize(x, fmt, rounding, r=r, random_bits=words)
    return encode(q + np.asarray(0.0, q.dtype), fmt)


@pytest.mark.parametrize("rounding", ["sr", "sr_half", "sr_corrected"])
def test_sr_codes_equals_quantize_encode(rounding):
    """Every rounding boundary, random magnitudes and random float32 bit patterns, each with
    random words and with the extreme words 0 and 2**r - 1; r from 1 to 32."""
    rng = np.random.default_rng(7)
    x64 = np.concatenate(
        [_edges(OPF), rng.standard_normal(20000) * 2.0 ** rng.integers(-30, 30, 20000)]
    )
    x32 = rng.integers(0, 1 << 32, 50000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    x32 = x32[~np.isnan(x32)]
    with np.errstate(over="ignore"):
        inputs = (x64, x64.astype(np.float32), x32)
    for r in (1, 8, 13, 32):
        assert _sr_normal_args(OPF, rounding, r) is not None  # the one-pass kernel runs
        for x in inputs:
            for words in (
                rng.integers(0, 1 << r, x.size, dtype=np.uint64).astype(np.uint32),
                np.zeros(x.size, np.uint32),
                np.full(x.size, (1 << r) - 1, np.uint32),
            ):
                got = sr_codes(x, OPF, rounding, r, words)
                assert got.dtype == np.uint8
                assert np.array_equal(got, _slow_sr_codes(x, OPF, rounding, r, words))
    x = x64[:100].reshape(10, 10)
    assert sr_codes(x, OPF, rounding, 8, np.zeros(100, np.uint32)).shape == (10, 10)


def test_sr_codes_refusals_are_the_compositions():
    """A NaN, a word wider than r: the composition's own errors; another format: its codes."""
    with pytest.raises(ValueError, match="NaN"):
        sr_codes(np.array([1.0, np.nan]), OPF, "sr", 8, np.zeros(2, np.uint32))
    with pytest.raises(ValueError, match=r"random_bits\[1\] = 256"):
        sr_codes(np.array([1.0, 0.3]), OPF, "sr", 8, np.array([0, 256], np.uint32))
    with pytest.raises(ValueError, match=r"r=33 must be in 1\.\.32"):
        sr_codes(np.array([1.0, 0.3]), OPF, "sr", 33, np.array([0, 256], np.uint64))
    assert _sr_normal_args("e4m3", "sr", 8) is None
    x = np.random.default_rng(8).standard_normal(1000).astype(np.float32)
    w = np.arange(1000, dtype=np.uint32) % 256
    assert np.array_equal(sr_codes(x, "e4m3", "sr", 8, w), _slow_sr_codes(x, "e4m3", "sr", 8, w))


def test_values_and_sru_rne():
    c = np.arange(256, dtype=np.uint8)
    ref = decode(c, OPF)
    assert np.array_equal(values(c, OPF).view(np.int64), ref.astype(np.float64).view(np.int64))
    assert np.array_equal(values(c.reshape(16, 16), OPF, np.float32), ref.reshape(16, 16))
    assert np.array_equal(value_tables(OPF)[0], ref)
    srus = SRUs(OPF, 16)  # an unconfigured stream rounds RNE, zeros as +0
    x = np.concatenate([_edges(OPF), [-1e-30, -0.0]])
    assert np.array_equal(srus.round("act", x), _slow_codes(x, OPF))


def test_seq_sum_is_sequential_float32():
    rng = np.random.default_rng(2)
    vals = (rng.standard_normal((300, 7)) * 2.0 ** rng.integers(-10, 10, (300, 7))).astype(
        np.float32
    )
    start = rng.standard_normal(7).astype(np.float32)
    arr = np.concatenate([start[None], vals])
    ref = np.add.accumulate(arr, axis=0, dtype=np.float32)[-1]
    assert np.array_equal(seq_sum(start, vals).view(np.int32), ref.view(np.int32))


def test_norm_kernels_equal_numpy_float32():
    rng = np.random.default_rng(3)
    pix, ch = 50, 12
    dy = rng.integers(0, 256, (pix, ch)).astype(np.uint8)
    xc = rng.integers(0, 256, (pix, ch)).astype(np.uint8)
    t32 = value_tables(OPF)[0]
    x, d = t32[xc], t32[dy]
    s = np.float32(3) * x.sum(axis=0).astype(np.float32)
    q = np.float32(3) * (x * x).sum(axis=0).astype(np.float32)
    mean, rstd = derived(s, q, 3 * pix)
    gamma, beta = t32[rng.integers(0, 256, ch)], t32[rng.integers(0, 256, ch)]
    f32 = np.float32
    xh = ((x - mean).astype(f32) * rstd).astype(f32)
    y = np.empty((pix, ch), f32)
    norm_fwd_values(xc, t32, mean, rstd, gamma, beta, y)
    ref = ((xh * gamma).astype(f32) + beta).astype(f32)
    assert np.array_equal(y.view(np.int32), ref.view(np.int32))
    sg0, sb0 = rng.standard_normal(ch).astype(f32), rng.standard_normal(ch).astype(f32)
    sg, sb = sg0.copy(), sb0.copy()
    norm_bwd_sums(dy, xc, t32, mean, rstd, sg, sb)
    assert np.array_equal(sg, seq_sum(sg0, (d * xh).astype(f32)))
    assert np.array_equal(sb, seq_sum(sb0, d))
    k = (gamma * rstd).astype(f32)
    bm, gm = (sb / f32(7)).astype(f32), (sg / f32(7)).astype(f32)
    out = np.empty((pix, ch), f32)
    norm_bwd_values(dy, xc, t32, mean, rstd, k, bm, gm, out)
    t = ((d - bm).astype(f32) - (xh * gm).astype(f32)).astype(f32)
    ref = (k * t).astype(f32)
    assert np.array_equal(out.view(np.int32), ref.view(np.int32))
    s1, q1 = s.copy(), q.copy()
    norm_stat_sums(xc, t32, s1, q1)
    assert np.array_equal(s1, seq_sum(s, x)) and np.array_equal(q1, seq_sum(q, x * x))


def test_rounded_norm_and_sum_kernels_equal_rne_of_the_values():
    """The kernels that round their results RNE in the same call give `rne_codes` of the
    float64 value of `norm_fwd_values` / `norm_bwd_values` / a table sum; a NaN result is
    reported (1), not rounded."""
    rng = np.random.default_rng(11)
    pix, ch, f32 = 40, 10, np.float32
    xc, dy = (rng.integers(0, 256, (pix, ch)).astype(np.uint8) for _ in range(2))
    t32, t64 = value_tables(OPF)
    p = _rne_args(OPF)
    mean, rstd, gamma, beta, k, bm, gm = (
        (rng.standard_normal(ch) * 2.0 ** rng.integers(-8, 8, ch)).astype(f32) for _ in range(7)
    )
    y = np.empty((pix, ch), f32)
    codes = np.empty(pix * ch, np.uint8)
    norm_fwd_values(xc, t32, mean, rstd, gamma, beta, y)
    assert norm_fwd_codes(xc, t32, mean, rstd, gamma, beta, codes, *p) == 0
    assert np.array_equal(codes, rne_codes(y.astype(np.float64), OPF).reshape(-1))
    norm_bwd_values(dy, xc, t32, mean, rstd, k, bm, gm, y)
    assert norm_bwd_codes(dy, xc, t32, mean, rstd, k, bm, gm, codes, *p) == 0
    assert np.array_equal(codes, rne_codes(y.astype(np.float64), OPF).reshape(-1))
    a, b = xc.reshape(-1), dy.reshape(-1)
    for tb, ref in ((t64, t64[a] + t64[b]), (-t64, t64[a] - t64[b])):
        assert sum_rne_codes(a, b, t64, tb, codes, *p) == 0
        assert np.array_equal(codes, rne_codes(ref, OPF))
    mean[3] = np.nan
    assert norm_fwd_codes(xc, t32, mean, rstd, gamma, beta, codes, *p) == 1
    assert norm_bwd_codes(dy, xc, t32, mean, rstd, k, bm, gm, codes, *p) == 1
    tn = t64.copy()
    tn[b[7]] = np.nan
    assert sum_rne_codes(a, b, t64, tn, codes, *p) == 1


def test_gather_and_copy_rows():
    rng = np.random.default_rng(4)
    src = rng.integers(0, 256, 1000).astype(np.uint8)
    idx = rng.integers(-1, 1000, (7, 11, 8)).astype(np.int32)
    assert np.array_equal(gather(src, idx), np.where(idx >= 0, src[np.maximum(idx, 0)], 0))
    for dt in (np.uint8, np.uint32):
        a = rng.integers(0, 256, 500).astype(dt)
        b = np.zeros(600, dt)
        copy_rows(a, 3, 20, b, 7, 33, 9, 17)
        ref = np.zeros(600, dt)
        for i in range(9):
            ref[7 + 33 * i : 7 + 33 * i + 17] = a[3 + 20 * i : 3 + 20 * i + 17]
        assert np.array_equal(b, ref)


def _old_patches(d, buf, p0, pn, cols, c0, cn):
    """The previous gathering: zero-padded rows, then one slice per tap."""
    first = p0 * d.stride - d.pad
    last = (p0 + pn - 1) * d.stride - d.pad + d.kh
    r0, r1 = max(0, first), min(d.h, last)
    x = buf[: (r1 - r0) * d.w * cols].reshape(r1 - r0, d.w, cols)
    xp = np.zeros((last - first, d.w + 2 * d.pad, cn), np.uint8)
    xp[r0 - first : r1 - first, d.pad : d.pad + d.w] = x[:, :, c0 : c0 + cn]
    ow, s = d.ow, d.stride
    taps = [
        xp[dy : dy + (pn - 1) * s + 1 : s, dx : dx + (ow - 1) * s + 1 : s]
        for dy in range(d.kh)
        for dx in range(d.kw)
    ]
    return np.stack(taps, axis=2).reshape(pn * ow, d.taps, cn)


GEOMS = [  # h, w, kh, kw, stride, pad, c, p0, pn, c0, cn
    (8, 8, 3, 3, 1, 1, 16, 0, 8, 0, 16),
    (8, 8, 3, 3, 1, 1, 16, 3, 2, 8, 8),
    (9, 7, 3, 3, 2, 1, 3, 1, 3, 0, 3),
    (8, 8, 1, 1, 2, 0, 24, 0, 4, 8, 16),
    (6, 6, 5, 5, 1, 2, 10, 2, 4, 1, 9),
    (4, 4, 4, 4, 1, 0, 8, 0, 1, 0, 8),
    (8, 8, 3, 3, 1, 1, 16, 0, 4, 4, 12),  # a conditional pass after a base pass of 4
]


@pytest.mark.parametrize("g", GEOMS)
def test_patch_indices_equal_the_slices(g):
    h, w, kh, kw, stride, pad, c, p0, pn, c0, cn = g
    d = Descriptor("conv", c, 8, h, w, kh, kw, stride, pad, 1, False, False)
    m = Machine.create(load_config("ref28"), 64)
    tc = TensorCore(m, SRUs(OPF, 16, machine=m))
    buf = np.random.default_rng(5).integers(1, 256, h * w * c).astype(np.uint8)
    ref = _old_patches(d, buf, p0, pn, c, c0, cn)  # (P, taps, cn)
    A = gather(buf, tc._fwd_index(d, p0, pn, c0, cn))
    dp = tc.dp
    cnp = -(-cn // dp) * dp
    padded = np.zeros((ref.shape[0], d.taps, cnp), np.uint8)
    padded[:, :, :cn] = ref
    assert np.array_equal(A, padded.reshape(ref.shape[0], -1, dp))
    # the same as row copies: every (pixel, tap) is cn consecutive bytes or zeros
    geom = (h, w, kh, kw, stride, pad, d.ow, p0, pn, c, c0, cn, dp)
    assert tc._patch_runs(*geom) is not None
    # tc.fwd's operand: within a tap the chunks of the dp-aligned channel blocks
    lay = aligned_chunks(c0, cn, dp)
    assert (lay >= 0).sum() == cn and len(lay) % dp == 0
    want = np.where(lay >= 0, ref[..., np.maximum(lay, 0)], 0).reshape(ref.shape[0], -1, dp)
    assert np.array_equal(tc._patches(buf, d, p0, pn, c0, cn), want)
    if c0 % dp == 0:
        assert np.array_equal(want, A)
    else:  # the first chunk holds the rest of c0's block only
        assert (lay[: dp - c0 % dp] >= 0).all() and (lay[dp - c0 % dp : dp] < 0).all()
    # tc.wgr's patches transposed, pixels in dp-wide chunks (channels from 0, `cn` per pixel)
    refw = _old_patches(d, buf, p0, pn, cn, 0, cn).reshape(ref.shape[0], -1).T
    XT = gather(buf, tc._wgr_index(h, w, kh, kw, stride, pad, d.ow, p0, pn, cn, dp))
    P = refw.shape[1]
    chunked = np.zeros((refw.shape[0], -(-P // dp) * dp), np.uint8)
    chunked[:, :P] = refw
    assert np.array_equal(XT, chunked.reshape(refw.shape[0], -1, dp))
    # the same from each column's first byte (`gather_columns`, what tc.wgr runs)
    starts = tc._wgr_starts(h, w, kh, kw, stride, pad, d.ow, p0, pn, cn, dp)
    assert np.array_equal(gather_columns(buf, starts, cn).reshape(XT.shape), XT)


def test_rne_codes_finds_a_nan_anywhere():
    """The one-pass loop looks for NaN after the fact: one in the middle still refuses."""
    x = np.linspace(-3, 3, 1001)
    x[517] = np.nan
    with pytest.raises(ValueError):
        rne_codes(x, OPF)


def test_relu_codes_equal_numpy():
    """relu_fwd_codes / relu_bwd_codes equal the numpy expressions they replace on every code
    (and every pair of codes), into new arrays."""
    c = np.arange(256, dtype=np.uint8)
    assert np.array_equal(relu_fwd_codes(c), np.where(c & 0x80, 0, c))
    e, y = np.meshgrid(c, c)
    e, y = e.reshape(-1), y.reshape(-1)
    t64 = value_tables(OPF)[1]
    ref = np.where(decode(y.copy(), OPF) > 0, e, 0)
    got = relu_bwd_codes(e, y, t64)
    assert got.dtype == np.uint8 and np.array_equal(got, ref)
    assert (got == 0).sum() > 0 and (got != 0).sum() > 0
    # a table where some sign-clear code is not positive (a NaN) takes the lookup
    t_nan = t64.copy()
    t_nan[0x7F] = np.nan
    ref = np.where(t_nan[y] > 0, e, 0)
    assert np.array_equal(relu_bwd_codes(e, y, t_nan), ref)
    assert not np.array_equal(ref, got)


def test_group_mean_above_equals_numpy_mean():
    """Mean of 16 FP16 accumulator values above a threshold, as np.mean (pairwise sums): the
    sums are exact, so the sequential loop gives the same bits, at extremes and at ties."""
    assert exact_group_sums(ACCF, 16)
    assert not exact_group_sums("fp32", 16)  # 2**128 / 2**-149: no exact float64 sum
    rng = np.random.default_rng(7)
    words = np.concatenate(
        [
            rng.integers(0, 1 << 16, 16 * 4000),
            np.full(16 * 4, 0x7BFF),  # the largest value, and its negation
            np.full(16 * 4, 0xFBFF),
            np.tile([0x7BFF, 0x0400], 8 * 4),  # largest and smallest normal in one group
        ]
    ).astype(np.uint16)
    v = acc_decode(words, ACCF)
    mean = v.reshape(-1, 16).mean(axis=1)
    for thr in (0.0, -1.5, 1.0, float(mean[3]), float(mean[-1]), 65504.0):
        ref = mean > thr
        got = group_mean_above(v, 16, thr)
        assert np.array_equal(got, ref), thr
    assert 0 < group_mean_above(v, 16, 0.0).sum() < mean.size


BWD_GEOMS = [  # h, w, kh, kw, stride, pad, p0, pn, kn
    (8, 8, 3, 3, 1, 1, 0, 8, 16),
    (8, 8, 3, 3, 1, 1, 3, 2, 12),
    (9, 7, 3, 3, 2, 1, 1, 3, 5),
    (8, 8, 1, 1, 2, 0, 0, 4, 24),
    (6, 6, 5, 5, 1, 2, 2, 4, 9),
]


@pytest.mark.parametrize("g", BWD_GEOMS)
def test_bwd_gather_equals_fancy_indexing(g):
    """tc.bwd's row operand by one gather equals the previous form: a zero row appended to
    the dY tile, indexed per dX pixel and tap, channels zero-padded into dp-wide chunks."""
    h, w, kh, kw, stride, pad, p0, pn, kn = g
    d = Descriptor("conv", 8, kn, h, w, kh, kw, stride, pad, 1, False, False)
    m = Machine.create(load_config("ref28"), 64)
    tc = TensorCore(m, SRUs(OPF, 16, machine=m))
    dy = np.random.default_rng(8).integers(1, 256, (pn * d.ow, kn)).astype(np.uint8)
    dyz = np.concatenate([dy, np.zeros((1, kn), np.uint8)])
    ref = tc._chunks(dyz[tc._bwd_index(d, p0, pn)]).reshape(h * w, -1, tc.dp)
    got = gather(dy.reshape(-1), tc._bwd_gather(d, p0, pn, kn))
    assert np.array_equal(got, ref)
    assert (got == 0).any() and (got != 0).any()
    starts = tc._bwd_runs(h, w, kh, kw, stride, pad, d.ow, p0, pn, kn, tc.dp)
    assert starts is not None
    runs = gather_runs(dy.reshape(-1), starts, kn, -(-kn // tc.dp) * tc.dp)
    assert np.array_equal(runs.reshape(got.shape), got)


@pytest.mark.parametrize("g", BWD_GEOMS)
def test_compacted_bwd_rows_equal_the_index_gather(g):
    """tc.bwd's compacted row operand (weight sparsity) by `gather_pattern` from each dX
    pixel and tap's dY row equals the fancy-indexed form: per slot of the layout the dY byte
    of its k (or a zero), for layouts with gaps, segments and padding."""
    h, w, kh, kw, stride, pad, p0, pn, kn = g
    d = Descriptor("conv", 8, kn, h, w, kh, kw, stride, pad, 1, False, False)
    m = Machine.create(load_config("ref28"), 64)
    tc = TensorCore(m, SRUs(OPF, 16, machine=m))
    rng = np.random.default_rng(9)
    dy = rng.integers(1, 256, (pn * d.ow, kn)).astype(np.uint8)
    geom = (h, w, kh, kw, stride, pad, d.ow, p0, pn, kn)
    base = tc._bwd_gather_cached(*geom, 1).reshape(h * w, kh * kw, kn)
    starts = tc._bwd_row_starts(*geom)
    for seg in (kn, max(1, kn // 2)):
        for _ in range(3):
            lay = compacted_k(tuple(rng.random(kn) < 0.6), seg, tc.dp)
            if not len(lay):
                continue
            idx = np.where(lay >= 0, base[..., np.maximum(lay, 0)], -1).astype(np.int32)
            ref = gather(dy.reshape(-1), idx.reshape(h * w, -1, tc.dp))
            got = gather_pattern(dy, starts, lay).reshape(h * w, -1, tc.dp)
            assert np.array_equal(got, ref)


def test_run_starts_only_for_runs():
    """run_starts accepts rows of consecutive indices then -1 (or all -1) and refuses any
    other index, which then stays with `gather`."""
    idx = np.array([[5, 6, 7, -1], [-1, -1, -1, -1], [0, 1, 2, -1]], np.int32)
    st = run_starts(idx, 3)
    assert st is not None and list(st) == [5, -1, 0]
    src = np.arange(10, dtype=np.uint8) + 1
    assert np.array_equal(gather_runs(src, st, 3, 4), gather(src, idx))
    for bad in ([5, 7, 8, -1], [5, 6, 7, 8], [-1, 6, 7, -1]):
        assert run_starts(np.array([bad], np.int32), 3) is None
    assert run_starts(idx, 4) is None  # the rows are shorter runs


def test_weight_tile_cache_follows_the_bytes():
    """A decoded weight tile is reused while its weight bytes (and, with weight sparsity,
    its group mask) are unchanged, and rebuilt when one byte changes."""
    from simulator.functional import Modes

    d = Descriptor("conv", 16, 16, 8, 8, 3, 3, 1, 1, 1, False, True)
    m = Machine.create(load_config("ref28"), 64)
    tc = TensorCore(m, SRUs(OPF, 16, machine=m))
    rng = np.random.default_rng(9)
    n = 16 * d.taps * 16
    m.buffers["wgt"][100 : 100 + n] = rng.integers(0, 256, n).astype(np.uint8)
    built = []

    def build():
        built.append(1)
        return tc._chunks(tc._weights(d, 100, 16, 16)).reshape(16, -1, tc.dp)

    def tile():
        return tc._prepare((0, 100, 16, 0, 16, 9, 16, 8), tc._wsource(d, 100, 16, 16, 40), build)

    a = tile()
    assert tile() is a and len(built) == 1
    m.buffers["wgt"][100 + n - 1] ^= 1  # the tile's last byte
    b = tile()
    assert b is not a and len(built) == 2
    assert not np.array_equal(a.codes, b.codes)
    m.buffers["wgt"][100 + n] ^= 1  # a byte past the tile changes nothing
    assert tile() is b and len(built) == 2
    m.forced_modes = Modes(wsparse=True)  # the group mask now takes part
    c = tile()
    assert c is not b and len(built) == 3
    m.buffers["msk"][40] ^= 1
    assert tile() is not c and len(built) == 4


def test_norm_statistics_cache_follows_the_bytes():
    """Batch norm's mean and rstd are kept with the statistics bytes they came from: equal
    to `derived` before and after the statistics change, and for another count."""
    from simulator.functional.norm import Norm

    m = Machine.create(load_config("ref28"), 64)
    nrm = Norm(m, None)
    rng = np.random.default_rng(10)
    st = m.f32s("act", 64, 2 * 12)
    st[:] = np.abs(rng.standard_normal(24)).astype(np.float32) * 50
    for count in (98, 98, 50):
        got = nrm._derived("act", 64, 12, count)
        ref = derived(st[0::2].copy(), st[1::2].copy(), count)
        assert all(np.array_equal(g, r) for g, r in zip(got, ref, strict=True))
    before = nrm._derived("act", 64, 12, 50)
    st[5] += np.float32(1.0)  # one channel's sum of squares changes
    got = nrm._derived("act", 64, 12, 50)
    ref = derived(st[0::2].copy(), st[1::2].copy(), 50)
    assert all(np.array_equal(g, r) for g, r in zip(got, ref, strict=True))
    assert not np.array_equal(got[1], before[1])  # not the kept result


def test_norm_statistics_cache_alternating_layers():
    """Two layers' statistics read in turn (backprop) each give their own `derived`, as
    often as they alternate, and a changed threshold word its own gate threshold."""
    from simulator.functional.norm import Norm
    from simulator.functional.units import SparsityUnits

    m = Machine.create(load_config("ref28"), 64)
    nrm = Norm(m, None)
    rng = np.random.default_rng(12)
    for addr in (0, 256):
        m.f32s("act", addr, 24)[:] = np.abs(rng.standard_normal(24)).astype(np.float32) * 9
    for addr in (0, 256, 0, 256):
        st = m.f32s("act", addr, 24)
        ref = derived(st[0::2].copy(), st[1::2].copy(), 40)
        got = nrm._derived("act", addr, 12, 40)
        assert all(np.array_equal(g, r) for g, r in zip(got, ref, strict=True))
    units = SparsityUnits(m)
    thrf = m.cfg.cgu.threshold_format
    for word in (0x3C00, 0x4000, 0x3C00):
        assert units._threshold(word) == decode(np.array([word], np.uint16), thrf)[0]
