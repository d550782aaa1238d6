"""The accelerator's custom instruction set: one definition, assembler, disassembler, compiler.

- `isa.spec`: the single definition (opcodes, fields, widths, enumerations, 128-bit layout).
- `isa.encoding`: `Instruction`, `encode`/`decode` (DecodeError names the byte offset).
- `isa.asm` / `isa.disasm`: assembly text (AsmError names line and column).
- `isa.docgen`: writes `docs/isa.md` from the definition.
- `isa.analysis`: walks a program's control flow and counts its tensor-core work by phase.
- `isa.compiler`: a layer graph + hardware configuration -> a training-step program.
"""
