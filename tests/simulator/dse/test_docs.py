"""docs/dse.md documents every field of the sweep configuration (a guard against drift)."""

from pathlib import Path

import pytest

from simulator.dse.config import GridBlock, SourceChoice, SweepConfig, TrainingBudget

DOC = Path(__file__).resolve().parents[3] / "docs" / "dse.md"


@pytest.mark.parametrize("model", [SweepConfig, GridBlock, SourceChoice, TrainingBudget])
def test_every_config_field_is_documented(model):
    text = DOC.read_text()
    missing = [name for name in model.model_fields if f"`{name}`" not in text]
    assert not missing, f"docs/dse.md does not document {model.__name__} fields {missing}"
