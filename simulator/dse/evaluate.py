"""Evaluating one sweep point: the unit of work shipped to a process pool or Dask worker.

Arguments and results are plain JSON-able data so any worker (another process, another
machine) can run them without sharing objects with the caller.
"""

from __future__ import annotations

import time
from typing import Any

from simulator.dse.config import SruPoint, SweepConfig
from simulator.dse.hardware import evaluate_hardware
from simulator.dse.numeric import evaluate_numeric
from simulator.dse.training import evaluate_training


def limit_threads() -> None:
    """One compute thread per worker: the pool provides the parallelism."""
    import numba

    numba.set_num_threads(1)


def evaluate_point(point_data: dict[str, Any], config_data: dict[str, Any]) -> dict[str, Any]:
    """All results of one point: numerical quality (and, where available, training and
    hardware figures), with the point's identity and the time it took."""
    limit_threads()
    cfg = SweepConfig.model_validate(config_data)
    point = SruPoint.model_validate(point_data)
    start = time.perf_counter()
    row: dict[str, Any] = {
        "key": point.key(cfg),
        "label": point.label,
        "point": point.model_dump(mode="json"),
        "numeric": evaluate_numeric(point, cfg.numeric_samples, nist_bits=cfg.nist_bits),
    }
    if cfg.training.enabled:
        row["training"] = evaluate_training(point, cfg.training)
    if cfg.hardware:
        row["hardware"] = evaluate_hardware(point, cfg.hw_config)
    row["seconds"] = time.perf_counter() - start
    return row
