"""Turn a training run (workloads.recipe.train.TrainResult) into a Trace."""

from __future__ import annotations

from typing import Any

import numpy as np

from simulator.numerics import encode
from workloads.trace.format import IterationRecord, TensorCodes, Trace


def trace_from_training(result: Any, command: str = "") -> Trace:
    """Masks of the captured iterations, FP8 codes of the recorded one, provenance metadata."""
    cfg = result.config
    its = tuple(
        IterationRecord(c.step, c.epoch, c.gates, c.wgroups, c.skip) for c in result.captured
    )
    batch = its[-1].skip.shape[0]
    # Only full batches can be stored (a trace has one batch size); a short final batch is
    # dropped in favour of the full ones before it.
    its = tuple(it for it in its if it.skip.shape[0] == batch)
    lasso_layers = tuple(its[-1].wgroups) if its else ()
    codes = None
    tens = result.tensors
    if tens is not None and tens.inputs.shape[0] == batch:
        q = cfg.quant
        fmts = (
            {"input": q.activation_format, "weight": q.weight_format, "error": q.error_format}
            if q.enabled
            else {"input": "fp32", "weight": "fp32", "error": "fp32"}
        )
        codes = TensorCodes(
            step=tens.step,
            formats=fmts,
            inputs=encode(tens.inputs, fmts["input"]),
            targets=tens.targets.astype(np.int64),
            weights={n: encode(w, fmts["weight"]) for n, w in tens.weights.items()},
            errors={n: encode(e, fmts["error"]) for n, e in tens.errors.items()},
        )
    last = result.history[-1] if result.history else None
    meta = {
        "kind": "trained",
        "command": command,
        "seed": cfg.seed,
        "data": result.data_name,
        "epoch": last.epoch if last else 0,
        "steps": result.steps,
        "accuracy": last.test_accuracy if last else None,
        "history": [vars(h) for h in result.history],
        "recipe": cfg.to_dict(),
        "error_scale": "errors are gradients of the batch-summed loss (not divided by batch)",
    }
    return Trace(
        graph=result.graph,
        batch=batch,
        gate_layers=dict(result.gate_info),
        group_in=cfg.lasso.group_in,
        lasso_layers=lasso_layers,
        iterations=its,
        codes=codes,
        meta=meta,
    )
