"""Dot-product-accumulate unit: dp_width FP8 products, an aligned adder tree, one rounding.

The alignment rule is the one `simulator.numerics.dot_product` models (docs/dot-product.md):
every addend (the exact products and the FP16 accumulator) is placed on one grid whose LSB is
2**(E_max - align_bits), E_max being the largest slot exponent among nonzero addends; bits
below the grid are truncated; the integer sum is exact and is rounded once.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl.hwfloat import HW_ROUNDINGS, decode_fields, exp_width, inf_result, nan_code, round_into
from rtl.multiplier import FP8_FORMATS, multiply_fields
from rtl.treeops import tree
from simulator.numerics import get_format
from simulator.numerics.dot_product import ACC_FORMAT, DEFAULT_ALIGN_BITS


class DotProductUnit(wiring.Component):
    """Combinational step: y = round(sum(a[i] * b[i]) + acc) on the tree's grid.

    Ports: `a`, `b` (dp_width FP8 codes, element i in bits [8i, 8i+8)), `acc` (accumulator
    code), `rbits` (r random bits; stochastic roundings only), `y` (new accumulator code).
    """

    def __init__(
        self,
        fmt: str = "e5m2",
        dp_width: int = 8,
        rounding: str = "rne",
        r: int = 8,
        align_bits: int = DEFAULT_ALIGN_BITS,
    ) -> None:
        if fmt not in FP8_FORMATS:
            raise ValueError(f"fmt must be one of {FP8_FORMATS}, not {fmt!r}")
        if not 1 <= dp_width <= 64:
            raise ValueError(f"dp_width={dp_width} must be in 1..64")
        if rounding not in HW_ROUNDINGS:
            raise ValueError(f"rounding must be one of {HW_ROUNDINGS}, not {rounding!r}")
        self.fmt, self.acc_fmt = get_format(fmt), get_format(ACC_FORMAT[fmt])
        lo = max(self.acc_fmt.man_bits + 1, 2 * (self.fmt.man_bits + 1))
        if not lo <= align_bits <= 49:
            raise ValueError(f"align_bits={align_bits} must be in {lo}..49")
        self.stochastic = rounding != "rne"
        if self.stochastic and not 1 <= r <= 32:
            raise ValueError(f"r={r} must be in 1..32")
        self.dp_width, self.rounding, self.align_bits = dp_width, rounding, align_bits
        self.r = r if self.stochastic else 0
        sig = {"a": In(8 * dp_width), "b": In(8 * dp_width), "acc": In(16), "y": Out(16)}
        if self.stochastic:
            sig["rbits"] = In(self.r)
        super().__init__(sig)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        f, fa, W = self.fmt, self.acc_fmt, self.align_bits
        ew = exp_width(2 * (f.bias + f.man_bits + 2), fa.bias + fa.man_bits + 2, W) + 1

        terms = []  # (sign, magnitude, width, slot exponent, live)
        nans, pinf, ninf = [], [], []
        for i in range(self.dp_width):
            p = multiply_fields(m, self.a[8 * i : 8 * i + 8], self.b[8 * i : 8 * i + 8], f, f"p{i}")
            terms.append((p["sign"], p["sig"], 2 * (f.man_bits + 1), p["top"], ~p["zero"]))
            nans.append(p["nan"])
            pinf.append(p["inf"] & ~p["sign"])
            ninf.append(p["inf"] & p["sign"])
        c = decode_fields(m, self.acc, fa, "c")
        terms.append((c.sign, c.mag, fa.man_bits + 1, c.top, ~c.zero))
        nans.append(c.nan)
        pinf.append(c.inf & ~c.sign)
        ninf.append(c.inf & c.sign)

        # E_max: the largest slot exponent among the live addends.
        floor = -(1 << (ew - 1))
        slots = []
        for j, (_, _, _, top, live) in enumerate(terms):
            s = Signal(signed(ew), name=f"slot{j}")
            m.d.comb += s.eq(Mux(live, top, floor))
            slots.append(s)
        e_max = Signal(signed(ew))
        m.d.comb += e_max.eq(tree(slots, lambda x, y: Mux(x > y, x, y)))

        # Align: the addend's top at the grid's top, then down by (E_max - slot), truncating.
        sw = W + (len(terms)).bit_length() + 1
        total = Signal(signed(sw))
        parts = []
        for j, (sign, mag, width, _, live) in enumerate(terms):
            dist = Signal(range(W + 1), name=f"dist{j}")
            m.d.comb += dist.eq(Mux(e_max - slots[j] > W, W, e_max - slots[j]))
            al = Signal(W, name=f"al{j}")
            m.d.comb += al.eq(Mux(live, Cat(Const(0, W - width), mag) >> dist, 0))
            v = Signal(signed(sw), name=f"term{j}")
            m.d.comb += v.eq(Mux(sign, -al, al))
            parts.append(v)
        m.d.comb += total.eq(tree(parts, lambda x, y: x + y))

        neg = total < 0
        mag = Signal(sw - 1)
        m.d.comb += mag.eq(Mux(neg, -total, total))
        lsb = Signal(signed(ew + 1))
        m.d.comb += lsb.eq(e_max - W)
        rb = self.rbits if self.stochastic else None
        res = round_into(m, mag, lsb, fa, self.rounding, rb, self.r, "acc")

        any_nan = tree(nans, lambda x, y: x | y)
        any_p = tree(pinf, lambda x, y: x | y)
        any_n = tree(ninf, lambda x, y: x | y)
        with m.If(any_nan | (any_p & any_n)):
            m.d.comb += self.y.eq(nan_code(fa) if fa.has_nan else 0)
        with m.Elif(any_p | any_n):
            m.d.comb += self.y.eq(Cat(Const(inf_result(fa), 15), any_n))
        with m.Else():
            m.d.comb += self.y.eq(Cat(res, neg))
        return m
