"""Data semantics of the tensor-core ops `tc.fwd`, `tc.bwd`, `tc.wgr` (docs/isa.md).

Every accumulator takes its contributions as a sequence of dp_width-wide steps of the tree rule
(`simulator.functional.tree`). The order, which the rounding after every step makes visible, is:
- tc.fwd: kernel taps in row-major order, and within a tap the op's input channels
  [rc, rc + cn) in chunks of dp_width (the last chunk zero-padded);
- tc.bwd: for each dX pixel, kernel taps in row-major order (taps whose dY pixel does not exist
  contribute nothing), and within a tap the op's output channels in chunks of dp_width;
- tc.wgr: the op's output pixels in row-major order in chunks of dp_width.
Ops that continue an accumulation (`acc` = 1) append their steps after the earlier ones.
Gated outputs (pass `cond`) keep their accumulator; in BP and WU their error is taken as zero;
zero Lasso groups have their weights taken as zero. With `fin` the FP16 accumulators are
rounded to FP8 by the SRU stream of the op (tc.fwd: act, tc.bwd and tc.wgr: err).
"""

from __future__ import annotations

import numpy as np

from simulator.functional.sru import SRUs
from simulator.functional.state import Descriptor, FunctionalError, Machine
from simulator.functional.tree import tree_accumulate
from simulator.numerics import decode, encode


