"""The executed instruction stream of a program: hardware loops unrolled and register values
captured at dispatch, so later stages can cost every executed op with vectorised numpy.

The program is flattened to integer arrays once (`StaticProgram`); a numba kernel then runs the
controller's control flow (loops, `setr`/`addr`/`xorr`) and records, per executed instruction,
its static index and the values of the registers that size its work and address its operands.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np

from isa.encoding import Instruction
from isa.spec import BY_MNEMONIC, UNIT

UNITS: tuple[str, ...] = tuple(UNIT.values)
UNIT_ID = {u: i for i, u in enumerate(UNITS)}
N_UNITS = len(UNITS)

# Control-flow kinds the unroller and the scheduler distinguish.
K_CTRL, K_LOOP, K_SETR, K_ADDR, K_XORR, K_BARRIER, K_HALT, K_SYNC, K_UNIT, K_SKIP = range(10)
_KIND = {
    "skipimg": K_SKIP,
    "loop": K_LOOP,
    "setr": K_SETR,
    "addr": K_ADDR,
    "xorr": K_XORR,
    "barrier": K_BARRIER,
    "halt": K_HALT,
    "sync": K_SYNC,
}
# Register operands captured per executed op (column order of `Stream.regs`): tile indices,
# the image, and the buffer addresses of the operands (bank conflicts).
CAPTURE = ("rk", "rc", "rp", "rimg", "ra", "rb", "ro")


@dataclass(frozen=True)
class StaticProgram:
    """A program as parallel integer arrays (one row per static instruction)."""

    ops: tuple[str, ...]
    kind: np.ndarray  # K_* per instruction
    unit: np.ndarray  # executing unit id (sync: the named unit's queue)
    wt: np.ndarray
    sg: np.ndarray
    a0: np.ndarray  # loop: count; setr/addr/xorr: rd; skipimg: rimg
    a1: np.ndarray  # loop, skipimg: end distance; addr/xorr: rs
    a2: np.ndarray  # setr/addr/xorr: immediate; skipimg: inv
    capture: np.ndarray  # (n, len(CAPTURE)) register numbers of CAPTURE fields, -1 when absent


def _op_kind_unit(op: str) -> tuple[int, int]:
    spec = BY_MNEMONIC[op]
    kind = _KIND.get(op, K_CTRL if spec.unit == "ctrl" else K_UNIT)
    unit = UNIT_ID["gsu"] if op == "skipimg" else UNIT_ID[spec.unit]
    return kind, unit


def static_program(program: Sequence[Instruction]) -> StaticProgram:
    # column by column (a list per field, one numpy conversion each): the program has tens
    # of thousands of instructions and element-wise numpy writes cost more than the work
    n = len(program)
    ops = [ins.op for ins in program]
    info = {op: _op_kind_unit(op) for op in set(ops)}
    kind = np.array([info[op][0] for op in ops], np.int64).reshape(n)
    unit = np.array([info[op][1] for op in ops], np.int64).reshape(n)
    wt = np.array([ins.wt for ins in program], np.int64).reshape(n)
    sg = np.array([ins.sg for ins in program], np.int64).reshape(n)
    a0 = np.zeros(n, np.int64)
    a1 = np.zeros(n, np.int64)
    a2 = np.zeros(n, np.int64)
    for i, ins in enumerate(program):
        op = ins.op
        if op not in _CONTROL_ARGS:
            continue
        a = ins.args
        if op == "loop":
            a0[i], a1[i] = a["count"], a["end"]
        elif op == "setr":
            a0[i], a2[i] = a["rd"], a["imm"]
        elif op in ("addr", "xorr"):
            a0[i], a1[i], a2[i] = a["rd"], a["rs"], a["imm"]
        elif op == "sync":  # the queue of the named unit
            unit[i] = a["unit"]
        else:  # skipimg reads the GSU's flags: waits for its last decision (unit: gsu)
            a0[i], a1[i], a2[i] = a["rimg"], a["end"], a["inv"]
    # the CAPTURE columns of each op's spec fields, then one pass over the program
    columns = {op: [(j, c) for j, c in enumerate(CAPTURE) if c in _fields(op)] for op in info}
    rows, cols, vals = [], [], []
    for i, ins in enumerate(program):
        for j, name in columns[ins.op]:
            rows.append(i)
            cols.append(j)
            vals.append(ins.args[name])
    cap = np.full((n, len(CAPTURE)), -1, np.int64)
    cap[rows, cols] = vals
    return StaticProgram(tuple(ops), kind, unit, wt, sg, a0, a1, a2, cap)


_CONTROL_ARGS = frozenset({"loop", "setr", "addr", "xorr", "sync", "skipimg"})


def _fields(op: str) -> set[str]:
    """The field names of an op's spec."""
    return {f.name for f in BY_MNEMONIC[op].fields}


