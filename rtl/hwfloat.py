"""Amaranth building blocks shared by the arithmetic units: field decoding and final rounding.

Every unit reduces its work to "an exact signed magnitude `mag * 2**lsb`, round it once into a
target format". `round_into` is that rounding, written once, so the SRU and the dot-product unit
cannot drift apart; its decisions follow docs/numerics.md (the same rules `quantize` implements).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed

from simulator.numerics import FloatFormat, InfNan

HW_ROUNDINGS = ("rne", "sr", "sr_half", "sr_corrected")


@dataclass
class Fields:
    """A decoded floating-point operand: value = (-1)**sign * mag * 2**lsb unless inf/nan."""

    sign: Value
    mag: Value  # unsigned, man_bits + 1 wide; not normalised for subnormals
    lsb: Value  # signed exponent of mag's bit 0
    top: Value  # signed "slot" exponent: mag < 2**top (bit above the hidden-bit position)
    zero: Value
    inf: Value
    nan: Value


def exp_width(*values: int) -> int:
    """Signed width that holds every exponent a unit can see (with headroom for sums)."""
    return max(abs(v) for v in values).bit_length() + 3


def decode_fields(m: Module, code: Value, fmt: FloatFormat, name: str) -> Fields:
    """Split a code of `fmt` into sign / significand / exponent and its special flags."""
    man, ebits = fmt.man_bits, fmt.exp_bits
    top_field = (1 << ebits) - 1
    ew = exp_width(fmt.bias + man + 2, top_field)
    sign = Signal(name=f"{name}_sign")
    e_field = Signal(ebits, name=f"{name}_e")
    m_field = Signal(man, name=f"{name}_m") if man else Const(0, 1)
    mag = Signal(man + 1, name=f"{name}_mag")
    lsb = Signal(signed(ew), name=f"{name}_lsb")
    top = Signal(signed(ew), name=f"{name}_top")
    inf = Signal(name=f"{name}_inf")
    nan = Signal(name=f"{name}_nan")
    m.d.comb += [sign.eq(code[fmt.bits - 1]), e_field.eq(code[man : man + ebits])]
    if man:
        m.d.comb += m_field.eq(code[:man])
    normal = e_field != 0
    hidden = Cat(m_field, Const(1, 1)) if man else Const(1, 1)
    if fmt.subnormals:
        m.d.comb += mag.eq(Mux(normal, hidden, m_field))
    else:  # exponent field 0 is zero whatever the mantissa holds (hardware flush)
        m.d.comb += mag.eq(Mux(normal, hidden, 0))
    # The slot exponent comes from the exponent field only (no leading-zero count): a
    # subnormal sits in the smallest normal's slot.
    m.d.comb += lsb.eq(Mux(normal, e_field, 1) - fmt.bias - man)
    m.d.comb += top.eq(lsb + man + 1)
    is_top = e_field == top_field
    if fmt.inf_nan is InfNan.IEEE:
        m.d.comb += [inf.eq(is_top & (m_field == 0)), nan.eq(is_top & (m_field != 0))]
    elif fmt.inf_nan is InfNan.FN:
        m.d.comb += [inf.eq(0), nan.eq(is_top & (m_field == (1 << man) - 1))]
    else:
        m.d.comb += [inf.eq(0), nan.eq(0)]
    return Fields(sign, mag, lsb, top, mag == 0, inf, nan)


def max_code(fmt: FloatFormat) -> int:
    """Magnitude code of the largest finite value."""
    top_field = (1 << fmt.exp_bits) - 1
    if fmt.inf_nan is InfNan.IEEE:
        return ((top_field - 1) << fmt.man_bits) | ((1 << fmt.man_bits) - 1)
    if fmt.inf_nan is InfNan.FN:
        return (1 << (fmt.bits - 1)) - 2
    return (1 << (fmt.bits - 1)) - 1


def nan_code(fmt: FloatFormat) -> int:
    """Magnitude code of the canonical quiet NaN (what `encode` writes for NaN)."""
    top_field = (1 << fmt.exp_bits) - 1
    if fmt.inf_nan is InfNan.IEEE:
        return (top_field << fmt.man_bits) | (1 << (fmt.man_bits - 1))
    if fmt.inf_nan is InfNan.FN:
        return (1 << (fmt.bits - 1)) - 1
    raise ValueError(f"format {fmt.name!r} has no NaN")


def inf_result(fmt: FloatFormat) -> int:
    """Magnitude code an infinite input becomes (Inf, NaN or the largest finite value)."""
    if fmt.inf_nan is InfNan.IEEE:
        return max_code(fmt) if fmt.saturate else ((1 << fmt.exp_bits) - 1) << fmt.man_bits
    if fmt.inf_nan is InfNan.FN and not fmt.saturate:
        return nan_code(fmt)
    return max_code(fmt)


def overflow_result(fmt: FloatFormat) -> int:
    """Magnitude code of a finite value that rounds past the largest finite one."""
    return inf_result(fmt)


def highest_set_bit(m: Module, x: Value, name: str) -> Signal:
    """Index of the most significant 1 of `x` (0 when x == 0): a priority encoder."""
    pos = Signal(range(max(len(x), 2)), name=name)
    for i in range(len(x)):
        with m.If(x[i]):
            m.d.comb += pos.eq(i)
    return pos


def round_into(
    m: Module,
    mag: Value,
    lsb: Value,
    fmt: FloatFormat,
    rounding: str,
    rand: Value | None,
    r: int,
    name: str = "rnd",
) -> Signal:
    """Magnitude code (bits - 1 wide) of `mag * 2**lsb` rounded once into `fmt`.

    `mag` is an unsigned exact magnitude (any width), `lsb` a signed exponent, `rand` the r-bit
    random integer S for the stochastic modes. Overflow follows the format (Inf, NaN or
    saturation). The caller handles the sign and Inf/NaN inputs.
    """
    if rounding not in HW_ROUNDINGS:
        raise ValueError(f"rounding {rounding!r} is not built in hardware; use {HW_ROUNDINGS}")
    stochastic = rounding != "rne"
    if stochastic and (rand is None or not 1 <= r <= 32):
        raise ValueError("stochastic rounding needs r in 1..32 random bits")
    w = len(mag)
    man = fmt.man_bits
    emin = fmt.emin
    ew = max(len(lsb), exp_width(w, fmt.bias + man, emin - man)) + 2
    # R fraction bits below the target LSB decide every mode: the r (or r + 1) bits the
    # stochastic modes add to, plus one guard bit for sr_corrected's own RNE, plus a sticky.
    R = (r + 2) if stochastic else 2

    msb = highest_set_bit(m, mag, f"{name}_msb")
    e_top = Signal(signed(ew), name=f"{name}_etop")  # exponent of the leading one
    t_lsb = Signal(signed(ew), name=f"{name}_tlsb")  # exponent of the target LSB at that size
    shift = Signal(signed(ew + 1), name=f"{name}_shift")  # bits discarded (<= 0: none)
    normal = Signal(name=f"{name}_normal")
    m.d.comb += [e_top.eq(lsb + msb), normal.eq(e_top >= emin)]
    below = (emin - man) if fmt.subnormals else emin
    m.d.comb += [
        t_lsb.eq(Mux(normal, e_top - man, below)),
        shift.eq(t_lsb - lsb),
    ]

    # k: the kept significand; frac: floor(d * 2**R); sticky: anything nonzero below that.
    k = Signal(man + 1, name=f"{name}_k")
    frac = Signal(R, name=f"{name}_frac")
    sticky = Signal(name=f"{name}_sticky")
    cap = w + R  # shifting by cap or more discards everything
    sh_r = Signal(range(cap + 1), name=f"{name}_shr")
    m.d.comb += sh_r.eq(Mux(shift > cap, cap, Mux(shift > 0, shift, 0)))
    sh_l = Signal(range(man + 1), name=f"{name}_shl")  # a short significand may move up
    m.d.comb += sh_l.eq(Mux(shift < 0, -shift, 0))
    ext = Signal(max(w, man + 1) + R, name=f"{name}_ext")
    m.d.comb += ext.eq((Cat(Const(0, R), mag) >> sh_r) << sh_l)
    m.d.comb += [k.eq(ext[R:]), frac.eq(ext[:R])]
    low = Signal(range(w + 1), name=f"{name}_low")  # number of mag bits below the R window
    m.d.comb += low.eq(Mux(sh_r > R, sh_r - R, 0))
    mask = Signal(w, name=f"{name}_mask")
    m.d.comb += [mask.eq((Const(1, w + 1) << low) - 1), sticky.eq((mag & mask) != 0)]

    up = Signal(name=f"{name}_up")
    if rounding == "rne":
        half = frac[R - 1]
        rest = (frac[: R - 1] != 0) | sticky
        m.d.comb += up.eq(half & (rest | k[0]))
    elif rounding == "sr":
        m.d.comb += up.eq((frac[2:] + rand[:r]) >> r)
    elif rounding == "sr_half":
        m.d.comb += up.eq((frac[1:] + Cat(Const(1, 1), rand[:r])) >> (r + 1))
    else:  # sr_corrected: rne(d * 2**r) + S >= 2**r
        q = frac[2:]
        rq = Signal(r + 1, name=f"{name}_rq")
        m.d.comb += rq.eq(q + (frac[1] & (frac[0] | sticky | q[0])))
        m.d.comb += up.eq((rq + rand[:r]) >> r)

    cw = ew + man + 2
    code = Signal(signed(cw), name=f"{name}_code")
    with m.If(mag == 0):
        m.d.comb += code.eq(0)
    with m.Elif(normal):
        # (biased exponent - 1) * 2**man + k: a carry out of k steps into the next binade.
        m.d.comb += code.eq(((e_top + fmt.bias - 1) << man) + k + up)
    with m.Else():
        if fmt.subnormals:
            m.d.comb += code.eq(k + up)  # subnormal: exponent field 0
        else:  # no subnormals: the two candidates are 0 and the smallest normal
            m.d.comb += code.eq(up << man)
    out = Signal(fmt.bits - 1, name=f"{name}_out")
    m.d.comb += out.eq(Mux(code > max_code(fmt), overflow_result(fmt), code))
    return out
