"""The two small decision blocks that define what the cycle model counts as skipped work.

* ChannelGateComparator: a pixel's group of 16 output channels keeps its conditional path
  (`active` = 1) iff some channel's base partial sum is strictly above the threshold; otherwise
  the group is gated. NaN compares false (a NaN partial sum never activates a group).
* GroupNormZeroDetector: a weight group is zeroed (`zero` = 1) iff the exact sum of squares of
  its FP8 weights is strictly below the threshold (an FP16 code of the squared-norm threshold).
  The squares and their sum are exact (a wide fixed-point adder): no rounding decides it.

Reference semantics: rtl/checks/sparsity.py, through `decode` of the numerics.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl.hwfloat import decode_fields
from rtl.multiplier import FP8_FORMATS
from rtl.treeops import tree
from simulator.numerics import FloatFormat, InfNan, get_format

GATE_FORMATS = ("fp16", "fp16_chip")


def _order_key(m: Module, code: Signal, fmt: FloatFormat, name: str) -> tuple[Signal, Signal]:
    """(signed key, is_nan): keys compare like the values; both zeros get key 0."""
    man = fmt.man_bits
    mag = Signal(fmt.bits - 1, name=f"{name}_mag")
    e_field = code[man : fmt.bits - 1]
    if fmt.subnormals:
        m.d.comb += mag.eq(code[: fmt.bits - 1])
    else:  # exponent field 0 is zero whatever the mantissa (as decode reads it)
        m.d.comb += mag.eq(Mux(e_field == 0, 0, code[: fmt.bits - 1]))
    key = Signal(signed(fmt.bits), name=f"{name}_key")
    m.d.comb += key.eq(Mux(code[fmt.bits - 1], -mag, mag))
    nan = Signal(name=f"{name}_nan")
    top = (1 << fmt.exp_bits) - 1
    if fmt.inf_nan is InfNan.IEEE:
        m.d.comb += nan.eq((e_field == top) & (code[:man] != 0))
    elif fmt.inf_nan is InfNan.FN:
        m.d.comb += nan.eq(code[: fmt.bits - 1] == (1 << (fmt.bits - 1)) - 1)
    return key, nan


class ChannelGateComparator(wiring.Component):
    """Gate bit of one (pixel, channel group): `active` = any(psum[i] > threshold).

    Ports: `psum` (group FP16 codes, channel i in bits [16i, 16i+16)), `threshold`, `active`.
    """

    def __init__(self, fmt: str = "fp16", group: int = 16) -> None:
        if fmt not in GATE_FORMATS:
            raise ValueError(f"fmt must be one of {GATE_FORMATS}, not {fmt!r}")
        if not 1 <= group <= 64:
            raise ValueError(f"group={group} must be in 1..64")
        self.fmt, self.group = get_format(fmt), group
        super().__init__({"psum": In(16 * group), "threshold": In(16), "active": Out(1)})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        t_key, t_nan = _order_key(m, self.threshold, self.fmt, "t")
        above = []
        for i in range(self.group):
            k, nan = _order_key(m, self.psum[16 * i : 16 * i + 16], self.fmt, f"p{i}")
            above.append((k > t_key) & ~nan & ~t_nan)
        m.d.comb += self.active.eq(tree(above, lambda a, b: a | b))
        return m


class GroupNormZeroDetector(wiring.Component):
    """`zero` = sum(w[i]**2) < threshold, exactly, for a group of FP8 weights.

    Ports: `w` (group FP8 codes, weight i in bits [8i, 8i+8)), `threshold` (FP16 code of the
    squared-norm threshold, `thr_fmt`), `zero`. A NaN or Inf weight never zeroes a group.
    """

    def __init__(self, fmt: str = "e4m3", group: int = 72, thr_fmt: str = "fp16") -> None:
        if fmt not in FP8_FORMATS:
            raise ValueError(f"fmt must be one of {FP8_FORMATS}, not {fmt!r}")
        if thr_fmt not in GATE_FORMATS:
            raise ValueError(f"thr_fmt must be one of {GATE_FORMATS}, not {thr_fmt!r}")
        if not 1 <= group <= 256:
            raise ValueError(f"group={group} must be in 1..256")
        self.fmt, self.thr_fmt, self.group = get_format(fmt), get_format(thr_fmt), group
        super().__init__({"w": In(8 * group), "threshold": In(16), "zero": Out(1)})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        f, ft = self.fmt, self.thr_fmt
        # One fixed-point grid holds every square and the threshold exactly: its LSB is the
        # smaller of the smallest square's and the threshold's LSB.
        sq_lsb_min = 2 * (f.emin - f.man_bits)
        t_lsb_min = ft.emin - ft.man_bits
        g = min(sq_lsb_min, t_lsb_min)
        sq_top = 2 * (f.emax + 1)
        width = sq_top - g + self.group.bit_length() + 1
        total = []
        special = []
        for i in range(self.group):
            fi = decode_fields(m, self.w[8 * i : 8 * i + 8], f, f"w{i}")
            sq = Signal(width, name=f"sq{i}")
            sh = Signal(range(sq_top - g + 1), name=f"sqsh{i}")
            m.d.comb += sh.eq(2 * fi.lsb - g)
            m.d.comb += sq.eq((fi.mag * fi.mag) << sh)
            total.append(sq)
            special.append(fi.nan | fi.inf)
        acc = Signal(width)
        m.d.comb += acc.eq(tree(total, lambda a, b: a + b))
        tf = decode_fields(m, self.threshold, ft, "t")
        tsh = Signal(range(ft.emax + 2 - g), name="tsh")
        m.d.comb += tsh.eq(tf.lsb - g)
        thr = Signal(width + 2)
        m.d.comb += thr.eq(Mux(tf.inf, Const(1, 1) << (width + 1), tf.mag << tsh))
        bad = tree(special, lambda a, b: a | b) | tf.nan
        # A negative threshold zeroes nothing; +-0 zeroes nothing (nothing is below zero).
        m.d.comb += self.zero.eq(~bad & ~tf.sign & (Cat(acc, Const(0, 2)) < thr))
        return m
