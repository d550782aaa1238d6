"""FP8 rounding of tensors inside autograd, and the quantised conv/fc building blocks.

Forward operands (weights, activations) are rounded on the way in and pass gradients straight
through; errors are rounded on the way back (`round_error`), so backward matmuls see FP8
operands as the chip's tensor cores do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional

from simulator.numerics import quantize
from workloads.recipe.fp8_torch import quantize_torch


@dataclass(frozen=True)
class Rounder:
    """Deterministic rounding onto one format with one backend (numerics = numba, or torch)."""

    fmt: str
    rounding: str = "rne"
    backend: str = "numerics"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.fmt == "fp32":
            return x
        if self.backend == "numerics" and x.device.type == "cpu":
            # Zero-copy view of the tensor's memory; the result wraps a new numpy array.
            arr = x.detach().contiguous().numpy()
            return torch.from_numpy(quantize(arr, self.fmt, self.rounding))
        return quantize_torch(x.detach().contiguous(), self.fmt, self.rounding)


class _RoundForward(torch.autograd.Function):
    """y = round(x); dy/dx = 1 (straight-through)."""

    @staticmethod
    def forward(ctx, x, rounder):
        return rounder(x)

    @staticmethod
    def backward(ctx, g):
        return g, None


class _RoundBackward(torch.autograd.Function):
    """y = x; the incoming gradient is rounded."""

    @staticmethod
    def forward(ctx, x, rounder):
        ctx.rounder = rounder
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return ctx.rounder(g), None


def round_forward(x: torch.Tensor, rounder: Rounder | None) -> torch.Tensor:
    return x if rounder is None else _RoundForward.apply(x, rounder)


def round_error(x: torch.Tensor, rounder: Rounder | None) -> torch.Tensor:
    return x if rounder is None else _RoundBackward.apply(x, rounder)


@dataclass(frozen=True)
class LayerNumerics:
    """The rounders of one conv/fc layer; None means float32 (no rounding)."""

    weight: Rounder | None = None
    activation: Rounder | None = None
    error: Rounder | None = None
    accumulate: Rounder | None = None

    @staticmethod
    def from_config(cfg) -> LayerNumerics:
        """From a `QuantConfig`; disabled quantisation gives all-None (float32)."""
        if not cfg.enabled:
            return LayerNumerics()

        def mk(fmt: str | None) -> Rounder | None:
            return None if fmt is None else Rounder(fmt, cfg.rounding, cfg.backend)

        return LayerNumerics(
            mk(cfg.weight_format),
            mk(cfg.activation_format),
            mk(cfg.error_format),
            mk(cfg.accumulate_format),
        )


def qconv(x, weight, conv: torch.nn.Conv2d, num: LayerNumerics):
    """A conv of `conv`'s geometry with rounded operands; returns (y, rounded x, rounded w)."""
    xq = round_forward(x, num.activation)
    wq = round_forward(weight, num.weight)
    y = functional.conv2d(xq, wq, None, conv.stride, conv.padding, conv.dilation, conv.groups)
    return y, xq, wq


class Recorder:
    """Keeps the rounded operands of the last forward and the rounded output error of the last
    backward of one layer, while `on` (for the FP8 codes in a trace)."""

    def __init__(self) -> None:
        self.on = False
        self.x: torch.Tensor | None = None
        self.w: torch.Tensor | None = None
        self.error: torch.Tensor | None = None

    def operands(self, x: torch.Tensor, w: torch.Tensor) -> None:
        if self.on:
            self.x, self.w = x.detach(), w.detach()

    def _keep_error(self, g: torch.Tensor) -> None:
        self.error = g.detach()

    def watch_error(self, y: torch.Tensor) -> None:
        if self.on and y.requires_grad:
            y.register_hook(self._keep_error)


def finish_output(
    y: torch.Tensor, bias, num: LayerNumerics, recorder: Recorder | None = None
) -> torch.Tensor:
    """Add the bias, round to the accumulator's format, and round the error coming back."""
    if bias is not None:
        y = y + (bias.view(1, -1, 1, 1) if y.dim() == 4 else bias)
    y = round_forward(y, num.accumulate)
    if recorder is not None:
        recorder.watch_error(y)  # sees the gradient after round_error has rounded it
    return round_error(y, num.error)


class QuantConv2d(torch.nn.Conv2d):
    """nn.Conv2d with FP8 operands (same parameters; built by `from_conv`)."""

    numerics: LayerNumerics

    @classmethod
    def from_conv(cls, conv: torch.nn.Conv2d, num: LayerNumerics) -> QuantConv2d:
        q = cls.__new__(cls)
        q.__dict__.update(conv.__dict__)  # shares the Parameter objects
        q.numerics = num
        q.recorder = Recorder()
        return q

    def forward(self, x):
        y, xq, wq = qconv(x, self.weight, self, self.numerics)
        self.recorder.operands(xq, wq)
        return finish_output(y, self.bias, self.numerics, self.recorder)


class QuantLinear(torch.nn.Linear):
    numerics: LayerNumerics

    @classmethod
    def from_linear(cls, fc: torch.nn.Linear, num: LayerNumerics) -> QuantLinear:
        q = cls.__new__(cls)
        q.__dict__.update(fc.__dict__)
        q.numerics = num
        q.recorder = Recorder()
        return q

    def forward(self, x):
        xq = round_forward(x, self.numerics.activation)
        wq = round_forward(self.weight, self.numerics.weight)
        self.recorder.operands(xq, wq)
        return finish_output(functional.linear(xq, wq), self.bias, self.numerics, self.recorder)


def sr_round_(t: torch.Tensor, fmt: str, rounding: str, r: int, bits: np.ndarray) -> None:
    """Round a parameter/buffer in place with explicit random bits (CPU tensors)."""
    if fmt == "fp32":
        return
    arr = t.detach().cpu().contiguous().numpy()
    stochastic = rounding.startswith("sr")
    kw = {"r": r, "random_bits": bits.reshape(arr.shape)} if stochastic else {}
    t.copy_(torch.from_numpy(quantize(arr, fmt, rounding, **kw)))
