"""Random sources for stochastic rounding units: LFSRs, xorshift32, an ideal source, and bits
taken from the network's own tensors.

Every source is an object with `draw(n, r)` returning `n` unsigned r-bit integers (uint32), and
`reset()` returning it to its seed. Sources model hardware as it is, flaws included: a maximal
LFSR never shows the all-zero state, a shared LFSR gives correlated lanes.

Lanes: a source with L lanes produces words lane-interleaved: word i of a draw comes from lane
i % L at step i // L; every lane steps once per "cycle", and a draw of n words runs
ceil(n / L) cycles (words of a partly used last cycle are dropped, as idle lanes would).

LFSR semantics (the RTL in rtl/ matches these bit for bit). The state is an n-bit nonzero
register whose initial value is the seed; each cycle the word is formed from the CURRENT state,
then the register steps:
- Fibonacci: fb = XOR of state bits (t-1) for t in taps; next = ((state << 1) | fb) mod 2**n.
- Galois: lsb = state & 1; state >>= 1; if lsb: state ^= mask, mask = OR of 1 << (t-1).
Word of r bits from an n-bit value v: the low r bits if r <= n, else v tiled (word bit i =
v bit i mod n), which is how a narrow PRNG is fanned out to a wider SRU.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Final, Literal

import numpy as np
from numba import njit

from simulator.numerics.formats import FloatFormat, get_format

# Maximal-length LFSR taps (1-indexed bit positions) for widths 2..32: one primitive polynomial
# x^n + sum x^(t) per width, from the table in Xilinx application note XAPP052 (Alfke, 1996).
# tests/simulator/numerics/test_random_sources.py proves each entry primitive over GF(2) and
# checks the period by running the register for the small widths.
LFSR_TAPS: Final[dict[int, tuple[int, ...]]] = {
    2: (2, 1),
    3: (3, 2),
    4: (4, 3),
    5: (5, 3),
    6: (6, 5),
    7: (7, 6),
    8: (8, 6, 5, 4),
    9: (9, 5),
    10: (10, 7),
    11: (11, 9),
    12: (12, 6, 4, 1),
    13: (13, 4, 3, 1),
    14: (14, 5, 3, 1),
    15: (15, 14),
    16: (16, 15, 13, 4),
    17: (17, 14),
    18: (18, 11),
    19: (19, 6, 2, 1),
    20: (20, 17),
    21: (21, 19),
    22: (22, 21),
    23: (23, 18),
    24: (24, 23, 22, 17),
    25: (25, 22),
    26: (26, 6, 2, 1),
    27: (27, 5, 2, 1),
    28: (28, 25),
    29: (29, 27),
    30: (30, 6, 4, 1),
    31: (31, 28),
    32: (32, 22, 2, 1),
}

LfsrForm = Literal["fibonacci", "galois"]
Combine = Literal["none", "invert", "alternate"]
Sharing = Literal["per_lane", "shared"]

_FORMS: Final = {"fibonacci": 0, "galois": 1}


def tap_mask(width: int) -> int:
    """Bit mask with bit (t-1) set for every tap t of the width's polynomial."""
    if width not in LFSR_TAPS:
        raise ValueError(f"LFSR width {width} is not supported; widths are 2..32")
    m = 0
    for t in LFSR_TAPS[width]:
        m |= 1 << (t - 1)
    return m


@njit(cache=True)
def _parity(x):
    x ^= x >> 32
    x ^= x >> 16
    x ^= x >> 8
    x ^= x >> 4
    x ^= x >> 2
    x ^= x >> 1
    return x & 1


@njit(cache=True, inline="always")
def _lfsr_step(s, form, mask, full):
    """One step of the register: Fibonacci (form 0) or Galois (form 1)."""
    if form == 0:
        return ((s << 1) | _parity(s & mask)) & full
    lsb = s & 1
    s >>= 1
    return s ^ mask if lsb else s


