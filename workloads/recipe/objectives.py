"""Losses (per image) and the gradient-skip decision."""

from __future__ import annotations

import torch
from torch.nn import functional


def per_image_loss(logits: torch.Tensor, labels: torch.Tensor, kind: str) -> torch.Tensor:
    """mse: 0.5 ||y - onehot||^2 (so the output error is y - t, the chip's); ce: cross-entropy."""
    if kind == "mse":
        onehot = functional.one_hot(labels, logits.shape[1]).to(logits.dtype)
        return 0.5 * ((logits - onehot) ** 2).sum(1)
    if kind == "ce":
        return functional.cross_entropy(logits, labels, reduction="none")
    raise ValueError(f"unknown loss {kind!r}; choose 'mse' or 'ce'")


@torch.no_grad()
def skip_decisions(
    logits: torch.Tensor, labels: torch.Tensor, criterion: str, threshold: float
) -> torch.Tensor:
    """True for images that skip BP and WU.

    confidence: the softmax probability of the right class exceeds `threshold` (so the
    prediction is right and confident); error: every |y - onehot| is below `threshold`.
    """
    if criterion == "confidence":
        p = torch.softmax(logits, 1).gather(1, labels[:, None])[:, 0]
        return p > threshold
    if criterion == "error":
        onehot = functional.one_hot(labels, logits.shape[1]).to(logits.dtype)
        return (logits - onehot).abs().amax(1) < threshold
    raise ValueError(f"unknown skip criterion {criterion!r}")
