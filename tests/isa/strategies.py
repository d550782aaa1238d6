"""Hypothesis strategies derived from the ISA definition (no field is listed by hand)."""

from __future__ import annotations

from hypothesis import strategies as st

from isa.encoding import Instruction
from isa.spec import OPCODES, FieldSpec, Kind, OpSpec


def field_values(f: FieldSpec) -> st.SearchStrategy[int]:
    if f.kind is Kind.LABEL:
        return st.integers(1, 4)  # kept small so loop bodies fit inside the drawn programs
    return st.integers(f.lo, f.hi)


def instruction_of(spec: OpSpec) -> st.SearchStrategy[Instruction]:
    return st.builds(
        lambda args, wt, sg: Instruction(spec.mnemonic, args, wt, sg),
        st.fixed_dictionaries({f.name: field_values(f) for f in spec.fields}),
        st.integers(0, 15),
        st.integers(0, 15),
    )


instructions = st.one_of([instruction_of(op) for op in OPCODES])
