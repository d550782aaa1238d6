"""The assembler: text to instructions and bytes. Syntax (see docs/isa.md):

    ; comment to end of line
    .equ NAME, VALUE          ; a named integer constant (e.g. a DRAM address)
    label:                    ; names the next instruction (labels may share a line with it)
        mnemonic op, op, ... [name=value ...] [wt=N] [sg=N]

Operands are positional in the field order of the definition, or `name=value` for any field
after the positional ones. Values: integers (decimal, 0x hex, 0b binary, negative for signed
fields, or a `.equ` name), enum names (e.g. the buffers act/wgt/err/msk), registers r0..r15,
floats for f32 fields (or 0x raw bits), and label names for label fields. Every error names
the line and column.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass

from isa.encoding import Instruction, check_value, encode
from isa.program import structure_error
from isa.spec import BY_MNEMONIC, N_REGISTERS, TOKEN_BITS, FieldSpec, Kind

_NAME = r"[A-Za-z_.][\w.#$]*"
_LABEL_RE = re.compile(rf"\s*({_NAME})\s*:")
_INT_RE = re.compile(r"[+-]?(0[xX][0-9a-fA-F_]+|0[bB][01_]+|\d[\d_]*)$")
_REG_RE = re.compile(r"[rR](\d+)$")
_NAME_RE = re.compile(rf"{_NAME}$")


class AsmError(ValueError):
    """Assembly text that is not a valid program; the message starts with `file:line:col:`."""

    def __init__(self, source: str, line: int, col: int, msg: str):
        super().__init__(f"{source}:{line}:{col}: {msg}")
        self.line, self.col, self.msg = line, col, msg


@dataclass
class _Operand:
    text: str
    col: int  # 1-based column of its first character
    key: str | None = None


@dataclass
class _Statement:
    line: int
    col: int
    mnemonic: str
    operands: list[_Operand]


def _split_operands(body: str, start_col: int) -> list[_Operand]:
    ops: list[_Operand] = []
    pos = 0
    for piece in body.split(","):
        stripped = piece.strip()
        col = start_col + pos + (len(piece) - len(piece.lstrip()))
        pos += len(piece) + 1
        # `a, b wt=1 sg=2`: whitespace also separates trailing key=value operands
        for m in re.finditer(r"\S+(\s*=\s*\S+)?", stripped):
            text = m.group(0)
            key = None
            if "=" in text:
                key, text = (t.strip() for t in text.split("=", 1))
            ops.append(_Operand(text, col + m.start(), key))
    return ops


def _parse_int(text: str) -> int | None:
    if not _INT_RE.match(text):
        return None
    return int(text.replace("_", ""), 0)


class Assembler:
    """Two passes: collect labels and constants, then build instructions."""

    def __init__(self, text: str, source: str = "<asm>"):
        self.text, self.source = text, source
        self.labels: dict[str, int] = {}
        self.equs: dict[str, int] = {}
        self.statements: list[_Statement] = []

    def error(self, line: int, col: int, msg: str) -> AsmError:
        return AsmError(self.source, line, col, msg)

    def _scan(self) -> None:
        for lineno, raw in enumerate(self.text.splitlines(), start=1):
            line = raw.split(";", 1)[0].rstrip()
            pos = 0
            while m := _LABEL_RE.match(line, pos):
                name = m.group(1)
                if name in self.labels or name in self.equs:
                    raise self.error(lineno, m.start(1) + 1, f"{name!r} is defined twice")
                self.labels[name] = len(self.statements)
                pos = m.end()
            rest = line[pos:]
            if not rest.strip():
                continue
            col = pos + len(rest) - len(rest.lstrip()) + 1
            word = rest.split(None, 1)[0]
            body = rest.strip()[len(word) :]
            body_col = col + len(word)
            if word.lower() == ".equ":
                self._equ(lineno, col, _split_operands(body, body_col))
                continue
            if word.startswith("."):
                raise self.error(lineno, col, f"unknown directive {word!r} (known: .equ)")
            mnemonic = word.lower()
            if mnemonic not in BY_MNEMONIC:
                raise self.error(lineno, col, f"unknown mnemonic {word!r}")
            self.statements.append(
                _Statement(lineno, col, mnemonic, _split_operands(body, body_col))
            )

    def _equ(self, lineno: int, col: int, ops: list[_Operand]) -> None:
        if len(ops) != 2 or ops[0].key or ops[1].key:
            raise self.error(lineno, col, ".equ takes NAME, VALUE")
        name, value = ops[0], ops[1]
        if not _NAME_RE.match(name.text) or _REG_RE.match(name.text):
            raise self.error(lineno, name.col, f"{name.text!r} is not a valid constant name")
        if name.text in self.equs or name.text in self.labels:
            raise self.error(lineno, name.col, f"{name.text!r} is defined twice")
        v = _parse_int(value.text)
        if v is None:
            v = self.equs.get(value.text)
        if v is None:
            raise self.error(lineno, value.col, f"{value.text!r} is not an integer or constant")
        self.equs[name.text] = v

    def _value(self, st: _Statement, index: int, f: FieldSpec, op: _Operand) -> int:
        t = op.text
        if f.kind is Kind.REG:
            m = _REG_RE.match(t)
            if not m or int(m.group(1)) >= N_REGISTERS:
                raise self._err(st, op, f"{f.name}: expected a register r0..r15, got {t!r}")
            return int(m.group(1))
        if f.kind is Kind.ENUM:
            assert f.enum is not None
            if t in f.enum.values:
                return f.enum.values.index(t)
            raise self._err(
                st, op, f"{f.name}: expected one of {', '.join(f.enum.values)}, got {t!r}"
            )
        if f.kind is Kind.F32:
            return self._f32(st, f, op)
        if f.kind is Kind.LABEL:
            if t in self.labels:
                return self.labels[t] - index
            v = _parse_int(t)
            if v is None:
                raise self._err(st, op, f"{f.name}: undefined label {t!r}")
            return v
        v = _parse_int(t)
        if v is None:
            v = self.equs.get(t)
        if v is None:
            raise self._err(st, op, f"{f.name}: expected an integer or .equ constant, got {t!r}")
        return v

    def _f32(self, st: _Statement, f: FieldSpec, op: _Operand) -> int:
        t = op.text
        if t.lower().startswith("0x"):
            v = _parse_int(t)
            if v is None or not 0 <= v < 1 << 32:
                raise self._err(st, op, f"{f.name}: {t!r} is not 32 raw bits")
            return v
        try:
            x = float(t)
        except ValueError:
            raise self._err(st, op, f"{f.name}: expected a float, got {t!r}") from None
        if not math.isfinite(x):
            raise self._err(st, op, f"{f.name}: write non-finite values as 0x raw bits")
        try:
            return struct.unpack("<I", struct.pack("<f", x))[0]
        except OverflowError:
            raise self._err(st, op, f"{f.name}: {t} overflows float32") from None

    def _err(self, st: _Statement, op: _Operand, msg: str) -> AsmError:
        return self.error(st.line, op.col, f"{st.mnemonic}: {msg}")

    def _instruction(self, index: int, st: _Statement) -> Instruction:
        spec = BY_MNEMONIC[st.mnemonic]
        fields = {f.name: f for f in spec.fields}
        args: dict[str, int] = {}
        tokens = {"wt": 0, "sg": 0}
        positional = [o for o in st.operands if o.key is None]
        keyed = [o for o in st.operands if o.key is not None]
        if keyed and st.operands.index(keyed[0]) < len(positional):
            raise self._err(st, keyed[0], "positional operands must come before name=value")
        if len(positional) > len(spec.fields):
            raise self._err(
                st,
                positional[len(spec.fields)],
                f"too many operands (takes {len(spec.fields)}: {', '.join(fields) or 'none'})",
            )
        for f, op in zip(spec.fields, positional, strict=False):
            args[f.name] = self._value(st, index, f, op)
        for op in keyed:
            assert op.key is not None
            if op.key in tokens:
                v = _parse_int(op.text)
                if v is None or not 0 <= v < 1 << TOKEN_BITS:
                    raise self._err(st, op, f"{op.key}: expected a token 0..15, got {op.text!r}")
                tokens[op.key] = v
                continue
            if op.key not in fields:
                raise self._err(st, op, f"unknown operand name {op.key!r}")
            if op.key in args:
                raise self._err(st, op, f"operand {op.key!r} given twice")
            args[op.key] = self._value(st, index, fields[op.key], op)
        missing = [n for n in fields if n not in args]
        if missing:
            raise self.error(st.line, st.col, f"{st.mnemonic}: missing operands {missing}")
        cols = {f.name: op.col for f, op in zip(spec.fields, positional, strict=False)}
        cols.update({op.key: op.col for op in keyed if op.key})
        for f in spec.fields:
            why = check_value(f, args[f.name])
            if why:
                raise self.error(st.line, cols.get(f.name, st.col), f"{st.mnemonic}: {why}")
        return Instruction(st.mnemonic, args, tokens["wt"], tokens["sg"])

    def run(self) -> list[Instruction]:
        self._scan()
        program = [self._instruction(i, st) for i, st in enumerate(self.statements)]
        bad = structure_error(program)
        if bad is not None:
            st = self.statements[bad[0]]
            raise self.error(st.line, st.col, bad[1])
        return program


def assemble_program(text: str, source: str = "<asm>") -> list[Instruction]:
    """Parse assembly text into instructions; AsmError names line and column."""
    return Assembler(text, source).run()


def assemble(text: str, source: str = "<asm>") -> bytes:
    """Parse assembly text and encode it."""
    return encode(assemble_program(text, source))
