"""Batch norm on the special-function unit: `norm_stat`, `norm_fwd`, `norm_bwd_stat`,
`norm_bwd` (docs/isa.md, `sfu`).

Tensors are FP8 codes [pixel][channel] with `ch` channels; the statistics are 8 bytes per
channel (FP32 sum, FP32 sum of squares), the gradient sums FP16 (accumulator format) d_gamma
of the channels then d_beta, gamma and beta FP8 in the weight buffer at `pa` and `pa + ch`.
Every operation is FP32 with RNE (numpy float32 scalars and arrays, no fused multiply-add);
the running sums are strictly sequential over the pixels (`fastops.norm_stat_sums`,
`norm_bwd_sums`: unlike `np.sum`, they do not reorder). Where the result's SRU stream rounds
RNE, `norm_fwd` / `norm_bwd` round in the kernel call that computes them (`fastops`, the
`*_codes` kernels: the same codes as rounding the FP32 results afterwards).
"""

from __future__ import annotations

import numpy as np

from simulator.functional.fastops import (
    norm_bwd_codes,
    norm_bwd_sums,
    norm_bwd_values,
    norm_fwd_codes,
    norm_fwd_values,
    norm_stat_sums,
    rne_codes,
    value_tables,
    values,
)
from simulator.functional.state import Descriptor, FunctionalError, Machine
from simulator.functional.tree import acc_decode

EPS = np.float32(1e-5)
STAT_BYTES = 8  # FP32 sum and sum of squares per channel
NORM_OPS = frozenset({"norm_stat", "norm_fwd", "norm_bwd_stat", "norm_bwd"})
DERIVED_KEPT = 256  # (mean, rstd) results kept (Norm._derived): more than a network's norms


def derived(s: np.ndarray, q: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean, rstd) per channel from the FP32 sums, one rounding per operation."""
    nn = np.float32(count)
    mean = (s / nn).astype(np.float32)
    var = ((q / nn).astype(np.float32) - (mean * mean).astype(np.float32)).astype(np.float32)
    var = np.maximum(var, np.float32(0))
    rstd = (np.float32(1) / np.sqrt((var + EPS).astype(np.float32))).astype(np.float32)
    return mean, rstd


class Norm:
    """The batch-norm ops of one machine; `op` is called by `SFU.op` with decoded fields."""

    def __init__(self, m: Machine, sfu) -> None:
        self.m, self.sfu = m, sfu
        self.fmt = m.cfg.tensor_core.operand_format
        self.accf = m.cfg.tensor_core.accumulator_format
        self.t32 = value_tables(self.fmt)[0]
        # `derived` by (statistics bytes, count): a layer's images read the same bytes, and
        # in backprop several layers' statistics are read in turn
        self._seen: dict[tuple[bytes, int], tuple[np.ndarray, np.ndarray]] = {}

    def _fp8(self, buf: str, addr: int, n: int) -> np.ndarray:
        return values(self.m.view(buf, addr, n), self.fmt, np.float32)

    def _codes(self, buf: str, addr: int, pix: int, ch: int) -> np.ndarray:
        return self.m.view(buf, addr, pix * ch).reshape(pix, ch)

    def _stats(self, buf: str, addr: int, ch: int) -> tuple[np.ndarray, np.ndarray]:
        st = self.m.f32s(buf, addr, 2 * ch).reshape(ch, 2)
        return st[:, 0].copy(), st[:, 1].copy()

    def _derived(self, buf: str, addr: int, ch: int, count: int) -> tuple[np.ndarray, ...]:
        """`derived` of the statistics at addr, kept by the bytes it came from (a pure
        function of them and count; the dict compares keys in full)."""
        key = (self.m.f32s(buf, addr, 2 * ch).tobytes(), count)
        out = self._seen.get(key)
        if out is None:
            if len(self._seen) >= DERIVED_KEPT:
                self._seen.clear()
            out = self._seen[key] = derived(*self._stats(buf, addr, ch), count)
        return out

    def op(self, name: str, a: dict[str, int], d: Descriptor | None, bufs: tuple) -> None:
        m = self.m
        bufa, bufb, bufo, bufc = bufs
        regs = m.regs
        ra, rb, ro, rc = regs[a["ra"]], regs[a["rb"]], regs[a["ro"]], regs[a["rc"]]
        n, ch = a["n"], a["ch"]
        if d is None or d.kind != "norm":
            raise FunctionalError(f"sfu {name}: needs a norm layer descriptor")
        if ch < 1 or n % ch:
            raise FunctionalError(f"sfu {name}: n={n} is not whole pixels of ch={ch} channels")
        pix = n // ch
        count = d.groups * d.h * d.w  # N = B h w values per channel
        if name == "norm_stat":
            x = self._codes(bufa, ra, pix, ch)
            s, q = self._stats(bufo, ro, ch)
            norm_stat_sums(x, self.t32, s, q)  # FP8 squares are exact in FP32
            st = m.f32s(bufo, ro, 2 * ch).reshape(ch, 2)
            st[:, 0] = s
            st[:, 1] = q
            return
        gamma = beta = None
        if name in ("norm_fwd", "norm_bwd"):
            gb = self._fp8("wgt", a["pa"], 2 * ch)  # gamma, then beta
            gamma, beta = gb[:ch], gb[ch:]
        if name == "norm_fwd":  # xh = (x - mean) rstd; y = xh gamma + beta
            mean, rstd = self._derived(bufb, rb, ch, count)
            args = (self._codes(bufa, ra, pix, ch), self.t32, mean, rstd, gamma, beta)
            if not self.sfu.rounded(norm_fwd_codes, args, bufo, ro, n):
                y = np.empty((pix, ch), np.float32)
                norm_fwd_values(*args, y)
                self.sfu._write(bufo, ro, y)
            if m.bits is not None:
                m.norm_words.append((m.pc, m.reg(a["rimg"]), ch, m.bits[bufo][ro : ro + n].copy()))
            return
        if name == "norm_bwd_stat":  # running sums of dy xh and dy, xh = (x - mean) rstd
            mean, rstd = self._derived(bufc, rc, ch, count)
            g = m.u16(bufo, ro, 2 * ch)
            sums = acc_decode(g, self.accf).astype(np.float32)  # FP16: exact in FP32
            sg, sb = sums[:ch].copy(), sums[ch:].copy()
            dy, x = self._codes(bufa, ra, pix, ch), self._codes(bufb, rb, pix, ch)
            norm_bwd_sums(dy, x, self.t32, mean, rstd, sg, sb)
            g[:] = rne_codes(np.concatenate([sg, sb]).astype(np.float32), self.accf)
            return
        if name == "norm_bwd":
            dy, x = self._codes(bufa, ra, pix, ch), self._codes(bufc, rc, pix, ch)
            mean, rstd = self._derived(bufb, rb, ch, count)
            sums = acc_decode(m.u16(bufb, rb + STAT_BYTES * ch, 2 * ch), self.accf)
            sums = sums.astype(np.float32)
            nn = np.float32(count)
            gm, bm = (sums[:ch] / nn).astype(np.float32), (sums[ch:] / nn).astype(np.float32)
            k = (gamma * rstd).astype(np.float32)
            # dx = k ((dy - bm) - xh gm), xh = (x - mean) rstd
            args = (dy, x, self.t32, mean, rstd, k, bm, gm)
            if not self.sfu.rounded(norm_bwd_codes, args, bufo, ro, n):
                out = np.empty((pix, ch), np.float32)
                norm_bwd_values(*args, out)
                self.sfu._write(bufo, ro, out)
            return
        raise FunctionalError(f"sfu {name}: not a norm op")  # pragma: no cover
