"""Validated configuration of an SRU design-space sweep, and its expansion into points.

A sweep file (YAML) names the space (grids of formats, rounding variants, random bits and
random sources), where stochastic rounding is applied, and the training budget. Each point is
one SRU design; its `key` (a hash of everything that defines its result) names it in the
results, so a resumed sweep recognises finished points.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from simulator.numerics import PRESETS, STOCHASTIC
from simulator.numerics.quantize import MAX_RANDOM_BITS, ROUNDING_MODES
from simulator.numerics.random_sources import LFSR_TAPS

Target = Literal["weights", "momentum", "activations", "errors"]
#: where the SRU rounds unless a sweep says otherwise (labels name other placements)
DEFAULT_TARGETS = frozenset({"weights", "momentum"})


class SweepConfigError(ValueError):
    """A sweep file that cannot be read or validated; the message names file and field."""


class SourceChoice(BaseModel):
    """A random source as a sweep axis value (no file paths: sweeps must be self-contained).

    kind `network` takes the random bits from the network itself: `tensor: self` rounds each
    element with the discarded low bits of a neighbouring lane of the same tensor (`offset`
    lanes away); `activations`/`errors`/`weights` take the low mantissa bits of that tensor.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["uniform", "lfsr", "xorshift32", "network"]
    width: int | None = Field(None, description="LFSR width in bits")
    form: Literal["fibonacci", "galois"] = "fibonacci"
    combine: Literal["none", "invert", "alternate"] = "none"
    sharing: Literal["per_lane", "shared"] = "per_lane"
    lanes: int = Field(1, ge=1, le=4096)
    tensor: Literal["self", "activations", "errors", "weights"] | None = None
    offset: int = Field(1, ge=1, description="network/self: lane distance of the bit donor")

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> SourceChoice:
        if self.kind == "lfsr":
            if self.width is None or self.width not in LFSR_TAPS:
                raise ValueError(f"an lfsr needs width in 2..32, got {self.width}")
        elif self.width is not None:
            raise ValueError(f"width applies to lfsr sources, not {self.kind}")
        if self.kind == "network" and self.tensor is None:
            raise ValueError("a network source needs `tensor` (self, activations, errors, weights)")
        if self.kind != "network" and self.tensor is not None:
            raise ValueError(f"tensor applies to network sources, not {self.kind}")
        return self

    @property
    def label(self) -> str:
        if self.kind == "lfsr":
            extra = "" if self.combine == "none" else f"-{self.combine}"
            share = "" if self.sharing == "per_lane" else f"-shared{self.lanes}"
            return f"lfsr{self.width}{'g' if self.form == 'galois' else ''}{extra}{share}"
        if self.kind == "network":
            return f"net-{self.tensor}"
        return self.kind


class GridBlock(BaseModel):
    """A Cartesian product of axis values; a sweep is the union of its blocks."""

    model_config = ConfigDict(extra="forbid")

    format: list[str] = Field(default_factory=lambda: ["e5m2_chip"])
    rounding: list[str] = Field(default_factory=lambda: ["sr"])
    r: list[int] = Field(default_factory=lambda: [8])
    source: list[SourceChoice] = Field(default_factory=lambda: [SourceChoice(kind="uniform")])
    apply_to: list[Target] | None = Field(
        None, min_length=1, description="where this block's SRUs round (default: the sweep's)"
    )

    @field_validator("format")
    @classmethod
    def _known_formats(cls, v: list[str]) -> list[str]:
        for name in v:
            if name not in PRESETS:
                raise ValueError(f"unknown format {name!r}; presets: {', '.join(PRESETS)}")
        return v

    @field_validator("rounding")
    @classmethod
    def _known_roundings(cls, v: list[str]) -> list[str]:
        for name in v:
            if name not in ROUNDING_MODES:
                raise ValueError(f"unknown rounding {name!r}; choose from {list(ROUNDING_MODES)}")
        return v

    @field_validator("r")
    @classmethod
    def _r_in_range(cls, v: list[int]) -> list[int]:
        for r in v:
            if not 1 <= r <= MAX_RANDOM_BITS:
                raise ValueError(f"r={r} must be in 1..{MAX_RANDOM_BITS}")
        return v