@njit(cache=True)
def _lfsr_run(states, form, mask, width, cycles):
    """Run every lane `cycles` times; returns the state of each lane BEFORE each step
    (shape cycles x lanes) and leaves `states` at the next state."""
    lanes = states.shape[0]
    out = np.empty((cycles, lanes), dtype=np.int64)
    full = (np.int64(1) << width) - 1
    for j in range(lanes):
        s = states[j]
        for c in range(cycles):
            out[c, j] = s
            s = _lfsr_step(s, form, mask, full)
        states[j] = s
    return out


@njit(cache=True)
def _lfsr_words(states, form, mask, width, cycles, n, r, invert, alternate, cycle0):
    """`LFSRSource.draw`'s words of a bank of per-lane registers in one pass: lane after
    lane within a cycle, cycle after cycle (the order the SRUs consume them), each state
    complemented where `combine` says, then `tile_word`'d to r bits; `states` advance by
    `cycles` steps. No lane of a cycle depends on another (the inner loop)."""
    lanes = states.shape[0]
    out = np.empty(n, dtype=np.uint32)
    full = (np.int64(1) << width) - 1
    rmask = (np.int64(1) << r) - 1
    for c in range(cycles):
        flip = invert or (alternate and ((cycle0 + c) & 1) == 1)
        x = full if flip else np.int64(0)
        base = c * lanes
        top = min(lanes, n - base)
        for j in range(lanes):
            s = states[j]
            if j < top:
                v = s ^ x
                w = v
                if r > width:  # the value tiled (loop-invariant: LLVM unswitches it)
                    for shift in range(width, r, width):
                        w |= v << shift
                out[base + j] = np.uint32(w & rmask)
            states[j] = _lfsr_step(s, form, mask, full)
    return out


@njit(cache=True)
def _xorshift32_run(states, cycles):
    lanes = states.shape[0]
    out = np.empty((cycles, lanes), dtype=np.int64)
    m32 = np.int64(0xFFFFFFFF)
    for j in range(lanes):
        x = states[j]
        for c in range(cycles):
            out[c, j] = x
            x ^= (x << 13) & m32
            x ^= x >> 17
            x ^= (x << 5) & m32
        states[j] = x
    return out


def lfsr_period(width: int, form: LfsrForm = "fibonacci", seed: int = 1) -> int:
    """Number of steps until the register returns to `seed` (by running it; widths <= 28)."""
    if width > 28:
        raise ValueError("running an LFSR for its period is only practical for widths <= 28")
    return int(_lfsr_period(np.int64(seed), _FORMS[form], np.int64(tap_mask(width)), width))


@njit(cache=True)
def _lfsr_period(seed, form, mask, width):
    full = (np.int64(1) << width) - 1
    s = seed
    n = np.int64(0)
    while True:
        s = _lfsr_step(s, form, mask, full)
        n += 1
        if s == seed or n > full + 1:
            return n


def _splitmix64(x: int) -> int:
    """One splitmix64 output: derives independent lane seeds from one user seed."""
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


def _lane_seeds(seed: int, lanes: int, width: int) -> np.ndarray:
    """Lane 0 starts at `seed` itself (so a one-lane source equals the RTL register seeded with
    it); other lanes start at splitmix-derived nonzero states."""
    full = (1 << width) - 1
    if not 1 <= seed <= full:
        raise ValueError(f"seed {seed} must be a nonzero {width}-bit state (1..{full})")
    seeds = [seed]
    for j in range(1, lanes):
        s = _splitmix64(seed * 0x1000193 + j) & full
        seeds.append(s if s else 1)
    return np.array(seeds, dtype=np.int64)


def tile_word(values: np.ndarray, width: int, r: int) -> np.ndarray:
    """r-bit words from width-bit values: the low r bits, or the value tiled when r > width."""
    v = values.astype(np.int64)
    if r <= width:
        return v & ((1 << r) - 1)
    w = np.zeros_like(v)
    for shift in range(0, r, width):
        w |= v << shift
    return w & ((1 << r) - 1)


