"""Data semantics of the sparsity units: channel gating (`cg.gate`), group Lasso (`ws.norm`,
`ws.prune`) and gradient skipping (`gs.decide`)."""

from __future__ import annotations

import numpy as np

from simulator.functional.fastops import group_mean_above
from simulator.functional.state import Descriptor, FunctionalError, Machine
from simulator.functional.tree import acc_decode
from simulator.numerics import decode, get_format


def exact_group_sums(fmt: str, g: int) -> bool:
    """Whether the float64 sum of any g values of `fmt` is exact: every value is a multiple
    of its smallest LSB and below 2**(emax + 1), so g of them need at most (emax + 1) -
    (smallest LSB) + ceil(log2 g) bits."""
    f = get_format(fmt)
    low = f.emin - f.man_bits
    return (f.emax + 1) - low + max(g - 1, 0).bit_length() <= 53


class SparsityUnits:
    def __init__(self, m: Machine) -> None:
        self.m = m
        self.fmt = m.cfg.tensor_core.operand_format
        self.accf = m.cfg.tensor_core.accumulator_format
        self.thrf = m.cfg.cgu.threshold_format
        self._thresholds: dict[int, np.float32] = {}

    def gate(self, a: dict[str, int], d: Descriptor) -> None:
        """Gate bit of (pixel, group) = 1 (compute the conditional pass) iff the mean of the
        group's base partial sums exceeds the layer's threshold. Written in every mode."""
        m = self.m
        kn, pn, g = a["kn"], a["pn"], d.cg_group
        if kn % g:
            raise FunctionalError(f"cg.gate: {kn} channels are not whole groups of {g}")
        npix = pn * d.ow
        acc = acc_decode(m.u16("act", m.reg(a["ra"]), npix * kn), self.accf)
        thr = self._threshold(int(m.u16("wgt", m.reg(a["rt"]), 1)[0]))
        out = m.view("msk", m.reg(a["rm"]), npix * (kn // g))
        if exact_group_sums(self.accf, g):  # exact sums: np.mean's bits in one pass
            out[:] = group_mean_above(acc, g, float(thr))
            return
        mean = acc.reshape(npix, kn // g, g).astype(np.float64).mean(axis=2)
        out[:] = (mean > thr).reshape(-1)

    def _threshold(self, word: int) -> np.float32:
        """The value of a threshold word (a decode per distinct word: every image's gate
        reads its layer's one word)."""
        thr = self._thresholds.get(word)
        if thr is None:
            thr = self._thresholds[word] = decode(np.array([word], np.uint16), self.thrf)[0]
        return thr

    def _tile(self, a: dict[str, int], d: Descriptor) -> tuple[int, int, int]:
        kn, cn, gc = a["kn"], a["cn"], self.m.ws_gc
        if cn % gc:
            raise FunctionalError(f"ws: {cn} input channels are not whole groups of {gc}")
        return kn, cn, gc

    def norm(self, a: dict[str, int], d: Descriptor) -> None:
        """FP32 L2 norm (sum of squares in float64, square root, then float32) per group."""
        m = self.m
        kn, cn, gc = self._tile(a, d)
        w = decode(m.view("wgt", m.reg(a["rw"]), kn * d.taps * cn).copy(), self.fmt)
        w = w.astype(np.float64).reshape(kn, d.taps, cn // gc, gc)
        norms = np.sqrt((w * w).sum(axis=(1, 3))).astype(np.float32)
        m.f32s("err", m.reg(a["rn"]), norms.size)[:] = norms.reshape(-1)

    def prune(self, a: dict[str, int], d: Descriptor) -> None:
        """Group mask = norm >= threshold; with weight sparsity on, zero the other groups."""
        m = self.m
        kn, cn, gc = self._tile(a, d)
        norms = m.f32s("err", m.reg(a["rn"]), kn * (cn // gc)).reshape(kn, cn // gc)
        keep = norms >= np.float32(m.ws_threshold)
        if m.mode.wsparse:
            w = m.view("wgt", m.reg(a["rw"]), kn * d.taps * cn).reshape(kn, d.taps, cn)
            w[:] = np.where(np.repeat(keep, gc, axis=1)[:, None, :], w, 0)
        else:
            keep = np.ones_like(keep)  # the dense baseline prunes nothing
        m.view("msk", m.reg(a["rm"]), keep.size)[:] = keep.reshape(-1)

    def decide(self, a: dict[str, int]) -> None:
        """Skip flag of the image: its prediction (first largest output) is confident (top
        output > threshold) and, for `correct_and_confident`, equals the target's class."""
        m = self.m
        n = a["classes"]
        y = decode(m.view("act", m.reg(a["ra"]), n).copy(), self.fmt)
        t = decode(m.view("act", m.reg(a["rt"]), n).copy(), self.fmt)
        confident = float(y.max()) > m.gs_threshold
        correct = int(np.argmax(y)) == int(np.argmax(t))
        skip = confident and (correct or m.gs_criterion == "confident")
        m.view("msk", m.reg(a["rm"]) + m.reg(a["rimg"]), 1)[0] = int(skip)
