import numpy as np
import pytest

from simulator.numerics.random_sources import (
    LFSR_TAPS,
    LFSRSource,
    TensorBitsSource,
    UniformSource,
    Xorshift32Source,
    lfsr_period,
    lfsr_word_pmf,
    tap_mask,
    tile_word,
)


def _prime_factors(n: int) -> list[int]:
    out, p = [], 2
    while p * p <= n:
        if n % p == 0:
            out.append(p)
            while n % p == 0:
                n //= p
        p += 1
    return out + ([n] if n > 1 else [])


def _polymulmod(a: int, b: int, poly: int, deg: int) -> int:
    """a * b mod poly over GF(2), polynomials as bit masks."""
    out = 0
    while b:
        if b & 1:
            out ^= a
        b >>= 1
        a <<= 1
        if a >> deg & 1:
            a ^= poly
    return out


def _x_pow(e: int, poly: int, deg: int) -> int:
    result, base = 1, 0b10
    while e:
        if e & 1:
            result = _polymulmod(result, base, poly, deg)
        base = _polymulmod(base, base, poly, deg)
        e >>= 1
    return result


@pytest.mark.parametrize("width", sorted(LFSR_TAPS))
def test_every_tap_polynomial_is_primitive(width):
    """x has multiplicative order 2**n - 1 modulo the polynomial: the LFSR is maximal."""
    poly = 1 | (1 << width)
    for t in LFSR_TAPS[width]:
        if t < width:
            poly |= 1 << t
    order = (1 << width) - 1
    assert _x_pow(order, poly, width) == 1
    for q in _prime_factors(order):
        assert _x_pow(order // q, poly, width) != 1, f"order divides {order // q}"


@pytest.mark.parametrize("width", range(2, 21))
@pytest.mark.parametrize("form", ["fibonacci", "galois"])
def test_running_the_register_gives_the_maximal_period(width, form):
    assert lfsr_period(width, form) == (1 << width) - 1


@pytest.mark.slow
@pytest.mark.parametrize("width", range(21, 29))
@pytest.mark.parametrize("form", ["fibonacci", "galois"])
def test_running_the_register_gives_the_maximal_period_wide(width, form):
    assert lfsr_period(width, form) == (1 << width) - 1


def test_fibonacci_and_galois_steps_follow_the_documented_semantics():
    # 4-bit, taps (4, 3): Fibonacci feeds bit3 ^ bit2 into the LSB after a left shift.
    assert LFSRSource(4, "fibonacci", seed=1).draw(6, 4).tolist() == [1, 2, 4, 9, 3, 6]
    # Galois shifts right and XORs mask 0b1100 when the LSB falls out.
    assert tap_mask(4) == 0b1100
    assert LFSRSource(4, "galois", seed=1).draw(4, 4).tolist() == [1, 0b1100, 0b0110, 0b0011]


def test_a_period_visits_every_nonzero_state_once():
    words = LFSRSource(10, seed=5).draw(1023, 10)
    assert sorted(words.tolist()) == list(range(1, 1024))


def test_sources_are_reproducible_and_reset():
    for src in (LFSRSource(16, seed=77, lanes=4), Xorshift32Source(9, lanes=3), UniformSource(3)):
        a = src.draw(1000, 12)
        src.reset()
        assert np.array_equal(src.draw(1000, 12), a)
        assert a.dtype == np.uint32 and a.max() < 1 << 12


def test_lanes_interleave_and_shared_lanes_are_rotations():
    per_lane = LFSRSource(8, seed=3, lanes=2).draw(10, 8).reshape(5, 2)
    assert np.array_equal(per_lane[:, 0], LFSRSource(8, seed=3).draw(5, 8))
    assert not np.array_equal(per_lane[:, 0], per_lane[:, 1])
    shared = LFSRSource(8, seed=3, lanes=3, sharing="shared").draw(12, 8).reshape(4, 3)
    base = shared[:, 0].astype(np.int64)
    assert np.array_equal(shared[:, 1], ((base << 1) | (base >> 7)) & 0xFF)
    assert np.array_equal(shared[:, 2], ((base << 2) | (base >> 6)) & 0xFF)


def test_inverted_and_alternating_lfsrs():
    plain = LFSRSource(5, seed=9).draw(62, 5)
    assert np.array_equal(LFSRSource(5, seed=9, combine="invert").draw(62, 5), plain ^ 31)
    alt = LFSRSource(5, seed=9, combine="alternate").draw(62, 5)
    assert np.array_equal(alt[0::2], plain[0::2]) and np.array_equal(alt[1::2], plain[1::2] ^ 31)
    # over two periods the mean is exactly (2**n - 1) / 2: the missing-zero bias is gone
    assert alt.mean() == 15.5 and plain[:31].mean() == 16.0


def test_narrow_register_is_tiled_to_wide_words():
    assert tile_word(np.array([0b101]), 3, 8).tolist() == [0b01101101]
    assert LFSRSource(3, seed=5).draw(1, 8).tolist() == [0b01101101]


@pytest.mark.parametrize("combine", ["none", "invert", "alternate"])
def test_word_pmf_matches_a_full_period(combine):
    periods = 2 if combine == "alternate" else 1
    words = LFSRSource(7, seed=1, combine=combine).draw(127 * periods, 4)
    measured = np.bincount(words, minlength=16) / words.size
    assert np.allclose(measured, lfsr_word_pmf(7, 4, combine), atol=1e-12)


def test_xorshift32_matches_marsaglias_published_first_output():
    # Marsaglia, "Xorshift RNGs" (J. Stat. Softw. 2003): y = 2463534242 steps to 723471715.
    assert Xorshift32Source(2463534242).draw(2, 32).tolist() == [2463534242, 723471715]


def test_tensor_bits_source_takes_low_bits_in_order():
    x = np.array([1.0, 1.0 + 2**-23, 1.0 + 3 * 2**-23], np.float32)
    src = TensorBitsSource(x)
    assert src.draw(3, 2).tolist() == [0, 1, 3]
    with pytest.raises(ValueError, match="exhausted: 1 words asked at position 3 of 3"):
        src.draw(1, 2)
    nb = TensorBitsSource.neighbour_lanes(x, offset=1)
    assert nb.draw(4, 2).tolist() == [1, 3, 0, 1]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: LFSRSource(33), "width 33 is not supported"),
        (lambda: LFSRSource(4, seed=0), "seed 0 must be a nonzero 4-bit state"),
        (lambda: LFSRSource(4, seed=16), "seed 16 must be a nonzero"),
        (lambda: LFSRSource(4, form="ring"), "fibonacci' or 'galois"),
        (lambda: LFSRSource(4, lanes=0), "lanes=0"),
        (lambda: LFSRSource(4).draw(3, 33), "r=33"),
        (lambda: TensorBitsSource(np.zeros(0, np.float32)), "empty"),
        (lambda: TensorBitsSource(np.zeros(3, np.int8)), "float16/32/64 or unsigned"),
    ],
)
def test_bad_source_arguments(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def _draw_from_states(src: LFSRSource, n: int, r: int) -> np.ndarray:
    """`LFSRSource.draw` composed from its parts: the raw register values (`states`), the
    `combine` rule, `tile_word`: the definition the one-pass per-lane draw must equal."""
    cycles = -(-n // src.lanes)
    full = (1 << src.width) - 1
    raw = src.states(cycles)
    if src.combine == "invert":
        raw = raw ^ full
    elif src.combine == "alternate":
        odd = ((np.arange(cycles) + src._cycle) & 1).astype(bool)
        raw[odd] ^= full
    src._cycle += cycles
    return tile_word(raw.reshape(-1)[:n], src.width, r).astype(np.uint32)


@pytest.mark.parametrize("width", [3, 16, 32])
@pytest.mark.parametrize("form", ["fibonacci", "galois"])
@pytest.mark.parametrize("combine", ["none", "invert", "alternate"])
def test_per_lane_draw_equals_its_definition(width, form, combine):
    """Successive draws of odd sizes (partial last cycles), r below, at and above the width
    (tiled words): the same words, and the registers and cycle count end in the same state."""
    for lanes in (1, 3, 64):
        for r in (1, 8, min(32, width + 5)):
            fast = LFSRSource(width, form, 5, lanes, "per_lane", combine)
            ref = LFSRSource(width, form, 5, lanes, "per_lane", combine)
            for n in (1, 7, 64, 130):
                got, want = fast.draw(n, r), _draw_from_states(ref, n, r)
                assert got.dtype == want.dtype == np.uint32
                assert np.array_equal(got, want), (lanes, r, n)
            assert np.array_equal(fast._states, ref._states) and fast._cycle == ref._cycle
