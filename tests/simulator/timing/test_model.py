"""The whole timing model on a small compiled program (VGG-7, batch 2)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from isa.compiler import compile_graph
from simulator.config import load_config
from simulator.timing import MODES, SimulationError, masks_from_trace, prepare, simulate
from workloads.graph import graph_for
from workloads.trace import step_macs, synthesize

B = 2


@pytest.fixture(scope="module")
def setup():
    cfg = load_config("ref28")
    g = graph_for("vgg7")
    prep = prepare(compile_graph(g, cfg, B), cfg)
    return cfg, g, prep


def _masks(g, gate=0.4, wg=0.5, skip=0.5, seed=3, skew="uniform"):
    t = synthesize(
        g, {"gate": gate, "weight_group": wg, "grad_skip": skip}, batch=B, seed=seed, skew=skew
    )
    return t, masks_from_trace(t)


@pytest.mark.parametrize("gate", [1.0, 0.4])
def test_executed_work_matches_trace_accounting(setup, gate):
    """The MACs the lanes execute in mode `all` are exactly the trace accounting's sparse MACs
    (gates, weight groups and skipped images; gated outputs have no BP/WU work): two
    independent counts."""
    _cfg, g, prep = setup
    t, m = _masks(g, gate=gate, wg=0.45, skip=0.5)
    it = t.iterations[0]
    # The compiler does not mark the first conv (3 input channels) weight-sparse: the
    # accounting must see it dense too.
    wg = dict(it.wgroups)
    wg["features.conv1"] = np.ones_like(wg["features.conv1"])
    m = dataclasses.replace(m, wgroups=wg)
    sm = step_macs(g, B, it.gates, t.gate_layers, wg, t.group_in, it.skip)
    res = simulate(prep, m, "all")
    assert any("features.conv1" in n for n in res.notes)
    assert res.dense_macs == sm.dense
    assert res.useful_macs == sm.sparse


def test_modes_attribute_the_savings(setup):
    _cfg, g, prep = setup
    _, m = _masks(g)
    r = {mode: simulate(prep, m, mode) for mode in MODES}
    assert r["dense"].useful_macs == r["dense"].dense_macs
    for mode in ("gating", "weight_sparsity", "grad_skip"):
        assert r[mode].useful_macs < r["dense"].useful_macs
        assert r[mode].cycles < r["dense"].cycles
        assert r["all"].useful_macs < r[mode].useful_macs
    assert r["all"].cycles < min(r[m].cycles for m in ("gating", "weight_sparsity", "grad_skip"))
    # The tensor cores save less time than work: memory, non-GEMM work and imbalance stay.
    assert r["dense"].cycles / r["all"].cycles < r["all"].dense_macs / r["all"].useful_macs


def test_dense_masks_cost_metadata_only(setup):
    _cfg, g, prep = setup
    _, m = _masks(g, gate=1.0, wg=1.0, skip=0.0)
    dense, allm = simulate(prep, m, "dense"), simulate(prep, m, "all")
    assert allm.useful_macs == dense.useful_macs
    assert allm.cycles >= dense.cycles  # mask reads are overhead when nothing is skipped


def test_accounting_is_consistent(setup):
    _cfg, g, prep = setup
    _, m = _masks(g)
    r = simulate(prep, m, "all")
    for u in r.unit_busy:
        assert r.unit_busy[u] + sum(r.unit_stall[u].values()) + r.unit_idle[u] >= r.cycles - 1
    assert r.unit_busy["tc"] <= r.cycles
    assert sum(row["cycles"] for row in r.layer_phase) == pytest.approx(r.cycles, rel=0.02)
    assert all(0 <= v <= 1.0 for v in r.timeline["tc"])


def test_skipping_every_image_removes_bp_and_wu_tensor_work(setup):
    _cfg, g, prep = setup
    _, m = _masks(g, gate=1.0, wg=1.0, skip=0.0)
    m_all = dataclasses.replace(m, skip=np.ones(B, bool))
    r = simulate(prep, m_all, "grad_skip")
    fp_macs = sum(row["useful_macs"] for row in r.layer_phase if row["phase"] == "fp")
    assert r.useful_macs == fp_macs


def test_batch_mismatch_is_an_error(setup):
    _cfg, g, prep = setup
    t = synthesize(g, {}, batch=B + 1, seed=0)
    with pytest.raises(SimulationError, match="batch"):
        simulate(prep, masks_from_trace(t), "all")
    with pytest.raises(SimulationError, match="unknown mode"):
        simulate(prep, _masks(g)[1], "fast")


def test_lane_distribution_policies_same_work_dense_equal(setup):
    """`dynamic` lane distribution (an assumed design alternative): the same executed MACs
    and lane steps in every mode, the same dense step (no masks: nothing to pack), and a
    shorter step with masks (VGG-7's Lasso-skewed channels)."""
    cfg, g, ref = setup

    def prepared(policy):
        tc = cfg.tensor_core.model_copy(update={"lane_distribution": policy})
        return prepare(ref.compiled, cfg.model_copy(update={"tensor_core": tc}))

    prep, dyn = prepared("static"), prepared("dynamic")
    _, m = _masks(g, skew="realistic")
    for mode in MODES:
        a, b = simulate(prep, m, mode), simulate(dyn, m, mode)
        assert a.useful_macs == b.useful_macs, mode
        assert a.events["tc_lane_steps"] == b.events["tc_lane_steps"], mode
        if mode in ("dense", "grad_skip"):  # no masks read: the static assignment
            assert a.cycles == b.cycles, mode
    assert b.unit_busy["tc"] < a.unit_busy["tc"]


def test_packer_plans_ahead_once_the_masks_are_written(setup):
    """Policy `dynamic`: the packer's prelude of a tile (mask reads, plan) runs before the
    tile, during the previous tile or the cores' waits, but never before the last op that
    wrote masks before it has ended; behind the CGU (a conditional pass) it streams
    (`packer_streams_gates`, ref28): it may begin with the CGU, and ends after it."""
    _cfg, g, prep = setup
    _, m = _masks(g, skew="realistic")
    r = simulate(prep, m, "all", keep_times=True)
    start, end = r.times
    tc = prep.tc_pos[prep.mask_dep[prep.tc_pos] >= 0]
    assert (r.pre_start[tc] < start[tc]).any()
    dep = prep.mask_dep[tc]
    cgu = np.array([prep.sp.ops[i] == "cg.gate" for i in prep.stream.index[dep]])
    assert cgu.any() and not any(prep.sp.ops[i] == "sfu" for i in prep.stream.index[dep])
    assert (r.pre_start[tc][~cgu] >= end[dep[~cgu]]).all()
    assert (r.pre_start[tc][cgu] >= start[dep[cgu]]).all()
    assert (r.pre_start[tc][cgu] < end[dep[cgu]]).any()  # streamed
    assert (start[tc] >= end[dep]).all()  # the tile itself waits for its masks (tokens)


def test_double_buffered_outputs_hide_the_drain(setup):
    """`output_buffers: 2` (ref28): the SRUs drain a tile while the cores run the next. The
    same work and events as with one buffer; the cores' busy time loses the drain, the step
    is no longer; every tensor-core op with a drain releases the cores before it completes."""
    cfg, g, ref = setup

    def prepared(n):
        tc = cfg.tensor_core.model_copy(update={"output_buffers": n})
        return prepare(ref.compiled, cfg.model_copy(update={"tensor_core": tc}))

    one, two = prepared(1), prepared(2)
    _, m = _masks(g, skew="realistic")
    for mode in ("dense", "all"):
        a, b = simulate(one, m, mode), simulate(two, m, mode, keep_times=True)
        assert a.useful_macs == b.useful_macs and a.events == b.events, mode
        assert b.cycles <= a.cycles and b.unit_busy["tc"] < a.unit_busy["tc"], mode
        start, end = b.times
        tc = two.tc_pos
        fin = np.array([two.compiled.instructions[i].args["fin"] for i in two.stream.index[tc]])
        assert (b.released[tc] <= end[tc]).all()
        assert (b.released[tc][fin > 0] < end[tc][fin > 0]).any()
        # a tile never starts before the cores are released by the previous one
        assert (start[tc][1:] >= b.released[tc][:-1]).all()


def test_cgu_streams_behind_the_base_pass(setup):
    """`cgu.streams_base_sums` (ref28): every executed `cg.gate` is paired with the base pass
    just before it, which signals when it begins; the gate begins before the base pass ends
    and ends no earlier than `follow_lag` after it, the conditional pass after the gate. The
    same work and events as with the flag off; the step is shorter and the hazard check (the
    gate reads the base sums while they are written) finds nothing."""
    from simulator.timing.hazards import check

    cfg, g, on = setup
    cgu = cfg.cgu.model_copy(update={"streams_base_sums": False})
    off = prepare(on.compiled, cfg.model_copy(update={"cgu": cgu}))
    ops = np.array(on.sp.ops)[on.stream.index]
    gates = np.flatnonzero(ops == "cg.gate")
    assert len(gates) and (on.follow[gates] >= 0).all() and (off.follow < 0).all()
    base = on.follow[gates]
    assert (ops[base] == "tc.fwd").all() and on.early[base].all() and on.early.sum() == len(gates)
    _, m = _masks(g, skew="realistic")
    a, b = simulate(off, m, "all"), simulate(on, m, "all", keep_times=True)
    assert a.events == b.events and a.unit_busy["cgu"] == b.unit_busy["cgu"]
    assert b.cycles < a.cycles
    start, end = b.times
    assert (start[gates] < end[base]).all()
    assert (end[gates] >= end[base] + on.follow_lag[gates]).all()
    cond = gates + 1
    cond = np.array([c + np.flatnonzero(ops[c:] == "tc.fwd")[0] for c in cond])
    assert (start[cond] >= end[gates]).all()
    assert check(on, m, "all") == []


def test_skipped_images_work_is_not_worked_out(setup):
    """In modes with gradient skipping, `tc_work` works out BP/WU work only for the images
    that are not skipped (zeros for the others, which `_tc_costs` replaces anyway); for those
    it equals the work worked out for every image."""
    from simulator.timing.model import tc_work

    _cfg, g, prep = setup
    _, m = _masks(g, skip=0.5, seed=1, skew="realistic")
    assert m.skip.any() and not m.skip.all()
    every = dataclasses.replace(m, skip=np.zeros_like(m.skip))
    for op, a, b in zip(
        prep.tc_ops, tc_work(prep, m, "all"), tc_work(prep, every, "all"), strict=True
    ):
        keep = np.ones(len(op.img), bool) if op.op == "tc.fwd" else ~m.skip[op.img]
        for f in ("max_steps", "lane_steps", "useful_macs", "overhead", "plan"):
            x, y = getattr(a, f), getattr(b, f)
            assert np.array_equal(x[keep], y[keep]), (op.layer, op.op, f)
            assert not x[~keep].any(), (op.layer, op.op, f)