class TensorCore:
    def __init__(self, m: Machine, srus: SRUs) -> None:
        self.m, self.srus = m, srus
        tc = m.cfg.tensor_core
        self.dp = tc.dp_width
        self.opf, self.accf = tc.operand_format, tc.accumulator_format
        self.align = tc.alignment_width_bits

    # -- helpers
    def _chunks(self, x: np.ndarray) -> np.ndarray:
        """(..., n) codes -> (..., ceil(n / dp), dp), zero-padded."""
        n = x.shape[-1]
        pad = -n % self.dp
        if pad:
            x = np.concatenate([x, np.zeros((*x.shape[:-1], pad), np.uint8)], axis=-1)
        return x.reshape(*x.shape[:-1], -1, self.dp)

    def _acc_in(self, space: str, addr: int, shape: tuple[int, int], acc: int) -> np.ndarray:
        if not acc:
            return np.zeros(shape, np.float64)
        words = self.m.u16(space, addr, shape[0] * shape[1])
        return decode(words.copy(), self.accf).astype(np.float64).reshape(shape)

    def _acc_out(self, space: str, addr: int, vals: np.ndarray, fin: int, stream: str) -> None:
        if fin:
            codes = self.srus.round(stream, vals.astype(np.float32), (space, addr))
            self.m.view(space, addr, codes.size)[:] = codes.reshape(-1)
        else:
            self.m.u16(space, addr, vals.size)[:] = encode(
                vals.astype(np.float32), self.accf
            ).reshape(-1)

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
        if not (d.gate and self.m.mode.gating):
            return None
        g = d.cg_group
        if kn % g:
            raise FunctionalError(f"gated tile of {kn} channels is not whole groups of {g}")
        bits = self.m.view("msk", rm, npix * (kn // g)).reshape(npix, kn // g).astype(bool)
        return np.repeat(bits, g, axis=1)

    @staticmethod
    def _check(d: Descriptor, op: str) -> None:
        if d.kind not in ("conv", "fc"):
            raise FunctionalError(f"{op}: descriptor kind {d.kind} is not conv/fc")
        if d.groups != 1:
            raise FunctionalError(f"{op}: grouped convolutions are not modelled functionally")

    def _padded_rows(
        self, d: Descriptor, ra: int, p0: int, pn: int, cols: int, c0: int, cn: int
    ) -> np.ndarray:
        """Input rows needed by output rows [p0, p0+pn), zero-padded: (rows, w + 2 pad, cn).

        The buffer holds rows from max(0, p0 stride - pad) with `cols` channels each."""
        first = p0 * d.stride - d.pad
        last = (p0 + pn - 1) * d.stride - d.pad + d.kh  # exclusive
        r0, r1 = max(0, first), min(d.h, last)
        x = self.m.view("act", ra, (r1 - r0) * d.w * cols).reshape(r1 - r0, d.w, cols)
        out = np.zeros((last - first, d.w + 2 * d.pad, cn), np.uint8)
        out[r0 - first : r1 - first, d.pad : d.pad + d.w] = x[:, :, c0 : c0 + cn]
        return out

    def _patches(self, d: Descriptor, xp: np.ndarray, pn: int) -> np.ndarray:
        """(pn ow, taps, cn) input codes under each output pixel and tap."""
        ow, s = d.ow, d.stride
        taps = []
        for dy in range(d.kh):
            for dx in range(d.kw):
                taps.append(xp[dy : dy + (pn - 1) * s + 1 : s, dx : dx + (ow - 1) * s + 1 : s])
        return np.stack(taps, axis=2).reshape(pn * ow, d.taps, xp.shape[-1])

    # -- the ops
    def fwd(self, a: dict[str, int], d: Descriptor, pass_: str) -> None:
        self._check(d, "tc.fwd")
        m = self.m
        k0, kn, c0, cn = m.reg(a["rk"]), a["kn"], m.reg(a["rc"]), a["cn"]
        p0, pn = m.reg(a["rp"]), a["pn"]
        if c0 + cn > d.c or k0 + kn > d.k or p0 + pn > d.oh:
            raise FunctionalError(f"tc.fwd tile k{k0}+{kn} c{c0}+{cn} p{p0}+{pn} out of range")
        xp = self._padded_rows(d, m.reg(a["ra"]), p0, pn, d.c, c0, cn)
        X = self._patches(d, xp, pn)  # (P, taps, cn)
        W = self._group_mask(d, a["gm"], self._weights(d, m.reg(a["rb"]), kn, d.c))
        W = W[:, :, c0 : c0 + cn]
        P = pn * d.ow
        ro = m.reg(a["ro"])
        acc = self._acc_in("act", ro, (P, kn), a["acc"])
        active = None
        if pass_ == "cond":
            active = self._gate(d, m.reg(a["rm"]), P, kn)
        tree_accumulate(
            self._chunks(X).reshape(P, -1, self.dp),
            self._chunks(W).reshape(kn, -1, self.dp),
            acc,
            operand_format=self.opf,
            accumulator_format=self.accf,
            align_bits=self.align,
            active=active,
        )
        self._acc_out("act", ro, acc, a["fin"], "act")

    def bwd(self, a: dict[str, int], d: Descriptor) -> None:
        self._check(d, "tc.bwd")
        m = self.m
        if m.skipped(m.reg(a["rimg"])):
            return
        k0, kn, c0, cn = m.reg(a["rk"]), a["kn"], m.reg(a["rc"]), a["cn"]
        p0, pn = m.reg(a["rp"]), a["pn"]
        if c0 + cn > d.c or k0 + kn > d.k or p0 + pn > d.oh:
            raise FunctionalError(f"tc.bwd tile k{k0}+{kn} c{c0}+{cn} p{p0}+{pn} out of range")
        ow = d.ow
        dy = m.view("err", m.reg(a["ra"]), pn * ow * kn).reshape(pn * ow, kn).copy()
        gate = self._gate(d, m.reg(a["rm"]), pn * ow, kn)
        if gate is not None:
            dy[~gate] = 0  # gated outputs have zero error
        dy = dy.reshape(pn, ow, kn)
        W = self._group_mask(d, a["gm"], self._weights(d, m.reg(a["rb"]), kn, cn))
        # gather form: dX[q] takes, tap by tap, dY[(q + pad - tap) / stride] where it exists
        qy, qx = np.arange(d.h), np.arange(d.w)
        A = np.zeros((d.h, d.w, d.taps, kn), np.uint8)
        t = 0
        for ty in range(d.kh):
            py, vy = np.divmod(qy + d.pad - ty, d.stride)
            oky = (vy == 0) & (py >= p0) & (py < p0 + pn)
            for tx in range(d.kw):
                px, vx = np.divmod(qx + d.pad - tx, d.stride)
                okx = (vx == 0) & (px >= 0) & (px < ow)
                yy, xx = np.nonzero(oky[:, None] & okx[None, :])
                A[yy, xx, t] = dy[py[yy] - p0, px[xx]]
                t += 1
        npix = d.h * d.w
        B = np.transpose(W, (2, 1, 0))  # (cn, taps, kn)
        ro = m.reg(a["ro"])
        acc = self._acc_in("err", ro, (npix, cn), a["acc"])
        tree_accumulate(
            self._chunks(A).reshape(npix, -1, self.dp),
            self._chunks(B).reshape(cn, -1, self.dp),
            acc,
            operand_format=self.opf,
            accumulator_format=self.accf,
            align_bits=self.align,
        )
        self._acc_out("err", ro, acc, a["fin"], "err")

    def wgr(self, a: dict[str, int], d: Descriptor) -> None:
        self._check(d, "tc.wgr")
        m = self.m
        if m.skipped(m.reg(a["rimg"])):
            return
        k0, kn, c0, cn = m.reg(a["rk"]), a["kn"], m.reg(a["rc"]), a["cn"]
        p0, pn = m.reg(a["rp"]), a["pn"]
        if c0 + cn > d.c or k0 + kn > d.k or p0 + pn > d.oh:
            raise FunctionalError(f"tc.wgr tile k{k0}+{kn} c{c0}+{cn} p{p0}+{pn} out of range")
        P = pn * d.ow
        dy = m.view("err", m.reg(a["ra"]), P * kn).reshape(P, kn).copy()
        gate = self._gate(d, m.reg(a["rm"]), P, kn)
        if gate is not None:
            dy[~gate] = 0
        xp = self._padded_rows(d, m.reg(a["rb"]), p0, pn, cn, 0, cn)
        X = self._patches(d, xp, pn).reshape(P, d.taps * cn)  # (P, taps cn)
        ro = m.reg(a["ro"])
        acc = self._acc_in("err", ro, (kn, d.taps * cn), a["acc"])
        if d.wsparse and m.mode.wsparse:  # zero groups' gradients are not computed
            gc = m.ws_gc
            mask = m.view("msk", a["gm"], kn * (cn // gc)).reshape(kn, cn // gc).astype(bool)
            active = np.broadcast_to(np.repeat(mask, gc, axis=1)[:, None, :], (kn, d.taps, cn))
            active = active.reshape(kn, -1)
        else:
            active = None
        tree_accumulate(
            self._chunks(np.ascontiguousarray(dy.T)),
            self._chunks(np.ascontiguousarray(X.T)),
            acc,
            operand_format=self.opf,
            accumulator_format=self.accf,
            align_bits=self.align,
            active=active,
        )
        self._acc_out("err", ro, acc, a["fin"], "err")
