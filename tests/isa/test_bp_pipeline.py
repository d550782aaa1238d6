"""Scheduling of ResNet's data-gradient blocks that normalise dY before the tensor cores and
work on dX after them (`BackwardLowering.bp_mac`): the dense program software-pipelines the
image loop (`bp_pipelined`: the in-order SFU normalises image i+1's dY before it waits for the
cores to finish image i); in every program the ReLU's backward before the norm overlaps the
norm input's load, and the stores after the SFU work on dX run beside the gradient sums."""

from __future__ import annotations

import dataclasses
from functools import cache

import pytest
import torch

from isa.analysis import check_tokens
from isa.compiler import compile_graph
from isa.compiler.emitter import DONE, FREE, LATE, LOADED, NORM_IN, SIDE2, SUMS
from isa.spec import SFU_OP, UNIT
from simulator.config import load_config
from workloads.graph import graph_for

BATCH = 2
SFU, ST = UNIT.values.index("sfu"), UNIT.values.index("st")


@cache
def resnet20(sparse: bool):
    return compile_graph(graph_for("resnet20"), load_config("ref28"), BATCH, sparse=sparse)


def _sfu(ins) -> str:
    return SFU_OP.values[ins["op"]] if ins.op == "sfu" else ""


def _markers(prog) -> dict[str, str]:
    """Per conv of the BP phase whose steps have late loads: in program order, N for the norm
    applied to dY (norm_bwd), T for tc.bwd, P for the start of the SFU work on dX (the `sync`
    waiting for its late loads)."""
    out: dict[str, str] = {}
    for ins, a in zip(prog.instructions, prog.annotations, strict=True):
        if a["phase"] != "bp":
            continue
        if _sfu(ins) == "norm_bwd" and a["note"].startswith("fused "):
            m = "N"
        elif ins.op == "tc.bwd":
            m = "T"
        elif ins.op == "sync" and ins.wt == LATE:
            m = "P"
        else:
            continue
        out[a["layer"]] = out.get(a["layer"], "") + m
    return {k: v for k, v in out.items() if "P" in v}


