"""Turn a plain model into its recipe version: quantised convs/fcs, gated convs where the
recipe gates. Module names stay the same, so they match the layer graph's names."""

from __future__ import annotations

from torch import nn

from workloads.recipe.config import RecipeConfig
from workloads.recipe.gating import GatedConv2d, gateable
from workloads.recipe.quant import LayerNumerics, QuantConv2d, QuantLinear


def _set(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def prepare_model(model: nn.Module, cfg: RecipeConfig) -> nn.Module:
    """Replace every nn.Conv2d / nn.Linear in place (parameters are shared, not copied)."""
    num = LayerNumerics.from_config(cfg.quant, cfg.seed)
    g = cfg.gating
    for name, m in list(model.named_modules()):
        if type(m) is nn.Conv2d:
            if g.enabled and gateable(m, g.groups, g.min_in_channels):
                new: nn.Module = GatedConv2d.from_conv(
                    m,
                    num,
                    g.groups,
                    g.channel_group,
                    g.threshold_init,
                    g.temperature,
                    g.normalize,
                    g.gated_output,
                )
            else:
                new = QuantConv2d.from_conv(m, num)
            _set(model, name, new)
        elif type(m) is nn.Linear:
            _set(model, name, QuantLinear.from_linear(m, num))
    return model


def gated_layers(model: nn.Module) -> dict[str, GatedConv2d]:
    return {n: m for n, m in model.named_modules() if isinstance(m, GatedConv2d)}


def mac_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Recipe conv/fc modules by name (the graph's MAC layers)."""
    return {
        n: m
        for n, m in model.named_modules()
        if isinstance(m, QuantConv2d | QuantLinear | GatedConv2d)
    }
