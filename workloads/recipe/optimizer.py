"""SGD with momentum whose momentum and weights are stored in low-precision formats, rounded
stochastically with bits from a chosen random source (the chip's SRUs)."""

from __future__ import annotations

import math

import numpy as np
import torch

from simulator.numerics.random_sources import TensorBitsSource
from workloads.recipe.config import UpdateConfig
from workloads.recipe.quant import sr_round_
from workloads.recipe.sources import make_source

__all__ = ["RoundedSGD", "make_source"]


class RoundedSGD:
    """v <- round_m(mu v + g + wd w); w <- round_w(w - lr v)."""

    def __init__(self, params, cfg: UpdateConfig, run_seed: int):
        self.params = [p for p in params if p.requires_grad]
        self.cfg = cfg
        self.momentum: dict[int, torch.Tensor] = {id(p): torch.zeros_like(p) for p in self.params}
        self.source = make_source(cfg.source, run_seed)

    def _round(self, t: torch.Tensor, fmt: str) -> None:
        c = self.cfg
        bits = None
        if c.rounding.startswith("sr") and fmt != "fp32":
            source = self.source
            if source is None:  # randomness from the network: a neighbouring lane's low bits
                source = TensorBitsSource.neighbour_lanes(t.detach().cpu().numpy(), c.source.offset)
            bits = source.draw(t.numel(), c.random_bits).astype(np.int64)
        sr_round_(t, fmt, c.rounding, c.random_bits, bits if bits is not None else np.empty(0))

    def lr_at(self, step: int, total_steps: int) -> float:
        if self.cfg.schedule == "constant" or total_steps <= 1:
            return self.cfg.lr
        return 0.5 * self.cfg.lr * (1 + math.cos(math.pi * step / total_steps))

    @torch.no_grad()
    def step(self, lr: float, grad_scale: float = 1.0) -> None:
        c = self.cfg
        for p in self.params:
            if p.grad is None:
                continue
            g = p.grad * grad_scale
            if c.weight_decay:
                g = g + c.weight_decay * p
            v = self.momentum[id(p)]
            v.mul_(c.momentum).add_(g)
            self._round(v, c.momentum_format)
            p.sub_(lr * v)
            self._round(p, c.weight_format)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None
