"""MAC accounting of one training step from the recorded sparsity (exact, no independence
assumption between techniques).

For a dense conv layer with gating and group-Lasso, output channel c, image n, pixel p:
- the weights of c split into base-path input channels (the first C_in/G) and conditional-path
  ones; only nonzero weight groups count: nb[c] and nc[c] are the nonzero-group MACs per output
  pixel on each path;
- FP MACs(n) = sum_p sum_c nb[c] + gate[n, c // 16, p] * nc[c].
BP (data gradient) and WU (weight gradient) of image n reuse the gate bitmap: a gated output
has zero error (reference-chip.md, section 3), so both paths of its weights are skipped:
- BP MACs(n) = WU MACs(n) = sum_p sum_c gate[n, c // 16, p] * (nb[c] + nc[c]);
a zero weight group is skipped in all three phases. A grad-skipped image does FP only. The
first MAC layer has no BP (the input needs no gradient, `LayerGraph.needs_data_gradient`).
Layers without gating count gate = 1, layers without Lasso count every group nonzero;
depthwise convs and fc layers are dense.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from workloads.graph import LayerGraph


@dataclass(frozen=True)
class GateInfo:
    """How a gated layer splits: base-path input channels and output channels per decision."""

    base_channels: int
    channel_group: int


@dataclass(frozen=True)
class StepMacs:
    """MACs of one training step for a batch."""

    dense: int
    fp: int
    bp: int
    wu: int

    @property
    def sparse(self) -> int:
        return self.fp + self.bp + self.wu

    @property
    def reduction(self) -> float:
        return self.dense / self.sparse if self.sparse else float("inf")


def _path_macs(
    c_in: int, c_out: int, k: int, base_channels: int, wnz: np.ndarray | None, group_in: int
) -> tuple[np.ndarray, np.ndarray]:
    """(nb, nc): per output channel, MACs per output pixel on the base / conditional path."""
    ch_nonzero = np.ones((c_out, c_in), bool)
    if wnz is not None:
        ch_nonzero = np.repeat(wnz, group_in, axis=1)[:, :c_in]
    nb = ch_nonzero[:, :base_channels].sum(1) * k
    nc = ch_nonzero[:, base_channels:].sum(1) * k
    return nb.astype(np.int64), nc.astype(np.int64)


def step_macs(
    graph: LayerGraph,
    batch: int,
    gates: Mapping[str, np.ndarray],
    gate_info: Mapping[str, GateInfo],
    wgroups: Mapping[str, np.ndarray],
    group_in: int,
    skip: np.ndarray | None,
) -> StepMacs:
    """Exact MACs of FP, BP and WU for one step of `batch` images."""
    keep = np.ones(batch, bool) if skip is None else ~np.asarray(skip, bool)
    fp = bp = wu = 0
    for layer in graph.mac_layers:
        has_bp = graph.needs_data_gradient(layer.name)
        per_image: np.ndarray
        per_image_bwd: np.ndarray | None = None  # BP = WU MACs per image, when not as FP
        if layer.kind == "conv" and layer.groups == 1:
            c_out, h, w = layer.out_shape
            k = layer.kernel[0] * layer.kernel[1]
            info = gate_info.get(layer.name)
            base = info.base_channels if info else layer.in_channels
            nb, nc = _path_macs(
                layer.in_channels, c_out, k, base, wgroups.get(layer.name), group_in
            )
            per_image = np.full(batch, int(nb.sum()) * h * w, np.int64)
            if info is None:
                per_image += int(nc.sum()) * h * w
            else:
                g = info.channel_group
                n_groups = -(-c_out // g)
                nc_group = np.add.reduceat(nc, np.arange(0, c_out, g))[:n_groups]
                on = np.asarray(gates[layer.name]).reshape(batch, n_groups, -1).sum(2)
                per_image += on @ nc_group
                nb_group = np.add.reduceat(nb, np.arange(0, c_out, g))[:n_groups]
                per_image_bwd = on @ (nb_group + nc_group)
        else:
            per_image = np.full(batch, layer.macs_fwd, np.int64)
        fp += int(per_image.sum())
        bwd = per_image if per_image_bwd is None else per_image_bwd
        kept = int(bwd[keep].sum())
        wu += kept
        bp += kept if has_bp else 0
    return StepMacs(batch * graph.macs_train_per_image_dense, fp, bp, wu)
