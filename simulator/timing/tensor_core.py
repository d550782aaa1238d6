"""Tensor-core time of one op from the actual masks: the lanes that own gated (pixel, channel
group) work or zero weight groups skip it, and a tile lasts as long as its busiest lane.

Lane mapping (an assumption of this model, documented in docs/simulator.md):
- `n_tc` cores x `lanes` dot-product units; each unit owns one output element stream and feeds
  its `dp_width`-wide tree from a compacted list of the nonzero operands it needs (a sparse
  gather front end), so one step retires up to `dp_width` nonzero products.
- FP (`tc.fwd`): a lane owns an output channel k and reduces over (tap, input channel); per
  output pixel and tap it needs ceil(nonzero input channels / dp_width) steps. BP (`tc.bwd`):
  a lane owns an input channel c and reduces over output channels k, the nonzero ones being
  those with a nonzero weight group and (per pixel) an ungated channel group. WU (`tc.wgr`):
  a lane owns an output channel k and reduces over the tile's pixels, skipping gated ones; its
  (input channel, tap) outputs of zero groups are skipped entirely.
- Lanes come in groups of `lanes` consecutive channels. With at least `n_tc` lane groups in
  the tile, core t takes groups t, t + n_tc, ...; with fewer, every group is replicated on
  n_tc // groups cores, which split the pixels (FP, BP: flat pixel index modulo the split) or
  the (input channel, tap) outputs (WU: item tap x cn + c modulo the split, channel fastest)
  between them; left-over cores idle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LayerDesc:
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

    @property
    def oh(self) -> int:
        return (self.h + 2 * self.pad - self.kh) // self.stride + 1

    @property
    def ow(self) -> int:
        return (self.w + 2 * self.pad - self.kw) // self.stride + 1

    @property
    def taps(self) -> int:
        return self.kh * self.kw


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
    weight sparsity off) and the group shapes."""

    geo: TcGeometry
    wg: np.ndarray | None
    group_in: int
    channel_group: int


@dataclass
class TcWork:
    """Per executed op: busiest lane's steps, all lanes' steps, nonzero products."""

    max_steps: np.ndarray
    lane_steps: np.ndarray
    useful_macs: np.ndarray


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
            b, g, oh, ow = self.gate.shape
            q = (np.arange(oh)[:, None] * ow + np.arange(ow)[None, :]) % share
            per = np.stack([(self.gate & (q == j)).sum(axis=3) for j in range(share)], axis=2)
            c = np.zeros((b, g, share, oh + 1), np.int64)
            np.cumsum(per, axis=3, out=c[..., 1:])
            self._cum[share] = c  # (B, G, share, OH + 1)
        return self._cum[share]

    def rows(self, img, p0, pn: int, share: int) -> np.ndarray:
        """(E, G, share) gate bits set in rows [p0, p0 + pn) of image img."""
        c = self.cum(share)
        return c[img, :, :, p0 + pn] - c[img, :, :, p0]


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


def _empty_work(k0: np.ndarray, c0: np.ndarray) -> tuple[TcWork, np.ndarray]:
    """Zeroed work for each op instance, and the distinct (k0, c0) tiles among them."""
    e = len(k0)
    out = TcWork(np.zeros(e, np.int64), np.zeros(e, np.int64), np.zeros(e, np.int64))
    return out, np.unique(np.stack([k0, c0], 1), axis=0)


def fwd_work(t: OpTiles, s: SparsityView, gates: GateCounts | None) -> TcWork:
    """FP op work; `wg` None = weight sparsity off; `gates` None = no gating in this op."""
    d, kn, cn, pn, k0, c0, p0, img = t.d, t.kn, t.cn, t.pn, t.k0, t.c0, t.p0, t.img
    geo, wg, group_in, channel_group = s.geo, s.wg, s.group_in, s.channel_group
    _, share = _split(kn, geo)
    out, combos = _empty_work(k0, c0)
    for kk, cc in combos:
        sel = np.nonzero((k0 == kk) & (c0 == cc))[0]
        nnz = nonzero_channels(wg, int(kk), kn, int(cc), cn, group_in).sum(axis=1)  # (kn,)
        steps = -(-nnz // geo.dp) * d.taps
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
        out.lane_steps[sel] = work.sum(axis=(1, 2))
        out.useful_macs[sel] = useful
    return out


def bwd_work(t: OpTiles, s: SparsityView, gate: np.ndarray | None) -> TcWork:
    """BP op work (lanes own input channels; per dY pixel the nonzero k are compacted)."""
    d, kn, cn, pn, k0, c0, p0, img = t.d, t.kn, t.cn, t.pn, t.k0, t.c0, t.p0, t.img
    geo, wg, group_in, channel_group = s.geo, s.wg, s.group_in, s.channel_group
    _, share = _split(cn, geo)
    out, combos = _empty_work(k0, c0)
    for kk, cc in combos:
        sel = np.nonzero((k0 == kk) & (c0 == cc))[0]
        nzw = nonzero_channels(wg, int(kk), kn, int(cc), cn, group_in)  # (kn, cn)
        if gate is None:
            nnz = nzw.sum(axis=0)  # (cn,)
            npix = _static_pixels(p0[sel], pn, d.ow, share)  # (E, share)
            work = npix[:, None, :] * (-(-nnz // geo.dp))[None, :, None] * d.taps
            useful = npix.sum(axis=1) * int(nnz.sum()) * d.taps
        else:
            g = np.arange(kk, kk + kn) // channel_group
            g_lo, g_hi = int(g[0]), int(g[-1]) + 1
            per_group = np.stack([nzw[g == gi].sum(axis=0) for gi in range(g_lo, g_hi)])
            useful = np.zeros(len(sel), np.int64)
            work = np.zeros((len(sel), cn, share), np.int64)
            ow = d.ow
            q = np.arange(pn * ow)
            for r0 in np.unique(p0[sel]):
                rs = sel[p0[sel] == r0]
                pos = np.nonzero(np.isin(sel, rs))[0]
                bits = gate[img[rs], g_lo:g_hi, r0 : r0 + pn, :]  # (E', Gr, pn, OW)
                bits = bits.reshape(len(rs), g_hi - g_lo, -1).transpose(0, 2, 1)
                nnz = bits.astype(np.int32) @ per_group.astype(np.int32)  # (E', P, cn)
                st = -(-nnz // geo.dp)
                part = (int(r0) * ow + q) % share
                for j in range(share):
                    work[pos, :, j] = st[:, part == j, :].sum(axis=1) * d.taps
                useful[pos] = nnz.sum(axis=(1, 2)) * d.taps
        work = _pad_lanes(np.asarray(work), cn, geo)
        out.max_steps[sel] = _busiest(work, geo, share)
        out.lane_steps[sel] = work.sum(axis=(1, 2))
        out.useful_macs[sel] = useful
    return out


def wgr_work(t: OpTiles, s: SparsityView, gates: GateCounts | None) -> TcWork:
    """WU op work (lanes own output channels; reduce over the tile's ungated pixels)."""
    d, kn, cn, pn, k0, c0, p0, img = t.d, t.kn, t.cn, t.pn, t.k0, t.c0, t.p0, t.img
    geo, wg, group_in, channel_group = s.geo, s.wg, s.group_in, s.channel_group
    _, share = _split(kn, geo)
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
        out.lane_steps[sel] = work.sum(axis=(1, 2))
        out.useful_macs[sel] = useful
    return out
