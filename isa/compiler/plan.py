"""The compiler's view of a layer graph: which tensors exist, which need errors, which layers
are gated or Lasso-sparse, and the DRAM memory map that follows."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from isa.compiler.emitter import (
    TMP_B,
    Emitter,
)
from isa.compiler.memmap import CompileError, MemoryMap
from isa.compiler.tiling import (
    ACC_BYTES,
    ConvShape,
    Tiling,
    align,
    bp_tiling,
    channel_tile,
    fp_tiling,
    wu_tiling,
)
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


def f32_bits(x: float) -> int:

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


def chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) of a per-image shape; vectors are C x 1 x 1."""
    if len(shape) == 3:
        return shape[0], shape[1], shape[2]
    if len(shape) == 1:
        return shape[0], 1, 1
    raise CompileError(f"unsupported tensor shape {shape}")


class GraphPlan:
    """Graph facts and the memory map; the lowering classes build on it."""

    def __init__(
        self,
        graph: LayerGraph,
        cfg: HardwareConfig,
        batch: int,
        train: TrainParams,
        sparse: bool = True,
        records: bool = False,
    ) -> None:
        self.g, self.cfg, self.batch, self.train = graph, cfg, batch, train
        self.sparse = sparse  # False: the dense program (no gating passes, no group masks)
        # False: leave out the stores of rounding records (`MemoryMap.records`), which only
        # `fp8sim verify`'s reference reads; True: the verification program, which has them
        self.records = records
        self.e = Emitter()
        self.mm = MemoryMap(min(cfg.dma.dram_bytes, 1 << 32))  # 32-bit address registers
        self.mm.records_stored = records
        self.layers = {layer.name: layer for layer in graph.layers}
        self.desc_of: dict[str, int] = {}
        self._gated: dict[str, bool] = {}
        self._wsparse: dict[str, bool] = {}
        self.notes: list[str] = []  # what the program leaves out, and why
        # forward fusion: batch norm -> [add] -> [relu] chains run as one block (see chains)
        self.chain: dict[str, list[Layer]] = {}  # head batch norm -> the layers fused into it
        self.fused_into: dict[str, str] = {}  # fused layer -> its chain's head
        self.stat_of: dict[str, Layer] = {}  # conv -> the batch norm whose statistics it takes
        self.bp_relu: dict[str, Layer] = {}  # batch norm -> the ReLU its backward applies
        self.norm_of: dict[str, Layer] = {}  # conv -> batch norm it normalises its input with
        # conv -> ReLU -> max-pool (see _pool_fusion): forward in the conv's block, backward in
        # the data-gradient block of the conv that reads the pooled output
        self.fwd_pool: dict[str, tuple[Layer, Layer]] = {}  # conv -> (relu, maxpool)
        self.bp_pool: dict[str, tuple[Layer, Layer, Layer]] = {}  # reader -> (conv, relu, pool)
        self.pool_fused: set[str] = set()  # ReLU / max-pool layers run inside a conv block
        # batch-norm backward inside the convs' data-gradient blocks (see _bp_norm_fusion):
        # conv -> (batch norm, its ReLU)
        self.bp_norm_stat: dict[str, tuple[Layer, Layer]] = {}  # reads the ReLU's output
        # produces the norm's input; no ReLU: a residual block's second norm (_res_norm_fusion)
        self.bp_norm_apply: dict[str, tuple[Layer, Layer | None]] = {}
        # conv -> the batch norms before a residual add whose gradient sums accumulate on the
        # error of the add, which the conv's merge (bp_merge) produces (see _res_norm_fusion)
        self.bp_res_stat: dict[str, list[Layer]] = {}
        # the same on a ReLU's own backward block (bp_sfu; a ReLU that merges nothing, e.g.
        # before the average pool): ReLU -> batch norms
        self.sfu_res_stat: dict[str, list[Layer]] = {}
        # conv -> (ReLU, the ReLU's other reader): the merge of the ReLU's two error parts and
        # its backward run in the conv's data-gradient block (see _merge_fusion)
        self.bp_merge: dict[str, tuple[Layer, str]] = {}
        if batch < 1:
            raise CompileError(f"batch must be at least 1, got {batch}")
        msk_word = cfg.buffers.mask.word_bytes
        # skip flags, one byte per image, stay in the mask buffer from the loss to the end
        self.skip_bytes = align(batch, msk_word)
        if self.skip_bytes > cfg.buffers.mask.size_bytes // 2:
            raise CompileError(
                f"batch {batch}: the skip flags do not fit in half of the mask buffer "
                f"({cfg.buffers.mask.size_bytes} bytes)"
            )
        self._plan()

    # ------------------------------------------------------------ graph facts
    def dropped(self, name: str) -> bool:
        """Tensor `name` is a rounding record (`MemoryMap.records`) and this program, compiled
        without records, does not store it."""
        return not self.records and self.mm.resolve_name(name) in self.mm.records

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
        """Channel gating applies to convs whose input channels split into G equal parts (the
        base pass takes the first C/G; a part narrower than a dot-product step fills only part
        of the tree, e.g. 4 of 8 inputs for C = 16, G = 4) and whose weights for one gate group
        of outputs fit the weight buffer."""
        if layer.name in self._gated:
            return self._gated[layer.name]
        ok = False
        if self.sparse and layer.kind == "conv" and layer.groups == 1:
            g, group = self.cfg.cgu.base_fraction_denominator, self.cfg.cgu.group_size_channels
            c, k = layer.in_shape[0], layer.out_shape[0]
            ok = c % g == 0 and k % group == 0
            if ok:
                sh, ws = conv_shape(layer), self.wsparse(layer)
                try:  # every phase must find a tiling with whole gate groups
                    fp_tiling(sh, self.cfg, True, self.skip_bytes, ws)
                    bp_tiling(sh, self.cfg, self.skip_bytes, True, ws)
                    wu_tiling(sh, self.cfg, ws, self.skip_bytes, True)
                except CompileError:
                    ok = False
                    self.notes.append(
                        f"{layer.name}: channel gating not expressed: the weights of one gate "
                        f"group ({group} outputs) do not fit the buffers"
                    )
        self._gated[layer.name] = ok
        return ok

    def wsparse(self, layer: Layer) -> bool:
        """Group-Lasso groups must tile the input channels exactly, and every phase must find
        a tiling whose channel tiles hold whole groups."""
        if layer.name in self._wsparse:
            return self._wsparse[layer.name]
        sh = conv_shape(layer)
        gk = self.cfg.wsu.group_out_channels
        ok = (
            self.sparse
            and sh.groups == 1
            and sh.cg % self.cfg.wsu.group_in_channels == 0
            and sh.k % gk == 0
        )
        if ok:
            try:
                fp_tiling(sh, self.cfg, False, self.skip_bytes, True)
                bp_tiling(sh, self.cfg, self.skip_bytes, False, True)
                wu_tiling(sh, self.cfg, True, self.skip_bytes, False)
            except CompileError:
                ok = False
                self.notes.append(
                    f"{layer.name}: group-Lasso sparsity not expressed: no tiling with whole "
                    "groups fits the buffers"
                )
        self._wsparse[layer.name] = ok
        return ok

    def err_name(self, tensor: str, consumer: str) -> str:
        """Where `consumer` writes its error contribution to `tensor`."""
        tensor = self.real(tensor)
        if len(self.consumers(tensor)) == 1:
            return f"err:{tensor}"
        return f"err:{tensor}@{consumer}"

    def _chains(self) -> None:
        """Forward element-wise fusion. A batch norm's normalization pass applies, in the same
        buffer tile, the residual add that consumes it (when the add's other input is already
        in DRAM, i.e. produced earlier) and the ReLU after it. The intermediate tensors (the
        normalized and the summed activations) stay in the activation buffer: the backward
        pass never reads them (ReLU's backward reads its output, the add's none, the batch
        norm's its input)."""
        order = {layer.name: i for i, layer in enumerate(self.g.layers)}
        for layer in self.g.layers:
            if layer.kind != "batchnorm":
                continue
            chain, cur = [], layer.name
            while True:
                cons = self.consumers(cur)
                if len(cons) != 1 or cons[0] == "loss" or cons[0] in self.fused_into:
                    break
                nxt = self.layers[cons[0]]
                if nxt.kind == "add" and not chain and len(nxt.inputs) == 2:
                    others = [self.real(i) for i in nxt.inputs if self.real(i) != cur]
                    if len(others) != 1 or order[others[0]] > order[cur]:
                        break  # the other operand is produced later: fuse there instead
                elif nxt.kind != "relu":
                    break
                chain.append(nxt)
                cur = nxt.name
                if nxt.kind == "relu":
                    break
            if chain:
                self.chain[layer.name] = chain
                for c in chain:
                    self.fused_into[c.name] = layer.name
            if [c.kind for c in chain] == ["relu"]:
                # Backward: the norm's two passes read the ReLU's error and output and apply
                # its mask in the buffer, so the ReLU's own pass (and the error between the
                # two layers) disappears.
                self.bp_relu[layer.name] = chain[0]
        # A conv whose only reader is a batch norm accumulates that norm's statistics on its
        # output tiles before storing them, when one tile holds every output channel (the
        # statistics of all channels then stay in the error buffer, which FP does not use):
        # the norm's separate statistics pass over the batch disappears.
        for layer in self.g.layers:
            if layer.kind != "batchnorm":
                continue
            src = self.layers[self.real(layer.inputs[0])]
            if src.kind != "conv" or src.groups != 1 or self.consumers(src.name) != [layer.name]:
                continue
            sh = conv_shape(src)
            t = fp_tiling(sh, self.cfg, self.gated(src), self.skip_bytes, self.wsparse(src))
            stat_bytes = (BN_STAT_BYTES + BN_SUM_BYTES) * sh.k
            if t.kn == sh.k and stat_bytes <= self.cfg.buffers.error.size_bytes:
                self.stat_of[src.name] = layer
        self._norm_into_conv()
        self._pool_fusion()
        self._bp_norm_fusion()
        self._merge_fusion()
        self._res_norm_fusion()

    @property
    def relu_norm(self) -> dict[str, Layer]:
        """ReLU -> the batch norm whose blocks (`bp_norm`) apply the ReLU's backward."""
        return {r.name: self.layers[bn] for bn, r in self.bp_relu.items()}

    def sums_elsewhere(self, bn: Layer) -> bool:
        """Batch norm `bn` runs its own backward blocks (`bp_norm`) but a merging conv block
        takes its gradient sums (`bp_res_stat`; ResNet's stem)."""
        return not any(bn is b for b, _ in self.bp_norm_apply.values()) and any(
            bn in bns for bns in self.bp_res_stat.values()
        )

    def bp_norms(self, name: str) -> tuple[tuple[str, int], ...]:
        """The batch-norm roles of conv `name`'s data-gradient block, for `bp_tiling`."""
        per_ch = BN_STAT_BYTES + BN_SUM_BYTES
        out = []
        if name in self.bp_norm_stat:
            out.append(("stat", per_ch))
        if name in self.bp_norm_apply:
            out.append(("apply", per_ch))
        return tuple(out)

    def _res_norm_fusion(self) -> None:
        """conv C -> batch norm -> residual add -> ReLU, the ReLU's error merged in conv P's
        data-gradient block (`bp_merge`; the second norm of a residual block and the
        projection shortcut's norm, C their conv, P the next block's first conv). Backward,
        like `_bp_norm_fusion` without a ReLU: P's block accumulates the norm's gradient sums
        (norm_bwd_stat, one op per image) on the ReLU's input error (the add's, which is
        the norm's output error) after its relu_bwd, the statistics and sums in the weight
        buffer; C's block applies norm_bwd to the add's error as it loads it, stores the
        result once (C's error) and the tensor cores read it. Both norm passes disappear.
        P's block must stay double-buffered (as for the merge) and C's tiling must exist
        with the norm (C may also take another norm's sums on its dX, `bp_norm_stat`)."""
        cfg = self.cfg
        per_ch = BN_STAT_BYTES + BN_SUM_BYTES
        double = cfg.buffers.double_buffered
        hosts = [(p_name, relu) for p_name, (relu, _) in self.bp_merge.items()]
        merged = {relu.name for _, relu in hosts}
        own = {r.name for r in self.bp_relu.values()} | self.pool_fused
        own |= {x.name for f in self.bp_pool.values() for x in f[1:]}
        hosts += [
            (None, r)
            for r in self.g.layers
            if r.kind == "relu" and r.name not in merged | own and self.needs_err(r.name)
        ]
        for p_name, relu in hosts:
            add = self.layers[self.real(relu.inputs[0])]
            if add.kind != "add" or self.consumers(add.name) != [relu.name]:
                continue
            for i in add.inputs:
                bn = self.layers[self.real(i)]
                if bn.kind != "batchnorm" or self.consumers(bn.name) != [add.name]:
                    continue
                c = self.layers[self.real(bn.inputs[0])]
                if c.kind != "conv" or c.groups != 1 or self.consumers(c.name) != [bn.name]:
                    continue
                if not self.g.needs_data_gradient(c.name) or c.name == p_name:
                    continue
                if any(c.name in f for f in (self.bp_norm_apply, self.bp_pool, self.bp_merge)):
                    continue
                at = self.bp_res_stat if p_name is not None else self.sfu_res_stat
                key = p_name if p_name is not None else relu.name
                res = at.get(key, [])
                try:
                    ct = bp_tiling(conv_shape(c), cfg, self.skip_bytes, self.gated(c),
                                   self.wsparse(c), 0,
                                   (*self.bp_norms(c.name), ("apply", per_ch)))  # fmt: skip
                    if p_name is not None:
                        p = self.layers[p_name]
                        pt = bp_tiling(conv_shape(p), cfg, self.skip_bytes, self.gated(p),
                                       self.wsparse(p), 0, self.bp_norms(p_name) or None,
                                       merge=True, res=(per_ch,) * (len(res) + 1))  # fmt: skip
                    else:
                        pt = self.relu_bwd_tile(relu, len(res) + 1)
                        if pt.cn != chw(relu.in_shape)[0]:
                            continue  # the sums of one op per image: one channel tile
                except CompileError:
                    continue
                if double and not (pt.double and ct.double):
                    continue  # a single-buffered block loses more than the passes cost
                at[key] = [*res, bn]
                self.bp_norm_apply[c.name] = (bn, None)

    def relu_bwd_tile(self, relu: Layer, nres: int = 0) -> Tiling:
        """Channel tile of a ReLU's own backward block (`bp_sfu`), with the statistics and
        sums of `nres` batch norms (`sfu_res_stat`) before the slots (err) and each one's
        input x in the slot (act)."""
        c, h, w = chw(relu.in_shape)
        pix = h * w
        per_c = {"err": 2 * align(pix), "act": (1 + nres) * align(pix)}
        pers = {"err": (BN_STAT_BYTES + BN_SUM_BYTES) * nres} if nres else None
        return channel_tile(relu.name, c, per_c, self.cfg, self.skip_bytes, pers)

    def _merge_fusion(self) -> None:
        """A ReLU read by two layers, the first (in graph order, so the last whose backward
        runs) a conv P: P's data-gradient block adds the other reader's error part (already
        in DRAM) to each image's dX in the buffer, stores the sum (the ReLU's error) and
        applies relu_bwd (operand b: the ReLU's output), storing the ReLU's input error:
        the ReLU's merge and backward passes disappear (residual blocks: the block output's
        error, from the next block's first conv and its residual add).
        A ReLU whose backward is fused into its batch norm's own blocks (`bp_relu`, `bp_norm`:
        ResNet's stem) merges the same way; the ReLU's input error (the norm's, on chip) is
        not stored: P's block takes the norm's gradient sums on it (`bp_res_stat`, as for a
        residual block's second norm) and the norm keeps only its error pass (which reads
        the ReLU's stored error and masks it again) and its update."""
        per_ch = BN_STAT_BYTES + BN_SUM_BYTES
        in_blocks = {bn for bn, _ in (*self.bp_norm_apply.values(), *self.bp_norm_stat.values())}
        norm_of_relu = {r.name: self.layers[bn] for bn, r in self.bp_relu.items()}
        fused = {r.name for _, r in self.bp_relu.items()}
        fused |= {r.name for _, r, _ in self.bp_pool.values()} | self.pool_fused
        fused -= {r for r, bn in norm_of_relu.items() if bn not in in_blocks}
        for relu in self.g.layers:
            if relu.kind != "relu" or relu.name in fused or not self.needs_err(relu.name):
                continue
            cons = self.consumers(relu.name)
            if len(cons) != 2 or "loss" in cons:
                continue
            p = self.layers[cons[0]]
            if p.kind != "conv" or p.groups != 1 or not self.g.needs_data_gradient(p.name):
                continue
            if p.name in self.bp_pool or p.name in self.bp_norm_stat or p.name in self.bp_merge:
                continue
            app = self.bp_norm_apply.get(p.name)
            norm = ("apply", per_ch) if app is not None else None
            bn = norm_of_relu.get(relu.name)  # the stem's norm: its sums are taken here
            try:
                t = bp_tiling(conv_shape(p), self.cfg, self.skip_bytes, self.gated(p),
                              self.wsparse(p), 0, norm, merge=True,
                              res=(per_ch,) if bn is not None else ())  # fmt: skip
            except CompileError:
                continue
            if t.double or not self.cfg.buffers.double_buffered:
                # single-buffered, the block would serialise its transfers with the tensor
                # cores and lose more than the separate passes cost
                self.bp_merge[p.name] = (relu, cons[1])
                if bn is not None:
                    self.bp_res_stat[p.name] = [bn]

    def _bp_norm_fusion(self) -> None:
        """conv C -> batch norm -> ReLU -> conv P (each the only reader of the one before;
        the ReLU's backward already fused into the norm's, `bp_relu`). Backward, mirroring the
        forward pass: P's data-gradient block applies relu_bwd (operand b: the ReLU's output)
        to each image's dX in the buffer and accumulates the norm's gradient sums
        (norm_bwd_stat, one op per image, images in order) after its accumulators; the sums
        go to DRAM (bngrad:) after the batch. C's data-gradient block applies relu_bwd and
        norm_bwd to each image's output error as it loads it, before the tensor cores read
        it, and stores the result once (C's error: its weight update reads it). The norm's
        two DRAM-bound passes disappear; the update of gamma and beta follows C's BP. Both
        convs take whole images in one tile (one op per image for the norm)."""
        cfg = self.cfg
        per_ch = BN_STAT_BYTES + BN_SUM_BYTES
        for bn_name, relu in self.bp_relu.items():
            bn = self.layers[bn_name]
            cons = self.consumers(relu.name)
            if len(cons) != 1 or cons[0] == "loss":
                continue
            p, c = self.layers[cons[0]], self.layers[self.real(bn.inputs[0])]
            if p.kind != "conv" or c.kind != "conv" or p.groups != 1 or c.groups != 1:
                continue
            if self.consumers(c.name) != [bn.name]:
                continue
            if not (self.g.needs_data_gradient(p.name) and self.g.needs_data_gradient(c.name)):
                continue
            if (
                p.name in self.bp_norm_stat
                or p.name in self.bp_norm_apply
                or p.name in self.bp_pool
            ):
                continue
            if (
                c.name in self.bp_norm_stat
                or c.name in self.bp_norm_apply
                or c.name in self.bp_pool
            ):
                continue
            try:
                ps, cs = conv_shape(p), conv_shape(c)
                bp_tiling(ps, cfg, self.skip_bytes, self.gated(p), self.wsparse(p), 0,
                          ("stat", per_ch))  # fmt: skip
                bp_tiling(cs, cfg, self.skip_bytes, self.gated(c), self.wsparse(c), 0,
                          ("apply", per_ch))  # fmt: skip
            except CompileError:
                continue
            self.bp_norm_stat[p.name] = (bn, relu)
            self.bp_norm_apply[c.name] = (bn, relu)

    def pool_taps(self, pool: Layer) -> int:
        """Taps of a max-pool whose windows tile its input (window = stride, no padding,
        exact division); 0 otherwise."""
        if pool.kind != "maxpool" or pool.kernel is None or pool.stride is None:
            return 0
        (kh, kw), (sh_, sw), pad = pool.kernel, pool.stride, pool.padding or (0, 0)
        _, h, w = chw(pool.in_shape)
        if (kh, kw) != (sh_, sw) or any(pad) or h % kh or w % kw:
            return 0
        return kh * kw

    def _pool_fusion(self) -> None:
        """conv -> ReLU -> max-pool (each the only reader of the one before, windows that
        tile the input). Forward: the conv's image loop applies relu_fwd and maxpool_fwd to
        its output tile in the buffer and stores the conv output (the reference's rounding
        record), the pooled output and the argmax; the ReLU's output stays on chip.
        Backward: a conv that reads the pooled output applies, after its data gradient of
        each image (still in the error buffer, stored as before), relu_bwd with the pooled
        output as operand b (the window's maximum is positive exactly where the ReLU passed
        the error at the argmax, the only tap that receives it) and maxpool_bwd, and stores
        the conv's error: the ReLU's and the pool's separate passes disappear."""
        cfg = self.cfg
        for conv in self.g.layers:
            if conv.kind != "conv" or conv.groups != 1 or conv.name in self.stat_of:
                continue
            cons = self.consumers(conv.name)
            if len(cons) != 1 or cons[0] == "loss" or self.layers[cons[0]].kind != "relu":
                continue
            relu = self.layers[cons[0]]
            cons = self.consumers(relu.name)
            if len(cons) != 1 or cons[0] == "loss":
                continue
            pool = self.layers[cons[0]]
            taps = self.pool_taps(pool)
            if not taps:
                continue
            sh = conv_shape(conv)
            if conv.name not in self.norm_of:
                try:
                    fp_tiling(sh, cfg, self.gated(conv), self.skip_bytes, self.wsparse(conv), taps)
                    self.fwd_pool[conv.name] = (relu, pool)
                except CompileError:
                    pass
            readers = self.consumers(pool.name)
            if len(readers) != 1 or readers[0] == "loss":
                continue
            q = self.layers[readers[0]]
            if q.kind != "conv" or q.groups != 1 or not self.g.needs_data_gradient(q.name):
                continue
            try:
                qs = conv_shape(q)
                bp_tiling(qs, cfg, self.skip_bytes, self.gated(q), self.wsparse(q), taps)
            except CompileError:
                continue
            self.bp_pool[q.name] = (conv, relu, pool)
        for relu, pool in self.fwd_pool.values():
            self.pool_fused.update((relu.name, pool.name))

    def _norm_into_conv(self) -> None:
        """A batch norm whose statistics a conv took, and whose chain's output is first read
        by a conv that takes whole images in one k-tile, is normalised (with its fused add and
        ReLU) by that conv as it loads its input: the chain runs on the SFU while the tensor
        cores work on the previous image, its output is stored once (BP reads it) and not read
        back. The consumer conv's buffers must hold the extra operands."""
        order = {layer.name: i for i, layer in enumerate(self.g.layers)}
        cfg = self.cfg
        for head in self.stat_of.values():
            chain = self.chain.get(head.name, [])
            last = chain[-1].name if chain else head.name
            cons = sorted(self.consumers(last), key=lambda n: order.get(n, len(order)))
            if not cons or cons[0] == "loss":
                continue
            conv = self.layers[cons[0]]
            if conv.kind != "conv" or conv.groups != 1 or conv.name in self.norm_of:
                continue
            sh = conv_shape(conv)
            gated = self.gated(conv)
            t = fp_tiling(sh, cfg, gated, self.skip_bytes, self.wsparse(conv))
            if t.kn != sh.k or t.pn != sh.oh or sh.rows_in(t.pn) != sh.h:
                continue
            xbytes = align(sh.h * sh.w * sh.c)
            acc = sh.k * sh.oh * sh.ow * ACC_BYTES
            b0, b1 = t.slot_bases(cfg, ("act",))["act"]
            slot = b1 - b0 if t.double else cfg.buffers.activation.size_bytes - b0
            res = any(c.kind == "add" for c in chain)
            need = xbytes + acc + (cfg.buffers.activation.word_bytes + xbytes if res else 0)
            wgt = align(t.persistent["wgt"]) + 2 * sh.c
            err = (BN_STAT_BYTES * sh.k if conv.name in self.stat_of else 0) + (
                BN_STAT_BYTES * sh.c
            )
            if (
                need <= slot
                and wgt <= cfg.buffers.weight.size_bytes
                and err <= cfg.buffers.error.size_bytes
            ):
                self.norm_of[conv.name] = head

    # ------------------------------------------------------------ memory map
    def _plan(self) -> None:
        self._memo: dict[str, bool] = {}
        mm, b = self.mm, self.batch
        self._chains()
        on_chip = {
            x.name: f"fused into the forward block of {head}"
            for head, chain in self.chain.items()
            for x in [self.layers[head], *chain[:-1]]
        }
        for conv, (relu, _) in self.fwd_pool.items():
            on_chip[relu.name] = f"fused into the forward block of {conv}"
        # the error of a conv whose ReLU and max-pool backward run in a later conv's block is
        # stored in the ReLU's error region (the pool's backward output, whose rounding
        # record the reference reads; relu_bwd and maxpool_bwd only move values)
        bp_conv = {conv.name: relu.name for conv, relu, _ in self.bp_pool.values()}
        gate_group = self.cfg.cgu.group_size_channels
        gc = self.cfg.wsu.group_in_channels
        for layer in self.g.layers:
            n = layer.name
            if layer.kind in ALIAS_KINDS:
                mm.alias(f"act:{n}", f"act:{layer.inputs[0]}")
                continue
            layout = "[row][col][channel]" if len(layer.out_shape) == 3 else "[feature]"
            if n in on_chip:
                mm.keep_on_chip(f"act:{n}", on_chip[n])
            else:
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
                if any(bn is layer for bn, _ in self.bp_norm_apply.values()) or any(
                    layer in bns for bns in self.bp_res_stat.values()
                ):  # (the norms of sfu_res_stat are applied in a conv: bp_norm_apply)
                    mm.add(
                        f"bngrad:{n}",
                        "norm_grads",
                        (2, c),
                        batch=None,
                        layer=n,
                        layout="[d_gamma|d_beta][channel] (backward sums, between blocks)",
                        dtype="fp16",
                        elem_bytes=2,
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
            if n in bp_conv:
                continue  # aliased below, once the ReLU's region exists
            if n in self.bp_relu:
                mm.keep_on_chip(f"err:{n}", f"fused into the backward block of {n}")
                continue
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
        for conv, relu in bp_conv.items():
            self.mm.alias(f"err:{conv}", f"err:{relu}")
        # stored only for the rounding record (SR words per byte) that the reference of
        # `fp8sim verify` reads: the fused blocks consume these values on chip
        why = "rounding record: consumed on chip by the fused block of {}"
        for conv, (relu, _) in self.fwd_pool.items():
            if not any(relu is r for _, r, _ in self.bp_pool.values()):
                continue  # the ReLU's own backward pass reads the conv output
            mm.records[f"act:{conv}"] = why.format(conv)
        for q, (_, _, pool) in self.bp_pool.items():
            mm.records[mm.resolve_name(self.err_name(pool.name, q))] = why.format(q)
        for p, (relu, _) in self.bp_merge.items():
            if relu.name not in self.relu_norm:  # else the norm's error pass reads it
                mm.records[mm.resolve_name(f"err:{relu.name}")] = why.format(p)
            mm.records[mm.resolve_name(self.err_name(relu.name, p))] = why.format(p)
