import itertools
from fractions import Fraction

import numpy as np
import pytest

from simulator.numerics import quantize
from simulator.numerics.random_sources import (
    LFSRSource,
    UniformSource,
    Xorshift32Source,
    lfsr_word_pmf,
)
from simulator.numerics.stats import (
    autocorrelation,
    expected_bias,
    nist_battery,
    rounding_stats,
    ulp,
)

from .oracle import round_ref


@pytest.mark.parametrize("rounding", ["sr", "sr_half", "sr_corrected", "rne", "rna", "rtz"])
@pytest.mark.parametrize(("r", "bits"), [(1, 3), (2, 4), (3, 3), (4, 2)])
def test_expected_bias_equals_brute_force_over_d_and_s(rounding, r, bits):
    """The analytic bias enumerates the definitions; check it against the Fraction oracle run
    over every (discarded fraction, random integer) pair."""
    total = Fraction(0)
    for j, s in itertools.product(range(1 << bits), range(1 << r)):
        x = 1.0 + j / float(1 << (bits + 2))  # e5m2 keeps 2 mantissa bits; d = j / 2**bits
        q = round_ref(x, "e5m2", rounding, s, r)
        total += (Fraction(q) - Fraction(x)) / Fraction(1, 4)
    want = total / ((1 << bits) * (1 << r))
    assert expected_bias(rounding, r, bits) == pytest.approx(float(want), abs=1e-15)


def test_sr_bias_closed_form():
    # With d uniform on 2**D points and S uniform, sr's bias is -(2**(D-r) - 1) / 2**(D+1);
    # it vanishes once r >= D (exact stochastic rounding).
    for D, r in [(21, 1), (21, 4), (21, 8), (10, 3)]:
        assert expected_bias("sr", r, D) == pytest.approx(-(2 ** (D - r) - 1) / 2 ** (D + 1))
    assert expected_bias("sr", 21, 21) == 0.0


def test_exact_sr_is_unbiased():
    st = rounding_stats("e5m2", "sr", 21, n=400_000, nist=False)
    sigma = np.sqrt(st.variance_ulp2 / st.samples)
    assert st.expected_bias_ulp == 0.0
    assert abs(st.bias_ulp) < 5 * sigma


@pytest.mark.parametrize("r", [1, 2, 3, 4, 6])
@pytest.mark.parametrize("rounding", ["sr", "sr_half", "sr_corrected"])
def test_measured_bias_matches_the_definition(r, rounding):
    st = rounding_stats("e5m2", rounding, r, source=UniformSource(r), n=400_000, nist=False)
    sigma = np.sqrt(st.variance_ulp2 / st.samples)
    assert abs(st.bias_ulp - st.expected_bias_ulp) < 5 * sigma
    if rounding == "sr":  # the add-and-truncate rounder is biased low by about 2**-(r+1) ULP
        assert st.expected_bias_ulp == pytest.approx(-(2.0 ** -(r + 1)), rel=1e-4)


@pytest.mark.parametrize("width", [3, 4, 5])
def test_lfsr_missing_zero_state_shows_its_exact_bias(width):
    """Pair every discarded fraction on a 2**D grid with every LFSR state: the grid length
    (a power of two) and the period (odd) are coprime, so grid * period draws cover every pair
    once, and the measured bias must equal the analytic one with the LFSR's pmf exactly."""
    D, r = 4, width
    period = (1 << width) - 1
    j = np.arange((1 << D) * period) % (1 << D)
    x = (1.0 + j / float(1 << (D + 2))).astype(np.float32)
    words = LFSRSource(width, seed=1).draw(x.size, r)
    q = quantize(x, "e5m2", "sr", r=r, random_bits=words)
    measured = float(np.mean((q.astype(np.float64) - x) / 0.25))
    want = expected_bias("sr", r, D, lfsr_word_pmf(width, r))
    assert measured == pytest.approx(want, abs=1e-12)
    # the missing zero state pushes the mean up relative to an ideal source
    assert want > expected_bias("sr", r, D)


def test_ulp_covers_normal_subnormal_and_flushed_ranges():
    assert ulp(np.array([1.0, 1.99, 2.0]), "e5m2").tolist() == [0.25, 0.25, 0.5]
    assert ulp(np.array([2.0**-15]), "e5m2").tolist() == [2.0**-16]
    assert ulp(np.array([2.0**-15]), "e5m2_chip").tolist() == [2.0**-14]


def test_autocorrelation_detects_structure():
    fib = LFSRSource(16, seed=1).draw(20_000, 16)  # each state is the last one shifted left
    assert autocorrelation(fib, 1)[0] > 0.4
    xs = Xorshift32Source(1).draw(20_000, 16)
    assert abs(autocorrelation(xs, 1)[0]) < 0.05
    assert autocorrelation(np.zeros(10), 2) == [0.0, 0.0]


def test_nist_battery_separates_good_and_bad_streams():
    good = nist_battery(UniformSource(0).draw(8192, 16), 16)
    bad = nist_battery(np.zeros(5000, np.uint32), 16)
    assert good is not None and bad is not None
    assert good["eligible"] >= 10
    assert good["passed"] >= good["eligible"] - 1
    assert not good["tests"]["Random Excursion"]["counted"]
    assert bad["passed"] <= bad["eligible"] // 4  # all zeros: nearly every test must reject
    assert nist_battery(np.zeros(10, np.uint32), 8) is None  # too short to judge


def test_rounding_stats_reports_everything_as_plain_data():
    st = rounding_stats("e4m3", "sr", 8, source=LFSRSource(8), n=20_000, nist=False)
    d = st.to_dict()
    assert d["format"] == "e4m3" and d["source"].startswith("lfsr8") and d["samples"] == 20_000
    assert len(d["autocorrelation"]) == 8
    det = rounding_stats("e4m3", "rne", n=10_000, nist=False)
    assert det.source == "none" and abs(det.bias_ulp) < 0.01
