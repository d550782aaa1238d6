"""An independent PyTorch reference of one training step as the chip computes it.

It shares no code with the executor: tensors are torch tensors in torch's layouts, convolutions
are unfolded with `torch.nn.functional.unfold`, the tensor core's tree rule (docs/dot-product.md)
is written again in torch float64 ops, and every rounding goes through
`workloads.recipe.fp8_torch.quantize_torch` (proven equal to `simulator.numerics.quantize`).
What it takes from the program is only the *order* of each reduction (`Schedule`): which
channel passes a forward conv makes, how many output channels one backward op reduces, and
how many output rows one weight-gradient op reduces, since the rounding after every
dp_width-product step makes that order visible. Stochastic rounding takes the SRUs' random
words from the executor's record; with the `tensor_bits` source the record holds only each
result's SRU cycle and lane, and the reference takes the neighbour lane's discarded bits from
its own values (`Reference.tensor_bits`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch
from torch.nn import functional as tfn
from tqdm import tqdm

from isa.compiler import CompiledProgram
from simulator.numerics import get_format
from workloads.graph import MAC_KINDS, LayerGraph
from workloads.recipe.fp8_torch import quantize_torch

ALIAS = frozenset({"flatten", "identity", "dropout", "output"})


@dataclass(frozen=True)
class Schedule:
    """Reduction order of one conv/FC layer."""

    # input-channel ranges of the forward passes, in order (a grouped conv's: within a group)
    fp_passes: tuple[tuple[int, int], ...]
    bp_k_tile: int  # output channels reduced by one data-gradient op
    wu_rows: int  # output rows reduced by one weight-gradient op
    wsparse: bool = False  # group-Lasso pruning applies to the layer


def schedule_from_program(prog: CompiledProgram, graph: LayerGraph) -> dict[str, Schedule]:
    """Read each MAC layer's reduction order from its tensor-core ops."""
    base: dict[str, int] = {}
    bp: dict[str, int] = {}
    wu: dict[str, int] = {}
    ws: set[str] = set()
    for ins, ann in zip(prog.instructions, prog.annotations, strict=True):
        name = ann["layer"]
        if ins.op == "ws.prune":
            ws.add(name)
        if ins.op == "tc.fwd" and ins["pass"] == 1:
            base[name] = ins["cn"]
        elif ins.op == "tc.bwd":
            bp[name] = ins["kn"]
        elif ins.op == "tc.wgr":
            wu[name] = ins["pn"]
    out = {}
    for layer in graph.layers:
        if layer.kind not in MAC_KINDS:
            continue
        c = layer.in_shape[0] // (layer.groups if layer.kind == "conv" else 1)  # of a group
        n = layer.name
        passes = ((0, base[n]), (base[n], c)) if n in base else ((0, c),)
        out[n] = Schedule(passes, bp.get(n, layer.out_shape[0]), wu.get(n, 1), n in ws)
    return out


@dataclass
class Numerics:
    operand: str = "e5m2_chip"
    accumulator: str = "fp16_chip"
    align_bits: int = 24
    dp: int = 8
    r: int = 8  # random bits per stochastic rounding
    rounding: dict[str, str] = field(
        default_factory=lambda: {"act": "rne", "err": "rne", "wgt": "rne", "mom": "rne"}
    )
    source: str = "lfsr"  # the SRUs' random source (`tensor_bits`: the neighbour lane's bits)
    lanes: int = 64  # SRUs rounding one op's results per cycle (sru.units)


