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
        for q in range(p0 * d.ow, (p0 + pn) * d.ow):
            if gate is not None and not gate[img, k // CG, q // d.ow, q % d.ow]:
                continue
            gi, lane = divmod(i, GEO.lanes)
            core = (gi % GEO.n_tc, 0) if share == 1 else (gi, q % share)
            key = (core, lane)
            lane_time[key] = lane_time.get(key, 0) + -(-nnz // GEO.dp) * d.taps
            useful += nnz * d.taps
    return max(lane_time.values(), default=0), sum(lane_time.values()), useful


def ref_bwd(d, kn, cn, pn, k0, c0, p0, img, wg, gate):
    _groups, share = _cores(cn)
    lane_time: dict[tuple, int] = {}
    useful = 0
    for i in range(cn):
        c = c0 + i
        for q in range(p0 * d.ow, (p0 + pn) * d.ow):
            nnz = 0
            for k in range(k0, k0 + kn):
                if wg is not None and not wg[k, c // GI]:
                    continue
                if gate is not None and not gate[img, k // CG, q // d.ow, q % d.ow]:
                    continue
                nnz += 1
            gi, lane = divmod(i, GEO.lanes)
            core = (gi % GEO.n_tc, 0) if share == 1 else (gi, q % share)
            key = (core, lane)
            lane_time[key] = lane_time.get(key, 0) + -(-nnz // GEO.dp) * d.taps
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
