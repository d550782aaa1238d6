"""Throughput of `quantize` against ml_dtypes' `astype` on the same 10M float32 values."""

from __future__ import annotations

import os
from collections.abc import Callable

import ml_dtypes
import numpy as np

from benchmarks.timing import best_seconds
from simulator.numerics import quantize

N = 10_000_000
REPEATS = 7


def _best_seconds(fn: Callable[[], object]) -> float:
    return best_seconds(fn, REPEATS, warmup=True)  # the warm-up call compiles / warms caches


def run() -> None:
    rng = np.random.default_rng(0)
    # Spread over FP8's whole range, with some overflow and underflow.
    x = (rng.standard_normal(N) * 2.0 ** rng.integers(-18, 17, size=N)).astype(np.float32)
    bits8 = rng.integers(0, 1 << 8, size=N).astype(np.uint32)
    bits24 = rng.integers(0, 1 << 24, size=N).astype(np.uint32)
    print(f"{N:,} float32 values, best of {REPEATS}, {os.cpu_count()} CPUs; elements/s")
    with np.errstate(over="ignore", invalid="ignore"):
        ref = {
            "e5m2": _best_seconds(lambda: x.astype(ml_dtypes.float8_e5m2)),
            "e4m3": _best_seconds(lambda: x.astype(ml_dtypes.float8_e4m3fn)),
        }
    rows = [
        ("e5m2", "rne", lambda: quantize(x, "e5m2")),
        ("e4m3", "rne", lambda: quantize(x, "e4m3")),
        (
            "e5m2",
            "sr r=8 (explicit bits)",
            lambda: quantize(x, "e5m2", "sr", r=8, random_bits=bits8),
        ),
        (
            "e4m3",
            "sr r=24 (explicit bits)",
            lambda: quantize(x, "e4m3", "sr", r=24, random_bits=bits24),
        ),
        ("e5m2_chip", "rne", lambda: quantize(x, "e5m2_chip")),
    ]
    print(f"{'format':<10} {'rounding':<24} {'fp8sim':>12} {'ml_dtypes astype':>18} {'ratio':>7}")
    for fmt, label, fn in rows:
        t = _best_seconds(fn)
        base = ref.get(fmt)
        base_txt = f"{N / base:12.3e}" if base else "  (no equal)"
        ratio = f"{base / t:6.1f}x" if base else "      -"
        print(f"{fmt:<10} {label:<24} {N / t:12.3e} {base_txt:>18} {ratio:>7}")
    print(
        "ratio = fp8sim throughput / ml_dtypes astype throughput (same data, same run);"
        " target >= 5x"
    )
