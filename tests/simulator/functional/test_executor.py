"""The executor's control flow, DMA and error reporting on hand-written programs."""

import numpy as np
import pytest

from isa.encoding import Instruction as Ins
from simulator.config import load_config
from simulator.functional import Executor, FunctionalError, Machine


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
