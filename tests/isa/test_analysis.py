"""The program analyses the done-means tests rely on, checked on hand-written programs."""

import pytest

from isa.analysis import TokenError, check_tokens, check_transfers, tc_work_by_phase
from isa.asm import assemble_program
from simulator.config import load_config

LAYER = "layer 0, conv, 16, 32, 8, 8, 3, 3, 1, 1, 1, 0, 0\n"
TC = "{op} 0, r0, 32, r0, 16, r0, 8, r0, r0, r0, r0, 0, 1, r0, 0{extra}\n"


def test_work_counts_loops_and_phases():
    src = (
        LAYER
        + "loop 3, e\n loop 2, f\n"
        + " "
        + TC.format(op="tc.fwd", extra=", full")
        + "f: "
        + TC.format(op="tc.bwd", extra="")
        + "e: "
        + TC.format(op="tc.wgr", extra="")
        + "halt\n"
    )
    per_op = 32 * 16 * 8 * 8 * 9  # kn cn pn OW kh kw
    assert tc_work_by_phase(assemble_program(src)) == {
        "fp": 6 * per_op,
        "bp": 3 * per_op,
        "wu": per_op,
    }


def test_work_needs_a_descriptor():
    with pytest.raises(ValueError, match="before it is written"):
        tc_work_by_phase(assemble_program(TC.format(op="tc.bwd", extra="")))


def test_tokens():
    ok = assemble_program("nop sg=3\nloop 2, e\n nop wt=3\n nop sg=3\ne: nop wt=3\n")
    assert check_tokens(ok) == {}
    with pytest.raises(TokenError, match=r"instruction 2 .* waits for token 4"):
        check_tokens(assemble_program("nop sg=4\nnop wt=4\nnop wt=4\n"))
    assert check_tokens(assemble_program("nop sg=7\n")) == {7: 1}


def test_transfers_out_of_buffer_and_region():
    cfg = load_config("ref28")
    inside = assemble_program("setr r1, 100\ndma.ld wgt, r0, 0, r1, 2, 16, 32, 16, 0, r0\n")
    assert check_transfers(inside, cfg, [(100, 200)]) == []
    assert "not inside one region" in check_transfers(inside, cfg, [(100, 140)])[0]
    over = assemble_program(
        "setr r6, 131040\nloop 2, e\ndma.st wgt, r6, 0, r0, 1, 64, 0, 0, 0, r0\ne: halt\n"
    )
    assert "exceeds 131072 bytes" in check_transfers(over, cfg)[0]
