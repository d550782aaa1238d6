"""The default traces that ship with the package, and (slow) the digits evidence."""

from __future__ import annotations

from pathlib import Path

import pytest

from workloads import models
from workloads.trace import load_trace, measured

TRACES = Path(models.__file__).parent.parent / "traces"


def _shipped() -> list[Path]:
    return sorted(TRACES.glob("*.npz"))


def test_one_default_trace_per_family_and_small():
    files = _shipped()
    families = {models.family(load_trace(p).graph.model_name) for p in files}
    assert families == {"vgg", "resnet", "mobilenet"}
    assert sum(p.stat().st_size for p in files) < 10 * 2**20


@pytest.mark.parametrize("path", _shipped(), ids=lambda p: p.name)
def test_shipped_trace_valid_with_provenance(path):
    t = load_trace(path)
    for key in ("kind", "command", "seed"):
        assert key in t.meta, key
    if t.meta["kind"] == "trained":
        assert 0.0 <= t.meta["accuracy"] <= 1.0 and t.meta["recipe"]["seed"] == t.meta["seed"]
    m = measured(t)
    assert m["flops_reduction"] >= 1.0
    assert t.graph.macs_fwd_per_image > 0


@pytest.mark.slow
def test_digits_sparse_fp8_within_two_points_of_dense(tmp_path):
    """The issue's acceptance check (minutes of CPU): same model, data, epochs and seed."""
    from workloads.evidence import run
    from workloads.recipes import recipe_path

    rep = run("vgg7", "digits", 20, 0, recipe_path("digits_sparse_fp8"), tmp_path, None, False)
    assert rep["accuracy_gap_points"] <= 2.0
    last = rep["last_epoch"]
    assert last["gate_density"] < 0.7 and last["grad_skip_fraction"] > 0.2
    assert 0.5 <= last["weight_group_density"] <= 0.8  # 20-50 % of the groups zero
    assert last["flops_reduction"] > 1.5
