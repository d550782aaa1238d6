"""The batch-norm operands of `sfu` (isa.spec) as the compiler emits them for ResNet-20."""

import pytest

from isa.compiler import compile_graph
from isa.spec import LAYER_KIND, SFU_OP
from simulator.config import load_config
from workloads import models
from workloads.graph import extract_graph

NORM = {SFU_OP.values.index(n) for n in ("norm_stat", "norm_fwd", "norm_bwd_stat", "norm_bwd")}


@pytest.fixture(scope="module")
def resnet20_prog():
    graph = extract_graph(models.build("resnet20"), models.default_input_shape("resnet20"), "r20")
    return compile_graph(graph, load_config("ref28"), 3)


def test_norm_ops_name_their_channels_and_operands(resnet20_prog):
    prog = resnet20_prog
    desc = {}
    seen = set()
    for ins in prog.instructions:
        if ins.op == "layer":
            desc[ins["desc"]] = ins
        if ins.op != "sfu":
            continue
        op = SFU_OP.values[ins["op"]]
        if ins["op"] in NORM:
            seen.add(op)
            d = desc[ins["desc"]]
            assert LAYER_KIND.values[d["kind"]] == "norm"
            assert d["groups"] == 3  # the batch: N = B h w
            assert ins["ch"] >= 1 and ins["n"] % ins["ch"] == 0
            assert ins["ch"] in (d["c"], d["k"]) or d["c"] % ins["ch"] == 0
            if op == "norm_bwd":
                assert ins["bufc"] == 0  # x in the activation buffer
            if op == "norm_bwd_stat":
                # the statistics in the error buffer, or with the sums in the weight buffer
                # (a merging block's residual norms: its error buffer is full)
                assert ins["bufc"] == 2 or ins["bufc"] == ins["bufo"] == 1
        elif op == "zero" and LAYER_KIND.values[desc[ins["desc"]]["kind"]] == "norm":
            # statistics (FP32 pairs), gradient sums (FP16) or an FP8 activation tile
            assert ins["esz"] in (4, 2) or ins["bufo"] == 0
        else:
            assert ins["ch"] == 0 and ins["pa"] == 0
    assert seen == {"norm_stat", "norm_fwd", "norm_bwd_stat", "norm_bwd"}
