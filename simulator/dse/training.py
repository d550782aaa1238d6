"""Accuracy of one SRU point: train the sweep's model with the point's SRU where the sweep
applies it (weight and momentum updates, activations, errors; workloads.recipe), over several
seeds."""

from __future__ import annotations

import math
from typing import Any

from simulator.dse.config import SruPoint, TrainingBudget

# Where the recipe can place an SRU: its update step (weights, momentum) and its forward /
# backward quantisers (activations into the tensor cores, errors on their way back). Network
# bits come from the rounded tensor itself (a neighbouring lane).
TRAINABLE_TARGETS = frozenset({"weights", "momentum", "activations", "errors"})
DEFAULT_UPDATE_FORMAT = "fp16_chip"
# apply_to target -> the recipe's QuantConfig fields it sets (format, rounding)
QUANT_PATHS = {
    "activations": ("activation_format", "activation_rounding"),
    "errors": ("error_format", "error_rounding"),
}


def unsupported_reason(point: SruPoint) -> str | None:
    extra = sorted(set(point.apply_to) - TRAINABLE_TARGETS)
    if extra:
        return f"the recipe cannot apply an SRU to {', '.join(extra)} yet"
    if (
        point.source is not None
        and point.source.kind == "network"
        and point.source.tensor != "self"
    ):
        return (
            "the recipe takes network bits only from the rounded tensor itself, "
            f"not from {point.source.tensor}"
        )
    return None


def _source(point: SruPoint) -> dict[str, Any]:
    src = point.source
    assert src is not None
    if src.kind == "network":
        return {"kind": "network", "offset": src.offset}
    source: dict[str, Any] = {"kind": src.kind, "lanes": src.lanes}
    if src.kind == "lfsr":
        source |= {"width": src.width, "form": src.form, "combine": src.combine}
    return source


def recipe_overrides(point: SruPoint, budget: TrainingBudget, seed: int) -> dict[str, Any]:
    """Recipe settings for one training run of this point: the point's SRU on the paths it is
    applied to; every other path keeps the recipe's defaults."""
    stochastic = point.r is not None and point.source is not None
    update: dict[str, Any] = {"lr": budget.lr}
    if {"weights", "momentum"} & set(point.apply_to):
        update |= {
            "weight_format": (
                point.format if "weights" in point.apply_to else DEFAULT_UPDATE_FORMAT
            ),
            "momentum_format": (
                point.format if "momentum" in point.apply_to else DEFAULT_UPDATE_FORMAT
            ),
            "rounding": point.rounding,
        }
        if stochastic:
            update |= {"random_bits": point.r, "source": _source(point)}
    quant: dict[str, Any] = {}
    for target, (fmt_field, rounding_field) in QUANT_PATHS.items():
        if target in point.apply_to:
            quant |= {fmt_field: point.format, rounding_field: point.rounding}
    if quant and stochastic:
        quant |= {"random_bits": point.r, "source": _source(point)}
    overrides: dict[str, Any] = {
        "seed": seed,
        "epochs": budget.epochs,
        "batch_size": budget.batch,
        "update": update,
    }
    if quant:
        overrides["quant"] = quant
    if not budget.sparsity:  # isolate the SRU's effect: dense FP8 training
        overrides |= {
            "gating": {"enabled": False},
            "lasso": {"enabled": False},
            "skip": {"enabled": False},
        }
    if budget.max_steps_per_epoch is not None:
        overrides["steps"] = budget.max_steps_per_epoch * budget.epochs
    return overrides


def evaluate_training(point: SruPoint, budget: TrainingBudget) -> dict[str, Any]:
    """Final test accuracy per seed, its mean and spread, and the accuracy curve per seed."""
    reason = unsupported_reason(point)
    if reason is not None:
        return {"accuracy_mean": None, "note": reason}
    from workloads.recipe.config import load_config
    from workloads.recipe.train import train

    finals, curves = [], []
    for seed in budget.seeds:
        cfg = load_config(recipe_overrides(point, budget, seed))
        result = train(budget.model, budget.data, cfg, progress=False, log=lambda _msg: None)
        curves.append([h.test_accuracy for h in result.history])
        finals.append(result.test_accuracy)
    mean = sum(finals) / len(finals)
    std = math.sqrt(sum((a - mean) ** 2 for a in finals) / max(len(finals) - 1, 1))
    return {
        "accuracy_mean": mean,
        "accuracy_std": std,
        "accuracy_min": min(finals),
        "accuracy_max": max(finals),
        "accuracy_per_seed": finals,
        "accuracy_curves": curves,
        "model": budget.model,
        "data": budget.data,
        "epochs": budget.epochs,
    }
