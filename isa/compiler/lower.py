"""Lowering of a layer graph to one training step: FP, loss + gradient-skip decision, BP, WU.

Every block (one layer, one phase, one pass) is: write the layer descriptor, load persistent
data, then steps inside a hardware loop over the batch, then drain and a barrier (the next block
may read what this one stored). Tile loops inside an image are unrolled; the batch loop is a
hardware loop whose body steps the per-image DRAM bases and the image register.

DRAM tensors are per image [row][col][channel] (channels innermost), FP8; weights are
[k][kh][kw][c] (FC weights in the activation order of their input, so a flatten is free).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from isa.compiler.emitter import (
    ACC,
    BASE_A,
    BASE_B,
    BASE_C,
    C_IDX,
    FREE,
    IMG,
    K_IDX,
    P_IDX,
    PERS,
    SLOT,
    TMP_A,
    TMP_B,
    TMP_O,
    ZERO,
    Emitter,
    Op,
    buf_code,
    sfu_code,
    tc_pass,
)
from isa.compiler.memmap import CompileError, MemoryMap, Region
from isa.compiler.tiling import (
    ACC_BYTES,
    NORM_BYTES,
    ConvShape,
    Tiling,
    _align,
    bp_tiling,
    channel_tile,
    fp_tiling,
    wu_tiling,
)
from isa.spec import LAYER_KIND, ROUNDING, SHARING, SRU_TARGET, UNIT
from isa.spec import RANDOM_SOURCE as RSRC
from simulator.config import HardwareConfig
from workloads.graph import MAC_KINDS, Layer, LayerGraph

# a fourth DRAM base register for max-pool's argmax map (TMP_B is free in that block)
TMP_B_DRAM = TMP_B
ALIAS_KINDS = frozenset({"flatten", "identity", "dropout", "output"})
N_DESC = 64
BN_STAT_BYTES = 8  # FP32 sum and sum of squares per channel
BN_SUM_BYTES = 4  # FP16 gradient sums of gamma and beta per channel


@dataclass(frozen=True)
class TrainParams:
    """Training hyper-parameters written into the program (hinted defaults of the spec)."""

    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0


def _f32_bits(x: float) -> int:
    import struct

    return struct.unpack("<I", struct.pack("<f", x))[0]


def conv_shape(layer: Layer) -> ConvShape:
    """The tensor cores' view of a conv or FC layer."""
    if layer.kind == "fc":
        return ConvShape(layer.name, layer.in_shape[-1], layer.out_shape[-1], 1, 1, 1, 1, 1, 0, 1)
    assert layer.kernel and layer.stride and layer.padding
    if layer.stride[0] != layer.stride[1] or layer.padding[0] != layer.padding[1]:
        raise CompileError(f"layer {layer.name}: only equal strides and paddings are supported")
    c, h, w = layer.in_shape
    return ConvShape(
        layer.name,
        c,
        layer.out_shape[0],
        h,
        w,
        layer.kernel[0],
        layer.kernel[1],
        layer.stride[0],
        layer.padding[0],
        layer.groups,
    )


