"""The executor's control flow, DMA and error reporting on hand-written programs."""

import numpy as np
import pytest

from isa.encoding import Instruction as Ins
from isa.program import HardwareLoops, step_registers
from simulator.config import load_config
from simulator.functional import Executor, FunctionalError, Machine
from simulator.functional.state import Modes


def _machine():
    return Machine.create(load_config("ref28"), 4096)


def test_loops_registers_and_strided_dma_roundtrip():
    m = _machine()
    m.dram[:256] = np.arange(256, dtype=np.uint8)
    prog = [
        Ins("setr", {"rd": 2, "imm": 0}),  # DRAM source
        Ins("setr", {"rd": 3, "imm": 1024}),  # DRAM destination
        Ins("loop", {"count": 3, "end": 5}),  # body: the next 4 instructions
        # 5 rows of 4 bytes, every 16th DRAM byte, packed in the buffer
        Ins("dma.ld", {"buf": 0, "rbuf": 0, "boff": 0, "rdram": 2, "rows": 5, "row_bytes": 4,
                     "dstride": 16, "bstride": 4}),
        Ins("dma.st", {"buf": 0, "rbuf": 0, "boff": 0, "rdram": 3, "rows": 5, "row_bytes": 4,
                     "dstride": 4, "bstride": 4}),
        Ins("addr", {"rd": 2, "rs": 2, "imm": 4}),
        Ins("addr", {"rd": 3, "rs": 3, "imm": 20}),
        Ins("xorr", {"rd": 4, "rs": 4, "imm": 0xFF}),
        Ins("halt", {}),
    ]  # fmt: skip
    n = Executor(m).run(prog)
    assert n == 2 + 1 + 3 * 4 + 1 + 1  # setr x2, loop, 3 x 4 body, xorr, halt
    assert m.reg(2) == 12 and m.reg(3) == 1024 + 60 and m.reg(4) == 0xFF
    out = m.dram[1024 : 1024 + 60].reshape(3, 5, 4)
    for it in range(3):
        for row in range(5):
            first = it * 4 + row * 16
            assert list(out[it, row]) == list(range(first, first + 4))


def test_out_of_range_access_names_the_instruction():
    m = _machine()
    prog = [
        Ins("setr", {"rd": 2, "imm": 4000}),
        Ins("dma.ld", {"buf": 1, "rbuf": 0, "boff": 0, "rdram": 2, "rows": 1, "row_bytes": 200,
                     "dstride": 0, "bstride": 0}),
    ]  # fmt: skip
    with pytest.raises(FunctionalError, match=r"instruction 1 \(dma.ld\).*dram access"):
        Executor(m).run(prog)


def test_tensor_op_without_descriptor_is_an_error():
    m = _machine()
    args = dict(desc=3, rk=0, kn=1, rc=0, cn=1, rp=0, pn=1, rimg=0, ra=0, rb=0, ro=0, acc=0,
                fin=0, rm=0, gm=0, **{"pass": 0})  # fmt: skip
    with pytest.raises(FunctionalError, match="descriptor 3"):
        Executor(m).run([Ins("tc.fwd", args)])


def _dma(op, buf=0, rdram=2, rows=1, rb=4, ds=0, bs=0, boff=0):
    return Ins(op, {"buf": buf, "rbuf": 0, "boff": boff, "rdram": rdram, "rows": rows,
                    "row_bytes": rb, "dstride": ds, "bstride": bs})  # fmt: skip


@pytest.mark.parametrize("record", [False, True])
def test_dma_shapes(record):
    """One row with stride 0, contiguous rows, strided rows, overlapping rows (in order: a
    later row overwrites), the random-word record travelling with the bytes."""
    m = Machine.create(load_config("ref28"), 4096, record_bits=record)
    m.dram[:512] = np.arange(512) % 251
    if record:
        m.bits["dram"][:512] = np.arange(512) * 7
    prog = [
        Ins("setr", {"rd": 2, "imm": 100}),
        Ins("setr", {"rd": 3, "imm": 2000}),
        _dma("dma.ld", rows=1, rb=6, ds=0, bs=0, boff=0),  # act[0:6] = dram[100:106]
        _dma("dma.ld", rows=3, rb=5, ds=5, bs=5, boff=10),  # act[10:25] = dram[100:115]
        _dma("dma.ld", rows=4, rb=3, ds=10, bs=4, boff=30),  # strided both sides
        _dma("dma.ld", rows=3, rb=4, ds=4, bs=2, boff=50),  # overlapping rows in the buffer
        _dma("dma.st", rdram=3, rows=2, rb=8, ds=16, bs=30, boff=0),  # strided store
    ]
    assert Executor(m).run(prog) == len(prog)
    act, dram = m.buffers["act"], m.dram
    src = np.arange(512) % 251
    assert list(act[0:6]) == list(src[100:106])
    assert list(act[10:25]) == list(src[100:115])
    for i in range(4):
        assert list(act[30 + 4 * i : 33 + 4 * i]) == list(src[100 + 10 * i : 103 + 10 * i])
    ref = np.zeros(10, np.uint8)
    for i in range(3):
        ref[2 * i : 2 * i + 4] = src[100 + 4 * i : 104 + 4 * i]
    assert list(act[50:58]) == list(ref[:8])
    assert list(dram[2000:2008]) == list(act[0:8])
    assert list(dram[2016:2024]) == list(act[30:38])
    if record:
        b = m.bits["act"]
        assert list(b[10:25]) == list(np.arange(100, 115) * 7)
        assert list(m.bits["dram"][2016:2024]) == list(b[30:38])


