"""docs/isa.md is generated from the definition and must be current."""

from isa import docgen
from isa.spec import OPCODES


def test_checked_in_doc_is_current():
    assert docgen.DOC_PATH.read_text() == docgen.render(), "run `python -m isa.docgen`"


def test_doc_lists_every_opcode_and_field():
    text = docgen.render()
    for op in OPCODES:
        assert f"### `{op.mnemonic}` (0x{op.code:02x}" in text
        for f in op.fields:
            assert f"| `{f.name}` |" in text
