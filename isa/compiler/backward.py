"""Backward-phase lowering: error merging, special-function backward, batch-norm backward and
update, data gradients with transposed weights, weight gradients with SGD and group pruning."""

from __future__ import annotations

from contextlib import nullcontext

from isa.compiler.blocks import BlockBuilder
from isa.compiler.emitter import (
    ACC,
    BASE_A,
    BASE_B,
    BASE_C,
    C_IDX,
    DONE,
    FREE,
    G_OFF,
    GT_OFF,
    IMG,
    K_IDX,
    LATE,
    NORM_IN,
    P_IDX,
    PERS,
    SIDE,
    SIDE2,
    SIDE3,
    SLOT,
    SUMS,
    TMP_A,
    TMP_B,
    TMP_O,
    W_OFF,
    ZERO,
    sfu_code,
    unit_of,
)
from isa.compiler.plan import (
    ALIAS_KINDS,
    BN_STAT_BYTES,
    BN_SUM_BYTES,
    chw,
    conv_shape,
)
from isa.compiler.tiling import (
    ACC_BYTES,
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
        if any(r is layer for r, _ in self.bp_merge.values()):
            return  # merged and run in the data-gradient block of its first reader (bp_mac)
        self.block(layer.name, "bp")
        cons = self.consumers(layer.name)
        if len(cons) > 1:
            self.merge_errors(layer, cons)
        if layer.kind == "input":
            return
        if any(r is layer for r in self.bp_relu.values()):
            return  # its mask is applied in its batch norm's backward block (bp_norm)
        if any(layer is f[1] or layer is f[2] for f in self.bp_pool.values()):
            return  # run in the data-gradient block of the conv reading the pool (bp_mac)
        if any(bn is layer for bn, _ in self.bp_norm_apply.values()):
            return  # run in the data-gradient blocks of the convs around it (bp_mac)
        if layer.kind in MAC_KINDS:
            # BP first: the data gradient uses the forward pass's weights, not the updated ones
            if self.g.needs_data_gradient(layer.name):
                self.bp_mac(layer)
            if layer.name in self.bp_norm_apply:  # its sums are complete, gamma was used
                self.bn_update(self.bp_norm_apply[layer.name][0])
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
        # batch norms before the ReLU's residual add: their sums on the ReLU's input error
        res = self.sfu_res_stat.get(layer.name, [])
        if layer.kind == "relu":
            t = self.relu_bwd_tile(layer, len(res))
        else:
            t = channel_tile(layer.name, c, per_c, self.cfg, self.skip_bytes)
        cn = t.cn
        bufs = tuple(per_c)
        per_ch = BN_STAT_BYTES + BN_SUM_BYTES
        if res:  # one tile (GraphPlan._res_norm_fusion): statistics, then sums, per norm
            loads = []
            for i, bn in enumerate(res):
                self.descriptor(bn, "norm")
                reg = (P_IDX, K_IDX, C_IDX, TMP_A)[i]
                e.setr(reg, mm[f"bnstat:{bn.name}"].addr)
                loads += self.e.dma("dma.ld", "err", ZERO, i * per_ch * c, reg, 0, 1,
                                    BN_STAT_BYTES * c, 0, 0,
                                    note=f"statistics of {bn.name}")  # fmt: skip
            e.persistent_load(loads, ("sfu",))
            for i, bn in enumerate(res):
                e.setr(TMP_O, i * per_ch * c + BN_STAT_BYTES * c)
                self.sfu_zero(self.desc_of[bn.name], TMP_O, 2 * c,
                              f"clear gradient sums of {bn.name}", esz=2)  # fmt: skip
        nslots = e.begin_slots(t.slot_bases(self.cfg, bufs))
        # relu_bwd's operand b: the ReLU's output, or its input where the output stayed on
        # chip (ReLU fused into its conv's forward block): both are positive at the same places
        relu_b = layer.name if f"act:{layer.name}" not in self.mm.on_chip else layer.inputs[0]
        side = {"relu": (f"act:{relu_b}", "act"), "maxpool": (f"argmax:{layer.name}", "msk")}

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
            for i, bn in enumerate(res):  # x at a fixed distance from the input error
                xo = (1 + i) * align(pout * cn)
                loads += self.channels("dma.ld", "act", SLOT["act"], xo, BASE_B, c, pin, c0, cn,
                                       note=f"input of {bn.name}",
                                       dram_off=mm[f"act:{self.real(bn.inputs[0])}"].addr
                                       - dx.addr)  # fmt: skip
                comp += [
                    self.addr_op(TMP_B, SLOT["act"], xo),
                    self.setr_op(K_IDX, i * per_ch * c),
                    self.setr_op(C_IDX, i * per_ch * c + BN_STAT_BYTES * c),
                    self.sfu("norm_bwd_stat", self.desc_of[bn.name], ("err", TMP_O),
                             ("act", TMP_B), ("err", C_IDX), cn * pin, c=("err", K_IDX), ch=cn,
                             note=f"gradient sums of {bn.name}"),
                ]  # fmt: skip
            stores = self.channels("dma.st", "err", SLOT["err"], o, BASE_B, c, pin, c0, cn)
            e.step(loads, comp, stores)

        def body() -> None:
            self.channel_loop(c, cn, [b[0] for b in bases], tile)

        bases = [(BASE_A, dy), (BASE_B, dx)]
        if layer.kind in side:
            bases.append((BASE_C, mm[side[layer.kind][0]]))
        self.batch_loop(bases, body)
        e.end_block(nslots)
        for i, bn in enumerate(res):  # the sums, for the block that applies the norm
            e.setr(TMP_A, mm[f"bngrad:{bn.name}"].addr)
            for o in self.e.dma("dma.st", "err", ZERO, i * per_ch * c + BN_STAT_BYTES * c, TMP_A,
                                0, 1, BN_SUM_BYTES * c, 0, 0,
                                note=f"gradient sums of {bn.name}"):  # fmt: skip
                e.place(o)
            e.emit("barrier")

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
        # the gradient sums taken by a merging conv block (bp_res_stat): only the error pass
        elsewhere = self.sums_elsewhere(layer)
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
            if elsewhere:  # [d_gamma | d_beta] of the channel tile
                e.setr(K_IDX, mm[f"bngrad:{layer.name}"].addr)
                loads += self.e.dma("dma.ld", "err", ZERO, sums, K_IDX, 2 * c0, 2, 2 * cn, 2 * c,
                                    2 * cn, note="gradient sums")  # fmt: skip
            e.persistent_load(loads, ("sfu",))
            if not elsewhere:
                e.setr(TMP_O, sums)
                self.sfu_zero(desc, TMP_O, 2 * cn, "clear gradient sums", esz=2)
            for pass_ in ("norm_bwd_stat", "norm_bwd")[int(elsewhere) :]:
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
        """Data gradient with transposed weights: dX = W^T dY, per image. Element-wise
        backward work around the conv runs in its image loop (`GraphPlan` decides): on dY as
        it is loaded, a batch norm's relu_bwd + norm_bwd (`bp_norm_load`); on dX once rounded,
        a max-pool's and ReLU's backward (`bp_pool_tile`), a batch norm's gradient sums
        (`bp_norm_stat_tile`) or a ReLU's error merge and backward (`bp_merge_tile`, with
        the sums of the norms before the ReLU's residual add, `GraphPlan.bp_res_stat`)."""
        e, mm, cfg = self.e, self.mm, self.cfg
        sh = conv_shape(layer)
        desc = self.descriptor(layer, layer.kind)
        gated, ws = self.gated(layer), self.wsparse(layer)
        fuse = self.bp_pool.get(layer.name)  # (conv, relu, maxpool) whose backward runs here
        taps = self.pool_taps(fuse[2]) if fuse is not None else 0
        # batch norm whose sums this block accumulates on dX / which it applies to dY
        stat, app = self.bp_norm_stat.get(layer.name), self.bp_norm_apply.get(layer.name)
        nrm = stat or app
        per_ch = BN_STAT_BYTES + BN_SUM_BYTES
        mrg = self.bp_merge.get(layer.name)  # (ReLU, its other reader): merged on dX here
        res = self.bp_res_stat.get(layer.name, [])  # norms whose sums are taken on the merge
        t = bp_tiling(sh, cfg, self.skip_bytes, gated, ws, taps, self.bp_norms(layer.name) or None,
                      merge=mrg is not None, res=(per_ch,) * len(res))  # fmt: skip
        if fuse is not None:  # their descriptors, for bp_pool_tile
            self.descriptor(fuse[1], "relu")
            self.descriptor(fuse[2], "maxpool")
        for f in (stat, app):
            if f is not None:
                self.descriptor(f[0], "norm")
                if f[1] is not None:
                    self.descriptor(f[1], "relu")
        for bn in res:
            self.descriptor(bn, "norm")
        if mrg is not None:  # add and relu_bwd: element-wise, one descriptor for both
            self.descriptor(mrg[0], "relu")
        gc, group = cfg.wsu.group_in_channels, cfg.cgu.group_size_channels
        w = mm[f"w:{layer.name}"]
        dy = mm[f"err:{layer.name}"]
        # where the output errors are read: the ReLU's (or the norm's) error when the norm is
        # applied here
        dsrc = mm[f"err:{(app[1] or app[0]).name}"] if app is not None else dy
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
            units: tuple[str, ...] = ("tc",)
            # statistics (and sums): after the accumulators (stat), after the weights (apply,
            # then the residual norms' of res); one register per source (loads placed later)
            if stat is not None:
                reg = C_IDX if app is not None else TMP_A
                loads += self.bp_norm_persistent(sh, t, stat[0], False, (reg,))
            if app is not None:
                loads += self.bp_norm_persistent(sh, t, app[0], True)
            for i, bn in enumerate(res):
                self.e.setr((P_IDX, C_IDX, BASE_A, BASE_B)[i], mm[f"bnstat:{bn.name}"].addr)
                loads += self.e.dma("dma.ld", "wgt", ZERO, self._res_at(sh, app is not None, i),
                                    (P_IDX, C_IDX, BASE_A, BASE_B)[i], 0, 1,
                                    BN_STAT_BYTES * sh.c, 0, 0,
                                    note=f"statistics of {bn.name}")  # fmt: skip
            if nrm is not None or res:
                units = ("tc", "sfu")
            e.persistent_load(loads, units)
            if stat is not None:
                e.setr(TMP_O, align(ch * pin * ACC_BYTES) + BN_STAT_BYTES * sh.c)
                self.sfu_zero(self.desc_of[stat[0].name], TMP_O, 2 * sh.c, "clear gradient sums",
                              esz=2)  # fmt: skip
            for i, bn in enumerate(res):
                e.setr(TMP_O, self._res_at(sh, app is not None, i) + BN_STAT_BYTES * sh.c)
                self.sfu_zero(self.desc_of[bn.name], TMP_O, 2 * sh.c,
                              f"clear gradient sums of {bn.name}", esz=2, buf="wgt")  # fmt: skip
            bufs = ("err", "msk") if gated else ("err",)
            if fuse is not None:
                bufs = ("act", "err", "msk")
            if nrm is not None or mrg is not None:
                bufs = ("act", *bufs)
            nslots = e.begin_slots(t.slot_bases(cfg, bufs))
            e.emit("nop", sg=ACC)
            kn = t.kn if sh.groups == 1 else kspan
            # the SFU reads the accumulators after the last k-step: with one k-step per image
            # they are released (ACC, SIDE2) once it has read them and dX is stored, and the
            # rest of its work overlaps the next image's tensor-core work (_side_paths)
            split = (fuse is not None or stat is not None or mrg is not None) and kn == kspan
            if split:
                e.emit("nop", sg=SIDE2)
            wrow = ch if sh.groups == 1 else sh.cg

            def make_step(
                k0: int,
                kbase: int = kbase,
                kspan: int = kspan,
                c0: int = c0,
                ch: int = ch,
                kn: int = kn,
                wrow: int = wrow,
                split: bool = split,
            ) -> tuple[list, list, list, int]:
                """One k-step of an image: its loads, compute ops and stores with their
                tokens (not placed), and how many of the loads are late."""
                last = k0 + kn == kbase + kspan
                # the gate mask first: the work packer reads it before the step's
                # tc.bwd and plans while the output errors are loading
                loads = self.dy_loads(sh, gated, group, sh.oh * sh.ow, k0, kn)
                gm = self.skip_bytes + ((k0 - kbase) * (ch // gc) if ws else 0)
                pre = []
                if app is not None:  # dY through the ReLU's and the norm's backward
                    pre = self.bp_norm_load(sh, t, app, dsrc, loads)
                n_early = sum(o.op == "dma.ld" for o in loads)
                comp = [
                    *pre,
                    self.addr_op(TMP_A, SLOT["err"], align(kn * sh.oh * sh.ow) if pre else 0),
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
                if app is not None:  # the normalised error, once (WU and the reference)
                    px = sh.k * sh.oh * sh.ow
                    stores += self.channels(
                        "dma.st", "err", SLOT["err"], align(px), BASE_A, sh.k,
                        sh.oh * sh.ow, 0, sh.k, note=f"error of {layer.name}",
                        dram_off=dy.addr - dsrc.addr,
                    )  # fmt: skip
                # dX is a rounding record where the fused work below consumes it on chip
                keep_dx = not (last and self.dropped(dx.name))
                if last and keep_dx:
                    stores += self.channels(
                        "dma.st", "err", ZERO, 0, BASE_B, sh.c, pin, c0, ch, note="input errors"
                    )
                if last:
                    if fuse is not None:
                        self.bp_pool_tile(sh, kn, c0, ch, fuse, loads, comp, stores)
                    if stat is not None:
                        self.bp_norm_stat_tile(sh, t, stat, app, dx, loads, comp, stores)
                    if mrg is not None:
                        self.bp_merge_tile(sh, t, mrg, app, res, dx, loads, comp, stores)
                dx_st = [o for o in stores if o.op == "dma.st" and o.note == "input errors"]
                if split:
                    self._side_paths(comp, keep_dx)
                if app is not None:
                    self._early_store(comp)
                # the operands of the SFU work on dX load after what the tensor cores
                # (and the SFU work before them) need: the cores start once those are in
                late = sum(o.op == "dma.ld" for o in loads) - n_early if split and pre else 0
                if late:
                    j = next(j for j, o in enumerate(comp)
                             if o.op == "sfu" and j > _tc_index(comp))  # fmt: skip
                    comp.insert(j, e.make("sync", unit=UNIT.values.index("sfu")))
                    comp[j].wt = LATE
                first = self._relu_first(loads, pre) if late else 0
                e.step_tokens(loads, comp, stores, late=late, first=first)
                self._patch_stores(comp, stores, dx_st, split, app is not None, keep_dx)
                if late:
                    stores += self._stores_before_sums(comp, stores)
                return loads, comp, stores, late

            def body(
                kbase: int = kbase, kspan: int = kspan, kn: int = kn, split: bool = split
            ) -> None:
                e.emit("sync", wt=ACC, unit=UNIT.values.index("tc"))
                if split:
                    e.emit("sync", wt=SIDE2, unit=UNIT.values.index("tc"))
                for k0 in range(kbase, kbase + kspan, kn):
                    loads, comp, stores, _ = make_step(k0)
                    for o in (*loads, *comp, *stores):
                        e.place(o)
                    e.toggle_slots()
                if not split:
                    e.emit("sync", sg=ACC, unit=UNIT.values.index("st"))

            gate = [(BASE_C, mm[f"gate:{layer.name}"])] if gated else []
            if fuse is not None:  # the conv's error (SLOT wgt is free in this block)
                gate.append((SLOT["wgt"], mm[f"err:{fuse[0].name}"]))
            bases = [(BASE_A, dsrc), (BASE_B, dx), *gate]
            # software-pipelined; in the sparse program each image's parts are `skipimg`
            # regions, so a skipped image leaves the pipeline instead of an image with no
            # tensor-core work to hide the next norm behind (before regions, pipelining lost
            # 2.6 % in mode all at 400 MHz; with them it gains 0.9 % at 100 MHz: docs)
            if split and app is not None and self.batch > 1:
                self.bp_pipelined(bases, lambda kbase=kbase: make_step(kbase))
            else:
                self.batch_loop(bases, body)
            e.emit("nop", wt=ACC)
            if split:
                e.emit("nop", wt=SIDE2)
            e.end_block(nslots)
            if stat is not None:  # the batch's gradient sums, for the norm's other block
                e.setr(TMP_A, mm[f"bngrad:{stat[0].name}"].addr)
                at = align(ch * pin * ACC_BYTES) + BN_STAT_BYTES * sh.c
                for o in self.e.dma("dma.st", "err", ZERO, at, TMP_A, 0, 1, BN_SUM_BYTES * sh.c,
                                    0, 0, note=f"gradient sums of {stat[0].name}"):  # fmt: skip
                    e.place(o)
                e.emit("barrier")
            for i, bn in enumerate(res):  # the residual norms' sums, for their applying blocks
                e.setr(TMP_A, mm[f"bngrad:{bn.name}"].addr)
                at = self._res_at(sh, app is not None, i) + BN_STAT_BYTES * sh.c
                for o in self.e.dma("dma.st", "wgt", ZERO, at, TMP_A, 0, 1, BN_SUM_BYTES * sh.c,
                                    0, 0, note=f"gradient sums of {bn.name}"):  # fmt: skip
                    e.place(o)
                e.emit("barrier")

    def dy_loads(
        self, sh, gated: bool, group: int, pixels: int, k0: int, kn: int, pix0: int = 0
    ) -> list:
        """A BP/WU step's gate mask (first: the work packer plans while the rest loads), then
        its output errors dY: channels [k0, k0 + kn) of `pixels` pixels from pix0."""
        loads = []
        if gated:
            loads += self.gate_map(
                "dma.ld", sh.k // group, pixels, k0 // group, kn // group, pix0=pix0,
                note="gate mask",
            )  # fmt: skip
        return loads + self.channels(
            "dma.ld", "err", SLOT["err"], 0, BASE_A, sh.k, pixels, k0, kn, pix0=pix0,
            note="output errors",
        )  # fmt: skip

    def bp_pipelined(self, bases: list[tuple], make) -> None:
        """The image loop of a data-gradient block that applies a batch norm to dY before
        the tensor cores and works on dX after them, one k-step per image (`make()`: one
        image's step, tokens set, not placed), software-pipelined over the images: iteration
        i places image i's tc.bwd, then image i+1's front (its loads, the norm on its dY and
        the normalised error's store), then image i's back (the SFU work on dX, the stores;
        `_pipe_parts` cuts a step). The in-order SFU so normalises image i+1's dY while the
        tensor cores work on image i, before it waits for them to finish image i (in step
        order it did image i's work on dX first, and the cores waited for it and the next
        norm). Image 0's front comes before the loop, image B-1's tc.bwd and back after it.
        The next image's front is placed with the DRAM bases, IMG and the slot registers
        moved one image on (registers are read at dispatch). Every token keeps its per-image
        order on every unit, so its waits and signals stay matched."""
        e = self.e
        for reg, region in bases:
            e.setr(reg, region.addr)
        e.setr(IMG, 0)

        def shift(sign: int) -> None:  # to the next image and back
            for reg, region in bases:
                e.addr(reg, reg, sign * region.bytes_per_image)
            e.addr(IMG, IMG, sign)

        def tc(parts: dict) -> None:
            e.emit("sync", wt=ACC, unit=UNIT.values.index("tc"))
            e.emit("sync", wt=SIDE2, unit=UNIT.values.index("tc"))
            self._place(parts["tc"])

        def region(inv: bool = False):  # image IMG's part (sparse program: `skipimg`)
            return e.skip_region(IMG, inv) if self.sparse else nullcontext()

        def front(ahead: int) -> None:  # the front of image IMG + ahead, IMG moved and back
            shift(ahead)
            with region():
                self._place(_pipe_parts(*make())["front"])
            shift(-ahead)

        def iteration(early: bool) -> None:
            """Image i's tensor cores, the next image's front, image i's back. Sparse: image i's
            slot turn (the toggles) is its own, so a skipped image i leaves the slots to the
            next as they were; the front of image i + 1 comes here only if image i is issued
            (else an earlier iteration placed it), and with `early`, where image i + 1 is
            skipped, image i + 2's front comes here too (ahead of image i's back, which the
            in-order SFU would otherwise do first)."""
            cur = _pipe_parts(*make())
            with region():
                tc(cur)
                e.toggle_slots()
            if not self.sparse:
                front(1)
            else:
                with region():
                    front(1)
                if early:
                    shift(1)
                    with region(inv=True):
                        front(1)
                    shift(-1)
            with region():
                e.toggle_slots()
                self._place(cur["back"])
                e.toggle_slots()
            shift(1)

        e.per_image_backward = True
        try:
            with region():
                self._place(_pipe_parts(*make())["front"])
            if self.sparse:  # image 1's front where image 0 is skipped
                with region(inv=True):
                    front(1)
                # the last iteration has no image i + 2: it follows the loop
                if self.batch > 2:
                    with e.loop(self.batch - 2):
                        iteration(early=True)
                iteration(early=False)
            else:
                with e.loop(self.batch - 1):
                    iteration(early=False)
            last = _pipe_parts(*make())
            with region():
                tc(last)
                self._place(last["back"])
        finally:
            e.per_image_backward = False

    def _place(self, ops: list) -> None:
        for o in ops:
            self.e.place(o)

    @staticmethod
    def _relu_first(loads: list, pre: list) -> int:
        """With a fused ReLU before the applied norm (`bp_norm_load`): the loads its relu_bwd
        reads (all before the norm's input x), for `Emitter.step(first=)`; the norm's
        norm_bwd waits for the rest (NORM_IN), so the ReLU's backward overlaps x's load."""
        if not pre or pre[0].op != "sfu" or pre[0].args["op"] != sfu_code("relu_bwd"):
            return 0
        lds = [o for o in loads if o.op == "dma.ld"]
        first = next(i for i, o in enumerate(lds) if o.note.startswith("input of "))
        norm = next(o for o in pre[1:] if o.op == "sfu")
        norm.wt = NORM_IN
        return first

    def _stores_before_sums(self, comp: list, stores: list) -> list:
        """After `_patch_stores`: where the step's SFU work ends with batch-norm gradient sums
        (norm_bwd_stat writes only the sums, which no store of the step reads), the stores
        waiting for DONE wait for the SFU op before the sums instead and run beside them; a
        `sync st` after the stores frees the slot (FREE) once the sums are done too (SUMS)."""
        sfu = [o for o in comp if o.op == "sfu"]
        sts = [o for o in stores if o.op == "dma.st"]
        stat = sfu_code("norm_bwd_stat")
        n = len(sfu)
        while n and sfu[n - 1].args["op"] == stat:
            n -= 1
        if n == len(sfu) or not n or sfu[-1].sg != DONE or not sts or sts[-1].sg != FREE:
            return []
        assert sfu[n - 1].sg == 0 and comp.index(sfu[n - 1]) > _tc_index(comp)
        sfu[n - 1].sg, sfu[-1].sg, sts[-1].sg = DONE, SUMS, 0
        sync = self.e.make("sync", unit=UNIT.values.index("st"))
        sync.wt, sync.sg = SUMS, FREE
        return [sync]

    def _early_store(self, comp: list) -> None:
        """Consumer side of a fused batch norm: a `sync sfu` after norm_bwd signals SIDE3, for
        the normalised error's store (the step's first) to go without waiting for the tensor
        cores."""
        i = max(j for j, o in enumerate(comp) if o.op == "sfu" and j < _tc_index(comp))
        comp.insert(i + 1, self.e.make("sync", unit=UNIT.values.index("sfu")))
        comp[i + 1].sg = SIDE3

    def _side_paths(self, comp: list, keep_dx: bool = True) -> None:
        """Producer side (fused work on dX, one k-step): a `sync tc` after tc.bwd signals SIDE
        (dX may be stored); the first SFU op after it, which reads the accumulators, signals
        SIDE2 (the next image's tensor-core work may overwrite them), through a `sync sfu`
        after it where it ends the SFU chain (its own signal is the step's).
        Without dX's store (a rounding record left out) there is no SIDE, and a second `sync
        sfu` releases the accumulators (ACC) in the store's place."""
        t = _tc_index(comp)
        if keep_dx:
            comp.insert(t + 1, self.e.make("sync", unit=UNIT.values.index("tc")))
            comp[t + 1].sg = SIDE
        f = next(j for j, o in enumerate(comp) if o.op == "sfu" and j > t)
        if any(o.op == "sfu" for o in comp[f + 1 :]):  # not the chain's last: no token of its own
            comp[f].sg = SIDE2  # one SFU queue entry less than a sync
        else:
            comp.insert(f + 1, self.e.make("sync", unit=UNIT.values.index("sfu")))
            comp[f + 1].sg = SIDE2
            f += 1
        if not keep_dx:
            comp.insert(f + 1, self.e.make("sync", unit=UNIT.values.index("sfu")))
            comp[f + 1].sg = ACC

    def _patch_stores(
        self,
        comp: list,
        stores: list,
        dx_st: list,
        split: bool,
        early: bool,
        keep_dx: bool = True,
    ):
        """After `step` (which made the first store wait for DONE and the last signal FREE):
        the normalised error's store (first, `early`) waits for SIDE3; with `split` dX's
        store waits for SIDE and releases the accumulators (ACC) and the stores after it wait
        for DONE (the SFU chain), the slot freed by the last of them or by the last SFU op;
        otherwise dX's store waits for DONE. Without dX's store the first store after the
        early one waits for DONE, or the chain's last op frees the slot."""
        sts = [o for o in stores if o.op == "dma.st"]
        if not keep_dx:
            rest = sts[1:] if early else sts
            if early:
                sts[0].wt = SIDE3
            if rest:
                rest[0].wt = DONE
            else:
                [o for o in comp if unit_of(o.op) != "ctrl"][-1].sg = FREE
            return
        if not sts:
            return
        if early:
            sts[0].wt = SIDE3
        if not dx_st:
            return
        if not split:
            dx_st[0].wt = DONE
            return
        dx_st[0].wt, dx_st[-1].sg = SIDE, ACC
        rest = sts[sts.index(dx_st[-1]) + 1 :]
        if rest:
            rest[0].wt = DONE
        else:
            [o for o in comp if o.op == "sfu"][-1].sg = FREE

    def bp_norm_persistent(
        self, sh, t, bn: Layer, apply: bool, regs: tuple[int, ...] = (TMP_A,)
    ) -> list:
        """Loads of a fused batch norm's statistics (whole images, one c-tile): after the
        accumulators (err) where its sums are taken here, or, where it is applied here, to
        the weight buffer after the weights and gamma, beta, with its gradient sums after
        them (`_norm_at`). `regs[0]`: the statistics' DRAM base register (the loads are
        placed after every `setr`: one register per source)."""
        mm = self.mm
        n = sh.k if apply else sh.c  # the norm's channels: dY's or dX's
        buf, at = ("wgt", self._norm_at(sh)) if apply else ("err", self._acc_end(sh))
        self.e.setr(regs[0], mm[f"bnstat:{bn.name}"].addr)
        loads = self.e.dma("dma.ld", buf, ZERO, at, regs[0], 0, 1, BN_STAT_BYTES * n, 0, 0,
                           note=f"statistics of {bn.name}")  # fmt: skip
        if apply:
            self.e.setr(TMP_B, mm[f"bngrad:{bn.name}"].addr)
            self.e.setr(K_IDX, mm[f"bn:{bn.name}"].addr)  # TMP_O may hold the group map's
            loads += self.e.dma("dma.ld", "wgt", ZERO, at + BN_STAT_BYTES * n, TMP_B, 0, 1,
                                BN_SUM_BYTES * n, 0, 0,
                                note=f"gradient sums of {bn.name}")  # fmt: skip
            loads += self.e.dma("dma.ld", "wgt", ZERO, align(sh.k * sh.taps * sh.c), K_IDX, 0, 1,
                                2 * n, 0, 0, note=f"gamma, beta of {bn.name}")  # fmt: skip
        return loads

    @staticmethod
    def _acc_end(sh) -> int:
        """End of a whole-input data-gradient block's accumulators (err)."""
        return align(sh.c * sh.h * sh.w * ACC_BYTES)

    @staticmethod
    def _norm_at(sh) -> int:
        """Weight-buffer address of an applied norm's statistics: after the weights of the
        block (all k, all c) and gamma, beta."""
        return align(sh.k * sh.taps * sh.c) + align(2 * sh.k)

    @classmethod
    def _res_at(cls, sh, app: bool, i: int) -> int:
        """Weight-buffer address of the statistics (then the gradient sums) of the i-th norm
        whose sums a merging block takes (`GraphPlan.bp_res_stat`): after the weights and
        the applied norm's parameters, statistics and sums (`bp_tiling`'s `res`)."""
        per_ch = BN_STAT_BYTES + BN_SUM_BYTES
        end = cls._norm_at(sh) + per_ch * sh.k if app else sh.k * sh.taps * sh.c
        return align(end) + i * align(per_ch * sh.c)

    def bp_norm_load(self, sh, t, app, src, loads: list) -> list:
        """A fused batch norm applied to the output errors of one image (one k-step, whole
        image): loads of the ReLU's output and the norm's input x (act slot; at fixed
        distances from the ReLU's error, read at BASE_A), then relu_bwd in place on dY and
        norm_bwd to the slot after it, which the tensor cores read (TMP_A)."""
        mm = self.mm
        bn, relu = app
        px = sh.k * sh.oh * sh.ow
        pix = sh.oh * sh.ow
        at = self._norm_at(sh)
        for off, name, what in ((0, relu, "output"), (align(px), sh, "input")):
            if name is None:
                continue  # no ReLU (a residual block's second norm): dY is the norm's error
            loads += self.channels(
                "dma.ld", "act", SLOT["act"], off, BASE_A, sh.k, pix, 0, sh.k,
                note=f"{what} of {relu.name if off == 0 else bn.name}",
                dram_off=mm[f"act:{name.name}"].addr - src.addr,
            )  # fmt: skip
        pre = []
        if relu is not None:
            pre = [self.sfu("relu_bwd", self.desc_of[relu.name], ("err", SLOT["err"]),
                            ("act", SLOT["act"]), ("err", SLOT["err"]), px,
                            note=f"fused {relu.name}")]  # fmt: skip
        return [
            *pre,
            self.setr_op(TMP_B, at),
            self.addr_op(TMP_O, SLOT["act"], align(px)),
            self.addr_op(TMP_A, SLOT["err"], align(px)),
            self.sfu("norm_bwd", self.desc_of[bn.name], ("err", SLOT["err"]), ("wgt", TMP_B),
                     ("err", TMP_A), px, c=("act", TMP_O), pa=align(sh.k * sh.taps * sh.c),
                     ch=sh.k, note=f"fused {bn.name}"),
        ]  # fmt: skip

    def bp_norm_stat_tile(
        self, sh, t, stat, app, dx, loads: list, comp: list, stores: list
    ) -> None:
        """A fused batch norm's gradient sums on one image's dX (the ReLU's error, at err 0
        once the tensor cores rounded it; still stored for the norm's applying block and the
        reference): loads of the ReLU's output and the norm's input x (act slot; at fixed
        distances from dX's region, BASE_B), relu_bwd to the slot after the output errors,
        norm_bwd_stat into the sums after the statistics (one op per image, in image
        order). `Emitter.step` orders ld -> tc -> sfu -> st. Where another norm is applied
        to dY here (`app`), its two tensors come first in act and the masked dX overwrites
        dY (norm_bwd, earlier on the SFU, has read it) when it fits there."""
        mm = self.mm
        bn, relu = stat
        pix = sh.h * sh.w
        px = sh.c * pix
        x = self.real(bn.inputs[0])
        at = align(sh.c * pix * ACC_BYTES)
        dy_px = align(t.kn * sh.oh * sh.ow)
        a0, m_off = 0, dy_px
        if app is not None:
            out_px = align(sh.k * sh.oh * sh.ow)
            a0 = 2 * out_px
            m_off = 0 if px <= dy_px else dy_px + out_px
        for off, name, what in ((a0, relu.name, "output"), (a0 + align(px), x, "input")):
            loads += self.channels(
                "dma.ld", "act", SLOT["act"], off, BASE_B, sh.c, pix, 0, sh.c,
                note=f"{what} of {relu.name if off == 0 else bn.name}",
                dram_off=mm[f"act:{name}"].addr - dx.addr,
            )  # fmt: skip
        comp += [
            self.addr_op(TMP_B, SLOT["err"], m_off),
            self.addr_op(TMP_A, SLOT["act"], a0),
            self.sfu("relu_bwd", self.desc_of[relu.name], ("err", ZERO), ("act", TMP_A),
                     ("err", TMP_B), px, note=f"fused {relu.name}"),
            self.addr_op(TMP_A, SLOT["act"], a0 + align(px)),
            self.setr_op(K_IDX, at),
            self.setr_op(C_IDX, at + BN_STAT_BYTES * sh.c),
            self.sfu("norm_bwd_stat", self.desc_of[bn.name], ("err", TMP_B), ("act", TMP_A),
                     ("err", C_IDX), px, c=("err", K_IDX), ch=sh.c,
                     note=f"gradient sums of {bn.name}"),
        ]  # fmt: skip

    def bp_merge_tile(
        self, sh, t, mrg, app, res, dx, loads: list, comp: list, stores: list
    ) -> None:
        """The merge and backward of the ReLU whose error dX is one part of
        (`GraphPlan.bp_merge`), on one image's dX (at err 0 once the tensor cores rounded it;
        still stored as this conv's part): loads of the other part and the ReLU's output
        (act slot, after the fused norm's operands when one is applied here), `add` to the
        sum (err slot: over the output errors, or after them and the normalised error when
        it does not fit there), stored as the
        ReLU's error, relu_bwd to the ReLU's input error after it, stored. Then, for each
        batch norm of `res` (before the ReLU's residual add, whose error the input error
        is), its input x (act, after the ReLU's output) and norm_bwd_stat into its sums in
        the weight buffer (`_res_at`). Every tensor has dX's per-image size: all move at
        fixed distances from dX's region (BASE_B)."""
        mm = self.mm
        relu, other = mrg
        pix = sh.h * sh.w
        px = sh.c * pix
        dy_px = align(t.kn * sh.oh * sh.ow)
        out_px = sh.k * sh.oh * sh.ow
        a0 = 2 * align(out_px) if app is not None else 0
        e0 = dy_px + (align(out_px) if app is not None else 0)
        part = mm[self.err_name(relu.name, other)]
        xs = [(a0 + (2 + i) * align(px), mm[f"act:{self.real(bn.inputs[0])}"],
               f"input of {bn.name}") for i, bn in enumerate(res)]  # fmt: skip
        for off, reg, what in (
            (a0, part, f"error part of {relu.name} from {other}"),
            (a0 + align(px), mm[f"act:{relu.name}"], f"output of {relu.name}"),
            *xs,
        ):
            loads += self.channels("dma.ld", "act", SLOT["act"], off, BASE_B, sh.c, pix, 0, sh.c,
                                   note=what, dram_off=reg.addr - dx.addr)  # fmt: skip
        desc = self.desc_of[relu.name]
        # the sum over the output errors when it fits: the cores (and a fused norm, before
        # them on the SFU) have read them once `add` runs (it waits for the cores)
        m_off, n_off = (0, e0) if px <= dy_px else (e0, e0 + align(px))
        comp += [
            self.addr_op(TMP_B, SLOT["act"], a0),
            self.addr_op(TMP_A, SLOT["err"], m_off),
            self.sfu("add", desc, ("err", ZERO), ("act", TMP_B), ("err", TMP_A), px,
                     note=f"merge the error of {relu.name}"),
            self.addr_op(K_IDX, SLOT["act"], a0 + align(px)),
            self.addr_op(C_IDX, SLOT["err"], n_off),
            self.sfu("relu_bwd", desc, ("err", TMP_A), ("act", K_IDX), ("err", C_IDX), px,
                     note=f"fused {relu.name}"),
        ]  # fmt: skip
        for i, bn in enumerate(res):  # a's register C_IDX stays: the ReLU's input error
            at = self._res_at(sh, app is not None, i)
            comp += [
                self.addr_op(TMP_B, SLOT["act"], xs[i][0]),
                self.setr_op(K_IDX, at),
                self.setr_op(TMP_A, at + BN_STAT_BYTES * sh.c),
                self.sfu("norm_bwd_stat", self.desc_of[bn.name], ("err", C_IDX), ("act", TMP_B),
                         ("wgt", TMP_A), px, c=("wgt", K_IDX), ch=sh.c,
                         note=f"gradient sums of {bn.name}"),
            ]  # fmt: skip
        outs = [(m_off, mm[f"err:{relu.name}"], f"error of {relu.name}")]
        if relu.name not in self.relu_norm:  # else on chip: the norm's error pass masks again
            din = mm[self.err_name(relu.inputs[0], relu.name)]
            outs.append((n_off, din, f"input error of {relu.name}"))
        for off, reg, what in outs:
            if self.dropped(reg.name):  # the sum, a rounding record
                continue
            stores += self.channels("dma.st", "err", SLOT["err"], off, BASE_B, sh.c, pix, 0, sh.c,
                                    note=what, dram_off=reg.addr - dx.addr)  # fmt: skip

    def bn_update(self, bn: Layer) -> None:
        """SGD on a fused batch norm's gamma and beta with the batch's gradient sums
        (bngrad:), after the block that applied the norm (it read gamma)."""
        e, mm = self.e, self.mm
        self.block(bn.name, "wu")
        c = chw(bn.in_shape)[0]
        vaddr = align(BN_SUM_BYTES * c)
        e.setr(TMP_A, mm[f"bn:{bn.name}"].addr)
        e.setr(TMP_B, mm[f"bngrad:{bn.name}"].addr)
        e.setr(TMP_O, mm[f"bnv:{bn.name}"].addr)
        loads = self.e.dma("dma.ld", "wgt", ZERO, 0, TMP_A, 0, 1, 2 * c, 0, 0, note="gamma, beta")
        loads += self.e.dma("dma.ld", "err", ZERO, 0, TMP_B, 0, 1, BN_SUM_BYTES * c, 0, 0,
                            note="gradient sums")  # fmt: skip
        loads += self.e.dma("dma.ld", "err", ZERO, vaddr, TMP_O, 0, 1, 2 * c, 0, 0,
                            note="momentum of gamma, beta")  # fmt: skip
        e.persistent_load(loads, ("sfu",))
        e.setr(TMP_B, vaddr)
        e.emit("sgd", rw=ZERO, rg=ZERO, rv=TMP_B, n=2 * c, note="update gamma, beta")
        e.emit("barrier")
        e.setr(TMP_A, mm[f"bn:{bn.name}"].addr)
        for o in self.e.dma("dma.st", "wgt", ZERO, 0, TMP_A, 0, 1, 2 * c, 0, 0):
            e.place(o)
        e.setr(TMP_O, mm[f"bnv:{bn.name}"].addr)
        for o in self.e.dma("dma.st", "err", ZERO, vaddr, TMP_O, 0, 1, 2 * c, 0, 0):
            e.place(o)
        e.emit("barrier")

    def bp_pool_tile(self, sh, kn: int, c0: int, ch: int, fuse, loads, comp, stores) -> None:
        """The backward of the ReLU and max-pool before this conv (`GraphPlan.bp_pool`),
        appended to an image's last k-step of c-tile [c0, c0 + ch): once the tensor cores
        have rounded dX (the pool's output error, at err 0, still stored for the reference's
        rounding record), relu_bwd with the pooled output as b (act slot) and maxpool_bwd with
        the argmax (msk slot, after the gate mask) write the conv's error (err slot, after the
        output errors), stored at SLOT wgt. The pooled output and argmax are read at fixed
        distances from dX's region (same per-image size). `Emitter.step` orders ld -> tc ->
        sfu -> st; with one k-step per image `_side_paths` / `_side_tokens` let dX's store
        follow the tensor cores directly and release the accumulators (ACC, SIDE2) once it
        and relu_bwd have read them."""
        mm, cfg = self.mm, self.cfg
        conv, relu, pool = fuse
        pin = sh.h * sh.w
        taps = self.pool_taps(pool)
        dx = mm[self.err_name(self.layers[sh.name].inputs[0], sh.name)]
        group = cfg.cgu.group_size_channels
        gated = self.gated(self.layers[sh.name])
        moff = align(sh.oh * sh.ow * (kn // group)) if gated else 0
        roff = align(kn * sh.oh * sh.ow)
        ooff = roff + align(ch * pin)
        loads += self.channels(
            "dma.ld", "act", SLOT["act"], 0, BASE_B, sh.c, pin, c0, ch,
            note=f"output of {pool.name}", dram_off=mm[f"act:{pool.name}"].addr - dx.addr,
        )  # fmt: skip
        loads += self.channels(
            "dma.ld", "msk", SLOT["msk"], moff, BASE_B, sh.c, pin, c0, ch,
            note=f"argmax of {pool.name}", dram_off=mm[f"argmax:{pool.name}"].addr - dx.addr,
        )  # fmt: skip
        # registers are read at dispatch: TMP_A / TMP_B / K_IDX are free once tc.bwd issued
        comp += [
            self.addr_op(TMP_B, SLOT["err"], roff),
            self.sfu("relu_bwd", self.desc_of[relu.name], ("err", ZERO), ("act", SLOT["act"]),
                     ("err", TMP_B), ch * pin, note=f"fused {relu.name} (pooled positions)"),
            self.addr_op(TMP_A, SLOT["msk"], moff),
            self.addr_op(K_IDX, SLOT["err"], ooff),
            self.sfu("maxpool_bwd", self.desc_of[pool.name], ("err", TMP_B), ("msk", TMP_A),
                     ("err", K_IDX), ch * pin, note=f"fused {pool.name}"),
        ]  # fmt: skip
        stores += self.channels(
            "dma.st", "err", SLOT["err"], ooff, SLOT["wgt"], sh.c, pin * taps, c0, ch,
            note=f"error of {conv.name}",
        )  # fmt: skip

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
                # first input channel, BASE_C at the tile's first channel group. The gate
                # mask is loaded first: the work packer reads it before the tile starts and
                # plans while the operands are still loading.
                loads = self.dy_loads(sh, gated, group, t.pn * sh.ow, 0, t.kn, pix0=p0 * sh.ow)
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


def _pipe_parts(loads: list, comp: list, stores: list, late: int) -> dict:
    """One image's step cut for `BackwardLowering.bp_pipelined`: "front" (all its loads, the
    late ones too, so that they are requested early, the SFU work on dY up to its SIDE3 sync,
    the normalised error's store), "tc" (the tensor cores' operand registers, tc.bwd and its
    SIDE sync) and "back" (the SFU work on dX, the other stores)."""
    assert late
    side3 = next(j for j, o in enumerate(comp) if o.op == "sync" and o.sg == SIDE3) + 1
    t = _tc_index(comp) + 1
    if comp[t].op == "sync" and comp[t].sg == SIDE:
        t += 1
    st = next(j for j, o in enumerate(stores) if o.op == "dma.st") + 1
    assert stores[st - 1].wt == SIDE3  # the normalised error's
    return {
        "front": [*loads, *comp[:side3], *stores[:st]],
        "tc": comp[side3:t],
        "back": [*comp[t:], *stores[st:]],
    }


def _tc_index(comp: list) -> int:
    return next(j for j, o in enumerate(comp) if o.op == "tc.bwd")
