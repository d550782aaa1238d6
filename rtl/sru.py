"""Stochastic rounding unit: FP16/FP32 in, FP8 out, with r random bits per rounding."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl.hwfloat import HW_ROUNDINGS, decode_fields, inf_result, max_code, nan_code, round_into
from simulator.numerics import get_format

SRU_IN_FORMATS = ("fp16", "fp16_chip", "fp32")
SRU_OUT_FORMATS = ("e5m2", "e4m3", "e5m2_chip")


class StochasticRoundingUnit(wiring.Component):
    """Combinational SRU: `y = quantize(x, out_fmt, rounding, r=r, random_bits=rand)` as codes.

    Ports: `x` (input code), `rand` (r random bits; absent for `rne`), `y` (output code).
    A NaN input becomes the canonical NaN with its sign; for an output format without NaN the
    numerics reject NaN, and this unit (unspecified by the model) returns the largest magnitude.
    """

    def __init__(
        self, in_fmt: str = "fp16", out_fmt: str = "e5m2", rounding: str = "sr", r: int = 8
    ) -> None:
        if in_fmt not in SRU_IN_FORMATS:
            raise ValueError(f"in_fmt must be one of {SRU_IN_FORMATS}, not {in_fmt!r}")
        if out_fmt not in SRU_OUT_FORMATS:
            raise ValueError(f"out_fmt must be one of {SRU_OUT_FORMATS}, not {out_fmt!r}")
        if rounding not in HW_ROUNDINGS:
            raise ValueError(f"rounding must be one of {HW_ROUNDINGS}, not {rounding!r}")
        self.stochastic = rounding != "rne"
        if self.stochastic and not 1 <= r <= 32:
            raise ValueError(f"r={r} must be in 1..32")
        self.in_fmt, self.out_fmt = get_format(in_fmt), get_format(out_fmt)
        self.rounding, self.r = rounding, (r if self.stochastic else 0)
        sig = {"x": In(self.in_fmt.bits), "y": Out(self.out_fmt.bits)}
        if self.stochastic:
            sig["rbits"] = In(self.r)
        super().__init__(sig)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        o = self.out_fmt
        f = decode_fields(m, self.x, self.in_fmt, "x")
        rand = self.rbits if self.stochastic else None
        mag = round_into(m, f.mag, f.lsb, o, self.rounding, rand, self.r, "sru")
        nan_mag = nan_code(o) if o.has_nan else max_code(o)
        res = Signal(o.bits - 1)
        m.d.comb += res.eq(Mux(f.nan, nan_mag, Mux(f.inf, inf_result(o), mag)))
        m.d.comb += self.y.eq(Cat(res, f.sign))
        return m
