"""Policy `dynamic`'s work packer: how it cuts a tile's work into the cores' chunks and what
its run measuring costs (`tensor_core._dynamic_work`, `tensor_core.packer_runs_per_cycle`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from isa.compiler import compile_graph
from simulator.config import load_config, provenance
from simulator.timing import masks_from_trace, prepare
from simulator.timing.model import tc_work
from simulator.timing.tensor_core import (
    LayerDesc,
    OpTiles,
    SparsityView,
    TcGeometry,
    _dynamic_work,
    bwd_work,
    wgr_work,
)
from workloads.graph import graph_for
from workloads.trace import synthesize

GEO = TcGeometry(n_tc=4, lanes=16, dp=8)
CG, GI, PIPE = 16, 8, 4


def _balanced(w) -> np.ndarray:
    return -(-w.lane_steps // (GEO.n_tc * GEO.lanes))


def test_chunks_carry_equal_total_work_not_equal_busiest_lanes():
    """One lane group shared by the 4 cores, 8 runs of 10 items: runs 0-3 keep all 16 lanes
    busy, runs 4-7 lane 0 only; every item's busiest lane costs the same. Cut by busiest
    lanes, cores 0-1 took runs 0-3 (16 lanes x 200 steps each) and cores 2-3 the rest (200
    steps on one lane); cut by total lane steps each core gets a quarter of the work, and
    with free reloads its lanes share it: within one item of the balanced bound."""
    s = np.zeros((1, 8, GEO.lanes), np.int64)
    s[0, :4, :] = 10
    s[0, 4:, 0] = 10
    n = np.full((1, 8), 10)
    steps, extra, _plan, _moved = _dynamic_work(n, s, np.zeros(8, np.int64), 4, GEO, 0, 0, 1)
    bound = -(-(n[0] * s[0].sum(axis=1)).sum() // (GEO.n_tc * GEO.lanes))
    assert steps[0] <= bound + 10  # one item for the cut on whole items
    assert extra[0] == 0


def test_wu_tile_with_lasso_skewed_lanes_comes_near_the_balanced_bound():
    """A 16-channel WU tile (one lane group, the 4 cores share it), as in ResNet-20's stage 1
    under Lasso: output channels 6 and 15 dense, 0, 3, 7, 14 half dense, the rest pruned.
    `static` waits for lane 6; `dynamic` ends within the balanced bound plus one helper's
    reload (the dY row of the tile's pixels, plus the pipeline) plus two items (the chunk and
    the helpers' pieces end on whole items)."""
    d = LayerDesc(16, 16, 16, 16, 3, 3, 1, 1, False, True)
    wg = np.zeros((16, 2), bool)
    wg[[0, 3, 7, 14], 0] = True
    wg[[6, 15]] = True
    z = np.zeros(1, np.int64)
    t = OpTiles(d, 16, 16, 16, z, z, z, z)
    st, dy = (
        wgr_work(t, SparsityView(GEO, wg, GI, CG, p, PIPE), None) for p in ("static", "dynamic")
    )
    item = -(-16 * 16 // GEO.dp)  # one (c, tap) output: the tile's 256 pixels, 8 per step
    reload = item + PIPE
    assert st.max_steps[0] > 3 * _balanced(st)[0]
    assert (dy.lane_steps == st.lane_steps).all() and (dy.useful_macs == st.useful_macs).all()
    assert _balanced(dy)[0] <= dy.max_steps[0] <= _balanced(dy)[0] + reload + 2 * item


def _gated_bp(runs_per_cycle: int):
    """A gated 16x16 BP tile (one lane group of input channels, 256 dY pixels = 256 runs)
    with Lasso-skewed input channels, so the packer plans its lanes."""
    rng = np.random.default_rng(7)
    d = LayerDesc(16, 16, 16, 16, 3, 3, 1, 1, True, True)
    gate = rng.random((2, 1, 16, 16)) < 0.6
    wg = np.zeros((16, 2), bool)
    wg[:, 0] = True
    wg[3, 1] = True
    z = np.zeros(2, np.int64)
    t = OpTiles(d, 16, 16, 16, z, z, z, np.arange(2))
    return bwd_work(t, SparsityView(GEO, wg, GI, CG, "dynamic", PIPE, runs_per_cycle), gate)


def test_runs_per_cycle_sets_the_packers_measuring_only():
    """The packer measures `runs_per_cycle` runs per cycle: 256 runs cost 256 cycles at one
    run per cycle (the former model, still `packer_runs_per_cycle: 1`) and 16 at one
    mask-buffer word per cycle; the plan itself (64 lanes + 4 descriptors), the lanes' work
    and the packer's decisions do not change."""
    one, word = _gated_bp(1), _gated_bp(16)
    lane_plan = GEO.n_tc * (GEO.lanes + 1)
    assert (one.plan == 256 + lane_plan).all()  # it plans: the tile is skewed
    assert (word.plan == 16 + lane_plan).all()
    assert (one.overhead - word.overhead == 240).all()
    for f in ("max_steps", "lane_steps", "useful_macs", "reload_bytes"):
        assert (getattr(one, f) == getattr(word, f)).all(), f


def test_packer_runs_per_cycle_is_an_assumed_parameter(tmp_path: Path):
    ref28 = load_config("ref28")
    assert ref28.tensor_core.packer_runs_per_cycle == ref28.buffers.mask.word_bytes == 16
    info = {p.path: p for p in provenance(ref28)}["tensor_core.packer_runs_per_cycle"]
    assert info.provenance == "assumed" and info.source
    f = tmp_path / "one.yaml"
    f.write_text("extends: ref28\ntensor_core: {packer_runs_per_cycle: 1}\n")
    assert load_config(f).tensor_core.packer_runs_per_cycle == 1
    f.write_text("extends: ref28\ntensor_core: {packer_runs_per_cycle: 0}\n")
    with pytest.raises(Exception, match="packer_runs_per_cycle"):
        load_config(f)


def test_the_configured_runs_per_cycle_reaches_the_packer():
    """VGG-7 (batch 2, realistic masks) in mode `all`: the same lane work with 1 or 16 runs
    per cycle, and less packer time with 16 wherever a tile has more than one run."""
    cfg = load_config("ref28")
    g = graph_for("vgg7")
    prep = prepare(compile_graph(g, cfg, 2), cfg)
    t = synthesize(g, {"gate": 0.4, "weight_group": 0.5, "grad_skip": 0.5}, batch=2, seed=3)
    masks = masks_from_trace(t)
    tc = cfg.tensor_core.model_copy(update={"packer_runs_per_cycle": 1})
    one = prepare(prep.compiled, cfg.model_copy(update={"tensor_core": tc}))
    a, b = tc_work(one, masks, "all"), tc_work(prep, masks, "all")
    plans = [(x.plan, y.plan) for x, y in zip(a, b, strict=True) if x.plan.any()]
    assert plans
    assert all((x.max_steps == y.max_steps).all() for x, y in zip(a, b, strict=True))
    assert all((p16 <= p1).all() for p1, p16 in plans)
    assert sum(int((p1 - p16).sum()) for p1, p16 in plans) > 0
