"""The stochastic rounding units: one rounding stream per target (act, err, wgt, mom), each with
its rule and random source as the `sru` instruction configured it.

Random words are drawn from the stream's source in the order the op writes its results (the
packed output order the ISA gives for the op), one word per result. The functional model
draws from one source object per stream; with `per_lane` sharing the source is a bank of
`sru.units` registers (simulator.numerics.random_sources.LFSRSource lanes), which produces
its words lane by lane, cycle by cycle, as the SRUs consume them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simulator.functional.fastops import rne_codes
from simulator.functional.state import FunctionalError, Machine
from simulator.functional.tree import acc_encode
from simulator.numerics import STOCHASTIC, quantize
from simulator.numerics.random_sources import LFSRSource, RandomSource, Xorshift32Source


@dataclass
class Stream:
    rounding: str = "rne"
    r: int = 8
    source: RandomSource | None = None


@dataclass
class SRUs:
    fmt: str
    lanes: int
    streams: dict[str, Stream] = field(default_factory=dict)
    machine: Machine | None = None  # where `round(..., dest=...)` tags the random words

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
        else:
            raise FunctionalError(f"sru {target}: random source {source!r} is not modelled")
        self.streams[target] = Stream(variant, r, src)

    def rounding(self, target: str) -> str:
        """The rounding of stream `target` (RNE while it is not configured)."""
        st = self.streams.get(target)
        return "rne" if st is None else st.rounding

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
        bits = None
        if st.rounding in STOCHASTIC:
            assert st.source is not None
            bits = st.source.draw(flat.size, st.r)
            q = quantize(flat, self.fmt, st.rounding, r=st.r, random_bits=bits)
        else:
            q = quantize(flat, self.fmt, st.rounding)
        if dest is not None and m is not None and m.bits is not None:
            m.bits[dest[0]][dest[1] : dest[1] + flat.size] = 0 if bits is None else bits
        q = q + np.asarray(0.0, q.dtype)  # one zero: the SRU writes +0
        return acc_encode(q, self.fmt).reshape(np.shape(values))
