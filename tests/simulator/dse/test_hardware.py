import pytest

from simulator.dse.config import SourceChoice, SruPoint
from simulator.dse.hardware import evaluate_hardware


def _point(r, source, rounding="sr"):
    return SruPoint(format="e5m2", rounding=rounding, r=r, source=source, apply_to=("weights",))


def test_cost_grows_with_random_bits_and_register_width():
    small = evaluate_hardware(_point(3, SourceChoice(kind="lfsr", width=3)))
    big = evaluate_hardware(_point(24, SourceChoice(kind="lfsr", width=24)))
    assert small["cells_source"] < big["cells_source"]
    assert small["gate_equivalents"] < big["gate_equivalents"]
    assert small["energy_pj_per_rounding"] < big["energy_pj_per_rounding"]
    assert "assumed" in big["energy_basis"]


def test_shared_lfsr_is_divided_among_its_lanes():
    own = evaluate_hardware(_point(8, SourceChoice(kind="lfsr", width=16)))
    shared = evaluate_hardware(
        _point(8, SourceChoice(kind="lfsr", width=16, sharing="shared", lanes=4))
    )
    assert shared["cells_total"] == pytest.approx(own["cells_sru"] + own["cells_source"] / 4)


def test_sources_without_rtl_say_so():
    res = evaluate_hardware(_point(8, SourceChoice(kind="uniform")))
    assert res["cells_total"] is None and "no RTL" in res["note"]
    net = evaluate_hardware(_point(8, SourceChoice(kind="network", tensor="self")))
    assert net["cells_total"] >= net["cells_sru"]


def test_xorshift_costs_its_32_bit_register():
    """xorshift32 keeps 32 flip-flops and 61 XORs whatever r is: dearer than an 8-bit LFSR."""
    xs = evaluate_hardware(_point(8, SourceChoice(kind="xorshift32")))
    lfsr8 = evaluate_hardware(_point(8, SourceChoice(kind="lfsr", width=8)))
    lfsr32 = evaluate_hardware(_point(8, SourceChoice(kind="lfsr", width=32)))
    assert xs["cells_source"] > lfsr32["cells_source"] > lfsr8["cells_source"]
    assert xs["gate_equivalents"] > lfsr8["gate_equivalents"]
