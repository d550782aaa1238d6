"""The training recipe's every knob, validated with pydantic (YAML-loadable).

Errors name the field path and the rule broken, e.g.
`gating.groups: Input should be greater than or equal to 2`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from simulator.numerics import FormatError, get_format

Rounding = Literal["rne", "rna", "rtz", "sr", "sr_half", "sr_corrected"]


class RecipeConfigError(ValueError):
    """A recipe configuration that breaks a rule; the message names the field(s)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_format(v: str) -> str:
    try:
        get_format(v)
    except FormatError as e:
        raise ValueError(str(e)) from None
    return v


class RandomSourceConfig(_Strict):
    """Where the stochastic-rounding bits come from (simulator.numerics.random_sources).

    `network`: no generator; each element is rounded with the low bits of the element
    `offset` lanes away in the same tensor, the bits rounding discards there.
    """

    kind: Literal["uniform", "lfsr", "xorshift32", "network"] = "uniform"
    width: int = Field(16, ge=2, le=32, description="LFSR width")
    form: Literal["fibonacci", "galois"] = "fibonacci"
    combine: Literal["none", "invert", "alternate"] = "none"
    lanes: int = Field(16, ge=1)
    offset: int = Field(1, ge=1, description="network: lane distance of the bit donor")
    seed: int | None = Field(None, description="None: derived from the run's seed")


class QuantConfig(_Strict):
    """FP8 quantisation of the tensor-core operands in forward and backward.

    Weights and activations are rounded on their way into every conv/fc (straight-through in
    backward); the error (gradient w.r.t. a layer's output) is rounded on its way back.
    `accumulate` rounds each conv/fc output once to the accumulator's format; the chip rounds
    after every 8-product step, which is too slow to emulate here (only the final rounding is
    modelled).
    """

    enabled: bool = True
    weight_format: str = "e5m2_chip"
    activation_format: str = "e5m2_chip"
    error_format: str = "e5m2_chip"
    accumulate_format: str | None = "fp16_chip"
    rounding: Literal["rne", "rna", "rtz"] = Field(
        "rne", description="accumulator rounding, and every path whose *_rounding is None"
    )
    weight_rounding: Rounding | None = Field(
        None, description="weights into the tensor cores (forward and, transposed, backward)"
    )
    activation_rounding: Rounding | None = Field(
        None, description="activations into the tensor cores (forward)"
    )
    error_rounding: Rounding | None = Field(
        None, description="errors (gradients w.r.t. layer outputs) on their way back (backward)"
    )
    random_bits: int = Field(
        8, ge=1, le=32, description="r of the stochastic modes on the weight/activation/error paths"
    )
    source: RandomSourceConfig = Field(
        RandomSourceConfig(),
        description="random bits of those stochastic modes; each path draws from its own "
        "generator (seeds derived from the run's seed and the path), or, for `network`, from the "
        "low bits of the neighbouring element of the tensor being rounded",
    )
    backend: Literal["numerics", "torch"] = Field(
        "numerics",
        description="numerics: simulator.numerics.quantize on the CPU tensor's memory (fast "
        "numba); torch: workloads.recipe.fp8_torch (same bits, any device)",
    )

    _fmt = field_validator("weight_format", "activation_format", "error_format")(_check_format)

    @field_validator("accumulate_format")
    @classmethod
    def _acc(cls, v: str | None) -> str | None:
        return None if v is None else _check_format(v)

    @model_validator(mode="after")
    def _network_bits(self) -> QuantConfig:
        if self.source.kind == "network" and self.random_bits > 23:
            raise ValueError(
                "random_bits: a network source takes the low bits of float32 mantissas "
                f"(23 bits); {self.random_bits} would read exponent bits"
            )
        return self

    def path_rounding(self, path: Literal["weight", "activation", "error"]) -> str:
        """The rounding mode of one operand path (its own setting, else `rounding`)."""
        own = getattr(self, f"{path}_rounding")
        return self.rounding if own is None else own


