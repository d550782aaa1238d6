"""`skipimg`: a skipped image's BP/WU work is not issued (isa.spec). Its structure rules, its
round trip through the assembler, and the compiler's regions: one per image of every BP/WU
batch loop of the sparse program, none in the dense program, each balanced in its tokens (so
the issued images pair their tokens as if the skipped ones were not there)."""

from __future__ import annotations

from collections import Counter
from functools import cache

import pytest

from isa.analysis import check_tokens
from isa.asm import AsmError, assemble_program
from isa.compiler import compile_graph
from isa.disasm import disassemble_program
from isa.program import HardwareLoops, structure_error
from simulator.config import load_config
from workloads.graph import graph_for

BATCH = 2


@cache
def compiled(model: str, sparse: bool):
    return compile_graph(graph_for(model), load_config("ref28"), BATCH, sparse=sparse)


def test_a_region_assembles_and_round_trips():
    src = (
        "loop 2, done\n  skipimg r1, next\n  nop sg=1\n  nop wt=1\n"
        "next: addr r1, r1, 1\ndone: halt\n"
    )
    prog = assemble_program(src)
    assert prog[1].op == "skipimg" and prog[1]["end"] == 3 and prog[1]["rimg"] == 1
    assert structure_error(prog) is None
    again = assemble_program(disassemble_program(prog))
    assert again == prog


@pytest.mark.parametrize(
    "src, what",
    [
        # the region runs past the end of the loop body it starts in
        ("loop 2, e\n skipimg r1, f\n nop\ne: nop\nf: halt\n", "overlaps the end of the enclosing"),
        # a loop that begins in the region ends after it
        ("skipimg r1, e\n loop 2, f\n nop\ne: nop\nf: halt\n", "overlaps the end of the skipped"),
    ],
)
def test_regions_that_cut_loops_are_refused(src, what):
    with pytest.raises(AsmError, match=what):
        assemble_program(src)


def _regions(prog) -> list[tuple[int, int]]:
    return [(i, i + ins["end"]) for i, ins in enumerate(prog) if ins.op == "skipimg"]


def _token_balance(prog, start: int, end: int) -> Counter:
    """Signals minus waits per token over one execution of the region [start, end), its
    inner loops run in full."""
    bal: Counter = Counter()
    loops = HardwareLoops()
    pc = start
    while pc < end:
        ins = prog[pc]
        if ins.sg:
            bal[ins.sg] += 1
        if ins.wt:
            bal[ins.wt] -= 1
        if ins.op == "loop":
            loops.enter(pc, ins)
        pc = loops.next_pc(pc)
    return Counter({t: n for t, n in bal.items() if n})


@pytest.mark.parametrize("model", ["resnet20", "vgg7"])
def test_the_sparse_program_puts_each_images_backward_work_in_a_balanced_region(model):
    prog = compiled(model, True)
    ins, notes = prog.instructions, prog.annotations
    regions = _regions(ins)
    assert regions
    covered = [False] * len(ins)
    for s, e in regions:
        assert ins[s]["rimg"] == 1  # the image register of the batch loops
        assert notes[s]["phase"] in ("bp", "wu")
        assert not _token_balance(ins, s + 1, e), f"region at {s} is not token-balanced"
        for j in range(s + 1, e):
            covered[j] = True
    # every tensor-core op of BP and WU is in a region: a skipped image issues none of them
    for j, (i, a) in enumerate(zip(ins, notes, strict=True)):
        if i.op in ("tc.bwd", "tc.wgr"):
            assert covered[j], f"{i.op} at {j} ({a['layer']}) is outside every region"
        if i.op == "tc.fwd" or a["phase"] in ("fp", "loss"):
            assert not covered[j]
    check_tokens(ins)  # still a program that cannot deadlock with every region issued


def test_the_dense_program_has_no_regions():
    assert not _regions(compiled("resnet20", False).instructions)
