"""Tensor-core time of one op from the actual masks: the lanes that own gated (pixel, channel
group) work or zero weight groups skip it, and a tile lasts as long as its busiest lane.

Lane mapping (an assumption of this model, documented in docs/simulator.md):
- `n_tc` cores x `lanes` dot-product units; each unit owns one output element stream and feeds
  its `dp_width`-wide tree with the step layouts of `isa.spec` (which the functional model
  computes bit for bit): a sparse gather front end skips what the masks say is zero.
- FP (`tc.fwd`): a lane owns an output channel k and reduces over (tap, input channel); per
  output pixel and tap it takes the chunks of the dp-aligned channel blocks and skips those
  whose weights are all in zero Lasso groups (`aligned_chunks_in_use`). BP (`tc.bwd`): a lane
  owns an input channel c and reduces over output channels k: the k whose weight group with
  c's is nonzero, compacted, per gate group, skipping gated groups: per dY pixel and tap
  the sum over ungated groups of ceil(nonzero k / dp_width) steps. WU (`tc.wgr`): a lane owns
  an output channel k and reduces over the tile's open pixels of its gate group, compacted
  (ceil(open / dp_width) steps); its (input channel, tap) outputs of zero groups are skipped
  entirely.
- Lanes come in groups of `lanes` consecutive channels. With at least `n_tc` lane groups in
  the tile, core t takes groups t, t + n_tc, ...; with fewer, every group is replicated on
  n_tc // groups cores, which split the pixels (FP, BP: flat pixel index modulo the split) or
  the (input channel, tap) outputs (WU: item tap x cn + c modulo the split, channel fastest)
  between them; left-over cores idle.
This is the `static` lane work distribution (`tensor_core.lane_distribution`). The assumed
alternative `dynamic` (`_dynamic_work`) packs each masked tile's work after its masks are read:
chunks of equal total lane work per core, lightly loaded lanes taking over parts of the busiest
lanes' work, with the packer's cycles and the operand reloads charged to the tile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from isa.layouts import aligned_chunks
from isa.program import DescriptorGeometry


@dataclass(frozen=True)
class LayerDesc(DescriptorGeometry):
    """A `layer` descriptor's geometry (see docs/isa.md)."""

    c: int
    k: int
    h: int
    w: int
    kh: int
    kw: int
    stride: int
    pad: int
    gate: bool
    wsparse: bool
    groups: int = 1

    def group_channels(self, kn: int, cn: int) -> int | None:
        """A grouped conv's tile of kn outputs (whole groups) and cn channels per group holds
        the input channels (and dX) of its kn / kg groups: that many; None if not grouped."""
        return kn // (self.k // self.groups) * cn if self.groups > 1 else None


@dataclass(frozen=True)
class TcGeometry:
    n_tc: int
    lanes: int
    dp: int


@dataclass(frozen=True)
class OpTiles:
    """The executed instances of one tensor-core op: its layer, tile sizes, and per instance
    the tile's first output channel, input channel, output row and its image."""

    d: LayerDesc
    kn: int
    cn: int
    pn: int
    k0: np.ndarray
    c0: np.ndarray
    p0: np.ndarray
    img: np.ndarray


@dataclass(frozen=True)
class SparsityView:
    """What the lanes see of the weight sparsity: the array geometry, the group mask (None =
    weight sparsity off) and the group shapes; the lane work-distribution policy (`static` or
    `dynamic`, see `_dynamic_work`), the pipeline depth a dynamic core pays per foreign group
    and the runs the dynamic packer measures per cycle."""

    geo: TcGeometry
    wg: np.ndarray | None
    group_in: int
    channel_group: int
    policy: str = "static"
    pipeline: int = 0
    runs_per_cycle: int = 1


@dataclass
class TcWork:
    """Per executed op: busiest lane's steps, all lanes' steps, nonzero products; and the
    dynamic policy's costs: extra cycles of the tile (packer scan, core descriptors, operand
    reloads beyond the busiest lane) and the stationary-operand bytes reloaded."""

    max_steps: np.ndarray
    lane_steps: np.ndarray
    useful_macs: np.ndarray
    overhead: np.ndarray | None = None
    reload_bytes: np.ndarray | None = None
    plan: np.ndarray | None = None  # the packer's cycles (part of overhead)


