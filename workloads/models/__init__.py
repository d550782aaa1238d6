"""The CNNs fp8sim trains and simulates, written here (torchvision is not available).

`build(name)` makes a fresh `nn.Module`; `default_input_shape(name)` is the per-image (C, H, W)
it expects. Every model is traceable with `torch.fx.symbolic_trace` (see `workloads.graph`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from torch import nn

from workloads.models.mobilenet import MobileNetV1
from workloads.models.resnet import resnet18, resnet20
from workloads.models.vgg import VGG7


@dataclass(frozen=True)
class ModelSpec:
    """How to build one named model, its input size and its family (for default traces)."""

    factory: Callable[[int, int], nn.Module]
    input_hw: tuple[int, int]
    family: str
    description: str


_SPECS: Final[dict[str, ModelSpec]] = {
    "vgg7": ModelSpec(
        lambda n, c: VGG7(n, c, batch_norm=False), (32, 32), "vgg", "VGG-7 (chip test vectors)"
    ),
    "vgg7_bn": ModelSpec(
        lambda n, c: VGG7(n, c, batch_norm=True), (32, 32), "vgg", "VGG-7 with batch norm"
    ),
    "resnet20": ModelSpec(resnet20, (32, 32), "resnet", "ResNet-20 for CIFAR (option-B shortcuts)"),
    "resnet18": ModelSpec(
        lambda n, c: resnet18(n, c, stem="cifar"), (32, 32), "resnet", "ResNet-18, CIFAR stem"
    ),
    "resnet18_imagenet": ModelSpec(
        lambda n, c: resnet18(n, c, stem="imagenet"),
        (224, 224),
        "resnet",
        "ResNet-18, ImageNet stem (7x7/2 conv + max-pool), 224x224",
    ),
    "mobilenet_v1": ModelSpec(
        lambda n, c: MobileNetV1(n, c, width=1.0), (32, 32), "mobilenet", "MobileNet-v1, 32x32"
    ),
    "mobilenet_v1_half": ModelSpec(
        lambda n, c: MobileNetV1(n, c, width=0.5),
        (32, 32),
        "mobilenet",
        "MobileNet-v1 at width 0.5, 32x32",
    ),
}

MODEL_NAMES: Final[tuple[str, ...]] = tuple(_SPECS)


class UnknownModelError(ValueError):
    """A model name that `build` does not know."""


def _spec(name: str) -> ModelSpec:
    try:
        return _SPECS[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; valid names are: {', '.join(MODEL_NAMES)}"
        ) from None


def build(name: str, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """A freshly initialised model (torch's default init; seed torch first for reproducibility)."""
    if num_classes < 1 or in_channels < 1:
        raise ValueError(
            f"num_classes ({num_classes}) and in_channels ({in_channels}) must be positive"
        )
    return _spec(name).factory(num_classes, in_channels)


def default_input_shape(name: str, in_channels: int = 3) -> tuple[int, int, int]:
    """Per-image input shape (C, H, W) the model is designed for."""
    h, w = _spec(name).input_hw
    return (in_channels, h, w)


def family(name: str) -> str:
    """Model family: "vgg", "resnet" or "mobilenet"."""
    return _spec(name).family


def describe(name: str) -> str:
    return _spec(name).description


__all__ = [
    "MODEL_NAMES",
    "UnknownModelError",
    "build",
    "default_input_shape",
    "describe",
    "family",
]
