"""Benches of the channel-gating comparator and the group-norm zero detector.

Reference semantics (stated in rtl/sparsity.py), computed from `decode`d values:
* gate: active = any(psum > threshold), NaN comparing false.
* group norm: zero = sum(w**2) < threshold with no NaN/Inf weight and a threshold that is not
  NaN. The float64 sum decides it exactly: the squares are nonnegative and exact, so while the
  sum stays below 2**16 (the FP16 threshold's range) every partial sum is a multiple of 2**-32
  below 2**16, exact in 53 bits; a sum above it exceeds every finite threshold however rounded.
"""

from __future__ import annotations

import numpy as np

from rtl.checks.bench import Bench, Variant, Vectors
from rtl.sparsity import ChannelGateComparator, GroupNormZeroDetector
from simulator.numerics import decode, encode, quantize

U64 = np.uint64
GATE_GROUP = 16
NORM_GROUP = 72  # 1 output channel x 8 input channels x 3 x 3


def _words(codes: np.ndarray, bits: int) -> list[np.ndarray]:
    """Pack (n, k) codes of `bits` bits into 64-bit words, element 0 in the low bits."""
    per = 64 // bits
    words = []
    for start in range(0, codes.shape[1], per):
        w = np.zeros(codes.shape[0], dtype=U64)
        for j, col in enumerate(range(start, min(start + per, codes.shape[1]))):
            w |= codes[:, col].astype(U64) << U64(bits * j)
        words.append(w)
    return words


def _unwords(vec: Vectors, prefix: str, count: int, bits: int) -> np.ndarray:
    per = 64 // bits
    cols = []
    for i in range(count):
        w = vec[f"{prefix}{i // per}"]
        cols.append((w >> U64(bits * (i % per))) & U64((1 << bits) - 1))
    return np.stack(cols, axis=1)


def _gate_variant(fmt: str) -> Variant:
    nwords = -(-GATE_GROUP * 16 // 64)

    def check(vec: Vectors, out: Vectors) -> np.ndarray:
        p = decode(_unwords(vec, f"p_{fmt}_", GATE_GROUP, 16).astype(np.uint16), fmt)
        t = decode(vec[f"t_{fmt}"].astype(np.uint16), fmt)
        with np.errstate(invalid="ignore"):
            active = np.any(p > t[:, None], axis=1)
        return out["active"] != active

    return Variant(
        "channel_gate",
        {"fmt": fmt, "group": GATE_GROUP},
        lambda: ChannelGateComparator(fmt, GATE_GROUP),
        check,
        port_map={"psum": [f"p_{fmt}_{i}" for i in range(nwords)], "threshold": f"t_{fmt}"},
    )


def _norm_variant(fmt: str, group: int = NORM_GROUP) -> Variant:
    """A group smaller than NORM_GROUP reads the first weights of the rows (Icarus subset)."""
    nwords = -(-group * 8 // 64)

    def check(vec: Vectors, out: Vectors) -> np.ndarray:
        w = decode(_unwords(vec, f"w_{fmt}_", group, 8).astype(np.uint8), fmt)
        t = decode(vec[f"n_{fmt}"].astype(np.uint16), "fp16").astype(np.float64)
        w = w.astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            s = np.sum(w * w, axis=1)
            zero = (s < t) & np.all(np.isfinite(w), axis=1) & ~np.isnan(t)
        return out["zero"] != zero

    return Variant(
        "group_norm",
        {"fmt": fmt, "group": group, "thr_fmt": "fp16"},
        lambda: GroupNormZeroDetector(fmt, group, "fp16"),
        check,
        port_map={"w": [f"w_{fmt}_{i}" for i in range(nwords)], "threshold": f"n_{fmt}"},
    )


GATE_FORMATS = ("fp16", "fp16_chip")
NORM_FORMATS = ("e4m3", "e5m2", "e5m2_chip")


def _fields() -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for f in GATE_FORMATS:
        out += [(f"p_{f}_{i}", 64) for i in range(GATE_GROUP * 16 // 64)] + [(f"t_{f}", 16)]
    for f in NORM_FORMATS:
        out += [(f"w_{f}_{i}", 64) for i in range(NORM_GROUP * 8 // 64)] + [(f"n_{f}", 16)]
    return out


def _vectors(n: int, rng: np.random.Generator) -> Vectors:
    data: Vectors = {}
    for f in GATE_FORMATS:
        # Partial sums and thresholds in one narrow exponent range, so both outcomes occur and
        # equal values (ties) are common; a few fully random codes bring the specials.
        e = rng.integers(13, 17, (n, GATE_GROUP))
        p = (
            (rng.integers(0, 2, (n, GATE_GROUP)) << 15)
            | (e << 10)
            | rng.integers(0, 4, (n, GATE_GROUP)) << 8
        )
        p = np.where(
            rng.random((n, GATE_GROUP)) < 0.03, rng.integers(0, 1 << 16, (n, GATE_GROUP)), p
        )
        t = (rng.integers(15, 17, n) << 10) | (rng.integers(0, 4, n) << 8)
        t = np.where(rng.random(n) < 0.05, rng.integers(0, 1 << 16, n), t)
        edge = [0, 0x8000, 0x7C00, 0x7E00][:n]  # +0, -0, +Inf, NaN thresholds
        t[: len(edge)] = edge
        for i, w in enumerate(_words(p, 16)):
            data[f"p_{f}_{i}"] = w
        data[f"t_{f}"] = t.astype(U64)
    for f in NORM_FORMATS:
        bias_e = 7 if f == "e4m3" else 15
        man = 3 if f == "e4m3" else 2
        e = rng.integers(max(0, bias_e - 8), bias_e - 1, (n, NORM_GROUP))
        w = (
            (rng.integers(0, 2, (n, NORM_GROUP)) << 7)
            | (e << man)
            | rng.integers(0, 1 << man, (n, NORM_GROUP))
        )
        w = np.where(rng.random((n, NORM_GROUP)) < 0.3, 0, w)
        w = np.where(rng.random((n, NORM_GROUP)) < 0.002, rng.integers(0, 256, (n, NORM_GROUP)), w)
        vals = decode(w.astype(np.uint8), f).astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            s = np.sum(vals * vals, axis=1)
        s = np.where(np.isfinite(s), s, 1.0)
        # Thresholds around each group's own sum: half above, half below, some exactly on it.
        scale = rng.choice([0.5, 0.9, 1.0, 1.1, 2.0], n)
        t = encode(quantize((s * scale).astype(np.float64), "fp16", "rne"), "fp16").astype(U64)
        edge = [0, 0x8000 | 0x3C00, 0x7C00][:n]  # zero, negative and infinite thresholds
        t[: len(edge)] = edge
        for i, word in enumerate(_words(w, 8)):
            data[f"w_{f}_{i}"] = word
        data[f"n_{f}"] = t
    return data


def sparsity_bench() -> Bench:
    variants = [_gate_variant(f) for f in GATE_FORMATS] + [_norm_variant(f) for f in NORM_FORMATS]
    variants.append(_norm_variant("e4m3", 8))
    return Bench("sparsity", _fields(), variants, _vectors)
