"""Benches of the arithmetic blocks (multiplier, SRU, dot-product unit) and their references.

Every expected value comes from `simulator.numerics` (decode / quantize / encode /
dot_product_step); nothing here re-derives a format's semantics.
"""

from __future__ import annotations

import numpy as np

from rtl.checks.bench import Bench, Variant, Vectors, to_signed
from rtl.dot_product import DotProductUnit
from rtl.multiplier import FP8_FORMATS, Fp8Multiplier, product_exp_width
from rtl.sru import StochasticRoundingUnit
from simulator.numerics import decode, encode, get_format, quantize
from simulator.numerics.dot_product import ACC_FORMAT, dot_product_step

U64 = np.uint64


# ---- FP8 multiplier ---------------------------------------------------------------------
def _mul_variant(fmt: str) -> Variant:
    f = get_format(fmt)
    ew = product_exp_width(f)

    def check(vec: Vectors, out: Vectors) -> np.ndarray:
        va = decode(vec["a"].astype(np.uint8), f).astype(np.float64)
        vb = decode(vec["b"].astype(np.uint8), f).astype(np.float64)
        with np.errstate(invalid="ignore"):
            p = va * vb  # exact in float64
        nan, inf = np.isnan(p), np.isinf(p)
        got = np.ldexp(out["sig"].astype(np.float64), to_signed(out["exp"], ew).astype(np.int32))
        bad = (out["nan"] != nan) | (out["inf"] != inf)
        bad |= ~nan & (out["sign"] != np.signbit(p))
        bad |= ~nan & ~inf & (got != np.abs(p))
        return bad

    return Variant("fp8_mul", {"fmt": fmt}, lambda: Fp8Multiplier(fmt), check)


def _mul_vectors(n: int, rng: np.random.Generator) -> Vectors:
    every = np.arange(1 << 16, dtype=U64)  # all 65536 operand pairs first
    a = np.concatenate([every >> U64(8), rng.integers(0, 256, n).astype(U64)])
    b = np.concatenate([every & U64(255), rng.integers(0, 256, n).astype(U64)])
    return {"a": a, "b": b}


def multiplier_bench() -> Bench:
    return Bench(
        "fp8_mul", [("a", 8), ("b", 8)], [_mul_variant(f) for f in FP8_FORMATS], _mul_vectors
    )


# ---- stochastic rounding unit ------------------------------------------------------------
SRU_PAIRS = (
    ("fp16", "e5m2"),
    ("fp16", "e4m3"),
    ("fp16_chip", "e5m2_chip"),
    ("fp32", "e5m2"),
    ("fp32", "e4m3"),
    ("fp32", "e5m2_chip"),
)
SRU_R = (1, 3, 8, 13, 24)
SRU_STOCHASTIC = ("sr", "sr_half", "sr_corrected")


def _sru_variant(in_fmt: str, out_fmt: str, rounding: str, r: int) -> Variant:
    field_name = "x32" if in_fmt == "fp32" else "x16"
    fin, fout = get_format(in_fmt), get_format(out_fmt)

    def values(vec: Vectors) -> np.ndarray:
        return decode(vec[field_name].astype(fin.code_dtype), fin)

    def valid(vec: Vectors) -> np.ndarray:
        # The numerics reject NaN for a format without NaN: the reference is undefined there.
        return np.ones(len(vec[field_name]), bool) if fout.has_nan else ~np.isnan(values(vec))

    def check(vec: Vectors, out: Vectors) -> np.ndarray:
        v = values(vec)
        if not fout.has_nan:
            v = np.where(np.isnan(v), np.float32(0), v)
        if rounding == "rne":
            q = quantize(v, fout, "rne")
        else:
            s = (vec["rbits"] & U64((1 << r) - 1)).astype(np.int64)
            q = quantize(v, fout, rounding, r=r, random_bits=s)
        return out["y"] != encode(q, fout)

    params = {"in_fmt": in_fmt, "out_fmt": out_fmt, "rounding": rounding}
    if rounding != "rne":
        params["r"] = r
    return Variant(
        "sru",
        params,
        lambda: StochasticRoundingUnit(in_fmt, out_fmt, rounding, r),
        check,
        port_map={"x": field_name},
        valid=valid,
    )