@pytest.mark.parametrize("gskip", [False, True])
def test_skipimg_leaves_out_a_skipped_images_region(gskip):
    """Image 1's skip flag is set: with gradient skipping on its region is not executed (no
    register effect, no data), with it off every region is."""
    m = _machine()
    m.view("msk", 0, 3)[:] = [0, 1, 0]
    prog = [
        Ins("mode", {"gating": 0, "wsparse": 0, "gskip": int(gskip)}),
        Ins("setr", {"rd": 1, "imm": 0}),
        Ins("loop", {"count": 3, "end": 4}),
        Ins("skipimg", {"rimg": 1, "end": 2, "inv": 0}),
        Ins("addr", {"rd": 5, "rs": 5, "imm": 1}),  # counts the regions executed
        Ins("addr", {"rd": 1, "rs": 1, "imm": 1}),
        Ins("halt", {}),
    ]
    Executor(m).run(prog)
    assert m.regs[1] == 3
    assert m.regs[5] == (2 if gskip else 3)
    # the opposite region (inv): executed only for the skipped image
    m2 = _machine()
    m2.view("msk", 0, 3)[:] = [0, 1, 0]
    prog[3] = Ins("skipimg", {"rimg": 1, "end": 2, "inv": 1})
    Executor(m2).run(prog)
    assert m2.regs[5] == (1 if gskip else 0)


def test_skipimg_with_an_image_outside_the_mask_buffer_is_an_error():
    m = _machine()
    prog = [
        Ins("mode", {"gating": 0, "wsparse": 0, "gskip": 1}),
        Ins("setr", {"rd": 1, "imm": 1 << 30}),
        Ins("skipimg", {"rimg": 1, "end": 1, "inv": 0}),
    ]
    with pytest.raises(FunctionalError, match="instruction 2 \\(skipimg\\)"):
        Executor(m).run(prog)


def _reference_regs(prog, limit=1 << 32):
    """Registers and executed count of a program of register ops, no-data ops and loops,
    one instruction at a time by the ISA's rules (`HardwareLoops`, `step_registers`)."""
    regs, loops, pc, executed = [0] * 16, HardwareLoops(), 0, 0
    while pc < len(prog) and executed < limit:
        ins = prog[pc]
        executed += 1
        if ins.op == "loop":
            loops.enter(pc, ins)
        elif ins.op in ("setr", "addr", "xorr"):
            step_registers(regs, ins)
        pc = loops.next_pc(pc)
    return regs, executed


def _register_program():
    """Runs of register ops that cross loop ends (the runs must be cut there), a write to r0
    read back inside a run, no-data ops inside runs."""
    return [
        Ins("setr", {"rd": 1, "imm": 5}),
        Ins("nop", {}),
        Ins("loop", {"count": 3, "end": 6}),  # body: 5 instructions, an inner loop
        Ins("addr", {"rd": 2, "rs": 2, "imm": 1}),
        Ins("loop", {"count": 4, "end": 3}),  # inner body: the next 2
        Ins("addr", {"rd": 3, "rs": 3, "imm": 7}),
        Ins("xorr", {"rd": 4, "rs": 4, "imm": 0x55}),
        Ins("addr", {"rd": 5, "rs": 3, "imm": 1}),  # inner loop end; outer body's last
        Ins("addr", {"rd": 6, "rs": 6, "imm": 2}),  # outer loop end
        Ins("sync", {}),
        Ins("addr", {"rd": 0, "rs": 1, "imm": 9}),  # r0 stays 0
        Ins("addr", {"rd": 7, "rs": 0, "imm": 1}),
        Ins("setr", {"rd": 8, "imm": 0xFFFFFFFF}),
        Ins("addr", {"rd": 8, "rs": 8, "imm": 2}),  # wraps at 32 bits
    ]


def test_register_runs_follow_loops_and_r0():
    prog = _register_program()
    m = _machine()
    n = Executor(m).run(prog)
    regs, executed = _reference_regs(prog)
    assert (n, m.regs) == (executed, regs)
    assert m.regs[2] == 3 and m.regs[3] == 3 * 4 * 7 and m.regs[6] == 2 and m.regs[7] == 1


@pytest.mark.parametrize("limit", [1, 2, 5, 9, 12, 40])
def test_instruction_limit_inside_a_register_run(limit):
    """The limit stops the program where one instruction at a time stops it, also in the
    middle of a run of register ops."""
    prog = _register_program()
    regs, executed = _reference_regs(prog, limit)
    m = _machine()
    if executed == limit and executed < _reference_regs(prog)[1]:
        with pytest.raises(FunctionalError, match=f"more than {limit} instructions"):
            Executor(m).run(prog, max_instructions=limit)
    else:
        assert Executor(m).run(prog, max_instructions=limit) == executed
    assert m.regs == regs


def test_skip_flags_read_and_checked():
    """The gradient-skip flag of an image is its mask byte, read only with skipping on; an
    image number outside the mask buffer is an error naming the buffer, not a wrap."""
    m = _machine()
    m.buffers["msk"][3] = 1
    m.forced_modes = Modes(False, False, True)
    assert m.skipped(3) and not m.skipped(2)
    for bad in (-1, m.buffers["msk"].size):
        with pytest.raises(FunctionalError, match=r"msk access \["):
            m.skipped(bad)
    m.forced_modes = Modes(False, False, False)
    assert not m.skipped(3)
