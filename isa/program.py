"""Whole-program rules that single instructions cannot check: loop bodies and skipped regions
inside the program and properly nested. Shared by the decoder (errors name byte offsets) and
the assembler."""

from __future__ import annotations

from isa.encoding import Instruction


def structure_error(program: list[Instruction]) -> tuple[int, str] | None:
    """(index of the offending instruction, reason) or None when the structure is valid:
    loop bodies and `skipimg` regions end inside the program and inside the innermost
    enclosing loop body, and a loop or region that begins in a region ends in it."""
    open_ends: list[tuple[int, int]] = []  # (loop index, end index) of enclosing loops
    regions: list[tuple[int, int]] = []  # (skipimg index, end index) of enclosing regions
    for i, ins in enumerate(program):
        while open_ends and open_ends[-1][1] <= i:
            open_ends.pop()
        while regions and regions[-1][1] <= i:
            regions.pop()
        if ins.op not in ("loop", "skipimg"):
            continue
        end = i + ins["end"]
        what = "loop body" if ins.op == "loop" else "skipped region"
        if end > len(program):
            return i, f"{what} ends at instruction {end}, past the program's {len(program)}"
        if open_ends and end > open_ends[-1][1]:
            outer = open_ends[-1][0]
            return i, f"{what} overlaps the end of the enclosing loop at instruction {outer}"
        if regions and end > regions[-1][1]:
            return i, f"{what} overlaps the end of the skipped region at {regions[-1][0]}"
        (open_ends if ins.op == "loop" else regions).append((i, end))
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


class HardwareLoops:
    """The controller's hardware-loop stack: every walker of a program (the functional
    executor, the static analyses) steps its program counter through this one rule."""

    def __init__(self) -> None:
        self._open: list[list[int]] = []  # [start of body, end, iterations left]

    def enter(self, pc: int, ins: Instruction) -> None:
        """`ins` at `pc` is a `loop`: its body starts at pc + 1."""
        self._open.append([pc + 1, pc + ins["end"], ins["count"]])

    def next_pc(self, pc: int, to: int | None = None) -> int:
        """The instruction after the one at `pc` (or the target `to` of a taken `skipimg`,
        which lies inside the innermost body): back to a body's start while iterations
        remain, else onwards (closing every loop that ends here)."""
        pc = pc + 1 if to is None else to
        while self._open and pc == self._open[-1][1]:
            self._open[-1][2] -= 1
            if self._open[-1][2] > 0:
                return self._open[-1][0]
            self._open.pop()
        return pc


def issued_without_skips(ins: Instruction) -> bool:
    """Whether a `skipimg` region is issued where no image is skipped: the ordinary ones are,
    the opposite ones (`inv`, placed for a skipped image's successor) are not. Static walkers
    of a program (token check, transfer counts) follow this rule."""
    return not (ins.op == "skipimg" and ins["inv"])


def step_registers(regs: list[int], ins: Instruction) -> None:
    """The effect of `setr` / `addr` / `xorr` on the 32-bit scalar registers (r0 stays 0)."""
    a = ins.args
    if ins.op == "setr":
        regs[a["rd"]] = a["imm"]
    elif ins.op == "addr":
        regs[a["rd"]] = (regs[a["rs"]] + a["imm"]) % (1 << 32)
    elif ins.op == "xorr":
        regs[a["rd"]] = regs[a["rs"]] ^ a["imm"]
    regs[0] = 0


class DescriptorGeometry:
    """Output size and kernel taps of a `layer` descriptor (docs/isa.md): mixed into the
    executors' descriptor records, which carry h, w, kh, kw, stride and pad."""

    @property
    def oh(self) -> int:
        return (self.h + 2 * self.pad - self.kh) // self.stride + 1

    @property
    def ow(self) -> int:
        return (self.w + 2 * self.pad - self.kw) // self.stride + 1

    @property
    def taps(self) -> int:
        return self.kh * self.kw