def _chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) of a per-image shape; vectors are C x 1 x 1."""
    if len(shape) == 3:
        return shape[0], shape[1], shape[2]
    if len(shape) == 1:
        return shape[0], 1, 1
    raise CompileError(f"unsupported tensor shape {shape}")


class Lowering:
    """Builds the program; `run()` returns the emitter and the memory map."""

    def __init__(
        self, graph: LayerGraph, cfg: HardwareConfig, batch: int, train: TrainParams
    ) -> None:
        self.g, self.cfg, self.batch, self.train = graph, cfg, batch, train
        self.e = Emitter()
        self.mm = MemoryMap(cfg.dma.dram_bytes)
        self.layers = {layer.name: layer for layer in graph.layers}
        self.desc_of: dict[str, int] = {}
        self._gated: dict[str, bool] = {}
        self.notes: list[str] = []  # what the program leaves out, and why
        if batch < 1:
            raise CompileError(f"batch must be at least 1, got {batch}")
        msk_word = cfg.buffers.mask.word_bytes
        # skip flags, one byte per image, stay in the mask buffer from the loss to the end
        self.skip_bytes = _align(batch, msk_word)
        if self.skip_bytes > cfg.buffers.mask.size_bytes // 2:
            raise CompileError(
                f"batch {batch}: the skip flags do not fit in half of the mask buffer "
                f"({cfg.buffers.mask.size_bytes} bytes)"
            )
        self._plan()

    # ------------------------------------------------------------ graph facts
    def real(self, name: str) -> str:
        """The layer whose output tensor `name` denotes (through flatten/identity/...)."""
        while self.layers[name].kind in ALIAS_KINDS:
            name = self.layers[name].inputs[0]
        return name

    def consumers(self, name: str) -> list[str]:
        """Non-alias layers reading tensor `name` (through aliases); "loss" for the output."""
        out: list[str] = []
        for layer in self.g.layers:
            if any(self.real(i) == name for i in layer.inputs):
                if layer.kind == "output":
                    out.append("loss")
                elif layer.kind not in ALIAS_KINDS:
                    out.append(layer.name)
        return out

    def _upstream_mac(self, name: str, memo: dict[str, bool]) -> bool:
        if name not in memo:
            layer = self.layers[name]
            memo[name] = layer.kind in MAC_KINDS or any(
                self._upstream_mac(i, memo) for i in layer.inputs
            )
        return memo[name]

    def needs_err(self, name: str) -> bool:
        return self._upstream_mac(self.real(name), self._memo)

    def gated(self, layer: Layer) -> bool:
        """Channel gating applies to convs whose base pass covers whole dot-product steps and
        whose weights for one gate group of outputs fit the weight buffer."""
        if layer.name in self._gated:
            return self._gated[layer.name]
        ok = False
        if layer.kind == "conv" and layer.groups == 1:
            g, group = self.cfg.cgu.base_fraction_denominator, self.cfg.cgu.group_size_channels
            c, k = layer.in_shape[0], layer.out_shape[0]
            ok = c % (g * self.cfg.tensor_core.dp_width) == 0 and k % group == 0
            if ok:
                try:
                    fp_tiling(conv_shape(layer), self.cfg, True, self.skip_bytes)
                except CompileError:
                    ok = False
                    self.notes.append(
                        f"{layer.name}: channel gating not expressed: the weights of one gate "
                        f"group ({group} outputs) do not fit the weight buffer"
                    )
        self._gated[layer.name] = ok
        return ok

    def wsparse(self, layer: Layer) -> bool:
        """Group-Lasso groups must tile the input channels exactly."""
        sh = conv_shape(layer)
        gk = self.cfg.wsu.group_out_channels
        return sh.groups == 1 and sh.cg % self.cfg.wsu.group_in_channels == 0 and sh.k % gk == 0

    def err_name(self, tensor: str, consumer: str) -> str:
        """Where `consumer` writes its error contribution to `tensor`."""
        tensor = self.real(tensor)
        if len(self.consumers(tensor)) == 1:
            return f"err:{tensor}"
        return f"err:{tensor}@{consumer}"

    # ------------------------------------------------------------ memory map
    def _plan(self) -> None:
        self._memo: dict[str, bool] = {}
        mm, b = self.mm, self.batch
        gate_group = self.cfg.cgu.group_size_channels
        gc = self.cfg.wsu.group_in_channels
        for layer in self.g.layers:
            n = layer.name
            if layer.kind in ALIAS_KINDS:
                mm.alias(f"act:{n}", f"act:{layer.inputs[0]}")
                continue
            layout = "[row][col][channel]" if len(layer.out_shape) == 3 else "[feature]"
            mm.add(f"act:{n}", "activation", layer.out_shape, batch=b, layer=n, layout=layout)
            if layer.kind in MAC_KINDS:
                sh = conv_shape(layer)
                wl = "[k][kh][kw][c]" + (" (c in input activation order)" if sh.r == 1 else "")
                mm.add(
                    f"w:{n}", "weight", (sh.k, sh.r, sh.s, sh.cg), batch=None, layer=n, layout=wl
                )
                mm.add(
                    f"v:{n}", "momentum", (sh.k, sh.r, sh.s, sh.cg), batch=None, layer=n, layout=wl
                )
                if self.gated(layer):
                    mm.add(
                        f"thr:{n}",
                        "gate_threshold",
                        (16,),
                        batch=None,
                        layer=n,
                        layout="fp16 threshold, padded to a word",
                        dtype="fp16",
                    )
                    mm.add(
                        f"gate:{n}",
                        "gate_map",
                        (sh.oh, sh.ow, sh.k // gate_group),
                        batch=b,
                        layer=n,
                        layout="[row][col][channel group], 1 = computed",
                        dtype="u8",
                    )
                if self.wsparse(layer):
                    mm.add(
                        f"gmap:{n}",
                        "group_map",
                        (sh.k, sh.cg // gc),
                        batch=None,
                        layer=n,
                        layout="[k][c group], 1 = kept",
                        dtype="u8",
                    )
            elif layer.kind == "maxpool":
                mm.add(
                    f"argmax:{n}",
                    "argmax",
                    layer.out_shape,
                    batch=b,
                    layer=n,
                    layout="[row][col][channel], index within the window",
                    dtype="u8",
                )
            elif layer.kind == "batchnorm":
                c = layer.out_shape[0]
                mm.add(
                    f"bn:{n}",
                    "norm_params",
                    (2, c),
                    batch=None,
                    layer=n,
                    layout="[gamma|beta][channel]",
                )
                mm.add(
                    f"bnv:{n}",
                    "momentum",
                    (2, c),
                    batch=None,
                    layer=n,
                    layout="[gamma|beta][channel]",
                )
                mm.add(
                    f"bnstat:{n}",
                    "norm_stats",
                    (c, 2),
                    batch=None,
                    layer=n,
                    layout="[channel][sum|sum of squares]",
                    dtype="fp32",
                    elem_bytes=4,
                )
        out_layer = next(layer for layer in self.g.layers if layer.kind == "output")
        self.logits = self.real(out_layer.inputs[0])
        self.classes = self.layers[self.logits].out_shape[-1]
        mm.add("target", "target", (self.classes,), batch=b, layer="loss", layout="[class] one-hot")
        # errors: one region per needed tensor, plus one per consumer where several add up
        for layer in self.g.layers:
            n = layer.name
            if layer.kind in ALIAS_KINDS or layer.kind == "input" or not self.needs_err(n):
                continue
            cons = self.consumers(n)
            if len(cons) == 1 and cons[0] != "loss" and self.layers[cons[0]].kind == "add":
                # an add passes its error to its inputs unchanged: share its storage
                mm.alias(f"err:{n}", f"err:{cons[0]}")
                continue
            mm.add(
                f"err:{n}", "error", layer.out_shape, batch=b, layer=n, layout="as the activation"
            )
            if len(cons) > 1:
                for c in cons:
                    if self.layers.get(c) is not None and self.layers[c].kind == "add":
                        mm.alias(f"err:{n}@{c}", f"err:{c}")
                    else:
                        mm.add(
                            f"err:{n}@{c}",
                            "error_part",
                            layer.out_shape,
                            batch=b,
                            layer=n,
                            layout="as the activation",
                        )

    # ------------------------------------------------------------ helpers
    def descriptor(self, layer: Layer, kind: str) -> int:
        """Write (again) the descriptor of `layer` and return its slot."""
        slot = self.desc_of.setdefault(layer.name, len(self.desc_of) % N_DESC)
        if kind in ("conv", "fc"):
            sh = conv_shape(layer)
            c, h, w, kh, kw, st, pad, groups, k = (
                sh.c,
                sh.h,
                sh.w,
                sh.r,
                sh.s,
                sh.stride,
                sh.pad,
                sh.groups,
                sh.k,
            )
        else:
            c, h, w = _chw(layer.in_shape)
            k = _chw(layer.out_shape)[0]
            kh, kw, st, pad, groups = 1, 1, 1, 0, 1
            if layer.kind in ("maxpool", "avgpool"):
                oc, oh, ow = _chw(layer.out_shape)
                if layer.kernel is not None:
                    (kh, kw), st, pad = layer.kernel, layer.stride[0], layer.padding[0]
                else:  # adaptive pooling with an exact ratio
                    kh, kw, st = h // oh, w // ow, h // oh
        limits = {
            "kh": (kh, 15),
            "kw": (kw, 15),
            "stride": (st, 15),
            "pad": (pad, 15),
            "h": (h, 4095),
            "w": (w, 4095),
        }
        for f, (v, hi) in limits.items():
            if v > hi:
                raise CompileError(f"layer {layer.name}: {f}={v} exceeds the descriptor's {hi}")
        self.e.emit(
            "layer",
            note=f"descriptor {layer.name}",
            desc=slot,
            kind=LAYER_KIND.values.index(kind),
            c=c,
            k=k,
            h=h,
            w=w,
            kh=kh,
            kw=kw,
            stride=st,
            pad=pad,
            groups=groups,
            gate=int(kind == "conv" and self.gated(layer)),
            wsparse=int(kind in ("conv", "fc") and self.wsparse(layer)),
        )
        return slot

    def batch_loop(self, bases: list[tuple[int, Region]], body: Callable[[], None]) -> None:
        """Hardware loop over the images; `bases` are (register, batched region) stepped."""
        for reg, region in bases:
            self.e.setr(reg, region.addr)
        self.e.setr(IMG, 0)
        with self.e.loop(self.batch):
            body()
            for reg, region in bases:
                self.e.addr(reg, reg, region.bytes_per_image)
            self.e.addr(IMG, IMG, 1)

    def channels(
        self,
        kind: str,
        buf: str,
        rbuf: int,
        boff: int,
        rdram: int,
        c: int,
        pixels: int,
        c0: int,
        cn: int,
        pix0: int = 0,
        note: str = "",
    ) -> list[Op]:
        """Move channels [c0, c0+cn) of `pixels` pixels (from pixel pix0) of a [pixel][c]
        tensor with c channels; compact [pixel][cn] in the buffer."""
        if cn == c:  # contiguous: rows of whole pixels, fewer descriptors
            per = max(1, min(pixels, 65535 // c))
            while pixels % per:
                per -= 1
            return self.e.dma(
                kind,
                buf,
                rbuf,
                boff,
                rdram,
                pix0 * c,
                pixels // per,
                per * c,
                per * c,
                per * c,
                note,
            )
        return self.e.dma(kind, buf, rbuf, boff, rdram, pix0 * c + c0, pixels, cn, c, cn, note)

    def sfu(
        self,
        op: str,
        desc: int,
        a: tuple[str, int],
        b: tuple[str, int],
        o: tuple[str, int],
        n: int,
        note: str = "",
    ) -> Op:
        return self.e.make(
            "sfu",
            note=note,
            op=sfu_code(op),
            desc=desc,
            bufa=buf_code(a[0]),
            ra=a[1],
            bufb=buf_code(b[0]),
            rb=b[1],
            bufo=buf_code(o[0]),
            ro=o[1],
            rimg=IMG,
            n=n,
        )

    def addr_op(self, rd: int, rs: int, imm: int) -> Op:
        return self.e.make("addr", rd=rd, rs=rs, imm=imm)

    def setr_op(self, rd: int, imm: int) -> Op:
        return self.e.make("setr", rd=rd, imm=imm)

    def block(self, layer: str, phase: str) -> None:
        self.e.layer, self.e.phase = layer, phase

    # ------------------------------------------------------------ program
    def run(self) -> tuple[Emitter, MemoryMap]:
        """The whole program (see the module docstring); `notes` says what it leaves out."""
        self.preamble()
        for layer in self.g.layers:
            self.forward(layer)
        self.loss()
        for layer in reversed(self.g.layers):
            self.backward(layer)
        self.block("", "end")
        self.e.emit("halt")
        if any(self._gated.values()):
            self.notes.append(
                "gate thresholds are read from DRAM but not trained: the program does not "
                "express their gradient"
            )
        return self.e, self.mm

    def preamble(self) -> None:
        cfg, e = self.cfg, self.e
        self.block("", "setup")
        e.emit("mode", gating=1, wsparse=1, gskip=1, note="all sparsity mechanisms enabled")
        sru = cfg.sru
        variant = ROUNDING.values.index(sru.variant)
        source = RSRC.values.index(
            {
                "lfsr": "lfsr",
                "lfsr_inverted": "lfsr_inverted",
                "lfsr_alternate": "lfsr_alternate",
                "xorshift32": "xorshift32",
                "tensor_bits": "tensor_bits",
            }[sru.random_source]
        )
        for i, target in enumerate(SRU_TARGET.values):
            # one seed per stream, derived from the configured one, never zero
            seed = (sru.seed + 0x9E37 * i) % ((1 << sru.lfsr_width_bits) - 1) + 1
            e.emit(
                "sru",
                target=i,
                r=sru.random_bits,
                variant=variant,
                source=source,
                width=sru.lfsr_width_bits,
                sharing=SHARING.values.index(sru.lfsr_sharing),
                seed=seed,
                note=f"SRU stream {target}",
            )
        e.emit(
            "gscfg",
            criterion=["correct_and_confident", "confident"].index(cfg.gsu.criterion),
            threshold=_f32_bits(cfg.gsu.threshold),
        )
        e.emit(
            "wscfg",
            threshold=_f32_bits(cfg.wsu.threshold),
            gc=cfg.wsu.group_in_channels,
            gk=cfg.wsu.group_out_channels,
        )
        e.emit(
            "sgdcfg",
            lr=_f32_bits(self.train.lr),
            momentum=_f32_bits(self.train.momentum),
            wd=_f32_bits(self.train.weight_decay),
        )

    # ------------------------------------------------------------ forward
    def forward(self, layer: Layer) -> None:
        if layer.kind in ALIAS_KINDS or layer.kind == "input":
            return
        self.block(layer.name, "fp")
        if layer.kind in MAC_KINDS:
            self.fp_mac(layer)
        elif layer.kind in ("relu", "maxpool", "avgpool", "add"):
            self.fp_sfu(layer)
        elif layer.kind == "batchnorm":
            self.fp_norm(layer)
        else:
            raise CompileError(f"layer {layer.name}: kind {layer.kind!r} is not supported")

    def fp_mac(self, layer: Layer) -> None:
        e, mm, cfg = self.e, self.mm, self.cfg
        sh = conv_shape(layer)
        gated = self.gated(layer)
        if gated:
            desc = self.descriptor(layer, layer.kind)
            e.emit(
                "cgcfg",
                desc=desc,
                g=cfg.cgu.base_fraction_denominator,
                group=cfg.cgu.group_size_channels,
            )
        else:
            desc = self.descriptor(layer, layer.kind)
        t = fp_tiling(sh, cfg, gated, self.skip_bytes)
        x = mm[f"act:{layer.inputs[0]}"]
        y, w = mm[f"act:{layer.name}"], mm[f"w:{layer.name}"]
        gate = mm[f"gate:{layer.name}"] if gated else None
        group = cfg.cgu.group_size_channels
        base_c = sh.c // cfg.cgu.base_fraction_denominator
        wbytes = t.kn * sh.taps * sh.cg
        bufs = ("act", "msk") if gated else ("act",)
        for k0 in range(0, sh.k, t.kn):
            e.setr(BASE_C, w.addr)
            loads = self.channels(
                "dma.ld",
                "wgt",
                ZERO,
                0,
                BASE_C,
                sh.taps * sh.cg,
                t.kn,
                0,
                sh.taps * sh.cg,
                pix0=k0,
                note="weights of the k-tile",
            )
            if gated:  # (the weights' loads read BASE_C when placed: use another register)
                e.setr(TMP_A, mm[f"thr:{layer.name}"].addr)
                loads += self.e.dma(
                    "dma.ld",
                    "wgt",
                    ZERO,
                    _align(wbytes),
                    TMP_A,
                    0,
                    1,
                    16,
                    16,
                    16,
                    note="gate threshold",
                )
            e.persistent_load(loads, ("tc",) + (("cgu",) if gated else ()))
            nslots = e.begin_slots(t.slot_bases(cfg, bufs))
            cload = sh.c if sh.groups == 1 else t.kn // sh.kg * sh.cg
            c_off = 0 if sh.groups == 1 else k0 // sh.kg * sh.cg

            def body(k0: int = k0, cload: int = cload, c_off: int = c_off) -> None:
                for p0 in range(0, sh.oh, t.pn):
                    r0 = max(0, p0 * sh.stride - sh.pad)
                    r1 = min(sh.h, (p0 + t.pn - 1) * sh.stride - sh.pad + sh.r)
                    xbytes = _align(sh.rows_in(t.pn) * sh.w * cload)
                    loads = self.channels(
                        "dma.ld",
                        "act",
                        SLOT["act"],
                        0,
                        BASE_A,
                        sh.c,
                        (r1 - r0) * sh.w,
                        c_off,
                        cload,
                        pix0=r0 * sh.w,
                        note="input rows",
                    )
                    comp = [
                        self.addr_op(TMP_A, SLOT["act"], 0),
                        self.addr_op(TMP_O, SLOT["act"], xbytes),
                        self.setr_op(K_IDX, k0),
                        self.setr_op(P_IDX, p0),
                        self.setr_op(C_IDX, 0),
                    ]
                    tc = dict(
                        desc=desc,
                        rk=K_IDX,
                        kn=t.kn,
                        rc=C_IDX,
                        rp=P_IDX,
                        pn=t.pn,
                        rimg=IMG,
                        ra=TMP_A,
                        rb=ZERO,
                        ro=TMP_O,
                    )
                    if gated:
                        comp.append(
                            e.make(
                                "tc.fwd",
                                note="base pass",
                                cn=base_c,
                                acc=0,
                                fin=0,
                                **{"pass": tc_pass("base")},
                                **tc,
                            )
                        )
                        comp.append(self.setr_op(TMP_B, _align(wbytes)))
                        comp.append(
                            e.make(
                                "cg.gate",
                                desc=desc,
                                rk=K_IDX,
                                kn=t.kn,
                                rp=P_IDX,
                                pn=t.pn,
                                ra=TMP_O,
                                rt=TMP_B,
                                rm=SLOT["msk"],
                            )
                        )
                        comp.append(self.setr_op(C_IDX, base_c))
                        comp.append(
                            e.make(
                                "tc.fwd",
                                note="conditional pass",
                                cn=sh.c - base_c,
                                acc=1,
                                fin=1,
                                **{"pass": tc_pass("cond")},
                                **tc,
                            )
                        )
                    else:
                        comp.append(
                            e.make(
                                "tc.fwd", cn=sh.cg, acc=0, fin=1, **{"pass": tc_pass("full")}, **tc
                            )
                        )
                    stores = self.channels(
                        "dma.st",
                        "act",
                        SLOT["act"],
                        xbytes,
                        BASE_B,
                        sh.k,
                        t.pn * sh.ow,
                        k0,
                        t.kn,
                        pix0=p0 * sh.ow,
                        note="output rows",
                    )
                    if gated:
                        ng = sh.k // group
                        stores += self.channels(
                            "dma.st",
                            "msk",
                            SLOT["msk"],
                            0,
                            BASE_C,
                            ng,
                            t.pn * sh.ow,
                            k0 // group,
                            t.kn // group,
                            pix0=p0 * sh.ow,
                            note="gate map",
                        )
                    e.step(loads, comp, stores)

            bases = [(BASE_A, x), (BASE_B, y)] + ([(BASE_C, gate)] if gate else [])
            self.batch_loop(bases, body)
            e.end_block(nslots)

    def fp_sfu(self, layer: Layer) -> None:
        """ReLU, pooling and residual add: channel tiles over whole images."""
        e, mm = self.e, self.mm
        kind = {"relu": "relu", "maxpool": "maxpool", "avgpool": "avgpool", "add": "add"}
        desc = self.descriptor(layer, kind[layer.kind])
        c, h, w = _chw(layer.in_shape)
        _, oh, ow = _chw(layer.out_shape)
        ins = [mm[f"act:{i}"] for i in layer.inputs]
        y = mm[f"act:{layer.name}"]
        pin, pout = h * w, oh * ow
        per_c = {"act": _align(pin) * len(ins) + _align(pout)}
        if layer.kind == "maxpool":
            per_c["msk"] = pout
        t = channel_tile(layer.name, c, per_c, self.cfg, self.skip_bytes)
        cn = t.cn
        bufs = ("act", "msk") if layer.kind == "maxpool" else ("act",)
        nslots = e.begin_slots(t.slot_bases(self.cfg, bufs))

        def body() -> None:
            for c0 in range(0, c, cn):
                loads, off = [], []
                for j, reg in enumerate((BASE_A, BASE_B)[: len(ins)]):
                    off.append(j * _align(pin * cn))
                    loads += self.channels(
                        "dma.ld", "act", SLOT["act"], off[-1], reg, c, pin, c0, cn
                    )
                o = len(ins) * _align(pin * cn)
                comp = [self.addr_op(TMP_A, SLOT["act"], 0), self.addr_op(TMP_O, SLOT["act"], o)]
                b = ("act", ZERO)
                if layer.kind == "add":
                    comp.append(self.addr_op(TMP_B, SLOT["act"], off[1]))
                    b = ("act", TMP_B)
                elif layer.kind == "maxpool":
                    b = ("msk", SLOT["msk"])
                comp.append(
                    self.sfu(
                        f"{layer.kind}_fwd" if layer.kind != "add" else "add",
                        desc,
                        ("act", TMP_A),
                        b,
                        ("act", TMP_O),
                        cn * pin,
                    )
                )
                stores = self.channels("dma.st", "act", SLOT["act"], o, BASE_C, c, pout, c0, cn)
                if layer.kind == "maxpool":
                    stores += self.channels(
                        "dma.st", "msk", SLOT["msk"], 0, TMP_B_DRAM, c, pout, c0, cn
                    )
                e.step(loads, comp, stores)

        bases = [(r, reg) for r, reg in zip((BASE_A, BASE_B), ins, strict=False)]
        bases.append((BASE_C, y))
        if layer.kind == "maxpool":
            bases.append((TMP_B_DRAM, mm[f"argmax:{layer.name}"]))
        self.batch_loop(bases, body)
        e.end_block(nslots)

    def fp_norm(self, layer: Layer) -> None:
        """Batch norm: a statistics pass over the batch, then the normalization pass."""
        e, mm, cfg = self.e, self.mm, self.cfg
        desc = self.descriptor(layer, "norm")
        c, h, w = _chw(layer.in_shape)
        pix = h * w
        x, y = mm[f"act:{layer.inputs[0]}"], mm[f"act:{layer.name}"]
        params, stats = mm[f"bn:{layer.name}"], mm[f"bnstat:{layer.name}"]
        t = channel_tile(
            layer.name,
            c,
            {"act": 2 * _align(pix)},
            cfg,
            self.skip_bytes,
            persistent_per_channel={"err": BN_STAT_BYTES + BN_SUM_BYTES, "wgt": 2},
        )
        cn = t.cn
        for c0 in range(0, c, cn):
            e.setr(BASE_C, params.addr)
            loads = self.e.dma(
                "dma.ld", "wgt", ZERO, 0, BASE_C, c0, 2, cn, c, cn, note="gamma, beta"
            )
            e.persistent_load(loads, ("sfu",))
            e.emit(
                "sfu",
                op=sfu_code("zero"),
                desc=desc,
                bufa=buf_code("err"),
                ra=ZERO,
                bufb=buf_code("err"),
                rb=ZERO,
                bufo=buf_code("err"),
                ro=ZERO,
                rimg=IMG,
                n=2 * cn,
                note="clear statistics",
            )
            for pass_ in ("norm_stat", "norm_fwd"):
                nslots = e.begin_slots(t.slot_bases(cfg, ("act",)))

                def body(c0: int = c0, pass_: str = pass_) -> None:
                    loads = self.channels("dma.ld", "act", SLOT["act"], 0, BASE_A, c, pix, c0, cn)
                    comp = [self.addr_op(TMP_A, SLOT["act"], 0)]
                    if pass_ == "norm_stat":
                        comp.append(
                            self.sfu(
                                "norm_stat",
                                desc,
                                ("act", TMP_A),
                                ("err", ZERO),
                                ("err", ZERO),
                                cn * pix,
                            )
                        )
                        e.step(loads, comp, [])
                        return
                    comp.append(self.addr_op(TMP_O, SLOT["act"], _align(pix * cn)))
                    comp.append(
                        self.sfu(
                            "norm_fwd",
                            desc,
                            ("act", TMP_A),
                            ("err", ZERO),
                            ("act", TMP_O),
                            cn * pix,
                        )
                    )
                    stores = self.channels(
                        "dma.st", "act", SLOT["act"], _align(pix * cn), BASE_B, c, pix, c0, cn
                    )
                    e.step(loads, comp, stores)

                self.batch_loop([(BASE_A, x), (BASE_B, y)], body)
                e.end_block(nslots)
            # keep the statistics for the backward pass
            e.setr(BASE_C, stats.addr)
            for o in self.e.dma(
                "dma.st",
                "err",
                ZERO,
                0,
                BASE_C,
                c0 * BN_STAT_BYTES,
                1,
                cn * BN_STAT_BYTES,
                0,
                0,
                note="statistics",
            ):
                e.place(o)
            e.emit("barrier")

    # ------------------------------------------------------------ loss and skip decision
    def loss(self) -> None:
        e, mm = self.e, self.mm
        self.block(self.logits, "loss")
        layer = self.layers[self.logits]
        desc = self.descriptor(layer, "loss")
        n = self.classes
        yb = mm[f"act:{self.logits}"]
        errb = mm[self.err_name(self.logits, "loss")]
        nslots = e.begin_slots(
            Tiling(1, 1, 1, True, {"msk": self.skip_bytes}).slot_bases(self.cfg, ("act", "err"))
        )

        def body() -> None:
            loads = self.e.dma(
                "dma.ld", "act", SLOT["act"], 0, BASE_A, 0, 1, n, n, n, note="network output"
            )
            loads += self.e.dma(
                "dma.ld",
                "act",
                SLOT["act"],
                _align(n),
                BASE_B,
                0,
                1,
                n,
                n,
                n,
                note="one-hot target",
            )
            comp = [
                self.addr_op(TMP_A, SLOT["act"], 0),
                self.addr_op(TMP_B, SLOT["act"], _align(n)),
            ]
            comp.append(
                self.sfu(
                    "loss_mse",
                    desc,
                    ("act", TMP_A),
                    ("act", TMP_B),
                    ("err", SLOT["err"]),
                    n,
                    note="error y - t",
                )
            )
            comp.append(
                e.make(
                    "gs.decide",
                    rimg=IMG,
                    ra=TMP_A,
                    rt=TMP_B,
                    classes=n,
                    rm=ZERO,
                    note="gradient-skip decision",
                )
            )
            stores = self.e.dma(
                "dma.st", "err", SLOT["err"], 0, BASE_C, 0, 1, n, n, n, note="output error"
            )
            e.step(loads, comp, stores)

        self.batch_loop([(BASE_A, yb), (BASE_B, mm["target"]), (BASE_C, errb)], body)
        e.end_block(nslots)

    # ------------------------------------------------------------ backward
    def backward(self, layer: Layer) -> None:
        if layer.kind in ALIAS_KINDS or not self.needs_err(layer.name):
            return
        self.block(layer.name, "bp")
        cons = self.consumers(layer.name)
        if len(cons) > 1:
            self.merge_errors(layer, cons)
        if layer.kind == "input":
            return
        if layer.kind in MAC_KINDS:
            self.block(layer.name, "wu")
            self.wu_mac(layer)
            if self.g.needs_data_gradient(layer.name):
                self.block(layer.name, "bp")
                self.bp_mac(layer)
        elif layer.kind in ("relu", "maxpool", "avgpool"):
            self.bp_sfu(layer)
        elif layer.kind == "batchnorm":
            self.bp_norm(layer)
        # add: its inputs share its error storage (see _plan)

    def merge_errors(self, layer: Layer, cons: list[str]) -> None:
        """Sum the error contributions of several consumers into err:<layer>."""
        e, mm = self.e, self.mm
        desc = self.descriptor(layer, "add")
        c, h, w = _chw(layer.out_shape)
        pix = h * w
        parts = [mm[f"err:{layer.name}@{x}"] for x in cons]
        total = mm[f"err:{layer.name}"]
        t = channel_tile(layer.name, c, {"err": 3 * _align(pix)}, self.cfg, self.skip_bytes)
        cn = t.cn
        for j in range(1, len(parts)):
            first = parts[0] if j == 1 else total
            nslots = e.begin_slots(t.slot_bases(self.cfg, ("err",)))

            def body() -> None:
                for c0 in range(0, c, cn):
                    a, b = 0, _align(pix * cn)
                    o = 2 * b
                    loads = self.channels("dma.ld", "err", SLOT["err"], a, BASE_A, c, pix, c0, cn)
                    loads += self.channels("dma.ld", "err", SLOT["err"], b, BASE_B, c, pix, c0, cn)
                    comp = [
                        self.addr_op(TMP_A, SLOT["err"], a),
                        self.addr_op(TMP_B, SLOT["err"], b),
                        self.addr_op(TMP_O, SLOT["err"], o),
                        self.sfu(
                            "add",
                            desc,
                            ("err", TMP_A),
                            ("err", TMP_B),
                            ("err", TMP_O),
                            cn * pix,
                            note="sum error contributions",
                        ),
                    ]
                    stores = self.channels("dma.st", "err", SLOT["err"], o, BASE_C, c, pix, c0, cn)
                    e.step(loads, comp, stores)

            self.batch_loop([(BASE_A, first), (BASE_B, parts[j]), (BASE_C, total)], body)
            e.end_block(nslots)

    def bp_sfu(self, layer: Layer) -> None:
        e, mm = self.e, self.mm
        desc = self.descriptor(layer, layer.kind)
        c, h, w = _chw(layer.in_shape)
        _, oh, ow = _chw(layer.out_shape)
        pin, pout = h * w, oh * ow
        dy = mm[f"err:{layer.name}"]
        dx = mm[self.err_name(layer.inputs[0], layer.name)]
        per_c = {"err": _align(pout) + _align(pin)}
        if layer.kind == "relu":
            per_c["act"] = _align(pout)
        if layer.kind == "maxpool":
            per_c["msk"] = pout
        t = channel_tile(layer.name, c, per_c, self.cfg, self.skip_bytes)
        cn = t.cn
        bufs = tuple(per_c)
        nslots = e.begin_slots(t.slot_bases(self.cfg, bufs))
        side = {"relu": (f"act:{layer.name}", "act"), "maxpool": (f"argmax:{layer.name}", "msk")}

        def body() -> None:
            for c0 in range(0, c, cn):
                o = _align(pout * cn)
                loads = self.channels("dma.ld", "err", SLOT["err"], 0, BASE_A, c, pout, c0, cn)
                b = ("err", ZERO)
                if layer.kind in side:
                    buf = side[layer.kind][1]
                    loads += self.channels("dma.ld", buf, SLOT[buf], 0, BASE_C, c, pout, c0, cn)
                    b = (buf, SLOT[buf])
                comp = [
                    self.addr_op(TMP_A, SLOT["err"], 0),
                    self.addr_op(TMP_O, SLOT["err"], o),
                    self.sfu(
                        f"{layer.kind}_bwd", desc, ("err", TMP_A), b, ("err", TMP_O), cn * pout
                    ),
                ]
                stores = self.channels("dma.st", "err", SLOT["err"], o, BASE_B, c, pin, c0, cn)
                e.step(loads, comp, stores)

        bases = [(BASE_A, dy), (BASE_B, dx)]
        if layer.kind in side:
            bases.append((BASE_C, mm[side[layer.kind][0]]))
        self.batch_loop(bases, body)
        e.end_block(nslots)

    def bp_norm(self, layer: Layer) -> None:
        """Batch-norm backward: gradient sums over the batch, the error pass, then the update
        of gamma and beta."""
        e, mm, cfg = self.e, self.mm, self.cfg
        desc = self.descriptor(layer, "norm")
        c, h, w = _chw(layer.in_shape)
        pix = h * w
        x, dy = mm[f"act:{layer.inputs[0]}"], mm[f"err:{layer.name}"]
        dx = mm[self.err_name(layer.inputs[0], layer.name)]
        params, mom, stats = (
            mm[f"bn:{layer.name}"],
            mm[f"bnv:{layer.name}"],
            mm[f"bnstat:{layer.name}"],
        )
        pers = {"err": BN_STAT_BYTES + BN_SUM_BYTES + 2 + 16, "wgt": 2}  # + alignment
        t = channel_tile(
            layer.name,
            c,
            {"err": 2 * _align(pix), "act": _align(pix)},
            cfg,
            self.skip_bytes,
            persistent_per_channel=pers,
        )
        cn = t.cn
        for c0 in range(0, c, cn):
            sums = cn * BN_STAT_BYTES
            vaddr = _align(cn * (BN_STAT_BYTES + BN_SUM_BYTES))
            # one register per source: the loads read their base when placed, after all setr
            e.setr(BASE_C, params.addr)
            e.setr(TMP_A, stats.addr)
            e.setr(TMP_B, mom.addr)
            loads = self.e.dma(
                "dma.ld", "wgt", ZERO, 0, BASE_C, c0, 2, cn, c, cn, note="gamma, beta"
            )
            loads += self.e.dma(
                "dma.ld",
                "err",
                ZERO,
                0,
                TMP_A,
                c0 * BN_STAT_BYTES,
                1,
                cn * BN_STAT_BYTES,
                0,
                0,
                note="statistics",
            )
            loads += self.e.dma(
                "dma.ld",
                "err",
                ZERO,
                vaddr,
                TMP_B,
                c0,
                2,
                cn,
                c,
                cn,
                note="momentum of gamma, beta",
            )
            e.persistent_load(loads, ("sfu",))
            e.setr(TMP_O, sums)
            e.emit(
                "sfu",
                op=sfu_code("zero"),
                desc=desc,
                bufa=buf_code("err"),
                ra=ZERO,
                bufb=buf_code("err"),
                rb=ZERO,
                bufo=buf_code("err"),
                ro=TMP_O,
                rimg=IMG,
                n=2 * cn,
                note="clear gradient sums",
            )
            for pass_ in ("norm_bwd_stat", "norm_bwd"):
                nslots = e.begin_slots(t.slot_bases(cfg, ("err", "act")))

                def body(c0: int = c0, pass_: str = pass_) -> None:
                    loads = self.channels("dma.ld", "err", SLOT["err"], 0, BASE_A, c, pix, c0, cn)
                    loads += self.channels("dma.ld", "act", SLOT["act"], 0, BASE_B, c, pix, c0, cn)
                    comp = [self.addr_op(TMP_A, SLOT["err"], 0)]
                    if pass_ == "norm_bwd_stat":
                        comp += [
                            self.setr_op(TMP_O, sums),
                            self.sfu(
                                "norm_bwd_stat",
                                desc,
                                ("err", TMP_A),
                                ("act", SLOT["act"]),
                                ("err", TMP_O),
                                cn * pix,
                            ),
                        ]
                        e.step(loads, comp, [])
                        return
                    o = _align(pix * cn)
                    comp += [
                        self.addr_op(TMP_O, SLOT["err"], o),
                        self.sfu(
                            "norm_bwd",
                            desc,
                            ("err", TMP_A),
                            ("err", ZERO),
                            ("err", TMP_O),
                            cn * pix,
                        ),
                    ]
                    stores = self.channels("dma.st", "err", SLOT["err"], o, BASE_C, c, pix, c0, cn)
                    e.step(loads, comp, stores)

                self.batch_loop([(BASE_A, dy), (BASE_B, x), (BASE_C, dx)], body)
                e.end_block(nslots)
            self.block(layer.name, "wu")
            e.setr(TMP_O, sums)
            e.setr(TMP_B, vaddr)
            e.emit("sgd", rw=ZERO, rg=TMP_O, rv=TMP_B, n=2 * cn, note="update gamma, beta")
            e.emit("barrier")
            e.setr(BASE_C, params.addr)
            for o in self.e.dma("dma.st", "wgt", ZERO, 0, BASE_C, c0, 2, cn, c, cn):
                e.place(o)
            e.setr(BASE_C, mom.addr)
            for o in self.e.dma("dma.st", "err", ZERO, vaddr, BASE_C, c0, 2, cn, c, cn):
                e.place(o)
            e.emit("barrier")
            self.block(layer.name, "bp")

    def bp_mac(self, layer: Layer) -> None:
        """Data gradient with transposed weights: dX = W^T dY, per image."""
        e, mm, cfg = self.e, self.mm, self.cfg
        sh = conv_shape(layer)
        desc = self.descriptor(layer, layer.kind)
        t = bp_tiling(sh, cfg, self.skip_bytes)
        w = mm[f"w:{layer.name}"]
        dy = mm[f"err:{layer.name}"]
        dx = mm[self.err_name(layer.inputs[0], layer.name)]
        pin = sh.h * sh.w
        if sh.groups > 1:
            tiles = [
                (k0, t.kn, k0 // sh.kg * sh.cg, t.kn // sh.kg * sh.cg)
                for k0 in range(0, sh.k, t.kn)
            ]
        else:
            tiles = [(0, sh.k, c0, t.cn) for c0 in range(0, sh.c, t.cn)]
        for kbase, kspan, c0, ch in tiles:
            e.setr(BASE_C, w.addr)
            if sh.groups > 1:
                loads = self.channels(
                    "dma.ld",
                    "wgt",
                    ZERO,
                    0,
                    BASE_C,
                    sh.taps * sh.cg,
                    kspan,
                    0,
                    sh.taps * sh.cg,
                    pix0=kbase,
                    note="weights",
                )
            else:
                loads = self.channels(
                    "dma.ld",
                    "wgt",
                    ZERO,
                    0,
                    BASE_C,
                    sh.c,
                    sh.k * sh.taps,
                    c0,
                    ch,
                    note="weights of the c-tile, all k (transposed use)",
                )
            e.persistent_load(loads, ("tc",))
            nslots = e.begin_slots(t.slot_bases(cfg, ("err",)))
            e.emit("nop", sg=ACC)
            kn = t.kn if sh.groups == 1 else kspan
            wrow = ch if sh.groups == 1 else sh.cg

            def body(
                kbase: int = kbase,
                kspan: int = kspan,
                c0: int = c0,
                ch: int = ch,
                kn: int = kn,
                wrow: int = wrow,
            ) -> None:
                e.emit("sync", wt=ACC, unit=UNIT.values.index("tc"))
                for k0 in range(kbase, kbase + kspan, kn):
                    last = k0 + kn == kbase + kspan
                    loads = self.channels(
                        "dma.ld",
                        "err",
                        SLOT["err"],
                        0,
                        BASE_A,
                        sh.k,
                        sh.oh * sh.ow,
                        k0,
                        kn,
                        note="output errors",
                    )
                    comp = [
                        self.addr_op(TMP_A, SLOT["err"], 0),
                        self.setr_op(TMP_B, (k0 - kbase) * sh.taps * wrow),
                        self.setr_op(K_IDX, k0),
                        self.setr_op(C_IDX, 0 if sh.groups > 1 else c0),
                        self.setr_op(P_IDX, 0),
                        e.make(
                            "tc.bwd",
                            desc=desc,
                            rk=K_IDX,
                            kn=kn,
                            rc=C_IDX,
                            cn=sh.cg if sh.groups > 1 else ch,
                            rp=P_IDX,
                            pn=sh.oh,
                            rimg=IMG,
                            ra=TMP_A,
                            rb=TMP_B,
                            ro=ZERO,
                            acc=int(k0 != kbase),
                            fin=int(last),
                        ),
                    ]
                    stores = []
                    if last:
                        stores = self.channels(
                            "dma.st", "err", ZERO, 0, BASE_B, sh.c, pin, c0, ch, note="input errors"
                        )
                    e.step(loads, comp, stores)
                e.emit("sync", sg=ACC, unit=UNIT.values.index("st"))

            self.batch_loop([(BASE_A, dy), (BASE_B, dx)], body)
            e.emit("nop", wt=ACC)
            e.end_block(nslots)

    def wu_mac(self, layer: Layer) -> None:
        """Weight gradient over the batch per (k, c) tile, then SGD and group-Lasso pruning."""
        e, mm, cfg = self.e, self.mm, self.cfg
        sh = conv_shape(layer)
        ws = self.wsparse(layer)
        desc = self.descriptor(layer, layer.kind)
        t = wu_tiling(sh, cfg, ws, self.skip_bytes)
        x = mm[f"act:{layer.inputs[0]}"]
        dy = mm[f"err:{layer.name}"]
        w, v = mm[f"w:{layer.name}"], mm[f"v:{layer.name}"]
        gc = cfg.wsu.group_in_channels
        c_tiles = [0] if sh.groups > 1 else list(range(0, sh.c, t.cn))
        for k0 in range(0, sh.k, t.kn):
            for c0 in c_tiles:
                tile_w = t.kn * sh.taps * t.cn
                cload = t.kn // sh.kg * sh.cg if sh.groups > 1 else t.cn
                c_off = k0 // sh.kg * sh.cg if sh.groups > 1 else c0
                nslots = e.begin_slots(t.slot_bases(cfg, ("act", "err", "wgt", "msk")))
                e.emit(
                    "sfu",
                    op=sfu_code("zero"),
                    desc=desc,
                    bufa=buf_code("err"),
                    ra=ZERO,
                    bufb=buf_code("err"),
                    rb=ZERO,
                    bufo=buf_code("err"),
                    ro=ZERO,
                    rimg=IMG,
                    n=tile_w,
                    sg=PERS,
                    note="clear gradient accumulators",
                )
                e.emit("sync", wt=PERS, unit=UNIT.values.index("tc"))

                def body(
                    k0: int = k0, c0: int = c0, cload: int = cload, c_off: int = c_off
                ) -> None:
                    for p0 in range(0, sh.oh, t.pn):
                        r0 = max(0, p0 * sh.stride - sh.pad)
                        r1 = min(sh.h, (p0 + t.pn - 1) * sh.stride - sh.pad + sh.r)
                        loads = self.channels(
                            "dma.ld",
                            "err",
                            SLOT["err"],
                            0,
                            BASE_A,
                            sh.k,
                            t.pn * sh.ow,
                            k0,
                            t.kn,
                            pix0=p0 * sh.ow,
                            note="output errors",
                        )
                        loads += self.channels(
                            "dma.ld",
                            "act",
                            SLOT["act"],
                            0,
                            BASE_B,
                            sh.c,
                            (r1 - r0) * sh.w,
                            c_off,
                            cload,
                            pix0=r0 * sh.w,
                            note="input rows",
                        )
                        comp = [
                            self.setr_op(K_IDX, k0),
                            self.setr_op(C_IDX, c0),
                            self.setr_op(P_IDX, p0),
                            e.make(
                                "tc.wgr",
                                desc=desc,
                                rk=K_IDX,
                                kn=t.kn,
                                rc=C_IDX,
                                cn=t.cn,
                                rp=P_IDX,
                                pn=t.pn,
                                rimg=IMG,
                                ra=SLOT["err"],
                                rb=SLOT["act"],
                                ro=ZERO,
                                acc=1,
                                fin=0,
                            ),
                        ]
                        e.step(loads, comp, [])

                self.batch_loop([(BASE_A, dy), (BASE_B, x)], body)
                e.emit("barrier")
                # update: weights and momentum of the tile through the slots
                wrow = sh.cg
                e.setr(BASE_A, w.addr)
                e.setr(BASE_B, v.addr)
                off = k0 * sh.taps * wrow + c0
                loads = self.e.dma(
                    "dma.ld",
                    "wgt",
                    SLOT["wgt"],
                    0,
                    BASE_A,
                    off,
                    t.kn * sh.taps,
                    t.cn,
                    wrow,
                    t.cn,
                    note="weights",
                )
                loads += self.e.dma(
                    "dma.ld",
                    "err",
                    SLOT["err"],
                    0,
                    BASE_B,
                    off,
                    t.kn * sh.taps,
                    t.cn,
                    wrow,
                    t.cn,
                    note="momentum",
                )
                comp = [
                    e.make(
                        "sgd",
                        rw=SLOT["wgt"],
                        rg=ZERO,
                        rv=SLOT["err"],
                        n=tile_w,
                        note="SGD with momentum, stochastic rounding",
                    )
                ]
                stores = self.e.dma(
                    "dma.st",
                    "wgt",
                    SLOT["wgt"],
                    0,
                    BASE_A,
                    off,
                    t.kn * sh.taps,
                    t.cn,
                    wrow,
                    t.cn,
                    note="weights",
                )
                stores += self.e.dma(
                    "dma.st",
                    "err",
                    SLOT["err"],
                    0,
                    BASE_B,
                    off,
                    t.kn * sh.taps,
                    t.cn,
                    wrow,
                    t.cn,
                    note="momentum",
                )
                if ws:
                    comp += [
                        self.setr_op(K_IDX, k0),
                        self.setr_op(C_IDX, c0),
                        self.addr_op(TMP_O, SLOT["err"], _align(tile_w)),
                        e.make(
                            "ws.norm",
                            desc=desc,
                            rk=K_IDX,
                            kn=t.kn,
                            rc=C_IDX,
                            cn=t.cn,
                            rw=SLOT["wgt"],
                            rn=TMP_O,
                        ),
                        e.make(
                            "ws.prune",
                            desc=desc,
                            rk=K_IDX,
                            kn=t.kn,
                            rc=C_IDX,
                            cn=t.cn,
                            rw=SLOT["wgt"],
                            rn=TMP_O,
                            rm=SLOT["msk"],
                        ),
                    ]
                    e.setr(BASE_C, mm[f"gmap:{layer.name}"].addr)
                    stores += self.e.dma(
                        "dma.st",
                        "msk",
                        SLOT["msk"],
                        0,
                        BASE_C,
                        k0 * (sh.cg // gc) + c0 // gc,
                        t.kn,
                        t.cn // gc,
                        sh.cg // gc,
                        t.cn // gc,
                        note="group map",
                    )
                e.step(loads, comp, stores)
                e.end_block(nslots)


__all__ = ["ACC_BYTES", "FREE", "NORM_BYTES", "Lowering", "TrainParams", "conv_shape"]
