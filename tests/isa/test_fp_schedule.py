"""Forward-pass scheduling: what the tensor cores wait for between images."""

from __future__ import annotations

from functools import cache

from isa.compiler import compile_graph
from isa.compiler.emitter import DONE, STAT
from isa.compiler.tiling import ConvShape, fp_tiling
from isa.spec import UNIT
from simulator.config import load_config
from workloads.graph import graph_for

TC = UNIT.values.index("tc")


@cache
def program(model: str):
    return compile_graph(graph_for(model), load_config("ref28"), 2)


def _fp_blocks(prog) -> dict[str, list[tuple]]:
    """Per forward layer: its (instruction, note) pairs in program order."""
    out: dict[str, list[tuple]] = {}
    for ins, a in zip(prog.instructions, prog.annotations, strict=True):
        if a["phase"] == "fp":
            out.setdefault(a["layer"], []).append((ins, a["note"]))
    return out


def _lagged(prog) -> dict[str, list[tuple]]:
    """The forward convs whose SFU takes the previous image's statistics (waits STAT)."""
    return {
        name: ops
        for name, ops in _fp_blocks(prog).items()
        if any(i.op == "sfu" and i.wt == STAT for i, _ in ops)
    }


def test_lagged_statistics_do_not_hold_the_tensor_core_queue():
    """STAT (the previous image's output tile is complete) comes from the step's first
    store, which waits for the tensor cores (DONE); no `sync tc` in the image loop holds
    the next image's first pass behind this image's output drain. (VGG-7 normalises no
    conv input on load, so ResNet-20 only: conv1 and conv2 of every residual block.)"""
    lagged = _lagged(program("resnet20"))
    assert len(lagged) == 18
    for name, ops in lagged.items():
        syncs = [i for i, _ in ops if i.op == "sync" and i["unit"] == TC and i.sg == STAT]
        assert not syncs, name
        signals = [i for i, _ in ops if i.op == "dma.st" and i.sg == STAT]
        assert signals, name
        assert all(i.wt == DONE for i in signals), name


def test_gated_lagged_steps_store_the_gate_map_first():
    """In a gated conv with lagged statistics the short gate-map store is the step's first:
    it waits for the tensor cores and its completion signals STAT, so the statistics follow
    the output tile closely."""
    n = 0
    for name, ops in _lagged(program("resnet20")).items():
        if not any(i.op == "cg.gate" for i, _ in ops):
            continue
        step: list = []
        for ins, note in ops:
            if ins.op == "dma.st":
                step.append((ins, note))
            elif step and ins.op in ("dma.ld", "sfu", "tc.fwd"):
                assert step[0][1] == "gate map" and step[0][0].sg == STAT, name
                assert {nt for _, nt in step} >= {"output rows", "gate map"}, name
                n += 1
                step = []
    assert n > 0


def test_a_1x1_stride2_conv_takes_whole_images():
    """A 1x1 stride-2 projection reads every other input row, so row tiles move the
    fewest bytes; but each step pays the DRAM round trips, so the forward tiling takes
    whole images (the bandwidth-delay product per step outweighs the skipped rows)."""
    cfg = load_config("ref28")
    sh = ConvShape("proj", 16, 32, 32, 32, 1, 1, 2, 0, 1)
    assert fp_tiling(sh, cfg, gated=True, reserved_msk=0).pn == sh.oh
    # without a DRAM latency the least traffic wins: one output row per step
    d = cfg.dma.model_copy(update={"dram_latency_cycles": 0})
    assert fp_tiling(sh, cfg.model_copy(update={"dma": d}), gated=True, reserved_msk=0).pn == 1


def test_resnet20_projections_run_one_step_per_image():
    blocks = _fp_blocks(program("resnet20"))
    for name, oh in (("layer2.0.shortcut.0", 16), ("layer3.0.shortcut.0", 8)):
        passes = [i for i, _ in blocks[name] if i.op == "tc.fwd"]
        assert passes and all(i["pn"] == oh for i in passes), name
