"""Structured channel gating (after Hua et al., "Channel Gating Neural Networks", NeurIPS 2019,
in the structured form the chip's group used).

A gated conv splits its input channels: the *base path* reads the first C_in/G of them, the
*conditional path* the rest. The base partial sum p_b is normalised per output channel (batch
statistics in training, running ones in eval); for every pixel and every group of
`channel_group` output channels, the mean normalised base sum is compared with that group's
learned threshold. Normalisation `batchnorm` subtracts the channel mean (right when a batch norm
follows the conv: the ReLU then cuts at the channel mean); `rms` keeps the sign of the estimated
pre-activation G * p_b + bias and only scales it (right when the ReLU follows the conv directly
and cuts at 0, so a threshold near 0 gates outputs predicted to be negative). Where the
statistic is above the threshold, the conditional path is computed (gate = 1); where below, it
is skipped and the output is the base sum alone. Gated outputs then also carry no
conditional-path error in BP or WU.

The decision is hard in forward; its gradient (for the thresholds) is the sigmoid's
(straight-through). The density is steered by a proportional controller on the thresholds
(workloads.recipe.train) and/or the regulariser `relu(soft density - target)` per layer, where
the soft density is the mean of sigmoid((s - threshold) / temperature).
"""

from __future__ import annotations

import torch
from torch import nn

from workloads.recipe.quant import LayerNumerics, Recorder, finish_output, qconv


class _HardGate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, temperature):
        ctx.save_for_backward(z)
        ctx.temperature = temperature
        return (z > 0).to(z.dtype)

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        s = torch.sigmoid(z / ctx.temperature)
        return g * s * (1 - s) / ctx.temperature, None


def gateable(conv: nn.Conv2d, groups: int, min_in_channels: int) -> bool:
    """Dense convs with enough input channels split evenly into G parts are gated."""
    c_in = conv.in_channels
    return conv.groups == 1 and c_in >= min_in_channels and c_in % groups == 0


class GatedConv2d(nn.Conv2d):
    """nn.Conv2d + channel gating, sharing the original conv's parameters."""

    numerics: LayerNumerics

    @classmethod
    def from_conv(
        cls,
        conv: nn.Conv2d,
        num: LayerNumerics,
        groups: int,
        channel_group: int,
        threshold_init: float,
        temperature: float,
        normalize: str = "auto",
        gated_output: str = "base",
    ) -> GatedConv2d:
        g = cls.__new__(cls)
        g.__dict__.update(conv.__dict__)
        g.numerics = num
        g.recorder = Recorder()
        g.base_channels = conv.in_channels // groups
        g.channel_group = channel_group
        g.n_gate_groups = -(-conv.out_channels // channel_group)
        g.temperature = temperature
        g.threshold = nn.Parameter(torch.full((g.n_gate_groups,), float(threshold_init)))
        if normalize == "auto":  # a conv with a bias feeds its ReLU directly (no batch norm)
            normalize = "rms" if conv.bias is not None else "batchnorm"
        g.normalize = normalize
        g.gated_output = gated_output
        g.groups_G = groups
        g.norm = nn.BatchNorm2d(conv.out_channels, affine=False)
        g.register_buffer("running_ms", torch.ones(conv.out_channels))
        g.last_gate: torch.Tensor | None = None
        g.last_soft_density: torch.Tensor | None = None
        return g

    def _group_mean(self, s: torch.Tensor) -> torch.Tensor:
        """(N, C_out, H, W) -> (N, n_gate_groups, H, W): mean over each channel group."""
        n, c, h, w = s.shape
        pad = self.n_gate_groups * self.channel_group - c
        if pad:  # a last, partial group averages its real channels only
            s = torch.cat([s, s.new_zeros(n, pad, h, w)], 1)
            counts = torch.full((self.n_gate_groups,), float(self.channel_group))
            counts[-1] -= pad
            summed = s.view(n, self.n_gate_groups, self.channel_group, h, w).sum(2)
            return summed / counts.view(1, -1, 1, 1)
        return s.view(n, self.n_gate_groups, self.channel_group, h, w).mean(2)

    def _normalise(self, base: torch.Tensor) -> torch.Tensor:
        if self.normalize == "batchnorm":
            return self.norm(base)
        est = self.groups_G * base  # the base path sees 1/G of the inputs
        if self.bias is not None:
            est = est + self.bias.detach().view(1, -1, 1, 1)
        if self.training:
            ms = est.pow(2).mean((0, 2, 3))
            self.running_ms.mul_(0.9).add_(0.1 * ms)
        else:
            ms = self.running_ms
        return est / torch.sqrt(ms + 1e-5).view(1, -1, 1, 1)

    def forward(self, x):
        cb = self.base_channels
        w = self.weight
        base, xq_b, wq_b = qconv(x[:, :cb], w[:, :cb], self, self.numerics)
        cond, xq_c, wq_c = qconv(x[:, cb:], w[:, cb:], self, self.numerics)
        if self.recorder.on:
            self.recorder.operands(torch.cat([xq_b, xq_c], 1), torch.cat([wq_b, wq_c], 1))
        # The decision is taken on the detached base sum: it steers computation, it is not a
        # path for the weights' gradients (those flow through base and cond).
        z = self._group_mean(self._normalise(base.detach())) - self.threshold.view(1, -1, 1, 1)
        gate = _HardGate.apply(z, self.temperature)
        self.last_gate = gate.detach() > 0
        self.last_soft_density = torch.sigmoid(z / self.temperature).mean()
        gate_c = gate.repeat_interleave(self.channel_group, 1)[:, : self.out_channels]
        if self.gated_output == "scaled_base":
            # Gated outputs take G x the base sum, the estimate of the full sum, instead of the
            # base sum alone: the output keeps its scale wherever the gate falls (an exponent
            # add of log2 G in hardware).
            y = base * (gate_c + (1 - gate_c) * self.groups_G) + gate_c * cond
        else:
            y = base + gate_c * cond
        return finish_output(y, self.bias, self.numerics, self.recorder)


def gating_penalty(model: nn.Module, target_density: float) -> torch.Tensor:
    """Sum over gated layers of relu(soft density - target), from the last forward pass."""
    total = torch.zeros(())
    for m in model.modules():
        if isinstance(m, GatedConv2d) and m.last_soft_density is not None:
            total = total + torch.relu(m.last_soft_density - target_density)
    return total
