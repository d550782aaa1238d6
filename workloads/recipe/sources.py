"""Random sources for the recipe's stochastic rounding (the chip's SRUs), from a
`RandomSourceConfig`: one definition for the update step and the forward/backward quantisers."""

from __future__ import annotations

import numpy as np

from simulator.numerics.random_sources import (
    LFSRSource,
    RandomSource,
    UniformSource,
    Xorshift32Source,
)
from workloads.recipe.config import RandomSourceConfig

# Streams of one run that draw from separate generators get separate derived seeds.
STREAMS = {"update": 0, "weight": 1, "activation": 2, "error": 3}


def make_source(cfg: RandomSourceConfig, run_seed: int) -> RandomSource | None:
    """The generator feeding the SRUs; None for `network` (bits come from each tensor)."""
    if cfg.kind == "network":
        return None
    seed = cfg.seed if cfg.seed is not None else run_seed
    if cfg.kind == "uniform":
        return UniformSource(seed)
    if cfg.kind == "xorshift32":
        return Xorshift32Source(seed=seed or 2463534242, lanes=cfg.lanes)
    # An LFSR seed must be a nonzero state of the register.
    lfsr_seed = seed % ((1 << cfg.width) - 1) + 1
    return LFSRSource(cfg.width, cfg.form, lfsr_seed, cfg.lanes, combine=cfg.combine)


def stream_seed(run_seed: int, stream: str) -> int:
    """A 31-bit seed for one stream of a run (decorrelated from the other streams' seeds)."""
    return int(np.random.SeedSequence([run_seed, STREAMS[stream]]).generate_state(1)[0] >> 1)


def make_stream_source(cfg: RandomSourceConfig, run_seed: int, stream: str) -> RandomSource | None:
    """`make_source` for one quantiser stream: an explicit `cfg.seed` is offset by the stream's
    index, otherwise the seed is derived from the run's seed and the stream's name."""
    if cfg.seed is not None:
        return make_source(cfg.model_copy(update={"seed": cfg.seed + STREAMS[stream]}), run_seed)
    return make_source(cfg, stream_seed(run_seed, stream))
