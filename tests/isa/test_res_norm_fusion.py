"""The backward of a residual block's second batch norm (and of a projection shortcut's norm)
runs in the convolutions' data-gradient blocks (`GraphPlan.bp_res_stat`, `bp_norm_apply`
without a ReLU): the gradient sums on the add's error in the next block's first conv, which
merges that error (or in the ReLU's own backward block where it merges nothing, before the
average pool); norm_bwd on the add's error as the norm's conv loads it. The stem's ReLU
is merged in the first block's conv1 like the block outputs, which also takes the stem
norm's sums; the norm keeps its error pass and update."""

from __future__ import annotations

from functools import cache

import pytest
import torch
from torch import nn

from isa.analysis import _multiplicities, check_tokens
from isa.compiler import compile_graph
from isa.spec import SFU_OP
from simulator.config import load_config
from workloads.graph import graph_for

BATCH = 2


@cache
def resnet20(sparse: bool):
    return compile_graph(graph_for("resnet20"), load_config("ref28"), BATCH, sparse=sparse)


def sfu_ops(prog) -> list[tuple[str, str, str, int]]:
    """(layer, phase, sfu op, executions) of every sfu instruction."""
    mult = _multiplicities(prog.instructions)
    return [
        (a["layer"], a["phase"], SFU_OP.values[ins["op"]], mult[i])
        for i, (ins, a) in enumerate(zip(prog.instructions, prog.annotations, strict=True))
        if ins.op == "sfu"
    ]


def sums_per_image(prog, host: str) -> dict[str, int]:
    """Executions of the norm_bwd_stat ops of `host`'s backward, per norm (from the note)."""
    mult = _multiplicities(prog.instructions)
    out: dict[str, int] = {}
    for i, (ins, a) in enumerate(zip(prog.instructions, prog.annotations, strict=True)):
        stat = ins.op == "sfu" and SFU_OP.values[ins["op"]] == "norm_bwd_stat"
        if stat and a["layer"] == host and a["phase"] == "bp":
            bn = a["note"].removeprefix("gradient sums of ")
            out[bn] = out.get(bn, 0) + mult[i]
    return out


@pytest.mark.parametrize("sparse", [True, False])
def test_second_norm_backward_runs_in_the_convs(sparse):
    """ResNet-20: no bn2 / shortcut.1 backward block is left; conv2 (and the shortcut conv)
    apply norm_bwd, the next block's conv1 takes the sums, one norm_bwd_stat per image and
    norm, after its merge; the last block's in the backward block of its ReLU (before the
    average pool: one reader, nothing to merge)."""
    prog = resnet20(sparse)
    blocks = {(a["layer"], a["phase"]) for a in prog.annotations}
    second = (".bn2", "shortcut.1")
    bp_norms = {layer for layer, phase in blocks if phase == "bp" and layer.endswith(second)}
    assert bp_norms == set()
    ops = sfu_ops(prog)
    have = {(layer, phase, op) for layer, phase, op, _ in ops}
    for conv, bn, host in (
        ("layer1.0.conv2", "layer1.0.bn2", "layer1.1.conv1"),
        ("layer1.2.conv2", "layer1.2.bn2", "layer2.0.conv1"),
        ("layer2.0.conv2", "layer2.0.bn2", "layer2.1.conv1"),
        ("layer2.0.shortcut.0", "layer2.0.shortcut.1", "layer2.1.conv1"),
        ("layer3.1.conv2", "layer3.1.bn2", "layer3.2.conv1"),
        ("layer3.2.conv2", "layer3.2.bn2", "layer3.2.relu2"),
    ):
        assert (conv, "bp", "norm_bwd") in have
        assert (bn, "wu") in blocks and f"bngrad:{bn}" in prog.memmap
        assert sums_per_image(prog, host).get(bn) == BATCH
    # bn2 and the shortcut's norm (the dense program's pipelined image loop places the last
    # image's op after the loop: executions are counted over the instructions)
    assert sums_per_image(prog, "layer2.1.conv1") == {
        "layer2.0.bn2": BATCH, "layer2.0.shortcut.1": BATCH
    }  # fmt: skip
    # conv2 also keeps the sums of bn1 on its dX
    assert ("layer1.0.conv2", "bp", "norm_bwd_stat") in have
    # the stem: the ReLU's merge and the norm's sums in layer1.0.conv1, the norm's error pass
    assert ("relu", "bp") not in blocks and ("bn1", "bp") in blocks
    assert ("layer1.0.conv1", "bp", "add") in have
    assert ("layer1.0.conv1", "bp", "norm_bwd_stat") in have
    assert ("bn1", "bp", "norm_bwd") in have and ("bn1", "bp", "norm_bwd_stat") not in have
    assert "bngrad:bn1" in prog.memmap and "err:bn1" in prog.memmap.on_chip
    assert check_tokens(prog.instructions) == {}


