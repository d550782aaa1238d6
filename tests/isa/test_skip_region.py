"""`skipimg`: a skipped image's BP/WU work is not issued (isa.spec). Its structure rules, its
round trip through the assembler, and the compiler's regions: each image's part of every BP/WU
image loop of the sparse program, none in the dense program, an image's regions of a block
balanced in their tokens together (so the issued images pair their tokens as if the skipped
ones were not there)."""

from __future__ import annotations

from collections import Counter
from functools import cache

import pytest

from isa.analysis import check_tokens
from isa.asm import AsmError, assemble_program
from isa.compiler import compile_graph
from isa.disasm import disassemble_program
from isa.program import HardwareLoops, step_registers, structure_error
from simulator.config import load_config
from workloads.graph import graph_for

BATCH = 2


@cache
def compiled(model: str, sparse: bool):
    return compile_graph(graph_for(model), load_config("ref28"), BATCH, sparse=sparse)


def test_a_region_assembles_and_round_trips():
    src = (
        "loop 2, done\n  skipimg r1, next, 0\n  nop sg=1\n  nop wt=1\n"
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
        (
            "loop 2, e\n skipimg r1, f, 0\n nop\ne: nop\nf: halt\n",
            "overlaps the end of the enclosing",
        ),
        # a loop that begins in the region ends after it
        (
            "skipimg r1, e, 0\n loop 2, f\n nop\ne: nop\nf: halt\n",
            "overlaps the end of the skipped",
        ),
    ],
)
def test_regions_that_cut_loops_are_refused(src, what):
    with pytest.raises(AsmError, match=what):
        assemble_program(src)


def _regions(prog) -> list[tuple[int, int]]:
    return [(i, i + ins["end"]) for i, ins in enumerate(prog) if ins.op == "skipimg"]


def _issued(prog, skipped=()):
    """Run the program with its registers, the images in `skipped` skipped (a region is
    issued where the image's flag differs from its `inv`): yields (block, image of the
    innermost ordinary region or None, instruction, registers) for every issued instruction;
    a block ends at a `barrier`."""
    loops, regs = HardwareLoops(), [0] * 16
    ends: list[tuple[int, int]] = []  # (end, image) of the regions being executed
    pc, block = 0, 0
    while pc < len(prog):
        ins = prog[pc]
        while ends and ends[-1][0] <= pc:
            ends.pop()
        yield block, (ends[-1][1] if ends else None), ins, regs
        to = None
        if ins.op == "barrier":
            block += 1
        elif ins.op == "skipimg":
            img = regs[ins["rimg"]]
            if (img in skipped) != bool(ins["inv"]):
                to = pc + ins["end"]
            elif not ins["inv"]:  # an opposite region is a skipped image's successor's
                ends.append((pc + ins["end"], img))
        elif ins.op == "loop":
            loops.enter(pc, ins)
        step_registers(regs, ins)
        pc = loops.next_pc(pc, to)


def _image_balances(prog, skipped=()) -> dict[tuple[int, int], Counter]:
    """Per (block, image): the signals minus waits of each token over the issued
    instructions of that image's regions. The skipped images' regions must leave the other
    images' tokens paired as before, so each issued image's regions together must balance."""
    bal: dict[tuple[int, int], Counter] = {}
    for block, img, ins, _ in _issued(prog, skipped):
        if img is not None and (ins.sg or ins.wt):
            c = bal.setdefault((block, img), Counter())
            c[ins.sg] += bool(ins.sg)
            c[ins.wt] -= bool(ins.wt)
    return {k: Counter({t: n for t, n in c.items() if t and n}) for k, c in bal.items()}


@pytest.mark.parametrize("model", ["resnet20", "vgg7"])
def test_the_sparse_program_puts_each_images_backward_work_in_balanced_regions(model):
    prog = compiled(model, True)
    ins, notes = prog.instructions, prog.annotations
    regions = _regions(ins)
    assert regions
    covered = [False] * len(ins)
    for s, e in regions:
        assert ins[s]["rimg"] == 1  # the image register of the batch loops
        assert notes[s]["phase"] in ("bp", "wu")
        for j in range(s + 1, e):
            covered[j] = True
    bal = _image_balances(ins)
    assert {img for _, img in bal} == set(range(BATCH))
    for (block, img), c in bal.items():
        assert not c, f"image {img}'s regions in block {block} are not token-balanced: {c}"
    # every tensor-core op of BP and WU is in a region: a skipped image issues none of them
    for j, (i, a) in enumerate(zip(ins, notes, strict=True)):
        if i.op in ("tc.bwd", "tc.wgr"):
            assert covered[j], f"{i.op} at {j} ({a['layer']}) is outside every region"
        if i.op == "tc.fwd" or a["phase"] in ("fp", "loss"):
            assert not covered[j]
    check_tokens(ins)  # still a program that cannot deadlock with every region issued


def test_the_dense_program_has_no_regions():
    assert not _regions(compiled("resnet20", False).instructions)


@pytest.mark.parametrize("skipped", [(), (1,), (0, 2, 3), (1, 2, 4, 5, 7), (0, 1, 2, 3, 4, 5, 6)])
def test_pipelined_regions_balance_for_any_skipped_images(skipped):
    """ResNet-20's pipelined data-gradient loops at batch 8 (the next image's front placed
    ahead where the image between is skipped, an opposite region): for these skip patterns
    every issued image's regions balance their tokens and each issued image's front is
    issued exactly once (its loads: as many as an image's in the program without skips)."""
    ins = compile_graph(graph_for("resnet20"), load_config("ref28"), 8).instructions
    assert any(i.op == "skipimg" and i["inv"] for i in ins)
    bal = _image_balances(ins, set(skipped))
    assert {img for _, img in bal} == set(range(8)) - set(skipped)
    for (block, img), c in bal.items():
        assert not c, f"image {img}'s regions in block {block}: {c}"
    base = _image_loads(ins, set())
    loads = _image_loads(ins, set(skipped))
    assert {k: v for k, v in base.items() if k[1] not in skipped} == loads


def _image_loads(prog, skipped) -> Counter:
    """(block, image) -> issued `gsk` loads, with the images in `skipped` skipped."""
    return Counter(
        (block, regs[ins["rimg"]])
        for block, _, ins, regs in _issued(prog, skipped)
        if ins.op == "dma.ld" and ins["gsk"]
    )
