"""Binary encoding and decoding of instructions, derived from `isa.spec`.

An `Instruction` holds the mnemonic, the header tokens and every operand as an integer (enum
fields as their index, F32 fields as their raw bits, SINT fields as signed ints, LABEL fields as
the forward distance in instructions). Encoding checks every value against its field's range;
decoding rejects unknown opcodes, out-of-range values and set reserved bits, naming the byte
offset and the reason.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from isa.spec import (
    BY_CODE,
    BY_MNEMONIC,
    HEADER_BITS,
    INSTRUCTION_BITS,
    INSTRUCTION_BYTES,
    OPCODE_BITS,
    TOKEN_BITS,
    FieldSpec,
    Kind,
    OpSpec,
)


class EncodeError(ValueError):
    """An instruction whose operands do not fit its definition."""


class DecodeError(ValueError):
    """Bytes that are not a valid instruction; the message names the byte offset."""


@dataclass(frozen=True)
class Instruction:
    """One instruction with its operands as integers (see module docstring)."""

    op: str
    args: Mapping[str, int] = field(default_factory=dict)
    wt: int = 0  # dependency token to wait for (0 = none)
    sg: int = 0  # dependency token to signal on completion (0 = none)

    def __post_init__(self) -> None:
        object.__setattr__(self, "args", MappingProxyType(dict(self.args)))

    @property
    def spec(self) -> OpSpec:
        return BY_MNEMONIC[self.op]

    def __getitem__(self, name: str) -> int:
        return self.args[name]

    def __hash__(self) -> int:
        return hash((self.op, tuple(sorted(self.args.items())), self.wt, self.sg))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Instruction):
            return NotImplemented
        return (self.op, dict(self.args), self.wt, self.sg) == (
            other.op,
            dict(other.args),
            other.wt,
            other.sg,
        )


def check_value(f: FieldSpec, value: int) -> str | None:
    """Why `value` is invalid for field `f`, or None if it is valid."""
    if not isinstance(value, int) or isinstance(value, bool):
        return f"{f.name} must be an integer, not {type(value).__name__}"
    if not f.lo <= value <= f.hi:
        if f.kind is Kind.ENUM:
            assert f.enum is not None
            return f"{f.name}={value} is not a valid {f.enum.name} (0..{f.hi})"
        return f"{f.name}={value} is out of range {f.lo}..{f.hi}"
    return None


def validate(ins: Instruction) -> OpSpec:
    """The instruction's spec, after checking mnemonic, operand names and every value."""
    spec = BY_MNEMONIC.get(ins.op)
    if spec is None:
        raise EncodeError(f"unknown mnemonic {ins.op!r}")
    names = [f.name for f in spec.fields]
    missing = [n for n in names if n not in ins.args]
    extra = [n for n in ins.args if n not in names]
    if missing or extra:
        raise EncodeError(
            f"{ins.op}: operands {names}; missing {missing or 'none'}, unknown {extra or 'none'}"
        )
    for tok_name, tok in (("wt", ins.wt), ("sg", ins.sg)):
        if not isinstance(tok, int) or not 0 <= tok < (1 << TOKEN_BITS):
            raise EncodeError(f"{ins.op}: {tok_name}={tok!r} is out of range 0..15")
    for f in spec.fields:
        why = check_value(f, ins.args[f.name])
        if why:
            raise EncodeError(f"{ins.op}: {why}")
    return spec


def encode_one(ins: Instruction) -> bytes:
    """The instruction's fixed-width little-endian encoding."""
    spec = validate(ins)
    word = spec.code | (ins.wt << OPCODE_BITS) | (ins.sg << (OPCODE_BITS + TOKEN_BITS))
    for f, pos in spec.offsets():
        word |= (ins.args[f.name] & ((1 << f.bits) - 1)) << pos
    return word.to_bytes(INSTRUCTION_BYTES, "little")


def encode(program: list[Instruction]) -> bytes:
    """A program's binary: the concatenated instruction encodings."""
    out = bytearray()
    for i, ins in enumerate(program):
        try:
            out += encode_one(ins)
        except EncodeError as err:
            raise EncodeError(f"instruction {i}: {err}") from None
    return bytes(out)


def decode_one(data: bytes, offset: int = 0) -> Instruction:
    """Decode the instruction at `offset` of `data`; DecodeError says where and why not."""
    chunk = data[offset : offset + INSTRUCTION_BYTES]
    where = f"byte offset {offset} (0x{offset:x})"
    if len(chunk) != INSTRUCTION_BYTES:
        raise DecodeError(
            f"{where}: truncated instruction ({len(chunk)} of {INSTRUCTION_BYTES} bytes)"
        )
    word = int.from_bytes(chunk, "little")
    code = word & ((1 << OPCODE_BITS) - 1)
    spec = BY_CODE.get(code)
    if spec is None:
        raise DecodeError(f"{where}: unknown opcode 0x{code:02x}")
    used = HEADER_BITS + spec.operand_bits
    if word >> used:
        raise DecodeError(
            f"{where}: {spec.mnemonic}: reserved bits {used}..{INSTRUCTION_BITS - 1} are not zero"
        )
    args: dict[str, int] = {}
    for f, pos in spec.offsets():
        raw = (word >> pos) & ((1 << f.bits) - 1)
        if f.kind is Kind.SINT and raw >> (f.bits - 1):
            raw -= 1 << f.bits
        why = check_value(f, raw)
        if why:
            raise DecodeError(f"{where}: {spec.mnemonic}: {why}")
        args[f.name] = raw
    wt = (word >> OPCODE_BITS) & ((1 << TOKEN_BITS) - 1)
    sg = (word >> (OPCODE_BITS + TOKEN_BITS)) & ((1 << TOKEN_BITS) - 1)
    return Instruction(spec.mnemonic, args, wt, sg)


def iter_decode(data: bytes) -> Iterator[tuple[int, Instruction]]:
    """(byte offset, instruction) for every instruction of a binary."""
    if len(data) % INSTRUCTION_BYTES:
        raise DecodeError(
            f"byte offset {len(data) - len(data) % INSTRUCTION_BYTES}: binary length {len(data)} "
            f"is not a multiple of the {INSTRUCTION_BYTES}-byte instruction width"
        )
    for offset in range(0, len(data), INSTRUCTION_BYTES):
        yield offset, decode_one(data, offset)


def decode(data: bytes) -> list[Instruction]:
    """Every instruction of a binary, or DecodeError at the first invalid one (including loop
    bodies that leave the program or cross an enclosing loop's end)."""
    from isa.program import structure_error  # program rules build on this module

    program = [ins for _, ins in iter_decode(data)]
    bad = structure_error(program)
    if bad is not None:
        index, why = bad
        offset = index * INSTRUCTION_BYTES
        raise DecodeError(f"byte offset {offset} (0x{offset:x}): {why}")
    return program
