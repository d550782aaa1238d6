"""The accelerator's custom instruction set: one definition, with assembler, disassembler and compiler.

Not written yet (issue "The custom ISA and the compiler"); nothing here is usable today.
"""
