"""Floating-point format descriptions and the presets of the numerics spec.

A format is sign-magnitude with `exp_bits` exponent bits, `man_bits` stored mantissa bits and a
`bias`. Every value of every format accepted here is exactly representable in float32, so the
quantizer can return float32 (or float64) arrays that hold format values exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import numpy as np


class InfNan(StrEnum):
    """How a format spends its top exponent code."""

    IEEE = "ieee"  # top exponent code: mantissa 0 is Inf, anything else NaN
    FN = "fn"  # no Inf; only S.1..1.1..1 is NaN, the rest of the top binade is finite
    NONE = "none"  # every code is a finite number; no Inf, no NaN


class FormatError(ValueError):
    """A format description that cannot exist or that this package cannot represent."""


# float32 limits: every format value must be an exact float32.
_F32_MIN_SUBNORMAL_EXP: Final = -149
_F32_MAX_EXP: Final = 127


@dataclass(frozen=True)
class FloatFormat:
    """A binary floating-point format (sign bit + exponent + mantissa).

    Attributes:
        name: label used in reports and errors.
        exp_bits: exponent field width (2..8).
        man_bits: stored mantissa (fraction) width (0..23).
        bias: exponent bias; the unbiased exponent of field E >= 1 is E - bias.
        subnormals: whether exponent field 0 encodes subnormals. Without them, exponent field 0
            encodes zero only (hardware flushes any other code with that field to zero), and
            magnitudes under the smallest normal round on the two points {0, smallest normal}.
        inf_nan: encoding of Inf/NaN (see `InfNan`).
        saturate: whether finite overflow (and Inf input) clamps to the largest finite value.
            A format without Inf/NaN codes must saturate.
    """

    name: str
    exp_bits: int
    man_bits: int
    bias: int
    subnormals: bool
    inf_nan: InfNan
    saturate: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "inf_nan", InfNan(self.inf_nan))
        where = f"format {self.name!r}"
        if not 2 <= self.exp_bits <= 8:
            raise FormatError(f"{where}: exp_bits={self.exp_bits} must be in 2..8")
        if not 0 <= self.man_bits <= 23:
            raise FormatError(f"{where}: man_bits={self.man_bits} must be in 0..23")
        if self.inf_nan is InfNan.NONE and not self.saturate:
            raise FormatError(
                f"{where}: a format without Inf/NaN codes has nothing to overflow to; "
                "set saturate=True"
            )
        if self.inf_nan is InfNan.FN and self.man_bits == 0:
            raise FormatError(f"{where}: 'fn' NaN encoding needs at least one mantissa bit")
        if self.inf_nan is InfNan.IEEE and self.man_bits == 0:
            raise FormatError(f"{where}: IEEE Inf/NaN encoding needs at least one mantissa bit")
        if self.emax > _F32_MAX_EXP:
            raise FormatError(
                f"{where}: largest exponent 2^{self.emax} exceeds float32's 2^{_F32_MAX_EXP}"
            )
        if self.min_exp_lsb < _F32_MIN_SUBNORMAL_EXP:
            raise FormatError(
                f"{where}: smallest step 2^{self.min_exp_lsb} is below float32's "
                f"2^{_F32_MIN_SUBNORMAL_EXP}"
            )

    # ---- derived properties -------------------------------------------------------------
    @property
    def bits(self) -> int:
        """Total code width in bits."""
        return 1 + self.exp_bits + self.man_bits

    @property
    def emin(self) -> int:
        """Unbiased exponent of the smallest normal binade."""
        return 1 - self.bias

    @property
    def emax(self) -> int:
        """Unbiased exponent of the largest binade holding finite values."""
        top_field = (1 << self.exp_bits) - 1
        if self.inf_nan is InfNan.IEEE:
            top_field -= 1
        return top_field - self.bias

    @property
    def min_exp_lsb(self) -> int:
        """Exponent of the smallest nonzero magnitude (subnormal LSB, or the smallest normal)."""
        return self.emin - self.man_bits if self.subnormals else self.emin

    @property
    def max_value(self) -> float:
        """Largest finite value."""
        top_mantissa = (1 << self.man_bits) - 1
        if self.inf_nan is InfNan.FN:
            top_mantissa -= 1  # S.1..1.1..1 is NaN
        return float(
            np.ldexp(float((1 << self.man_bits) + top_mantissa), self.emax - self.man_bits)
        )

    @property
    def min_normal(self) -> float:
        return float(np.ldexp(1.0, self.emin))

    @property
    def min_subnormal(self) -> float | None:
        return float(np.ldexp(1.0, self.emin - self.man_bits)) if self.subnormals else None

    @property
    def has_inf(self) -> bool:
        return self.inf_nan is InfNan.IEEE

    @property
    def has_nan(self) -> bool:
        return self.inf_nan is not InfNan.NONE

    @property
    def code_dtype(self) -> np.dtype:
        """Unsigned integer dtype that holds one code."""
        if self.bits <= 8:
            return np.dtype(np.uint8)
        if self.bits <= 16:
            return np.dtype(np.uint16)
        return np.dtype(np.uint32)

    def describe(self) -> dict[str, object]:
        """Plain-data summary (for `fp8sim numerics formats` and reports)."""
        return {
            "name": self.name,
            "bits": self.bits,
            "exp_bits": self.exp_bits,
            "man_bits": self.man_bits,
            "bias": self.bias,
            "subnormals": self.subnormals,
            "inf_nan": self.inf_nan.value,
            "saturate": self.saturate,
            "max": self.max_value,
            "min_normal": self.min_normal,
            "min_subnormal": self.min_subnormal,
        }


PRESETS: Final[dict[str, FloatFormat]] = {
    f.name: f
    for f in (
        # OCP 8-bit floating point (OFP8) spec v1.0: E5M2 is IEEE-like; E4M3 is "fn".
        FloatFormat("e5m2", 5, 2, 15, True, InfNan.IEEE, False),
        FloatFormat("e4m3", 4, 3, 7, True, InfNan.FN, False),
        # The chip's FP8 as hinted by the group's training code: no subnormals, no Inf/NaN.
        FloatFormat("e5m2_chip", 5, 2, 15, False, InfNan.NONE, True),
        FloatFormat("fp16", 5, 10, 15, True, InfNan.IEEE, False),
        # The chip's accumulator: 1-5-10 without subnormals, saturating, every code finite
        # (our assumption: the hint names no Inf/NaN, so none are spent).
        FloatFormat("fp16_chip", 5, 10, 15, False, InfNan.NONE, True),
        # 1-6-9 of Wang et al., "Training DNNs with 8-bit floating point numbers" (NeurIPS 2018),
        # used there for accumulation and updates; IEEE-style encoding assumed.
        FloatFormat("e6m9", 6, 9, 31, True, InfNan.IEEE, False),
        FloatFormat("bf16", 8, 7, 127, True, InfNan.IEEE, False),
        FloatFormat("fp32", 8, 23, 127, True, InfNan.IEEE, False),
    )
}


def get_format(fmt: str | FloatFormat) -> FloatFormat:
    """Resolve a preset name or pass a format through; unknown names get a clear error."""
    if isinstance(fmt, FloatFormat):
        return fmt
    if isinstance(fmt, str):
        try:
            return PRESETS[fmt]
        except KeyError:
            raise FormatError(
                f"unknown format {fmt!r}; presets are: {', '.join(PRESETS)}"
            ) from None
    raise FormatError(f"format must be a preset name or a FloatFormat, not {type(fmt).__name__}")
