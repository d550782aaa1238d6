"""Data semantics of the tensor-core ops `tc.fwd`, `tc.bwd`, `tc.wgr` (docs/isa.md).

Every accumulator takes its contributions as a sequence of dp_width-wide steps of the tree rule
(`simulator.functional.tree`). The order, which the rounding after every step makes visible, is:
- tc.fwd: kernel taps in row-major order, and within a tap the op's input channels
  [rc, rc + cn) in chunks of dp_width (the last chunk zero-padded);
- tc.bwd: for each dX pixel, kernel taps in row-major order (taps whose dY pixel does not exist
  contribute nothing), and within a tap the op's output channels in chunks of dp_width;
- tc.wgr: the op's output pixels in row-major order in chunks of dp_width.
Ops that continue an accumulation (`acc` = 1) append their steps after the earlier ones.
A grouped conv's tile holds whole groups of outputs; each group is computed as an ordinary conv
tile of its kg outputs and cg inputs (channels [rc, rc + cn) of the group), with the same order.
Gated outputs (pass `cond`) keep their accumulator; in BP and WU their error is taken as zero;
zero Lasso groups have their weights taken as zero. With `fin` the FP16 accumulators are
rounded to FP8 by the SRU stream of the op (tc.fwd: act, tc.bwd and tc.wgr: err).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from isa.layouts import aligned_chunks, compacted_k
from simulator.functional.fastops import (
    _rne_params,
    gather,
    gather_columns,
    gather_pattern,
    gather_runs,
    run_starts,
)
from simulator.functional.sru import SRUs
from simulator.functional.state import Descriptor, FunctionalError, Machine
from simulator.functional.tree import (
    PreparedB,
    acc_decode,
    acc_decode_t,
    acc_encode,
    acc_encode_t,
    accumulate_gate_groups,
    accumulator_words,
    prepare_columns,
    prepare_operand,
    tree_accumulate,
    tree_accumulate_words,
)


@lru_cache(maxsize=1024)
def _compacted_k(nonzero: bytes, seg: int, dp: int) -> np.ndarray:
    """`isa.layouts.compacted_k` of a mask column given as its bytes (0 = zero group), kept:
    a step's masks repeat for every image."""
    return compacted_k(tuple(b != 0 for b in nonzero), seg, dp)