class TinyResBN(nn.Module):
    """Two residual blocks with batch norm, the second with a projection shortcut, and a third
    whose input is the second's output: the second norms of the first two blocks (and the
    shortcut's) are fused into the next block's first conv."""

    def __init__(self) -> None:
        super().__init__()

        def bn(c: int) -> nn.BatchNorm2d:
            return nn.BatchNorm2d(c)

        self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, padding=1, bias=False), bn(16)
        self.b1c1, self.b1n1 = nn.Conv2d(16, 16, 3, padding=1, bias=False), bn(16)
        self.b1c2, self.b1n2 = nn.Conv2d(16, 16, 3, padding=1, bias=False), bn(16)
        self.b2c1, self.b2n1 = nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), bn(32)
        self.b2c2, self.b2n2 = nn.Conv2d(32, 32, 3, padding=1, bias=False), bn(32)
        self.b2s, self.b2sn = nn.Conv2d(16, 32, 1, stride=2, bias=False), bn(32)
        self.b3c1, self.b3n1 = nn.Conv2d(32, 32, 3, padding=1, bias=False), bn(32)
        self.b3c2, self.b3n2 = nn.Conv2d(32, 32, 3, padding=1, bias=False), bn(32)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(32, 10, bias=False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.uniform_(m.weight, 0.5, 1.5)
                nn.init.uniform_(m.bias, -0.2, 0.2)
        nn.init.normal_(self.fc.weight, std=0.3)

    def forward(self, x):
        r = self.relu(self.bn1(self.conv1(x)))
        y = self.b1n2(self.b1c2(self.relu(self.b1n1(self.b1c1(r)))))
        r = self.relu(y + r)
        y = self.b2n2(self.b2c2(self.relu(self.b2n1(self.b2c1(r)))))
        r = self.relu(y + self.b2sn(self.b2s(r)))
        y = self.b3n2(self.b3c2(self.relu(self.b3n1(self.b3c1(r)))))
        r = self.relu(y + r)
        return self.fc(self.flatten(self.pool(r)))


@pytest.mark.parametrize("rounding", ["rne", "sr"])
def test_tiny_residual_norms_fused_bit_exact(rounding):
    """The functional executor runs the fused program and the independent reference
    reproduces every updated weight and norm parameter code (RNE dense, SR with every
    sparsity mode)."""
    from simulator.functional import Modes
    from simulator.functional.compare import config_for, prepare_model, verify_step

    torch.manual_seed(0)
    step = prepare_model(TinyResBN(), (3, 8, 8), "tinyresbn", 3, config_for(rounding), seed=1)
    g, prog = step.graph, step.prog
    blocks = {(a["layer"], a["phase"]) for a in prog.annotations}
    names = {la.name for la in g.layers if la.kind == "batchnorm"}
    # the fused norms keep only their update block
    fused = {n for n in names if (n, "bp") not in blocks}
    assert {"b1n2", "b2n2", "b2sn", "b3n2"} <= fused, sorted(blocks)
    assert ("relu", "bp") not in blocks  # the stem's ReLU, merged in b1c1
    ops = {(layer, phase, op) for layer, phase, op, _ in sfu_ops(prog)}
    assert ("b1c1", "bp", "norm_bwd_stat") in ops and ("bn1", "bp", "norm_bwd_stat") not in ops
    assert ("b2c1", "bp", "norm_bwd_stat") in ops and ("b3c1", "bp", "norm_bwd_stat") in ops
    assert ("b2s", "bp", "norm_bwd") in ops and ("b1c2", "bp", "norm_bwd") in ops
    assert ("relu#6", "bp", "norm_bwd_stat") in ops and ("b3c2", "bp", "norm_bwd") in ops
    assert check_tokens(prog.instructions) == {}
    modes = Modes() if rounding == "rne" else Modes(True, True, True)
    res = verify_step(step, modes)
    assert res["ok"], res["layers"]
    assert all(la["mismatched_codes"] == 0 for la in res["layers"])
