"""Backward-phase lowering: error merging, special-function backward, batch-norm backward and
update, data gradients with transposed weights, weight gradients with SGD and group pruning."""

from __future__ import annotations

from isa.compiler.blocks import BlockBuilder
from isa.compiler.emitter import (
    ACC,
    BASE_A,
    BASE_B,
    BASE_C,
    C_IDX,
    G_OFF,
    GT_OFF,
    IMG,
    K_IDX,
    P_IDX,
    PERS,
    SLOT,
    TMP_A,
    TMP_B,
    TMP_O,
    W_OFF,
    ZERO,
)
from isa.compiler.plan import (
    ALIAS_KINDS,
    BN_STAT_BYTES,
    BN_SUM_BYTES,
    chw,
    conv_shape,
)
from isa.compiler.tiling import (
    align,
    bp_tiling,
    channel_tile,
    wu_tiling,
)
from isa.spec import UNIT
from workloads.graph import MAC_KINDS, Layer


class BackwardLowering(BlockBuilder):
    """BP and WU blocks."""

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
        if any(r is layer for r in self.bp_relu.values()):
            return  # its mask is applied in its batch norm's backward block (bp_norm)
        if layer.kind in MAC_KINDS:
            # BP first: the data gradient uses the forward pass's weights, not the updated ones
            if self.g.needs_data_gradient(layer.name):
                self.bp_mac(layer)
            self.block(layer.name, "wu")
            self.wu_mac(layer)
        elif layer.kind in ("relu", "maxpool", "avgpool"):
            self.bp_sfu(layer)
        elif layer.kind == "batchnorm":
            self.bp_norm(layer)
        # add: its inputs share its error storage (see _plan)

    def merge_errors(self, layer: Layer, cons: list[str]) -> None:
        """Sum the error contributions of several consumers into err:<layer>."""
        e, mm = self.e, self.mm
        desc = self.descriptor(layer, "add")
        c, h, w = chw(layer.out_shape)
        pix = h * w
        parts = [mm[f"err:{layer.name}@{x}"] for x in cons]
        total = mm[f"err:{layer.name}"]
        # one word of skew puts the two summands (read in the same cycles) in different banks
        skew = self.cfg.buffers.error.word_bytes
        t = channel_tile(layer.name, c, {"err": 3 * align(pix) + skew}, self.cfg, self.skip_bytes)
        cn = t.cn
        for j in range(1, len(parts)):
            first = parts[0] if j == 1 else total
            nslots = e.begin_slots(t.slot_bases(self.cfg, ("err",)))

            def tile(c0: int = 0) -> None:
                # one channel tile at the base registers (stepped by channel_loop)
                a, b = 0, align(pix * cn) + skew
                o = 2 * align(pix * cn) + skew
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

            bases = [(BASE_A, first), (BASE_B, parts[j]), (BASE_C, total)]

            def body(regs: tuple[int, ...] = tuple(b[0] for b in bases)) -> None:
                self.channel_loop(c, cn, regs, tile)

            self.batch_loop(bases, body)
            e.end_block(nslots)

    def bp_sfu(self, layer: Layer) -> None:
        e, mm = self.e, self.mm
        desc = self.descriptor(layer, layer.kind)
        c, h, w = chw(layer.in_shape)
        _, oh, ow = chw(layer.out_shape)
        pin, pout = h * w, oh * ow
        dy = mm[f"err:{layer.name}"]
        dx = mm[self.err_name(layer.inputs[0], layer.name)]
        per_c = {"err": align(pout) + align(pin)}
        if layer.kind == "relu":
            per_c["act"] = align(pout)
        if layer.kind == "maxpool":
            per_c["msk"] = pout
        t = channel_tile(layer.name, c, per_c, self.cfg, self.skip_bytes)
        cn = t.cn
        bufs = tuple(per_c)
        nslots = e.begin_slots(t.slot_bases(self.cfg, bufs))
        side = {"relu": (f"act:{layer.name}", "act"), "maxpool": (f"argmax:{layer.name}", "msk")}

        def tile(c0: int = 0) -> None:
            # one channel tile at the base registers (stepped by channel_loop)
            o = align(pout * cn)
            loads = self.channels("dma.ld", "err", SLOT["err"], 0, BASE_A, c, pout, c0, cn)
            b = ("err", ZERO)
            if layer.kind in side:
                buf = side[layer.kind][1]
                loads += self.channels("dma.ld", buf, SLOT[buf], 0, BASE_C, c, pout, c0, cn)
                b = (buf, SLOT[buf])
            comp = [
                self.addr_op(TMP_A, SLOT["err"], 0),
                self.addr_op(TMP_O, SLOT["err"], o),
                self.sfu(f"{layer.kind}_bwd", desc, ("err", TMP_A), b, ("err", TMP_O), cn * pout),
            ]
            stores = self.channels("dma.st", "err", SLOT["err"], o, BASE_B, c, pin, c0, cn)
            e.step(loads, comp, stores)

        def body() -> None:
            self.channel_loop(c, cn, [b[0] for b in bases], tile)

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
        c, h, w = chw(layer.in_shape)
        pix = h * w
        relu = self.bp_relu.get(layer.name)  # a ReLU whose backward runs here, fused
        x = mm[f"act:{layer.inputs[0]}"]
        dy = mm[f"err:{(relu or layer).name}"]
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
            {"err": 2 * align(pix), "act": (2 if relu else 1) * align(pix)},
            cfg,
            self.skip_bytes,
            persistent_per_channel=pers,
        )
        cn = t.cn
        relu_desc = self.descriptor(relu, "relu") if relu is not None else 0
        for c0 in range(0, c, cn):
            sums = cn * BN_STAT_BYTES
            vaddr = align(cn * (BN_STAT_BYTES + BN_SUM_BYTES))
            # one register per source: the loads read their base when placed, after all setr
            e.setr(BASE_C, params.addr)
            e.setr(TMP_A, stats.addr)
            e.setr(TMP_B, mom.addr)
            loads = self.load_norm_params(BASE_C, c0, cn, c)
            loads += self.move_norm_stats("dma.ld", TMP_A, c0, cn)
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
            self.sfu_zero(desc, TMP_O, 2 * cn, "clear gradient sums", esz=2)
            for pass_ in ("norm_bwd_stat", "norm_bwd"):
                nslots = e.begin_slots(t.slot_bases(cfg, ("err", "act")))

                def body(c0: int = c0, pass_: str = pass_, sums: int = sums) -> None:
                    loads = self.channels("dma.ld", "err", SLOT["err"], 0, BASE_A, c, pix, c0, cn)
                    loads += self.channels("dma.ld", "act", SLOT["act"], 0, BASE_B, c, pix, c0, cn)
                    comp = [self.addr_op(TMP_A, SLOT["err"], 0)]
                    if relu is not None:  # the ReLU's output after x; its mask, in place
                        r = align(pix * cn)
                        loads += self.channels(
                            "dma.ld", "act", SLOT["act"], r, P_IDX, c, pix, c0, cn
                        )
                        comp += [
                            self.addr_op(TMP_B, SLOT["act"], r),
                            self.sfu(
                                "relu_bwd",
                                relu_desc,
                                ("err", TMP_A),
                                ("act", TMP_B),
                                ("err", TMP_A),
                                cn * pix,
                                note=f"fused {relu.name}",
                            ),
                        ]
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
                                c=("err", ZERO),
                                ch=cn,
                            ),
                        ]
                        e.step(loads, comp, [])
                        return
                    o = align(pix * cn)
                    comp += [
                        self.addr_op(TMP_O, SLOT["err"], o),
                        self.sfu(
                            "norm_bwd",
                            desc,
                            ("err", TMP_A),
                            ("err", ZERO),
                            ("err", TMP_O),
                            cn * pix,
                            c=("act", SLOT["act"]),
                            ch=cn,
                        ),
                    ]
                    stores = self.channels("dma.st", "err", SLOT["err"], o, BASE_C, c, pix, c0, cn)
                    e.step(loads, comp, stores)

                bases = [(BASE_A, dy), (BASE_B, x), (BASE_C, dx)]
                if relu is not None:  # P_IDX (no tensor-core op here) is a fourth DRAM base
                    bases.append((P_IDX, mm[f"act:{relu.name}"]))
                self.batch_loop(bases, body)
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
        gated, ws = self.gated(layer), self.wsparse(layer)
        t = bp_tiling(sh, cfg, self.skip_bytes, gated, ws)
        gc, group = cfg.wsu.group_in_channels, cfg.cgu.group_size_channels
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
            if ws:  # group mask of the c-tile's weights (all k), after the skip flags
                e.setr(TMP_O, mm[f"gmap:{layer.name}"].addr)
                loads += self.channels(
                    "dma.ld",
                    "msk",
                    ZERO,
                    self.skip_bytes,
                    TMP_O,
                    sh.c // gc,
                    sh.k,
                    c0 // gc,
                    ch // gc,
                    note="group mask of the c-tile",
                )
            e.persistent_load(loads, ("tc",))
            nslots = e.begin_slots(t.slot_bases(cfg, ("err", "msk") if gated else ("err",)))
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
                    if gated:
                        loads += self.channels(
                            "dma.ld",
                            "msk",
                            SLOT["msk"],
                            0,
                            BASE_C,
                            sh.k // group,
                            sh.oh * sh.ow,
                            k0 // group,
                            kn // group,
                            note="gate mask",
                        )
                    gm = self.skip_bytes + ((k0 - kbase) * (ch // gc) if ws else 0)
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
                            rm=SLOT["msk"] if gated else ZERO,
                            gm=gm,
                        ),
                    ]
                    stores = []
                    if last:
                        stores = self.channels(
                            "dma.st", "err", ZERO, 0, BASE_B, sh.c, pin, c0, ch, note="input errors"
                        )
                    e.step(loads, comp, stores)
                e.emit("sync", sg=ACC, unit=UNIT.values.index("st"))

            gate = [(BASE_C, mm[f"gate:{layer.name}"])] if gated else []
            self.batch_loop([(BASE_A, dy), (BASE_B, dx), *gate], body)
            e.emit("nop", wt=ACC)
            e.end_block(nslots)

    def wu_mac(self, layer: Layer) -> None:
        """Weight gradient over the batch per (k, c) tile, then SGD and group-Lasso pruning.

        A tile's position lives in registers (K_IDX = k0, C_IDX = c0, W_OFF = offset of its
        weights, G_OFF = offset of its group-map entries), so for ordinary convs the tiles are
        two hardware loops around one tile body; grouped convs set them per tile."""
        e, cfg = self.e, self.cfg
        sh = conv_shape(layer)
        gated = self.gated(layer)
        t = wu_tiling(sh, cfg, self.wsparse(layer), self.skip_bytes, gated)
        gc, group = cfg.wsu.group_in_channels, cfg.cgu.group_size_channels
        desc = self.descriptor(layer, layer.kind)
        if sh.groups == 1:
            nk, nc = sh.k // t.kn, sh.c // t.cn
            ng = sh.c // gc
            for reg in (K_IDX, W_OFF, G_OFF, GT_OFF):
                e.setr(reg, 0)
            with e.loop(nk):
                e.setr(C_IDX, 0)
                with e.loop(nc):
                    self.wu_tile(layer, sh, t, desc, None)
                    if nk == nc == 1:
                        return  # one tile: nothing to step
                    e.addr(C_IDX, C_IDX, t.cn)
                    e.addr(W_OFF, W_OFF, t.cn)
                    e.addr(G_OFF, G_OFF, t.cn // gc if sh.c % gc == 0 else 0)
                e.addr(K_IDX, K_IDX, t.kn)
                e.addr(W_OFF, W_OFF, t.kn * sh.taps * sh.c - sh.c)
                e.addr(G_OFF, G_OFF, (t.kn - 1) * ng if sh.c % gc == 0 else 0)
                if gated:
                    e.addr(GT_OFF, GT_OFF, t.kn // group)
            return
        for k0 in range(0, sh.k, t.kn):
            e.setr(K_IDX, k0)
            e.setr(C_IDX, 0)
            e.setr(W_OFF, k0 * sh.taps * sh.cg)
            self.wu_tile(layer, sh, t, desc, k0 // sh.kg * sh.cg)

    def wu_tile(self, layer: Layer, sh, t, desc: int, c_off: int | None) -> None:
        """One (k, c) tile at the registers' position; `c_off` is the first input channel of a
        grouped conv's tile (None: C_IDX, an ordinary conv)."""
        e, mm, cfg = self.e, self.mm, self.cfg
        x = mm[f"act:{layer.inputs[0]}"]
        dy = mm[f"err:{layer.name}"]
        w, v = mm[f"w:{layer.name}"], mm[f"v:{layer.name}"]
        gc = cfg.wsu.group_in_channels
        tile_w = t.kn * sh.taps * t.cn
        cload = t.cn if c_off is None else t.kn // sh.kg * sh.cg
        gated, ws = self.gated(layer), self.wsparse(layer)
        group = cfg.cgu.group_size_channels
        if ws:  # the tile's group mask, after the skip flags, for the lanes to skip zero groups
            e.addr(BASE_C, G_OFF, mm[f"gmap:{layer.name}"].addr)
            gmask = self.e.dma(
                "dma.ld",
                "msk",
                ZERO,
                self.skip_bytes,
                BASE_C,
                0,
                t.kn,
                t.cn // gc,
                sh.cg // gc,
                t.cn // gc,
                note="group mask of the tile",
            )
            e.persistent_load(gmask, ("tc",))
        nslots = e.begin_slots(t.slot_bases(cfg, ("act", "err", "wgt", "msk")))
        self.sfu_zero(desc, ZERO, tile_w, "clear gradient accumulators", sg=PERS)
        e.emit("sync", wt=PERS, unit=UNIT.values.index("tc"))

        def body() -> None:
            for p0 in range(0, sh.oh, t.pn):
                r0 = max(0, p0 * sh.stride - sh.pad)
                r1 = min(sh.h, (p0 + t.pn - 1) * sh.stride - sh.pad + sh.r)
                # BASE_A already points at channel k0 of the errors, BASE_B at the tile's
                # first input channel
                loads = self.channels(
                    "dma.ld",
                    "err",
                    SLOT["err"],
                    0,
                    BASE_A,
                    sh.k,
                    t.pn * sh.ow,
                    0,
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
                    0,
                    cload,
                    pix0=r0 * sh.w,
                    note="input rows",
                )
                if gated:  # BASE_C points at the tile's first channel group
                    loads += self.channels(
                        "dma.ld",
                        "msk",
                        SLOT["msk"],
                        0,
                        BASE_C,
                        sh.k // group,
                        t.pn * sh.ow,
                        0,
                        t.kn // group,
                        pix0=p0 * sh.ow,
                        note="gate mask",
                    )
                comp = [
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
                        rm=SLOT["msk"] if gated else ZERO,
                        gm=self.skip_bytes,
                    ),
                ]
                e.step(loads, comp, [])

        xbase = (BASE_B, x, C_IDX) if c_off is None else (BASE_B, x.shifted(c_off), None)
        gate = [(BASE_C, mm[f"gate:{layer.name}"], GT_OFF)] if gated else []
        self.batch_loop([(BASE_A, dy, K_IDX), xbase, *gate], body)
        e.emit("barrier")
        # update: weights and momentum of the tile through the slots
        e.addr(BASE_A, W_OFF, w.addr)
        e.addr(BASE_B, W_OFF, v.addr)
        geom = (t.kn * sh.taps, t.cn, sh.cg, t.cn)  # rows, row bytes, DRAM and buffer strides
        loads = self.e.dma("dma.ld", "wgt", SLOT["wgt"], 0, BASE_A, 0, *geom, note="weights")
        loads += self.e.dma("dma.ld", "err", SLOT["err"], 0, BASE_B, 0, *geom, note="momentum")
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
        stores = self.e.dma("dma.st", "wgt", SLOT["wgt"], 0, BASE_A, 0, *geom, note="weights")
        stores += self.e.dma("dma.st", "err", SLOT["err"], 0, BASE_B, 0, *geom, note="momentum")
        if self.wsparse(layer):
            comp += [
                self.addr_op(P_IDX, SLOT["err"], align(tile_w)),
                e.make(
                    "ws.norm",
                    desc=desc,
                    rk=K_IDX,
                    kn=t.kn,
                    rc=C_IDX,
                    cn=t.cn,
                    rw=SLOT["wgt"],
                    rn=P_IDX,
                ),
                e.make(
                    "ws.prune",
                    desc=desc,
                    rk=K_IDX,
                    kn=t.kn,
                    rc=C_IDX,
                    cn=t.cn,
                    rw=SLOT["wgt"],
                    rn=P_IDX,
                    rm=SLOT["msk"],
                ),
            ]
            e.addr(BASE_C, G_OFF, mm[f"gmap:{layer.name}"].addr)
            stores += self.e.dma(
                "dma.st",
                "msk",
                SLOT["msk"],
                0,
                BASE_C,
                0,
                t.kn,
                t.cn // gc,
                sh.cg // gc,
                t.cn // gc,
                note="group map",
            )
        e.step(loads, comp, stores)
        e.end_block(nslots)