def _rotl(v: np.ndarray, k: int, width: int) -> np.ndarray:
    k %= width
    full = (1 << width) - 1
    return ((v << k) | (v >> (width - k))) & full if k else v


def _check_r(r: int) -> int:
    if not 1 <= int(r) <= 32:
        raise ValueError(f"r={r} random bits must be in 1..32")
    return int(r)


class RandomSource(ABC):
    """Produces r-bit random integers for stochastic rounding, reproducibly from a seed."""

    name: str = "source"

    @abstractmethod
    def draw(self, n: int, r: int) -> np.ndarray:
        """The next `n` words of `r` bits, as uint32."""

    @abstractmethod
    def reset(self) -> None:
        """Return to the initial (seeded) state."""


class LFSRSource(RandomSource):
    """A bank of maximal-length LFSRs of `width` bits.

    Args:
        width: register width, 2..32.
        form: "fibonacci" or "galois".
        seed: initial state of lane 0 (nonzero, < 2**width); other lanes derive from it.
        lanes: words produced per cycle.
        sharing: "per_lane" (one register per lane) or "shared" (one register; lane j sees the
            state rotated left by j bits, the cheap way to feed many SRUs from one register).
        combine: "none"; "invert" (the bitwise complement of the state: misses the all-ones
            state instead of zero); "alternate" (even cycles the state, odd cycles its
            complement: over two periods every value but 0 and 2**n-1 appears twice and the
            mean is exactly (2**n - 1) / 2, which removes the missing-zero bias).
    """

    def __init__(
        self,
        width: int,
        form: LfsrForm = "fibonacci",
        seed: int = 1,
        lanes: int = 1,
        sharing: Sharing = "per_lane",
        combine: Combine = "none",
    ) -> None:
        if form not in _FORMS:
            raise ValueError(f"LFSR form must be 'fibonacci' or 'galois', not {form!r}")
        if sharing not in ("per_lane", "shared"):
            raise ValueError(f"sharing must be 'per_lane' or 'shared', not {sharing!r}")
        if combine not in ("none", "invert", "alternate"):
            raise ValueError(f"combine must be 'none', 'invert' or 'alternate', not {combine!r}")
        if lanes < 1:
            raise ValueError(f"lanes={lanes} must be at least 1")
        self.width, self.form, self.seed = int(width), form, int(seed)
        self.lanes, self.sharing, self.combine = int(lanes), sharing, combine
        self._mask = np.int64(tap_mask(self.width))
        self.name = f"lfsr{self.width}-{form}-{combine}-{sharing}x{lanes}"
        self.reset()

    def reset(self) -> None:
        registers = 1 if self.sharing == "shared" else self.lanes
        self._states = _lane_seeds(self.seed, registers, self.width)
        self._cycle = 0

    def states(self, cycles: int) -> np.ndarray:
        """Raw register values for the next `cycles` cycles (cycles x registers), advancing."""
        out = _lfsr_run(self._states, _FORMS[self.form], self._mask, self.width, int(cycles))
        return out

    def draw(self, n: int, r: int) -> np.ndarray:
        r = _check_r(r)
        cycles = -(-int(n) // self.lanes)
        full = (1 << self.width) - 1
        if self.sharing == "per_lane":  # one pass, the same words as below
            words = _lfsr_words(
                self._states, _FORMS[self.form], self._mask, self.width, cycles, int(n), r,
                self.combine == "invert", self.combine == "alternate", self._cycle,
            )  # fmt: skip
            self._cycle += cycles
            return words
        raw = self.states(cycles)
        if self.sharing == "shared":
            raw = np.stack([_rotl(raw[:, 0], j, self.width) for j in range(self.lanes)], axis=1)
        if self.combine == "invert":
            raw = raw ^ full
        elif self.combine == "alternate":
            odd = ((np.arange(cycles) + self._cycle) & 1).astype(bool)
            raw[odd] ^= full
        self._cycle += cycles
        return tile_word(raw.reshape(-1)[: int(n)], self.width, r).astype(np.uint32)


class Xorshift32Source(RandomSource):
    """Marsaglia's xorshift32 (shifts 13, 17, 5), one register per lane; the word is the top r
    bits of the current state (the low bits of xorshift are its weakest)."""

    def __init__(self, seed: int = 2463534242, lanes: int = 1) -> None:
        if lanes < 1:
            raise ValueError(f"lanes={lanes} must be at least 1")
        self.seed, self.lanes = int(seed), int(lanes)
        self.name = f"xorshift32x{lanes}"
        self.reset()

    def reset(self) -> None:
        self._states = _lane_seeds(self.seed, self.lanes, 32)

    def draw(self, n: int, r: int) -> np.ndarray:
        r = _check_r(r)
        cycles = -(-int(n) // self.lanes)
        raw = _xorshift32_run(self._states, cycles).reshape(-1)[: int(n)]
        return (raw >> (32 - r)).astype(np.uint32)


class UniformSource(RandomSource):
    """An ideal source (numpy's PCG64): the reference against which hardware sources are judged."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)
        self.name = "uniform"
        self.reset()

    def reset(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def draw(self, n: int, r: int) -> np.ndarray:
        r = _check_r(r)
        return self._rng.integers(0, 1 << r, size=int(n), dtype=np.uint64).astype(np.uint32)


class TensorBitsSource(RandomSource):
    """Randomness taken from the network itself: the low-order bits of a tensor stream.

    The word is bits [low_bit, low_bit + r) of each element's raw encoding (float32 / float16
    bit patterns, or integer codes), consumed in order. Words past the end of the stream raise
    an error unless `cycle=True`.
    """

    def __init__(self, stream: np.ndarray, low_bit: int = 0, cycle: bool = False) -> None:
        arr = np.ascontiguousarray(stream).reshape(-1)
        if arr.size == 0:
            raise ValueError("the tensor stream is empty")
        if arr.dtype == np.float32:
            raw = arr.view(np.uint32)
        elif arr.dtype == np.float16:
            raw = arr.view(np.uint16)
        elif arr.dtype == np.float64:
            raw = arr.view(np.uint64)
        elif np.issubdtype(arr.dtype, np.unsignedinteger):
            raw = arr
        else:
            raise TypeError(f"stream must be float16/32/64 or unsigned codes, not {arr.dtype}")
        self._raw = raw.astype(np.uint64)
        self._bits = raw.dtype.itemsize * 8
        if not 0 <= low_bit < self._bits:
            raise ValueError(f"low_bit={low_bit} is outside the {self._bits}-bit elements")
        self.low_bit, self.cycle = int(low_bit), bool(cycle)
        self.name = f"tensor-bits@{low_bit}"
        self.reset()

    @classmethod
    def neighbour_lanes(cls, x: np.ndarray, offset: int = 1) -> TensorBitsSource:
        """The bits that rounding discards in another lane: element i is rounded with the low
        bits of element i + offset of the same tensor (float32 -> FP8 discards the low mantissa
        bits, so low_bit=0 picks exactly the discarded ones)."""
        return cls(np.roll(np.ascontiguousarray(x).reshape(-1), -int(offset)), 0, cycle=True)

    def reset(self) -> None:
        self._pos = 0

    def draw(self, n: int, r: int) -> np.ndarray:
        r = _check_r(r)
        if self.low_bit + r > self._bits:
            raise ValueError(
                f"bits [{self.low_bit}, {self.low_bit + r}) do not fit in {self._bits}-bit elements"
            )
        n = int(n)
        size = self._raw.size
        if not self.cycle and self._pos + n > size:
            raise ValueError(
                f"tensor stream exhausted: {n} words asked at position {self._pos} of {size}"
            )
        idx = (self._pos + np.arange(n)) % size
        self._pos += n
        words = (self._raw[idx] >> np.uint64(self.low_bit)) & np.uint64((1 << r) - 1)
        return words.astype(np.uint32)


def discarded_words(values: np.ndarray, fmt: str | FloatFormat, r: int) -> np.ndarray:
    """floor(d 2**r) per element: the first r bits that rounding `values` into `fmt` discards.

    With the magnitude m = (k + d) u, u the spacing of `fmt` at m (docs/numerics.md; below the
    smallest normal of a format without subnormals u is the smallest normal), this is the
    quantity the `sr` decision compares with the random word, so an SRU already holds it.
    Zero, Inf and NaN give 0. uint32, the shape of `values`."""
    r = _check_r(r)
    f = get_format(fmt)
    m = np.abs(np.asarray(values, dtype=np.float64))
    m = np.where(np.isfinite(m), m, 0.0)
    _, e = np.frexp(m)  # m = mant 2**e, mant in [0.5, 1): the unbiased exponent is e - 1
    low = f.emin - f.man_bits if f.subnormals else f.emin
    lsb = np.where(e - 1 >= f.emin, e - 1 - f.man_bits, low)
    scaled = np.ldexp(m, r - lsb)  # (k + d) 2**r: exact, a power-of-two scaling
    return np.fmod(np.floor(scaled), float(1 << r)).astype(np.uint32)


def neighbour_lane_words(
    values: np.ndarray, fmt: str | FloatFormat, r: int, lanes: int
) -> np.ndarray:
    """The SRUs' `tensor_bits` source: the random word of result i of one op's result stream
    (flat order) is `discarded_words` of another result of the same SRU cycle. Results go
    `lanes` per cycle (result i: lane i % lanes, cycle i // lanes); lane j takes the bits of
    lane j + 1, and the cycle's last busy lane those of lane 0 (a lone result its own)."""
    if lanes < 1:
        raise ValueError(f"lanes={lanes} must be at least 1")
    flat = np.asarray(values).reshape(-1)
    return discarded_words(flat, fmt, r)[neighbour_index(flat.size, lanes)]


def neighbour_index(n: int, lanes: int) -> np.ndarray:
    """For each of n results, the index whose bits it takes (`neighbour_lane_words`)."""
    i = np.arange(n)
    nxt = i + 1
    wrap = (nxt % lanes == 0) | (nxt == n)  # the cycle's last lane, or the last busy one
    return np.where(wrap, i - i % lanes, nxt)


def lfsr_word_pmf(width: int, r: int, combine: Combine = "none") -> np.ndarray:
    """Distribution of the r-bit word over one full period (two for "alternate") of a maximal
    LFSR: the exact pmf against which measured biases are compared. Closed form for
    r <= width; by enumerating the states for tiled words (r > width, width <= 24)."""
    if r > width:
        if width > 24:
            raise ValueError("enumerating tiled words is limited to widths <= 24")
        states = np.arange(1, 1 << width, dtype=np.int64)
        full = (1 << width) - 1
        if combine == "invert":
            states = states ^ full
        elif combine == "alternate":
            states = np.concatenate([states, states ^ full])
        counts = np.bincount(tile_word(states, width, r), minlength=1 << r).astype(np.float64)
        return counts / counts.sum()
    per_value = float(1 << (width - r))  # each r-bit value is the low bits of 2**(n-r) states
    counts = np.full(1 << r, per_value)
    low_zero, low_ones = 0, (1 << r) - 1  # the missing state's low bits, and its complement's
    if combine in ("none", "alternate"):
        counts[low_zero] -= 1
    if combine in ("invert", "alternate"):
        counts[low_ones] -= 1
    if combine == "alternate":
        counts += per_value
    return counts / counts.sum()