class Reference:
    """One training step of `graph` with FP8 weights `w` (torch layout, float32 values)."""

    def __init__(
        self,
        graph: LayerGraph,
        sched: dict[str, Schedule],
        num: Numerics,
        lr: float,
        momentum: float,
        wd: float,
    ) -> None:
        self.g, self.sched, self.num = graph, sched, num
        self.gate_thr: dict[str, float] = {}  # gated layers (gating on) and their thresholds
        self.gate_group = 16
        self.gates: dict[str, torch.Tensor] = {}
        self.prune_threshold: float | None = None  # group-Lasso threshold (pruning on)
        self.prune_gc = 8
        self.lr, self.mom, self.wd = lr, momentum, wd
        fa = get_format(num.accumulator)
        self.acc_emin, self.acc_man = fa.emin, fa.man_bits
        fo = get_format(num.operand)
        self.op_emin = fo.emin

    # -- numerics
    def q8(self, x: torch.Tensor, stream: str, bits: torch.Tensor | None = None) -> torch.Tensor:
        """Round onto the operand format with the stream's rule (and its random words)."""
        mode = self.num.rounding[stream]
        x = x.float().contiguous()
        if mode == "rne":
            return quantize_torch(x, self.num.operand, mode) + 0.0
        if bits is None:
            raise ValueError(f"stream {stream} rounds with {mode}: the reference needs its bits")
        rb = bits.reshape(x.shape).to(torch.int64)
        if self.num.source == "tensor_bits":
            rb = self.tensor_bits(x, rb)
        return quantize_torch(x, self.num.operand, mode, r=self.num.r, random_bits=rb) + 0.0

    def discarded(self, x: torch.Tensor) -> torch.Tensor:
        """floor(d 2^r): the first r bits that rounding x onto the operand format discards
        (m = (k + d) u, u the format's spacing at m; the smallest normal below it)."""
        fo, r = get_format(self.num.operand), self.num.r
        m = x.double().abs()
        m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        _, e = torch.frexp(m)
        lsb = torch.where(e - 1 >= fo.emin, e - 1 - fo.man_bits, fo.emin - fo.man_bits)
        if not fo.subnormals:
            lsb = torch.where(e - 1 >= fo.emin, lsb, fo.emin)
        q = m / torch.pow(2.0, lsb.double())  # k + d, exact (a power of two)
        return torch.floor((q - torch.floor(q)) * 2.0**r).to(torch.int64)

    def tensor_bits(self, x: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        """The `tensor_bits` words of x: each result takes the discarded bits of the result in
        the next lane of its SRU cycle, the cycle's last lane those of its first. `tags` is
        each result's `cycle * lanes + lane` as the executor recorded it."""
        lanes = self.num.lanes
        t = tags.reshape(-1)
        order = torch.argsort(t)
        ts = t[order]
        n = ts.numel()
        pos = torch.arange(n)
        if n > 1 and bool((ts[1:] == ts[:-1]).any()):
            raise ValueError("tensor_bits: two results of this tensor carry the same SRU tag")
        cyc = ts // lanes
        first = torch.ones(n, dtype=torch.bool)
        first[1:] = cyc[1:] != cyc[:-1]
        start = torch.cummax(torch.where(first, pos, 0), 0).values
        if bool(((ts % lanes) != pos - start).any()):
            raise ValueError("tensor_bits: an SRU cycle's results are not all in this tensor")
        last = torch.ones(n, dtype=torch.bool)
        last[:-1] = first[1:]
        partner = torch.where(last, start, pos + 1)
        words = torch.empty_like(ts)
        words[order] = self.discarded(x).reshape(-1)[order][partner]
        return words.reshape(x.shape)

    def _slot(self, v: torch.Tensor, emin: int) -> torch.Tensor:
        _, e = torch.frexp(v.abs())
        return torch.clamp(e.to(torch.int64) - 1, min=emin) + 1

    def step(self, acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor, active=None):
        """One tree step for every (n, k): acc (..., N, K) float64, a (..., N, D), b (..., K, D)
        float64 (leading axes: independent groups of a grouped conv)."""
        big = -(1 << 40)
        prods = a[..., :, None, :] * b[..., None, :, :]
        live = prods != 0
        pslot = (
            self._slot(a, self.op_emin)[..., :, None, :]
            + self._slot(b, self.op_emin)[..., None, :, :]
        )
        emax = torch.where(live, pslot, big).amax(dim=-1)
        aslot = torch.where(acc != 0, self._slot(acc, self.acc_emin), big)
        emax = torch.maximum(emax, aslot)
        g = torch.where(emax == big, 0, emax - self.num.align_bits)  # no addend: any grid

        def trunc(v: torch.Tensor, gg: torch.Tensor) -> torch.Tensor:
            return torch.floor(torch.ldexp(v.abs(), -gg.double())) * torch.sign(v)

        tot = trunc(prods, g[..., None]).sum(dim=-1) + trunc(acc, g)
        # keep 24 bits with a sticky bit (float32 holds them exactly; RNE to 11 bits sees
        # the same value class), then one rounding into the accumulator format
        mag = tot.abs()
        _, n = torch.frexp(mag)
        sh = torch.clamp(n.to(torch.int64) - 24, min=0).double()
        kept = torch.floor(torch.ldexp(mag, -sh))
        low = mag - torch.ldexp(kept, sh)
        kept = kept + ((low != 0) & (torch.remainder(kept, 2) == 0)).double()
        val = torch.sign(tot) * torch.ldexp(kept, sh + g.double())
        q = quantize_torch(val.float(), self.num.accumulator, "rne").double()
        upd = live.any(dim=-1) if active is None else live.any(dim=-1) & active
        return torch.where(upd, q, acc)

    def reduce(self, acc: torch.Tensor, A: torch.Tensor, B: torch.Tensor, active=None):
        """Steps over the last axis of A (..., N, R) and B (..., K, R) in chunks of dp."""
        dp = self.num.dp
        for s in range(0, A.shape[-1], dp):
            a, b = A[..., s : s + dp], B[..., s : s + dp]
            if not bool((a != 0).any()) or not bool((b != 0).any()):
                continue
            acc = self.step(acc, a, b, active)
        return acc

    # -- layers
    def _conv_geom(self, name: str):
        mod = self.g.layer(name)
        if mod.kind == "fc":
            return 1, 1, 1, 0
        return mod.kernel[0], mod.kernel[1], mod.stride[0], mod.padding[0]

    def _patches(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """(B, L, taps, C) input values under every output pixel and tap."""
        kh, kw, s, p = self._conv_geom(name)
        b, c = x.shape[:2]
        u = tfn.unfold(x, (kh, kw), padding=p, stride=s)  # (B, C taps, L)
        return u.reshape(b, c, kh * kw, -1).permute(0, 3, 2, 1)

    def _groups(self, name: str) -> int:
        """Convolution groups of a MAC layer; gating and pruning apply to ordinary ones only."""
        layer = self.g.layer(name)
        groups = layer.groups if layer.kind == "conv" else 1
        if groups > 1 and (name in self.gate_thr or self.sched[name].wsparse):
            raise ValueError(f"reference: {name}: gating or pruning of a grouped conv")
        return groups

    def conv_fwd(self, x: torch.Tensor, w: torch.Tensor, name: str, bits=None) -> torch.Tensor:
        """bits: random words of the outputs, (B, oh, ow, K) ([row][col][k] per image). Each
        group of a grouped conv is reduced as an ordinary conv of its channels (leading axis
        G of the reductions)."""
        layer = self.g.layer(name)
        k = w.shape[0]
        G = self._groups(name)
        X = self._patches(x, name)  # (B, L, taps, C)
        b, L, taps, c = X.shape
        cg, kg = c // G, k // G
        W = w.reshape(G, kg, cg, taps).permute(0, 1, 3, 2)  # (G, kg, taps, cg)
        acc = torch.zeros(G, b * L, kg, dtype=torch.float64)
        Xf = X.reshape(b * L, taps, G, cg).permute(2, 0, 1, 3)  # (G, N, taps, cg)
        active = None
        for i, (c0, c1) in enumerate(self.sched[name].fp_passes):
            if i == 1 and name in self.gate_thr:
                # the gate: mean of each 16-channel group's base sums above the threshold
                g = self.gate_group
                mean = acc[0].reshape(b * L, k // g, g).mean(dim=2)
                gate = mean > self.gate_thr[name]
                active = gate.repeat_interleave(g, dim=1)
                self.gates[name] = active.reshape(b, L, k)
            # taps in order; within a tap the pass's channels in chunks of the dp-aligned
            # channel blocks (a pass starting inside a block takes that block's rest alone)
            dp = self.num.dp
            cuts = [c0, *range((c0 // dp + 1) * dp, c1, dp), c1]
            for t in range(taps):
                for lo, hi in itertools.pairwise(cuts):
                    acc = self.reduce(acc, Xf[..., t, lo:hi], W[..., t, lo:hi], active)
        y = self.q8(acc.permute(1, 0, 2).reshape(b * L, k), "act", bits)
        oh, ow = layer.out_shape[1:] if len(layer.out_shape) == 3 else (1, 1)
        return y.reshape(b, oh, ow, k).permute(0, 3, 1, 2)

    def conv_bwd(self, dy: torch.Tensor, w: torch.Tensor, name: str, xshape, bits=None):
        """bits: random words of dX, (B, h, w, C)."""
        kh, kw, s, p = self._conv_geom(name)
        b, k, oh, ow = dy.shape
        c, h, wd = xshape[1:]
        qy, qx = torch.arange(h), torch.arange(wd)
        kt = self.sched[name].bp_k_tile
        G = self._groups(name)
        if G > 1:  # the ops hold whole groups: each dX channel reduces its group's outputs
            if kt % (k // G):
                raise ValueError(f"reference: {name}: BP k-tile {kt} splits a group")
            kt = k
        acc = torch.zeros(G, b * h * wd, c // G, dtype=torch.float64)
        lists = None
        if self.prune_threshold is not None and self.sched[name].wsparse:
            gc = self.prune_gc
            seg = self.gate_group if name in self.gate_thr else kt
            # a group is nonzero when one of its codes is (the group map the program loads)
            nz = ((w != 0) | torch.signbit(w)).reshape(k, c // gc, -1).any(dim=2)  # (K, groups)
            lists = {}
            for k0 in range(0, k, kt):
                lists[k0] = [
                    (
                        (q * gc, (q + 1) * gc),
                        [
                            [j - k0 for j in range(s0, min(s0 + seg, k0 + kt, k)) if nz[j, q]]
                            for s0 in range(k0, k0 + kt, seg)
                        ],
                    )
                    for q in range(c // gc)
                ]
        for k0 in range(0, k, kt):
            for ty in range(kh):
                py = qy + p - ty
                oky = (py % s == 0) & (py >= 0) & (py // s < oh)
                iy = torch.clamp(py // s, 0, oh - 1)
                for tx in range(kw):
                    px = qx + p - tx
                    okx = (px % s == 0) & (px >= 0) & (px // s < ow)
                    ix = torch.clamp(px // s, 0, ow - 1)
                    g = dy[:, k0 : k0 + kt][:, :, iy][:, :, :, ix]  # (B, kt, h, w)
                    g = g * (oky[:, None] & okx[None, :])
                    A = g.permute(0, 2, 3, 1).reshape(b * h * wd, G, -1).permute(1, 0, 2)
                    B = w[k0 : k0 + kt, :, ty, tx].reshape(G, -1, c // G).transpose(1, 2)
                    # A (G, N, kt / G), B (G, C / G, kt / G)
                    if lists is None:
                        acc = self.reduce(acc, A, B)
                        continue
                    # weight sparsity: each Lasso group of input channels takes the k of its
                    # nonzero groups, compacted, segment by segment (gate groups if gated)
                    for (c0, c1), segs in lists[k0]:
                        for ks in segs:
                            acc[..., c0:c1] = self.reduce(
                                acc[..., c0:c1], A[..., ks], B[:, c0:c1][..., ks]
                            )
        acc = acc.permute(1, 0, 2).reshape(b * h * wd, c)
        return self.q8(acc, "err", bits).reshape(b, h, wd, c).permute(0, 3, 1, 2)

    def conv_wgr(self, dy: torch.Tensor, x: torch.Tensor, name: str, keep) -> torch.Tensor:
        """FP16 gradient values (K, taps C / groups) in [k][tap][c] order, images in order."""
        X = self._patches(x, name)  # (B, L, taps, C)
        b, L, taps, c = X.shape
        k = dy.shape[1]
        ow = dy.shape[3] if dy.dim() == 4 else 1
        D = dy.reshape(b, k, L)
        rows = self.sched[name].wu_rows
        G = self._groups(name)
        cg = c // G
        acc = torch.zeros(G, k // G, taps * cg, dtype=torch.float64)
        gates = self.gates.get(name)  # (B, L, K) open outputs, with gating on
        g = self.gate_group
        for i in range(b):
            if not keep[i]:
                continue
            for p0 in range(0, L, rows * ow):
                A = D[i, :, p0 : p0 + rows * ow].reshape(G, k // G, -1)  # (G, kg, pixels)
                Xi = X[i, p0 : p0 + rows * ow].reshape(-1, taps, G, cg)
                B = Xi.permute(2, 1, 3, 0).reshape(G, taps * cg, -1)  # (G, taps cg, pixels)
                if gates is None:
                    acc = self.reduce(acc, A, B)
                    continue
                # a gate group's outputs reduce over its open pixels only, in order
                for k0 in range(0, k, g):
                    open_ = gates[i, p0 : p0 + rows * ow, k0]
                    acc[:, k0 : k0 + g] = self.reduce(acc[:, k0 : k0 + g],
                                                      A[:, k0 : k0 + g][..., open_],
                                                      B[..., open_])  # fmt: skip
        return acc.reshape(k, taps * cg)

    @staticmethod
    def _windows(x: torch.Tensor, layer) -> torch.Tensor:
        kh, kw = layer.kernel
        return tfn.unfold(x, (kh, kw), padding=layer.padding[0], stride=layer.stride[0])

    # -- batch norm and average pooling (the SFU's definitions in isa.spec `sfu`, re-written)
    @staticmethod
    def _running(start: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """start + rows[0] + rows[1] + ... in float32, one addition at a time."""
        acc = start.float().clone()
        for row in rows.float():
            acc = acc + row
        return acc

    @staticmethod
    def _bn_scale(s: torch.Tensor, q: torch.Tensor, count: int):
        cnt = torch.tensor(float(count), dtype=torch.float32)
        mean = s / cnt
        var = torch.clamp(q / cnt - mean * mean, min=0.0)
        rstd = 1.0 / torch.sqrt(var + torch.tensor(1e-5, dtype=torch.float32))
        return mean, rstd

    def bn_fwd(self, x: torch.Tensor, gb: torch.Tensor, bits=None):
        """x (B, C, H, W) FP8 values, gb (2, C) gamma, beta: the FP8 output and (mean, rstd)
        of the batch's statistics (sums over images, then pixels row-major)."""
        b, c, h, w = x.shape
        rows = x.float().permute(0, 2, 3, 1).reshape(-1, c)
        zero = torch.zeros(c, dtype=torch.float32)
        s, q = self._running(zero, rows), self._running(zero, rows * rows)
        mean, rstd = self._bn_scale(s, q, b * h * w)
        xh = (x.float() - mean[:, None, None]) * rstd[:, None, None]
        y = xh * gb[0][:, None, None] + gb[1][:, None, None]
        return self.q8(y, "act", bits), (mean, rstd)

    def bn_bwd(self, dy, x, gb, stats, keep, bits=None):
        """The FP8 data gradient and the FP16 gradient sums (2, C) of gamma and beta: per
        image (one SFU op each) a float32 running sum from the FP16 value, rounded to FP16."""
        b, c, h, w = x.shape
        mean, rstd = stats
        cnt = torch.tensor(float(b * h * w), dtype=torch.float32)
        dy = dy.float()
        xh = (x.float() - mean[:, None, None]) * rstd[:, None, None]
        sg = torch.zeros(c, dtype=torch.float32)
        sb = torch.zeros(c, dtype=torch.float32)
        for i in range(b):
            if not keep[i]:
                continue  # a skipped image's error is zero
            d = dy[i].permute(1, 2, 0).reshape(-1, c)
            p = (dy[i] * xh[i]).permute(1, 2, 0).reshape(-1, c)
            sg = quantize_torch(self._running(sg, p), self.num.accumulator, "rne") + 0.0
            sb = quantize_torch(self._running(sb, d), self.num.accumulator, "rne") + 0.0
        k = (gb[0] * rstd)[:, None, None]
        dx = k * ((dy - (sb / cnt)[:, None, None]) - xh * (sg / cnt)[:, None, None])
        return self.q8(dx, "err", bits), torch.stack([sg, sb])

    @staticmethod
    def _pool_geom(la, x: torch.Tensor):
        if la.kernel is not None:
            return tuple(la.kernel), la.stride[0], la.padding[0]
        oh = la.out_shape[1]
        k = x.shape[2] // oh
        return (k, x.shape[3] // la.out_shape[2]), k, 0

    def avgpool_fwd(self, x: torch.Tensor, la, bits=None) -> torch.Tensor:
        """Window sums exact (float64 holds them), quotient by kh kw in float64, then FP8."""
        (kh, kw), st, pad = self._pool_geom(la, x)
        b, c = x.shape[:2]
        win = tfn.unfold(x.double(), (kh, kw), padding=pad, stride=st)
        mean = win.reshape(b, c, kh * kw, -1).sum(dim=2) / (kh * kw)
        return self.q8(mean.reshape(b, c, *la.out_shape[1:]), "act", bits)

    def avgpool_bwd(self, e: torch.Tensor, x: torch.Tensor, la, bits=None) -> torch.Tensor:
        (kh, kw), st, pad = self._pool_geom(la, x)
        b, c = x.shape[:2]
        share = (e.double() / (kh * kw)).reshape(b, c, 1, -1).expand(b, c, kh * kw, -1)
        dx = tfn.fold(share.reshape(b, c * kh * kw, -1), x.shape[2:], (kh, kw), padding=pad,
                      stride=st)  # fmt: skip
        return self.q8(dx, "err", bits)

    # -- the step
    def run(
        self,
        w8: dict[str, torch.Tensor],
        x8: torch.Tensor,
        t8: torch.Tensor,
        gskip: bool = False,
        gs_threshold: float = 0.9,
        gs_criterion: str = "correct_and_confident",
        v8: dict[str, torch.Tensor] | None = None,
        bits: dict[str, torch.Tensor] | None = None,
        norms8: dict[str, torch.Tensor] | None = None,
        progress: bool = False,
    ):
        """Returns (updated FP8 weight values, FP16 gradient values, activations, errors).

        `bits`: random words per tensor for stochastic streams, keyed "act:L", "err:L" (the
        chip's per-image [row][col][channel] order) and "w:L", "v:L" ([k][tap][c]), "bn:L", "bnv:L".
        `norms8`: FP8 gamma and beta (2, C) of every batch norm; their updated values and FP16
        gradient sums go to `self.norm_out`, `self.norm_grads`. `progress`: a bar per pass on
        stderr when it is a terminal (the emulated tree rule makes a deep net's reference take
        minutes)."""
        bits = bits or {}
        norms8 = norms8 or {}

        def nchw_bits(key: str):
            t = bits.get(key)
            return None if t is None or t.dim() != 4 else t.permute(0, 3, 1, 2)

        acts: dict[str, torch.Tensor] = {}
        side: dict[str, torch.Tensor] = {}
        layers = {la.name: la for la in self.g.layers}

        def real(n: str) -> str:
            while layers[n].kind in ALIAS:
                n = layers[n].inputs[0]
            return n

        def hwc_vec(t: torch.Tensor) -> torch.Tensor:
            return t.permute(0, 2, 3, 1).reshape(t.shape[0], -1) if t.dim() == 4 else t

        quiet = None if progress else True  # None: tqdm shows the bar on a terminal only
        for la in tqdm(self.g.layers, "reference forward", disable=quiet, leave=False):
            if la.kind in ALIAS:
                continue
            if la.kind == "input":
                acts[la.name] = x8
                continue
            x = acts[real(la.inputs[0])]
            if la.kind == "conv":
                acts[la.name] = self.conv_fwd(x, w8[la.name], la.name, bits.get(f"act:{la.name}"))
            elif la.kind == "fc":
                xv = hwc_vec(x)[:, :, None, None]
                wc = self._fc_w(la, w8[la.name])
                acts[la.name] = self.conv_fwd(xv, wc, la.name, bits.get(f"act:{la.name}")).flatten(
                    1
                )
            elif la.kind == "relu":
                acts[la.name] = torch.clamp(x, min=0) + 0.0
            elif la.kind == "add":
                ab = bits.get(f"act:{la.name}")
                ab = None if ab is None else ab.permute(0, 3, 1, 2)
                acts[la.name] = self.q8(x + acts[real(la.inputs[1])], "act", ab)
            elif la.kind == "batchnorm":
                y, side[la.name] = self.bn_fwd(x, norms8[la.name], nchw_bits(f"norm:{la.name}"))
                acts[la.name] = y
            elif la.kind == "avgpool":
                acts[la.name] = self.avgpool_fwd(x, la, nchw_bits(f"act:{la.name}"))
            elif la.kind == "maxpool":
                b, c = x.shape[:2]
                win = self._windows(x, la).reshape(b, c, la.kernel[0] * la.kernel[1], -1)
                val, arg = win.max(dim=2)  # first maximum in tap order
                side[la.name] = arg
                acts[la.name] = val.reshape(b, c, *la.out_shape[1:])
            else:
                raise ValueError(f"reference: layer kind {la.kind} not modelled")
        out = next(la for la in self.g.layers if la.kind == "output")
        logits = real(out.inputs[0])
        y = acts[logits]
        parts: dict[str, dict[str, torch.Tensor]] = {}  # tensor -> consumer -> error part

        def put(name: str, consumer: str, value: torch.Tensor) -> None:
            parts.setdefault(name, {})[consumer] = value

        def merged(name: str) -> torch.Tensor:
            """The error of a tensor: its consumers' parts summed in graph order, as the
            program's merge blocks do (one rounding per addition)."""
            got = parts[name]
            order = [c for c in self._consumers(name, layers) if c in got]
            total = got[order[0]]
            eb = bits.get(f"err:{name}")
            if eb is not None and total.dim() == 4:
                eb = eb.permute(0, 3, 1, 2)
            for c in order[1:]:
                total = self.q8(total + got[c], "err", eb)
            return total

        def ebits(name: str, consumer: str) -> torch.Tensor | None:
            """Random words of the region where `consumer` writes its part of name's error."""
            many = len(self._consumers(name, layers)) > 1
            return bits.get(f"err:{name}@{consumer}" if many else f"err:{name}")

        err: dict[str, torch.Tensor] = {}
        put(logits, "loss", self.q8(y - t8, "err", bits.get(f"err:{logits}")))
        keep = torch.ones(y.shape[0], dtype=torch.bool)
        if gskip:
            conf = y.max(dim=1).values > gs_threshold
            correct = y.argmax(dim=1) == t8.argmax(dim=1)
            keep = ~(conf & (correct | (gs_criterion == "confident")))
        self.keep = keep  # images whose BP and WU run
        grads: dict[str, torch.Tensor] = {}
        norm_grads: dict[str, torch.Tensor] = {}
        backward = tqdm(
            list(reversed(self.g.layers)), "reference backward", disable=quiet, leave=False
        )
        for la in backward:
            if la.kind in ALIAS or la.kind == "input" or la.name not in parts:
                continue
            e = err[la.name] = merged(la.name)
            if la.name in self.gates:  # gated outputs have zero error
                gm = self.gates[la.name].reshape(e.shape[0], *e.shape[2:], e.shape[1])
                e = torch.where(gm.permute(0, 3, 1, 2), e, torch.zeros_like(e))
            src = real(la.inputs[0])
            need = src in layers and self._needs_err(src, layers)
            x = acts[src]
            if la.kind == "conv":
                if need:
                    dx = self.conv_bwd(e, w8[la.name], la.name, x.shape, ebits(src, la.name))
                    put(src, la.name, dx)
                grads[la.name] = self._zero_group_grads(la, self.conv_wgr(e, x, la.name, keep), w8)
            elif la.kind == "fc":
                xv = hwc_vec(x)[:, :, None, None]
                wc = self._fc_w(la, w8[la.name])
                e4 = e[:, :, None, None]
                if need:
                    dx = self.conv_bwd(e4, wc, la.name, xv.shape, ebits(src, la.name)).flatten(1)
                    put(src, la.name, self._from_hwc(dx, x.shape))
                grads[la.name] = self._zero_group_grads(
                    la, self.conv_wgr(e4, xv, la.name, keep), w8
                )
            elif la.kind == "relu":
                put(src, la.name, torch.where(acts[la.name] > 0, e, torch.zeros_like(e)))
            elif la.kind == "add":  # the inputs' errors are the add's (shared storage)
                for i in la.inputs:
                    put(real(i), la.name, e)
            elif la.kind == "batchnorm":
                eb = ebits(src, la.name)
                eb = None if eb is None else eb.permute(0, 3, 1, 2)
                dx, norm_grads[la.name] = self.bn_bwd(
                    e, x, norms8[la.name], side[la.name], keep, eb
                )
                put(src, la.name, dx)
            elif la.kind == "avgpool":
                eb = ebits(src, la.name)
                eb = None if eb is None else eb.permute(0, 3, 1, 2)
                put(src, la.name, self.avgpool_bwd(e, x, la, eb))
            elif la.kind == "maxpool":
                b, c = x.shape[:2]
                taps = la.kernel[0] * la.kernel[1]
                arg = side[la.name]
                ew = e.reshape(b, c, 1, -1) * tfn.one_hot(arg, taps).permute(0, 1, 3, 2)
                dx = tfn.fold(
                    ew.reshape(b, c * taps, -1),
                    x.shape[2:],
                    la.kernel,
                    padding=la.padding[0],
                    stride=la.stride[0],
                )
                eb = ebits(src, la.name)
                eb = None if eb is None else eb.permute(0, 3, 1, 2)
                put(src, la.name, self.q8(dx, "err", eb))
        new_w, new_v = {}, {}
        for name, g in grads.items():
            la = layers[name]
            wc = self._chip_w(la, w8[name])  # (K, taps C) in [k][tap][c]
            v0 = torch.zeros_like(wc) if v8 is None else self._chip_w(la, v8[name])
            # float32 arithmetic, one rounding per operation, in the SFU's order
            t = (self._f32(self.mom) * v0 + g.float()) + self._f32(self.wd) * wc
            v = self.q8(t, "mom", bits.get(f"v:{name}"))
            wn = self.q8(wc - self._f32(self.lr) * v, "wgt", bits.get(f"w:{name}"))
            if self.prune_threshold is not None and self.sched[name].wsparse:
                gc = self.prune_gc
                k = wn.shape[0]
                grp = wn.double().reshape(k, -1, wn.shape[1] // gc // self._taps(la), gc)
                keep = torch.sqrt((grp * grp).sum(dim=(1, 3))).float() >= self.prune_threshold
                wn = (grp * keep[:, None, :, None]).reshape(wn.shape).float() + 0.0
            new_w[name] = self.torch_layout(la, wn, w8[name].shape)
            new_v[name] = self.torch_layout(la, v, w8[name].shape)
        self.momentum_out = new_v
        self.norm_out, self.norm_mom, self.norm_grads = {}, {}, norm_grads
        for name, g in norm_grads.items():  # sgd on [gamma | beta], as on the chip
            wc = norms8[name].float().reshape(-1)
            t = (self._f32(self.mom) * torch.zeros_like(wc) + g.reshape(-1)) + self._f32(
                self.wd
            ) * wc
            v = self.q8(t, "mom", bits.get(f"bnv:{name}"))
            wn = self.q8(wc - self._f32(self.lr) * v, "wgt", bits.get(f"bn:{name}"))
            self.norm_out[name] = wn.reshape(2, -1)
            self.norm_mom[name] = v.reshape(2, -1)
        return new_w, grads, acts, err

    def _zero_group_grads(self, la, g: torch.Tensor, w8) -> torch.Tensor:
        """With pruning on, tc.wgr skips the Lasso groups that are zero at the step's start
        (the group map it loads): their gradients stay zero, and so does their momentum."""
        if self.prune_threshold is None or not self.sched[la.name].wsparse:
            return g
        gc, taps = self.prune_gc, self._taps(la)
        wc = self._chip_w(la, w8[la.name])  # (K, taps C) [k][tap][c]
        k = wc.shape[0]
        shape = (k, taps, wc.shape[1] // taps // gc, gc)
        nz = ((wc != 0) | torch.signbit(wc)).reshape(shape).any(dim=3).any(dim=1)  # (K, groups)
        return (g.reshape(shape) * nz[:, None, :, None]).reshape(g.shape)

    # -- layout helpers
    def _taps(self, la) -> int:
        return la.kernel[0] * la.kernel[1] if la.kind == "conv" else 1

    @staticmethod
    def _f32(v: float) -> torch.Tensor:
        return torch.tensor(v, dtype=torch.float32)

    def _consumers(self, name: str, layers) -> list[str]:
        """Non-alias layers reading tensor `name` in graph order; "loss" for the output."""
        out = []
        for la in self.g.layers:
            srcs = []
            for i in la.inputs:
                while layers[i].kind in ALIAS:
                    i = layers[i].inputs[0]
                srcs.append(i)
            if name in srcs:
                if la.kind == "output":
                    out.append("loss")
                elif la.kind not in ALIAS:
                    out.append(la.name)
        return out

    def _needs_err(self, name: str, layers) -> bool:
        la = layers[name]
        return la.kind in MAC_KINDS or any(self._needs_err(i, layers) for i in la.inputs)

    def _fc_src(self, la):
        layers = {x.name: x for x in self.g.layers}
        n = la.inputs[0]
        while layers[n].kind in ALIAS:
            n = layers[n].inputs[0]
        return layers[n].out_shape

    def _fc_w(self, la, w: torch.Tensor) -> torch.Tensor:
        """FC weights with inputs in [h][w][c] order, as a 1x1 conv (K, F, 1, 1)."""
        src = self._fc_src(la)
        if len(src) == 3:
            c, h, wd = src
            w = w.reshape(w.shape[0], c, h, wd).permute(0, 2, 3, 1).reshape(w.shape[0], -1)
        return w[:, :, None, None]

    def _from_hwc(self, v: torch.Tensor, shape) -> torch.Tensor:
        if len(shape) == 4:
            b, c, h, w = shape
            return v.reshape(b, h, w, c).permute(0, 3, 1, 2)
        return v

    def _chip_w(self, la, w: torch.Tensor) -> torch.Tensor:
        if la.kind == "conv":
            return w.permute(0, 2, 3, 1).reshape(w.shape[0], -1)
        return self._fc_w(la, w)[:, :, 0, 0]

    def torch_layout(self, la, wc: torch.Tensor, shape) -> torch.Tensor:
        if la.kind == "conv":
            k, c, kh, kw = shape
            return wc.reshape(k, kh, kw, c).permute(0, 3, 1, 2)
        src = self._fc_src(la)
        if len(src) == 3:
            c, h, wd = src
            return wc.reshape(shape[0], h, wd, c).permute(0, 3, 1, 2).reshape(shape)
        return wc.reshape(shape)
