"""What `fp8sim trace info` reports: the layer table, dense MAC totals and measured sparsity."""

from __future__ import annotations

from typing import Any

import numpy as np

from workloads.trace.accounting import step_macs
from workloads.trace.format import Trace


def measured(t: Trace) -> dict[str, float]:
    """Mean densities over the captured iterations (bit-weighted over layers) and the FLOPs
    reduction of a training step (dense MACs / sparse MACs, summed over the iterations)."""
    gate_on = gate_all = wg_on = wg_all = 0
    skipped = seen = 0
    dense = sparse = 0
    for it in t.iterations:
        for g in it.gates.values():
            gate_on += int(g.sum())
            gate_all += g.size
        for g in it.wgroups.values():
            wg_on += int(g.sum())
            wg_all += g.size
        skipped += int(it.skip.sum())
        seen += it.skip.size
        m = step_macs(t.graph, t.batch, it.gates, t.gate_layers, it.wgroups, t.group_in, it.skip)
        dense += m.dense
        sparse += m.sparse
    return {
        "gate_density": gate_on / gate_all if gate_all else 1.0,
        "weight_group_density": wg_on / wg_all if wg_all else 1.0,
        "grad_skip_fraction": skipped / seen if seen else 0.0,
        "flops_reduction": dense / sparse if sparse else float("nan"),
    }


def per_layer_density(t: Trace) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name in {*t.gate_layers, *t.lasso_layers}:
        d: dict[str, float] = {}
        if name in t.gate_layers:
            d["gate"] = float(np.mean([it.gates[name].mean() for it in t.iterations]))
        if name in t.lasso_layers:
            d["weight_group"] = float(np.mean([it.wgroups[name].mean() for it in t.iterations]))
        out[name] = d
    return out


def summary(t: Trace) -> dict[str, Any]:
    dens = per_layer_density(t)
    layers = []
    for lay in t.graph.layers:
        row: dict[str, Any] = {
            "name": lay.name,
            "kind": lay.kind,
            "in_shape": list(lay.in_shape),
            "out_shape": list(lay.out_shape),
            "macs_fwd": lay.macs_fwd,
        }
        if lay.kernel is not None:
            row.update(kernel=list(lay.kernel), stride=list(lay.stride), groups=lay.groups)
        if lay.name in dens:
            row["density"] = dens[lay.name]
        layers.append(row)
    return {
        "model": t.graph.model_name,
        "input_shape": list(t.graph.input_shape),
        "batch": t.batch,
        "iterations": len(t.iterations),
        "has_codes": t.codes is not None,
        "layers": layers,
        "macs_fwd_per_image": t.graph.macs_fwd_per_image,
        "macs_train_per_image_dense": t.graph.macs_train_per_image_dense,
        "measured": measured(t),
        "meta": t.meta,
    }
