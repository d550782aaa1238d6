"""The stochastic rounding units: one rounding stream per target (act, err, wgt, mom), each with
its rule and random source as the `sru` instruction configured it.

Random words are drawn from the stream's source in the order the op writes its results (the
packed output order the ISA gives for the op), one word per result. The functional model
draws from one source object per stream; with `per_lane` sharing the source is a bank of
`sru.units` registers (simulator.numerics.random_sources.LFSRSource lanes), which produces
its words lane by lane, cycle by cycle, as the SRUs consume them.

`tensor_bits` takes no generator: the op's results go `sru.units` per cycle (result i: lane
i % units, cycle i // units, counted from the op's first result), and lane j rounds with the
first r bits that rounding discards in lane j + 1 of the same cycle (the cycle's last busy lane:
lane 0), floor(d 2**r) of that result's value as the SRU receives it
(`simulator.numerics.random_sources.neighbour_lane_words`). A bit-recording machine then tags
each result with its SRU cycle and lane (`cycle * units + lane`, counting every cycle of every
stream from the start of the run) instead of a word: the reference finds each result's
neighbour by its tag and takes the bits from its own values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simulator.functional.fastops import _rne_args, rne_codes, sr_codes
from simulator.functional.state import FunctionalError, Machine
from simulator.functional.tree import acc_encode
from simulator.numerics import STOCHASTIC, quantize
from simulator.numerics.random_sources import (
    LFSRSource,
    RandomSource,
    Xorshift32Source,
    neighbour_lane_words,
)

TAG_LIMIT = 1 << 32  # tags are recorded in the machine's uint32 bit records


@dataclass
class Stream:
    rounding: str = "rne"
    r: int = 8
    source: RandomSource | None = None  # None with a stochastic rule: `tensor_bits`


@dataclass
class SRUs:
    fmt: str
    lanes: int
    streams: dict[str, Stream] = field(default_factory=dict)
    machine: Machine | None = None  # where `round(..., dest=...)` tags the random words
    cycles: int = 0  # SRU cycles of `tensor_bits` rounding so far (the recorded tags)

    def configure(
        self, target: str, r: int, variant: str, source: str, width: int, sharing: str, seed: int
    ) -> None:
        if source.startswith("lfsr"):
            combine = {"lfsr": "none", "lfsr_inverted": "invert", "lfsr_alternate": "alternate"}
            src: RandomSource = LFSRSource(
                width, "fibonacci", seed, self.lanes, sharing, combine[source]
            )
        elif source == "xorshift32":
            src = Xorshift32Source(seed or 1, self.lanes)
        elif source == "tensor_bits":
            self.streams[target] = Stream(variant, r, None)  # width, sharing, seed: unused
            return
        else:
            raise FunctionalError(f"sru {target}: random source {source!r} is not modelled")
        self.streams[target] = Stream(variant, r, src)

    def rounding(self, target: str) -> str:
        """The rounding of stream `target` (RNE while it is not configured)."""
        st = self.streams.get(target)
        return "rne" if st is None else st.rounding

    def rne_args(self, target: str) -> tuple | None:
        """`fastops._rne_args` where stream `target` rounds RNE (its results can be rounded in
        the pass that computes them), else None."""
        return _rne_args(self.fmt) if self.rounding(target) == "rne" else None

    def rounds_values(self, target: str) -> bool:
        """Whether stream `target`'s codes depend on the values only, whatever their float
        type (an RNE stream, or a stochastic one with a generator: `rne_codes` / `sr_codes`
        round the value), so the callers need not convert them; `tensor_bits` is given the
        type it always was."""
        st = self.streams.get(target)
        return st is None or st.rounding == "rne" or st.source is not None

    def rne_written(self, dest: tuple[str, int], n: int) -> None:
        """n RNE results written at dest (buffer, address) by the caller: their bit record
        is 0, as `round` would make it."""
        m = self.machine
        if m is not None and m.bits is not None:
            m.bits[dest[0]][dest[1] : dest[1] + n] = 0

    def round(
        self, target: str, values: np.ndarray, dest: tuple[str, int] | None = None
    ) -> np.ndarray:
        """FP8 codes of `values` (float32/float64) rounded by stream `target`. `dest` (buffer,
        address) is where the caller writes them: with a bit-recording machine the random word
        of every result is tagged there too, and travels with it through the DMA."""
        st = self.streams.get(target) or Stream()  # an unconfigured stream rounds RNE
        m = self.machine
        if st.rounding == "rne":  # one pass (fastops.rne_codes: quantize, +0, encode)
            codes = rne_codes(values, self.fmt)
            if dest is not None and m is not None and m.bits is not None:
                m.bits[dest[0]][dest[1] : dest[1] + codes.size] = 0
            return codes
        flat = np.ascontiguousarray(values).reshape(-1)
        record = bits = None
        if st.rounding in STOCHASTIC and st.source is not None:
            # the generator's words, then quantize, +0 and encode in one call (`sr_codes`)
            bits = st.source.draw(flat.size, st.r)
            codes = sr_codes(flat, self.fmt, st.rounding, st.r, bits)
            if dest is not None and m is not None and m.bits is not None:
                m.bits[dest[0]][dest[1] : dest[1] + flat.size] = bits
            return codes.reshape(np.shape(values))
        if st.rounding in STOCHASTIC:
            bits = neighbour_lane_words(flat, self.fmt, st.r, self.lanes)
            if m is not None and m.bits is not None:
                record = self._tags(target, flat.size)
            q = quantize(flat, self.fmt, st.rounding, r=st.r, random_bits=bits)
        else:
            q = quantize(flat, self.fmt, st.rounding)
        if dest is not None and m is not None and m.bits is not None:
            m.bits[dest[0]][dest[1] : dest[1] + flat.size] = 0 if record is None else record
        q = q + np.asarray(0.0, q.dtype)  # one zero: the SRU writes +0
        return acc_encode(q, self.fmt).reshape(np.shape(values))

    def _tags(self, target: str, n: int) -> np.ndarray:
        """`cycle * lanes + lane` of n results rounded from the next SRU cycle on (the
        `tensor_bits` record), advancing the cycle count."""
        tags = self.cycles * self.lanes + np.arange(n, dtype=np.int64)
        self.cycles += -(-n // self.lanes)
        if self.cycles * self.lanes > TAG_LIMIT:
            raise FunctionalError(
                f"sru {target}: more than {TAG_LIMIT // self.lanes} tensor_bits SRU cycles in "
                "one run; their tags no longer fit the 32-bit bit records"
            )
        return tags.astype(np.uint32)
