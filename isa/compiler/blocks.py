"""Building blocks shared by the forward and backward lowering: descriptors, the batch loop,
channel-tile transfers and operand helpers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from isa.compiler.emitter import (
    BASE_C,
    IMG,
    SLOT,
    ZERO,
    Op,
    buf_code,
    sfu_code,
)
from isa.compiler.memmap import CompileError
from isa.compiler.plan import (
    BN_STAT_BYTES,
    N_DESC,
    GraphPlan,
    chw,
    conv_shape,
)
from isa.spec import LAYER_KIND
from workloads.graph import Layer


class BlockBuilder(GraphPlan):
    """Helpers that emit or make the ops every block uses."""

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
            c, h, w = chw(layer.in_shape)
            k = chw(layer.out_shape)[0]
            kh, kw, st, pad, groups = 1, 1, 1, 0, 1
            if kind == "norm":  # the statistics' count: B h w values per channel
                groups = self.batch
            if layer.kind in ("maxpool", "avgpool"):
                _, oh, ow = chw(layer.out_shape)
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

    def batch_loop(self, bases: list[tuple], body: Callable[[], None]) -> None:
        """Hardware loop over the images. `bases` are (register, batched region) or (register,
        region, offset register): the register starts at the region (plus the offset
        register's value) and steps by one image per iteration."""
        for base in bases:
            reg, region = base[0], base[1]
            off = base[2] if len(base) > 2 else None
            if off is None:
                self.e.setr(reg, region.addr)
            else:
                self.e.addr(reg, off, region.addr)
        self.e.setr(IMG, 0)

        def image() -> None:
            self.e.per_image_backward = self.e.phase in ("bp", "wu")
            try:
                if self.e.per_image_backward and self.sparse:
                    # a skipped image's work is not issued, so it holds no buffer slot
                    with self.e.skip_region(IMG):
                        body()
                else:
                    body()
            finally:
                self.e.per_image_backward = False
            for base in bases:
                self.e.addr(base[0], base[0], base[1].bytes_per_image)
            self.e.addr(IMG, IMG, 1)

        n = self.e.rotation
        if not n:
            with self.e.loop(self.batch):
                image()
            return
        # a slot rotation (`Emitter.begin_slots`): n images per iteration, each step's slot
        # fixed in the program, then the rest of the batch
        assert self.e.phase not in ("bp", "wu") or not self.sparse, "rotation with skip regions"
        if self.batch // n:
            with self.e.loop(self.batch // n):
                for _ in range(n):
                    image()
        for _ in range(self.batch % n):
            image()

    def channel_loop(self, c: int, cn: int, regs: Sequence[int], tile: Callable[[], None]) -> None:
        """Channel tiles of [pixel][channel] tensors as a hardware loop: `tile()` emits the tile
        at the DRAM base registers `regs`, which step by cn bytes (one tile of channels) per
        iteration and return to where they were afterwards."""
        n = c // cn
        if n == 1:
            tile()
            return
        with self.e.loop(n):
            tile()
            for reg in regs:
                self.e.addr(reg, reg, cn)
        for reg in regs:
            self.e.addr(reg, reg, -cn * n)

    def gate_map(
        self, kind: str, groups: int, pixels: int, g0: int, gn: int, pix0: int = 0, note: str = ""
    ) -> list[Op]:
        """Move gate-map groups [g0, g0+gn) of `pixels` pixels (from pix0) of a layer with
        `groups` channel groups between DRAM (register BASE_C) and the step's mask slot."""
        return self.channels(
            kind, "msk", SLOT["msk"], 0, BASE_C, groups, pixels, g0, gn, pix0=pix0, note=note
        )

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
        dram_off: int = 0,
    ) -> list[Op]:
        """Move channels [c0, c0+cn) of `pixels` pixels (from pixel pix0) of a [pixel][c]
        tensor with c channels; compact [pixel][cn] in the buffer. `dram_off`: a byte offset
        added to the DRAM address (another tensor at a fixed distance from register rdram)."""
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
                dram_off + pix0 * c,
                pixels // per,
                per * c,
                per * c,
                per * c,
                note,
            )
        return self.e.dma(
            kind, buf, rbuf, boff, rdram, dram_off + pix0 * c + c0, pixels, cn, c, cn, note
        )

    def sfu(
        self,
        op: str,
        desc: int,
        a: tuple[str, int],
        b: tuple[str, int],
        o: tuple[str, int],
        n: int,
        note: str = "",
        c: tuple[str, int] = ("act", 0),
        pa: int = 0,
        ch: int = 0,
        esz: int = 0,
    ) -> Op:
        """`c`, `pa`, `ch`: the batch-norm operands (isa.spec `sfu`); `esz`: zero's width."""
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
            bufc=buf_code(c[0]),
            rc=c[1],
            pa=pa,
            ch=ch,
            esz=esz,
        )

    def load_norm_params(self, reg: int, c0: int, cn: int, c: int) -> list[Op]:
        """Loads of a batch norm's gamma and beta for channels [c0, c0 + cn) (two DRAM rows of
        c at register `reg`) to weight-buffer address 0."""
        return self.e.dma("dma.ld", "wgt", ZERO, 0, reg, c0, 2, cn, c, cn, note="gamma, beta")

    def move_norm_stats(self, op: str, reg: int, c0: int, cn: int) -> list[Op]:
        """`dma.ld` / `dma.st` of the statistics of channels [c0, c0 + cn) between error-buffer
        address 0 and DRAM at register `reg`."""
        return self.e.dma(
            op,
            "err",
            ZERO,
            0,
            reg,
            c0 * BN_STAT_BYTES,
            1,
            cn * BN_STAT_BYTES,
            0,
            0,
            note="statistics",
        )

    def sfu_zero(
        self, desc: int, ro: int, n: int, note: str, sg: int = 0, esz: int = 0, buf: str = "err"
    ) -> None:
        """Clear n elements (`esz` bytes each, 0: the descriptor's default) of buffer `buf`
        (the error buffer: accumulators, statistics) at register ro."""
        self.e.emit(
            "sfu",
            sg=sg,
            op=sfu_code("zero"),
            desc=desc,
            bufa=buf_code("err"),
            ra=0,
            bufb=buf_code("err"),
            rb=0,
            bufo=buf_code(buf),
            ro=ro,
            rimg=IMG,
            n=n,
            bufc=0,
            rc=0,
            pa=0,
            ch=0,
            esz=esz,
            note=note,
        )

    def addr_op(self, rd: int, rs: int, imm: int) -> Op:
        return self.e.make("addr", rd=rd, rs=rs, imm=imm)

    def setr_op(self, rd: int, imm: int) -> Op:
        return self.e.make("setr", rd=rd, imm=imm)

    def block(self, layer: str, phase: str) -> None:
        self.e.layer, self.e.phase = layer, phase
