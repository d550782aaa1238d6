"""Synthetic traces: the trace format with masks drawn at requested densities.

`uniform` skew draws every bit independently at the requested density. `realistic` skew
varies the density across layers (log-normal factors, renormalised so the bit-weighted mean
stays at the request before clipping) and across channel groups / output channels within a
layer (Beta-distributed per-group densities with the layer's mean), as trained nets show:
some groups are almost always on, some almost never. Measured densities are in the trace
summary; they differ from the request by sampling noise and clipping.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import numpy as np

from workloads.graph import LayerGraph, graph_for
from workloads.trace.accounting import GateInfo
from workloads.trace.format import IterationRecord, Trace

DENSITY_KEYS: Final = ("gate", "weight_group", "grad_skip")
Skew = Literal["uniform", "realistic"]


def _check_densities(d: dict[str, float]) -> dict[str, float]:
    out = {"gate": 1.0, "weight_group": 1.0, "grad_skip": 0.0}
    for k, v in d.items():
        if k not in DENSITY_KEYS:
            raise ValueError(f"unknown density key {k!r}; keys are {', '.join(DENSITY_KEYS)}")
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"density {k}={v} must be in [0, 1]")
        out[k] = float(v)
    return out


def default_gate_layers(
    g: LayerGraph, groups: int = 4, channel_group: int = 16, min_in_channels: int = 16
) -> dict[str, GateInfo]:
    """The recipe's rule (workloads.recipe.gating.gateable) applied to a graph."""
    return {
        lay.name: GateInfo(lay.in_channels // groups, channel_group)
        for lay in g.mac_layers
        if lay.kind == "conv"
        and lay.groups == 1
        and lay.in_channels >= min_in_channels
        and lay.in_channels % groups == 0
    }


def _layer_densities(rng, target: float, sizes: np.ndarray, skew: Skew) -> np.ndarray:
    if skew == "uniform" or target in (0.0, 1.0):
        return np.full(len(sizes), target)
    f = rng.lognormal(0.0, 0.5, size=len(sizes))
    d = target * f / (np.sum(f * sizes) / np.sum(sizes))
    return np.clip(d, 0.0, 1.0)


def _bernoulli_groups(rng, shape, axis_groups: int, density: float, skew: Skew) -> np.ndarray:
    """Bits of `shape` whose axis 1 (gate) / axis 0 (weights) groups get their own density."""
    if skew == "uniform" or density in (0.0, 1.0):
        p = np.full(axis_groups, density)
    else:
        conc = 2.0  # Beta(a, b) with a + b = 2: wide spread around the mean
        p = rng.beta(max(density * conc, 1e-3), max((1 - density) * conc, 1e-3), size=axis_groups)
    return p


def synthesize(
    model: str | LayerGraph,
    densities: dict[str, float] | None = None,
    batch: int = 32,
    seed: int = 0,
    skew: Skew = "uniform",
    iterations: int = 1,
    group_in: int = 8,
    gate_groups: int = 4,
    channel_group: int = 16,
    meta: dict[str, Any] | None = None,
) -> Trace:
    """A trace of `model` (a name or a graph) with masks drawn at `densities`."""
    if batch < 1 or iterations < 1:
        raise ValueError(f"batch ({batch}) and iterations ({iterations}) must be positive")
    if skew not in ("uniform", "realistic"):
        raise ValueError(f"skew must be 'uniform' or 'realistic', not {skew!r}")
    dens = _check_densities(densities or {})
    g = graph_for(model) if isinstance(model, str) else model
    rng = np.random.default_rng(seed)
    gate_layers = default_gate_layers(g, gate_groups, channel_group)
    lasso = tuple(lay.name for lay in g.mac_layers if lay.kind == "conv" and lay.groups == 1)

    def shape_gate(name: str) -> tuple[int, ...]:
        c, h, w = g.layer(name).out_shape
        return (batch, -(-c // channel_group), h, w)

    def shape_wg(name: str) -> tuple[int, int]:
        lay = g.layer(name)
        return (lay.out_channels, -(-lay.in_channels // group_in))

    gate_names = list(gate_layers)
    gd = _layer_densities(
        rng, dens["gate"], np.array([np.prod(shape_gate(n)) for n in gate_names]), skew
    )
    wd = _layer_densities(
        rng, dens["weight_group"], np.array([np.prod(shape_wg(n)) for n in lasso]), skew
    )
    # Per-group densities are fixed for the run (a channel group's behaviour persists).
    gp = {
        n: _bernoulli_groups(rng, shape_gate(n), shape_gate(n)[1], d, skew)
        for n, d in zip(gate_names, gd, strict=True)
    }
    wp = {
        n: _bernoulli_groups(rng, shape_wg(n), shape_wg(n)[0], d, skew)
        for n, d in zip(lasso, wd, strict=True)
    }
    its = []
    for k in range(iterations):
        gates = {n: rng.random(shape_gate(n)) < gp[n][None, :, None, None] for n in gate_names}
        wgroups = {n: rng.random(shape_wg(n)) < wp[n][:, None] for n in lasso}
        skip = rng.random(batch) < dens["grad_skip"]
        its.append(IterationRecord(k, 0, gates, wgroups, skip))
    info = {
        "kind": "synthetic",
        "requested_densities": dens,
        "skew": skew,
        "seed": seed,
        **(meta or {}),
    }
    return Trace(g, batch, gate_layers, group_in, lasso, tuple(its), None, info)