def _repeats(s: str, unit: str) -> bool:
    return len(s) % len(unit) == 0 and s == unit * (len(s) // len(unit))


def test_the_dense_program_normalises_the_next_image_before_the_work_on_dx():
    """Dense program, two images: image 0's norm and tc.bwd, image 1's norm, then image 0's
    SFU work on dX, image 1's tc.bwd and its work on dX (in step order the work on dX of
    image 0 came before image 1's norm). Conv1 and conv2 of every residual block."""
    marks = _markers(resnet20(False))
    assert len(marks) == 18, sorted(marks)
    for layer, m in marks.items():
        assert _repeats(m, "NTNPTP"), (layer, m)


def test_the_sparse_program_pipelines_with_each_images_parts_in_its_regions():
    """The sparse program pipelines the same way, with each image's parts (front, tensor
    cores, back) and its slot turns in `skipimg` regions of that image: a skipped image's
    parts leave the pipeline, so the next issued image does not wait behind them. Image 1's
    front is placed twice, once in an opposite region (issued where image 0 is skipped)
    and once after image 0's tensor-core work (issued where it is not)."""
    prog = resnet20(True)
    marks = _markers(prog)
    assert len(marks) == 18, sorted(marks)
    for layer, m in marks.items():
        assert m == "NNTNPTP", (layer, m)
    ins = prog.instructions
    inside = [False] * len(ins)
    for i, x in enumerate(ins):
        if x.op == "skipimg":
            inside[i + 1 : i + x["end"]] = [True] * (x["end"] - 1)
    for j, (x, a) in enumerate(zip(ins, prog.annotations, strict=True)):
        if (
            a["phase"] == "bp"
            and a["layer"] in marks
            and (x.op in ("tc.bwd", "xorr") or _sfu(x) == "norm_bwd" or x.args.get("gsk"))
        ):  # the image's own work (`gsk` transfers: its loads and stores)
            assert inside[j], (j, x.op, a["layer"])


def _bp_steps(prog):
    """The BP image-loop steps with a NORM_IN load: (instructions, notes) from the step's
    first load to its norm_bwd."""
    steps, cur = [], []
    for ins, a in zip(prog.instructions, prog.annotations, strict=True):
        if a["phase"] != "bp":
            cur = []
            continue
        if ins.op == "dma.ld" and ins["gsk"] and ins.wt == FREE:
            cur = []
        cur.append((ins, a["note"]))
        if _sfu(ins) == "norm_bwd" and any(i.sg == NORM_IN for i, _ in cur):
            steps.append(cur)
            cur = []
    return steps


@pytest.mark.parametrize("sparse", [True, False])
def test_the_relu_backward_overlaps_the_norm_inputs_load(sparse):
    """Where a ReLU's backward precedes the norm's on dY (conv1 of every residual block), the
    load of the ReLU's output signals LOADED (relu_bwd waits for it) and the load of the
    norm's input x signals NORM_IN, which norm_bwd waits for: the ReLU's backward runs while
    x loads."""
    steps = _bp_steps(resnet20(sparse))
    assert len(steps) >= 9  # conv1 of the nine residual blocks (per image in the dense one)
    for step in steps:
        lds = [(i, n) for i, n in step if i.op == "dma.ld"]
        loaded = [n for i, n in lds if i.sg == LOADED]
        norm_in = [n for i, n in lds if i.sg == NORM_IN]
        assert len(loaded) == 1 and loaded[0].startswith("output of "), loaded
        assert len(norm_in) == 1 and norm_in[0].startswith("input of "), norm_in
        sfu = [i for i, _ in step if i.op == "sfu"]
        assert [_sfu(i) for i in sfu] == ["relu_bwd", "norm_bwd"]
        assert sfu[0].wt == LOADED and sfu[1].wt == NORM_IN


@pytest.mark.parametrize("sparse", [True, False])
def test_the_stores_after_the_work_on_dx_run_beside_the_gradient_sums(sparse):
    """Conv1's SFU work on dX (merge: add, relu_bwd, then the residual norms' norm_bwd_stat):
    add signals SIDE2 itself (no `sync`), relu_bwd signals DONE for the stores, the last
    norm_bwd_stat signals SUMS, and a `sync st` after the stores waits for SUMS and frees the
    slot."""
    prog = resnet20(sparse)
    ins = [(i, a) for i, a in zip(prog.instructions, prog.annotations, strict=True)]
    found = 0
    for j, (i, a) in enumerate(ins):
        if not (a["phase"] == "bp" and _sfu(i) == "add" and a["note"].startswith("merge ")):
            continue
        after = [x for x, _ in ins[j : j + 60]]
        sfu = [x for x in after if x.op == "sfu"]
        n = 2
        while n < len(sfu) and _sfu(sfu[n]) == "norm_bwd_stat":
            n += 1
        if [_sfu(x) for x in sfu[:3]] != ["add", "relu_bwd", "norm_bwd_stat"]:
            continue
        found += 1
        # one norm's sums, or two (a projection shortcut's norm and the block's second)
        assert sfu[0].sg == SIDE2 and sfu[1].sg == DONE and sfu[n - 1].sg == SUMS
        assert all(x.sg == 0 for x in sfu[2 : n - 1])
        sync = next(x for x in after if x.op == "sync" and x.wt == SUMS)
        assert sync["unit"] == ST and sync.sg == FREE
        st = [x for x in after if x.op == "dma.st" and x.wt == DONE]
        assert st and after.index(st[0]) < after.index(sync)
    assert found >= 8  # conv1 of every residual block but the first's, whose add merges no norm


def test_the_pipelined_dense_program_is_bit_exact():
    """The dense program of a small residual network with batch norms (pipelined image loops,
    three images: a hardware loop between the peeled first and last image) runs in the
    functional executor and the independent reference reproduces every updated code."""
    from simulator.functional import Modes
    from simulator.functional.compare import config_for, prepare_model, verify_step
    from tests.isa.test_res_norm_fusion import TinyResBN

    torch.manual_seed(0)
    step = prepare_model(TinyResBN(), (3, 8, 8), "tinyresbn", 3, config_for("sr"), seed=1)
    dense = compile_graph(step.graph, step.cfg, 3, records=True, sparse=False)
    assert any(_repeats(m, "NTNPTP") for m in _markers(dense).values())
    assert check_tokens(dense.instructions) == {}
    res = verify_step(dataclasses.replace(step, prog=dense), Modes())
    assert res["ok"], res["layers"]
    assert all(la["mismatched_codes"] == 0 for la in res["layers"])


@pytest.mark.parametrize(
    "batch, confidence",
    # skipped: images 1-3; image 3; images 0 and 4 (image 1's front from the prologue's
    # opposite region); images 2 and 4 (images 3's and 5's fronts placed ahead)
    [(4, 2.0), (4, 2.6), (5, 2.0), (6, 2.5)],
)
def test_the_pipelined_sparse_program_with_skipped_images_is_bit_exact(batch, confidence):
    """The sparse program of the same network, four images with gradient skipping on and some
    images skipped: their regions are left out of the pipelined loops and the executor still
    matches the reference code for code."""
    from simulator.functional import Modes
    from simulator.functional.compare import config_for, prepare_model, verify_step
    from tests.isa.test_res_norm_fusion import TinyResBN

    torch.manual_seed(0)
    cfg = config_for("sr")
    gsu = cfg.gsu.model_copy(update={"threshold": confidence, "criterion": "confident"})
    cfg = cfg.model_copy(update={"gsu": gsu})
    step = prepare_model(TinyResBN(), (3, 8, 8), "tinyresbn", batch, cfg, seed=1)
    # the loop of B - 2 iterations with a front placed ahead (opposite region), then the last
    inv = [i for i in step.prog.instructions if i.op == "skipimg" and i["inv"]]
    assert len(inv) >= 2 and any(m.endswith("TNPTP") for m in _markers(step.prog).values())
    res = verify_step(step, Modes(gskip=True))
    assert res["ok"], res["layers"]
    assert 0 < res["skipped_images"] < batch
