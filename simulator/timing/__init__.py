"""Cycle-level timing of training-step programs on sparsity masks (see docs/simulator.md)."""

from simulator.timing.masks import SparsityMasks, masks_from_trace
from simulator.timing.model import (
    MODES,
    PreparedProgram,
    SimulationError,
    TimingResult,
    prepare,
    simulate,
)

__all__ = [
    "MODES",
    "PreparedProgram",
    "SimulationError",
    "SparsityMasks",
    "TimingResult",
    "masks_from_trace",
    "prepare",
    "simulate",
]
