"""Step layouts of the tensor-core ops (`isa.spec`: tc.fwd, tc.bwd): which operands share a
dp_width-wide step of the dot-product tree. One definition for the functional executor (which
computes their numerics) and the cycle model (which counts their steps); the PyTorch reference
re-derives them on its own, as a check."""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=64)
def aligned_chunks(c0: int, cn: int, dp: int) -> np.ndarray:
    """tc.fwd: the step layout of channels [c0, c0 + cn) within a tap: chunks of the
    dp-aligned channel blocks (c // dp), each zero-padded to dp; per slot the channel's
    offset from c0, or -1 for padding. Aligned ops (c0 a multiple of dp) get the channels in
    order, then the padding; a pass starting inside a block (a conditional pass after a base
    pass of 4 channels) starts with that block's part alone."""
    out: list[int] = []
    c = c0
    while c < c0 + cn:
        end = min(c0 + cn, (c // dp + 1) * dp)
        out += list(range(c - c0, end - c0)) + [-1] * (dp - (end - c))
        c = end
    lay = np.array(out, np.int64)
    lay.setflags(write=False)
    return lay


@lru_cache(maxsize=256)
def compacted_k(nonzero: tuple[bool, ...], seg: int, dp: int) -> np.ndarray:
    """tc.bwd with weight sparsity: the step layout over a tile's output channels k for the
    lanes of one Lasso group of input channels: per segment of `seg` channels (a gate group
    where gating applies, else the whole tile) the k whose group is nonzero, in order,
    zero-padded to a multiple of dp (per slot the k offset, or -1)."""
    out: list[int] = []
    for s0 in range(0, len(nonzero), seg):
        ks = [k for k in range(s0, min(s0 + seg, len(nonzero))) if nonzero[k]]
        out += ks + [-1] * (-len(ks) % dp)
    lay = np.array(out, np.int64)
    lay.setflags(write=False)
    return lay
