"""Tensor-core work from masks against a brute-force per-lane reference of the documented
lane mapping (one lane at a time, one pixel at a time)."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.timing.tensor_core import (
    GateCounts,
    LayerDesc,
    OpTiles,
    SparsityView,
    TcGeometry,
    bwd_work,
    fwd_work,
    wgr_work,
)

GEO = TcGeometry(n_tc=4, lanes=16, dp=8)
CG, GI = 16, 8


def _cores(n_items: int):
    """lane -> (core, partition) list per item index, as documented."""
    groups = -(-n_items // GEO.lanes)
    share = 1 if groups >= GEO.n_tc else GEO.n_tc // groups
    return groups, share


def ref_fwd(d, kn, cn, pn, k0, c0, p0, img, wg, gate):
    _groups, share = _cores(kn)
    lane_time: dict[tuple, int] = {}
    useful = 0
    for i in range(kn):
        k = k0 + i
        nnz = sum(1 for c in range(c0, c0 + cn) if wg is None or wg[k, c // GI])
        # a tap's channels go in chunks of the dp-aligned blocks; all-zero chunks are skipped
        used = {c // GEO.dp for c in range(c0, c0 + cn) if wg is None or wg[k, c // GI]}
        for q in range(p0 * d.ow, (p0 + pn) * d.ow):
            if gate is not None and not gate[img, k // CG, q // d.ow, q % d.ow]:
                continue
            gi, lane = divmod(i, GEO.lanes)
            core = (gi % GEO.n_tc, 0) if share == 1 else (gi, q % share)
            key = (core, lane)
            lane_time[key] = lane_time.get(key, 0) + len(used) * d.taps
            useful += nnz * d.taps
    return max(lane_time.values(), default=0), sum(lane_time.values()), useful


def ref_bwd(d, kn, cn, pn, k0, c0, p0, img, wg, gate):
    _groups, share = _cores(cn)
    lane_time: dict[tuple, int] = {}
    useful = 0
    for i in range(cn):
        c = c0 + i
        for q in range(p0 * d.ow, (p0 + pn) * d.ow):
            per_seg: dict[int, int] = {}  # compacted k per gate group (one segment ungated)
            for k in range(k0, k0 + kn):
                if wg is not None and not wg[k, c // GI]:
                    continue
                if gate is not None and not gate[img, k // CG, q // d.ow, q % d.ow]:
                    continue
                seg = k // CG if gate is not None else 0
                per_seg[seg] = per_seg.get(seg, 0) + 1
            nnz = sum(per_seg.values())
            steps = sum(-(-n // GEO.dp) for n in per_seg.values())
            gi, lane = divmod(i, GEO.lanes)
            core = (gi % GEO.n_tc, 0) if share == 1 else (gi, q % share)
            key = (core, lane)
            lane_time[key] = lane_time.get(key, 0) + steps * d.taps
            useful += nnz * d.taps
    return max(lane_time.values(), default=0), sum(lane_time.values()), useful


def ref_wgr(d, kn, cn, pn, k0, c0, p0, img, wg, gate):
    _groups, share = _cores(kn)
    lane_time: dict[tuple, int] = {}
    useful = 0
    for i in range(kn):
        k = k0 + i
        npix = sum(
            1
            for q in range(p0 * d.ow, (p0 + pn) * d.ow)
            if gate is None or gate[img, k // CG, q // d.ow, q % d.ow]
        )
        for ci in range(cn):
            if wg is not None and not wg[k, (c0 + ci) // GI]:
                continue
            for tap in range(d.taps):
                gi, lane = divmod(i, GEO.lanes)
                item = tap * cn + ci
                core = (gi % GEO.n_tc, 0) if share == 1 else (gi, item % share)
                key = (core, lane)
                lane_time[key] = lane_time.get(key, 0) + -(-npix // GEO.dp)
                useful += npix
    return max(lane_time.values(), default=0), sum(lane_time.values()), useful


CASES = [  # (C, K, H, kernel, kn, cn, pn, k0, c0, p0)
    (16, 16, 6, 3, 16, 16, 3, 0, 0, 2),  # one lane group: 4 cores split the pixels
    (32, 48, 4, 3, 48, 24, 4, 0, 8, 0),  # 3 groups: share 1, one core idles
    (64, 144, 3, 1, 144, 64, 3, 0, 0, 0),  # 9 groups over 4 cores (sums per core)
    (24, 40, 5, 3, 20, 16, 2, 16, 8, 1),  # partial lane group, offsets
    (16, 32, 4, 3, 32, 12, 2, 0, 4, 1),  # channels from inside an aligned block (a cond pass)
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("use_w", [False, True])
@pytest.mark.parametrize("use_g", [False, True])
def test_work_matches_reference(case, use_w, use_g):
    C, K, H, ker, kn, cn, pn, k0, c0, p0 = case
    rng = np.random.default_rng(hash((case, use_w, use_g)) % 2**32)
    d = LayerDesc(C, K, H, H, ker, ker, 1, ker // 2, use_g, use_w)
    B = 3
    gate = rng.random((B, -(-K // CG), d.oh, d.ow)) < 0.4 if use_g else None
    # Skewed weight groups: per output channel its own density, so lanes differ.
    dens = rng.random(K)[:, None]
    wg = rng.random((K, -(-C // GI))) < dens if use_w else None
    img = np.array([0, 2, 1, 2])
    k0s, c0s, p0s = (np.full(4, v) for v in (k0, c0, p0))
    gc = GateCounts(gate) if gate is not None else None
    got = {
        "fwd": fwd_work(
            OpTiles(d, kn, cn, pn, k0s, c0s, p0s, img), SparsityView(GEO, wg, GI, CG), gc
        ),
        "bwd": bwd_work(
            OpTiles(d, kn, cn, pn, k0s, c0s, p0s, img), SparsityView(GEO, wg, GI, CG), gate
        ),
        "wgr": wgr_work(
            OpTiles(d, kn, cn, pn, k0s, c0s, p0s, img), SparsityView(GEO, wg, GI, CG), gc
        ),
    }
    refs = {"fwd": ref_fwd, "bwd": ref_bwd, "wgr": ref_wgr}
    for name, ref in refs.items():
        for e, im in enumerate(img):
            mx, tot, useful = ref(d, kn, cn, pn, k0, c0, p0, im, wg, gate)
            w = got[name]
            assert (w.max_steps[e], w.lane_steps[e], w.useful_macs[e]) == (mx, tot, useful), name


def test_dense_fwd_is_macs_over_peak():
    d = LayerDesc(64, 64, 8, 8, 3, 3, 1, 1, False, False)
    z = np.zeros(1, np.int64)
    w = fwd_work(OpTiles(d, 64, 64, 8, z, z, z, z), SparsityView(GEO, None, GI, CG), None)
    macs = 64 * 64 * 64 * 9
    assert w.useful_macs[0] == macs
    assert w.max_steps[0] == macs // (GEO.n_tc * GEO.lanes * GEO.dp)


def test_busiest_lane_sets_the_time_not_the_average():
    """One dense output channel among empty ones: the tile lasts as long as that lane."""
    d = LayerDesc(64, 16, 8, 8, 3, 3, 1, 1, False, True)
    wg = np.zeros((16, 8), bool)
    wg[5] = True
    z = np.zeros(1, np.int64)
    dense = fwd_work(OpTiles(d, 16, 64, 8, z, z, z, z), SparsityView(GEO, None, GI, CG), None)
    sparse = fwd_work(OpTiles(d, 16, 64, 8, z, z, z, z), SparsityView(GEO, wg, GI, CG), None)
    assert sparse.lane_steps[0] * 16 == dense.lane_steps[0]  # 1/16 of the work ...
    assert sparse.max_steps[0] == dense.max_steps[0]  # ... and no time saved


# --- lane work distribution: `static` (above) against `dynamic` (tensor_core._dynamic_work) ---


def _both(fn, d, kn, cn, pn, wg, gate, e=1):
    """fn's work under both policies on tile (k0, c0, p0) = 0 of images 0..e-1."""
    z = np.zeros(e, np.int64)
    tiles = OpTiles(d, kn, cn, pn, z, z, z, np.arange(e))
    g = gate if fn is bwd_work else (GateCounts(gate) if gate is not None else None)
    return tuple(
        fn(tiles, SparsityView(GEO, wg, GI, CG, policy, 4), g) for policy in ("static", "dynamic")
    )


