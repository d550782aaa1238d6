"""Grouped and depthwise convolutions (MobileNet-style): the executor's grouped tensor-core
tiles against the same work done group by group as ordinary convs, and whole training steps
against the independent reference, bit for bit (weights and momentum)."""

import numpy as np
import pytest
import torch
from torch import nn

from isa.encoding import Instruction as Ins
from simulator.config import load_config
from simulator.functional import Executor, FunctionalError, Machine
from simulator.functional.compare import config_for, prepare_model, verify_step
from simulator.functional.state import Modes

# the hand-written tiles: 2 groups of kg = 3 outputs and cg = 12 inputs (cg is not a
# multiple of dp = 8, so group 1's channels start inside an aligned 8-block of
# the tile's channels; kg = 5 puts group 1's outputs across the tile's first 8-block)
G, KG, CG, HW = 2, 5, 12, 5
TAPS, P = 9, HW * HW
OUT = 16384  # where the hand-written ops put their results


class TinyGrouped(nn.Module):
    """conv, depthwise 3x3 + BN + ReLU, a gated pointwise conv, a stride-2 grouped conv
    (cg 4, kg 3), a depthwise conv with channel multiplier 2 (cg 1, kg 2), a grouped conv
    with cg 12 (two channel chunks per tap), FC on the feature map."""

    def __init__(self, hw: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.relu1 = nn.ReLU()
        self.dw1 = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu2 = nn.ReLU()
        self.pw1 = nn.Conv2d(16, 32, 1, bias=False)
        self.relu3 = nn.ReLU()
        self.g1 = nn.Conv2d(32, 24, 3, stride=2, padding=1, groups=8, bias=False)
        self.relu4 = nn.ReLU()
        self.dm = nn.Conv2d(24, 48, 3, padding=1, groups=24, bias=False)
        self.relu5 = nn.ReLU()
        self.g2 = nn.Conv2d(48, 24, 3, padding=1, groups=4, bias=False)
        self.relu6 = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(24 * (hw // 2) ** 2, 10, bias=False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        nn.init.normal_(self.fc.weight, std=0.1)

    def forward(self, x):
        x = self.relu2(self.bn1(self.dw1(self.relu1(self.conv1(x)))))
        x = self.relu4(self.g1(self.relu3(self.pw1(x))))
        x = self.relu6(self.g2(self.relu5(self.dm(x))))
        return self.fc(self.flatten(x))


GROUPED = ("dw1", "g1", "dm", "g2")


def _model(hw: int = 8):
    torch.manual_seed(0)
    return TinyGrouped(hw), (3, hw, hw)


def _small_buffers(cfg):
    """Buffers small enough that the grouped layers split into k tiles (and row tiles)."""
    b = cfg.buffers
    sizes = {"activation": 2048, "weight": 2048, "error": 4096}
    upd = {n: getattr(b, n).model_copy(update={"size_bytes": s}) for n, s in sizes.items()}
    return cfg.model_copy(update={"buffers": b.model_copy(update=upd)})


def _check(res: dict) -> None:
    assert res["ok"], res["layers"]
    by = {la["layer"]: la for la in res["layers"]}
    assert set(GROUPED) <= set(by)
    for la in res["layers"]:
        assert la["mismatched_codes"] == 0 and la["mismatched_momentum_codes"] == 0
    for n in GROUPED:
        assert by[n]["changed_codes"] > 0, by[n]  # the step did update them


@pytest.mark.parametrize("rounding", ["rne", "sr"])
def test_grouped_net_dense_bit_exact(rounding):
    step = prepare_model(*_model(), "tinygrouped", 2, config_for(rounding), seed=1)
    descs = [i for i in step.prog.instructions if i.op == "layer" and i["groups"] > 1]
    assert len(descs) >= len(GROUPED)
    _check(verify_step(step))


def test_grouped_net_tiled_bit_exact():
    """Small buffers: the grouped layers' ops take some groups each (k0 > 0), and the
    forward of g1 and g2 takes output rows in tiles (p0 > 0)."""
    step = prepare_model(*_model(16), "tinygrouped", 2, _small_buffers(config_for("rne")), seed=1)
    layer = [a["layer"] for a in step.prog.annotations]
    ops = [(layer[j], i) for j, i in enumerate(step.prog.instructions) if i.op.startswith("tc.")]
    for n in GROUPED:
        for op in ("tc.fwd", "tc.bwd", "tc.wgr"):
            kns = [i["kn"] for ln, i in ops if ln == n and i.op == op]
            out = step.graph.layer(n).out_shape
            assert all(kn < out[0] for kn in kns), (n, op, kns)  # several k tiles
    fwd_g1 = [i for ln, i in ops if ln == "g1" and i.op == "tc.fwd"]
    assert fwd_g1[0]["pn"] < step.graph.layer("g1").out_shape[1]  # row tiles
    _check(verify_step(step))


def test_grouped_net_all_modes_sr_bit_exact():
    """Mode all: the pointwise conv is gated and the FC pruned (gating and weight sparsity
    do not apply to grouped convs), one of three images skips BP and WU (grouped ops too)."""
    cfg = config_for("sr")
    gsu = cfg.gsu.model_copy(update={"threshold": 1.0, "criterion": "confident"})
    wsu = cfg.wsu.model_copy(update={"threshold": 0.3})
    cfg = cfg.model_copy(update={"gsu": gsu, "wsu": wsu})
    step = prepare_model(*_model(), "tinygrouped", 3, cfg, seed=1)
    res = verify_step(step, Modes(True, True, True))
    _check(res)
    assert res["skipped_images"] == 1
    assert set(res["gate_density"]) == {"pw1"} and 0 < res["gate_density"]["pw1"] < 1
    by = {la["layer"]: la for la in res["layers"]}
    assert 0 < by["fc"]["zero_weights"] < by["fc"]["weights"]


# -- hand-written tiles: a grouped op equals its groups done as ordinary convs


def _layer(desc: int, c: int, k: int, groups: int, gate: int = 0) -> Ins:
    return Ins("layer", {"desc": desc, "kind": 0, "c": c, "k": k, "h": HW, "w": HW, "kh": 3,
                         "kw": 3, "stride": 1, "pad": 1, "groups": groups, "gate": gate,
                         "wsparse": 0})  # fmt: skip


def _tc(op: str, desc: int, kn: int, cn: int, ra: int, rb: int, ro: int) -> list[Ins]:
    """setr of the operand registers (r4, r5, r6 = ra, rb, ro) and the op, from k 0, c 0."""
    args = dict(desc=desc, rk=0, kn=kn, rc=0, cn=cn, rp=0, pn=HW, rimg=0, ra=4, rb=5, ro=6,
                acc=0, fin=0, rm=0, gm=0)  # fmt: skip
    if op == "tc.fwd":
        args["pass"] = 0
    sets = [Ins("setr", {"rd": r, "imm": v}) for r, v in ((4, ra), (5, rb), (6, ro))]
    return [*sets, Ins(op, args)]


def _codes(rng, *shape) -> np.ndarray:
    """Random FP8 codes of moderate magnitude, both signs, some zeros."""
    c = rng.integers(48, 72, shape).astype(np.uint8) | (rng.integers(0, 2, shape) << 7).astype(
        np.uint8
    )
    c[rng.random(shape) < 0.1] = 0
    return c


@pytest.mark.parametrize("op", ["tc.fwd", "tc.bwd", "tc.wgr"])
def test_grouped_tile_is_its_groups_as_ordinary_convs(op):
    """The FP16 accumulators of one grouped op (2 groups) equal those of one ordinary conv op
    per group on that group's channels: operands per isa.spec (tc.fwd and tc.wgr read the
    input rows of the tile's groups, ng cg channels per pixel; tc.bwd writes dX of those
    channels) and the reduction order of an ordinary conv of kg outputs and cg inputs."""
    rng = np.random.default_rng(3)
    m = Machine.create(load_config("ref28"), 4096)
    x = _codes(rng, P, G * CG)  # input pixels [pixel][c]
    w = _codes(rng, G * KG, TAPS, CG)  # [k][tap][c of the group]
    dy = _codes(rng, P, G * KG)  # output errors [pixel][k]
    prog = [_layer(0, G * CG, G * KG, G), _layer(1, CG, KG, 1)]
    # grouped operands from 0, each group's at 4096 + 2048 j; results from OUT (j: + 4096)
    m.buffers["act"][: x.size] = x.reshape(-1)
    m.buffers["wgt"][: w.size] = w.reshape(-1)
    m.buffers["err"][: dy.size] = dy.reshape(-1)
    for j in range(G):
        at = 4096 + 2048 * j
        xj, wj = x[:, j * CG : (j + 1) * CG], w[j * KG : (j + 1) * KG]
        m.buffers["act"][at : at + xj.size] = xj.reshape(-1)
        m.buffers["wgt"][at : at + wj.size] = wj.reshape(-1)
        dyj = dy[:, j * KG : (j + 1) * KG]
        m.buffers["err"][at : at + dyj.size] = dyj.reshape(-1)
    # tc.fwd: ra = x (act), rb = w (wgt), ro = act; tc.bwd: ra = dy (err), rb = w, ro = dX
    # (err); tc.wgr: ra = dy, rb = x, ro = dW (err)
    space, shape = {
        "tc.fwd": ("act", (P, G * KG)),
        "tc.bwd": ("err", (P, G * CG)),
        "tc.wgr": ("err", (G * KG, TAPS * CG)),
    }[op]
    prog += _tc(op, 0, G * KG, CG, 0, 0, OUT)
    for j in range(G):
        at = 4096 + 2048 * j
        prog += _tc(op, 1, KG, CG, at, at, OUT + 4096 * (j + 1))
    Executor(m).run(prog)
    whole = m.u16(space, OUT, shape[0] * shape[1]).reshape(shape)
    assert np.count_nonzero(whole) > whole.size // 2  # real sums, not a zero tile
    for j in range(G):
        part = m.u16(space, OUT + 4096 * (j + 1), whole.size // G)
        if op == "tc.fwd":
            got = whole[:, j * KG : (j + 1) * KG]
        elif op == "tc.bwd":
            got = whole[:, j * CG : (j + 1) * CG]
        else:
            got = whole[j * KG : (j + 1) * KG]
        assert np.array_equal(got.reshape(-1), part), (op, j)


def test_grouped_tile_errors_are_clear():
    m = Machine.create(load_config("ref28"), 4096)
    bad_tile = [_layer(0, G * CG, G * KG, G), *_tc("tc.fwd", 0, KG + 1, CG, 0, 0, OUT)]
    with pytest.raises(FunctionalError, match=f"not whole groups of {KG} output channels"):
        Executor(m).run(bad_tile)
    bad_desc = [_layer(0, G * CG, G * KG + 1, G), *_tc("tc.wgr", 0, KG, CG, 0, 0, OUT)]
    with pytest.raises(FunctionalError, match="groups do not divide"):
        Executor(m).run(bad_desc)
    gated = _layer(0, G * CG, G * KG, G, gate=1)
    with pytest.raises(FunctionalError, match="gating or weight sparsity of a grouped"):
        Executor(m).run([gated, *_tc("tc.bwd", 0, G * KG, CG, 0, 0, OUT)])
