"""The sparse FP8 training recipe in PyTorch: FP8 rounding (bit-identical to
simulator.numerics), channel gating, group-Lasso, gradient skipping and rounded SGD."""

from workloads.recipe.config import RecipeConfig, RecipeConfigError, load_config
from workloads.recipe.fp8_torch import quantize_torch

__all__ = ["RecipeConfig", "RecipeConfigError", "load_config", "quantize_torch"]