def _balanced(w) -> np.ndarray:
    return -(-w.lane_steps // (GEO.n_tc * GEO.lanes))


@pytest.mark.parametrize("fn", [fwd_work, bwd_work, wgr_work])
def test_dynamic_beats_static_when_one_core_owns_all_work(fn):
    """64 channels = 4 lane groups, one per core. FP, WU (lanes = output channels): only
    group 0's gates are open; BP (lanes = input channels): only input channels 0-7 have
    nonzero weight groups. Under `static` one core does all the work; `dynamic` spreads it
    (paying its packer and reloads), stays above the balanced bound, same MACs."""
    bp = fn is bwd_work
    d = LayerDesc(64, 64, 8, 8, 3, 3, 1, 1, not bp, bp)
    gate = np.zeros((1, 4, 8, 8), bool)
    gate[0, 0] = True
    wg = np.zeros((64, 8), bool)
    wg[:, 0] = True
    st, dy = _both(fn, d, 64, 64, 8, wg if bp else None, None if bp else gate)
    assert (dy.lane_steps == st.lane_steps).all() and (dy.useful_macs == st.useful_macs).all()
    assert (st.overhead == 0).all() and (st.reload_bytes == 0).all()
    assert (dy.max_steps + dy.overhead < st.max_steps).all()
    assert (dy.max_steps >= _balanced(dy)).all()
    assert st.max_steps[0] > 2 * _balanced(st)[0]  # static really is imbalanced here


@pytest.mark.parametrize("fn", [fwd_work, bwd_work, wgr_work])
def test_dynamic_lanes_share_a_dense_channel(fn):
    """One dense output channel among empty ones (Lasso): `static` waits for that lane,
    `dynamic` lets the idle lanes take parts of it, each paying a reload of its operands."""
    if fn is bwd_work:  # lanes = input channels: channels 0-7 dense, 8-15 empty
        d = LayerDesc(16, 64, 16, 16, 3, 3, 1, 1, False, True)
        wg = np.zeros((64, 2), bool)
        wg[:, 0] = True
        st, dy = _both(fn, d, 64, 16, 16, wg, None)
    else:
        d = LayerDesc(64, 16, 16, 16, 3, 3, 1, 1, False, True)
        wg = np.zeros((16, 8), bool)
        wg[5] = True
        st, dy = _both(fn, d, 16, 64, 16, wg, None)
    assert (dy.useful_macs == st.useful_macs).all()
    assert (dy.max_steps + dy.overhead < st.max_steps).all()
    assert (dy.max_steps >= _balanced(dy)).all()
    assert (dy.reload_bytes > 0).all()


@pytest.mark.parametrize("fn", [fwd_work, bwd_work, wgr_work])
def test_dynamic_equals_static_on_dense_masks(fn):
    """All gates open, every weight group nonzero: nothing to rebalance; the same busiest
    lane, steps and MACs, no reloads; the static busiest lane is the balanced bound, so the
    packer measures the runs and plans no lane: the tile pays the measuring only."""
    d = LayerDesc(64, 64, 8, 8, 3, 3, 1, 1, True, True)
    gate = np.ones((2, 4, 8, 8), bool)
    wg = np.ones((64, 8), bool)
    st, dy = _both(fn, d, 64, 64, 4, wg, gate, e=2)
    for f in ("max_steps", "lane_steps", "useful_macs"):
        assert (getattr(dy, f) == getattr(st, f)).all(), f
    assert (dy.reload_bytes == 0).all()
    assert (dy.overhead == dy.plan).all() and (dy.plan >= 1).all()  # the runs measured


def test_packer_plans_lanes_only_where_it_can_gain():
    """The packer plans the lanes only where the static busiest lane exceeds the balanced
    bound by more than the lane plan costs: a skewed tile pays the plan (and gains), the same
    layer with uniform masks pays the measuring only."""
    lane_plan = GEO.n_tc * (GEO.lanes + 1)
    d = LayerDesc(64, 16, 16, 16, 3, 3, 1, 1, False, True)
    skew = np.zeros((16, 8), bool)
    skew[5] = True
    st, dy = _both(fwd_work, d, 16, 64, 16, skew, None)
    assert (dy.plan >= lane_plan).all() and (dy.max_steps + dy.overhead < st.max_steps).all()
    st, dy = _both(fwd_work, d, 16, 64, 16, np.ones((16, 8), bool), None)
    assert (dy.plan == 1).all()  # one run (one lane group, all pixels alike), measured
    assert (dy.max_steps == st.max_steps).all() and (dy.overhead == 1).all()


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("fn", [fwd_work, bwd_work, wgr_work])
def test_dynamic_never_below_balanced_nor_above_static_plus_plan(case, fn):
    """Random skewed masks: same MACs and lane steps; the busiest lane stays within
    [balanced bound, static] (the packer keeps the static plan where its own is slower)."""
    C, K, H, ker, kn, cn, pn, k0, c0, p0 = case
    rng = np.random.default_rng(sum(case))
    d = LayerDesc(C, K, H, H, ker, ker, 1, ker // 2, True, True)
    gate = rng.random((3, -(-K // CG), d.oh, d.ow)) < rng.random((1, -(-K // CG), 1, 1))
    wg = rng.random((K, -(-C // GI))) < rng.random(K)[:, None]
    img = np.array([0, 2, 1])
    k0s, c0s, p0s = (np.full(3, v) for v in (k0, c0, p0))
    tiles = OpTiles(d, kn, cn, pn, k0s, c0s, p0s, img)
    g = gate if fn is bwd_work else GateCounts(gate)
    st, dy = (fn(tiles, SparsityView(GEO, wg, GI, CG, p, 4), g) for p in ("static", "dynamic"))
    assert (dy.useful_macs == st.useful_macs).all() and (dy.lane_steps == st.lane_steps).all()
    assert (dy.max_steps >= _balanced(dy)).all() and (dy.max_steps <= st.max_steps).all()


@pytest.mark.parametrize(("cg", "kk", "kn"), [(8, 0, 48), (16, 8, 40), (8, 8, 20)])
def test_dynamic_with_gate_groups_narrower_or_offset_from_lane_groups(cg, kk, kn):
    """Gate groups of 8 channels, or tiles starting mid lane group: the FP packer then costs
    every (lane group, pixel) item on its own; the invariants still hold."""
    rng = np.random.default_rng(cg + kk + kn)
    d = LayerDesc(32, 64, 6, 6, 3, 3, 1, 1, True, True)
    gate = rng.random((3, 64 // cg, 6, 6)) < rng.random((1, 64 // cg, 1, 1))
    wg = rng.random((64, 4)) < rng.random(64)[:, None]
    e = 3
    t = OpTiles(d, kn, 16, 3, np.full(e, kk), np.full(e, 8), np.array([0, 2, 3]), np.arange(e))
    for fn, g in ((fwd_work, GateCounts(gate)), (wgr_work, GateCounts(gate)), (bwd_work, gate)):
        st, dy = (fn(t, SparsityView(GEO, wg, GI, cg, p, 4), g) for p in ("static", "dynamic"))
        assert (st.useful_macs == dy.useful_macs).all() and (st.lane_steps == dy.lane_steps).all()
        assert (dy.max_steps >= _balanced(dy)).all() and (dy.max_steps <= st.max_steps).all()


# --- the packer kernel against a vectorised numpy statement of the same policy ---------------


def _ref_dynamic_work(n, s, owner, share, geo, cost, lane_bytes, runs_per_cycle):
    """`tensor_core._dynamic_work` written with whole-array numpy (the kernel's earlier form),
    kept as the oracle of the numba kernel."""
    e, r = n.shape
    s = np.broadcast_to(s, (e, r, s.shape[-1]))
    m = s.sum(axis=2)  # an item weighs all its lanes' steps
    wc = np.concatenate([np.zeros((e, 1), np.int64), np.cumsum(n * m, axis=1)], axis=1)
    nc = np.concatenate([np.zeros((e, 1), np.int64), np.cumsum(n, axis=1)], axis=1)
    ls = np.concatenate(
        [np.zeros((e, 1, s.shape[2]), np.int64), np.cumsum(n[:, :, None] * s, axis=1)], axis=1
    )
    rows = np.arange(e)
    cum, item = [np.zeros((e, s.shape[2]), np.int64)], [np.zeros(e, np.int64)]
    for t in range(1, geo.n_tc):
        target = -(-t * wc[:, -1] // geo.n_tc)
        ri = np.minimum((wc[:, 1:] < target[:, None]).sum(axis=1), r - 1)
        mr = m[rows, ri]
        o = np.where(mr > 0, -(-(target - wc[rows, ri]) // np.maximum(mr, 1)), 0)
        o = np.minimum(o, n[rows, ri])
        cum.append(ls[rows, ri] + o[:, None] * s[rows, ri])
        item.append(nc[rows, ri] + o)
    cum.append(ls[:, -1])
    item.append(nc[:, -1])
    w = np.stack([cum[t + 1] - cum[t] for t in range(geo.n_tc)], axis=1)
    it = np.stack(item, axis=1)
    has = np.minimum(it[:, 1:, None], nc[:, None, 1:]) > np.maximum(
        it[:, :-1, None], nc[:, None, :-1]
    )
    big = (s.max(axis=2) * (n > 0)).max(axis=1)
    lo = -(-w.sum(axis=2) // w.shape[2])
    top = w.max(axis=2)
    hi = top.copy()
    while np.any(lo < hi):
        mid = (lo + hi) // 2
        ok = np.clip(w - mid[..., None], 0, None).sum(axis=2) <= np.clip(
            mid[..., None] - w - cost, 0, None
        ).sum(axis=2)
        hi, lo = np.where(ok, mid, hi), np.where(ok, lo, mid + 1)
    finish = np.minimum(top, lo + big[:, None])
    excess = np.clip(w - lo[..., None], 0, None).sum(axis=2)
    room = -np.sort(-np.clip(lo[..., None] - w - cost, 0, None), axis=2).cumsum(axis=2)
    pieces = np.where(finish < top, (room < excess[..., None]).sum(axis=2) + 1, 0)
    pieces = np.minimum(pieces, w.shape[2])
    groups = int(owner.max()) + 1
    hasg = np.stack([has[:, :, owner == g].any(axis=2) for g in range(groups)], axis=2)
    t_ = np.arange(geo.n_tc)[:, None]
    g_ = np.arange(groups)[None, :]
    owned = (g_ % geo.n_tc == t_) if share == 1 else ((t_ // share == g_) & (t_ < groups * share))
    foreign = (hasg & ~owned[None]).sum(axis=2)
    time = finish + foreign * cost
    steps = finish.max(axis=1)
    plan = np.full(e, -(-r // runs_per_cycle) + geo.n_tc * geo.lanes + geo.n_tc)
    moved = (foreign.sum(axis=1) * geo.lanes + pieces.sum(axis=1)) * lane_bytes
    return np.stack([steps, time.max(axis=1) - steps, plan, moved])


@pytest.mark.parametrize("seed", range(6))
def test_packer_kernel_matches_numpy_statement(seed):
    from simulator.timing.tensor_core import _dynamic_work

    rng = np.random.default_rng(seed)
    groups = int(rng.integers(1, 9))
    per = int(rng.integers(1, 5))
    owner = np.repeat(np.arange(groups), per)
    e, r = 7, groups * per
    n = rng.integers(0, 6, (e, r)) * (rng.random((e, r)) < 0.8)
    s = rng.integers(0, 30, (e if seed % 2 else 1, r, GEO.lanes)) * (
        rng.random((1, r, GEO.lanes)) < 0.6
    )
    share = 1 if groups >= GEO.n_tc else GEO.n_tc // groups
    rpc = (1, 4, 16)[seed % 3]
    got = _dynamic_work(n, s, owner, share, GEO, 5, 2, 36, rpc)
    want = _ref_dynamic_work(n, s, owner, share, GEO, 7, 36, rpc)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("cg, kg", [(1, 1), (4, 6), (2, 16)])
def test_grouped_bwd_lanes_own_the_groups_dx_channels(cg, kg):
    """A grouped conv's BP tile (isa.spec): the lanes own the (kn / kg) cg dX channels of its
    groups and each reduces over its group's kg outputs, ceil(kg / dp) steps per tap and
    pixel; a depthwise 64-channel tile so takes one step per tap and pixel, not eight."""
    groups = 8 if kg > 1 else 64
    d = LayerDesc(cg * groups, kg * groups, 8, 8, 3, 3, 1, 1, False, False, groups)
    kn = d.k
    z = np.zeros(2, np.int64)
    w = bwd_work(OpTiles(d, kn, cg, 8, z, z, z, z), SparsityView(GEO, None, GI, CG), None)
    nch = kn // kg * cg  # dX channels of the tile
    per_lane = 8 * 8 * 9 * -(-kg // GEO.dp)  # pixels x taps x steps, before the cores split
    lane_groups = -(-nch // GEO.lanes)
    share = 1 if lane_groups >= GEO.n_tc else GEO.n_tc // lane_groups
    assert (w.useful_macs == 8 * 8 * 9 * kn * cg).all()
    assert (w.lane_steps == nch * per_lane).all()
    assert (w.max_steps == -(-per_lane // share) * -(-lane_groups // (GEO.n_tc // share))).all()
