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
    logits: torch.Tensor, labels: torch.Tensor, criterion: str, threshold: float, loss: str
) -> torch.Tensor:
    """True for images that skip BP and WU.

    confidence: the confidence in the right class exceeds `threshold`: its softmax probability
    for cross-entropy, its output itself for MSE (the network regresses the one-hot vector, so
    the output is the confidence; a softmax of outputs in [0, 1] never reaches 0.9), and for
    MSE also the largest output (right and confident); error: every |y - onehot| is below
    `threshold`.
    """
    if criterion == "confidence":
        if loss == "ce":
            p = torch.softmax(logits, 1).gather(1, labels[:, None])[:, 0]
            return p > threshold
        right = logits.gather(1, labels[:, None])[:, 0]
        return (right > threshold) & (logits.argmax(1) == labels)
    if criterion == "error":
        onehot = functional.one_hot(labels, logits.shape[1]).to(logits.dtype)
        return (logits - onehot).abs().amax(1) < threshold
    raise ValueError(f"unknown skip criterion {criterion!r}")
