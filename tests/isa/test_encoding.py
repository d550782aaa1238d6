"""Encoder/decoder and assembler/disassembler round trips, and invalid input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from isa.asm import AsmError, assemble, assemble_program
from isa.disasm import disassemble, disassemble_program, format_instruction
from isa.encoding import (
    DecodeError,
    EncodeError,
    Instruction,
    decode,
    decode_one,
    encode,
    encode_one,
)
from isa.program import structure_error
from isa.spec import BY_MNEMONIC, INSTRUCTION_BYTES, OPCODES, Kind
from tests.isa.strategies import instructions

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_every_opcode_fits_and_is_unique():
    assert len({op.code for op in OPCODES}) == len(OPCODES)
    for op in OPCODES:
        assert 16 + op.operand_bits <= INSTRUCTION_BYTES * 8


@SETTINGS
@given(instructions)
def test_encode_decode_round_trip(ins: Instruction):
    data = encode_one(ins)
    assert len(data) == INSTRUCTION_BYTES
    assert decode_one(data) == ins


@SETTINGS
@given(st.lists(instructions, min_size=1, max_size=12))
def test_asm_disasm_round_trip(program: list[Instruction]):
    # loops drawn at random may reach past the end: pad with nops so every body fits
    program = program + [Instruction("nop")] * 4
    if structure_error(program) is not None:
        return  # crossing loop bodies are invalid programs; the decoder test covers them
    data = encode(program)
    text = disassemble(data)
    assert assemble(text) == data
    assert assemble_program(text) == program


@settings(max_examples=2000, deadline=None)
@given(st.binary(min_size=0, max_size=3 * INSTRUCTION_BYTES))
def test_random_bytes_decode_or_fail_clearly(data: bytes):
    try:
        program = decode(data)
    except DecodeError as err:
        assert str(err).startswith("byte offset ")
        return
    assert encode(program) == data


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(OPCODES), st.binary(min_size=15, max_size=15))
def test_random_operand_bits_decode_or_fail_clearly(op, tail: bytes):
    # random bytes rarely hit a valid opcode; here every draw has one
    data = bytes([op.code]) + tail
    try:
        ins = decode_one(data)
    except DecodeError as err:
        msg = str(err)
        assert msg.startswith("byte offset 0 (0x0): ") and op.mnemonic in msg
        return
    assert encode_one(ins) == data


def test_decode_errors_name_offset_and_reason():
    good = encode_one(Instruction("halt"))
    with pytest.raises(DecodeError, match=r"byte offset 16 \(0x10\): unknown opcode 0xff"):
        decode(good + b"\xff" + bytes(15))
    with pytest.raises(DecodeError, match="byte offset 16: binary length 20 is not a multiple"):
        decode(good + bytes(4))
    with pytest.raises(DecodeError, match=r"halt: reserved bits 16\.\.127 are not zero"):
        decode(b"\x01" + bytes(14) + b"\x80")
    loop = encode_one(Instruction("loop", {"count": 2, "end": 3}))
    with pytest.raises(DecodeError, match=r"byte offset 0 .*past the program"):
        decode(loop + good)
    bad_enum = bytearray(encode_one(Instruction("sgdcfg", {"lr": 0, "momentum": 0, "wd": 0})))
    bad_enum[0] = BY_MNEMONIC["sfu"].code
    bad_enum[2] = 0xFF  # sfu op index 15 does not exist
    with pytest.raises(DecodeError, match="op=15 is not a valid sfu_op"):
        decode_one(bytes(bad_enum))


def test_encode_rejects_bad_operands():
    with pytest.raises(EncodeError, match="unknown mnemonic"):
        encode_one(Instruction("jump"))
    with pytest.raises(EncodeError, match="missing"):
        encode_one(Instruction("setr", {"rd": 1}))
    with pytest.raises(EncodeError, match=r"imm=-1 is out of range 0\.\.4294967295"):
        encode_one(Instruction("setr", {"rd": 1, "imm": -1}))
    with pytest.raises(EncodeError, match="wt=16"):
        encode_one(Instruction("nop", wt=16))


def test_field_packing_is_the_documented_layout():
    ins = Instruction("setr", {"rd": 5, "imm": 0xDEADBEEF}, wt=3, sg=9)
    word = int.from_bytes(encode_one(ins), "little")
    assert word & 0xFF == BY_MNEMONIC["setr"].code
    assert (word >> 8) & 0xF == 3 and (word >> 12) & 0xF == 9
    assert (word >> 16) & 0xF == 5 and (word >> 20) & 0xFFFFFFFF == 0xDEADBEEF
    neg = Instruction("addr", {"rd": 1, "rs": 1, "imm": -2})
    assert (int.from_bytes(encode_one(neg), "little") >> 24) & 0xFFFFFFFF == 0xFFFFFFFE


SAMPLE = """\
; a small program with every syntax feature
.equ WEIGHTS, 0x4000
.equ W2, WEIGHTS
start:  setr r1, WEIGHTS        ; DRAM address of the weights
        loop 3, done
        dma.ld wgt, r0, 0, r1, 2, 32, 64, 32, 0, r0 sg=1
        addr r1, r1, -32
