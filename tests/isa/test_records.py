"""Rounding records (`MemoryMap.records`): stored only by verification programs
(`compile_graph(..., records=True)`); the default program leaves their stores out, keeps its
tokens balanced and computes the same step."""

from __future__ import annotations

import dataclasses
from functools import cache

import numpy as np
import pytest

from isa.analysis import check_tokens, check_transfers, dram_write_counts
from isa.compiler import compile_graph
from simulator.config import load_config
from simulator.timing.hazards import executed_footprints
from workloads.graph import graph_for

BATCH = 2


@cache
def program(model: str, sparse: bool, records: bool):
    return compile_graph(graph_for(model), load_config("ref28"), BATCH, sparse=sparse,
                         records=records)  # fmt: skip


def record_bytes(prog) -> np.ndarray:
    mm = prog.memmap
    mask = np.zeros(mm.top, bool)
    for name in mm.records:
        r = mm[name]
        mask[r.addr : r.addr + r.nbytes] = True
    return mask


def stored_bytes(prog) -> np.ndarray:
    """DRAM bytes written by the executed stores (`executed_footprints`)."""
    idx, feet = executed_footprints(prog)
    out = np.zeros(prog.memmap.top, bool)
    for i, acc in zip(idx, feet, strict=True):
        if prog.instructions[i].op != "dma.st":
            continue
        for space, sel, write in acc:
            if space == "dram" and write:
                out[sel] = True
    return out


@pytest.mark.parametrize("model", ["vgg7", "resnet20"])
@pytest.mark.parametrize("sparse", [True, False])
def test_records_only_in_verification_programs(model, sparse):
    off, on = program(model, sparse, False), program(model, sparse, True)
    assert off.memmap.records and off.memmap.records == on.memmap.records
    assert not off.memmap.records_stored and on.memmap.records_stored
    # same memory map (the record regions stay allocated, unwritten)
    assert off.memmap.to_dict()["regions"] == on.memmap.to_dict()["regions"]
    rec = record_bytes(off)
    st_off, st_on = stored_bytes(off), stored_bytes(on)
    assert not (st_off & rec).any()  # no store into a record region
    assert (st_on & rec)[rec].all()  # the verification program writes every record byte
    assert (st_off == (st_on & ~rec)).all()  # everything else is stored as before
    assert len(off.instructions) < len(on.instructions)
    prog = off.instructions
    assert check_tokens(prog) == {}
    regions = sorted((r.addr, r.addr + r.nbytes) for r in off.memmap.regions.values())
    assert check_transfers(prog, load_config("ref28"), regions) == []
    # every tensor but the records is still written exactly once
    counts = dram_write_counts(prog, off.memmap.top)
    for r in off.memmap.regions.values():
        seg = counts[r.addr : r.addr + r.nbytes]
        if r.name in off.memmap.records:
            assert not seg.any(), r.name
        elif r.kind not in ("target", "gate_threshold") and r.name != "act:x":
            assert (seg == 1).all(), r.name


def test_only_record_stores_differ():
    """records=True adds stores (and their address forms) and, where dX is stored, its token
    edges; records=False removes exactly the stores into record regions."""
    off, on = program("vgg7", True, False), program("vgg7", True, True)
    st = lambda p: sum(i.op == "dma.st" for i in p.instructions)  # noqa: E731
    others = lambda p: [i.op for i in p.instructions if i.op not in ("dma.st", "addr", "sync")]  # noqa: E731
    assert st(off) < st(on)
    assert others(off) == others(on)


@pytest.mark.parametrize("name", ["tiny", "tiny_res"])
@pytest.mark.parametrize("rounding", ["rne", "sr"])
def test_same_step_with_and_without_records(name, rounding):
    """The functional executor computes the same step (every DRAM byte but the records) with
    and without the record stores; under SR too (an unstored value still draws its words)."""
    import torch

    from simulator.functional.compare import config_for, execute, prepare_model
    from tests.simulator.functional.conftest import Tiny, TinyRes

    torch.manual_seed(0)
    model = {"tiny": Tiny, "tiny_res": TinyRes}[name]()
    step = prepare_model(model, (3, 8, 8), name, 3, config_for(rounding), seed=1)
    assert step.prog.memmap.records_stored
    assert step.prog.memmap.records, "the tiny model should have fused blocks with records"
    off = compile_graph(step.graph, step.cfg, 3)
    assert not off.memmap.records_stored
    on_m = execute(step).machine.dram.copy()
    off_step = dataclasses.replace(step, prog=off, machine=None)
    off_m = execute(off_step).machine.dram.copy()
    rec = record_bytes(off)
    assert (on_m[~rec] == off_m[~rec]).all()
    mm = off.memmap
    for name, r in mm.regions.items():
        if name.startswith(("w:", "v:")):
            assert (on_m[r.addr : r.addr + r.nbytes] == off_m[r.addr : r.addr + r.nbytes]).all()