class UpdateConfig(_Strict):
    """SGD with momentum; master weights and momentum stored in `*_format` with SR."""

    # 0.005 with this loss (0.5 ||y - t||^2 per image, batch mean; output error y - t) at batch
    # 64 is the chip code's hinted 0.05 with nn.MSELoss (mean over batch x 10 classes: 1/5 of
    # this gradient) at batch 128 (linear scaling: half the batch, half the lr). 0.05 here
    # diverges on VGG-7 (MSE curvature along the classifier grows with the squared feature norm).
    # See docs/workloads.md, "Learning rate".
    lr: float = Field(0.005, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["constant", "cosine"] = "cosine"
    weight_format: str = "fp16_chip"
    momentum_format: str = "fp16_chip"
    rounding: Rounding = "sr"
    random_bits: int = Field(16, ge=1, le=32)
    source: RandomSourceConfig = RandomSourceConfig()

    _fmt = field_validator("weight_format", "momentum_format")(_check_format)


class GatingConfig(_Strict):
    """Structured channel gating (see workloads.recipe.gating)."""

    enabled: bool = True
    groups: int = Field(4, ge=2, description="G: the base path reads 1/G of the input channels")
    channel_group: int = Field(16, ge=1, description="output channels per gate decision")
    min_in_channels: int = Field(16, ge=2, description="convs with fewer inputs are not gated")
    normalize: Literal["auto", "rms", "batchnorm"] = Field(
        "auto",
        description="base-sum normalisation: batchnorm (mean-subtracted, for conv-BN-ReLU), rms "
        "(sign kept, for conv-ReLU); auto picks rms for convs with a bias",
    )
    gated_output: Literal["base", "scaled_base"] = Field(
        "scaled_base",
        description="what a gated output holds: the base sum (CGNet), or G x the base sum (our "
        "assumption: keeps the output's scale; an exponent add of log2 G in hardware)",
    )
    threshold_init: float = -1.0
    temperature: float = Field(1.0, gt=0, description="sigmoid width of the straight-through grad")
    target_density: float = Field(0.4, ge=0, le=1)
    control: Literal["controller", "regularizer"] = Field(
        "controller",
        description="controller: after every step each layer's thresholds move by "
        "gain * (hard density - target); regularizer: only the loss term below steers them",
    )
    controller_gain: float = Field(0.05, ge=0)
    ramp_epochs: int = Field(
        3, ge=0, description="the target falls linearly from 1 to target_density over these"
    )
    reg_weight: float = Field(0.0, ge=0, description="weight of relu(soft density - target)")


class LassoConfig(_Strict):
    """Group-Lasso on conv weights, groups of 1 out-channel x `group_in` in-channels x k x k."""

    enabled: bool = True
    group_in: int = Field(8, ge=1)
    reg_weight: float = Field(0.05, ge=0, description="lambda of sum_g sqrt(|g|) ||w_g||")
    mode: Literal["proximal", "loss"] = Field(
        "proximal",
        description="proximal: group soft-threshold after each step (exact zeros); loss: the "
        "penalty is added to the loss and differentiated",
    )
    min_in_channels: int = Field(
        1,
        ge=1,
        description="convs with fewer input channels are not regularised (the first conv of "
        "a 1-channel input has one group per filter: zeroing one removes a feature map)",
    )
    start_epoch: int = Field(
        0, ge=0, description="no Lasso during the first start_epoch epochs (learn first)"
    )
    ramp_epochs: int = Field(
        0,
        ge=0,
        description="lambda and the target zero fraction rise linearly from 0 over these "
        "epochs after start_epoch",
    )
    target_zero_fraction: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="None: only zero_threshold zeroes groups; else the weight-sparsity unit's "
        "threshold is set per layer and step so that at least this fraction of the layer's "
        "groups (those of smallest norm) is zero; the fraction rises from 0 over ramp_epochs "
        "after start_epoch",
    )
    rescale: bool = Field(
        False,
        description="with a target: scale a layer that lost groups back to its Frobenius norm "
        "before (keeps the output scale of nets without batch norm)",
    )
    zero_threshold: float = Field(1e-4, ge=0, description="groups with L2 norm below are zeroed")
    zero_momentum: bool = True


class SkipConfig(_Strict):
    """Gradient skipping: confident images skip their BP and WU."""

    enabled: bool = True
    criterion: Literal["confidence", "error"] = Field(
        "confidence",
        description="confidence: confidence in the right class > threshold (softmax probability "
        "for ce, the output itself for mse); error: max |y - onehot| < threshold",
    )
    threshold: float = Field(0.9, gt=0)
    warmup_epochs: int = Field(0, ge=0)


class CaptureConfig(_Strict):
    """What training records for the trace."""

    iterations: int = Field(1, ge=1, description="captured iterations: the last N steps")
    codes: bool = Field(True, description="FP8 codes of the last iteration's tensors")


class RecipeConfig(_Strict):
    """Every knob of a training run."""

    seed: int = 0
    epochs: int = Field(3, ge=1)
    steps: int | None = Field(None, ge=1, description="stop after this many steps in total")
    batch_size: int = Field(64, ge=1)
    loss: Literal["mse", "ce"] = "mse"
    threads: int = Field(1, ge=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    quant: QuantConfig = QuantConfig()
    update: UpdateConfig = UpdateConfig()
    gating: GatingConfig = GatingConfig()
    lasso: LassoConfig = LassoConfig()
    skip: SkipConfig = SkipConfig()
    capture: CaptureConfig = CaptureConfig()

    @model_validator(mode="after")
    def _threshold_in_range(self) -> RecipeConfig:
        if self.skip.criterion == "confidence" and self.skip.threshold >= 1:
            raise ValueError("skip.threshold: a confidence threshold must be below 1")
        return self

    @staticmethod
    def dense_fp32(**overrides: Any) -> RecipeConfig:
        """The float32 dense baseline: no quantisation, no sparsity, fp32 updates."""
        base: dict[str, Any] = {
            "quant": {"enabled": False},
            "update": {"weight_format": "fp32", "momentum_format": "fp32", "rounding": "rne"},
            "gating": {"enabled": False},
            "lasso": {"enabled": False},
            "skip": {"enabled": False},
        }
        return load_config(_merge(base, overrides))

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _explain(e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown setting (not a knob of the recipe)"
        if loc and err["type"] == "value_error" and re.match(r"\w+: ", msg):
            lines.append(f"{loc}.{msg}")  # a nested model's rule names its own field
        else:
            lines.append(f"{loc}: {msg}" if loc else msg)  # model-level rules name their field
    return "invalid recipe config: " + "; ".join(lines)


def load_config(
    source: dict[str, Any] | str | Path | None = None, **overrides: Any
) -> RecipeConfig:
    """A validated config from a dict, a YAML file path, or defaults; `overrides` merge on top."""
    data: dict[str, Any]
    if source is None:
        data = {}
    elif isinstance(source, dict):
        data = source
    else:
        path = Path(source)
        if not path.is_file():
            raise RecipeConfigError(f"recipe config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise RecipeConfigError(f"{path}: not valid YAML: {e}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise RecipeConfigError(f"{path}: top level must be a mapping of settings")
        data = loaded
    data = _merge(data, overrides)
    try:
        return RecipeConfig.model_validate(data)
    except ValidationError as e:
        raise RecipeConfigError(_explain(e)) from None