def sru_variants() -> list[Variant]:
    out = []
    for i, o in SRU_PAIRS:
        out.append(_sru_variant(i, o, "rne", 0))
        out += [_sru_variant(i, o, m, r) for m in SRU_STOCHASTIC for r in SRU_R]
    return out


def _fp32_edges() -> np.ndarray:
    """float32 patterns at the FP8 formats' interesting points: every value, its neighbours,
    midpoints (ties), and the specials."""
    vals = []
    for fmt in ("e5m2", "e4m3", "e5m2_chip"):
        g = decode(np.arange(128, dtype=np.uint8), fmt).astype(np.float64)
        g = np.unique(g[np.isfinite(g)])
        mids = (g[:-1] + g[1:]) / 2
        quarter = g[:-1] + (g[1:] - g[:-1]) / 4
        vals += [g, mids, quarter, g[-1:] * 1.0625, g[-1:] * 1.125, g[-1:] * 2]
    v = np.concatenate(vals).astype(np.float32)
    v = np.concatenate([v, np.nextafter(v, np.float32(np.inf)), np.nextafter(v, np.float32(0))])
    v = np.concatenate(
        [v, -v, np.array([np.inf, -np.inf, np.nan, 3.4e38, 1e-45, 1e-40], np.float32)]
    )
    return v.view(np.uint32).astype(U64)


