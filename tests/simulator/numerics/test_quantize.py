"""quantize against ml_dtypes (OCP formats), numpy (fp16), and the Fraction oracle (all presets)."""

import math

import ml_dtypes
import numpy as np
import pytest

from simulator.numerics import PRESETS, decode, encode, get_format, quantize

from .oracle import round_ref

ML_DTYPES = {"e5m2": ml_dtypes.float8_e5m2, "e4m3": ml_dtypes.float8_e4m3fn}


def _ml_codes(x: np.ndarray, name: str) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        return x.astype(ML_DTYPES[name]).view(np.uint8)


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Equal values, NaN equal to NaN, and the sign of zero compared too."""
    both_nan = np.isnan(a) & np.isnan(b)
    return both_nan | ((a == b) & (np.signbit(a) == np.signbit(b)))


@pytest.fixture(scope="module")
def all_float16() -> np.ndarray:
    return np.arange(1 << 16, dtype=np.uint16).view(np.float16)


@pytest.mark.parametrize("name", ["e5m2", "e4m3"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_float16_pattern_matches_ml_dtypes(all_float16, name, dtype):
    x = all_float16.astype(dtype)
    codes = encode(quantize(x, name), name)
    ref = _ml_codes(x, name)
    bad = np.flatnonzero(codes != ref)
    assert bad.size == 0, f"first mismatch at float16 pattern {bad[0]:#06x}"


@pytest.mark.parametrize("name", ["e5m2", "e4m3"])
def test_a_million_random_float32_patterns_match_ml_dtypes(name):
    # Uniform random bit patterns cover every binade, both signs, subnormals, Inf and NaN.
    rng = np.random.default_rng(2026)
    x = rng.integers(0, 1 << 32, size=1_000_000, dtype=np.uint64).astype(np.uint32)
    x = x.view(np.float32)
    # ...plus values concentrated in and around the format's range, where rounding matters.
    f = get_format(name)
    near = (rng.standard_normal(1_000_000) * f.max_value / 4).astype(np.float32)
    tiny = (rng.standard_normal(200_000) * f.min_subnormal * 8).astype(np.float32)
    for xs in (x, near, tiny):
        q = quantize(xs, name)
        assert np.array_equal(encode(q, name), _ml_codes(xs, name))
        assert _same(q, decode(_ml_codes(xs, name), name)).all()


def _edges(name: str) -> np.ndarray:
    f = get_format(name)
    sub = f.min_subnormal or 0.0
    mn, mx = f.min_normal, f.max_value
    top_ulp = 2.0 ** (f.emax - f.man_bits)
    vals = [
        0.0,
        -0.0,
        sub,
        sub / 2,
        sub * 0.75,
        sub * 1.5,
        sub * 2.5,
        sub / 2 * (1 + 2**-20),
        mn,
        mn - sub,
        mn - sub / 2,
        mn + sub / 2,
        mn * (1 - 2**-20),
        mx,
        mx + top_ulp / 2,
        mx + top_ulp / 2 * (1 - 2**-20),
        mx + top_ulp / 2 * (1 + 2**-20),
        mx + top_ulp,
        mx * 4,
        1.0,
        1.0 + 2.0**-f.man_bits / 2,
        1.0 + 1.5 * 2.0**-f.man_bits,
        math.inf,
        math.nan,
    ]
    v = np.array(vals, dtype=np.float64)
    return np.concatenate([v, -v])


@pytest.mark.parametrize("name", ["e5m2", "e4m3"])
def test_edge_values_match_ml_dtypes(name):
    x = _edges(name).astype(np.float32)
    assert [hex(c) for c in encode(quantize(x, name), name)] == [hex(c) for c in _ml_codes(x, name)]


@pytest.mark.parametrize("name", list(PRESETS))
def test_float64_edges_are_rounded_once(name):
    """float64 input is rounded directly, never through float32. (ml_dtypes 0.6 converts
    float64 via float32 and so double-rounds: e4m3 of 448 + 16 * (1 + 2**-20) is 448 there,
    though the value lies above the tie and must overflow to NaN.)"""
    f = get_format(name)
    x = _edges(name)
    x = x[~np.isnan(x)] if not f.has_nan else x
    ref = np.array([round_ref(float(v), name, "rne") for v in x])
    assert _same(quantize(x, name), ref).all()


def test_fp16_matches_numpy_and_bf16_matches_ml_dtypes():
    rng = np.random.default_rng(7)
    x32 = rng.integers(0, 1 << 32, size=500_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    x64 = rng.standard_normal(500_000) * 1e4
    with np.errstate(invalid="ignore", over="ignore"):
        for x in (x32, x64):
            assert _same(quantize(x, "fp16"), x.astype(np.float16).astype(x.dtype)).all()
        # float32 only: ml_dtypes double-rounds float64 through float32 (see above)
        assert _same(quantize(x32, "bf16"), x32.astype(ml_dtypes.bfloat16).astype(np.float32)).all()


def _oracle_inputs(name: str, n: int, seed: int) -> np.ndarray:
    """Log-uniform magnitudes from below the smallest step to beyond the largest value."""
    f = get_format(name)
    rng = np.random.default_rng(seed)
    lo = math.log2(f.min_subnormal or f.min_normal) - 3
    hi = math.log2(f.max_value) + 2
    mags = 2.0 ** rng.uniform(lo, hi, size=n)
    with np.errstate(over="ignore"):  # fp32's range overflows into Inf, on purpose
        x = np.concatenate([mags * rng.choice([-1, 1], size=n), _edges(name)]).astype(np.float32)
    return x[~np.isnan(x)] if not f.has_nan else x


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("rounding", ["rne", "rna", "rtz"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_deterministic_rounding_matches_oracle(name, rounding, dtype):
    x = _oracle_inputs(name, 1500, seed=len(name) * 7 + len(rounding)).astype(dtype)
    if dtype == np.float64:  # values off the float32 grid, so no float32 path could pass
        x = x * (1 + 2.0**-40)
    q = quantize(x, name, rounding)
    ref = np.array([round_ref(float(v), name, rounding) for v in x], dtype=dtype)
    bad = np.flatnonzero(~_same(q, ref))
    assert bad.size == 0, f"x={x[bad[0]]!r}: got {q[bad[0]]!r}, want {ref[bad[0]]!r}"


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("rounding", ["sr", "sr_half", "sr_corrected"])
@pytest.mark.parametrize("r", [1, 3, 8, 23])
def test_stochastic_rounding_matches_oracle(name, rounding, r):
    x = _oracle_inputs(name, 400, seed=r)
    rng = np.random.default_rng(r + 100)
    S = rng.integers(0, 1 << r, size=x.size).astype(np.uint32)
    q = quantize(x, name, rounding, r=r, random_bits=S)
    ref = np.array(
        [round_ref(float(v), name, rounding, int(s), r) for v, s in zip(x, S, strict=True)],
        dtype=np.float32,
    )
    bad = np.flatnonzero(~_same(q, ref))
    assert bad.size == 0, f"x={x[bad[0]]!r} S={S[bad[0]]}: got {q[bad[0]]!r}, want {ref[bad[0]]!r}"


@pytest.mark.parametrize("rounding", ["sr", "sr_half", "sr_corrected"])
@pytest.mark.parametrize("r", [1, 2, 3, 4])
@pytest.mark.parametrize("name", ["e5m2", "e4m3", "e5m2_chip"])
def test_stochastic_modes_exhaustive_over_random_bits(rounding, r, name):
    """Every random integer, on values whose discarded fraction sits on and between the
    thresholds, including subnormals and the no-subnormal region of the chip format."""
    f = get_format(name)
    ulp1 = 2.0**-f.man_bits
    fracs = np.arange(0, 64) / 64.0 + 1 / 256.0 * (np.arange(64) % 2)
    base = [1.0, 1.5, f.min_normal, f.max_value - f.max_value * ulp1 / 2]
    x = np.array([b + fr * b * ulp1 for b in base for fr in fracs], dtype=np.float32)
    x = np.concatenate([x, (fracs * f.min_normal).astype(np.float32)])
    x = np.concatenate([x, -x])
    for s in range(1 << r):
        S = np.full(x.size, s, dtype=np.uint32)
        q = quantize(x, name, rounding, r=r, random_bits=S)
        ref = np.array([round_ref(float(v), name, rounding, s, r) for v in x], dtype=np.float32)
        assert _same(q, ref).all(), (s, x[~_same(q, ref)][:3])


def test_chip_format_has_no_subnormals_and_saturates():
    f = get_format("e5m2_chip")
    mn = f.min_normal
    x = np.array([mn / 2, mn * 0.5000001, mn * 0.75, -mn / 4, 1e9, -np.inf, np.inf], np.float32)
    q = quantize(x, "e5m2_chip")
    assert q.tolist() == [0.0, mn, mn, -0.0, f.max_value, -f.max_value, f.max_value]
    assert np.signbit(q[3])
    # every code decodes to a finite number; exponent field 0 is zero whatever the mantissa
    vals = decode(np.arange(256, dtype=np.uint8), "e5m2_chip")
    assert np.isfinite(vals).all()
    assert (vals[[0, 1, 2, 3]] == 0).all() and np.signbit(vals[0x80])
    assert vals[0x7F] == f.max_value


def test_nan_into_a_format_without_nan_is_an_error():
    with pytest.raises(ValueError, match=r"first at flat index 2.*'e5m2_chip' has no NaN"):
        quantize(np.array([1.0, 2.0, np.nan], np.float32), "e5m2_chip")


def test_overflow_follows_the_format():
    big = np.array([1e6, -1e6, np.inf], np.float32)
    assert np.isinf(quantize(big, "e5m2")).all()
    assert np.isnan(quantize(big, "e4m3")).all()
    assert quantize(big, "e5m2_chip").tolist() == [114688.0, -114688.0, 114688.0]
    # truncation never leaves the finite range
    assert quantize(big[:2], "e5m2", "rtz").tolist() == [57344.0, -57344.0]


def test_shape_and_dtype_are_kept():
    x = np.linspace(-3, 3, 24, dtype=np.float64).reshape(2, 3, 4)
    q = quantize(x, "e4m3")
    assert q.shape == x.shape and q.dtype == np.float64
    assert quantize(x[:, ::2].astype(np.float32), "e4m3").shape == (2, 2, 4)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"x": np.ones(3, np.int32)}, TypeError, "float32 or float64"),
        ({"rounding": "nearest"}, ValueError, "unknown rounding 'nearest'"),
        ({"rounding": "sr"}, ValueError, "needs r"),
        ({"rounding": "sr", "r": 0}, ValueError, "r=0 must be in 1..32"),
        ({"rounding": "sr", "r": 4}, ValueError, "exactly one of random_bits or source"),
        (
            {"rounding": "sr", "r": 2, "random_bits": np.array([0, 4, 1])},
            ValueError,
            r"random_bits\[1\] = 4 is outside",
        ),
        ({"rounding": "sr", "r": 2, "random_bits": np.zeros(2, np.uint8)}, ValueError, "shape"),
        ({"rounding": "rne", "random_bits": np.zeros(3, np.uint8)}, ValueError, "deterministic"),
        ({"fmt": "e2m5"}, ValueError, "unknown format"),
    ],
)
def test_bad_arguments_get_clear_errors(kwargs, error, message):
    args = {"x": np.ones(3, np.float32), "fmt": "e5m2", "rounding": "rne"}
    args.update(kwargs)
    with pytest.raises(error, match=message):
        quantize(args.pop("x"), args.pop("fmt"), args.pop("rounding"), **args)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["e5m2", "e4m3"])
def test_all_float32_patterns_match_ml_dtypes(name):
    """Opt-in: every one of the 2**32 float32 bit patterns (about a minute per format)."""
    chunk = 1 << 26
    for start in range(0, 1 << 32, chunk):
        x = np.arange(start, start + chunk, dtype=np.uint64).astype(np.uint32).view(np.float32)
        got = encode(quantize(x, name), name)
        bad = np.flatnonzero(got != _ml_codes(x, name))
        assert bad.size == 0, f"pattern {start + int(bad[0]):#010x}"