done:   sgdcfg 0.05, 0.9, 0
        sfu relu_fwd, 2, act, r1, act, r0, act, r2, r3, 64, act, r0, 0, 0, 0 wt=1
        halt
"""


def test_sample_program_assembles_with_symbols_and_labels():
    program = assemble_program(SAMPLE)
    assert [i.op for i in program] == ["setr", "loop", "dma.ld", "addr", "sgdcfg", "sfu", "halt"]
    assert program[0]["imm"] == 0x4000
    assert program[1]["end"] == 3  # loop at 1, `done` at 4
    assert program[2].sg == 1 and program[5].wt == 1
    assert program[3]["imm"] == -32
    lr = struct.unpack("<f", struct.pack("<I", program[4]["lr"]))[0]
    assert lr == pytest.approx(0.05)
    text = disassemble_program(program)
    assert "L4:" in text and "loop 3, L4" in text
    assert assemble(text) == encode(program)


@pytest.mark.parametrize(
    ("src", "where", "what"),
    [
        ("nop\n  jump r1\n", "2:3", "unknown mnemonic 'jump'"),
        ("setr r1,  r2\n", "1:11", "expected an integer or .equ constant"),
        ("setr r17, 1\n", "1:6", "expected a register r0..r15"),
        (
            "dma.ld buff, r0, 0, r1, 1, 1, 0, 0, 0, r0\n",
            "1:8",
            "expected one of act, wgt, err, msk",
        ),
        ("loop 2, nowhere\n", "1:9", "undefined label 'nowhere'"),
        ("a: nop\na: nop\n", "2:1", "'a' is defined twice"),
        ("halt 1\n", "1:6", "too many operands"),
        ("setr imm=1, r1\n", "1:6", "positional operands must come before"),
        ("setr r1, 1 foo=2\n", "1:12", "unknown operand name 'foo'"),
        ("loop 0, x\nx: halt\n", "1:6", "count=0 is out of range"),
        ("sgdcfg inf, 0, 0\n", "1:8", "write non-finite values as 0x raw bits"),
        (".org 5\n", "1:1", "unknown directive"),
        ("loop 2, e\n loop 2, f\ne: nop\nf: nop\n", "2:2", "overlaps the end of the enclosing"),
        ("setr r1\n", "1:1", "missing operands ['imm']"),
    ],
)
def test_asm_errors_name_line_and_column(src, where, what):
    with pytest.raises(AsmError) as err:
        assemble(src, "prog.s")
    msg = str(err.value)
    assert msg.startswith(f"prog.s:{where}: "), msg
    assert what in msg


def test_f32_non_finite_round_trips_as_raw_bits():
    nan = Instruction("gscfg", {"criterion": 0, "threshold": 0x7FC00001})
    text = format_instruction(nan)
    assert "0x7fc00001" in text
    assert assemble(text) == encode_one(nan)


def test_every_field_kind_is_exercised_by_the_definition():
    kinds = {f.kind for op in OPCODES for f in op.fields}
    assert kinds == set(Kind)
