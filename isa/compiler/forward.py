"""Forward-phase lowering: conv/FC tiles with channel gating, special functions, batch norm,
the loss and the gradient-skip decision."""

from __future__ import annotations

from isa.compiler.blocks import BlockBuilder
from isa.compiler.emitter import (
    BASE_A,
    BASE_B,
    BASE_C,
    C_IDX,
    FG_OFF,
    FGT_OFF,
    FW_OFF,
    IMG,
    K_IDX,
    P_IDX,
    SLOT,
    STAT,
    TMP_A,
    TMP_B,
    TMP_D,
    TMP_O,
    ZERO,
    tc_pass,
)
from isa.compiler.memmap import CompileError
from isa.compiler.plan import (
    ALIAS_KINDS,
    BN_STAT_BYTES,
    BN_SUM_BYTES,
    TMP_B_DRAM,
    chw,
    conv_shape,
)
from isa.compiler.tiling import (
    ACC_BYTES,
    Tiling,
    align,
    channel_tile,
    fp_tiling,
)
from isa.spec import UNIT
from workloads.graph import MAC_KINDS, Layer


class ForwardLowering(BlockBuilder):
    """FP and loss blocks."""

    # ------------------------------------------------------------ forward
    def forward(self, layer: Layer) -> None:
        if layer.kind in ALIAS_KINDS or layer.kind == "input" or layer.name in self.fused_into:
            return  # nothing to run, or run inside its chain's batch-norm block
        if layer.name in self.pool_fused:
            return  # ReLU / max-pool run in the producing conv's block (fp_tile)
        if any(h is layer for h in self.norm_of.values()):
            return  # normalised by the conv that reads it (fp_tile), statistics by its producer
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
        """Forward conv/FC: per k-tile, its weights stay resident while the images stream.

        The k-tile's position lives in registers (K_IDX = k0, FW_OFF / FG_OFF / FGT_OFF =
        offsets of its weights, group-mask and gate-map entries), so for ordinary convs the
        k-tiles are a hardware loop around one tile body; grouped convs set them per tile."""
        e, cfg = self.e, self.cfg
        sh = conv_shape(layer)
        gated, ws = self.gated(layer), self.wsparse(layer)
        desc = self.descriptor(layer, layer.kind)
        if gated:
            e.emit(
                "cgcfg",
                desc=desc,
                g=cfg.cgu.base_fraction_denominator,
                group=cfg.cgu.group_size_channels,
            )
        pool = self.fwd_pool.get(layer.name)
        taps = self.pool_taps(pool[1]) if pool is not None else 0
        t = fp_tiling(sh, cfg, gated, self.skip_bytes, ws, taps)
        if pool is not None:  # their descriptors, for the fused ops in fp_tile
            self.descriptor(pool[0], "relu")
            self.descriptor(pool[1], "maxpool")
        ngc = -(-sh.cg // cfg.wsu.group_in_channels)  # group-mask bytes per output channel
        group = cfg.cgu.group_size_channels
        if sh.groups == 1:
            for reg in (K_IDX, FW_OFF, FG_OFF, FGT_OFF):
                e.setr(reg, 0)
            with e.loop(sh.k // t.kn):
                self.fp_tile(layer, sh, t, desc, None)
                if t.kn == sh.k:
                    return  # one tile: nothing to step
                e.addr(K_IDX, K_IDX, t.kn)
                e.addr(FW_OFF, FW_OFF, t.kn * sh.taps * sh.cg)
                e.addr(FG_OFF, FG_OFF, t.kn * ngc)
                e.addr(FGT_OFF, FGT_OFF, t.kn // group if gated else 0)
            return
        for k0 in range(0, sh.k, t.kn):
            e.setr(K_IDX, k0)
            e.setr(FW_OFF, k0 * sh.taps * sh.cg)
            self.fp_tile(layer, sh, t, desc, k0 // sh.kg * sh.cg)

    def fp_tile(self, layer: Layer, sh, t, desc: int, c_off: int | None) -> None:
        """One k-tile at the registers' position; `c_off` is the first input channel of a
        grouped conv's tile (None: all input channels, an ordinary conv)."""
        e, mm, cfg = self.e, self.mm, self.cfg
        gated, ws = self.gated(layer), self.wsparse(layer)
        norm = self.norm_of.get(layer.name)  # batch norm (+ chain) applied to the input here
        x = mm[f"act:{(norm.inputs[0] if norm is not None else layer.inputs[0])}"]
        y, w = mm[f"act:{layer.name}"], mm[f"w:{layer.name}"]
        group = cfg.cgu.group_size_channels
        ngc = -(-sh.cg // cfg.wsu.group_in_channels)
        base_c = sh.c // cfg.cgu.base_fraction_denominator
        wbytes = t.kn * sh.taps * sh.cg
        rt = C_IDX if layer.name in self.fwd_pool else TMP_B
        # persistent data; each load reads its own base register when placed
        e.addr(BASE_C, FW_OFF, w.addr)
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
            note="weights of the k-tile",
        )
        if gated:
            e.setr(BASE_A, mm[f"thr:{layer.name}"].addr)
            loads += self.e.dma(
                "dma.ld",
                "wgt",
                ZERO,
                align(wbytes),
                BASE_A,
                0,
                1,
                16,
                16,
                16,
                note="gate threshold",
            )
        if ws:  # the group mask of the k-tile's weights, after the skip flags
            e.addr(BASE_B, FG_OFF, mm[f"gmap:{layer.name}"].addr)
            loads += self.channels(
                "dma.ld",
                "msk",
                ZERO,
                self.skip_bytes,
                BASE_B,
                ngc,
                t.kn,
                0,
                ngc,
                note="group mask of the k-tile",
            )
        e.persistent_load(loads, ("tc",) + (("cgu",) if gated else ()))
        bn = self.stat_of.get(layer.name)  # batch norm whose statistics this conv takes
        chain, res, pre = [], None, None
        if norm is not None:
            # the input's batch norm: gamma, beta after the weights (and threshold), its
            # statistics after this conv's own (FG_OFF holds their address in the loop)
            chain = self.chain.get(norm.name, [])
            pre = mm[f"act:{(chain[-1] if chain else norm).name}"]  # stored once, here
            add = next((f for f in chain if f.kind == "add"), None)
            if add is not None:
                res = mm[f"act:{next(i for i in add.inputs if self.real(i) != norm.name)}"]
            stats_at = BN_STAT_BYTES * sh.k if bn is not None else 0
            e.setr(BASE_A, mm[f"bn:{norm.name}"].addr)
            e.setr(BASE_B, mm[f"bnstat:{norm.name}"].addr)
            loads = self.e.dma(
                "dma.ld", "wgt", ZERO, align(t.persistent["wgt"]), BASE_A, 0, 2, sh.c, sh.c,
                sh.c, note=f"gamma, beta of {norm.name}",
            )  # fmt: skip
            loads += self.e.dma(
                "dma.ld", "err", ZERO, stats_at, BASE_B, 0, 1, sh.c * BN_STAT_BYTES, 0, 0,
                note=f"statistics of {norm.name}",
            )  # fmt: skip
            e.persistent_load(loads, ("sfu",))
            e.setr(FG_OFF, stats_at)
            norm_desc = self.descriptor(norm, "norm")
            fused = [(f, self.descriptor(f, f.kind)) for f in chain]
        if bn is not None:
            bn_desc = self.descriptor(bn, "norm")
            self.sfu_zero(bn_desc, ZERO, 2 * sh.k, "clear statistics of " + bn.name, esz=4)
        pool = self.fwd_pool.get(layer.name)  # ReLU and max-pool applied to the output here
        bufs = ("act", "msk") if gated or pool else ("act",)
        cload = sh.c if c_off is None else t.kn // sh.kg * sh.cg
        skew = cfg.buffers.activation.word_bytes
        # more slots where three or four of a step fit (with the residual operand loaded
        # after the accumulators): an image's chain (load, normalisation, passes, stores) is
        # longer than two images' work, so two slots leave the cores idle (docs/simulator.md)
        need = dict(t.needs)
        if res is not None:
            need["act"] = need.get("act", 0) + skew + align(sh.h * sh.w * sh.c)
        slot_bases = t.rotation_bases(cfg, bufs, need, cfg.buffers.forward_slots) or t.slot_bases(
            cfg, bufs
        )
        nslots = e.begin_slots(slot_bases)
        # Software pipelining: with the input normalised here, the SFU takes the statistics of
        # image i-1's output after normalising image i, so the tensor cores never wait for
        # the statistics (the in-order SFU would otherwise hold image i+1's normalisation
        # behind image i's statistics). Image 0 reads a zeroed tile; the last image's
        # statistics follow the loop.
        lagged = norm is not None and bn is not None and nslots >= 2
        outs = t.pn * sh.ow * sh.k
        if lagged:
            xb = align(sh.rows_in(t.pn) * sh.w * cload)
            e.setr(TMP_D, (e.prev_slot("act") if e.rotation else slot_bases["act"][1]) + xb)
            e.place(self.sfu("zero", bn_desc, ("act", TMP_D), ("act", ZERO), ("act", TMP_D), outs))
            e.emit("nop", sg=STAT)

        def body() -> None:
            for p0 in range(0, sh.oh, t.pn):
                r0 = max(0, p0 * sh.stride - sh.pad)
                r1 = min(sh.h, (p0 + t.pn - 1) * sh.stride - sh.pad + sh.r)
                xbytes = align(sh.rows_in(t.pn) * sh.w * cload)
                loads = self.channels(
                    "dma.ld",
                    "act",
                    SLOT["act"],
                    0,
                    BASE_A,
                    sh.c,
                    (r1 - r0) * sh.w,
                    c_off or 0,
                    cload,
                    pix0=r0 * sh.w,
                    note="input rows",
                )
                comp = []
                stores = []
                if norm is not None:  # normalise (+ add, ReLU) the whole image in place
                    n = sh.h * sh.w * sh.c
                    slot = ("act", SLOT["act"])
                    comp.append(
                        self.sfu(
                            "norm_fwd",
                            norm_desc,
                            slot,
                            ("err", FG_OFF),
                            slot,
                            n,
                            pa=align(t.persistent["wgt"]),
                            ch=sh.c,
                            note=f"normalise {norm.name}",
                        )
                    )
                    for f, fdesc in fused:
                        b = ("act", ZERO)
                        if f.kind == "add":  # the residual operand, after the accumulators
                            roff = xbytes + t.kn * t.pn * sh.ow * ACC_BYTES + skew
                            loads += self.channels(
                                "dma.ld", "act", SLOT["act"], roff, FW_OFF, sh.c, sh.h * sh.w,
                                0, sh.c, note="residual operand",
                            )  # fmt: skip
                            comp.append(self.addr_op(TMP_B, SLOT["act"], roff))
                            b = ("act", TMP_B)
                        op = "add" if f.kind == "add" else "relu_fwd"
                        comp.append(self.sfu(op, fdesc, slot, b, slot, n, note=f"fused {f.name}"))
                    stores += self.channels(
                        "dma.st", "act", SLOT["act"], 0, TMP_A, sh.c, sh.h * sh.w, 0, sh.c,
                        note="normalised input (read by BP)",
                    )  # fmt: skip
                stat_prev = None
                if lagged:  # statistics of the previous image's output (other slot)
                    stat_prev = self.sfu(
                        "norm_stat", bn_desc, ("act", TMP_D), ("err", ZERO), ("err", ZERO),
                        outs, note=f"statistics of {bn.name} (previous image)", ch=sh.k,
                    )  # fmt: skip
                    prev = (
                        self.setr_op(TMP_D, e.prev_slot("act"))
                        if e.rotation
                        else e.make("xorr", rd=TMP_D, rs=SLOT["act"], imm=e.slot_toggle["act"])
                    )
                    comp += [prev, self.addr_op(TMP_D, TMP_D, xbytes), stat_prev]
                comp += [
                    self.addr_op(TMP_O, SLOT["act"], xbytes),
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
                    ra=SLOT["act"],
                    rb=ZERO,
                    ro=TMP_O,
                    rm=SLOT["msk"] if gated else ZERO,
                    gm=self.skip_bytes,
                )
                if gated:
                    comp += [
                        e.make(
                            "tc.fwd",
                            note="base pass",
                            cn=base_c,
                            acc=0,
                            fin=0,
                            **{"pass": tc_pass("base")},
                            **tc,
                        ),
                        # the threshold's address (C_IDX when TMP_B is the pool's DRAM base)
                        self.setr_op(rt, align(wbytes)),
                        e.make(
                            "cg.gate",
                            desc=desc,
                            rk=K_IDX,
                            kn=t.kn,
                            rp=P_IDX,
                            pn=t.pn,
                            ra=TMP_O,
                            rt=rt,
                            rm=SLOT["msk"],
                        ),
                        self.setr_op(C_IDX, base_c),
                        e.make(
                            "tc.fwd",
                            note="conditional pass",
                            cn=sh.c - base_c,
                            acc=1,
                            fin=1,
                            **{"pass": tc_pass("cond")},
                            **tc,
                        ),
                    ]
                else:
                    comp.append(
                        e.make("tc.fwd", cn=sh.cg, acc=0, fin=1, **{"pass": tc_pass("full")}, **tc)
                    )
                if bn is not None and not lagged:  # statistics of the output tile (all k)
                    comp.append(
                        self.sfu(
                            "norm_stat",
                            bn_desc,
                            ("act", TMP_O),
                            ("err", ZERO),
                            ("err", ZERO),
                            t.pn * sh.ow * sh.k,
                            note=f"statistics of {bn.name}",
                            ch=sh.k,
                        )
                    )
                # BASE_B points at output channel k0, BASE_C at the tile's first gate group
                if not self.dropped(f"act:{layer.name}"):  # else only the pool's outputs
                    stores += self.channels(
                        "dma.st",
                        "act",
                        SLOT["act"],
                        xbytes,
                        BASE_B,
                        sh.k,
                        t.pn * sh.ow,
                        0,
                        t.kn,
                        pix0=p0 * sh.ow,
                        note="output rows",
                    )
                if gated:
                    gmap = self.gate_map(
                        "dma.st", sh.k // group, t.pn * sh.ow, 0, t.kn // group,
                        pix0=p0 * sh.ow, note="gate map",
                    )  # fmt: skip
                    # lagged: the short gate-map store first, its completion signals STAT
                    # (`hand_over_lagged`)
                    stores = gmap + stores if lagged else stores + gmap
                if pool is not None:
                    comp, stores = self.fp_pool_tile(sh, t, pool, xbytes, comp, stores)
                e.step(loads, comp, stores)
                if stat_prev is not None:
                    self.hand_over_lagged(comp, stat_prev, stores)

        bases = [(BASE_A, x), (BASE_B, y, K_IDX)]
        if pool is not None:  # the pooled output (the argmax at a fixed distance)
            bases.append((TMP_B, mm[f"act:{pool[1].name}"], K_IDX))
        if gated:
            bases.append((BASE_C, mm[f"gate:{layer.name}"], FGT_OFF))
        if res is not None:
            bases.append((FW_OFF, res))
        if pre is not None:  # last: FGT_OFF (= TMP_A) is read above first
            bases.append((TMP_A, pre))
        self.batch_loop(bases, body)
        if lagged:  # the last image's statistics
            if e.rotation:
                e.setr(TMP_D, e.prev_slot("act"))
            else:
                e.emit("xorr", rd=TMP_D, rs=SLOT["act"], imm=e.slot_toggle["act"])
            e.addr(TMP_D, TMP_D, xb)
            last = self.sfu(
                "norm_stat", bn_desc, ("act", TMP_D), ("err", ZERO), ("err", ZERO), outs,
                note=f"statistics of {bn.name} (last image)", ch=sh.k,
            )  # fmt: skip
            last.wt = STAT
            e.place(last)
        e.end_block(nslots)
        if bn is not None:
            self.store_stats(bn, 0, sh.k)

    def hand_over_lagged(self, comp: list, stat_prev, stores: list) -> None:
        """Tokens of a step whose SFU takes the previous image's statistics (`lagged`).

        The tensor cores wait for the normalisation only: the SFU op before the statistics
        hands over to them. The statistics wait for the previous image's output tile (STAT).
        STAT comes from the step's first store: it waits for the tensor cores' last op (DONE,
        whose drain writes the tile), so its completion says the tile is there without
        holding the tensor-core queue, as a `sync tc` would (the next image's first pass
        behind this image's drain). Gated convs store the short gate map first, so STAT
        follows DONE closely. A single store (it signals FREE) falls back to the sync."""
        sfu_ops = [o for o in comp if o.op == "sfu"]
        before = sfu_ops[sfu_ops.index(stat_prev) - 1]
        before.sg, stat_prev.sg, stat_prev.wt = stat_prev.sg, 0, STAT
        sts = [o for o in stores if o.op == "dma.st"]
        if len(sts) > 1:
            sts[0].sg = STAT
        else:
            self.e.emit("sync", sg=STAT, unit=UNIT.values.index("tc"))

    def fp_pool_tile(self, sh, t, pool, xbytes: int, comp: list, stores: list):
        """The fused ReLU and max-pool of a forward output tile (whole images, `t.pn` = oh):
        relu_fwd from the FP8 outputs to the ReLU's tile after the accumulators, maxpool_fwd
        from there to the pooled tile after it, the argmax after the gate mask; stores of the
        pooled output and the argmax at TMP_B (channel k0 of the pooled output). The step's
        tokens order tc -> sfu -> st (`Emitter.step`)."""
        relu, mp = pool
        mm, cfg = self.mm, self.cfg
        rdesc, pdesc = self.desc_of[relu.name], self.desc_of[mp.name]
        out = t.kn * t.pn * sh.ow
        pout = out // self.pool_taps(mp)
        roff = xbytes + align(t.kn * t.pn * sh.ow * ACC_BYTES)
        poff = roff + align(out)
        group = cfg.cgu.group_size_channels
        moff = align(t.pn * sh.ow * (t.kn // group)) if self.gated(self.layers[sh.name]) else 0
        # registers read at dispatch: P_IDX / C_IDX / TMP_O are free once the tc ops issued
        comp = [
            *comp,
            self.addr_op(P_IDX, SLOT["act"], roff),
            self.sfu("relu_fwd", rdesc, ("act", TMP_O), ("act", ZERO), ("act", P_IDX), out,
                     note=f"fused {relu.name}"),
            self.addr_op(C_IDX, SLOT["act"], poff),
            self.addr_op(TMP_O, SLOT["msk"], moff),
            self.sfu("maxpool_fwd", pdesc, ("act", P_IDX), ("msk", TMP_O), ("act", C_IDX), out,
                     note=f"fused {mp.name}"),
        ]  # fmt: skip
        _, poh, pow_ = chw(mp.out_shape)
        delta = mm[f"argmax:{mp.name}"].addr - mm[f"act:{mp.name}"].addr
        stores = stores + self.channels(
            "dma.st", "act", SLOT["act"], poff, TMP_B, sh.k, poh * pow_, 0, t.kn,
            note=f"output of {mp.name}",
        )  # fmt: skip
        stores += self.channels(
            "dma.st", "msk", SLOT["msk"], moff, TMP_B, sh.k, poh * pow_, 0, t.kn,
            note=f"argmax of {mp.name}", dram_off=delta,
        )  # fmt: skip
        assert pout == poh * pow_ * t.kn
        return comp, stores

    def store_stats(self, bn: Layer, c0: int, cn: int) -> None:
        """Store the statistics of channels [c0, c0 + cn) of batch norm `bn` (FP32 sum and
        sum of squares, at address 0 of the error buffer) for its later passes."""
        e = self.e
        e.setr(BASE_C, self.mm[f"bnstat:{bn.name}"].addr)
        for o in self.move_norm_stats("dma.st", BASE_C, c0, cn):
            e.place(o)
        e.emit("barrier")

    def fp_sfu(self, layer: Layer) -> None:
        """ReLU, pooling and residual add: channel tiles over whole images."""
        e, mm = self.e, self.mm
        kind = {"relu": "relu", "maxpool": "maxpool", "avgpool": "avgpool", "add": "add"}
        desc = self.descriptor(layer, kind[layer.kind])
        c, h, w = chw(layer.in_shape)
        _, oh, ow = chw(layer.out_shape)
        ins = [mm[f"act:{i}"] for i in layer.inputs]
        y = mm[f"act:{layer.name}"]
        pin, pout = h * w, oh * ow
        # a second input sits one word further (`skew`): the two are read in the same cycles
        skew = self.cfg.buffers.activation.word_bytes if len(ins) > 1 else 0
        per_c = {"act": align(pin) * len(ins) + align(pout) + skew}
        if layer.kind == "maxpool":
            per_c["msk"] = pout
        t = channel_tile(layer.name, c, per_c, self.cfg, self.skip_bytes)
        cn = t.cn
        bufs = ("act", "msk") if layer.kind == "maxpool" else ("act",)
        nslots = e.begin_slots(t.slot_bases(self.cfg, bufs))

        def tile(c0: int = 0) -> None:
            # one channel tile at the base registers (stepped by channel_loop)
            loads, off = [], []
            for j, reg in enumerate((BASE_A, BASE_B)[: len(ins)]):
                off.append(j * (align(pin * cn) + skew))
                loads += self.channels("dma.ld", "act", SLOT["act"], off[-1], reg, c, pin, c0, cn)
            o = len(ins) * align(pin * cn) + skew
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

        def body() -> None:
            self.channel_loop(c, cn, [b[0] for b in bases], tile)

        bases = [(r, reg) for r, reg in zip((BASE_A, BASE_B), ins, strict=False)]
        bases.append((BASE_C, y))
        if layer.kind == "maxpool":
            bases.append((TMP_B_DRAM, mm[f"argmax:{layer.name}"]))
        self.batch_loop(bases, body)
        e.end_block(nslots)

    def fp_norm(self, layer: Layer) -> None:
        """Batch norm: a statistics pass over the batch, then the normalization pass, which
        also applies the fused residual add and ReLU of the layer's chain (`GraphPlan.chain`)
        in the buffer and stores only the chain's last output."""
        e, mm, cfg = self.e, self.mm, self.cfg
        desc = self.descriptor(layer, "norm")
        chain = self.chain.get(layer.name, [])
        fused = [(f, self.descriptor(f, f.kind)) for f in chain]
        last = chain[-1].name if chain else layer.name
        add = next((f for f in chain if f.kind == "add"), None)
        res = None  # the residual add's other operand (in DRAM)
        if add is not None:
            cur = layer.name
            res = mm[f"act:{next(i for i in add.inputs if self.real(i) != cur)}"]
        c, h, w = chw(layer.in_shape)
        pix = h * w
        # The add reads its two operands in the same cycles: one word of skew puts them in
        # different banks (the tiles are multiples of a bank row, see simulator.timing.banks).
        skew = cfg.buffers.activation.word_bytes
        x, y = mm[f"act:{layer.inputs[0]}"], mm[f"act:{last}"]
        params, stats = mm[f"bn:{layer.name}"], mm[f"bnstat:{layer.name}"]
        t = channel_tile(
            layer.name,
            c,
            # the residual operand sits one word past a bank row boundary (`skew`)
            {"act": 3 * align(pix) + skew if res is not None else 2 * align(pix)},
            cfg,
            self.skip_bytes,
            persistent_per_channel={"err": BN_STAT_BYTES + BN_SUM_BYTES, "wgt": 2},
        )
        cn = t.cn
        # statistics already taken by the conv that produced x (GraphPlan.stat_of)
        stats_done = any(bn is layer for bn in self.stat_of.values())
        for c0 in range(0, c, cn):
            e.setr(BASE_C, params.addr)
            loads = self.load_norm_params(BASE_C, c0, cn, c)
            if stats_done:
                e.setr(TMP_A, stats.addr)
                loads += self.move_norm_stats("dma.ld", TMP_A, c0, cn)
            e.persistent_load(loads, ("sfu",))
            if not stats_done:
                self.sfu_zero(desc, ZERO, 2 * cn, "clear statistics", esz=4)
            for pass_ in ("norm_fwd",) if stats_done else ("norm_stat", "norm_fwd"):
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
                                ch=cn,
                            )
                        )
                        e.step(loads, comp, [])
                        return
                    o = align(pix * cn)
                    if res is not None:  # the add's other operand, after the output
                        loads += self.channels(
                            "dma.ld", "act", SLOT["act"], 2 * o + skew, BASE_C, c, pix, c0, cn
                        )
                    comp.append(self.addr_op(TMP_O, SLOT["act"], o))
                    comp.append(
                        self.sfu(
                            "norm_fwd",
                            desc,
                            ("act", TMP_A),
                            ("err", ZERO),
                            ("act", TMP_O),
                            cn * pix,
                            ch=cn,
                        )
                    )
                    for f, fdesc in fused:  # in place on the output tile
                        if f.kind == "add":
                            comp.append(self.addr_op(TMP_B, SLOT["act"], 2 * o + skew))
                            b = ("act", TMP_B)
                        else:
                            b = ("act", ZERO)
                        op = "add" if f.kind == "add" else "relu_fwd"
                        comp.append(
                            self.sfu(
                                op,
                                fdesc,
                                ("act", TMP_O),
                                b,
                                ("act", TMP_O),
                                cn * pix,
                                note=f"fused {f.name}",
                            )
                        )
                    stores = self.channels("dma.st", "act", SLOT["act"], o, BASE_B, c, pix, c0, cn)
                    e.step(loads, comp, stores)

                bases = [(BASE_A, x), (BASE_B, y)]
                if res is not None and pass_ == "norm_fwd":
                    bases.append((BASE_C, res))
                self.batch_loop(bases, body)
                e.end_block(nslots)
            if not stats_done:  # keep the statistics for the backward pass
                self.store_stats(layer, c0, cn)

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
                align(n),
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
                self.addr_op(TMP_B, SLOT["act"], align(n)),
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
