"""Functional (bit-exact) execution of compiled training-step programs (docs/functional.md).

step = prepare("vgg7", 2, config_for("rne"))
execute(step)                      # the program on real data; step.machine holds DRAM
verify("vgg7", 2)                  # against the PyTorch reference and float32 autograd
"""

from simulator.functional.compare import (
    VerifyError,
    config_for,
    execute,
    prepare,
    prepare_model,
    verify,
    verify_step,
)
from simulator.functional.executor import Executor
from simulator.functional.state import FunctionalError, Machine, Modes

__all__ = [
    "Executor",
    "FunctionalError",
    "Machine",
    "Modes",
    "VerifyError",
    "config_for",
    "execute",
    "prepare",
    "prepare_model",
    "verify",
    "verify_step",
]
