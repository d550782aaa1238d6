"""FP8 rounding of tensors inside autograd, and the quantised conv/fc building blocks.

Forward operands (weights, activations) are rounded on the way in and pass gradients straight
through; errors are rounded on the way back (`round_error`), so backward matmuls see FP8
operands as the chip's tensor cores do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional

from simulator.numerics import STOCHASTIC, quantize
from simulator.numerics.random_sources import RandomSource, TensorBitsSource
from workloads.recipe.fp8_torch import quantize_torch


@dataclass(frozen=True)
class Rounder:
    """Rounding onto one format with one backend (numerics = numba, or torch).

    Stochastic modes (`sr`, `sr_half`, `sr_corrected`) need `r` and their random bits: drawn
    from `source` (one word per element, in the tensor's C order, the stream continuing from
    call to call), or, when `network_offset` is set instead, the low `r` bits of the float32
    element `network_offset` lanes further on in the same tensor (cyclically).
    """

    fmt: str
    rounding: str = "rne"
    backend: str = "numerics"
    r: int | None = None
    source: RandomSource | None = field(default=None, compare=False, repr=False)
    network_offset: int | None = None

    def __post_init__(self) -> None:
        if self.rounding in STOCHASTIC:
            if self.r is None or not 1 <= self.r <= 32:
                raise ValueError(f"rounding {self.rounding!r} needs r in 1..32 (got {self.r})")
            if (self.source is None) == (self.network_offset is None):
                raise ValueError(
                    f"rounding {self.rounding!r} needs exactly one of a source or a network offset"
                )
        elif self.source is not None or self.network_offset is not None:
            raise ValueError(f"rounding {self.rounding!r} is deterministic; it takes no source")

    @property
    def stochastic(self) -> bool:
        return self.rounding in STOCHASTIC

    def draw_bits(self, arr: np.ndarray) -> np.ndarray:
        """The random words for rounding `arr` (advances `source`)."""
        assert self.r is not None
        if self.source is not None:
            src: RandomSource = self.source
        else:
            src = TensorBitsSource.neighbour_lanes(arr, int(self.network_offset or 1))
        return src.draw(arr.size, self.r).reshape(arr.shape)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.fmt == "fp32":
            return x
        xc = x.detach().contiguous()
        cpu_numerics = self.backend == "numerics" and x.device.type == "cpu"
        if not self.stochastic:
            if cpu_numerics:
                # Zero-copy view of the tensor's memory; the result wraps a new numpy array.
                return torch.from_numpy(quantize(xc.numpy(), self.fmt, self.rounding))
            return quantize_torch(xc, self.fmt, self.rounding)
        arr = xc.cpu().numpy()
        bits = self.draw_bits(arr)
        if cpu_numerics:
            q = quantize(arr, self.fmt, self.rounding, r=self.r, random_bits=bits)
            return torch.from_numpy(q)
        tb = torch.from_numpy(bits.astype(np.int64)).to(x.device)
        return quantize_torch(xc, self.fmt, self.rounding, r=self.r, random_bits=tb)


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
    def from_config(cfg, seed: int = 0) -> LayerNumerics:
        """From a `QuantConfig`; disabled quantisation gives all-None (float32). Stochastic
        paths get their own random source (seeded from `seed` and the path's name); one
        rounder, hence one stream, serves that path in every layer, in execution order."""
        from workloads.recipe.sources import make_stream_source

        if not cfg.enabled:
            return LayerNumerics()

        def mk(fmt: str | None, path: str | None = None) -> Rounder | None:
            if fmt is None:
                return None
            mode = cfg.rounding if path is None else cfg.path_rounding(path)
            if fmt == "fp32":  # no rounding at all
                return Rounder(fmt, "rne", cfg.backend)
            if mode not in STOCHASTIC:
                return Rounder(fmt, mode, cfg.backend)
            src = make_stream_source(cfg.source, seed, path)
            offset = cfg.source.offset if src is None else None
            return Rounder(fmt, mode, cfg.backend, cfg.random_bits, src, offset)

        return LayerNumerics(
            mk(cfg.weight_format, "weight"),
            mk(cfg.activation_format, "activation"),
            mk(cfg.error_format, "error"),
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
