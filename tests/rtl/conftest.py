"""Shared set-up of the RTL tests: the HDL simulators must be on PATH."""

from __future__ import annotations

import shutil

import pytest


def require(sim: str) -> None:
    """Skip visibly (not silently pass) when a simulator is missing from this machine."""
    tool = {"icarus": "iverilog", "verilator": "verilator"}[sim]
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not on PATH (run `make setup`)")
