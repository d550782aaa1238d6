import ml_dtypes
import numpy as np
import pytest

from simulator.numerics import PRESETS, decode, encode, get_format, quantize


@pytest.mark.parametrize("name", [n for n, f in PRESETS.items() if f.bits <= 16])
def test_every_code_round_trips(name):
    f = get_format(name)
    codes = np.arange(1 << f.bits, dtype=np.int64).astype(f.code_dtype)
    values = decode(codes, f)
    assert values.dtype == np.float32
    keep = ~np.isnan(values)
    if not f.subnormals:  # exponent field 0 holds only zero; its other codes flush to zero
        e_field = (codes.astype(np.int64) >> f.man_bits) & ((1 << f.exp_bits) - 1)
        keep &= (e_field != 0) | ((codes.astype(np.int64) & ((1 << f.man_bits) - 1)) == 0)
    assert np.array_equal(encode(values[keep], f), codes[keep])
    # the values are on the format's grid
    finite = np.isfinite(values)
    assert np.array_equal(quantize(values[finite], f), values[finite])


@pytest.mark.parametrize(
    ("name", "dtype"), [("e5m2", ml_dtypes.float8_e5m2), ("e4m3", ml_dtypes.float8_e4m3fn)]
)
def test_decode_matches_ml_dtypes(name, dtype):
    codes = np.arange(256, dtype=np.uint8)
    ours, ref = decode(codes, name), codes.view(dtype).astype(np.float32)
    assert ((ours == ref) | (np.isnan(ours) & np.isnan(ref))).all()


def test_fp32_codes_are_the_float32_bits():
    x = np.array([1.5, -0.0, np.inf, 3.4e38, 1e-45], np.float32)
    assert np.array_equal(encode(x, "fp32"), x.view(np.uint32))
    assert np.array_equal(decode(x.view(np.uint32), "fp32"), x)


def test_nan_codes_are_canonical_and_signed():
    x = np.array([np.nan, -np.nan], np.float32)
    assert encode(x, "e5m2").tolist() == [0x7E, 0xFE]
    assert encode(x, "e4m3").tolist() == [0x7F, 0xFF]
    assert encode(x, "fp16").tolist() == [0x7E00, 0xFE00]


def test_unrepresentable_values_are_named():
    with pytest.raises(ValueError, match=r"x\[1\] = .*1\.1.* not representable in 'e4m3'"):
        encode(np.array([1.0, 1.1], np.float32), "e4m3")
    with pytest.raises(ValueError, match=r"x\[0\] is infinite .* 'e4m3' has no Inf"):
        encode(np.array([np.inf], np.float32), "e4m3")
    with pytest.raises(ValueError, match=r"x\[0\] is NaN .* 'e5m2_chip' has no NaN"):
        encode(np.array([np.nan], np.float32), "e5m2_chip")


def test_bad_codes_are_named():
    with pytest.raises(ValueError, match=r"codes\[2\] = 256 is not a 8-bit code"):
        decode(np.array([0, 1, 256]), "e5m2")
    with pytest.raises(TypeError, match="integer array"):
        decode(np.array([1.0]), "e5m2")
