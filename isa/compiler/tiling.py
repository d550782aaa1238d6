"""Tile sizes for each layer and phase that respect every buffer capacity of the config.

Tiles divide their dimension exactly (uniform tiles: every loop iteration is alike). Each
search tries double buffering first (every buffer's free space split into two slots) and falls
back to a single slot; among the tilings that fit it takes the least DRAM traffic, then the
fewest steps. Footprints are in bytes: FP8 operands 1 byte, FP16 accumulators 2 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from isa.compiler.memmap import CompileError
from simulator.config import HardwareConfig

ACC_BYTES = 2  # FP16 accumulators
NORM_BYTES = 4  # FP32 group norms / statistics


@dataclass(frozen=True)
class ConvShape:
    """A conv or FC layer as the tensor cores see it (FC: 1x1 image, 1x1 kernel)."""

    name: str
    c: int
    k: int
    h: int
    w: int
    r: int
    s: int
    stride: int
    pad: int
    groups: int

    @property
    def oh(self) -> int:
        return (self.h + 2 * self.pad - self.r) // self.stride + 1

    @property
    def ow(self) -> int:
        return (self.w + 2 * self.pad - self.s) // self.stride + 1

    @property
    def cg(self) -> int:
        return self.c // self.groups

    @property
    def kg(self) -> int:
        return self.k // self.groups

    @property
    def taps(self) -> int:
        return self.r * self.s

    def rows_in(self, pn: int) -> int:
        """Input rows a tile of `pn` output rows reads (upper bound, before clipping)."""
        return min(self.h, (pn - 1) * self.stride + self.r)


def divisors(n: int) -> list[int]:
    """Divisors of n, largest first."""
    return sorted((d for d in range(1, n + 1) if n % d == 0), reverse=True)


def align(n: int, a: int = 16) -> int:
    return -(-n // a) * a


def _slot(cap: int, double: bool) -> int:
    return (cap // 2) // 16 * 16 if double else cap


@dataclass(frozen=True)
class Tiling:
    """kn output channels x cn input channels x pn output rows; `double` = two slots."""

    kn: int
    cn: int
    pn: int
    double: bool
    persistent: dict[str, int]  # bytes kept for the whole block, per buffer (from address 0)
    needs: dict[str, int] = field(default_factory=dict, compare=False)  # bytes per slot

    def slot_bases(self, cfg: HardwareConfig, bufs: tuple[str, ...]) -> dict[str, tuple[int, int]]:
        out = {}
        for b in bufs:
            cap = _cap(cfg, b)
            pers = align(self.persistent.get(b, 0))
            size = _slot(cap - pers, self.double)
            out[b] = (pers, pers + size if self.double else pers)
        return out

    def rotation_bases(
        self, cfg: HardwareConfig, bufs: tuple[str, ...], need: dict[str, int], most: int = 4
    ) -> dict[str, tuple[int, ...]] | None:
        """Addresses of n equal slots per buffer, for the largest n in most..3 at which each
        buffer's slot holds `need` bytes (absent: none) after its persistent data; None
        where not even three fit (the block double-buffers, `slot_bases`)."""
        if not self.double:
            return None
        for n in range(most, 2, -1):
            out = {}
            for b in bufs:
                pers = align(self.persistent.get(b, 0))
                size = (_cap(cfg, b) - pers) // n // 16 * 16
                if size < need.get(b, 0):
                    break
                out[b] = tuple(pers + j * size for j in range(n))
            else:
                return out
        return None


def _cap(cfg: HardwareConfig, buf: str) -> int:
    b = cfg.buffers
    return {
        "act": b.activation.size_bytes,
        "wgt": b.weight.size_bytes,
        "err": b.error.size_bytes,
        "msk": b.mask.size_bytes,
    }[buf]


def _search(name: str, phase: str, cfg: HardwareConfig, candidates, reserved_msk: int) -> Tiling:
    """candidates: iterable of (kn, cn, pn, persistent, slot_needs, cost)."""
    cands = list(candidates)
    for double in (True, False) if cfg.buffers.double_buffered else (False,):
        best = None
        for kn, cn, pn, pers, needs, cost in cands:
            pers = {**pers, "msk": pers.get("msk", 0) + reserved_msk}
            ok = True
            for buf in ("act", "wgt", "err", "msk"):
                free = _cap(cfg, buf) - align(pers.get(buf, 0))
                if free < 0 or needs.get(buf, 0) > _slot(free, double):
                    ok = False
                    break
            if ok and (best is None or cost < best[0]):
                best = (cost, Tiling(kn, cn, pn, double, pers, needs))
        if best is not None:
            return best[1]
    raise CompileError(
        f"layer {name}: no {phase} tiling fits the buffers of config {cfg.name!r} "
        "(even one channel per tile)"
    )


def _k_tiles(sh: ConvShape) -> list[int]:
    return [d for d in divisors(sh.k) if d % sh.kg == 0] if sh.groups > 1 else divisors(sh.k)


def _groups(cfg: HardwareConfig, cn: int) -> int:
    """Lasso group-mask bytes per output channel for cn input channels."""
    return -(-cn // cfg.wsu.group_in_channels)


def fp_tiling(
    sh: ConvShape,
    cfg: HardwareConfig,
    gated: bool,
    reserved_msk: int,
    wsparse: bool = False,
    pool: int = 0,
) -> Tiling:
    """Forward: weights (and their group mask) of a k-tile stay resident; per image, steps
    over row tiles. `pool` > 0: a ReLU and a max-pool of `pool` taps (window = stride, no
    padding) run on each output tile in the buffer (whole images only: pn = oh): the
    ReLU's output and the pooled output follow the accumulators, the argmax the gate mask.
    Cost: DRAM bytes read plus the bandwidth-delay product per step, then fewer steps."""
    group = cfg.cgu.group_size_channels
    # Each step waits for its loads and stores' DRAM round trips (double buffering hides
    # one step, not the latency of every small one): a step costs as much as the bytes the
    # channel could move in its latency (the bandwidth-delay product), so a 1x1 stride-2
    # conv takes whole images (reading the rows it skips) rather than one row per step.
    step_bytes = cfg.dma.dram_bytes_per_cycle * cfg.dma.dram_latency_cycles

    def cands():
        for kn in _k_tiles(sh):
            if gated and kn % group:
                continue  # a gate decision covers whole channel groups
            wbytes = kn * sh.taps * sh.cg
            cload = sh.c if sh.groups == 1 else kn // sh.kg * sh.cg
            for pn in divisors(sh.oh):
                if pool and pn != sh.oh:
                    continue
                x = align(sh.rows_in(pn) * sh.w * cload)
                acc = kn * pn * sh.ow * ACC_BYTES
                gate = pn * sh.ow * -(-kn // group) if gated else 0
                needs = {"act": x + acc, "msk": gate}
                if pool:
                    out = kn * pn * sh.ow
                    needs["act"] = x + align(acc) + align(out) + out // pool
                    needs["msk"] = align(gate) + out // pool
                steps = (sh.k // kn) * (sh.oh // pn)
                cost = (steps * (x + step_bytes), steps)
                pers = {"wgt": align(wbytes) + (16 if gated else 0)}  # + gate threshold
                if wsparse:
                    pers["msk"] = kn * _groups(cfg, sh.cg)
                yield kn, sh.cg, pn, pers, needs, cost

    return _search(sh.name, "forward", cfg, cands(), reserved_msk)


def bp_tiling(
    sh: ConvShape,
    cfg: HardwareConfig,
    reserved_msk: int,
    gated: bool = False,
    wsparse: bool = False,
    pool: int = 0,
    norm: tuple | None = None,
    merge: bool = False,
    res: tuple[int, ...] = (),
) -> Tiling:
    """Backward data: a c-tile of weights (all k, with their group mask) and the image's dX
    accumulators stay resident; steps over k-tiles of the error (the reduction), each with the
    gate mask of its outputs. `pool` > 0: the input is a max-pool (of `pool` taps) of a ReLU,
    whose backward runs on the c-tile's dX (`GraphPlan.bp_pool`): the last k-step's slots
    also hold the pooled activations (act), the masked error and the pool's input error
    (err, after the output errors) and the argmax (msk, after the gate mask).
    `norm` = ("stat", bytes per channel) or ("apply", bytes per channel): a batch norm's
    backward runs in the image loop (`GraphPlan.bp_norm_stat` / `bp_norm_apply`), on whole
    images in one tile; its statistics and sums stay after the accumulators (err) or, when
    applied, after the weights and gamma, beta (wgt); each step also holds two
    activation tensors (act) and the ReLU-masked or normalised error (err).
    `merge`: dX is one of two error parts of a ReLU's output, merged and passed through the
    ReLU in the image loop (`GraphPlan.bp_merge`, one c-tile): the step also holds the other
    part and the ReLU's output (act) and the sum and the ReLU's input error (err).
    `norm` may also be a tuple of such pairs, one "stat" and one "apply" (the block takes one
    norm's sums on dX and applies another to dY): the applied norm's tensors come first in
    act, the sums' after them, and the ReLU-masked dX overwrites dY (read by norm_bwd before
    the tensor cores) when it fits there.
    `res`: with `merge`, the batch norms (bytes per channel of their statistics and sums, in
    wgt after the rest) whose gradient sums accumulate on the ReLU's input error
    (`GraphPlan.bp_res_stat`): the step also holds each one's input x (act)."""
    group, gc = cfg.cgu.group_size_channels, cfg.wsu.group_in_channels
    if norm is not None and isinstance(norm[0], str):
        norm = (norm,)
    kinds = dict(norm or ())
    if res and not merge:
        raise ValueError("bp_tiling: res needs merge")

    def cands():
        if sh.groups > 1:  # group tiles: kn outputs and their kn/kg*cg inputs, no reduction
            for kn in _k_tiles(sh):
                ch = kn // sh.kg * sh.cg
                pers = {"wgt": kn * sh.taps * sh.cg, "err": ch * sh.h * sh.w * ACC_BYTES}
                needs = {"err": kn * sh.oh * sh.ow}
                yield kn, sh.cg, sh.oh, pers, needs, (sh.k // kn, 0)
            return
        for cn in divisors(sh.c):
            if wsparse and cn % gc:
                continue  # the group mask of a c-tile covers whole groups
            pers = {"wgt": sh.k * sh.taps * cn, "err": cn * sh.h * sh.w * ACC_BYTES}
            if wsparse:
                pers["msk"] = sh.k * _groups(cfg, cn)
            for kn in divisors(sh.k):
                if gated and kn % group:
                    continue
                needs = {"err": kn * sh.oh * sh.ow}
                if gated:
                    needs["msk"] = sh.oh * sh.ow * (kn // group)
                tpers = dict(pers)
                if kinds:
                    dy = align(needs["err"])
                    if "apply" in kinds:  # the output errors' channels, one k-step
                        if kn != sh.k or cn != sh.c:
                            continue  # one c-tile too: dY normalised and stored once
                        px = kn * sh.oh * sh.ow
                        # gamma, beta, then the statistics and sums after the weights
                        tpers["wgt"] = align(pers["wgt"]) + align(2 * kn) + kinds["apply"] * kn
                        needs["act"] = 2 * align(px)
                        needs["err"] = dy + px
                    if "stat" in kinds:  # dX's channels: the whole input, one c-tile
                        if cn != sh.c:
                            continue
                        pxi = cn * sh.h * sh.w
                        tpers["err"] = align(pers["err"]) + kinds["stat"] * cn
                        needs["act"] = align(needs.get("act", 0)) + 2 * align(pxi)
                        if "apply" not in kinds:
                            needs["err"] = dy + pxi
                        elif pxi > dy:  # the masked dX after the normalised error
                            needs["err"] = dy + align(kn * sh.oh * sh.ow) + pxi
                if merge:
                    if cn != sh.c:
                        continue
                    px = cn * sh.h * sh.w
                    needs["act"] = align(needs.get("act", 0)) + (1 + len(res)) * align(px) + px
                    if res:
                        tpers["wgt"] = align(tpers["wgt"]) + sum(align(b * cn) for b in res)
                    # the sum overwrites the output errors (dead once the cores read them)
                    # when it fits there
                    sum_px = 0 if px <= align(kn * sh.oh * sh.ow) else align(px)
                    needs["err"] = align(needs["err"]) + sum_px + px
                if pool:
                    pin = cn * sh.h * sh.w
                    needs["act"] = pin
                    needs["err"] = align(needs["err"]) + align(pin) + pin * pool
                    needs["msk"] = align(needs.get("msk", 0)) + pin
                nc, nk = sh.c // cn, sh.k // kn
                yield kn, cn, sh.oh, tpers, needs, (nc, nc * nk)

    return _search(sh.name, "backward", cfg, cands(), reserved_msk)


def wu_tiling(
    sh: ConvShape, cfg: HardwareConfig, wsparse: bool, reserved_msk: int, gated: bool = False
) -> Tiling:
    """Weight gradient: a (k, c) tile of FP16 gradient accumulators (and the tile's group
    mask) stays resident over the batch; per image, steps over row tiles with their gate mask.
    The update step after the batch reuses the slots for the weights and momentum."""
    gc = cfg.wsu.group_in_channels
    group = cfg.cgu.group_size_channels

    def cands():
        kns = _k_tiles(sh)
        cns = [sh.cg] if sh.groups > 1 else divisors(sh.c)
        for kn in kns:
            if gated and kn % group:
                continue
            for cn in cns:
                if wsparse and cn % gc:
                    continue
                cload = kn // sh.kg * sh.cg if sh.groups > 1 else cn
                tile_w = kn * sh.taps * cn
                pers = {"err": tile_w * ACC_BYTES}
                if wsparse:
                    pers["msk"] = kn * _groups(cfg, cn)
                for pn in divisors(sh.oh):
                    x = align(sh.rows_in(pn) * sh.w * cload)
                    dy = align(kn * pn * sh.ow)
                    norms = kn * -(-cn // gc) * NORM_BYTES
                    needs = {
                        "act": x,
                        "err": max(dy, align(tile_w) + norms),
                        "wgt": tile_w,
                        "msk": max(kn * -(-cn // gc), pn * sh.ow * (kn // group) if gated else 0),
                    }
                    ntiles = (sh.k // kn) * (sh.cg // cn if sh.groups == 1 else 1)
                    steps = ntiles * (sh.oh // pn)
                    yield kn, cn, pn, pers, needs, (steps * (x + dy), steps)

    return _search(sh.name, "weight-update", cfg, cands(), reserved_msk)


def channel_tile(
    name: str,
    c: int,
    bytes_per_channel: dict[str, int],
    cfg: HardwareConfig,
    reserved_msk: int,
    persistent_per_channel: dict[str, int] | None = None,
) -> Tiling:
    """Largest channel tile (a divisor of c) for an element-wise/pooling SFU pass."""

    def cands():
        for cn in divisors(c):
            needs = {b: n * cn for b, n in bytes_per_channel.items()}
            pers = {b: n * cn for b, n in (persistent_per_channel or {}).items()}
            yield 1, cn, 1, pers, needs, (c // cn,)

    return _search(name, "special-function", cfg, cands(), reserved_msk)
