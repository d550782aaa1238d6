"""Instruction executor: runs a program's control flow (hardware loops, registers) and applies
every instruction's effect on the machine state, in program order.

Units complete in order and the program's tokens order every cross-unit dependency, so executing
in program (dispatch) order gives the data any correct schedule gives; tokens, `sync`, `nop`,
`barrier` therefore change no data here (the timing model accounts for them).
"""

from __future__ import annotations

from collections.abc import Sequence

import numba

from isa.encoding import Instruction
from isa.program import step_registers
from isa.spec import (
    GSKIP_CRITERION,
    LAYER_KIND,
    RANDOM_SOURCE,
    ROUNDING,
    SFU_OP,
    SHARING,
    SRU_TARGET,
    TC_PASS,
)
from simulator.functional.fastops import copy_rows
from simulator.functional.sfu import SFU
from simulator.functional.sru import SRUs
from simulator.functional.state import Descriptor, FunctionalError, Machine, Modes, f32
from simulator.functional.tensor_core import TensorCore
from simulator.functional.tree import settle_threads
from simulator.functional.units import SparsityUnits

_NO_DATA = frozenset({"nop", "barrier", "sync"})
# pre-decoded instruction kinds (Executor._decode)
_GENERIC, _SETR, _ADDR, _XORR, _LOOP, _HALT, _NOP, _DMA, _SKIP, _REGS = range(10)
_REG_KINDS = frozenset({_SETR, _ADDR, _XORR, _NOP})
_BLOCK_MAX = 64  # instructions per REGS block (every position of a run starts one)


class _DmaOp:
    """A DMA instruction's static fields; `fast`: its rows do not overlap (one copy)."""

    __slots__ = ("args", "boff", "bs", "bspan", "buf", "ds", "dspan", "fast", "flat", "gsk",
                 "load", "op", "rb", "rbuf", "rdram", "rimg", "rows")  # fmt: skip

    def __init__(self, op: str, a) -> None:
        self.op, self.args, self.load = op, a, op == "dma.ld"
        self.buf = ("act", "wgt", "err", "msk")[a["buf"]]
        self.gsk, self.rimg = a.get("gsk", 0), a.get("rimg", 0)
        self.rbuf, self.boff, self.rdram = a["rbuf"], a["boff"], a["rdram"]
        self.rows, self.rb, self.ds, self.bs = a["rows"], a["row_bytes"], a["dstride"], a["bstride"]
        self.fast = self.rows >= 1 and self.ds >= self.rb and self.bs >= self.rb
        # one run of bytes on both sides: a slice copy
        self.flat = self.rows == 1 or (self.ds == self.rb and self.bs == self.rb)
        if self.flat:
            self.fast = self.rows >= 1
        self.bspan = self.bs * (self.rows - 1) + self.rb
        self.dspan = self.ds * (self.rows - 1) + self.rb
        if self.flat:
            self.bspan = self.dspan = self.rows * self.rb


