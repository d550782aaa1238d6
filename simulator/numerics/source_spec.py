"""A validated, serialisable description of a random source (CLI options, sweep configs)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from simulator.numerics.random_sources import (
    LFSR_TAPS,
    LFSRSource,
    RandomSource,
    TensorBitsSource,
    UniformSource,
    Xorshift32Source,
)


class SourceSpec(BaseModel):
    """Which random source feeds an SRU, with its parameters.

    kind: `uniform` (ideal PCG64), `lfsr`, `xorshift32`, or `tensor` (low bits of a tensor
    stream read from a `.npy` file: randomness taken from the network itself).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["uniform", "lfsr", "xorshift32", "tensor"] = "uniform"
    seed: int = Field(1, ge=0, description="initial state (LFSR: lane 0's register value)")
    width: int = Field(16, ge=2, le=32, description="LFSR register width in bits")
    form: Literal["fibonacci", "galois"] = "fibonacci"
    lanes: int = Field(1, ge=1, le=4096, description="words produced per cycle")
    sharing: Literal["per_lane", "shared"] = "per_lane"
    combine: Literal["none", "invert", "alternate"] = "none"
    stream: Path | None = Field(None, description="tensor source: a .npy file of the stream")
    low_bit: int = Field(0, ge=0, le=63, description="tensor source: lowest bit taken")

    @model_validator(mode="after")
    def _check_kind_fields(self) -> SourceSpec:
        if self.kind == "lfsr" and self.width not in LFSR_TAPS:
            raise ValueError(f"width {self.width} has no tap entry")
        if self.kind == "lfsr" and not 1 <= self.seed < (1 << self.width):
            raise ValueError(f"seed must be a nonzero {self.width}-bit LFSR state")
        if self.kind == "xorshift32" and not 1 <= self.seed < (1 << 32):
            raise ValueError("xorshift32 needs a nonzero 32-bit seed")
        if self.kind == "tensor" and self.stream is None:
            raise ValueError("a tensor source needs `stream`, a .npy file")
        return self

    def build(self) -> RandomSource:
        if self.kind == "uniform":
            return UniformSource(self.seed)
        if self.kind == "xorshift32":
            return Xorshift32Source(self.seed, self.lanes)
        if self.kind == "lfsr":
            return LFSRSource(
                self.width, self.form, self.seed, self.lanes, self.sharing, self.combine
            )
        assert self.stream is not None
        try:
            with open(self.stream, "rb") as f:
                magic = f.read(6)
            # numpy would take any other file for a pickle and suggest loading it unsafely
            if magic != b"\x93NUMPY":
                raise ValueError("not a .npy file")
            arr = np.load(self.stream, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read tensor stream {self.stream}: {exc}") from exc
        return TensorBitsSource(arr, self.low_bit)
