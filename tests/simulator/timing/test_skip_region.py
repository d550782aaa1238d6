"""`skipimg` in the cycle model: with gradient skipping on, a skipped image's region leaves the
executed stream (no issue slot, no tokens, no register effect), the controller reads the flags
only after the GSU's last decision, and the freed buffer slots shorten the step."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from isa.asm import assemble_program
from isa.compiler import compile_graph
from simulator.config import load_config
from simulator.timing import masks_from_trace, prepare, simulate
from simulator.timing.engine import schedule
from simulator.timing.model import for_mode
from simulator.timing.stream import K_HALT, K_SKIP, K_UNIT, UNITS, static_program, unroll
from workloads.graph import graph_for
from workloads.trace import synthesize

B = 4
GSU = UNITS.index("gsu")

# three images; image i's region toggles r6 and signals/waits token 1
PROGRAM = """
    setr r1, 0
    loop 3, done
    skipimg r1, next, 0
    xorr r6, r6, 0x100
    nop sg=1
    nop wt=1
next: addr r1, r1, 1
done: halt
"""


def test_a_skipped_images_region_leaves_the_stream():
    sp = static_program(assemble_program(PROGRAM))
    every = unroll(sp)
    some = unroll(sp, np.array([False, True, False]))
    assert len(every.index) - len(some.index) == 3  # image 1's xorr and two nops
    ops = [sp.ops[i] for i in some.index]
    assert ops.count("xorr") == 2 and ops.count("skipimg") == 3
    assert unroll(sp, np.zeros(3, bool)).index.tolist() == every.index.tolist()


def test_the_flags_are_read_after_the_gsus_last_decision():
    rows = np.array([(K_UNIT, GSU, 40), (K_SKIP, GSU, 1), (K_HALT, 0, 1)], np.int64)
    n = len(rows)
    z = np.zeros(n, np.int64)
    _d, s, _e, _busy, stall, status = schedule(
        rows[:, 0], rows[:, 1], z, z, rows[:, 2], z, z, z > 0, z, z - 1, z - 1, 10, 8, 1,
        np.zeros(n, np.int64), np.zeros(n, np.int64), z > 0, z - 1, z,
    )  # fmt: skip
    assert status == 0
    assert s[1] >= s[0] + 40  # waited for the decision
    assert stall[0, GSU] > 0


@pytest.fixture(scope="module")
def vgg7():
    cfg = load_config("ref28")
    g = graph_for("vgg7")
    t = synthesize(g, {"gate": 0.5, "weight_group": 0.5, "grad_skip": 0.5}, batch=B, seed=5)
    m = masks_from_trace(t)
    m = dataclasses.replace(m, skip=np.array([True, False, True, False]))
    return cfg, prepare(compile_graph(g, cfg, B), cfg), m


def test_skipped_images_issue_no_backward_work_and_free_their_slots(vgg7):
    _cfg, prep, m = vgg7
    issued = for_mode(prep, m, "grad_skip")
    assert issued is not prep and for_mode(prep, m, "grad_skip") is issued  # prepared once
    assert for_mode(prep, m, "gating") is prep
    assert len(issued.kind) < len(prep.kind)
    for op in issued.tc_ops:
        if op.op != "tc.fwd":
            assert not m.skip[op.img].any(), op.layer
    # the same step with every region issued and the skipped ops idling, as before `skipimg`
    old = prepare(prep.compiled, prep.cfg, np.zeros(B, bool))
    r_new, r_old = simulate(prep, m, "grad_skip"), simulate(old, m, "grad_skip")
    assert r_new.useful_macs == r_old.useful_macs
    assert r_new.dense_macs == r_old.dense_macs == simulate(prep, m, "dense").dense_macs
    assert r_new.events["instructions"] < r_old.events["instructions"]
    assert r_new.cycles < r_old.cycles
    dense = {(x["layer"], x["phase"]): x["dense_macs"] for x in r_old.layer_phase}
    assert {(x["layer"], x["phase"]): x["dense_macs"] for x in r_new.layer_phase} == dense