class Executor:
    def __init__(self, m: Machine) -> None:
        self.m = m
        self.srus = SRUs(m.cfg.tensor_core.operand_format, m.cfg.sru.units, machine=m)
        self.tc = TensorCore(m, self.srus)
        self.sfu = SFU(m, self.srus)
        self.units = SparsityUnits(m)
        self.executed = 0

    def _desc(self, slot: int) -> Descriptor:
        try:
            return self.m.desc[slot]
        except KeyError:
            raise FunctionalError(
                f"layer descriptor {slot} used before a `layer` wrote it"
            ) from None

    def run(self, program: Sequence[Instruction], max_instructions: int = 1 << 32) -> int:
        """Execute until `halt` or the end; returns the number of executed instructions."""
        # Small numba kernels (rounding, encoding) run single-threaded: a parallel launch
        # costs milliseconds on a busy machine. Large tensor-core tiles go parallel as
        # `tree.tile_threads` says (by default while a core is idle).
        threads = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            return self._run(program, max_instructions)
        finally:
            settle_threads()  # what the tiles changed, then the caller's count
            numba.set_num_threads(threads)

    def _decode(self, program: Sequence[Instruction]) -> list[tuple]:
        """Each static instruction once: (kind, operands...) for the register ops, loops,
        DMA and the ops that move no data; (GENERIC, ins) for the rest (`step`)."""
        out: list[tuple] = []
        for ins in program:
            op, a = ins.op, ins.args
            if op == "setr":
                out.append((_SETR, a["rd"], a["imm"], 0))
            elif op == "addr":
                out.append((_ADDR, a["rd"], a["rs"], a["imm"]))
            elif op == "xorr":
                out.append((_XORR, a["rd"], a["rs"], a["imm"]))
            elif op == "loop":
                out.append((_LOOP, a["end"], a["count"], 0))
            elif op == "halt":
                out.append((_HALT, 0, 0, 0))
            elif op == "skipimg":
                out.append((_SKIP, a["rimg"], a["end"], a["inv"]))
            elif op in _NO_DATA:
                out.append((_NOP, 0, 0, 0))
            elif op in ("dma.ld", "dma.st"):
                out.append((_DMA, ins, _DmaOp(op, a), 0))
            else:
                out.append((_GENERIC, ins, 0, 0))
        return out

    @staticmethod
    def _blocks(code: list[tuple]) -> list[tuple]:
        """`code` with each register op or no-data op followed by more of them, up to the
        next loop end (exclusive) or other instruction, as one (REGS, register ops, length,
        0): the dispatch loop runs them without per-instruction loop-end checks. Every
        position of such a run starts its own block, wherever control enters it (after the
        previous instruction, at a loop body's start, at a `skipimg` target)."""
        ends = {pc + x for pc, (kind, x, _, _) in enumerate(code) if kind == _LOOP}
        out = list(code)
        pc = 0
        while pc < len(code):
            end = pc + 1
            if code[pc][0] in _REG_KINDS:
                while end < len(code) and code[end][0] in _REG_KINDS and end not in ends:
                    end += 1
                for start in range(pc, end - 1):
                    stop = min(end, start + _BLOCK_MAX)
                    ops = tuple(c for c in code[start:stop] if c[0] != _NOP)
                    out[start] = (_REGS, ops, stop - start, 0)
            pc = end
        return out

    def _run(self, program: Sequence[Instruction], max_instructions: int) -> int:
        n = len(program)
        single = self._decode(program)
        code = self._blocks(single)
        m, regs, dma, step = self.m, self.m.regs, self._dma_fast, self.step
        loops: list[list[int]] = []  # hardware loops: [body start, end, iterations left]
        lend = -1  # the innermost loop's end (-1: none open)
        pc = 0
        executed = self.executed
        try:
            while pc < n:
                kind, x, y, z = code[pc]
                if kind == _REGS and executed + y > max_instructions:
                    kind, x, y, z = single[pc]  # the limit falls inside: one at a time
                executed += 1
                if executed > max_instructions:
                    raise FunctionalError(f"more than {max_instructions} instructions executed")
                # the kinds by how often a step runs them
                if kind in (_DMA, _GENERIC):
                    try:
                        m.pc = pc
                        if kind == _DMA:
                            dma(y)
                        else:
                            step(x)
                    except FunctionalError as exc:
                        ins = program[pc]
                        raise FunctionalError(f"instruction {pc} ({ins.op}): {exc}") from None
                elif kind == _REGS:  # straight-line register ops (`_blocks`)
                    for k, rd, b, c in x:
                        if k == _ADDR:
                            regs[rd] = (regs[b] + c) % (1 << 32)
                        elif k == _SETR:
                            regs[rd] = b
                        else:
                            regs[rd] = regs[b] ^ c
                        regs[0] = 0
                    executed += y - 1
                    pc += y - 1
                elif kind == _ADDR:
                    regs[x] = (regs[y] + z) % (1 << 32)
                    regs[0] = 0
                elif kind == _SKIP:
                    try:
                        taken = m.skipped(regs[x]) != bool(z)
                    except FunctionalError as exc:
                        raise FunctionalError(f"instruction {pc} (skipimg): {exc}") from None
                    if taken:  # the region is not issued: continue at its end
                        pc += y - 1
                elif kind == _SETR:
                    regs[x] = y
                    regs[0] = 0
                elif kind == _XORR:
                    regs[x] = regs[y] ^ z
                    regs[0] = 0
                elif kind == _LOOP:
                    loops.append([pc + 1, pc + x, y])  # as isa.program.HardwareLoops
                    lend = pc + x
                elif kind == _HALT:
                    break
                pc += 1
                while pc == lend:
                    top = loops[-1]
                    top[2] -= 1
                    if top[2] > 0:
                        pc = top[0]
                        break
                    loops.pop()
                    lend = loops[-1][1] if loops else -1
        finally:
            self.executed = executed
        return self.executed

    def step(self, ins: Instruction) -> None:
        op, a, m = ins.op, ins.args, self.m
        if op in _NO_DATA:
            return
        if op in ("setr", "addr", "xorr"):
            step_registers(m.regs, ins)
        elif op == "dma.ld" or op == "dma.st":
            self._dma(op, a)
        elif op == "tc.fwd":
            self.tc.fwd(a, self._desc(a["desc"]), TC_PASS.values[a["pass"]])
        elif op == "tc.bwd":
            self.tc.bwd(a, self._desc(a["desc"]))
        elif op == "tc.wgr":
            self.tc.wgr(a, self._desc(a["desc"]))
        elif op == "sfu":
            self.sfu.op(a, SFU_OP.values[a["op"]], m.desc.get(a["desc"]))
        elif op == "sgd":
            self.sfu.sgd(a)
        elif op == "cg.gate":
            self.units.gate(a, self._desc(a["desc"]))
        elif op == "ws.norm":
            self.units.norm(a, self._desc(a["desc"]))
        elif op == "ws.prune":
            self.units.prune(a, self._desc(a["desc"]))
        elif op == "gs.decide":
            self.units.decide(a)
        elif op == "layer":
            m.desc[a["desc"]] = Descriptor(
                LAYER_KIND.values[a["kind"]], a["c"], a["k"], a["h"], a["w"], a["kh"], a["kw"],
                a["stride"], a["pad"], a["groups"], bool(a["gate"]), bool(a["wsparse"]),
            )  # fmt: skip
        elif op == "cgcfg":
            d = self._desc(a["desc"])
            d.cg_g, d.cg_group = a["g"], a["group"]
        elif op == "mode":
            m.modes = Modes(bool(a["gating"]), bool(a["wsparse"]), bool(a["gskip"]))
        elif op == "sru":
            self.srus.configure(
                SRU_TARGET.values[a["target"]], a["r"], ROUNDING.values[a["variant"]],
                RANDOM_SOURCE.values[a["source"]], a["width"], SHARING.values[a["sharing"]],
                a["seed"],
            )  # fmt: skip
        elif op == "wscfg":
            m.ws_threshold, m.ws_gc, m.ws_gk = f32(a["threshold"]), a["gc"], a["gk"]
        elif op == "gscfg":
            m.gs_criterion = GSKIP_CRITERION.values[a["criterion"]]
            m.gs_threshold = f32(a["threshold"])
        elif op == "sgdcfg":
            m.sgd_lr, m.sgd_momentum, m.sgd_wd = f32(a["lr"]), f32(a["momentum"]), f32(a["wd"])
        else:
            raise FunctionalError(f"opcode {op!r} has no functional semantics")

    def _dma_fast(self, d: _DmaOp) -> None:
        """A pre-decoded transfer: strided copies of non-overlapping rows in one kernel call
        (with bounds checks), anything else through `_dma`."""
        m = self.m
        if not d.fast:
            self._dma(d.op, d.args)
            return
        regs = m.regs
        if d.gsk and m.skipped(regs[d.rimg]):
            return  # BP/WU transfer of a skipped image: no data moves
        base, dram0 = regs[d.rbuf] + d.boff, regs[d.rdram]
        mem = m.buffers[d.buf]
        if base < 0 or base + d.bspan > mem.size:
            m.view(d.buf, base, d.bspan)  # raises
        if dram0 < 0 or dram0 + d.dspan > m.dram.size:
            m.view("dram", dram0, d.dspan)  # raises
        if d.flat:
            n = d.bspan
            if d.load:
                mem[base : base + n] = m.dram[dram0 : dram0 + n]
                if m.bits is not None:
                    m.bits[d.buf][base : base + n] = m.bits["dram"][dram0 : dram0 + n]
            else:
                m.dram[dram0 : dram0 + n] = mem[base : base + n]
                if m.bits is not None:
                    m.bits["dram"][dram0 : dram0 + n] = m.bits[d.buf][base : base + n]
        elif d.load:
            copy_rows(m.dram, dram0, d.ds, mem, base, d.bs, d.rows, d.rb)
            if m.bits is not None:
                copy_rows(m.bits["dram"], dram0, d.ds, m.bits[d.buf], base, d.bs, d.rows, d.rb)
        else:
            copy_rows(mem, base, d.bs, m.dram, dram0, d.ds, d.rows, d.rb)
            if m.bits is not None:
                copy_rows(m.bits[d.buf], base, d.bs, m.bits["dram"], dram0, d.ds, d.rows, d.rb)

    def _dma(self, op: str, a) -> None:
        m = self.m
        if a.get("gsk", 0) and m.skipped(m.reg(a["rimg"])):
            return  # BP/WU transfer of a skipped image: no data moves
        buf = ("act", "wgt", "err", "msk")[a["buf"]]
        base, dram0 = m.reg(a["rbuf"]) + a["boff"], m.reg(a["rdram"])
        rows, rb, ds, bs = a["rows"], a["row_bytes"], a["dstride"], a["bstride"]
        fast = rows >= 4 and ds >= rb and bs >= rb  # rows do not overlap
        for i in () if fast else range(rows):  # in order: a later row overwrites
            src, dst = ("dram", dram0 + i * ds), (buf, base + i * bs)
            if op == "dma.st":
                src, dst = dst, src
            m.view(*dst, rb)[:] = m.view(*src, rb)
            if m.bits is not None:
                m.bits[dst[0]][dst[1] : dst[1] + rb] = m.bits[src[0]][src[1] : src[1] + rb]
        if fast:  # strided copy as one numpy operation
            d_idx = dram0 + ds * (rows - 1) + rb
            b_idx = base + bs * (rows - 1) + rb
            m.view("dram", dram0, d_idx - dram0)  # bounds checks
            m.view(buf, base, b_idx - base)
            pairs = [(m.dram, m.buffers[buf])]
            if m.bits is not None:
                pairs.append((m.bits["dram"], m.bits[buf]))
            for dmem, bmem in pairs:
                dv = _strided(dmem, dram0, rows, rb, ds)
                bv = _strided(bmem, base, rows, rb, bs)
                if op == "dma.ld":
                    bv[:] = dv
                else:
                    dv[:] = bv


def _strided(mem, start: int, rows: int, row_bytes: int, stride: int):
    from numpy.lib.stride_tricks import as_strided

    return as_strided(
        mem[start:], shape=(rows, row_bytes), strides=(stride * mem.itemsize, mem.itemsize)
    )
