"""The memory-hazard check joins the ISA's footprints with the timing schedule: compiled
programs have none in any mode, and a program with a dependency token removed has one."""

from __future__ import annotations

import dataclasses

import pytest

from isa.compiler import compile_graph
from simulator.config import load_config
from simulator.run import load_workload
from simulator.timing import MODES
from simulator.timing.hazards import check
from simulator.timing.model import prepare


@pytest.fixture(scope="module")
def cfg():
    return load_config("ref28")


@pytest.mark.parametrize("trace", ["vgg7-tiny", "resnet20-tiny"])
@pytest.mark.parametrize("sparse", [True, False])
def test_compiled_programs_have_no_hazards(cfg, trace, sparse):
    w = load_workload(trace)
    prep = prepare(compile_graph(w.trace.graph, cfg, w.trace.batch, sparse=sparse), cfg)
    for mode in MODES if sparse else ("dense",):
        found = check(prep, w.masks, mode)
        assert not found, f"{trace} {mode}: " + "; ".join(map(str, found[:3]))


def test_a_missing_token_is_a_hazard(cfg):
    """Drop the token between the first forward tile's input load and the tile: the tensor
    core may then read the rows before they arrive (read after write on the act buffer)."""
    w = load_workload("vgg7-tiny")
    prog = compile_graph(w.trace.graph, cfg, w.trace.batch)
    ins = prog.instructions
    t = next(i for i, x in enumerate(ins) if x.op == "tc.fwd" and x.wt)
    ld = max(i for i in range(t) if ins[i].op == "dma.ld" and ins[i].sg == ins[t].wt)
    broken = list(ins)
    broken[t] = dataclasses.replace(ins[t], wt=0)
    broken[ld] = dataclasses.replace(ins[ld], sg=0)
    prep = prepare(dataclasses.replace(prog, instructions=broken), cfg)
    found = check(prep, w.masks, "dense")
    assert found and found[0].kind == "RAW" and found[0].space == "act"
    assert found[0].first_op == "dma.ld" and found[0].second_op == "tc.fwd"


def test_a_drain_still_writing_under_the_next_tensor_core_op_is_a_hazard(cfg, monkeypatch):
    """With double-buffered outputs a tensor-core op's SRU drain writes its results after it
    released the cores, so its writes are checked against later tensor-core ops too. Stretch
    the drain of one image's data-gradient tile past the start of the next image's tile,
    which writes the same accumulator bytes, and let that tile write them without a drain
    (as a non-final tile does when it releases the cores): the check must report the pair
    (write after write), which `hold` prevents in the real schedule."""
    from simulator.timing import hazards

    w = load_workload("vgg7-tiny")
    prep = prepare(compile_graph(w.trace.graph, cfg, w.trace.batch, sparse=False), cfg)
    ins, idx = prep.compiled.instructions, prep.stream.index
    k = next(
        j for j in range(1, len(prep.tc_pos))
        if prep.tc_touch[j, 0] and ins[idx[prep.tc_pos[j - 1]]].args["fin"]
        and ins[idx[prep.tc_pos[j - 1]]].op == ins[idx[prep.tc_pos[j]]].op == "tc.bwd"
    )  # fmt: skip
    first, second = int(prep.tc_pos[k - 1]), int(prep.tc_pos[k])
    real = hazards.simulate

    def stretched(*args, **kw):
        res = real(*args, **kw)
        start, end = res.times
        assert res.released[first] < end[first] <= start[second]  # drained, in order
        end, released = end.copy(), res.released.copy()
        end[first] = start[second] + 1  # the drain still writes when the next op starts
        released[second] = end[second]  # which writes its outputs without a drain
        return dataclasses.replace(res, times=(start, end), released=released)

    assert not check(prep, w.masks, "dense")
    monkeypatch.setattr(hazards, "simulate", stretched)
    found = check(prep, w.masks, "dense", limit=1000)
    assert any(h.first == first and h.second == second and h.kind == "WAW" for h in found)
