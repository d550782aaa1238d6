"""The disassembler: instructions or bytes to assembly text that assembles to the same bytes.

Loop targets inside the program become labels `L<index>`; operands are positional in the
definition's field order; header tokens are written as `wt=`/`sg=` when non-zero.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from isa.encoding import Instruction, decode
from isa.spec import BY_MNEMONIC, FieldSpec, Kind


def format_value(f: FieldSpec, value: int, index: int, labels: dict[int, str]) -> str:
    """One operand as assembly text."""
    if f.kind is Kind.REG:
        return f"r{value}"
    if f.kind is Kind.ENUM:
        assert f.enum is not None
        return f.enum.values[value]
    if f.kind is Kind.F32:
        x = struct.unpack("<f", struct.pack("<I", value))[0]
        # repr of a float32-exact double re-parses to the same double, hence the same bits
        return repr(x) if math.isfinite(x) else f"0x{value:08x}"
    if f.kind is Kind.LABEL:
        return labels.get(index + value, str(value))
    return str(value)


def format_instruction(
    ins: Instruction, index: int = 0, labels: dict[int, str] | None = None
) -> str:
    """`mnemonic op, op, ... [wt=N] [sg=N]`."""
    spec = BY_MNEMONIC[ins.op]
    ops = [format_value(f, ins.args[f.name], index, labels or {}) for f in spec.fields]
    text = ins.op + (" " + ", ".join(ops) if ops else "")
    if ins.wt:
        text += f" wt={ins.wt}"
    if ins.sg:
        text += f" sg={ins.sg}"
    return text


def loop_labels(program: Sequence[Instruction]) -> dict[int, str]:
    """Label names for every loop target that lies inside the program (or at its end)."""
    return {
        i + ins["end"]: f"L{i + ins['end']}"
        for i, ins in enumerate(program)
        if ins.op == "loop" and i + ins["end"] <= len(program)
    }


def disassemble_program(
    program: Sequence[Instruction], comments: Sequence[str | None] | None = None
) -> str:
    """Assembly text of a program; `comments[i]` (optional) is appended to line i."""
    labels = loop_labels(program)
    lines = []
    for i, ins in enumerate(program):
        if i in labels:
            lines.append(f"{labels[i]}:")
        text = "    " + format_instruction(ins, i, labels)
        if comments is not None and comments[i]:
            text = f"{text:<60} ; {comments[i]}"
        lines.append(text)
    if len(program) in labels:
        lines.append(f"{labels[len(program)]}:")
    return "\n".join(lines) + "\n"


def disassemble(data: bytes) -> str:
    """Assembly text of a binary (DecodeError names the offset of anything invalid)."""
    return disassemble_program(decode(data))
