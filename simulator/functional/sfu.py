"""Data semantics of the special-function unit: `sfu` ops and `sgd` (docs/isa.md).

Element tensors are FP8 codes laid out [pixel][channel] (channels innermost); for the pooling
ops the descriptor gives the geometry and `n` / (h w) the channel count of the tile. Results
are rounded to FP8 by the SRU stream of the result's buffer (act: `act`, err: `err`); exact
results (ReLU, max-pool, copy) are unchanged by any rounding.
"""

from __future__ import annotations

import numpy as np

from simulator.functional.fastops import (
    relu_bwd_codes,
    relu_fwd_codes,
    sum_rne_codes,
    value_tables,
    values,
)
from simulator.functional.norm import NORM_OPS, Norm
from simulator.functional.sru import SRUs
from simulator.functional.state import Descriptor, FunctionalError, Machine
from simulator.numerics import decode

BUFS = ("act", "wgt", "err", "msk")
BWD_OPS = frozenset({"relu_bwd", "maxpool_bwd", "avgpool_bwd", "norm_bwd", "norm_bwd_stat"})


class SFU:
    def __init__(self, m: Machine, srus: SRUs) -> None:
        self.m, self.srus = m, srus
        self.fmt = m.cfg.tensor_core.operand_format
        self.accf = m.cfg.tensor_core.accumulator_format
        self.norm = Norm(m, self)
        t64 = value_tables(self.fmt)[1]
        self._tables = {"add": (t64, t64), "loss_mse": (t64, -t64)}  # a - b = a + (-b) exactly

    def _vals(self, buf: str, addr: int, n: int) -> np.ndarray:
        return values(self.m.view(buf, addr, n), self.fmt)

    def _write(self, buf: str, addr: int, vals: np.ndarray) -> None:
        stream = "err" if buf == "err" else "act"
        # FP32 results as they are where the stream rounds by value (no float64 copy)
        vals = vals if self.srus.rounds_values(stream) else np.asarray(vals, np.float64)
        codes = self.srus.round(stream, vals, (buf, addr))
        self.m.view(buf, addr, codes.size)[:] = codes.reshape(-1)

    def rounded(self, kernel, args: tuple, buf: str, addr: int, n: int) -> bool:
        """Store the n results of a `fastops` *_codes kernel (`kernel(*args, codes, *rne)`),
        which rounds them RNE in its own call, where buf's SRU stream rounds RNE into a
        format it handles (`SRUs.rne_args`), as `_write` would store them. False, with
        nothing stored, where the stream does not or a result is a NaN."""
        stream = "err" if buf == "err" else "act"
        p = self.srus.rne_args(stream)
        if p is None or p[-1] != 7:  # the codes array is 8-bit
            return False
        codes = np.empty(n, np.uint8)
        if kernel(*args, codes, *p):
            return False
        self.srus.rne_written((buf, addr), n)
        self.m.view(buf, addr, n)[:] = codes
        return True

    def _sum(self, name: str, bufa, ra, bufb, rb, bufo, ro, n: int) -> None:
        """add / loss_mse: a + b or a - b in float64, rounded by the result's stream (RNE in
        the pass that adds, `sum_rne_codes`, where it applies)."""
        va, vb = self.m.view(bufa, ra, n), self.m.view(bufb, rb, n)
        if self.rounded(sum_rne_codes, (va, vb, *self._tables[name]), bufo, ro, n):
            return
        x, y = values(va, self.fmt), values(vb, self.fmt)
        self._write(bufo, ro, x + y if name == "add" else x - y)

    def op(self, a: dict[str, int], name: str, d: Descriptor | None) -> None:
        m = self.m
        bufa, bufb, bufo = BUFS[a["bufa"]], BUFS[a["bufb"]], BUFS[a["bufo"]]
        regs = m.regs
        ra, rb, ro, n = regs[a["ra"]], regs[a["rb"]], regs[a["ro"]], a["n"]
        img = regs[a["rimg"]]
        if (name in BWD_OPS or (name == "add" and bufo == "err")) and m.skipped(img):
            return  # BP work of a skipped image is not issued
        if name == "zero":
            # esz bytes each; 0: FP16 accumulators (2 bytes) of a conv/fc descriptor, else 1
            width = a.get("esz", 0) or (2 if d is not None and d.kind in ("conv", "fc") else 1)
            m.view(bufo, ro, width * n)[:] = 0
            return
        if name == "copy":
            m.view(bufo, ro, n)[:] = m.view(bufa, ra, n)
            return
        if name == "relu_fwd":
            # negative (and -0) -> +0, into a new array: the output may overlap the input
            m.view(bufo, ro, n)[:] = relu_fwd_codes(m.view(bufa, ra, n))
            return
        if name == "relu_bwd":  # one pass into a new array: the output may overlap either input
            t64 = value_tables(self.fmt)[1]
            m.view(bufo, ro, n)[:] = relu_bwd_codes(m.view(bufa, ra, n), m.view(bufb, rb, n), t64)
            return
        if name == "add" or name == "loss_mse":
            self._sum(name, bufa, ra, bufb, rb, bufo, ro, n)
            return
        if name in NORM_OPS:
            self.norm.op(name, a, d, (bufa, bufb, bufo, BUFS[a.get("bufc", 0)]))
            return
        if name in ("maxpool_fwd", "maxpool_bwd", "avgpool_fwd", "avgpool_bwd"):
            if d is None:
                raise FunctionalError(f"sfu {name}: no layer descriptor")
            self._pool(name, d, bufa, ra, bufb, rb, bufo, ro, n)
            return
        raise FunctionalError(f"sfu {name}: not modelled by the functional simulator")

    def _pool(self, name, d, bufa, ra, bufb, rb, bufo, ro, n) -> None:
        m = self.m
        oh, ow, pin, pout = d.oh, d.ow, d.h * d.w, d.oh * d.ow
        fwd = name.endswith("fwd")
        cn = n // (pin if fwd else pout)
        if cn * (pin if fwd else pout) != n:
            raise FunctionalError(f"sfu {name}: n={n} is not whole channels of the window grid")
        tiled = d.stride == d.kh == d.kw and d.pad == 0 and d.h == oh * d.kh and d.w == ow * d.kw
        win = []  # per tap: (valid (oh, ow), input row, input col)
        for ty in range(0 if tiled else d.kh):  # the tiled cases below need no window list
            for tx in range(d.kw):
                iy = np.arange(oh) * d.stride - d.pad + ty
                ix = np.arange(ow) * d.stride - d.pad + tx
                ok = ((iy >= 0) & (iy < d.h))[:, None] & ((ix >= 0) & (ix < d.w))[None, :]
                win.append((ok, np.clip(iy, 0, d.h - 1), np.clip(ix, 0, d.w - 1)))
        if name == "maxpool_fwd" and tiled:
            # windows tile the input: the taps are a reshape (tap ty kw + tx), nothing padded
            x = self._vals(bufa, ra, n).reshape(oh, d.kh, ow, d.kw, cn)
            stack = x.transpose(1, 3, 0, 2, 4).reshape(d.taps, oh, ow, cn)
            arg = np.argmax(stack, axis=0)  # first maximum in tap order
            self._write(bufo, ro, np.max(stack, axis=0))
            m.view(bufb, rb, arg.size)[:] = arg.reshape(-1).astype(np.uint8)
        elif name == "maxpool_bwd" and tiled:
            e = self._vals(bufa, ra, n).reshape(oh, ow, cn)
            arg = m.view(bufb, rb, n).reshape(oh, ow, cn)
            taps = np.arange(d.taps).reshape(d.kh, d.kw, 1, 1, 1)
            out = np.where(arg[None, None] == taps, e[None, None], 0.0) + 0.0  # one input each
            out = out.transpose(2, 0, 3, 1, 4).reshape(d.h, d.w, cn)
            self._write(bufo, ro, out)
        elif name == "maxpool_fwd":
            x = self._vals(bufa, ra, n).reshape(d.h, d.w, cn)
            stack = np.stack([np.where(ok[..., None], x[iy][:, ix], -np.inf) for ok, iy, ix in win])
            arg = np.argmax(stack, axis=0)  # first maximum in tap order
            self._write(bufo, ro, np.max(stack, axis=0))
            m.view(bufb, rb, arg.size)[:] = arg.reshape(-1).astype(np.uint8)
        elif name == "maxpool_bwd":
            e = self._vals(bufa, ra, n).reshape(oh, ow, cn)
            arg = m.view(bufb, rb, n).reshape(oh, ow, cn)
            out = np.zeros((d.h, d.w, cn))
            for t, (ok, iy, ix) in enumerate(win):
                sel = (arg == t) & ok[..., None]
                yy, xx, cc = np.nonzero(sel)
                np.add.at(out, (iy[yy], ix[xx], cc), e[yy, xx, cc])
            self._write(bufo, ro, out)
        elif name == "avgpool_fwd" and tiled:
            # windows tile the input: the window sums are exact in float64 in any order
            x = self._vals(bufa, ra, n).reshape(oh, d.kh, ow, d.kw, cn)
            self._write(bufo, ro, x.sum(axis=(1, 3)) / d.taps)
        elif name == "avgpool_bwd" and tiled:
            # one window per input: its error is the window's quotient
            e = self._vals(bufa, ra, n).reshape(oh, 1, ow, 1, cn) / d.taps
            out = np.broadcast_to(e, (oh, d.kh, ow, d.kw, cn)).reshape(d.h, d.w, cn)
            self._write(bufo, ro, out + 0.0)
        elif name == "avgpool_fwd":
            x = self._vals(bufa, ra, n).reshape(d.h, d.w, cn)
            tot = sum(np.where(ok[..., None], x[iy][:, ix], 0.0) for ok, iy, ix in win)
            self._write(bufo, ro, tot / d.taps)
        else:  # avgpool_bwd
            e = self._vals(bufa, ra, n).reshape(oh, ow, cn) / d.taps
            out = np.zeros((d.h, d.w, cn))
            for ok, iy, ix in win:
                yy, xx = np.nonzero(ok)
                np.add.at(out, (iy[yy], ix[xx]), e[yy, xx])
            self._write(bufo, ro, out)

    def sgd(self, a: dict[str, int]) -> None:
        """v = momentum v + g + wd w; w = w - lr v, in float32 arithmetic (one rounding per
        operation, in this order), v and w then rounded by the `mom` and `wgt` streams."""
        m = self.m
        n = a["n"]
        rw, rg, rv = m.reg(a["rw"]), m.reg(a["rg"]), m.reg(a["rv"])
        w = decode(m.view("wgt", rw, n).copy(), self.fmt)
        g = decode(m.u16("err", rg, n).copy(), self.accf)
        v = decode(m.view("err", rv, n).copy(), self.fmt)
        mom, wd, lr = np.float32(m.sgd_momentum), np.float32(m.sgd_wd), np.float32(m.sgd_lr)
        t = (mom * v + g) + wd * w
        vq = self.srus.round("mom", t.astype(np.float32), ("err", rv))
        vv = decode(vq, self.fmt)
        wq = self.srus.round("wgt", (w - lr * vv).astype(np.float32), ("wgt", rw))
        m.view("err", rv, n)[:] = vq
        m.view("wgt", rw, n)[:] = wq
