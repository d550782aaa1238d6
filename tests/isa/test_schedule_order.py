"""Scheduling order inside the compiled steps: what the work packer needs comes first."""

from __future__ import annotations

from functools import cache

import pytest

from isa.compiler import compile_graph
from isa.spec import BUFFER, UNIT
from simulator.config import load_config
from workloads.graph import graph_for

MSK = BUFFER.values.index("msk")


@cache
def program(model: str):
    return compile_graph(graph_for(model), load_config("ref28"), 2)


def _steps(prog, phase: str):
    """Per (layer, image-loop step) of `phase`: the notes of the step's slot loads (gsk set:
    an image's transfers), in order, cut at the op that consumes them (tc / sfu)."""
    out: dict[str, list[list[str]]] = {}
    cur: list[str] = []
    for ins, a in zip(prog.instructions, prog.annotations, strict=True):
        if a["phase"] != phase:
            continue
        if ins.op == "dma.ld" and ins["gsk"]:
            cur.append(a["note"])
        elif ins.op in ("tc.bwd", "tc.wgr", "sfu") and cur:
            out.setdefault(a["layer"], []).append(cur)
            cur = []
    return out


@pytest.mark.parametrize("model", ["resnet20", "vgg7"])
@pytest.mark.parametrize("phase", ["wu", "bp"])
def test_gate_mask_loads_come_before_the_operands(model, phase):
    """In every gated weight-update and data-gradient step the gate mask is the step's first
    load, so the tensor cores' work packer can read it and plan while the operands load."""
    steps = _steps(program(model), phase)
    gated = [s for ss in steps.values() for s in ss if "gate mask" in s]
    assert gated, "the sparse program has gated steps"
    for s in gated:
        assert s[0] == "gate mask", s
        assert len(s) > 1  # operands follow


@pytest.mark.parametrize("phase", ["wu", "bp"])
def test_the_gate_mask_load_waits_for_the_free_slot(phase):
    """The gate mask, the step's first load, is the one that waits for a free slot (FREE)
    and goes to the mask buffer; the step's last load still signals LOADED."""
    from isa.compiler.emitter import FREE

    prog = program("resnet20")
    masks = [
        ins
        for ins, a in zip(prog.instructions, prog.annotations, strict=True)
        if a["phase"] == phase and ins.op == "dma.ld" and a["note"] == "gate mask"
    ]
    assert masks
    assert all(ins["buf"] == MSK and ins.wt == FREE for ins in masks)


def test_the_cores_do_not_wait_for_the_operands_of_the_sfu_work_on_dx():
    """ResNet-20's data-gradient steps that normalise dY before the tensor cores and work on
    dX after them (merge, gradient sums): the operands of the work on dX are the step's last
    loads and signal LATE, not LOADED; the SFU waits for them (`sync sfu`) only after tc.bwd,
    so the cores start once dY and the norm's operands are in. (A step ends with the store or
    `sync st` that frees its slot.)"""
    from isa.compiler.emitter import FREE, LATE, LOADED, NORM_IN

    # one image: the image loop in step order (batches of two or more software-pipeline it,
    # `bp_pipelined`, and a step's ops are no longer contiguous)
    prog = compile_graph(graph_for("resnet20"), load_config("ref28"), 1)
    sfu = UNIT.values.index("sfu")
    steps = 0
    step: list = []
    for ins, a in zip(prog.instructions, prog.annotations, strict=True):
        if a["phase"] != "bp":
            continue
        step.append((ins, a["note"]))
        if not (ins.op == "dma.st" and ins.sg) and not (ins.op == "sync" and ins.sg == FREE):
            continue
        ops = [i.op for i, _ in step]
        lds = [(i, n) for i, n in step if i.op == "dma.ld" and i["gsk"]]
        if "tc.bwd" in ops and any(i.sg == LATE for i, _ in lds):
            steps += 1
            sg = [i.sg for i, _ in lds]
            assert sg.count(LOADED) == 1 and sg[-1] == LATE
            # the norm's input x is the last load the cores (through norm_bwd) wait for:
            # NORM_IN where a ReLU's backward before the norm waits only for LOADED
            x = sg.index(NORM_IN) if NORM_IN in sg else sg.index(LOADED)
            assert lds[x][1].startswith("input of ")
            tc = ops.index("tc.bwd")
            waits = [j for j, (i, _) in enumerate(step) if i.op == "sync" and i.wt == LATE]
            assert len(waits) == 1 and waits[0] > tc and step[waits[0]][0]["unit"] == sfu
            assert step[waits[0] + 1][0].op == "sfu"
        step = []
    assert steps == 18  # conv1 and conv2 of every residual block