def _sru_vectors(n: int, rng: np.random.Generator) -> Vectors:
    x16_edge = np.arange(1 << 16, dtype=U64)  # every FP16 code
    x32_edge = _fp32_edges()
    m = max(len(x16_edge), len(x32_edge))
    x16 = np.concatenate([np.resize(x16_edge, m), rng.integers(0, 1 << 16, n).astype(U64)])
    x32_edge = np.resize(x32_edge, m)
    # Random FP32: a quarter uniform bit patterns, the rest near the FP8 range.
    sign = rng.integers(0, 2, n).astype(U64) << U64(31)
    expo = rng.integers(127 - 20, 127 + 19, n).astype(U64) << U64(23)
    mant = rng.integers(0, 1 << 23, n).astype(U64)
    near = sign | expo | mant
    x32 = np.where(rng.random(n) < 0.25, rng.integers(0, 1 << 32, n).astype(U64), near)
    x32 = np.concatenate([x32_edge, x32])
    # Random words: the extremes (0 and all ones) on a slice of the edge rows.
    rb = rng.integers(0, 1 << 32, m + n).astype(U64)
    rb[: m // 8] = 0
    rb[m // 8 : m // 4] = (1 << 32) - 1
    return {"x16": x16, "x32": x32, "rbits": rb}


def sru_bench() -> Bench:
    return Bench("sru", [("x16", 16), ("x32", 32), ("rbits", 32)], sru_variants(), _sru_vectors)


# ---- dot-product-accumulate unit ----------------------------------------------------------
DP_WIDTH = 8
DP_ROUNDINGS = (("rne", 0), ("sr", 8), ("sr_half", 3), ("sr_corrected", 13))


def _unpack8(word: np.ndarray, count: int) -> np.ndarray:
    return np.stack([(word >> U64(8 * i)) & U64(255) for i in range(count)], axis=-1).astype(
        np.uint8
    )


def _dp_variant(fmt: str, rounding: str, r: int) -> Variant:
    def check(vec: Vectors, out: Vectors) -> np.ndarray:
        a, b = _unpack8(vec["a"], DP_WIDTH), _unpack8(vec["b"], DP_WIDTH)
        acc = vec["acc"].astype(np.uint16)
        if rounding == "rne":
            y = dot_product_step(a, b, acc, fmt, "rne")
        else:
            s = (vec["rbits"] & U64((1 << r) - 1)).astype(np.int64)
            y = dot_product_step(a, b, acc, fmt, rounding, r=r, random_bits=s)
        return out["y"] != y

    params: dict[str, object] = {"fmt": fmt, "acc_fmt": ACC_FORMAT[fmt], "dp_width": DP_WIDTH}
    params["rounding"] = rounding
    if rounding != "rne":
        params["r"] = r
    return Variant(
        "dot_product", params, lambda: DotProductUnit(fmt, DP_WIDTH, rounding, r or 8), check
    )


def _fp8_codes(rng: np.random.Generator, shape: tuple[int, ...], spread: int) -> np.ndarray:
    """FP8 codes: mostly exponents within +-spread of the bias (so products overlap and
    cancel), some zeros and some fully random codes (specials, extremes)."""
    e = rng.integers(15 - spread, 15 + spread + 1, shape)
    code = (rng.integers(0, 2, shape) << 7) | (e << 2) | rng.integers(0, 4, shape)
    pick = rng.random(shape)
    code = np.where(pick < 0.1, 0, code)
    code = np.where(pick > 0.85, rng.integers(0, 256, shape), code)
    return code.astype(U64)


def _pack8(codes: np.ndarray) -> np.ndarray:
    word = np.zeros(codes.shape[0], dtype=U64)
    for i in range(codes.shape[1]):
        word |= codes[:, i].astype(U64) << U64(8 * i)
    return word


def _dp_edges() -> Vectors:
    rows_a, rows_b, rows_c = [], [], []

    def add(a: list[int], b: list[int], c: int) -> None:
        rows_a.append(a)
        rows_b.append(b)
        rows_c.append(c)

    z = [0] * DP_WIDTH
    add(z, z, 0)
    add(z, z, 0x8000)  # -0 accumulator
    for c in (0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x7E00, 0x0001, 0x8001, 0x0400, 0x3C00):
        for code in (0x7B, 0xFB, 0x7C, 0xFC, 0x7F, 0x01, 0x81, 0x04, 0x3C, 0x38, 0x00):
            add([code] * DP_WIDTH, [code] * DP_WIDTH, c)
            add([code] + [0] * (DP_WIDTH - 1), [0x3C] * DP_WIDTH, c)
    # exact cancellation between pairs of products, with and without an accumulator
    for code in range(0, 128, 3):
        add([code, code | 0x80] + [0] * (DP_WIDTH - 2), [0x3C, 0x3C] + [0] * (DP_WIDTH - 2), 0)
        add([code, code | 0x80] * (DP_WIDTH // 2), [0x44] * DP_WIDTH, 0x1400)
    a = np.array(rows_a, dtype=U64)
    b = np.array(rows_b, dtype=U64)
    return {"a": _pack8(a), "b": _pack8(b), "acc": np.array(rows_c, dtype=U64)}


def _dp_vectors(n: int, rng: np.random.Generator) -> Vectors:
    edge = _dp_edges()
    a = _pack8(_fp8_codes(rng, (n, DP_WIDTH), 4))
    b = _pack8(_fp8_codes(rng, (n, DP_WIDTH), 4))
    e = rng.integers(15 - 10, 15 + 11, n)
    acc = (rng.integers(0, 2, n) << 15) | (e << 10) | rng.integers(0, 1 << 10, n)
    pick = rng.random(n)
    acc = np.where(pick < 0.1, 0, acc)
    acc = np.where(pick > 0.9, rng.integers(0, 1 << 16, n), acc).astype(U64)
    m = len(edge["acc"])
    rb = rng.integers(0, 1 << 32, m + n).astype(U64)
    return {
        "a": np.concatenate([edge["a"], a]),
        "b": np.concatenate([edge["b"], b]),
        "acc": np.concatenate([edge["acc"], acc]),
        "rbits": rb,
    }


def dot_product_bench() -> Bench:
    variants = [_dp_variant(f, m, r) for f in FP8_FORMATS for m, r in DP_ROUNDINGS]
    fields = [("a", 8 * DP_WIDTH), ("b", 8 * DP_WIDTH), ("acc", 16), ("rbits", 32)]
    return Bench("dot_product", fields, variants, _dp_vectors)