class TrainingBudget(BaseModel):
    """What each point trains, to measure accuracy (`enabled: false` skips training)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    model: str = "vgg7"
    data: str = "digits"
    epochs: int = Field(3, ge=1, le=1000)
    batch: int = Field(64, ge=1, le=4096)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    lr: float = Field(0.005, gt=0, description="the recipe's SGD rate (0.5 ||y - t||^2 loss)")
    sparsity: bool = Field(False, description="keep gating/Lasso/skip on (off isolates the SRU)")
    max_steps_per_epoch: int | None = Field(None, ge=1, description="cap for quick sweeps")


class SamplePlan(BaseModel):
    """Draw `n` points at random from the grid instead of running all of it."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(ge=1)
    seed: int = 0


class SweepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    grid: list[GridBlock] = Field(min_length=1)
    apply_to: list[Target] = Field(default_factory=lambda: ["weights", "momentum"], min_length=1)
    sample: SamplePlan | None = None
    numeric_samples: int = Field(200_000, ge=1000, description="values rounded per point")
    nist_bits: int = Field(1 << 15, ge=10_000, le=1 << 20, description="bits given to NIST")
    hardware: bool = Field(True, description="synthesise SRU + source with Yosys for its cost")
    hw_config: str = Field("ref28", description="hardware config whose energy table is used")
    training: TrainingBudget = Field(default_factory=TrainingBudget)

    def points(self) -> list[SruPoint]:
        """Every distinct point of the grid (or the sampled subset), in a stable order."""
        seen: dict[str, SruPoint] = {}
        for block in self.grid:
            for fmt, rnd, r, src in itertools.product(
                block.format, block.rounding, block.r, block.source
            ):
                stochastic = rnd in STOCHASTIC
                point = SruPoint(
                    format=fmt,
                    rounding=rnd,
                    r=r if stochastic else None,
                    source=src if stochastic else None,
                    apply_to=tuple(block.apply_to or self.apply_to),
                )
                seen.setdefault(point.key(self), point)
        points = list(seen.values())
        if self.sample is not None and self.sample.n < len(points):
            points = random.Random(self.sample.seed).sample(points, self.sample.n)
        return points


class SruPoint(BaseModel):
    """One SRU design: output format, rounding variant, random bits and source."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str
    rounding: str
    r: int | None
    source: SourceChoice | None
    apply_to: tuple[Target, ...]

    @property
    def label(self) -> str:
        where = "" if set(self.apply_to) == DEFAULT_TARGETS else f" on {'+'.join(self.apply_to)}"
        if self.r is None:
            return f"{self.rounding}->{self.format}{where}"
        assert self.source is not None
        return f"{self.rounding} r={self.r} {self.source.label}->{self.format}{where}"

    def key(self, cfg: SweepConfig) -> str:
        """Hash of everything that determines this point's results (16 hex digits)."""
        payload = {
            "point": self.model_dump(mode="json"),
            "numeric_samples": cfg.numeric_samples,
            "nist_bits": cfg.nist_bits,
            "hardware": [cfg.hardware, cfg.hw_config],
            "training": cfg.training.model_dump(mode="json"),
        }
        blob = json.dumps(payload, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def load_sweep_config(path: Path) -> SweepConfig:
    """Read and validate a sweep YAML file; errors name the file and the field."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SweepConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SweepConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise SweepConfigError(f"{path}: expected a mapping at the top level")
    try:
        return SweepConfig.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            lines.append(f"{path}: {where}: {err['msg'].removeprefix('Value error, ')}")
        raise SweepConfigError("\n".join(lines)) from None
