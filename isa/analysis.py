"""Static analysis of programs: tensor-core work by phase, executed instruction counts, and
the dependency-token discipline. Works on decoded instructions, so it checks what a binary says,
not what the compiler meant."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from isa.encoding import Instruction
from isa.program import HardwareLoops, issued_without_skips, step_registers
from isa.spec import TC_PHASE, TOKEN_BITS


class TokenError(ValueError):
    """A wait that no earlier instruction can satisfy (the program would deadlock)."""


@dataclass(frozen=True)
class Descriptor:
    """The part of a `layer` descriptor that sizes tensor-core work."""

    w: int
    kw: int
    kh: int
    stride: int
    pad: int

    @property
    def ow(self) -> int:
        return (self.w + 2 * self.pad - self.kw) // self.stride + 1


def _multiplicities(program: Sequence[Instruction]) -> list[int]:
    """How many times each instruction executes (product of its enclosing loop counts) where
    no image is skipped (the opposite `skipimg` regions: none, `issued_without_skips`)."""
    mult = [1] * len(program)
    stack: list[tuple[int, int]] = []  # (end index, multiplier inside)
    cur = 1
    for i, ins in enumerate(program):
        while stack and stack[-1][0] <= i:
            stack.pop()
            cur = stack[-1][1] if stack else 1
        mult[i] = cur
        if ins.op == "loop" or not issued_without_skips(ins):
            cur = cur * ins["count"] if ins.op == "loop" else 0
            stack.append((i + ins["end"], cur))
    return mult


def tc_macs(ins: Instruction, desc: Descriptor) -> int:
    """Dense multiply-accumulates of one tensor-core op: kn x cn x pn x OW x kh x kw."""
    return ins["kn"] * ins["cn"] * ins["pn"] * desc.ow * desc.kh * desc.kw


def tc_work_by_phase(program: Sequence[Instruction]) -> dict[str, int]:
    """Total dense tensor-core MACs per phase ("fp", "bp", "wu") over the whole execution.

    Descriptors are tracked in program order (a descriptor must be written before the ops that
    use it, and not rewritten later in the same loop body)."""
    descs: dict[int, Descriptor] = {}
    work: Counter[str] = Counter({p: 0 for p in TC_PHASE.values()})
    for ins, m in zip(program, _multiplicities(program), strict=True):
        if ins.op == "layer":
            a = ins.args
            descs[a["desc"]] = Descriptor(a["w"], a["kw"], a["kh"], a["stride"], a["pad"])
        elif ins.op in TC_PHASE:
            if ins["desc"] not in descs:
                raise ValueError(f"{ins.op} uses descriptor {ins['desc']} before it is written")
            work[TC_PHASE[ins.op]] += m * tc_macs(ins, descs[ins["desc"]])
    return dict(work)


def executed_counts(program: Sequence[Instruction]) -> Counter[str]:
    """Executed instructions per mnemonic (loop bodies counted once per iteration)."""
    out: Counter[str] = Counter()
    for ins, m in zip(program, _multiplicities(program), strict=True):
        out[ins.op] += m
    return out


def check_tokens(program: Sequence[Instruction], max_steps: int = 10_000_000) -> dict[int, int]:
    """Run the control flow in program order and check that every `wt` finds its token
    positive from signals of earlier instructions. Dispatch is in program order and every
    unit is in order, so this is sufficient for the program not to deadlock on tokens.
    Returns the token counts left at the end."""
    counts = [0] * (1 << TOKEN_BITS)
    loops = HardwareLoops()
    pc, steps = 0, 0
    while pc < len(program):
        steps += 1
        if steps > max_steps:
            raise ValueError(f"more than {max_steps} executed instructions; use a smaller batch")
        ins = program[pc]
        if ins.wt:
            if counts[ins.wt] <= 0:
                raise TokenError(
                    f"instruction {pc} ({ins.op}) waits for token {ins.wt}, which no earlier "
                    "instruction has signalled"
                )
            counts[ins.wt] -= 1
        if ins.sg:
            counts[ins.sg] += 1
        if ins.op == "loop":
            loops.enter(pc, ins)
        pc = loops.next_pc(pc, None if issued_without_skips(ins) else pc + ins["end"])
    return {t: c for t, c in enumerate(counts) if c}


def _buffer_sizes(cfg) -> dict[str, int]:
    b = cfg.buffers
    return {
        "act": b.activation.size_bytes,
        "wgt": b.weight.size_bytes,
        "err": b.error.size_bytes,
        "msk": b.mask.size_bytes,
    }


def check_transfers(
    program: Sequence[Instruction],
    cfg,
    dram_regions: Sequence[tuple[int, int]] | None = None,
    max_steps: int = 10_000_000,
) -> list[str]:
    """Execute the register and loop semantics and check every DMA transfer: the buffer range
    lies inside the configured buffer, and the DRAM range inside DRAM and (if `dram_regions`,
    sorted (start, end) pairs, are given) inside one region. Returns the problems found (the
    first few of each kind)."""
    from bisect import bisect_right

    from isa.spec import BUFFER

    sizes = _buffer_sizes(cfg)
    starts = [s for s, _ in dram_regions] if dram_regions else []
    regs = [0] * 16
    problems: list[str] = []
    loops = HardwareLoops()
    pc = steps = 0
    while pc < len(program) and len(problems) < 20:
        steps += 1
        if steps > max_steps:
            raise ValueError(f"more than {max_steps} executed instructions; use a smaller batch")
        ins = program[pc]
        a = ins.args
        step_registers(regs, ins)
        if ins.op in ("dma.ld", "dma.st"):
            buf = BUFFER.values[a["buf"]]
            b0 = regs[a["rbuf"]] + a["boff"]
            b1 = b0 + (a["rows"] - 1) * a["bstride"] + a["row_bytes"]
            if b1 > sizes[buf]:
                problems.append(
                    f"instruction {pc} ({ins.op}): {buf}[{b0}, {b1}) exceeds {sizes[buf]} bytes"
                )
            d0 = regs[a["rdram"]]
            d1 = d0 + (a["rows"] - 1) * a["dstride"] + a["row_bytes"]
            if d1 > cfg.dma.dram_bytes:
                problems.append(f"instruction {pc} ({ins.op}): DRAM [{d0}, {d1}) exceeds DRAM")
            elif dram_regions:
                i = bisect_right(starts, d0) - 1
                if i < 0 or d1 > dram_regions[i][1]:
                    problems.append(
                        f"instruction {pc} ({ins.op}): DRAM [{d0}, {d1}) is not inside one region"
                    )
        if ins.op == "loop":
            loops.enter(pc, ins)
        pc = loops.next_pc(pc, None if issued_without_skips(ins) else pc + ins["end"])
    return problems


def dram_write_counts(program: Sequence[Instruction], dram_bytes: int, op: str = "dma.st"):
    """How many times each DRAM byte below `dram_bytes` is written by `dma.st` (or read, with
    op="dma.ld") over the whole execution (numpy uint16 array, saturating is not handled: keep
    batches small); lets tests check that every output is written once and every input read."""
    import numpy as np

    counts = np.zeros(dram_bytes, dtype=np.uint16)
    regs = [0] * 16
    loops = HardwareLoops()
    pc = 0
    while pc < len(program):
        ins = program[pc]
        a = ins.args
        step_registers(regs, ins)
        if ins.op == op:
            d0 = regs[a["rdram"]]
            starts = d0 + np.arange(a["rows"], dtype=np.int64) * a["dstride"]
            idx = (starts[:, None] + np.arange(a["row_bytes"])).ravel()
            np.add.at(counts, idx[idx < dram_bytes], 1)
        if ins.op == "loop":
            loops.enter(pc, ins)
        pc = loops.next_pc(pc, None if issued_without_skips(ins) else pc + ins["end"])
    return counts
