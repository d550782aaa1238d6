"""Energy from event counts: the table's arithmetic, voltage scaling, and what changes with
sparsity."""

from __future__ import annotations

import pytest

from isa.compiler import compile_graph
from simulator.config import load_config
from simulator.energy import energy, tflops_per_w
from simulator.timing import masks_from_trace, prepare, simulate
from workloads.graph import graph_for
from workloads.trace import synthesize

B = 2


@pytest.fixture(scope="module")
def runs():
    cfg = load_config("ref28")
    g = graph_for("vgg7")
    prep = prepare(compile_graph(g, cfg, B), cfg)
    t = synthesize(g, {"gate": 0.4, "weight_group": 0.5, "grad_skip": 0.5}, batch=B, seed=1)
    m = masks_from_trace(t)
    return cfg, prep, {mode: simulate(prep, m, mode) for mode in ("dense", "all")}


def _e(cfg, prep, timing, point=None):
    return energy(cfg, timing, prep.layers, prep.phases, prep.layer_names, prep.phase_names, point)


def test_components_follow_the_table(runs):
    cfg, prep, r = runs
    t = r["dense"]
    e = _e(cfg, prep, t, cfg.operating_point("v0.9_f400"))  # the table's reference voltage
    assert e.by_component["tc_mul"] == pytest.approx(t.events["tc_macs"] * cfg.energy.fp8_mul_pj)
    assert e.by_component["dram"] == pytest.approx(
        t.events["dram_bytes"] * cfg.energy.dram_pj_per_byte
    )
    assert e.leakage_pj == pytest.approx(t.cycles * cfg.energy.leakage_pj_per_cycle)
    assert e.total_pj == pytest.approx(sum(e.by_component.values()) + e.leakage_pj)
    assert sum(e.by_phase.values()) == pytest.approx(sum(e.by_component.values()))
    assert sum(e.by_layer.values()) == pytest.approx(sum(e.by_component.values()))


def test_operating_point_scaling(runs):
    cfg, prep, r = runs
    t = r["all"]
    lo, ref = cfg.operating_point("v0.6_f100"), cfg.operating_point("v0.9_f400")
    e_lo, e_ref = _e(cfg, prep, t, lo), _e(cfg, prep, t, ref)
    s = (0.6 / 0.9) ** 2
    assert e_lo.by_component["tc_mul"] == pytest.approx(s * e_ref.by_component["tc_mul"])
    assert e_lo.by_component["dram"] == pytest.approx(e_ref.by_component["dram"])
    # Leakage power scales with V, and a cycle at 100 MHz lasts 4x longer than at 400 MHz.
    assert e_lo.leakage_pj == pytest.approx(e_ref.leakage_pj * (0.6 / 0.9) * 4)
    assert e_lo.seconds == pytest.approx(4 * e_ref.seconds)


def test_sparsity_saves_on_chip_energy(runs):
    cfg, prep, r = runs
    d, a = _e(cfg, prep, r["dense"]), _e(cfg, prep, r["all"])
    assert a.on_chip_pj < d.on_chip_pj
    assert a.by_component["tc_mul"] < 0.6 * d.by_component["tc_mul"]


def test_tflops_per_w_units():
    # 1e12 MACs = 2e12 FLOP in 1 J (1e12 pJ) -> 2 TFLOPS/W.
    assert tflops_per_w(1e12, 1e12) == pytest.approx(2.0)


def test_rne_rounding_has_no_prng_energy(runs):
    cfg, prep, r = runs
    rne = cfg.model_copy(update={"sru": cfg.sru.model_copy(update={"variant": "rne"})})
    t = r["dense"]
    sr, plain = _e(cfg, prep, t), _e(rne, prep, t)
    assert plain.by_component["sru"] < sr.by_component["sru"]
    assert t.events["sru_rounds"] > 0


def test_tensor_bits_rounding_has_no_prng_energy(runs):
    """`tensor_bits` takes the neighbour lane's discarded bits: SR without a PRNG step."""
    cfg, prep, r = runs
    sru = cfg.sru.model_copy(update={"random_source": "tensor_bits"})
    tb = cfg.model_copy(update={"sru": sru})
    rne = cfg.model_copy(update={"sru": cfg.sru.model_copy(update={"variant": "rne"})})
    t = r["dense"]
    sr, own, plain = _e(cfg, prep, t), _e(tb, prep, t), _e(rne, prep, t)
    assert own.by_component["sru"] == pytest.approx(plain.by_component["sru"])
    assert own.by_component["sru"] < sr.by_component["sru"]
