"""Whole-program rules that single instructions cannot check: loop bodies inside the program
and properly nested. Shared by the decoder (errors name byte offsets) and the assembler."""

from __future__ import annotations

from isa.encoding import Instruction


def structure_error(program: list[Instruction]) -> tuple[int, str] | None:
    """(index of the offending instruction, reason) or None when the structure is valid."""
    open_ends: list[tuple[int, int]] = []  # (loop index, end index) of enclosing loops
    for i, ins in enumerate(program):
        while open_ends and open_ends[-1][1] <= i:
            open_ends.pop()
        if ins.op != "loop":
            continue
        end = i + ins["end"]
        if end > len(program):
            return i, f"loop body ends at instruction {end}, past the program's {len(program)}"
        if open_ends and end > open_ends[-1][1]:
            outer = open_ends[-1][0]
            return i, f"loop body overlaps the end of the enclosing loop at instruction {outer}"
        open_ends.append((i, end))
    return None


def max_loop_depth(program: list[Instruction]) -> int:
    """Deepest loop nesting of a (structurally valid) program."""
    depth, ends = 0, []
    for i, ins in enumerate(program):
        while ends and ends[-1] <= i:
            ends.pop()
        if ins.op == "loop":
            ends.append(i + ins["end"])
            depth = max(depth, len(ends))
    return depth
