"""Forward conv blocks rotate three or four buffer slots where that many of a step fit
(`buffers.forward_slots`; `Tiling.rotation_bases`, `Emitter.begin_slots`): the image loop is
unrolled so each step's slot is fixed, the slot registers are set (`setr`) to the next slot
after each step, and the functional executor still matches the reference."""

from __future__ import annotations

import itertools
from functools import cache

import pytest
import torch

from isa.compiler import compile_graph
from isa.compiler.emitter import FREE, SLOT
from simulator.config import load_config
from workloads.graph import graph_for


def _cfg(slots: int):
    cfg = load_config("ref28")
    return cfg.model_copy(
        update={"buffers": cfg.buffers.model_copy(update={"forward_slots": slots})}
    )


@cache
def resnet20(batch: int, slots: int):
    return compile_graph(graph_for("resnet20"), _cfg(slots), batch)


def _fp_blocks(prog) -> dict[str, dict]:
    """Per forward conv block: FREE credits, the slot addresses the act register takes in
    order, and the counts of its loops."""
    out: dict[str, dict] = {}
    for ins, a in zip(prog.instructions, prog.annotations, strict=True):
        if a["phase"] != "fp" or "conv" not in a["layer"]:
            continue
        b = out.setdefault(a["layer"], {"free": 0, "act": [], "loops": []})
        if ins.op == "nop" and ins.sg == FREE:
            b["free"] += 1
        elif ins.op == "setr" and ins["rd"] == SLOT["act"]:
            b["act"].append(ins["imm"])
        elif ins.op == "loop":
            b["loops"].append(ins["count"])
    return out


def test_forward_convs_rotate_the_slots_that_fit():
    blocks = _fp_blocks(resnet20(8, 4))
    rotating = {n: b for n, b in blocks.items() if b["free"] > 2}
    assert len(rotating) >= 18  # the residual blocks' convs at least
    for name, b in rotating.items():
        n = b["free"]
        slots = b["act"][0 : n + 1]  # the first slot, then one setr per step
        assert len(set(slots[:n])) == n and slots[n] == slots[0], (name, slots)
        step = sorted(set(slots[:n]))
        assert len({y - x for x, y in itertools.pairwise(step)}) == 1  # equal slots
        assert 8 // n in b["loops"], (name, b["loops"])  # the image loop, n images a turn


def test_two_slots_when_asked():
    blocks = _fp_blocks(resnet20(8, 2))
    assert all(b["free"] <= 2 for b in blocks.values())
    assert not any(len(b["act"]) > 1 for b in blocks.values())  # XOR toggles, no setr


@pytest.mark.parametrize("batch", [5, 9])
def test_rotated_forward_blocks_are_bit_exact(batch):
    """A small residual network with batch norms (every forward conv rotates four slots in
    ref28's buffers), a batch that is not a multiple of four: the executor matches the
    reference code for code, with stochastic rounding and all sparsity modes."""
    from simulator.functional import Modes
    from simulator.functional.compare import config_for, prepare_model, verify_step
    from tests.isa.test_res_norm_fusion import TinyResBN

    torch.manual_seed(0)
    step = prepare_model(TinyResBN(), (3, 8, 8), "tinyresbn", batch, config_for("sr"), seed=1)
    blocks = _fp_blocks(step.prog)
    assert any(b["free"] == 4 for b in blocks.values()), blocks
    res = verify_step(step, Modes(True, True, True))
    assert res["ok"], res["layers"]
