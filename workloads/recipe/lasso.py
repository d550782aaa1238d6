"""Group-Lasso weight sparsity in the chip's group shape: 1 output channel x `group_in`
consecutive input channels x k x k (the last group of a layer may hold fewer input channels).

The penalty is lambda * sum_g sqrt(|g|) * ||w_g||_2 (the sqrt(|g|) weighting of Yuan & Lin
2006 keeps groups of different sizes comparable). Either it is differentiated as part of the
loss, or applied as its proximal step after each SGD step (group soft-thresholding, which
produces exact zeros). In both modes a group whose norm is then below `zero_threshold` is set to
zero; it is not frozen, so the next gradient may bring it back (dynamic sparsity).

With `target_fraction` the zeroing threshold is per layer and step instead: the norm below
which the smallest-norm `target_fraction` of the layer's groups lie (zero groups count), so the
layer holds at least that fraction of zero groups. The Lasso decides which groups those are (it
pulls the groups the loss does not defend towards zero); the threshold decides how many. Why a
fixed lambda alone does not work on the VGG-7/digits recipe is measured in docs/workloads.md.
"""

from __future__ import annotations

import torch
from torch import nn


def lasso_layers(model: nn.Module) -> dict[str, nn.Conv2d]:
    """The convs group-Lasso applies to: dense (groups == 1) convs, by module name."""
    return {
        name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups == 1
    }


def n_in_groups(in_channels: int, group_in: int) -> int:
    return -(-in_channels // group_in)


def _padded(w: torch.Tensor, group_in: int) -> torch.Tensor:
    """(C_out, C_in, k, k) -> (C_out, n_groups, group_in * k * k), zero-padded in C_in."""
    c_out, c_in, kh, kw = w.shape
    ng = n_in_groups(c_in, group_in)
    pad = ng * group_in - c_in
    if pad:
        w = torch.cat([w, w.new_zeros(c_out, pad, kh, kw)], 1)
    return w.reshape(c_out, ng, group_in * kh * kw)


def group_norms(w: torch.Tensor, group_in: int) -> torch.Tensor:
    """L2 norm of every group: (C_out, n_in_groups)."""
    return _padded(w, group_in).norm(dim=2)


def group_sizes(w: torch.Tensor, group_in: int) -> torch.Tensor:
    """Number of weights in every group (C_out, n_in_groups); the last group may be smaller."""
    c_out, c_in, kh, kw = w.shape
    ng = n_in_groups(c_in, group_in)
    chans = torch.full((ng,), float(group_in))
    chans[-1] = c_in - group_in * (ng - 1)
    return (chans * kh * kw).expand(c_out, ng)


def group_mask_to_weights(mask: torch.Tensor, w_shape: torch.Size, group_in: int) -> torch.Tensor:
    """(C_out, n_groups) group mask -> weight-shaped mask."""
    c_out, c_in, kh, kw = w_shape
    per_ch = mask.repeat_interleave(group_in, 1)[:, :c_in]
    return per_ch[:, :, None, None].expand(c_out, c_in, kh, kw)


def regularised(conv: nn.Conv2d, min_in_channels: int) -> bool:
    """Whether the Lasso (penalty, shrinkage, target zeroing) applies to this layer."""
    return conv.in_channels >= min_in_channels


def lasso_penalty(model: nn.Module, group_in: int, min_in_channels: int = 1) -> torch.Tensor:
    """sum over layers and groups of sqrt(|g|) ||w_g|| (multiply by lambda outside)."""
    total = torch.zeros(())
    for conv in lasso_layers(model).values():
        if not regularised(conv, min_in_channels):
            continue
        w = conv.weight
        total = total + (group_sizes(w, group_in).sqrt() * group_norms(w, group_in)).sum()
    return total


@torch.no_grad()
def proximal_step(model: nn.Module, group_in: int, step: float, min_in_channels: int = 1) -> None:
    """w_g <- w_g * max(0, 1 - step * sqrt(|g|) / ||w_g||), step = lr * lambda."""
    for conv in lasso_layers(model).values():
        if not regularised(conv, min_in_channels):
            continue
        w = conv.weight
        norms = group_norms(w, group_in)
        scale = torch.clamp(1 - step * group_sizes(w, group_in).sqrt() / norms.clamp_min(1e-30), 0)
        w.mul_(group_mask_to_weights(scale, w.shape, group_in))


@torch.no_grad()
def smallest_fraction_mask(norms: torch.Tensor, fraction: float) -> torch.Tensor:
    """True for the groups to keep: all but the floor(fraction * n) of smallest norm (groups
    tied with the last of those are zeroed too; zero groups count among the smallest)."""
    k = int(fraction * norms.numel())
    if k <= 0:
        return torch.ones_like(norms, dtype=torch.bool)
    cut = norms.reshape(-1).kthvalue(k).values
    return norms > cut


@torch.no_grad()
def zero_small_groups(
    model: nn.Module,
    group_in: int,
    threshold: float,
    momentum: dict[int, torch.Tensor] | None,
    target_fraction: float = 0.0,
    min_in_channels: int = 1,
    rescale: bool = False,
) -> dict[str, torch.Tensor]:
    """Zero groups with norm < threshold, and with `target_fraction` also each layer's
    smallest-norm groups up to that fraction (and their momentum); returns nonzero masks by
    layer. With `rescale`, a layer that lost groups to the target is scaled back to its
    Frobenius norm before (the variance of its outputs is then kept, as dropout's 1/(1-p) keeps
    their mean: without batch norm, each pruned layer would otherwise shrink the signal)."""
    masks = {}
    for name, conv in lasso_layers(model).items():
        w = conv.weight
        norms = group_norms(w, group_in)
        keep = norms >= threshold
        targeted = target_fraction > 0 and regularised(conv, min_in_channels)
        if targeted:
            keep &= smallest_fraction_mask(norms, target_fraction)
        wmask = group_mask_to_weights(keep.to(w.dtype), w.shape, group_in)
        w.mul_(wmask)
        if rescale and targeted:
            before, after = float(norms.pow(2).sum().sqrt()), float(w.norm())
            if after > 0:
                w.mul_(before / after)
        if momentum is not None and id(w) in momentum:
            momentum[id(w)].mul_(wmask)
        masks[name] = keep & (group_norms(w, group_in) > 0)
    return masks


@torch.no_grad()
def nonzero_group_masks(model: nn.Module, group_in: int) -> dict[str, torch.Tensor]:
    """Which groups hold any nonzero weight, by layer: (C_out, n_in_groups) bool."""
    return {
        name: group_norms(conv.weight, group_in) > 0 for name, conv in lasso_layers(model).items()
    }