def _split(n_items: int, geo: TcGeometry) -> tuple[int, int]:
    """(lane groups, cores sharing one group)."""
    groups = -(-n_items // geo.lanes)
    share = 1 if groups >= geo.n_tc else geo.n_tc // groups
    return groups, share


def _busiest(work: np.ndarray, geo: TcGeometry, share: int) -> np.ndarray:
    """work (E, groups * lanes, share) lane-steps -> (E,) steps of the busiest lane."""
    e, n, _ = work.shape
    groups = n // geo.lanes
    w = work.reshape(e, groups, geo.lanes, share)
    if share == 1 and groups > geo.n_tc:
        pad = (-groups) % geo.n_tc
        if pad:
            w = np.concatenate([w, np.zeros((e, pad, geo.lanes, 1), w.dtype)], axis=1)
        w = w.reshape(e, -1, geo.n_tc, geo.lanes, 1).sum(axis=1)
    return w.reshape(e, -1).max(axis=1)


def _pad_lanes(x: np.ndarray, n: int, geo: TcGeometry) -> np.ndarray:
    """Pad axis 1 (channels) to whole lane groups with idle lanes."""
    groups = -(-n // geo.lanes)
    pad = groups * geo.lanes - n
    if pad:
        shape = list(x.shape)
        shape[1] = pad
        x = np.concatenate([x, np.zeros(shape, x.dtype)], axis=1)
    return x


class GateCounts:
    """Cumulative gate-bit counts of one layer: per image, channel group, pixel partition,
    over output rows; cached per partition count."""

    def __init__(self, gate: np.ndarray) -> None:
        self.gate = np.asarray(gate, bool)  # (B, G, OH, OW)
        self._cum: dict[int, np.ndarray] = {}

    def cum(self, share: int) -> np.ndarray:
        if share not in self._cum:
            self._cum[share] = _gate_cum(self.gate.view(np.uint8), share)  # (B, G, share, OH + 1)
        return self._cum[share]

    def rows(self, img, p0, pn: int, share: int) -> np.ndarray:
        """(E, G, share) gate bits set in rows [p0, p0 + pn) of image img."""
        c = self.cum(share)
        return c[img, :, :, p0 + pn] - c[img, :, :, p0]


@numba.njit(cache=True)
def _gate_cum(gate, share):  # pragma: no cover - numba
    """(B, G, share, OH + 1): gate bits set in rows [0, r) of each image and channel group,
    per pixel partition (flat pixel index modulo share)."""
    b_n, g_n, oh, ow = gate.shape
    c = np.zeros((b_n, g_n, share, oh + 1), np.int64)
    for b in range(b_n):
        for g in range(g_n):
            for r in range(oh):
                for j in range(share):
                    c[b, g, j, r + 1] = c[b, g, j, r]
                j = (r * ow) % share
                for x in range(ow):
                    c[b, g, j, r + 1] += gate[b, g, r, x]
                    j += 1
                    if j == share:
                        j = 0
    return c


def _static_pixels(p0: np.ndarray, pn: int, ow: int, share: int) -> np.ndarray:
    """(E, share) pixels of rows [p0, p0+pn) per partition (flat index modulo share)."""
    q0 = p0 * ow
    n = pn * ow
    j = np.arange(share)
    return (n - ((j[None, :] - q0[:, None]) % share) + share - 1) // share


def nonzero_channels(wg: np.ndarray | None, k0: int, kn: int, c0: int, cn: int, group_in: int):
    """(kn, cn) bool: weight (k, c) lies in a nonzero group (all True without a mask)."""
    if wg is None:
        return np.ones((kn, cn), bool)
    c = np.arange(c0, c0 + cn) // group_in
    return wg[k0 : k0 + kn][:, c]


def aligned_chunks_in_use(nz: np.ndarray, c0: int, dp: int) -> np.ndarray:
    """FP steps per tap of each lane: nz (kn, cn) nonzero weights of channels [c0, c0 + cn)
    in the chunks of `isa.layouts.aligned_chunks`; a lane skips the chunks whose weights are
    all in zero Lasso groups. (kn,)."""
    lay = aligned_chunks(c0, nz.shape[1], dp)
    chunk = np.empty(nz.shape[1], np.int64)
    chunk[lay[lay >= 0]] = np.flatnonzero(lay >= 0) // dp
    return sum(nz[:, chunk == b].any(axis=1).astype(np.int64) for b in np.unique(chunk))


def _empty_work(k0: np.ndarray, c0: np.ndarray) -> tuple[TcWork, np.ndarray]:
    """Zeroed work for each op instance, and the distinct (k0, c0) tiles among them."""
    e = len(k0)
    z = [np.zeros(e, np.int64) for _ in range(6)]
    # one key per (k0, c0): a 1-D unique is much cheaper than unique rows (axis=0)
    span = int(c0.max()) + 1 if e else 1
    keys = np.unique(np.asarray(k0, np.int64) * span + c0)
    return TcWork(*z), np.stack([keys // span, keys % span], 1)


def _owned(groups: int, geo: TcGeometry, share: int) -> np.ndarray:
    """(n_tc, groups) bool: core t holds lane group g under the static assignment."""
    t = np.arange(geo.n_tc)[:, None]
    g = np.arange(groups)[None, :]
    if share == 1:
        return g % geo.n_tc == t
    return (t // share == g) & (t < groups * share)


def _lane_items(x: np.ndarray, geo: TcGeometry) -> np.ndarray:
    """(E, n, R) per channel and item -> (E, groups, R, lanes), idle lanes padded."""
    x = _pad_lanes(x, x.shape[1], geo)
    e, n, r = x.shape
    return x.reshape(e, n // geo.lanes, geo.lanes, r).transpose(0, 1, 3, 2)


@numba.njit(cache=True)
def _sort_descending(x):  # pragma: no cover - numba
    """Sort the few lanes' values of x in place, largest first (no allocation)."""
    for i in range(1, x.shape[0]):
        v = x[i]
        j = i - 1
        while j >= 0 and x[j] < v:
            x[j + 1] = x[j]
            j -= 1
        x[j + 1] = v


@numba.njit(cache=True)
def _packer(n, s_tab, s_id, owner, owned, n_tc, cost, lane_bytes, measure):  # pragma: no cover
    """Policy `dynamic` for E instances of one tile (see `_dynamic_work`); an item of run r of
    instance e costs s_tab[s_id[e, r]] (per lane); measure: the cycles measuring the R runs.
    Returns (4, E): busiest lane's cycles, the cores' reload cycles beyond it, the packer's
    cycles, bytes reloaded."""
    e_n, r_n = n.shape
    lanes = s_tab.shape[1]
    groups = owned.shape[1]
    out = np.zeros((4, e_n), np.int64)
    m = np.zeros(r_n, np.int64)
    wc = np.zeros(r_n + 1, np.int64)
    nc = np.zeros(r_n + 1, np.int64)
    ls = np.zeros((r_n + 1, lanes), np.int64)
    cum = np.zeros((n_tc + 1, lanes), np.int64)
    item = np.zeros(n_tc + 1, np.int64)
    w = np.zeros(lanes, np.int64)
    room = np.zeros(lanes, np.int64)
    hasg = np.zeros(groups, np.bool_)
    for e in range(e_n):
        # 1. the work list's prefix sums: an item weighs all its lanes' steps (the core's lanes
        #    share its chunk, step 3); big: the most steps one item costs one lane
        big = 0
        for r in range(r_n):
            row = s_id[e, r]
            mr = 0
            tr = 0
            for i in range(lanes):
                tr += s_tab[row, i]
                if s_tab[row, i] > mr:
                    mr = s_tab[row, i]
            m[r] = tr
            if n[e, r] > 0 and mr > big:
                big = mr
            wc[r + 1] = wc[r] + n[e, r] * tr
            nc[r + 1] = nc[r] + n[e, r]
            for i in range(lanes):
                ls[r + 1, i] = ls[r, i] + n[e, r] * s_tab[row, i]
        # 2. n_tc contiguous chunks of equal work, cut on whole items
        for i in range(lanes):
            cum[0, i] = 0
            cum[n_tc, i] = ls[r_n, i]
        item[0] = 0
        item[n_tc] = nc[r_n]
        for t in range(1, n_tc):
            target = -(-t * wc[r_n] // n_tc)
            # the runs whose prefix ends below the target (wc never decreases)
            ri = np.searchsorted(wc[1 : r_n + 1], target)
            if ri > r_n - 1:
                ri = r_n - 1
            o = 0
            if m[ri] > 0:
                o = -(-(target - wc[ri]) // m[ri])
            if o > n[e, ri]:
                o = n[e, ri]
            for i in range(lanes):
                cum[t, i] = ls[ri, i] + o * s_tab[s_id[e, ri], i]
            item[t] = nc[ri] + o
        t_max = 0
        time_max = 0
        moved = 0
        for t in range(n_tc):
            # 3. lanes of core t share its chunk: least finish T with
            #    sum (w - T)+ <= sum (T - w - cost)+, plus one item, never above the busiest
            tot = 0
            top = 0
            for i in range(lanes):
                w[i] = cum[t + 1, i] - cum[t, i]
                tot += w[i]
                if w[i] > top:
                    top = w[i]
            lo = -(-tot // lanes)
            hi = top
            while lo < hi:
                mid = (lo + hi) // 2
                excess = 0
                space = 0
                for i in range(lanes):
                    if w[i] > mid:
                        excess += w[i] - mid
                    if mid - w[i] - cost > 0:
                        space += mid - w[i] - cost
                if excess <= space:
                    hi = mid
                else:
                    lo = mid + 1
            finish = min(top, lo + big)
            pieces = 0
            if finish < top:
                excess = 0
                for i in range(lanes):
                    if w[i] > lo:
                        excess += w[i] - lo
                    room[i] = max(lo - w[i] - cost, 0)
                _sort_descending(room)
                acc = 0
                for i in range(lanes):
                    acc += room[i]
                    if acc < excess:
                        pieces += 1
                pieces = min(pieces + 1, lanes)
            # a core taking a lane group it does not hold under `static` reloads it
            hasg[:] = False
            # only the runs from the first ending after the chunk's first item to the last
            # starting before its end can overlap it (nc never decreases)
            r_lo = np.searchsorted(nc[1 : r_n + 1], item[t], side="right")
            r_hi = np.searchsorted(nc[:r_n], item[t + 1])
            for r in range(r_lo, r_hi):
                if min(item[t + 1], nc[r + 1]) > max(item[t], nc[r]):
                    hasg[owner[r]] = True
            foreign = 0
            for g in range(groups):
                if hasg[g] and not owned[t, g]:
                    foreign += 1
            if finish > t_max:
                t_max = finish
            if finish + foreign * cost > time_max:
                time_max = finish + foreign * cost
            moved += foreign * lanes + pieces
        out[0, e] = t_max
        out[1, e] = time_max - t_max
        out[2, e] = measure + n_tc * lanes + n_tc
        out[3, e] = moved * lane_bytes
    return out


def _dynamic_work(
    n,
    s,
    owner,
    share: int,
    geo: TcGeometry,
    reload: int,
    pipeline: int,
    lane_bytes: int,
    runs_per_cycle: int = 1,
    s_id=None,
):
    """Policy `dynamic` for one tile's instances. The work is a list of runs, group-major (a
    run belongs to one lane group, the 16 consecutive channels a core's lanes hold; owner: the
    lane group of each run, non-decreasing); run r has n[e, r] identical items, an item costing
    s[e, r, i] steps on lane i of the core that takes it. The packer
    1. cuts the list into n_tc contiguous chunks of equal work, measuring an item by the sum
       of its lanes' steps (step 2 spreads a chunk over the core's lanes, so a core's time
       follows its chunk's total, not its busiest lane: weighing an item by its busiest lane
       gave the cores of a Lasso-skewed WU tile up to 3x unequal totals), on whole items:
       core t takes chunk t;
    2. plans, per core, that lanes with little work take over parts of the busiest lanes'
       pixel (or output) ranges, each piece costing its helper `reload + pipeline` cycles and
       ending on a whole item: the core finishes at the least T with
       sum (w - T)+ <= sum (T - w - cost)+ (each helper one piece), plus one item, never
       later than its busiest lane.
    A core taking a lane group it does not hold under `static` reloads that group's stationary
    operands too (`lane_bytes` per lane). The packer measures `runs_per_cycle` runs per cycle
    (`tensor_core.packer_runs_per_cycle`), plans one lane per cycle and writes one descriptor
    per core. Returns per instance (4, E): busiest lane's cycles, the cores' reload cycles
    beyond it, the packer's cycles, bytes reloaded. With `s_id` (E, R), s is a table of
    item costs (rows, lanes) and an item of run r costs s[s_id[e, r]] on each lane."""
    n = np.ascontiguousarray(n, np.int64)
    if s_id is None:  # every (instance, run) its own row of s (E or 1, R, lanes)
        s = np.asarray(s, np.int64).reshape(-1, n.shape[1], geo.lanes)
        s_id = np.arange(s.size // geo.lanes).reshape(s.shape[:2])
        s_id = np.broadcast_to(s_id, n.shape)
    groups = int(owner.max()) + 1
    owned = _owned(groups, geo, share)
    measure = -(-n.shape[1] // runs_per_cycle)
    return _packer(
        n, np.ascontiguousarray(np.reshape(s, (-1, geo.lanes)), np.int64),
        np.ascontiguousarray(s_id, np.int64), np.ascontiguousarray(owner, np.int64), owned,
        geo.n_tc, reload + pipeline, lane_bytes, measure,
    )  # fmt: skip


def _pick(out: TcWork, at, static_steps, dyn, lane_steps, geo: TcGeometry) -> None:
    """Store policy `dynamic`'s result. The packer first measures the tile's runs
    (`runs_per_cycle` per cycle), which gives it the static assignment's busiest lane and the
    balanced bound (all lanes' steps / lanes). It plans the lanes (n_tc x (lanes + 1) cycles:
    one per lane, one descriptor per core) only where the static busiest lane exceeds that
    bound by more than the lane plan costs, and keeps its own plan only where it is faster
    than the static one; elsewhere the tile runs static, having paid the measuring only."""
    steps, extra, plan, moved = dyn
    lane_plan = geo.n_tc * (geo.lanes + 1)
    bound = -(-np.asarray(lane_steps) // (geo.n_tc * geo.lanes))
    plans = static_steps - bound > lane_plan
    better = plans & (steps + extra < static_steps)
    paid = np.where(plans, plan, plan - lane_plan)
    out.max_steps[at] = np.where(better, steps, static_steps)
    out.overhead[at] = paid + np.where(better, extra, 0)
    out.reload_bytes[at] = np.where(better, moved, 0)
    out.plan[at] = paid


def fwd_work(t: OpTiles, s: SparsityView, gates: GateCounts | None) -> TcWork:
    """FP op work; `wg` None = weight sparsity off; `gates` None = no gating in this op."""
    d, kn, cn, pn, k0, c0, p0, img = t.d, t.kn, t.cn, t.pn, t.k0, t.c0, t.p0, t.img
    geo, wg, group_in, channel_group = s.geo, s.wg, s.group_in, s.channel_group
    groups, share = _split(kn, geo)
    dyn = s.policy == "dynamic" and (wg is not None or gates is not None)
    out, combos = _empty_work(k0, c0)
    for kk, cc in combos:
        sel = np.nonzero((k0 == kk) & (c0 == cc))[0]
        nzc = nonzero_channels(wg, int(kk), kn, int(cc), cn, group_in)  # (kn, cn)
        nnz = nzc.sum(axis=1)
        steps = aligned_chunks_in_use(nzc, int(cc), geo.dp) * d.taps
        if dyn:  # items: (lane group, pixel); stationary operand: the lanes' weights
            n_, s_, owner = _fwd_items(t, s, gates, int(kk), sel, steps, groups)
            reload = -(-cn * d.taps // geo.dp)  # a lane's weights W[k, c-range, taps]
            dyn_sel = _dynamic_work(
                n_, s_, owner, share, geo, reload, s.pipeline, cn * d.taps, s.runs_per_cycle
            )
        if gates is None:
            npix = np.broadcast_to(
                _static_pixels(p0[sel], pn, d.ow, share)[:, None, :], (len(sel), kn, share)
            )
        else:
            g = (np.arange(kk, kk + kn) // channel_group).astype(np.int64)
            npix = gates.rows(img[sel], p0[sel], pn, share)[:, g, :]
        work = npix * steps[None, :, None]
        useful = (npix.sum(axis=2) * (nnz * d.taps)[None, :]).sum(axis=1)
        work = _pad_lanes(work, kn, geo)
        out.max_steps[sel] = _busiest(work, geo, share)
        lane_steps = work.sum(axis=(1, 2))
        if dyn:
            _pick(out, sel, out.max_steps[sel], dyn_sel, lane_steps, geo)
        out.lane_steps[sel] = lane_steps
        out.useful_macs[sel] = useful
    return out


def _fwd_items(t: OpTiles, s: SparsityView, gates, kk: int, sel, steps, groups: int):
    """FP work list for `_dynamic`: runs (counts (E, R), per-lane steps, owning lane group)."""
    geo, e, npx = s.geo, len(sel), t.pn * t.d.ow
    per_lane = _lane_items(steps[None, :, None], geo)[0, :, 0]  # (groups, lanes)
    if gates is None or (s.channel_group % geo.lanes == 0 and kk % geo.lanes == 0):
        if gates is None:
            n = np.full((e, groups), npx, np.int64)
        else:  # one gate group per lane group: only its count of open pixels matters
            gg = (kk + geo.lanes * np.arange(groups)) // s.channel_group
            n = gates.rows(t.img[sel], t.p0[sel], t.pn, 1)[:, gg, 0]
        return n, per_lane[None], np.arange(groups)
    gk = np.arange(kk, kk + t.kn) // s.channel_group  # lanes of one group gate differently
    at = zip(t.img[sel], t.p0[sel], strict=True)
    bits = np.stack([gates.gate[i, gk, r : r + t.pn, :].reshape(t.kn, -1) for i, r in at])
    x = _lane_items(bits * steps[None, :, None], geo).reshape(e, groups * npx, geo.lanes)
    return np.ones((e, groups * npx), np.int64), x, np.repeat(np.arange(groups), npx)


_PATTERN_BITS = 8  # gate groups per pattern table of `_bwd_gated` (256 rows)


@numba.njit(cache=True)
def _pattern_tables(seg_steps):  # pragma: no cover - numba
    """(chunks, 256, cn): per chunk of `_PATTERN_BITS` gate groups and pattern of ungated
    groups in it (bit b: group 8 chunk + b), the lane steps of each input channel."""
    gr, cn = seg_steps.shape
    chunks = (gr + _PATTERN_BITS - 1) // _PATTERN_BITS
    table = np.zeros((chunks, 1 << _PATTERN_BITS, cn), np.int64)
    for k in range(chunks):
        size = min(_PATTERN_BITS, gr - k * _PATTERN_BITS)
        for pat in range(1, 1 << size):
            b = 0
            while not (pat >> b) & 1:
                b += 1
            for c in range(cn):  # the pattern without its lowest group, plus that group
                table[k, pat, c] = table[k, pat ^ (1 << b), c] + seg_steps[k * _PATTERN_BITS + b, c]
    return table


@numba.njit(cache=True)
def _bwd_gated(bits, per_group, part, share, dp, taps):  # pragma: no cover - numba
    """BP tiles of gated layers: bits (E, Gr, P) ungated (group, dY pixel); per_group (Gr, cn)
    nonzero weights of each input channel per channel group. Per (image, dY pixel, input
    channel) the lane needs, per tap, ceil(nonzero k / dp) steps of each ungated group: it
    takes a group's nonzero k compacted, and no step mixes two gate groups (the functional
    step layout, `simulator.functional.tensor_core.compacted_k`). Returns the lane steps per
    (instance, channel, core share) and the nonzero products, which are linear in each
    group's ungated pixels (counted per group); and for the packer's items, each pixel's
    pattern of ungated groups (E, chunks, P) and the lane steps of every pattern
    (`_pattern_tables`)."""
    e_n, gr, p_n = bits.shape
    cn = per_group.shape[1]
    work = np.zeros((e_n, cn, share), np.int64)
    useful = np.zeros(e_n, np.int64)
    seg_steps = np.zeros((gr, cn), np.int64)
    group_nnz = np.zeros(gr, np.int64)
    for g in range(gr):
        for c in range(cn):
            seg_steps[g, c] = (per_group[g, c] + dp - 1) // dp * taps
            group_nnz[g] += per_group[g, c]
    table = _pattern_tables(seg_steps)
    pats = np.zeros((e_n, table.shape[0], p_n), np.int64)
    cnt = np.zeros((gr, share), np.int64)  # ungated pixels per group and core share
    for e in range(e_n):
        cnt[:] = 0
        for p in range(p_n):
            j = part[p]
            for g in range(gr):
                if bits[e, g, p]:
                    cnt[g, j] += 1
                    pats[e, g // _PATTERN_BITS, p] |= 1 << (g % _PATTERN_BITS)
        total = 0
        for g in range(gr):
            for j in range(share):
                n = cnt[g, j]
                if n:
                    total += n * group_nnz[g]
                    for c in range(cn):
                        work[e, c, j] += n * seg_steps[g, c]
        useful[e] = total * taps
    return work, useful, pats, table


def _bwd_items(pats: np.ndarray, table: np.ndarray, geo: TcGeometry):
    """The packer's items of gated BP tiles (`_dynamic_work` with `s_id`): run (lane group,
    dY pixel) of instance e costs its channels' steps under the pixel's pattern of ungated
    groups. Returns the cost table (lane groups x patterns, lanes) and the ids (E, lane
    groups x P)."""
    e_n, chunks, p_n = pats.shape
    if chunks == 1:  # every pattern has its row
        key, rows = pats[:, 0, :], table[0]
    else:  # only the patterns that occur
        shift = _PATTERN_BITS * np.arange(chunks)
        uniq, key = np.unique((pats << shift[None, :, None]).sum(axis=1), return_inverse=True)
        parts = (uniq[:, None] >> shift[None, :]) & ((1 << _PATTERN_BITS) - 1)
        rows = sum(table[k, parts[:, k]] for k in range(chunks))
        key = key.reshape(e_n, p_n)
    n_pat, cn = rows.shape
    rows = _pad_lanes(rows, cn, geo)  # (patterns, lane groups x lanes)
    groups = rows.shape[1] // geo.lanes
    s_tab = rows.reshape(n_pat, groups, geo.lanes).transpose(1, 0, 2).reshape(-1, geo.lanes)
    s_id = key[:, None, :] + (n_pat * np.arange(groups))[None, :, None]
    return s_tab, s_id.reshape(e_n, groups * p_n)


def _bwd_grouped(t: OpTiles, s: SparsityView) -> TcWork:
    """BP work of a grouped conv's tile (no gating or weight sparsity applies to it): the
    lanes own the dX channels of the tile's whole groups, (kn / kg) cg of them, and each
    reduces over its own group's kg outputs in chunks of dp_width (isa.spec, as the
    functional tensor core computes it)."""
    d, geo = t.d, s.geo
    kg = d.k // d.groups
    nch = d.group_channels(t.kn, t.cn)
    _, share = _split(nch, geo)
    steps = -(-kg // geo.dp) * d.taps
    out, combos = _empty_work(t.k0, t.c0)
    for kk, cc in combos:
        sel = np.nonzero((t.k0 == kk) & (t.c0 == cc))[0]
        npix = _static_pixels(t.p0[sel], t.pn, d.ow, share)  # (E, share)
        work = _pad_lanes(np.broadcast_to(npix[:, None, :] * steps, (len(sel), nch, share)),
                          nch, geo)  # fmt: skip
        out.max_steps[sel] = _busiest(work, geo, share)
        out.lane_steps[sel] = work.sum(axis=(1, 2))
        out.useful_macs[sel] = npix.sum(axis=1) * t.kn * t.cn * d.taps
    return out


def bwd_work(t: OpTiles, s: SparsityView, gate: np.ndarray | None) -> TcWork:
    """BP op work (lanes own input channels; per dY pixel and gate group the k of nonzero
    weight groups are compacted)."""
    if t.d.groups > 1:
        return _bwd_grouped(t, s)
    d, kn, cn, pn, k0, c0, p0, img = t.d, t.kn, t.cn, t.pn, t.k0, t.c0, t.p0, t.img
    geo, wg, group_in, channel_group = s.geo, s.wg, s.group_in, s.channel_group
    groups, share = _split(cn, geo)
    dyn = s.policy == "dynamic" and (wg is not None or gate is not None)
    reload = -(-kn * d.taps // geo.dp)  # a lane's weights W[k-range, c, taps]
    out, combos = _empty_work(k0, c0)
    dyn_all = np.zeros((4, len(k0)), np.int64)

    def dynamic(n_, s_, owner, at, s_id=None):
        dyn_all[:, at] = _dynamic_work(
            n_, s_, owner, share, geo, reload, s.pipeline, kn * d.taps, s.runs_per_cycle, s_id
        )

    for kk, cc in combos:
        sel = np.nonzero((k0 == kk) & (c0 == cc))[0]
        nzw = nonzero_channels(wg, int(kk), kn, int(cc), cn, group_in)  # (kn, cn)
        if gate is None:
            nnz = nzw.sum(axis=0)  # (cn,)
            npix = _static_pixels(p0[sel], pn, d.ow, share)  # (E, share)
            work = npix[:, None, :] * (-(-nnz // geo.dp))[None, :, None] * d.taps
            useful = npix.sum(axis=1) * int(nnz.sum()) * d.taps
            if dyn:  # items: (lane group, dY pixel), all pixels alike
                st = _lane_items((-(-nnz // geo.dp) * d.taps)[None, :, None], geo)[:, :, 0]
                n_ = np.full((len(sel), groups), pn * d.ow, np.int64)
                dynamic(n_, st, np.arange(groups), sel)
        else:
            g = np.arange(kk, kk + kn) // channel_group
            g_lo, g_hi = int(g[0]), int(g[-1]) + 1
            per_group = np.stack([nzw[g == gi].sum(axis=0) for gi in range(g_lo, g_hi)])
            useful = np.zeros(len(sel), np.int64)
            work = np.zeros((len(sel), cn, share), np.int64)
            ow = d.ow
            q = np.arange(pn * ow)
            for r0 in np.unique(p0[sel]):
                pos = np.flatnonzero(p0[sel] == r0)
                rs = sel[pos]
                bits = gate[img[rs], g_lo:g_hi, r0 : r0 + pn, :]  # (E', Gr, pn, OW)
                bits = np.ascontiguousarray(bits.reshape(len(rs), g_hi - g_lo, -1), np.uint8)
                part = (int(r0) * ow + q) % share
                w_, u_, pats, table = _bwd_gated(
                    bits, per_group.astype(np.int64), part, share, geo.dp, d.taps
                )
                work[pos] = w_
                useful[pos] = u_
                if dyn:  # items: (lane group, dY pixel), each its own cost
                    s_tab, s_id = _bwd_items(pats, table, geo)
                    n_ = np.ones(s_id.shape, np.int64)
                    dynamic(n_, s_tab, np.repeat(np.arange(groups), len(q)), sel[pos], s_id)
        work = _pad_lanes(np.asarray(work), cn, geo)
        out.max_steps[sel] = _busiest(work, geo, share)
        lane_steps = work.sum(axis=(1, 2))
        if dyn:
            _pick(out, sel, out.max_steps[sel], dyn_all[:, sel], lane_steps, geo)
        out.lane_steps[sel] = lane_steps
        out.useful_macs[sel] = useful
    return out


def wgr_work(t: OpTiles, s: SparsityView, gates: GateCounts | None) -> TcWork:
    """WU op work (lanes own output channels; reduce over the tile's ungated pixels)."""
    d, kn, cn, pn, k0, c0, p0, img = t.d, t.kn, t.cn, t.pn, t.k0, t.c0, t.p0, t.img
    geo, wg, group_in, channel_group = s.geo, s.wg, s.group_in, s.channel_group
    groups, share = _split(kn, geo)
    dyn = s.policy == "dynamic" and (wg is not None or gates is not None)
    out, combos = _empty_work(k0, c0)
    # outputs (c, tap) are dealt to the cores channel-fastest (item = tap * cn + c), so the
    # cores read neighbouring channels of one pixel at a time (one buffer word, see banks)
    item_part = (np.arange(d.taps)[None, :] * cn + np.arange(cn)[:, None]) % share
    for kk, cc in combos:
        sel = np.nonzero((k0 == kk) & (c0 == cc))[0]
        nzw = nonzero_channels(wg, int(kk), kn, int(cc), cn, group_in)  # (kn, cn)
        items = np.stack(
            [(nzw[:, :, None] & (item_part == j)[None]).sum(axis=(1, 2)) for j in range(share)],
            axis=1,
        )  # (kn, share) nonzero outputs per lane and core
        if gates is None:
            npix = np.full((len(sel), kn), pn * d.ow, np.int64)
        else:
            g = (np.arange(kk, kk + kn) // channel_group).astype(np.int64)
            npix = gates.rows(img[sel], p0[sel], pn, 1)[:, g, 0]
        work = (-(-npix // geo.dp))[:, :, None] * items[None, :, :]
        useful = (npix * items.sum(axis=1)[None, :]).sum(axis=1)
        work = _pad_lanes(work, kn, geo)
        out.max_steps[sel] = _busiest(work, geo, share)
        lane_steps = work.sum(axis=(1, 2))
        if dyn:  # items: (lane group, input channel) x taps; a lane holds dY of its channel
            x = _wgr_items(-(-npix // geo.dp), nzw.view(np.uint8), geo.lanes)
            n_ = np.full(x.shape[:2], d.taps, np.int64)
            owner = np.repeat(np.arange(groups), cn)
            npx = pn * d.ow  # the dY row over the tile's pixels
            reload = -(-npx // geo.dp)
            dyn_sel = _dynamic_work(
                n_, x, owner, share, geo, reload, s.pipeline, npx, s.runs_per_cycle
            )
            _pick(out, sel, out.max_steps[sel], dyn_sel, lane_steps, geo)
        out.lane_steps[sel] = lane_steps
        out.useful_macs[sel] = useful
    return out


@numba.njit(cache=True)
def _wgr_items(steps, nz, lanes):  # pragma: no cover - numba
    """WU items for `_dynamic_work` (E, lane groups x cn, lanes): lane l of group g takes
    steps[e, k] (k = g lanes + l) per output (c, tap) whose weight group is nonzero (nz (kn,
    cn)); idle lanes 0. (`_lane_items` of steps x nz in one pass, without temporaries.)"""
    e_n, kn = steps.shape
    cn = nz.shape[1]
    groups = -(-kn // lanes)
    x = np.zeros((e_n, groups * cn, lanes), np.int64)
    for e in range(e_n):
        for g in range(groups):
            for c in range(cn):
                for k in range(g * lanes, min(kn, (g + 1) * lanes)):
                    if nz[k, c]:
                        x[e, g * cn + c, k - g * lanes] = steps[e, k]
    return x