@dataclass(frozen=True)
class Stream:
    """Executed instructions in program (dispatch) order."""

    index: np.ndarray  # static instruction index per executed instruction
    regs: (
        np.ndarray
    )  # (n_exec, len(CAPTURE)) values of the CAPTURE registers at dispatch (0 if absent)


@numba.njit(cache=True)
def _count(kind, a0, a1):  # pragma: no cover - numba
    n = kind.shape[0]
    mult = np.ones(n, np.int64)
    stack_end = np.zeros(64, np.int64)
    stack_mul = np.zeros(64, np.int64)
    depth = 0
    cur = 1
    total = 0
    for i in range(n):
        while depth > 0 and stack_end[depth - 1] <= i:
            depth -= 1
            cur = stack_mul[depth - 1] if depth > 0 else 1
        mult[i] = cur
        total += cur
        if kind[i] == K_LOOP:
            cur = cur * a0[i]
            stack_end[depth] = i + a1[i]
            stack_mul[depth] = cur
            depth += 1
    return total


@numba.njit(cache=True)
def _unroll(kind, a0, a1, a2, cap, skipped, out_idx, out_regs):  # pragma: no cover - numba
    """`skipped`: per image, 1 where `skipimg` skips its region (empty: never). Fills
    out_idx and out_regs (zeros where nothing is captured); returns how many executed."""
    n = kind.shape[0]
    regs = np.zeros(16, np.int64)
    mask32 = (1 << 32) - 1
    l_start = np.zeros(64, np.int64)
    l_end = np.zeros(64, np.int64)
    l_left = np.zeros(64, np.int64)
    depth = 0
    pc = 0
    e = 0
    while pc < n:
        out_idx[e] = pc
        for j in range(cap.shape[1]):
            r = cap[pc, j]
            if r >= 0:
                out_regs[e, j] = regs[r]
        e += 1
        k = kind[pc]
        if k == K_SETR:
            if a0[pc] != 0:
                regs[a0[pc]] = a2[pc] & mask32
        elif k == K_ADDR:
            if a0[pc] != 0:
                regs[a0[pc]] = (regs[a1[pc]] + a2[pc]) & mask32
        elif k == K_XORR:
            if a0[pc] != 0:
                regs[a0[pc]] = (regs[a1[pc]] ^ a2[pc]) & mask32
        elif k == K_LOOP:
            l_start[depth] = pc + 1
            l_end[depth] = pc + a1[pc]
            l_left[depth] = a0[pc]
            depth += 1
        elif k == K_HALT:
            break
        elif k == K_SKIP:
            img = regs[a0[pc]]
            flag = 0 <= img < skipped.shape[0] and skipped[img] != 0
            if flag != (a2[pc] != 0):  # `inv`: the region of a skipped image's successor
                pc += a1[pc] - 1  # the region is not issued
        pc += 1
        while depth > 0 and pc == l_end[depth - 1]:
            l_left[depth - 1] -= 1
            if l_left[depth - 1] > 0:
                pc = l_start[depth - 1]
                break
            depth -= 1
    return e


def skip_flags(skipped: np.ndarray | None) -> np.ndarray:
    """The unroller's per-image flags: where `skipimg` skips (None: nowhere)."""
    if skipped is None:
        return np.zeros(0, np.int8)
    return np.ascontiguousarray(skipped, dtype=np.int8).reshape(-1)


def unroll(sp: StaticProgram, skipped: np.ndarray | None = None) -> Stream:
    """Execute the control flow: every executed instruction with its captured registers.
    `skipped` (bool per image): the images whose `skipimg` regions are not issued (the
    program's gradient skipping on); None: every region is issued."""
    return Stream(*run_control(sp, sp.capture, skipped))


def run_control(
    sp: StaticProgram, capture: np.ndarray, skipped: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The static index of every executed instruction and, per column of `capture`, the
    value at dispatch of the register it names for that static instruction (0 where it
    names none, -1)."""
    total = int(_count(sp.kind, sp.a0, sp.a1))
    # allocated by numpy, not in the kernel: numpy puts large arrays on huge pages, which
    # saves thousands of page faults per stream
    idx = np.empty(total, np.int32)
    regs = np.zeros((total, capture.shape[1]), np.int64)
    e = _unroll(sp.kind, sp.a0, sp.a1, sp.a2, capture, skip_flags(skipped), idx, regs)
    return idx[:e], regs[:e]
