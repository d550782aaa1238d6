"""Numerical quality of one SRU point: bias (measured vs analytic), variance, autocorrelation,
NIST pass count."""

from __future__ import annotations

import math

import numpy as np

from simulator.dse.config import SourceChoice, SruPoint
from simulator.numerics.formats import get_format
from simulator.numerics.random_sources import (
    LFSRSource,
    RandomSource,
    TensorBitsSource,
    UniformSource,
    Xorshift32Source,
    lfsr_word_pmf,
)
from simulator.numerics.stats import default_inputs, expected_bias, rounding_stats

# How far (in standard errors of the mean) a measured bias may sit from the analytic one.
BIAS_TOLERANCE_SIGMA = 5.0


def _network_stream(choice: SourceChoice, x: np.ndarray, seed: int) -> tuple[RandomSource, str]:
    """Without a training run there are no real activations/errors/weights; numeric figures
    for those use a stand-in stream of the same kind (said so in the result)."""
    if choice.tensor == "self":
        return TensorBitsSource.neighbour_lanes(x, choice.offset), "the rounded values' own lanes"
    rng = np.random.default_rng(seed + 17)
    stand_in = rng.standard_normal(x.size).astype(np.float32)
    if choice.tensor == "activations":
        stand_in = np.maximum(stand_in, 0) + np.float32(1e-3)  # ReLU outputs, nonzero
    return TensorBitsSource(stand_in, 0, cycle=True), f"synthetic stand-in for {choice.tensor}"


def build_source(choice: SourceChoice, x: np.ndarray, seed: int) -> tuple[RandomSource, str]:
    if choice.kind == "uniform":
        return UniformSource(seed), "numpy PCG64"
    if choice.kind == "xorshift32":
        return Xorshift32Source(seed + 1, choice.lanes), "xorshift32"
    if choice.kind == "lfsr":
        assert choice.width is not None
        src = LFSRSource(choice.width, choice.form, 1, choice.lanes, choice.sharing, choice.combine)
        return src, src.name
    return _network_stream(choice, x, seed)


def _word_pmf(point: SruPoint) -> np.ndarray | None:
    """The exact distribution of S where it is known: the ideal source, and a single
    full-period LFSR. None otherwise (xorshift, shared lanes, network bits)."""
    src = point.source
    assert src is not None and point.r is not None
    if src.kind == "uniform":
        return np.full(1 << point.r, 1.0 / (1 << point.r))
    if src.kind == "lfsr" and src.sharing == "per_lane" and src.lanes == 1:
        assert src.width is not None
        if point.r <= src.width or src.width <= 20:
            return lfsr_word_pmf(src.width, point.r, src.combine)
    return None


def evaluate_numeric(
    point: SruPoint, samples: int, seed: int = 0, nist_bits: int = 1 << 15
) -> dict[str, object]:
    """Round `samples` values with this point's SRU and summarise the error in target ULPs.

    `bias_expected_ulp` is the analytic bias of the definition with the source's exact word
    distribution where it is known (`bias_basis` = "exact"); for other sources it is the
    ideal-source value (`bias_basis` = "ideal"), and the z-score then measures how far the
    source is from ideal rather than checking the model.
    """
    x = default_inputs(point.format, samples, seed)
    discarded = 23 - get_format(point.format).man_bits
    if point.r is None:
        st = rounding_stats(point.format, point.rounding, x=x, nist=False)
        expected, basis, stream = expected_bias(point.rounding, 0, discarded), "exact", "none"
    else:
        assert point.source is not None
        source, stream = build_source(point.source, x, seed)
        pmf = _word_pmf(point)
        st = rounding_stats(
            point.format,
            point.rounding,
            point.r,
            source=source,
            x=x,
            lags=4,
            nist=True,
            nist_bits=nist_bits,
        )
        expected = expected_bias(point.rounding, point.r, discarded, pmf)
        basis = "exact" if pmf is not None else "ideal"
    sem = math.sqrt(st.variance_ulp2 / st.samples)
    z = (st.bias_ulp - expected) / sem if sem > 0 else 0.0
    nist = st.nist or {}
    return {
        "bias_ulp": st.bias_ulp,
        "bias_expected_ulp": expected,
        "bias_basis": basis,
        "bias_z": z,
        "bias_matches_analytic": abs(z) <= BIAS_TOLERANCE_SIGMA if basis == "exact" else None,
        "variance_ulp2": st.variance_ulp2,
        "autocorr_lag1": st.autocorrelation[0] if st.autocorrelation else None,
        "nist_passed": nist.get("passed"),
        "nist_eligible": nist.get("eligible"),
        "samples": st.samples,
        "random_stream": stream,
    }
