"""Accuracy of one SRU point: train the sweep's model with the point's SRU on the weight and
momentum updates (workloads.recipe), over several seeds."""

from __future__ import annotations

import math
from typing import Any

from simulator.dse.config import SruPoint, TrainingBudget

# What the recipe can place an SRU on today: its update step. SR inside the forward/backward
# quantisers is not in the recipe yet; network bits come from the rounded tensor itself.
TRAINABLE_TARGETS = frozenset({"weights", "momentum"})
DEFAULT_UPDATE_FORMAT = "fp16_chip"


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


def recipe_overrides(point: SruPoint, budget: TrainingBudget, seed: int) -> dict[str, Any]:
    """Recipe settings for one training run of this point."""
    update: dict[str, Any] = {
        "weight_format": point.format if "weights" in point.apply_to else DEFAULT_UPDATE_FORMAT,
        "momentum_format": (
            point.format if "momentum" in point.apply_to else DEFAULT_UPDATE_FORMAT
        ),
        "rounding": point.rounding,
        "lr": budget.lr,
    }
    if point.r is not None and point.source is not None:
        src = point.source
        update["random_bits"] = point.r
        source: dict[str, Any] = {"kind": src.kind, "lanes": src.lanes}
        if src.kind == "lfsr":
            source |= {"width": src.width, "form": src.form, "combine": src.combine}
        if src.kind == "network":
            source = {"kind": "network", "offset": src.offset}
        update["source"] = source
    overrides: dict[str, Any] = {
        "seed": seed,
        "epochs": budget.epochs,
        "batch_size": budget.batch,
        "update": update,
    }
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