@lru_cache(maxsize=256)
def _wgr_active_t(mask: bytes, kn: int, cn: int, taps: int, gc: int) -> np.ndarray:
    """(taps cn, kn) bool, contiguous: tc.wgr's transposed `active` under weight sparsity,
    output (tap t, channel c) of filter k computed iff k's Lasso group of c is nonzero
    (`mask`: the (kn, cn / gc) group-mask bytes); kept, as a step's masks repeat per image."""
    m = np.frombuffer(mask, np.uint8).reshape(kn, cn // gc).astype(bool)
    per_c = np.repeat(m, gc, axis=1)[:, :cn]  # (kn, cn)
    out = np.ascontiguousarray(np.broadcast_to(per_c[:, None, :], (kn, taps, cn)).reshape(kn, -1).T)
    out.setflags(write=False)
    return out


class TensorCore:
    def __init__(self, m: Machine, srus: SRUs) -> None:
        self.m, self.srus = m, srus
        tc = m.cfg.tensor_core
        self.dp = tc.dp_width
        self.opf, self.accf = tc.operand_format, tc.accumulator_format
        self.align = tc.alignment_width_bits
        # decoded weight tiles (tree.PreparedB) by op and place; reused while the codes match
        self._prepared: dict[tuple[int, ...], tuple[bytes, PreparedB]] = {}
        # whether `fin` may take float64 accumulators as they are (`rne_codes`, `sr_codes`)
        self._rne_direct = _rne_params(self.opf) is not None
        # whether the kernel reads and writes a tile's accumulator words in the buffer itself
        # (no float64 copy in and out) where the tile does not finish (`fin` 0)
        self._words = accumulator_words(self.opf, self.accf, self.align)

    # -- helpers
    @staticmethod
    @lru_cache(maxsize=256)
    def _bwd_index_cached(
        h: int, w: int, kh: int, kw: int, stride: int, pad: int, ow: int, p0: int, pn: int
    ) -> np.ndarray:
        """(h w, taps) row of dY (pixel (py - p0) ow + px) under each dX pixel and tap; pn ow
        where that dY pixel does not exist or lies outside rows [p0, p0 + pn)."""
        qy, qx = np.arange(h), np.arange(w)
        idx = np.full((h, w, kh * kw), pn * ow, np.intp)
        t = 0
        for ty in range(kh):
            py, vy = np.divmod(qy + pad - ty, stride)
            oky = (vy == 0) & (py >= p0) & (py < p0 + pn)
            for tx in range(kw):
                px, vx = np.divmod(qx + pad - tx, stride)
                okx = (vx == 0) & (px >= 0) & (px < ow)
                yy, xx = np.nonzero(oky[:, None] & okx[None, :])
                idx[yy, xx, t] = (py[yy] - p0) * ow + px[xx]
                t += 1
        idx.setflags(write=False)
        return idx.reshape(h * w, kh * kw)

    @staticmethod
    @lru_cache(maxsize=256)
    def _patch_index(
        h: int,
        w: int,
        kh: int,
        kw: int,
        stride: int,
        pad: int,
        ow: int,
        p0: int,
        pn: int,
        cols: int,
        c0: int,
        cn: int,
        cpad: int,
    ) -> np.ndarray:
        """(pn ow, taps, cn rounded up to cpad) int32: the byte, in the buffer region of the
        input rows from max(0, p0 stride - pad) (`cols` channels per pixel), of channel c0 + c
        under each output pixel and tap; -1 for padding pixels and channels (zeros)."""
        r0 = max(0, p0 * stride - pad)
        cnp = -(-cn // cpad) * cpad
        iy = (p0 + np.arange(pn))[:, None] * stride - pad + np.arange(kh)[None, :]  # (pn, kh)
        ix = np.arange(ow)[:, None] * stride - pad + np.arange(kw)[None, :]  # (ow, kw)
        oky, okx = (iy >= 0) & (iy < h), (ix >= 0) & (ix < w)
        off = ((iy - r0)[:, None, :, None] * w + ix[None, :, None, :]) * cols + c0
        ok = oky[:, None, :, None] & okx[None, :, None, :]  # (pn, ow, kh, kw)
        idx = np.full((pn, ow, kh, kw, cnp), -1, np.int64)
        idx[..., :cn] = np.where(ok, off, -1)[..., None] + np.arange(cn)
        idx[..., :cn][~ok] = -1
        out = idx.reshape(pn * ow, kh * kw, cnp).astype(np.int32)
        out.setflags(write=False)
        return out

    @staticmethod
    @lru_cache(maxsize=256)
    def _patch_runs(*geom: int) -> np.ndarray | None:
        """`_patch_index(*geom)` as run starts (`fastops.run_starts`: each output pixel and
        tap takes cn consecutive bytes, or zeros), or None."""
        return run_starts(TensorCore._patch_index(*geom), geom[11])

    def _patches(self, src: np.ndarray, d: Descriptor, p0: int, pn: int, c0: int, cn: int):
        """tc.fwd's A (P, S, dp): `gather` with `_fwd_index`, as row copies where it is runs."""
        geom = (d.h, d.w, d.kh, d.kw, d.stride, d.pad, d.ow, p0, pn, d.c, c0, cn, self.dp)
        if c0 % self.dp:  # the first chunk holds only the rest of c0's aligned block
            return gather(src, self._fwd_aligned_index(*geom))
        starts = self._patch_runs(*geom)
        if starts is None:
            return gather(src, self._fwd_index(d, p0, pn, c0, cn))
        cnp = -(-cn // self.dp) * self.dp
        return gather_runs(src, starts, cn, cnp).reshape(pn * d.ow, -1, self.dp)

    @staticmethod
    @lru_cache(maxsize=64)
    def _fwd_aligned_index(*geom: int) -> np.ndarray:
        """`_patch_index(*geom)` with the channels of each tap in `aligned_chunks`' layout:
        (P, taps S, dp)."""
        idx = TensorCore._patch_index(*geom[:12], 1)  # (P, taps, cn), no padding
        lay = aligned_chunks(geom[10], geom[11], geom[12])
        out = np.where(lay >= 0, idx[..., np.maximum(lay, 0)], -1).astype(np.int32)
        out = out.reshape(idx.shape[0], -1, geom[12])
        out.setflags(write=False)
        return out

    def _fwd_index(self, d: Descriptor, p0: int, pn: int, c0: int, cn: int) -> np.ndarray:
        """(P, S, dp) gather indices of tc.fwd's A (patches in dp-wide channel chunks)."""
        idx = self._patch_index(
            d.h, d.w, d.kh, d.kw, d.stride, d.pad, d.ow, p0, pn, d.c, c0, cn, self.dp
        )
        return idx.reshape(idx.shape[0], -1, self.dp)

    @staticmethod
    @lru_cache(maxsize=256)
    def _wgr_index(
        h: int,
        w: int,
        kh: int,
        kw: int,
        stride: int,
        pad: int,
        ow: int,
        p0: int,
        pn: int,
        cn: int,
        dp: int,
    ) -> np.ndarray:
        """(taps cn, S, dp) gather indices of tc.wgr's B: the patches transposed, pixels in
        dp-wide chunks (-1 pads the last)."""
        return TensorCore._wgr_index_at(h, w, kh, kw, stride, pad, ow, p0, pn, cn, 0, cn, dp)

    @staticmethod
    @lru_cache(maxsize=256)
    def _wgr_starts(
        h: int, w: int, kh: int, kw: int, stride: int, pad: int, ow: int, p0: int, pn: int,
        cn: int, dp: int,
    ) -> np.ndarray:  # fmt: skip
        """(taps, P rounded up to dp) int32: the byte of channel 0 under each tap and output
        pixel (-1 for padding pixels and the last chunk's padding): `_wgr_index` as the
        starts of its columns (`fastops.gather_columns`), each of cn consecutive bytes."""
        idx = TensorCore._patch_index(h, w, kh, kw, stride, pad, ow, p0, pn, cn, 0, 1, 1)
        P = idx.shape[0]
        out = np.full((idx.shape[1], P + (-P % dp)), -1, np.int32)
        out[:, :P] = idx[:, :, 0].T
        out.setflags(write=False)
        return out

    @staticmethod
    @lru_cache(maxsize=256)
    def _wgr_index_at(
        h: int, w: int, kh: int, kw: int, stride: int, pad: int, ow: int, p0: int, pn: int,
        cols: int, c0: int, cn: int, dp: int,
    ) -> np.ndarray:  # fmt: skip
        """`_wgr_index` of channels [c0, c0 + cn) of a buffer with `cols` channels per pixel."""
        idx = TensorCore._patch_index(h, w, kh, kw, stride, pad, ow, p0, pn, cols, c0, cn, 1)
        P = idx.shape[0]
        t = idx.reshape(P, -1).T
        padn = -P % dp
        if padn:
            t = np.concatenate([t, np.full((t.shape[0], padn), -1, np.int32)], axis=1)
        out = np.ascontiguousarray(t).reshape(t.shape[0], -1, dp)
        out.setflags(write=False)
        return out

    def _bwd_index(self, d: Descriptor, p0: int, pn: int) -> np.ndarray:
        return self._bwd_index_cached(d.h, d.w, d.kh, d.kw, d.stride, d.pad, d.ow, p0, pn)

    def _bwd_gather(self, d: Descriptor, p0: int, pn: int, kn: int) -> np.ndarray:
        return self._bwd_gather_cached(
            d.h, d.w, d.kh, d.kw, d.stride, d.pad, d.ow, p0, pn, kn, self.dp
        )

    @staticmethod
    @lru_cache(maxsize=256)
    def _bwd_runs(*geom: int) -> np.ndarray | None:
        """`_bwd_gather_cached(*geom)` as run starts (`fastops.run_starts`), or None."""
        kn, dp = geom[9], geom[10]
        idx = TensorCore._bwd_gather_cached(*geom)  # (h w, S, dp): rows of -(-kn // dp) dp
        return run_starts(idx.reshape(-1, -(-kn // dp) * dp), kn)

    @staticmethod
    @lru_cache(maxsize=256)
    def _bwd_gather_cached(
        h: int, w: int, kh: int, kw: int, stride: int, pad: int, ow: int, p0: int, pn: int,
        kn: int, dp: int,
    ) -> np.ndarray:  # fmt: skip
        """(h w, taps ceil(kn / dp), dp) int32: the byte of the dY tile ((pn ow, kn) codes)
        under each dX pixel, tap and channel of tc.bwd's row operand; -1 (a zero) where that
        dY pixel does not exist and in the chunk padding (`_bwd_index`, `_chunks`)."""
        row = TensorCore._bwd_index_cached(h, w, kh, kw, stride, pad, ow, p0, pn)
        knp = -(-kn // dp) * dp
        idx = np.full((*row.shape, knp), -1, np.int64)
        ok = row < pn * ow
        idx[..., :kn] = np.where(ok[..., None], row[..., None] * kn + np.arange(kn), -1)
        out = idx.reshape(row.shape[0], -1, dp).astype(np.int32)
        out.setflags(write=False)
        return out

    @staticmethod
    @lru_cache(maxsize=256)
    def _bwd_row_starts(
        h: int, w: int, kh: int, kw: int, stride: int, pad: int, ow: int, p0: int, pn: int,
        kn: int,
    ) -> np.ndarray:  # fmt: skip
        """(h w, taps) int32: the first byte, in the dY tile ((pn ow, kn) codes), of the dY
        pixel under each dX pixel and tap, or -1 where it does not exist (`_bwd_index`)."""
        row = TensorCore._bwd_index_cached(h, w, kh, kw, stride, pad, ow, p0, pn)
        out = np.where(row < pn * ow, row * kn, -1).astype(np.int32)
        out.setflags(write=False)
        return out

    def _prepare(self, key: tuple[int, ...], src: bytes, build) -> PreparedB:
        """The decoded weight tile of an op: the same tile serves every image, so it is kept
        per place and geometry (`key`) with the bytes it was built from (the weight region
        and, where weight sparsity applies, the group mask) and rebuilt only when those bytes
        differ (compared in full). `build()` gives the tile's (K, S, dp) codes."""
        hit = self._prepared.get(key)
        if hit is not None and hit[0] == src:
            return hit[1]
        pb = prepare_operand(build(), self.opf)
        self._prepared[key] = (src, pb)
        return pb

    def _wsource(self, d: Descriptor, rb: int, k_n: int, row: int, gm: int) -> bytes:
        """The bytes a weight tile is built from: its weight region, and its group mask
        where weight sparsity applies (`_weights`, `_group_mask`)."""
        src = self.m.view("wgt", rb, k_n * d.taps * row).tobytes()
        if d.wsparse and self.m.mode.wsparse:
            ng = -(-row // self.m.ws_gc)
            src += b"|" + self.m.view("msk", gm, k_n * ng).tobytes()
        return src

    def _chunks(self, x: np.ndarray) -> np.ndarray:
        """(..., n) codes -> (..., ceil(n / dp), dp), zero-padded."""
        n = x.shape[-1]
        pad = -n % self.dp
        if pad:
            x = np.concatenate([x, np.zeros((*x.shape[:-1], pad), np.uint8)], axis=-1)
        return x.reshape(*x.shape[:-1], -1, self.dp)

    def _acc_in(
        self, space: str, addr: int, shape: tuple[int, int], acc: int, transposed: bool = False
    ) -> np.ndarray:
        """The (R, C) = `shape` accumulators at addr (zeros when `acc` is 0); `transposed`:
        as a contiguous (C, R) array, the words transposed before decoding (tc.wgr)."""
        if not acc:
            return np.zeros(shape[::-1] if transposed else shape, np.float64)
        words = self.m.u16(space, addr, shape[0] * shape[1]).reshape(shape)
        return acc_decode_t(words, self.accf) if transposed else acc_decode(words, self.accf)

    def _acc_out(
        self, space: str, addr: int, vals: np.ndarray, fin: int, stream: str,
        transposed: bool = False,
    ) -> None:  # fmt: skip
        """Store the accumulators `vals` (R, C), or (C, R) when `transposed`, at addr: FP8
        results through the SRUs when `fin`, else the accumulator words."""
        if fin:
            vals = vals.T if transposed else vals
            # FP16 accumulators are exact in float32: a stream whose one-pass kernel rounds
            # float64 values takes them as they are (the same codes), `tensor_bits` float32
            direct = self._rne_direct and self.srus.rounds_values(stream)
            vals = vals if direct else vals.astype(np.float32)
            codes = self.srus.round(stream, vals, (space, addr))
            self.m.view(space, addr, codes.size)[:] = codes.reshape(-1)
        elif transposed:  # the codes, not the values, are transposed
            self.m.u16(space, addr, vals.size).reshape(vals.shape[::-1])[:] = acc_encode_t(
                vals, self.accf
            )
        else:
            self.m.u16(space, addr, vals.size)[:] = acc_encode(vals, self.accf).reshape(-1)

    def _weights(self, d: Descriptor, rb: int, k_n: int, row: int) -> np.ndarray:
        """(k_n, taps, row) weight codes at wgt address rb."""
        return self.m.view("wgt", rb, k_n * d.taps * row).reshape(k_n, d.taps, row).copy()

    def _group_mask(self, d: Descriptor, gm: int, w: np.ndarray) -> np.ndarray:
        """Weights with the zero Lasso groups (mask bytes at gm, [k][c group]) zeroed."""
        if not (d.wsparse and self.m.mode.wsparse):
            return w
        gc = self.m.ws_gc
        kn, _, row = w.shape
        ng = -(-row // gc)
        mask = self.m.view("msk", gm, kn * ng).reshape(kn, ng).astype(bool)
        keep = np.repeat(mask, gc, axis=1)[:, :row]
        return np.where(keep[:, None, :], w, 0).astype(np.uint8)

    def _gate(self, d: Descriptor, rm: int, npix: int, kn: int) -> np.ndarray | None:
        """(npix, kn) bool gate of the tile's outputs, or None when gating does not apply."""
        bits = self._gate_bits(d, rm, npix, kn)
        return None if bits is None else np.repeat(bits, d.cg_group, axis=1)

    def _gate_bits(self, d: Descriptor, rm: int, npix: int, kn: int) -> np.ndarray | None:
        """(npix, kn / cg_group) bool: the gate of each group of the tile's outputs, or None
        when gating does not apply."""
        if not (d.gate and self.m.mode.gating):
            return None
        g = d.cg_group
        if kn % g:
            raise FunctionalError(f"gated tile of {kn} channels is not whole groups of {g}")
        return self.m.view("msk", rm, npix * (kn // g)).reshape(npix, kn // g).astype(bool)

    @staticmethod
    def _check(d: Descriptor, op: str) -> None:
        if d.kind not in ("conv", "fc"):
            raise FunctionalError(f"{op}: descriptor kind {d.kind} is not conv/fc")
        if d.groups < 1 or d.c % d.groups or d.k % d.groups:
            raise FunctionalError(f"{op}: {d.groups} groups do not divide c {d.c}, k {d.k}")
        if d.groups > 1 and (d.gate or d.wsparse):
            raise FunctionalError(
                f"{op}: gating or weight sparsity of a grouped convolution is not modelled"
            )

    def _tile(self, a: dict[str, int], d: Descriptor, op: str) -> tuple[int, ...]:
        """(k0, kn, c0, cn, p0, pn) of a tensor-core op, checked against its descriptor (a
        grouped conv's tile: whole groups of outputs, channels c0 within the group)."""
        self._check(d, op)
        m = self.m
        k0, kn, c0, cn = m.reg(a["rk"]), a["kn"], m.reg(a["rc"]), a["cn"]
        p0, pn = m.reg(a["rp"]), a["pn"]
        if c0 + cn > d.c // d.groups or k0 + kn > d.k or p0 + pn > d.oh:
            raise FunctionalError(f"{op} tile k{k0}+{kn} c{c0}+{cn} p{p0}+{pn} out of range")
        kg = d.k // d.groups
        if d.groups > 1 and (k0 % kg or kn % kg):
            raise FunctionalError(
                f"{op} tile k{k0}+{kn} is not whole groups of {kg} output channels"
            )
        return k0, kn, c0, cn, p0, pn

    def _rows(self, d: Descriptor, addr: int, p0: int, pn: int, cols: int) -> np.ndarray:
        """The buffer bytes of the input rows output rows [p0, p0+pn) need (bounds checked):
        rows from max(0, p0 stride - pad) with `cols` channels each."""
        first = p0 * d.stride - d.pad
        last = (p0 + pn - 1) * d.stride - d.pad + d.kh  # exclusive
        r0, r1 = max(0, first), min(d.h, last)
        return self.m.view("act", addr, (r1 - r0) * d.w * cols)

    # -- the ops
    def fwd(self, a: dict[str, int], d: Descriptor, pass_: str) -> None:
        _, kn, c0, cn, p0, pn = self._tile(a, d, "tc.fwd")
        if d.groups > 1:
            self._fwd_grouped(a, d, kn, c0, cn, p0, pn)
            return
        m = self.m
        X = self._patches(self._rows(d, m.reg(a["ra"]), p0, pn, d.c), d, p0, pn, c0, cn)
        P = pn * d.ow
        ro = m.reg(a["ro"])
        words = None
        if self._words and not a["fin"]:  # the kernel keeps the words (X is a copy)
            words = m.u16("act", ro, P * kn).reshape(P, kn)
        else:
            acc = self._acc_in("act", ro, (P, kn), a["acc"])
        active = None
        if pass_ == "cond":
            active = self._gate(d, m.reg(a["rm"]), P, kn)
        rb = m.reg(a["rb"])

        def build() -> np.ndarray:
            W = self._group_mask(d, a["gm"], self._weights(d, rb, kn, d.c))
            if c0 % self.dp:  # `aligned_chunks`, as the patches
                lay = aligned_chunks(c0, cn, self.dp)
                W = np.where(lay >= 0, W[:, :, c0 + np.maximum(lay, 0)], 0).astype(np.uint8)
                return W.reshape(kn, -1, self.dp)
            return self._chunks(W[:, :, c0 : c0 + cn]).reshape(kn, -1, self.dp)

        key = (0, rb, kn, c0, cn, d.taps, d.c, self.m.ws_gc)
        Wp = self._prepare(key, self._wsource(d, rb, kn, d.c, a["gm"]), build)
        kw = dict(operand_format=self.opf, accumulator_format=self.accf, align_bits=self.align)
        if words is not None:
            tree_accumulate_words(X, Wp, words, from_zero=not a["acc"], active=active, **kw)
            return
        tree_accumulate(X, Wp, acc, active=active, **kw)
        self._acc_out("act", ro, acc, a["fin"], "act")

    def bwd(self, a: dict[str, int], d: Descriptor) -> None:
        _, kn, c0, cn, p0, pn = self._tile(a, d, "tc.bwd")
        m = self.m
        if m.skipped(m.reg(a["rimg"])):
            return
        ow = d.ow
        dy = m.view("err", m.reg(a["ra"]), pn * ow * kn)
        if d.groups > 1:
            self._bwd_grouped(a, d, dy, kn, cn, p0, pn)
            return
        gate = self._gate(d, m.reg(a["rm"]), pn * ow, kn)
        if gate is not None:
            dy = dy.reshape(pn * ow, kn).copy()
            dy[~gate] = 0  # gated outputs have zero error
        if d.wsparse and m.mode.wsparse:
            self._bwd_compacted(a, d, dy, kn, c0, cn, p0, pn, gate is not None)
            return
        # gather form: dX[q] takes, tap by tap, dY[(q + pad - tap) / stride] where it exists
        # (zeros where it does not, and in the last chunk's padding)
        geom = (d.h, d.w, d.kh, d.kw, d.stride, d.pad, d.ow, p0, pn, kn, self.dp)
        starts = self._bwd_runs(*geom)
        if starts is None:
            A = gather(dy, self._bwd_gather_cached(*geom))  # (h w, S, dp)
        else:  # each dX pixel and tap takes one dY pixel's kn channels, or zeros
            knp = -(-kn // self.dp) * self.dp
            A = gather_runs(dy, starts, kn, knp).reshape(d.h * d.w, -1, self.dp)
        npix = d.h * d.w
        ro = m.reg(a["ro"])
        acc = self._acc_in("err", ro, (npix, cn), a["acc"])
        rb = m.reg(a["rb"])

        def build() -> np.ndarray:
            W = self._group_mask(d, a["gm"], self._weights(d, rb, kn, cn))
            B = np.transpose(W, (2, 1, 0))  # (cn, taps, kn)
            return self._chunks(B).reshape(cn, -1, self.dp)

        key = (1, rb, kn, c0, cn, d.taps, cn, self.m.ws_gc)
        Bp = self._prepare(key, self._wsource(d, rb, kn, cn, a["gm"]), build)
        tree_accumulate(
            A,
            Bp,
            acc,
            operand_format=self.opf,
            accumulator_format=self.accf,
            align_bits=self.align,
        )
        self._acc_out("err", ro, acc, a["fin"], "err")

    def _bwd_compacted(self, a, d: Descriptor, dy, kn: int, c0: int, cn: int, p0: int,
                       pn: int, gated: bool) -> None:  # fmt: skip
        """tc.bwd with weight sparsity (isa.spec): the lanes of one Lasso group of input
        channels (gc consecutive c) share the list of output channels k whose group with
        theirs is nonzero; per tap they take those k compacted, in chunks of dp, segment by
        segment (the tile's gate groups where gating applies, else the whole tile), so a
        gated (pixel, group)'s chunks are all zero and skipped."""
        m = self.m
        gc = m.ws_gc
        if c0 % gc:
            raise FunctionalError(f"tc.bwd tile from channel {c0}: not whole Lasso groups of {gc}")
        ng = -(-cn // gc)
        mask = m.view("msk", a["gm"], kn * ng).reshape(kn, ng).astype(bool)
        seg = d.cg_group if gated else kn
        geom = (d.h, d.w, d.kh, d.kw, d.stride, d.pad, d.ow, p0, pn, kn, self.dp)
        npix = d.h * d.w
        ro = m.reg(a["ro"])
        acc = self._acc_in("err", ro, (npix, cn), a["acc"])
        rb = m.reg(a["rb"])
        src = self._wsource(d, rb, kn, cn, a["gm"])
        starts = self._bwd_row_starts(*geom[:-1])  # each dX pixel and tap: its dY row
        # lanes of groups with the same layout take the same row operand: one gather and one
        # kernel call for all of them (each output lane's accumulation is its own)
        by_layout: dict[bytes, list[int]] = {}
        for q in range(ng):
            by_layout.setdefault(mask[:, q].tobytes(), []).append(q)
        for column, qs in by_layout.items():
            lay = _compacted_k(column, seg, self.dp)
            if not len(lay):
                continue  # no nonzero group: these lanes do nothing
            lanes = np.concatenate([np.arange(q * gc, min(cn, (q + 1) * gc)) for q in qs])
            whole = len(lanes) == cn  # every lane, in order: the accumulators as they are
            A = gather_pattern(dy, starts, lay).reshape(npix, -1, self.dp)

            def build(lanes=lanes, lay=lay) -> np.ndarray:
                W = self._group_mask(d, a["gm"], self._weights(d, rb, kn, cn))
                B = np.transpose(W[:, :, lanes], (2, 1, 0))  # (lanes, taps, kn)
                B = np.where(lay >= 0, B[..., np.maximum(lay, 0)], 0).astype(np.uint8)
                return B.reshape(B.shape[0], -1, self.dp)

            key = (3, rb, kn, c0, cn, d.taps, gc, seg, column, tuple(qs))
            acc_q = acc if whole else np.ascontiguousarray(acc[:, lanes])
            tree_accumulate(
                A,
                self._prepare(key, src, build),
                acc_q,
                operand_format=self.opf,
                accumulator_format=self.accf,
                align_bits=self.align,
            )
            if not whole:
                acc[:, lanes] = acc_q
        self._acc_out("err", ro, acc, a["fin"], "err")

    def wgr(self, a: dict[str, int], d: Descriptor) -> None:
        _, kn, c0, cn, p0, pn = self._tile(a, d, "tc.wgr")
        m = self.m
        if m.skipped(m.reg(a["rimg"])):
            return
        P = pn * d.ow
        dy = m.view("err", m.reg(a["ra"]), P * kn).reshape(P, kn)  # read before any write
        if d.groups > 1:
            self._wgr_grouped(a, d, dy, kn, c0, cn, p0, pn)
            return
        gate = self._gate_bits(d, m.reg(a["rm"]), P, kn)
        geom = (d.h, d.w, d.kh, d.kw, d.stride, d.pad, d.ow, p0, pn, cn, self.dp)
        rows = self._rows(d, m.reg(a["rb"]), p0, pn, cn)
        ro = m.reg(a["ro"])
        R = d.taps * cn
        # the accumulators go in and out transposed (below), decoded and encoded as such; or
        # the kernels keep the words, as a transposed view, where the tile does not finish
        # and they cannot overwrite dY before reading it (gate groups read it as they go)
        words = self._words and not a["fin"]
        if words and gate is not None:
            ra = m.reg(a["ra"])
            words = ro + 2 * kn * R <= ra or ra + P * kn <= ro
        if words:
            accT = m.u16("err", ro, kn * R).reshape(kn, R).T
        else:
            accT = self._acc_in("err", ro, (kn, R), a["acc"], transposed=True)
        activeT = None
        if d.wsparse and m.mode.wsparse:  # zero groups' gradients are not computed
            gc = m.ws_gc
            mask = m.view("msk", a["gm"], kn * (cn // gc)).tobytes()
            activeT = _wgr_active_t(mask, kn, cn, d.taps, gc)
        # the rule is symmetric in its operands (products, their order within a step, the
        # fast path's bounds): the patches go in as the row operand and the small dY tile is
        # the one decoded for the kernel, so the accumulators are taken transposed
        starts = self._wgr_starts(*geom)
        kw = dict(operand_format=self.opf, accumulator_format=self.accf, align_bits=self.align)
        if gate is None:
            XT = gather_columns(rows, starts, cn).reshape(d.taps * cn, -1, self.dp)
            dYp = prepare_columns(dy, self.dp, self.opf)
            if words:
                tree_accumulate_words(XT, dYp, accT, from_zero=not a["acc"], active=activeT, **kw)
                return
            tree_accumulate(XT, dYp, accT, active=activeT, **kw)
        elif accumulate_gate_groups(
            rows, starts, cn, dy, gate, d.cg_group, self.dp, accT, activeT, **kw,
            from_zero=words and not a["acc"],
        ):  # fmt: skip
            if words:
                return
        else:  # rounding rules the single call does not cover
            if words:  # (nothing written yet) the loop takes values
                accT = self._acc_in("err", ro, (kn, R), a["acc"], transposed=True)
            self._wgr_gate_loop(rows, starts, cn, dy, gate, d.cg_group, accT, activeT)
        self._acc_out("err", ro, accT, a["fin"], "err", transposed=True)

    def _wgr_gate_loop(self, rows, starts, cn: int, dy, gate, g: int, accT, activeT) -> None:
        """tc.wgr's gate groups one by one in Python: each group reduces over its open
        pixels only, compacted (isa.spec); accT (taps cn, kn) float64, updated."""
        kn = dy.shape[1]
        for j in range(0, kn, g):
            open_ = np.flatnonzero(gate[:, j // g])
            if not len(open_):
                continue
            # the open pixels' columns of the patches, in chunks of dp (zeros after)
            cols = np.full((starts.shape[0], len(open_) + (-len(open_) % self.dp)), -1,
                           np.int32)  # fmt: skip
            cols[:, : len(open_)] = starts[:, open_]
            acc_j = np.ascontiguousarray(accT[:, j : j + g])
            tree_accumulate(
                gather_columns(rows, cols, cn).reshape(accT.shape[0], -1, self.dp),
                prepare_columns(dy[open_, j : j + g], self.dp, self.opf),
                acc_j,
                operand_format=self.opf,
                accumulator_format=self.accf,
                align_bits=self.align,
                active=None if activeT is None else np.ascontiguousarray(activeT[:, j : j + g]),
            )
            accT[:, j : j + g] = acc_j

    # -- grouped convolutions: each group of the tile is an ordinary conv tile of its kg
    # outputs and cg inputs, with the same step order (isa.spec, docs/functional.md)
    def _tree(self, A, B, acc: np.ndarray) -> None:
        tree_accumulate(
            A, B, acc, operand_format=self.opf, accumulator_format=self.accf, align_bits=self.align
        )

    @staticmethod
    @lru_cache(maxsize=64)
    def _grouped_patch_index(*geom: int) -> np.ndarray:
        """(ng, P, S, dp) int32: tc.fwd's A of each group of the tile: the group's channels
        [c0, c0 + cn) (of cg; ng cg channels per pixel in the buffer) under each output pixel
        and tap, in `aligned_chunks`' layout relative to the group's first channel."""
        h, w, kh, kw, stride, pad, ow, p0, pn, ng, cg, c0, cn, dp = geom
        idx = TensorCore._patch_index(h, w, kh, kw, stride, pad, ow, p0, pn, ng * cg, c0, cn, 1)
        lay = aligned_chunks(c0, cn, dp)
        base = np.where(lay >= 0, idx[..., np.maximum(lay, 0)], -1)  # (P, taps, slots)
        shift = (np.arange(ng) * cg)[:, None, None, None]
        out = np.where(base >= 0, base[None] + shift, -1).astype(np.int32)
        out = out.reshape(ng, idx.shape[0], -1, dp)
        out.setflags(write=False)
        return out

    def _fwd_grouped(self, a, d: Descriptor, kn: int, c0: int, cn: int, p0: int, pn: int) -> None:
        m, dp = self.m, self.dp
        kg, cg = d.k // d.groups, d.c // d.groups
        ng = kn // kg
        src = self._rows(d, m.reg(a["ra"]), p0, pn, ng * cg)
        geom = (d.h, d.w, d.kh, d.kw, d.stride, d.pad, d.ow, p0, pn, ng, cg, c0, cn, dp)
        X = gather(src, self._grouped_patch_index(*geom))  # (ng, P, S, dp)
        ro = m.reg(a["ro"])
        acc = self._acc_in("act", ro, (pn * d.ow, kn), a["acc"])
        W = self._weights(d, m.reg(a["rb"]), kn, cg)  # (kn, taps, cg)
        lay = aligned_chunks(c0, cn, dp)
        W = np.where(lay >= 0, W[:, :, c0 + np.maximum(lay, 0)], 0).astype(np.uint8)
        W = W.reshape(kn, -1, dp)
        for j in range(ng):
            ks = slice(j * kg, (j + 1) * kg)
            acc_j = np.ascontiguousarray(acc[:, ks])
            self._tree(X[j], prepare_operand(W[ks], self.opf), acc_j)
            acc[:, ks] = acc_j
        self._acc_out("act", ro, acc, a["fin"], "act")

    @staticmethod
    @lru_cache(maxsize=64)
    def _grouped_bwd_index(*geom: int) -> np.ndarray:
        """(ng, h w, S, dp) int32: tc.bwd's row operand of each group of the tile: the byte of
        the dY tile ((pn ow, ng kg) codes) of the group's kg outputs under each dX pixel and
        tap, in chunks of dp; -1 where that dY pixel does not exist and in the padding."""
        *g, ng, kg, dp = geom
        idx = TensorCore._bwd_gather_cached(*g, kg, dp).astype(np.int64)  # into (pn ow, kg)
        row, kk = np.divmod(idx, kg)
        shift = (np.arange(ng) * kg)[:, None, None, None]
        out = np.where(idx >= 0, row * (ng * kg) + kk + shift, -1).astype(np.int32)
        out.setflags(write=False)
        return out

    def _bwd_grouped(self, a, d: Descriptor, dy, kn: int, cn: int, p0: int, pn: int) -> None:
        """dX accumulators at ro: [row][col][c] of the tile's groups, cn channels each."""
        m, dp = self.m, self.dp
        kg = d.k // d.groups
        ng = kn // kg
        geom = (d.h, d.w, d.kh, d.kw, d.stride, d.pad, d.ow, p0, pn, ng, kg, dp)
        A = gather(dy, self._grouped_bwd_index(*geom))  # (ng, h w, S, dp)
        ro = m.reg(a["ro"])
        acc = self._acc_in("err", ro, (d.h * d.w, ng * cn), a["acc"])
        W = self._weights(d, m.reg(a["rb"]), kn, cn)  # (kn, taps, cn)
        for j in range(ng):
            B = np.transpose(W[j * kg : (j + 1) * kg], (2, 1, 0))  # (cn, taps, kg)
            B = self._chunks(B).reshape(cn, -1, dp)
            cs = slice(j * cn, (j + 1) * cn)
            acc_j = np.ascontiguousarray(acc[:, cs])
            self._tree(A[j], prepare_operand(B, self.opf), acc_j)
            acc[:, cs] = acc_j
        self._acc_out("err", ro, acc, a["fin"], "err")

    @staticmethod
    @lru_cache(maxsize=64)
    def _grouped_wgr_index(*geom: int) -> np.ndarray:
        """(ng, taps cn, S, dp) int32: tc.wgr's B of each group of the tile (`_wgr_index` of
        the group's channels [c0, c0 + cn), ng cg channels per pixel in the buffer)."""
        *g, ng, cg, c0, cn, dp = geom
        base = TensorCore._wgr_index_at(*g, ng * cg, c0, cn, dp)
        shift = (np.arange(ng) * cg)[:, None, None, None]
        out = np.where(base >= 0, base[None] + shift, -1).astype(np.int32)
        out.setflags(write=False)
        return out

    def _wgr_grouped(self, a, d: Descriptor, dy, kn: int, c0: int, cn: int, p0: int,
                     pn: int) -> None:  # fmt: skip
        """Gradients at ro: [k][tap][c] of the kn outputs, cn channels (from c0 of the group)."""
        m, dp = self.m, self.dp
        kg, cg = d.k // d.groups, d.c // d.groups
        ng = kn // kg
        src = self._rows(d, m.reg(a["rb"]), p0, pn, ng * cg)
        ro = m.reg(a["ro"])
        acc = self._acc_in("err", ro, (kn, d.taps * cn), a["acc"])
        geom = (d.h, d.w, d.kh, d.kw, d.stride, d.pad, d.ow, p0, pn, ng, cg, c0, cn, dp)
        XT = gather(src, self._grouped_wgr_index(*geom))  # (ng, taps cn, S, dp)
        for j in range(ng):
            ks = slice(j * kg, (j + 1) * kg)
            dyj = self._chunks(np.ascontiguousarray(dy[:, ks].T))  # (kg, S, dp)
            accT = np.ascontiguousarray(acc[ks].T)
            self._tree(XT[j], prepare_operand(dyj, self.opf), accT)
            acc[ks] = accT.T
        self._acc_out("err", ro, acc, a["fin"], "err")
