"""`quantize`: round float32/float64 arrays onto a format's grid with a chosen rounding mode."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Final, Literal

import numpy as np

from simulator.numerics import _kernels as kernels
from simulator.numerics.formats import FloatFormat, InfNan, get_format

if TYPE_CHECKING:
    from simulator.numerics.random_sources import RandomSource

Rounding = Literal["rne", "rna", "rtz", "sr", "sr_half", "sr_corrected"]

ROUNDING_MODES: Final = tuple(kernels.KERNELS)
STOCHASTIC: Final = frozenset({"sr", "sr_half", "sr_corrected"})
MAX_RANDOM_BITS: Final = 32

# (int view dtype, mantissa bits, exponent bits, bias) of the accepted input dtypes.
_INPUT_LAYOUT: Final = {
    np.dtype(np.float32): (np.dtype(np.int32), 23, 8, 127),
    np.dtype(np.float64): (np.dtype(np.int64), 52, 11, 1023),
}


def _encode_in(value: float, dtype: np.dtype) -> int:
    """Absolute bit pattern of a (nonnegative) value in the input dtype, as a Python int."""
    int_dtype = _INPUT_LAYOUT[dtype][0]
    return int(np.array([value], dtype=dtype).view(int_dtype)[0])


def _random_bits_array(random_bits: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    rb = np.asarray(random_bits)
    if rb.shape != shape:
        raise ValueError(f"random_bits has shape {rb.shape}, expected {shape} (one per element)")
    if not np.issubdtype(rb.dtype, np.integer):
        raise TypeError(f"random_bits must be an integer array, not {rb.dtype}")
    return np.ascontiguousarray(rb).reshape(-1)


def _raise_bad_random_bits(rand: np.ndarray, r: int) -> None:
    wide = rand.astype(np.int64) if rand.dtype != np.uint64 else rand
    bad = int(np.flatnonzero((wide < 0) | (wide >= (1 << r)))[0])
    raise ValueError(f"random_bits[{bad}] = {int(rand[bad])} is outside [0, 2**{r}) for r={r}")


def quantize(
    x: np.ndarray,
    fmt: str | FloatFormat,
    rounding: Rounding = "rne",
    *,
    r: int | None = None,
    random_bits: np.ndarray | None = None,
    source: RandomSource | None = None,
) -> np.ndarray:
    """Round every element of `x` to the nearest representable value of `fmt` under `rounding`.

    Args:
        x: float32 or float64 array (any shape).
        fmt: preset name (`e5m2`, `e4m3`, `e5m2_chip`, `fp16`, `fp16_chip`, `e6m9`, `bf16`,
            `fp32`) or a `FloatFormat`.
        rounding: `rne`, `rna`, `rtz`, or a stochastic mode `sr`, `sr_half`, `sr_corrected`
            (definitions in docs/numerics.md).
        r: number of random bits (1..32), required for the stochastic modes.
        random_bits: the random integers, one per element, in [0, 2**r).
        source: a random source to draw them from instead (`source.draw(n, r)`).

    Returns:
        An array of `x`'s dtype and shape whose values are exactly representable in `fmt`.
        NaN stays NaN (canonical quiet NaN, sign kept) where the format has NaN; Inf and
        finite overflow become Inf, NaN, or the largest finite value as the format says.

    Raises:
        ValueError: bad arguments, or NaN input for a format that has no NaN encoding.
    """
    f = get_format(fmt)
    arr = np.asarray(x)
    if arr.dtype not in _INPUT_LAYOUT:
        raise TypeError(f"quantize takes float32 or float64 arrays, not {arr.dtype}")
    if rounding not in ROUNDING_MODES:
        raise ValueError(f"unknown rounding {rounding!r}; choose one of {list(ROUNDING_MODES)}")

    if rounding in STOCHASTIC:
        if r is None:
            raise ValueError(f"rounding {rounding!r} needs r, the number of random bits")
        if not 1 <= int(r) <= MAX_RANDOM_BITS:
            raise ValueError(f"r={r} must be in 1..{MAX_RANDOM_BITS}")
        r = int(r)
        if (random_bits is None) == (source is None):
            raise ValueError(f"rounding {rounding!r} needs exactly one of random_bits or source")
        if source is not None:
            random_bits = source.draw(arr.size, r).reshape(arr.shape)
        rand = _random_bits_array(random_bits, arr.shape)
    else:
        if random_bits is not None or source is not None:
            raise ValueError(f"rounding {rounding!r} is deterministic; it takes no random bits")
        r = 0
        rand = None  # the kernel reads the input's own bits instead (see below)

    bits = np.ascontiguousarray(arr).reshape(-1).view(_INPUT_LAYOUT[arr.dtype][0])
    out = np.empty_like(bits)
    if rand is None:
        # Deterministic modes ignore S, but the kernel must load one per element to stay
        # vectorised; the input's own bits are already in cache and cost no allocation.
        rand = bits
    params = kernel_params(f, arr.dtype, rounding)
    nans, bad_rand = kernels.KERNELS[rounding](bits, out, rand, r, params)
    if bad_rand and rounding in STOCHASTIC:
        _raise_bad_random_bits(rand, r)
    if nans and not f.has_nan:
        first = int(np.flatnonzero(np.isnan(arr.reshape(-1)))[0])
        raise ValueError(
            f"input holds {nans} NaN value(s) (first at flat index {first}) but format "
            f"{f.name!r} has no NaN encoding"
        )
    return out.view(arr.dtype).reshape(arr.shape)


@lru_cache(maxsize=64)
def kernel_params(f: FloatFormat, dtype: np.dtype, rounding: str) -> tuple[int, ...]:
    """The rounding kernels' `params` (`_kernels._quantize_loop`) for rounding `dtype`
    (float32 or float64) values into `f` under `rounding`: the same for every call, so
    built once."""
    dtype = np.dtype(dtype)
    _, mbits_in, ebits_in, bias_in = _INPUT_LAYOUT[dtype]
    total = 1 + ebits_in + mbits_in
    abs_mask = (1 << (total - 1)) - 1
    sign_mask = -(1 << (total - 1))  # the sign bit, as a signed integer of the input's width
    max_abs = _encode_in(f.max_value, dtype)
    inf_abs = ((1 << ebits_in) - 1) << mbits_in
    nan_abs = inf_abs | (1 << (mbits_in - 1))  # canonical quiet NaN

    if f.saturate or rounding == "rtz":
        ovf_abs = max_abs  # truncation never rounds past the largest finite (IEEE 754 7.4)
    elif f.inf_nan is InfNan.IEEE:
        ovf_abs = inf_abs
    else:
        ovf_abs = nan_abs
    if f.inf_nan is InfNan.IEEE:
        inf_to = inf_abs
    elif f.inf_nan is InfNan.FN and not f.saturate:
        inf_to = nan_abs
    else:
        inf_to = max_abs
    low_lsb = f.emin - f.man_bits if f.subnormals else f.emin
    return (
        mbits_in,
        bias_in,
        f.man_bits,
        f.emin,
        low_lsb,
        max_abs,
        ovf_abs,
        inf_to,
        nan_abs,
        abs_mask,
        sign_mask,
    )
