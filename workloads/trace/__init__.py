"""Sparsity traces: the file format, synthetic traces, training capture and summaries."""

from workloads.trace.accounting import GateInfo, StepMacs, step_macs
from workloads.trace.format import (
    SCHEMA_VERSION,
    IterationRecord,
    TensorCodes,
    Trace,
    TraceError,
    load_trace,
    save_trace,
)
from workloads.trace.summary import measured, summary
from workloads.trace.synth import DENSITY_KEYS, synthesize

__all__ = [
    "DENSITY_KEYS",
    "SCHEMA_VERSION",
    "GateInfo",
    "IterationRecord",
    "StepMacs",
    "TensorCodes",
    "Trace",
    "TraceError",
    "load_trace",
    "measured",
    "save_trace",
    "step_macs",
    "summary",
    "synthesize",
]
