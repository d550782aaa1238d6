"""FP8 x FP8 multiplier with an exact, unnormalised product (the adder tree's input)."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl.hwfloat import decode_fields, exp_width
from simulator.numerics import FloatFormat, get_format

FP8_FORMATS = ("e5m2", "e4m3", "e5m2_chip")


def product_exp_width(fmt: FloatFormat) -> int:
    """Signed width of a product's LSB exponent (2 * operand LSB range)."""
    return exp_width(2 * (fmt.bias + fmt.man_bits), 2 * (1 << fmt.exp_bits))


class Fp8Multiplier(wiring.Component):
    """Exact product of two FP8 codes: value = (-1)**sign * sig * 2**exp unless inf/nan.

    `sig` is the plain integer product of the two significands (2 * (man + 1) bits, not
    normalised, so no rounding ever happens), `exp` the signed exponent of its bit 0. NaN
    (NaN operand, 0 x Inf) and Inf are flags; `sign` is always sign_a XOR sign_b.
    """

    def __init__(self, fmt: str = "e5m2") -> None:
        if fmt not in FP8_FORMATS:
            raise ValueError(f"fmt must be one of {FP8_FORMATS}, not {fmt!r}")
        self.fmt = get_format(fmt)
        f = self.fmt
        super().__init__(
            {
                "a": In(8),
                "b": In(8),
                "sign": Out(1),
                "sig": Out(2 * (f.man_bits + 1)),
                "exp": Out(signed(product_exp_width(f))),
                "inf": Out(1),
                "nan": Out(1),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        fa = decode_fields(m, self.a, self.fmt, "a")
        fb = decode_fields(m, self.b, self.fmt, "b")
        nan = fa.nan | fb.nan | (fa.inf & fb.zero) | (fa.zero & fb.inf)
        m.d.comb += [
            self.sign.eq(fa.sign ^ fb.sign),
            self.sig.eq(fa.mag * fb.mag),
            self.exp.eq(fa.lsb + fb.lsb),
            self.nan.eq(nan),
            self.inf.eq((fa.inf | fb.inf) & ~nan),
        ]
        return m


def multiply_fields(m: Module, a: Signal, b: Signal, fmt: FloatFormat, name: str) -> dict:
    """The multiplier's logic inline (for the dot-product unit), plus the product's slot top."""
    fa = decode_fields(m, a, fmt, f"{name}a")
    fb = decode_fields(m, b, fmt, f"{name}b")
    nan = fa.nan | fb.nan | (fa.inf & fb.zero) | (fa.zero & fb.inf)
    return {
        "sign": fa.sign ^ fb.sign,
        "sig": fa.mag * fb.mag,
        "lsb": fa.lsb + fb.lsb,
        "top": fa.top + fb.top,
        "zero": fa.zero | fb.zero,
        "nan": nan,
        "inf": (fa.inf | fb.inf) & ~nan,
    }
