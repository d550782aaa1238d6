import numpy as np
import pytest

from simulator.numerics import PRESETS, FloatFormat, FormatError, get_format


@pytest.mark.parametrize(
    ("name", "max_value", "min_normal", "min_subnormal"),
    [
        ("e5m2", 57344.0, 2.0**-14, 2.0**-16),
        ("e4m3", 448.0, 2.0**-6, 2.0**-9),
        ("e5m2_chip", 1.75 * 2.0**16, 2.0**-14, None),
        ("fp16", 65504.0, 2.0**-14, 2.0**-24),
        ("fp16_chip", (2 - 2.0**-10) * 2.0**16, 2.0**-14, None),
        ("e6m9", (2 - 2.0**-9) * 2.0**31, 2.0**-30, 2.0**-39),
        (
            "bf16",
            float(np.finfo(np.float32).max) * (1 - 2.0**-8) / (1 - 2.0**-24),
            2.0**-126,
            2.0**-133,
        ),
        ("fp32", float(np.finfo(np.float32).max), 2.0**-126, 2.0**-149),
    ],
)
def test_preset_ranges(name, max_value, min_normal, min_subnormal):
    f = get_format(name)
    assert f.max_value == max_value
    assert f.min_normal == min_normal
    assert f.min_subnormal == min_subnormal


def test_preset_widths_and_code_dtypes():
    assert {n: f.bits for n, f in PRESETS.items()} == {
        "e5m2": 8,
        "e4m3": 8,
        "e5m2_chip": 8,
        "fp16": 16,
        "fp16_chip": 16,
        "e6m9": 16,
        "bf16": 16,
        "fp32": 32,
    }
    assert get_format("e4m3").code_dtype == np.uint8
    assert get_format("fp16").code_dtype == np.uint16
    assert get_format("fp32").code_dtype == np.uint32


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"exp_bits": 1}, "exp_bits=1 must be in 2..8"),
        ({"exp_bits": 9}, "exp_bits=9 must be in 2..8"),
        ({"man_bits": 24}, "man_bits=24 must be in 0..23"),
        ({"inf_nan": "none", "saturate": False}, "set saturate=True"),
        ({"man_bits": 0, "inf_nan": "fn"}, "needs at least one mantissa bit"),
        ({"bias": -200}, "exceeds float32"),
        ({"exp_bits": 8, "bias": 200}, "below float32"),
    ],
)
def test_impossible_formats_are_rejected(kwargs, message):
    base = dict(
        name="bad", exp_bits=5, man_bits=2, bias=15, subnormals=True, inf_nan="ieee", saturate=False
    )
    base.update(kwargs)
    with pytest.raises(FormatError, match=message):
        FloatFormat(**base)


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(FormatError, match=r"unknown format 'e3m4'.*e5m2, e4m3"):
        get_format("e3m4")


def test_custom_format_is_usable():
    f = FloatFormat("e3m4", 3, 4, 3, True, "ieee", False)
    assert f.bits == 8 and f.max_value == (2 - 2.0**-4) * 2.0**3
