"""The PRNG bench: LFSR streams, stream taps and SRU+LFSR pairs against the numerics' sources.

The bench is sequential (state carries from row to row), so it runs as one chunk. Its first
2**16 rows have `en` high, so every register of width <= 16 runs at least one full period;
after that `en` is random, which checks that a held register holds its word.
"""

from __future__ import annotations

import numpy as np

from rtl.checks.bench import Bench, Variant, Vectors
from rtl.prng import LFSR_COMBINES, LFSR_FORMS, Lfsr, StreamBits, Xorshift32
from rtl.sru_pair import SruWithSource
from simulator.numerics import decode, encode, quantize
from simulator.numerics.random_sources import LFSRSource, TensorBitsSource, Xorshift32Source

U64 = np.uint64
FULL_PERIOD_ROWS = 1 << 16
LFSR_WIDTHS = tuple(range(2, 25))
TILED = ((3, 8), (5, 24), (7, 13), (24, 32))  # (width, r > width): the word tiled
SEED = 1
XORSHIFT_SEED = 2463534242  # Marsaglia's example seed


def _draw_index(en: np.ndarray) -> np.ndarray:
    """Row i shows draw number (steps taken before row i)."""
    e = en.astype(np.int64)
    return np.cumsum(e) - e


def _lfsr_variant(width: int, form: str, combine: str, r: int) -> Variant:
    def check(vec: Vectors, out: Vectors) -> np.ndarray:
        idx = _draw_index(vec["en"])
        src = LFSRSource(width, form, seed=SEED, combine=combine)
        words = src.draw(int(idx[-1]) + 1, r).astype(U64)
        return out["word"] != words[idx]

    params = {"width": width, "form": form, "combine": combine, "r": r}
    return Variant("lfsr", params, lambda: Lfsr(width, form, combine, r, SEED), check)


def _xorshift_variant(r: int, seed: int) -> Variant:
    def check(vec: Vectors, out: Vectors) -> np.ndarray:
        idx = _draw_index(vec["en"])
        words = Xorshift32Source(seed).draw(int(idx[-1]) + 1, r).astype(U64)
        return out["word"] != words[idx]

    return Variant("xorshift32", {"r": r, "seed": seed}, lambda: Xorshift32(r, seed), check)


def _stream_variant(r: int, low_bit: int) -> Variant:
    def check(vec: Vectors, out: Vectors) -> np.ndarray:
        src = TensorBitsSource(vec["data"].astype(np.uint32), low_bit)
        return out["word"] != src.draw(len(vec["data"]), r).astype(U64)

    return Variant(
        "stream_bits", {"r": r, "low_bit": low_bit}, lambda: StreamBits(32, r, low_bit), check
    )


def _pair_variant(width: int, r: int, combine: str, source: str = "lfsr") -> Variant:
    seed = XORSHIFT_SEED if source == "xorshift" else SEED

    def check(vec: Vectors, out: Vectors) -> np.ndarray:
        idx = _draw_index(vec["en"])
        if source == "xorshift":
            src = Xorshift32Source(seed)
        else:
            src = LFSRSource(width, "fibonacci", seed=seed, combine=combine)
        s = src.draw(int(idx[-1]) + 1, r).astype(np.int64)[idx]
        v = decode(vec["x16"].astype(np.uint16), "fp16")
        return out["y"] != encode(quantize(v, "e5m2", "sr", r=r, random_bits=s), "e5m2")

    params = {"width": width, "r": r, "combine": combine, "in_fmt": "fp16", "out_fmt": "e5m2"}
    if source != "lfsr":
        params["source"] = source
    return Variant(
        "sru_lfsr",
        params,
        lambda: SruWithSource(width, r, "sr", combine=combine, seed=seed, source=source),
        check,
        port_map={"x": "x16"},
    )


def prng_variants(widths: tuple[int, ...] = LFSR_WIDTHS) -> list[Variant]:
    out = [_lfsr_variant(w, f, c, w) for w in widths for f in LFSR_FORMS for c in LFSR_COMBINES]
    out += [_lfsr_variant(w, "galois", "alternate", r) for w, r in TILED]
    out += [_xorshift_variant(r, XORSHIFT_SEED) for r in (1, 8, 32)] + [_xorshift_variant(8, 1)]
    out += [_stream_variant(8, 0), _stream_variant(13, 19)]
    out += [_pair_variant(3, 8, "alternate"), _pair_variant(24, 24, "none")]
    out += [_pair_variant(32, 8, "none", source="xorshift")]
    return out


def _vectors(n: int, rng: np.random.Generator) -> Vectors:
    rows = FULL_PERIOD_ROWS + n
    en = np.ones(rows, dtype=U64)
    en[FULL_PERIOD_ROWS:] = (rng.random(n) < 0.75).astype(U64)
    return {
        "en": en,
        "data": rng.integers(0, 1 << 32, rows).astype(U64),
        "x16": rng.integers(0, 1 << 16, rows).astype(U64),
    }


def prng_bench(widths: tuple[int, ...] = LFSR_WIDTHS) -> Bench:
    fields = [("en", 1), ("data", 32), ("x16", 16)]
    return Bench("prng", fields, prng_variants(widths), _vectors, sequential=True)
