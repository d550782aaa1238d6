"""Random sources for the SRUs: LFSRs (Fibonacci / Galois, plain / inverted / alternating),
Marsaglia's xorshift32, and a tap on a data stream (randomness taken from the network's own
tensors).

Semantics are those of `simulator.numerics.random_sources` (LFSRSource, Xorshift32Source,
TensorBitsSource):
the word comes from the CURRENT state, then the register steps (when `en` is high).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from simulator.numerics.random_sources import LFSR_TAPS, tap_mask

LFSR_FORMS = ("fibonacci", "galois")
LFSR_COMBINES = ("none", "invert", "alternate")


def tile(value: Signal, r: int) -> object:
    """r-bit word from an n-bit value: its low r bits, or the value repeated when r > n."""
    n = len(value)
    if r <= n:
        return value[:r]
    return Cat(*([value] * (-(-r // n))))[:r]


class Lfsr(wiring.Component):
    """A maximal-length LFSR of `width` bits (taps from the numerics' LFSR_TAPS).

    Ports: `en` (step after this cycle's word), `word` (r bits). The initial state is `seed`.
    `combine`: "none", "invert" (complemented word) or "alternate" (even draws the state, odd
    draws its complement; a phase bit toggles with every step).
    """

    def __init__(
        self,
        width: int,
        form: str = "fibonacci",
        combine: str = "none",
        r: int | None = None,
        seed: int = 1,
    ) -> None:
        if width not in LFSR_TAPS:
            raise ValueError(f"LFSR width {width} is not supported; widths are 2..32")
        if form not in LFSR_FORMS:
            raise ValueError(f"form must be one of {LFSR_FORMS}, not {form!r}")
        if combine not in LFSR_COMBINES:
            raise ValueError(f"combine must be one of {LFSR_COMBINES}, not {combine!r}")
        if not 1 <= seed < (1 << width):
            raise ValueError(f"seed {seed} must be a nonzero {width}-bit state")
        self.width, self.form, self.combine, self.seed = width, form, combine, seed
        self.r = width if r is None else r
        if not 1 <= self.r <= 32:
            raise ValueError(f"r={self.r} must be in 1..32")
        super().__init__({"en": In(1), "word": Out(self.r)})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        n = self.width
        mask = tap_mask(n)
        state = Signal(n, init=self.seed)
        if self.form == "fibonacci":
            fb = (state & mask).xor()  # parity of the tapped bits
            nxt = Cat(fb, state[: n - 1])
        else:
            nxt = (state >> 1) ^ Mux(state[0], mask, 0)
        with m.If(self.en):
            m.d.sync += state.eq(nxt)
        shown = Signal(n)
        if self.combine == "none":
            m.d.comb += shown.eq(state)
        elif self.combine == "invert":
            m.d.comb += shown.eq(~state)
        else:
            odd = Signal()
            with m.If(self.en):
                m.d.sync += odd.eq(~odd)
            m.d.comb += shown.eq(Mux(odd, ~state, state))
        m.d.comb += self.word.eq(tile(shown, self.r))
        return m


class Xorshift32(wiring.Component):
    """Marsaglia's xorshift32 (shifts 13, 17, 5) as one 32-bit register: the word is the top r
    bits of the current state, then the register steps when `en` is high.

    The three shift-xor stages are wiring plus 19 + 15 + 27 XOR gates, combinational in one
    cycle, so the cost is the 32 flip-flops and those gates (what `fp8sim rtl stats` counts).
    """

    def __init__(self, r: int = 32, seed: int = 2463534242) -> None:
        if not 1 <= r <= 32:
            raise ValueError(f"r={r} must be in 1..32")
        if not 1 <= seed < (1 << 32):
            raise ValueError(f"seed {seed} must be a nonzero 32-bit state")
        self.r, self.seed = r, seed
        super().__init__({"en": In(1), "word": Out(r)})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        state = Signal(32, init=self.seed)
        a = Signal(32)
        b = Signal(32)
        c = Signal(32)
        m.d.comb += [
            a.eq(state ^ (state << 13)[:32]),
            b.eq(a ^ (a >> 17)),
            c.eq(b ^ (b << 5)[:32]),
            self.word.eq(state[32 - self.r :]),
        ]
        with m.If(self.en):
            m.d.sync += state.eq(c)
        return m


class StreamBits(wiring.Component):
    """Random bits from a data stream: bits [low_bit, low_bit + r) of each incoming element.

    The SRU reads its `rbits` from here instead of a generator (randomness from the network).
    """

    def __init__(self, data_width: int = 32, r: int = 8, low_bit: int = 0) -> None:
        if not 1 <= r <= 32 or not 0 <= low_bit or low_bit + r > data_width:
            raise ValueError(f"bits [{low_bit}, {low_bit + r}) must lie in {data_width}-bit data")
        self.r, self.low_bit = r, low_bit
        super().__init__({"data": In(data_width), "word": Out(r)})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.d.comb += self.word.eq(self.data[self.low_bit : self.low_bit + self.r])
        return m
