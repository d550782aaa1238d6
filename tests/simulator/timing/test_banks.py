"""Buffer bank conflicts: the degree of same-cycle accesses, and the cycles they cost in the
simulated program, on a pattern that must conflict and one that must not."""

from __future__ import annotations

import numpy as np
import pytest
import torch.nn as nn

from isa.compiler import compile_graph
from simulator.config import load_config
from simulator.timing import prepare, simulate
from simulator.timing.banks import conflict_degree, pair_degree, sfu_degree, split_degree
from simulator.timing.masks import SparsityMasks
from workloads.graph import extract_graph, graph_for


def test_conflict_degree_by_hand():
    # 16 banks of 16-byte words: a bank row is 256 bytes
    assert conflict_degree([0, 256, 512, 768], 16, 16) == 4  # four words, one bank
    assert conflict_degree([0, 16, 32, 48], 16, 16) == 1  # four banks
    assert conflict_degree([0, 4, 8, 12], 16, 16) == 1  # one word, broadcast
    assert conflict_degree([0, 256, 16], 16, 16) == 2
    assert conflict_degree([0, 64], 16, 4) == 2  # 4 banks: 64 bytes per bank row


def test_split_degree_interleaved_pixels():
    # cores read consecutive pixels: a pixel stride of one bank row puts them in one bank
    assert split_degree(256, 4, 16, 16) == 4
    assert split_degree(64, 4, 16, 16) == 1  # banks 0, 4, 8, 12
    assert split_degree(128, 4, 16, 16) == 2  # banks 0, 8, 0, 8
    assert split_degree(256, 1, 16, 16) == 1  # one core: no partner


def test_sfu_two_reads_in_one_bank_conflict():
    n = 3
    a = np.zeros(n, np.int64)
    geom = {0: (16, 16), 2: (16, 16)}
    same = sfu_degree([(0, a), (0, a + 4096)], [(0, a + 8192)], geom)
    assert same.tolist() == [2, 2, 2]  # reads share a port; the write has its own
    skewed = sfu_degree([(0, a), (0, a + 4096 + 16)], [(0, a + 8192)], geom)
    assert skewed.tolist() == [1, 1, 1]
    other_buf = sfu_degree([(0, a), (2, a + 4096)], [(0, a)], geom)
    assert other_buf.tolist() == [1, 1, 1]
    in_place = sfu_degree([(0, a)], [(0, a)], geom)  # 1R1W: read and write ports differ
    assert in_place.tolist() == [1, 1, 1]


def test_pair_degree_is_sfu_degree_of_two_reads_in_one_buffer():
    """The model's vectorised SFU degree (`pair_degree`, operands a and b in one buffer, one
    write) equals `sfu_degree` on the same accesses: same word (a broadcast), same bank at
    another word, other banks; 4 banks of 16-byte words so that banks repeat often."""
    rng = np.random.default_rng(3)
    a = rng.integers(0, 1024, 500)
    b = np.concatenate([a[:50], rng.integers(0, 1024, 450)])  # some on a's very word
    want = sfu_degree([(0, a), (0, b)], [(0, rng.integers(0, 1024, 500))], {0: (16, 4)})
    got = pair_degree(a, b, 16, 4)
    assert np.array_equal(got, want)
    assert set(want.tolist()) == {1, 2}


class _Conv(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, 16, 1, bias=False)
        self.fc = nn.Linear(16 * 4 * 4, 10, bias=False)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


def _tc_bank_stall(c: int) -> tuple[int, int]:
    """(forward bank stall cycles of the tensor cores, conflict-free cycles of the same op) for
    a 1x1 conv with 16 outputs (one lane group: four cores split the pixels) on c channels."""
    cfg = load_config("ref28")
    g = extract_graph(_Conv(c), (c, 4, 4), f"conv{c}")
    prep = prepare(compile_graph(g, cfg, 2), cfg)
    masks = SparsityMasks(batch=2, gates={}, wgroups={}, skip=np.zeros(2, bool))
    res = simulate(prep, masks, "dense")
    conv_fwd = [op for op in prep.tc_ops if op.layer == "conv" and op.op == "tc.fwd"]
    assert conv_fwd
    return res.unit_stall["tc"].get("bank", 0), int(prep.bank[conv_fwd[0].execs].max())


def test_streamed_operand_one_bank_row_apart_conflicts():
    # 256 input channels: consecutive pixels are 256 bytes apart, all in one bank: 4-way
    stall, degree = _tc_bank_stall(256)
    assert degree == 4
    assert stall > 0


def test_streamed_operand_in_distinct_banks_does_not_conflict():
    # 16 input channels: consecutive pixels in consecutive banks
    stall, degree = _tc_bank_stall(16)
    assert degree == 1
    assert stall == 0


def test_compiler_skews_two_operand_sfu_passes():
    """Residual adds and error merges read two tiles in the same cycles; the compiler offsets
    the second by a word, so ResNet-20's SFU passes never conflict."""
    cfg = load_config("ref28")
    prep = prepare(compile_graph(graph_for("resnet20"), cfg, 2), cfg)
    sfu = np.array([prep.compiled.instructions[i].op == "sfu" for i in prep.stream.index])
    assert sfu.any()
    assert (prep.bank[sfu] == 1).all()


@pytest.mark.parametrize("mode", ["dense", "all"])
def test_bank_stall_is_reported_not_busy(mode):
    cfg = load_config("ref28")
    g = extract_graph(_Conv(256), (256, 4, 4), "conv256")
    prep = prepare(compile_graph(g, cfg, 2), cfg)
    masks = SparsityMasks(batch=2, gates={}, wgroups={}, skip=np.zeros(2, bool))
    res = simulate(prep, masks, mode)
    u = "tc"
    total = res.unit_busy[u] + sum(res.unit_stall[u].values()) + res.unit_idle[u]
    assert total >= res.cycles - 1
    assert res.unit_busy[u] > 0 and res.unit_stall[u]["bank"] > 0
