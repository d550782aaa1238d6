"""The packer's items in compact form: gated BP tiles hand `_dynamic_work` a table of lane
steps per pattern of ungated gate groups and an id per (lane group, pixel) instead of every
item's lane steps (`tensor_core._bwd_gated`, `_bwd_items`); the packer's results must be those
of the explicit items, and the kernel's steps and products those of a per-pixel sum."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.timing.tensor_core import TcGeometry, _bwd_gated, _bwd_items, _dynamic_work

GEO = TcGeometry(n_tc=4, lanes=16, dp=8)
DP, TAPS = GEO.dp, 9


def _explicit(bits, per_group, part, share):
    """Per pixel and channel: the steps of every ungated group, summed (the definition)."""
    e_n, _, p_n = bits.shape
    cn = per_group.shape[1]
    seg = -(-per_group // DP) * TAPS  # (Gr, cn)
    steps = np.einsum("egp,gc->epc", bits.astype(np.int64), seg)  # (E, P, cn)
    work = np.zeros((e_n, cn, share), np.int64)
    for j in range(share):
        work[:, :, j] = steps[:, part == j, :].sum(axis=1)
    useful = np.einsum("egp,gc->e", bits.astype(np.int64), per_group) * TAPS
    groups = -(-cn // GEO.lanes)
    items = np.zeros((e_n, groups * p_n, GEO.lanes), np.int64)
    for c in range(cn):
        items[:, (c // GEO.lanes) * p_n + np.arange(p_n), c % GEO.lanes] = steps[:, :, c]
    return work, useful, items


@pytest.mark.parametrize("gr", [1, 3, 10])  # 10 gate groups: two pattern tables
def test_gated_bp_patterns_give_every_items_steps(gr):
    rng = np.random.default_rng(gr)
    e_n, p_n, cn, share = 5, 24, 20, 2
    bits = (rng.random((e_n, gr, p_n)) < 0.5).astype(np.uint8)
    per_group = rng.integers(0, 17, (gr, cn)).astype(np.int64)
    part = np.arange(p_n) % share
    work, useful, pats, table = _bwd_gated(bits, per_group, part, share, DP, TAPS)
    s_tab, s_id = _bwd_items(pats, table, GEO)
    want_work, want_useful, want_items = _explicit(bits, per_group, part, share)
    assert np.array_equal(work, want_work)
    assert np.array_equal(useful, want_useful)
    assert np.array_equal(s_tab[s_id], want_items)
    owner = np.repeat(np.arange(-(-cn // GEO.lanes)), p_n)
    n = np.ones(s_id.shape, np.int64)
    compact = _dynamic_work(n, s_tab, owner, 1, GEO, 3, 4, 9, 16, s_id)
    explicit = _dynamic_work(n, want_items, owner, 1, GEO, 3, 4, 9, 16)
    assert np.array_equal(compact, explicit)
