"""An SRU fed by its own PRNG (or by stream bits): the unit whose cost the SRU design-space
exploration compares, e.g. an 8-bit-output SRU with a 3-bit LFSR vs a 24-bit LFSR."""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl.prng import Lfsr, StreamBits, Xorshift32
from rtl.sru import StochasticRoundingUnit

SOURCES = ("lfsr", "xorshift", "stream")


class SruWithSource(wiring.Component):
    """SRU(in_fmt -> out_fmt, rounding, r) whose r random bits come from `source`.

    source "lfsr": an LFSR of `width` bits (form / combine as `Lfsr`), stepping when `en` is
    high, its word tiled to r bits. source "xorshift": a xorshift32 register (the top r bits of
    its state; `seed` must then be a nonzero 32-bit state). source "stream": bits
    [low_bit, low_bit + r) of `data`. Ports: `x`, `en` (lfsr, xorshift) or `data` (stream), `y`.
    """

    def __init__(
        self,
        width: int = 8,
        r: int = 8,
        rounding: str = "sr",
        in_fmt: str = "fp16",
        out_fmt: str = "e5m2",
        form: str = "fibonacci",
        combine: str = "none",
        source: str = "lfsr",
        seed: int = 1,
        low_bit: int = 0,
    ) -> None:
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
        self.sru = StochasticRoundingUnit(in_fmt, out_fmt, rounding, r)
        self.source = source
        if source == "lfsr":
            self.prng = Lfsr(width, form, combine, r=r, seed=seed)
            extra = {"en": In(1)}
        elif source == "xorshift":
            self.prng = Xorshift32(r=r, seed=seed)
            extra = {"en": In(1)}
        else:
            self.prng = StreamBits(32, r, low_bit)
            extra = {"data": In(32)}
        super().__init__({"x": In(self.sru.in_fmt.bits), **extra, "y": Out(self.sru.out_fmt.bits)})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.sru = self.sru
        m.submodules.prng = self.prng
        if self.source in ("lfsr", "xorshift"):
            m.d.comb += self.prng.en.eq(self.en)
        else:
            m.d.comb += self.prng.data.eq(self.data)
        m.d.comb += [
            self.sru.x.eq(self.x),
            self.sru.rbits.eq(self.prng.word),
            self.y.eq(self.sru.y),
        ]
        return m
