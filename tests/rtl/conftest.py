"""Shared set-up of the RTL tests: the HDL simulators must be on PATH."""

from __future__ import annotations

import shutil

import pytest


def require(sim: str) -> None:
    """Skip visibly (not silently pass) when a simulator is missing from this machine."""
    tool = {"icarus": "iverilog", "verilator": "verilator"}[sim]
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not on PATH (run `make setup`)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The long mode is opt-in: without `-m slow` its tests are skipped, visibly."""
    if "slow" in (config.getoption("-m") or "") and "not slow" not in config.getoption("-m"):
        return
    skip = pytest.mark.skip(reason="long mode: run with `pytest -m slow` (make test-slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
