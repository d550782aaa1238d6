"""The tensor core's sparse step layouts (isa.spec): what the lanes skip is what the timing
model counts, and the reference, written independently, computes the same bits.

- tc.fwd: within a tap, chunks of the dp-aligned channel blocks (a conditional pass that
  starts inside a block takes that block's rest alone), so a zero Lasso group is whole chunks.
- tc.bwd with weight sparsity: the lanes of one group of input channels take the output
  channels of their nonzero groups, compacted, per gate-group segment.
- tc.wgr with gating: each gate group reduces over its open pixels, compacted."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from isa.layouts import aligned_chunks, compacted_k
from simulator.functional import Modes
from simulator.functional.compare import prepare_model, verify_step
from tests.simulator.functional.test_verify import _sparse_cfg


def test_aligned_chunks_layout():
    assert aligned_chunks(0, 16, 8).tolist() == list(range(16))
    assert aligned_chunks(0, 4, 8).tolist() == [0, 1, 2, 3] + [-1] * 4
    # a conditional pass from channel 4: the rest of block 0 alone, then block 1
    assert aligned_chunks(4, 12, 8).tolist() == [0, 1, 2, 3] + [-1] * 4 + list(range(4, 12))
    assert aligned_chunks(1, 9, 8).tolist() == list(range(7)) + [-1] + [7, 8] + [-1] * 6


def test_compacted_k_layout():
    nz = (True, False, True, True) + (False,) * 4 + (True,) * 9 + (False,) * 7
    # one segment: the nonzero k in order, padded to whole chunks
    one = compacted_k(nz, 24, 8).tolist()
    assert one == [0, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 16] + [-1] * 4
    # gate-group segments of 16: no chunk mixes two segments
    seg = compacted_k(nz, 16, 8).tolist()
    assert seg == [0, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15] + [-1] * 5 + [16] + [-1] * 7
    assert compacted_k((False,) * 16, 16, 8).tolist() == []


def _zero_groups(model, frac: float, seed: int) -> int:
    """Zero a fraction of the Lasso groups (1 output x 8 inputs x taps) of every conv with
    at least 16 input channels, scattered, so the step starts with zero groups."""
    g = torch.Generator().manual_seed(seed)
    n = 0
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d) and m.in_channels >= 16:
                k, c = m.weight.shape[:2]
                drop = torch.rand(k, c // 8, generator=g) < frac
                m.weight.view(k, c // 8, -1)[drop] = 0.0
                n += int(drop.sum())
    return n


# weight sparsity alone and with gating: the modes that compact the data-gradient steps
SPARSE_MODES = pytest.mark.parametrize(
    "modes",
    [Modes(wsparse=True), Modes(gating=True, wsparse=True)],
    ids=lambda m: "+".join(k for k, v in vars(m).items() if v),
)


@SPARSE_MODES
def test_compacted_steps_bit_exact(tiny, modes):
    """With zero groups from the start (scattered output channels per input group), the
    data-gradient steps are compacted and, with gating, the weight-gradient steps too; the
    executor and the reference agree bit for bit (a different step layout on either side
    changes roundings, so this fails if the two disagree on it)."""
    model, shape = tiny
    assert _zero_groups(model, 0.4, seed=2) > 0
    step = prepare_model(model, shape, "tiny", 4, _sparse_cfg(), seed=1)
    res = verify_step(step, modes, gate_threshold=0.0)
    assert res["ok"], res["layers"]
    if modes.gating:
        assert all(0.0 < d < 1.0 for d in res["gate_density"].values())


def _zero_groups_alternating(model) -> int:
    """Zero every third output channel's group with the even input groups of every conv with
    at least 16 input channels: the even groups share one step layout, the odd ones (none
    zero) another, so lanes of groups that are not neighbours share a kernel call."""
    n = 0
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d) and m.in_channels >= 16:
                k, c = m.weight.shape[:2]
                drop = torch.zeros(k, c // 8, dtype=torch.bool)
                drop[::3, ::2] = True
                m.weight.view(k, c // 8, -1)[drop] = 0.0
                n += int(drop.sum())
    return n


@SPARSE_MODES
def test_groups_sharing_a_layout_bit_exact(tiny, modes):
    """Input groups with equal layouts (not neighbours) go through one gather and one kernel
    call; the executor still agrees with the reference bit for bit."""
    model, shape = tiny
    assert _zero_groups_alternating(model) > 0
    step = prepare_model(model, shape, "tiny", 4, _sparse_cfg(), seed=1)
    res = verify_step(step, modes, gate_threshold=0.0)
    assert res["ok"], res["layers"]


def test_gate_groups_python_loop_equals_the_single_call(tiny, monkeypatch):
    """tc.wgr's gate groups in Python (the path for rounding rules the RNE kernel does not
    cover) give the same step as `accumulate_gate_groups`: both bit-exact to the reference."""
    import simulator.functional.tensor_core as tcm

    model, shape = tiny
    _zero_groups(model, 0.4, seed=2)
    monkeypatch.setattr(tcm, "accumulate_gate_groups", lambda *a, **k: False)
    step = prepare_model(model, shape, "tiny", 4, _sparse_cfg(), seed=1)
    res = verify_step(step, Modes(gating=True, wsparse=True), gate_threshold=0.0)
    assert res["ok"], res["layers"]
    assert all(0.0 < d < 1.0 for d in res["gate_density"].values())


def _steps(a, b, chunks):
    """FP16 codes of acc (K, R) after dot_product_step over the given pixel chunks:
    a (K, P) dY codes, b (R, P) patch codes."""
    from simulator.numerics import encode
    from simulator.numerics.dot_product import dot_product_step

    acc = encode(np.zeros((a.shape[0], b.shape[0])), "fp16_chip")
    for ch in chunks:
        pa = np.zeros((a.shape[0], 8), np.uint8)
        pb = np.zeros((b.shape[0], 8), np.uint8)
        pa[:, : len(ch)], pb[:, : len(ch)] = a[:, ch], b[:, ch]
        acc = dot_product_step(
            np.broadcast_to(pa[:, None], (*acc.shape, 8)),
            np.broadcast_to(pb[None, :], (*acc.shape, 8)),
            acc,
            "e5m2_chip",
            "rne",
            align_bits=24,
        )
    return acc


def _gated_wgr(ro: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One gated tc.wgr tile (dY at err 0, 256 bytes; its FP16 accumulators at err `ro`,
    starting from zero, not finished): (the accumulators' words after it, the compacted
    chunks' codes, the codes with the pixels in place)."""
    from simulator.config import load_config
    from simulator.functional.sru import SRUs
    from simulator.functional.state import Descriptor, Machine
    from simulator.functional.tensor_core import TensorCore

    rng = np.random.default_rng(7)
    m = Machine.create(load_config("ref28"), 64)
    m.forced_modes = Modes(gating=True)
    tc = TensorCore(m, SRUs("e5m2_chip", 16, machine=m))
    P, kn, cn = 16, 16, 8  # a 4 x 4 tile, one gate group, a 1 x 1 kernel
    d = Descriptor("conv", cn, kn, 4, 4, 1, 1, 1, 0, 1, True, False)
    m.desc[0] = d
    dy = rng.integers(1, 0x7C, (P, kn), dtype=np.uint8) | (rng.integers(0, 2, (P, kn)) << 7).astype(
        np.uint8
    )
    x = rng.integers(1, 0x7C, (P, cn), dtype=np.uint8)
    gate = np.array([1, 0, 1, 1, 0, 1, 0, 0, 1, 1, 0, 1, 1, 1, 0, 1], bool)
    m.view("err", 0, P * kn)[:] = dy.reshape(-1)
    m.view("act", 0, P * cn)[:] = x.reshape(-1)
    m.view("msk", 0, P)[:] = gate
    m.regs[4], m.regs[6] = 0, ro  # dY, accumulators (err); X at act 0, gates at msk 0
    a = {"desc": 0, "rk": 0, "kn": kn, "rc": 0, "cn": cn, "rp": 0, "pn": 4, "rimg": 0,
         "ra": 4, "rb": 0, "ro": 6, "rm": 0, "gm": 0, "acc": 0, "fin": 0}  # fmt: skip
    tc.wgr(a, d)
    got = m.u16("err", ro, kn * cn).reshape(kn, cn)
    open_ = np.flatnonzero(gate)
    dyg = np.where(gate[:, None], dy, 0)
    compact = _steps(dyg.T, x.T, [open_[:8], open_[8:]])
    in_place = _steps(dyg.T, x.T, [np.arange(8), np.arange(8, 16)])
    return got, compact, in_place


def test_weight_gradient_reduces_over_open_pixels_compacted():
    """tc.wgr of a gated layer with gating on: a gate group's accumulators take the open
    pixels in chunks of 8 (compacted), not the tile's pixels with zeros in place; the two
    orders round differently on this tile, so the test tells them apart."""
    got, compact, in_place = _gated_wgr(4096)
    assert np.array_equal(got, compact)
    assert not np.array_equal(compact, in_place)


@pytest.mark.parametrize("ro", [128, 0, 254])
def test_gated_weight_gradient_with_accumulators_over_dy(ro):
    """The accumulators' region overlapping dY (from its start, from halfway, over its last
    two bytes): tc.wgr reads dY
    before it writes, so the result is the non-overlapping tile's. The gate groups' single
    call writes its words while it reads dY, so here it must take the float64 path (where
    it took the words, starting from zero would clear dY first)."""
    got, compact, _ = _gated_wgr(ro)
    assert np.array_equal(got, compact)
