"""The sparsity the timing model consumes: one training step's gate bitmaps, weight-group
bitmaps and gradient-skip flags, keyed by layer name.

A small interface of our own so the model does not depend on the trace file's layout;
`masks_from_trace` adapts a `workloads.trace.Trace` (its first captured iteration by default).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from workloads.trace import Trace


@dataclass(frozen=True)
class SparsityMasks:
    """True = work issued / group nonzero; `skip` True = the image skips BP and WU."""

    batch: int
    gates: dict[str, np.ndarray]  # (batch, ceil(C_out / channel_group), H_out, W_out) bool
    wgroups: dict[str, np.ndarray]  # (C_out, ceil(C_in / group_in)) bool
    skip: np.ndarray  # (batch,) bool
    group_in: int = 8
    channel_group: int = 16
    source: dict = field(default_factory=dict)  # provenance: trace path/hash, seeds, densities

    def digest(self) -> str:
        """SHA-256 over every mask, in name order (identifies the masks in manifests)."""
        h = hashlib.sha256()
        h.update(f"{self.batch}/{self.group_in}/{self.channel_group}".encode())
        for kind, d in (("gate", self.gates), ("wgroup", self.wgroups)):
            for name in sorted(d):
                h.update(f"{kind}.{name}\0".encode())
                h.update(np.packbits(np.asarray(d[name], bool)).tobytes())
        h.update(np.packbits(np.asarray(self.skip, bool)).tobytes())
        return h.hexdigest()

    def densities(self) -> dict[str, float]:
        """Fraction of gate bits set, of nonzero weight groups, and of skipped images."""
        g = [np.asarray(m, bool) for m in self.gates.values()]
        w = [np.asarray(m, bool) for m in self.wgroups.values()]
        return {
            "gate": float(sum(m.sum() for m in g) / max(1, sum(m.size for m in g))),
            "weight_group": float(sum(m.sum() for m in w) / max(1, sum(m.size for m in w))),
            "grad_skip": float(np.mean(self.skip)) if self.skip.size else 0.0,
        }


def masks_from_trace(trace: Trace, iteration: int = 0) -> SparsityMasks:
    """The masks of one captured iteration of a trace."""
    if not 0 <= iteration < len(trace.iterations):
        raise ValueError(
            f"iteration {iteration} out of range: the trace holds {len(trace.iterations)}"
        )
    it = trace.iterations[iteration]
    groups = {info.channel_group for info in trace.gate_layers.values()}
    if len(groups) > 1:
        raise ValueError(f"gated layers use different channel groups {sorted(groups)}")
    return SparsityMasks(
        batch=trace.batch,
        gates={k: np.asarray(v, bool) for k, v in it.gates.items()},
        wgroups={k: np.asarray(v, bool) for k, v in it.wgroups.items()},
        skip=np.asarray(it.skip, bool),
        group_in=trace.group_in,
        channel_group=groups.pop() if groups else 16,
        source={"kind": trace.meta.get("kind", "unknown"), "iteration": iteration},
    )
