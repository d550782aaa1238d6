"""Cycle-level timing of a compiled training-step program on given sparsity masks.

    prep = prepare(compiled, cfg)          # once per program: unrolled stream, static costs
    res = simulate(prep, masks, "all")     # per mode: tensor-core work from the masks, schedule

Modes run the same program on the same masks and differ only in what the units may skip
(the ISA's `mode` instruction): `dense` skips nothing, `gating` skips gated (pixel, channel
group) work, `weight_sparsity` zero weight groups, `grad_skip` the BP/WU work of skipped images,
`all` everything.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, fields

import numba
import numpy as np

from isa.compiler import CompiledProgram
from isa.spec import BUFFER, SFU_OP, TC_PASS
from simulator.config import HardwareConfig
from simulator.timing import banks, costs
from simulator.timing.costs import EVENT_ID, EVENTS
from simulator.timing.engine import N_STALL, ST_BARRIER, ST_DRAIN, ST_DRAM, ST_QUEUE, schedule
from simulator.timing.masks import SparsityMasks
from simulator.timing.stream import (
    K_CTRL,
    K_LOOP,
    K_SKIP,
    K_SYNC,
    K_UNIT,
    UNITS,
    StaticProgram,
    Stream,
    static_program,
    unroll,
)
from simulator.timing.tensor_core import (
    GateCounts,
    LayerDesc,
    OpTiles,
    SparsityView,
    TcGeometry,
    TcWork,
    bwd_work,
    fwd_work,
    wgr_work,
)

MODES = ("dense", "gating", "weight_sparsity", "grad_skip", "all")
_FLAGS = {
    "dense": (False, False, False),
    "gating": (True, False, False),
    "weight_sparsity": (False, True, False),
    "grad_skip": (False, False, True),
    "all": (True, True, True),
}
BUFS = tuple(BUFFER.values)
_BUF_CFG = {"act": "activation", "wgt": "weight", "err": "error", "msk": "mask"}


class SimulationError(ValueError):
    """A program and masks that cannot be simulated together (mismatch, deadlock)."""


@dataclass
class TcOp:
    """The executed instances of one static tensor-core instruction."""

    static: int
    op: str
    layer: str
    desc: LayerDesc
    args: dict
    execs: np.ndarray  # executed-stream positions
    k0: np.ndarray
    c0: np.ndarray
    p0: np.ndarray
    img: np.ndarray


@dataclass
class PreparedProgram:
    compiled: CompiledProgram
    cfg: HardwareConfig
    sp: StaticProgram
    stream: Stream
    kind: np.ndarray  # per executed
    unit: np.ndarray
    wt: np.ndarray
    sg: np.ndarray
    dur: np.ndarray  # mode-independent occupancy (tensor-core ops filled per mode)
    bus: np.ndarray
    static_events: np.ndarray  # (n_static, len(EVENTS)): mode-independent events x executions
    unit_events: np.ndarray  # (n_static, len(EVENTS)): events of one execution
    skippable: np.ndarray  # bool per executed: an image's BP-phase SFU op or BP/WU transfer
    tc_ops: list[TcOp]
    layers: np.ndarray  # layer name index per static instruction
    phases: np.ndarray  # phase index per static instruction
    layer_names: tuple[str, ...]
    phase_names: tuple[str, ...]
    dense_macs: np.ndarray  # per executed (tensor-core ops; 0 otherwise)
    bank: np.ndarray  # per executed: conflict degree of its buffer accesses (1 = none)
    # per executed tensor-core op (program order, `tc_pos`): column j - 1 is true when it
    # touches the output bytes of the tensor-core op j before it (`output_buffers` > 1)
    tc_pos: np.ndarray | None = None
    tc_touch: np.ndarray | None = None
    # per executed: the last executed op before it that writes the mask buffer (-1: none)
    mask_dep: np.ndarray | None = None
    # per executed (`cgu.streams_base_sums`): the op signals its token when its work begins
    # (a base pass whose CGU streams behind it); the op it streams behind (-1: none) and
    # how long after that op's end it ends at the earliest
    early: np.ndarray | None = None
    follow: np.ndarray | None = None
    follow_lag: np.ndarray | None = None
    # the images whose `skipimg` regions were left out of the stream (None: none were)
    skipped: np.ndarray | None = None
    # per set of skip flags, the program as issued with gradient skipping on (`for_mode`)
    derived: dict = field(default_factory=dict, repr=False)
    static: StaticCosts | None = field(default=None, repr=False)  # reused by `for_mode`


def _descriptor(a) -> LayerDesc:
    return LayerDesc(
        a["c"], a["k"], a["h"], a["w"], a["kh"], a["kw"], a["stride"], a["pad"],
        bool(a["gate"]), bool(a["wsparse"]), a["groups"],
    )  # fmt: skip


@dataclass
class TcAccesses:
    """Per static instruction, the byte ranges a tensor-core op touches that the drain of the
    op before it may write (`_tc_touch`): its output (access 0) and the operands it reads
    from the buffers outputs live in (accesses 1, 2). Access j lies in buffer space
    space[:, j] (0: act, 1: err, -1: none), starts at the value of the stream's register
    column reg[:, j] and spans fixed[:, j] + per_row[:, j] x the tile's input rows
    (`_input_rows`, from rows[:, 0:5] = stride, pad, kh, h, pn)."""

    space: np.ndarray  # (n_static, 3)
    reg: np.ndarray
    fixed: np.ndarray
    per_row: np.ndarray
    rows: np.ndarray  # (n_static, 5)


@dataclass
class StaticCosts:
    """What `prepare` works out per static instruction, whatever the stream: one execution's
    occupancy, DRAM bus cycles and events, whether it is an image's skippable BP/WU op, the
    tensor-core ops (with their descriptors, dense MACs, bank-conflict degree and touched
    byte ranges), the SFU ops whose two operands share a buffer, the mask writers, the CGU
    gates and base passes, and the layer/phase indices. A derived stream (`for_mode`) only
    indexes them by its executions."""

    dur: np.ndarray
    bus: np.ndarray
    events: np.ndarray  # (n_static, len(EVENTS))
    skippable: np.ndarray
    tc: list[tuple[int, LayerDesc]]
    layers: np.ndarray
    phases: np.ndarray
    layer_names: tuple[str, ...]
    phase_names: tuple[str, ...]
    is_tc: np.ndarray  # bool: a tensor-core op
    macs: np.ndarray  # a tensor-core op's dense MACs per execution (0 elsewhere)
    bank: np.ndarray  # a tensor-core op's bank-conflict degree (1 elsewhere)
    sfu_pair: np.ndarray  # an SFU op reading operands a and b from one buffer: its id; else -1
    writes_masks: np.ndarray  # bool: writes masks the packer reads (`_mask_writers`)
    gate: np.ndarray  # bool: a `cg.gate`
    base_pass: np.ndarray  # bool: a base-pass `tc.fwd`
    desc: np.ndarray  # the descriptor slot of gates and tensor-core ops (-1 elsewhere)
    access: TcAccesses


# the ops `_static_costs` costs (others take one cycle and have no events of their own)
_COSTED = frozenset(
    {"layer", "sync", "dma.ld", "dma.st", "sfu", "sgd", "cg.gate", "ws.norm", "ws.prune",
     "gs.decide", "tc.fwd", "tc.bwd", "tc.wgr"}
)  # fmt: skip


def _static_costs(compiled: CompiledProgram, cfg: HardwareConfig) -> StaticCosts:
    prog = compiled.instructions
    n = len(prog)
    s_dur = np.ones(n, np.int64)
    s_bus = np.zeros(n, np.int64)
    s_ev = np.zeros((n, len(EVENTS)))
    s_ev[:, EVENT_ID["instructions"]] = 1
    s_skippable = np.zeros(n, bool)
    sfu_pair = np.full(n, -1, np.int64)
    writes_masks = np.zeros(n, bool)
    gate = np.zeros(n, bool)
    desc = np.full(n, -1, np.int64)
    descs: dict[int, LayerDesc] = {}
    tc: list[tuple[int, LayerDesc]] = []
    bw = cfg.dma.dram_bytes_per_cycle
    thr = cfg.sfu.throughput_elements_per_cycle
    lanes = cfg.tensor_core.lanes
    msk = BUFS.index("msk")
    ev_rows, ev_cols, ev_vals = [], [], []  # written at once (numpy item writes are slow)
    for i, ins in enumerate(prog):
        if ins.op not in _COSTED:  # control flow: one cycle, no events
            continue
        a = ins.args
        ev = {}
        if ins.op == "layer":
            descs[a["desc"]] = _descriptor(a)
        elif ins.op == "sync":
            s_dur[i] = 0
        elif ins.op in ("dma.ld", "dma.st"):
            s_dur[i], s_bus[i], ev = costs.dma_cost(a, bw)
            s_skippable[i] = bool(a["gsk"])  # an image's BP/WU transfer
            side = "wr" if ins.op == "dma.ld" else "rd"
            ev[f"sram_{side}_{BUFS[a['buf']]}"] = a["rows"] * a["row_bytes"]
            writes_masks[i] = ins.op == "dma.ld" and a["buf"] == msk
        elif ins.op == "sfu":
            s_dur[i], ev = costs.sfu_cost(a, thr)
            name = SFU_OP.values[a["op"]]
            phase = compiled.annotations[i]["phase"]
            s_skippable[i] = phase == "bp" and name != "zero"
            if name in costs.SFU_B and a["bufa"] == a["bufb"]:
                sfu_pair[i] = a["bufa"]
        elif ins.op == "sgd":
            s_dur[i], ev = costs.sgd_cost(a, thr)
        elif ins.op == "cg.gate":
            d = descs[a["desc"]]
            elems = a["pn"] * d.ow * a["kn"]
            # The CGU normalises and compares base partial sums at the SFU's width (assumed).
            s_dur[i] = -(-elems // thr)
            ev = {"cgu_ops": elems, "sram_rd_act": 2 * elems, "sram_wr_msk": elems // lanes}
            writes_masks[i] = gate[i] = True
            desc[i] = a["desc"]
        elif ins.op in ("ws.norm", "ws.prune"):
            d = descs[a["desc"]]
            elems = a["kn"] * a["cn"] * d.taps
            s_dur[i] = -(-elems // cfg.wsu.norm_throughput_elements_per_cycle)
            ev = (
                {"wsu_macs": elems, "sram_rd_wgt": elems}
                if ins.op == "ws.norm"
                else {"sram_wr_wgt": elems, "sram_wr_msk": elems // max(1, d.taps)}
            )
            writes_masks[i] = ins.op == "ws.prune"
        elif ins.op == "gs.decide":
            s_dur[i] = a["classes"]
            ev = {"gsu_ops": a["classes"], "sram_rd_act": 2 * a["classes"]}
            writes_masks[i] = True
        elif ins.op in ("tc.fwd", "tc.bwd", "tc.wgr"):
            tc.append((i, descs[a["desc"]]))
            desc[i] = a["desc"]
        for key, v in ev.items():
            ev_rows.append(i)
            ev_cols.append(EVENT_ID[key])
            ev_vals.append(v)
    np.add.at(s_ev, (np.array(ev_rows, np.int64), np.array(ev_cols, np.int64)), ev_vals)
    layer_names = tuple(sorted({a["layer"] or "-" for a in compiled.annotations}))
    phase_names = tuple(sorted({a["phase"] for a in compiled.annotations}))
    lid = {name: j for j, name in enumerate(layer_names)}
    pid = {name: j for j, name in enumerate(phase_names)}
    layers = np.array([lid[a["layer"] or "-"] for a in compiled.annotations], np.int64)
    phases = np.array([pid[a["phase"]] for a in compiled.annotations], np.int64)
    is_tc, macs, bank, base_pass, access = _tc_statics(prog, tc, cfg)
    return StaticCosts(
        s_dur, s_bus, s_ev, s_skippable, tc, layers, phases, layer_names, phase_names,
        is_tc, macs, bank, sfu_pair, writes_masks, gate, base_pass, desc, access,
    )  # fmt: skip


def _tc_statics(prog, tc, cfg: HardwareConfig):
    """Per static instruction: whether it is a tensor-core op, its dense MACs per execution,
    its bank-conflict degree, whether it is a base pass, and its touched byte ranges."""
    n = len(prog)
    is_tc = np.zeros(n, bool)
    macs = np.zeros(n, np.int64)
    bank = np.ones(n, np.int64)
    base_pass = np.zeros(n, bool)
    acc = TcAccesses(
        np.full((n, 3), -1, np.int64), np.full((n, 3), 6, np.int64),
        np.zeros((n, 3), np.int64), np.zeros((n, 3), np.int64), np.zeros((n, 5), np.int64),
    )  # fmt: skip
    geom = _bank_geometry(cfg)
    base = TC_PASS.values.index("base")
    for i, d in tc:
        op, a = prog[i].op, prog[i].args
        is_tc[i] = True
        macs[i] = a["kn"] * a["cn"] * a["pn"] * d.ow * d.taps
        bank[i] = _tc_bank_degree(op, a, d, cfg.tensor_core, geom)
        base_pass[i] = op == "tc.fwd" and a["pass"] == base
        _tc_accesses(acc, i, op, a, d)
    return is_tc, macs, bank, base_pass, acc


def _tc_accesses(acc: TcAccesses, i: int, op: str, a: dict, d: LayerDesc) -> None:
    """Fill row i of `acc`: the byte ranges as in the ISA (`hazards._tc`; the weight buffer
    never holds outputs). Register columns of `stream.CAPTURE`: ra 4, rb 5, ro 6."""
    kn, cn, pn = a["kn"], a["cn"], a["pn"]
    npix = pn * d.ow
    cin = d.group_channels(kn, cn)
    if op == "tc.fwd":  # outputs in act; reads X (act)
        out = (0, 2 * npix * kn)
        reads = [(0, 4, 0, d.w * (cin or d.c))]
    elif op == "tc.bwd":  # outputs in err; reads dY (err)
        out = (1, 2 * d.h * d.w * (cin or cn))
        reads = [(1, 4, npix * kn, 0)]
    else:  # outputs in err; reads dY (err) and X (act)
        out = (1, 2 * kn * d.taps * cn)
        reads = [(1, 4, npix * kn, 0), (0, 5, 0, d.w * (cin or cn))]
    accesses = [(out[0], 6, out[1], 0), *reads]  # (space, register, fixed, per row)
    tables = (acc.space, acc.reg, acc.fixed, acc.per_row)
    for table, column in zip(tables, zip(*accesses, strict=True), strict=True):
        table[i, : len(column)] = column
    acc.rows[i] = d.stride, d.pad, d.kh, d.h, pn


def _bank_geometry(cfg: HardwareConfig) -> dict[int, tuple[int, int]]:
    """Buffer id -> (word bytes, banks)."""
    return {
        j: (getattr(cfg.buffers, _BUF_CFG[b]).word_bytes, getattr(cfg.buffers, _BUF_CFG[b]).banks)
        for j, b in enumerate(BUFS)
    }


def _tc_bank_degree(op: str, a: dict, d: LayerDesc, tcc, geom) -> int:
    """The conflict degree of a tensor-core op's reads of its streamed operand when cores
    split one lane group's pixels or outputs (`simulator.timing.banks`)."""
    pixels = a["pn"] * d.ow  # only as many cores as pixels read at once
    if op == "tc.bwd":  # lanes own input channels; cores split dY pixels [pixel][kn]
        share = min(_share(a["cn"], tcc), pixels)
        addrs = [j * a["kn"] for j in range(share)]
        word, nb = geom[BUFS.index("err")]
    else:  # lanes own output channels
        share = _share(a["kn"], tcc)
        cload = d.c if d.groups == 1 else a["kn"] // (d.k // d.groups) * (d.c // d.groups)
        if op == "tc.fwd":  # cores split the pixels of the input rows [pixel][cload]
            addrs = [j * cload for j in range(min(share, pixels))]
        else:  # WU: cores split (c, tap) outputs channel fastest (tensor_core.wgr_work)
            cn = a["cn"] if d.groups == 1 else cload  # and read x at the tap's pixel, c
            items = [(j % cn, j // cn) for j in range(min(share, cn * d.taps))]
            addrs = [((t // d.kw) * d.w + t % d.kw) * cn + c for c, t in items]
        word, nb = geom[BUFS.index("act")]
    return banks.conflict_degree(addrs, word, nb)


def _share(n_items: int, tcc) -> int:
    groups = -(-n_items // tcc.lanes)
    return 1 if groups >= tcc.n_tc else tcc.n_tc // groups


def prepare(
    compiled: CompiledProgram,
    cfg: HardwareConfig,
    skipped: np.ndarray | None = None,
    base: PreparedProgram | None = None,
) -> PreparedProgram:
    """Unroll the program and cost everything that does not depend on masks or mode.
    `skipped` (bool per image): leave those images' `skipimg` regions out, as the controller
    does with gradient skipping on (`for_mode` calls it; None: every region is issued).
    `base`: a preparation of the same program and config whose per-instruction work to
    reuse."""
    prog = compiled.instructions
    sp = base.sp if base is not None else static_program(prog)
    st = base.static if base is not None else _static_costs(compiled, cfg)
    stream = unroll(sp, skipped)
    idx = stream.index.astype(np.int64)
    counts = np.bincount(idx, minlength=len(prog))
    tc_at = np.flatnonzero(st.is_tc[idx])  # the tensor-core ops' executions, in order
    wt, sg = sp.wt[idx], sp.sg[idx]
    return PreparedProgram(
        compiled, cfg, sp, stream, sp.kind[idx], sp.unit[idx], wt, sg,
        st.dur[idx], st.bus[idx], st.events * counts[:, None], st.events, st.skippable[idx],
        _tc_ops(compiled, st, stream, idx, tc_at), st.layers, st.phases, st.layer_names,
        st.phase_names, st.macs[idx], _bank_degrees(st, cfg, stream, idx, tc_at),
        *_tc_touch(st.access, stream, idx, tc_at, cfg), _mask_writers(st.writes_masks, idx),
        *_streams(st, wt, sg, idx, cfg),
        None if skipped is None else np.asarray(skipped, bool).copy(), static=st,
    )  # fmt: skip


def _tc_ops(compiled: CompiledProgram, st: StaticCosts, stream, idx, tc_at) -> list[TcOp]:
    """The executed instances of every static tensor-core op that executes, in static order:
    the executions grouped by instruction (a stable sort keeps program order within one)."""
    prog = compiled.instructions
    static = idx[tc_at]
    order = np.argsort(static, kind="stable")
    execs = tc_at[order]
    regs = stream.regs[execs]  # one gather for all (each op takes its rows)
    bounds = np.searchsorted(static[order], [i for i, _ in st.tc] + [len(prog)])
    tc_ops: list[TcOp] = []
    for (i, desc), lo, hi in zip(st.tc, bounds[:-1], bounds[1:], strict=True):
        if lo == hi:
            continue
        r = regs[lo:hi]
        tc_ops.append(
            TcOp(i, prog[i].op, compiled.annotations[i]["layer"], desc, dict(prog[i].args),
                 execs[lo:hi], r[:, 0], r[:, 1], r[:, 2], r[:, 3])
        )  # fmt: skip
    return tc_ops


def for_mode(prep: PreparedProgram, masks: SparsityMasks, mode: str) -> PreparedProgram:
    """The program as the controller issues it in `mode`: with gradient skipping on, the
    skipped images' `skipimg` regions are not issued, so their instructions leave the stream
    (prepared once per set of skip flags and kept on `prep`); else `prep` itself."""
    if not _FLAGS[mode][2] or not np.any(prep.sp.kind == K_SKIP):
        return prep
    if prep.skipped is not None:  # already the issued program of these flags
        return prep
    flags = np.asarray(masks.skip, bool)
    key = flags.tobytes()
    if key not in prep.derived:
        prep.derived[key] = prepare(prep.compiled, prep.cfg, flags, base=prep)
    return prep.derived[key]


def _streams(
    st: StaticCosts, wt, sg, idx, cfg: HardwareConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`cgu.streams_base_sums`: pair each executed `cg.gate` with the base pass it follows
    (the last executed base-pass `tc.fwd` of the same descriptor before it) where the base
    pass's token is the gate's and nothing else can take that signal: every earlier signal
    of the token was consumed before the base pass, and no op between the two signals or
    waits on it. The base pass then signals when it begins (`early`) and the CGU reads the
    base sums as the lanes finish them (`follow`): the 16 channels of a gate group are the
    16 lanes of one core, so a pixel's group completes in one step, and the CGU's last gates
    follow the cores' last outputs by the time it takes for one output of every lane
    (`follow_lag`). `wt`, `sg`: the executed instructions' tokens."""
    n = len(idx)
    early = np.zeros(n, np.bool_)
    follow = np.full(n, -1, np.int64)
    tcc = cfg.tensor_core
    lag = np.full(n, -(-tcc.n_tc * tcc.lanes // cfg.sfu.throughput_elements_per_cycle), np.int64)
    if not cfg.cgu.streams_base_sums or not n:
        return early, follow, lag
    gates = np.flatnonzero(st.gate[idx])
    bases = np.flatnonzero(st.base_pass[idx])
    if not len(gates) or not len(bases):
        return early, follow, lag
    at = np.searchsorted(bases, gates) - 1
    ok = at >= 0
    gates, j = gates[ok], bases[at[ok]]
    desc = st.desc
    ok = (desc[idx[gates]] == desc[idx[j]]) & (sg[j] != 0) & (wt[gates] == sg[j]) & (wt[j] != sg[j])
    gates, j = gates[ok], j[ok]
    keep = np.zeros(len(gates), np.bool_)
    for t in np.unique(wt[gates]):
        # searchsorted in the positions of the token's signals (waits): how many lie before
        sig, wai = np.flatnonzero(sg == t), np.flatnonzero(wt == t)
        m = wt[gates] == t
        g, b = gates[m], j[m]
        sig_b, sig_b1 = np.searchsorted(sig, b), np.searchsorted(sig, b + 1)
        wai_b1 = np.searchsorted(wai, b + 1)
        keep[m] = (
            (sig_b == np.searchsorted(wai, b))  # nothing outstanding when the base pass signals
            & (np.searchsorted(sig, g) == sig_b1)  # no other signal before the gate waits
            & (np.searchsorted(wai, g) == wai_b1)  # and no other waiter
        )
    early[j[keep]] = True
    follow[gates[keep]] = j[keep]
    return early, follow, lag


def _mask_writers(writes: np.ndarray, idx) -> np.ndarray:
    """Per executed instruction, the last executed one before it that writes masks the packer
    reads (`writes` per static instruction: the CGU's gates or a load into the mask buffer;
    weight-group masks: the WSU's prune or a load; skip flags: the GSU; -1 if none): the
    packer reads a tile's masks only after it. (The SFU's pooling indices in the mask buffer
    are no packer input; the hazard check verifies the prelude's mask reads from when it
    began.)"""
    return _last_before(writes[idx])


@numba.njit(cache=True)
def _last_before(flags):  # pragma: no cover - numba
    """Per position k, the last position before k whose flag is set (-1: none)."""
    out = np.empty(flags.shape[0], np.int64)
    last = -1
    for k in range(flags.shape[0]):
        out[k] = last
        if flags[k]:
            last = k
    return out


def _input_rows(rows: np.ndarray, p0: np.ndarray) -> np.ndarray:
    """Input rows a tile of output rows [p0, p0 + pn) holds in its buffer; rows: (E, 5) of
    stride, pad, kh, h, pn (`TcAccesses.rows`)."""
    stride, pad, kh, h, pn = rows.T
    first = p0 * stride - pad
    last = (p0 + pn - 1) * stride - pad + kh
    return np.minimum(h, last) - np.maximum(0, first)


def _tc_touch(acc: TcAccesses, stream, idx, tc_at, cfg) -> tuple[np.ndarray, np.ndarray]:
    """Which tensor-core ops touch the output bytes of the ops just before them, whose SRU
    drain may still run when they start (`output_buffers` > 1): their output (accumulator)
    range, or an operand they read from the same buffer (`TcAccesses`)."""
    depth = max(cfg.tensor_core.output_buffers - 1, 0)
    if not len(tc_at):
        return np.zeros(0, np.int64), np.zeros((0, depth), bool)
    s = idx[tc_at]
    regs = stream.regs[tc_at]
    rows = _input_rows(acc.rows[s], regs[:, 2])
    space = acc.space[s]  # (n, 3): per access
    lo = np.take_along_axis(regs, acc.reg[s], axis=1)
    hi = lo + acc.fixed[s] + acc.per_row[s] * rows[:, None]
    touch = np.zeros((len(tc_at), depth), bool)
    for j in range(1, depth + 1):
        prev = (x[:-j, 0, None] for x in (space, lo, hi))
        sp, out_lo, out_hi = prev
        hit = (space[j:] == sp) & (lo[j:] < out_hi) & (out_lo < hi[j:])
        touch[j:, j - 1] = hit.any(axis=1)
    return tc_at, touch


def _bank_degrees(st: StaticCosts, cfg, stream, idx, tc_at) -> np.ndarray:
    """Per executed instruction, the bank-conflict degree of its buffer accesses
    (`simulator.timing.banks`): the tensor cores' reads of the streamed operand when cores
    split one lane group's pixels or outputs (per static op), and SFU operands a and b in
    one buffer (their only possible conflict: one write port operand, at most two reads;
    `banks.pair_degree`)."""
    deg = np.ones(len(idx), np.int64)
    deg[tc_at] = st.bank[idx[tc_at]]
    at = np.flatnonzero((st.sfu_pair >= 0)[idx])
    geom = _bank_geometry(cfg)
    word, nb = (np.array([geom[b][k] for b in range(len(BUFS))], np.int64) for k in (0, 1))
    buf = st.sfu_pair[idx[at]]
    deg[at] = banks.pair_degree(stream.regs[at, 4], stream.regs[at, 5], word[buf], nb[buf])
    return deg


@dataclass
class TimingResult:
    """What one mode's simulation measured. Cycles are clock cycles of the chip."""

    mode: str
    cycles: int
    unit_busy: dict[str, int]
    unit_stall: dict[str, dict[str, int]]  # per unit: cause -> cycles
    unit_idle: dict[str, int]
    events: dict[str, float]  # whole-step event counts
    static_cycles: np.ndarray  # per static instruction: occupancy cycles summed over executions
    static_events: np.ndarray  # (n_static, len(EVENTS))
    layer_phase: list[dict]  # per (layer, phase): span cycles, tc busy, MACs, utilization
    timeline: dict[str, list[float]]  # utilisation per unit over equal time bins
    dense_macs: int
    useful_macs: int
    notes: list[str] = field(default_factory=list)
    # (start, end) cycle per executed instruction, kept on request (`simulate(keep_times=True)`)
    times: tuple[np.ndarray, np.ndarray] | None = None
    # with `times`: when each op released its unit (before `end` where an SRU drain follows)
    released: np.ndarray | None = None
    # with `times`: when each op's prelude (the packer's mask reads and plan) began (<= start)
    pre_start: np.ndarray | None = None


def _check_masks(prep: PreparedProgram, masks: SparsityMasks) -> list[str]:
    if masks.batch != prep.compiled.batch:
        raise SimulationError(
            f"the masks are for batch {masks.batch}, the program for batch {prep.compiled.batch}"
        )
    notes = []
    gated = {op.layer for op in prep.tc_ops if op.desc.gate}
    lasso = {op.layer for op in prep.tc_ops if op.desc.wsparse}
    if missing := sorted(gated - set(masks.gates)):
        notes.append(f"no gate masks for gated layers {missing}: they run ungated")
    if unused := sorted(set(masks.gates) - gated):
        notes.append(
            f"gate masks of {unused} are not used: the program does not gate these layers "
            "(their FLOPs reduction in the trace's accounting cannot be realised)"
        )
    if unused := sorted(set(masks.wgroups) - lasso):
        notes.append(
            f"weight-group masks of {unused} are not used: the program does not mark these "
            "layers weight-sparse"
        )
    if missing := sorted(lasso - set(masks.wgroups)):
        notes.append(f"no weight-group masks for {missing}: they run dense")
    for name, g in masks.gates.items():
        if g.shape[0] != masks.batch:
            raise SimulationError(f"gate mask of {name} has {g.shape[0]} images, not {masks.batch}")
    return notes


def tc_work(prep: PreparedProgram, masks: SparsityMasks, mode: str) -> list[TcWork]:
    """Tensor-core work of every static op's executions in `mode` (`_tc_work_flat`, per op)."""
    flat = _tc_work_flat(prep, masks, mode)
    bounds = np.cumsum([0] + [len(op.execs) for op in prep.tc_ops])
    return [
        TcWork(*(getattr(flat, f.name)[lo:hi] for f in fields(TcWork)))
        for lo, hi in itertools.pairwise(bounds)
    ]


def _tc_work_flat(prep: PreparedProgram, masks: SparsityMasks, mode: str) -> TcWork:
    """Tensor-core work of all executions of `prep.tc_ops`, concatenated in their order. Static
    ops with the same fields and descriptor (copies in an unrolled loop: a forward block's
    slot rotation) are worked out together, each instance on its own."""
    gating, wsparse, gskip = _FLAGS[mode]
    tcc = prep.cfg.tensor_core
    geo = TcGeometry(tcc.n_tc, tcc.lanes, tcc.dp_width)
    gate_counts: dict[str, GateCounts] = {}
    groups: dict[tuple, list[int]] = {}
    for j, op in enumerate(prep.tc_ops):
        key = (op.op, op.layer, op.desc, tuple(sorted(op.args.items())))
        groups.setdefault(key, []).append(j)
    starts = np.cumsum([0] + [len(op.execs) for op in prep.tc_ops])
    flat = TcWork(*(np.zeros(starts[-1], np.int64) for _ in fields(TcWork)))
    for members in groups.values():
        op = prep.tc_ops[members[0]]
        a, d = op.args, op.desc
        wg = masks.wgroups.get(op.layer) if (wsparse and d.wsparse) else None
        gate = masks.gates.get(op.layer) if (gating and d.gate) else None
        if op.op == "tc.fwd" and TC_PASS.values[a["pass"]] != "cond":
            gate = None
        gc = None
        if gate is not None and op.op != "tc.bwd":
            gc = gate_counts.setdefault(op.layer, GateCounts(gate))
        ops = [prep.tc_ops[j] for j in members]
        k0, c0, p0, img = (np.concatenate([getattr(o, f) for o in ops]) for f in _TILE_FIELDS)
        at = np.concatenate([np.arange(starts[j], starts[j + 1]) for j in members])
        # a skipped image's BP/WU op does nothing (`_tc_costs`): its work is not worked out
        # (left zero)
        if gskip and op.op != "tc.fwd":
            kept = np.flatnonzero(~masks.skip[img])
            k0, c0, p0, img, at = k0[kept], c0[kept], p0[kept], img[kept], at[kept]
            if not len(kept):
                continue
        tiles = OpTiles(d, a["kn"], a["cn"], a["pn"], k0, c0, p0, img)
        view = SparsityView(
            geo, wg, masks.group_in, masks.channel_group,
            tcc.lane_distribution, tcc.pipeline_depth_cycles, tcc.packer_runs_per_cycle,
        )  # fmt: skip
        if op.op == "tc.fwd":
            w = fwd_work(tiles, view, gc)
        elif op.op == "tc.bwd":
            w = bwd_work(tiles, view, gate)
        else:
            w = wgr_work(tiles, view, gc)
        for f in fields(TcWork):
            if (x := getattr(w, f.name)) is not None:
                getattr(flat, f.name)[at] = x
    return flat


_TILE_FIELDS = ("k0", "c0", "p0", "img")
_FWD, _BWD, _WGR = range(3)
_TC_KIND = {"tc.fwd": _FWD, "tc.bwd": _BWD, "tc.wgr": _WGR}
# per kind of tensor-core op: the buffers its operands stream from, its accumulator's buffer
_TC_BUFS = {_FWD: (("act",), "act"), _BWD: (("err",), "err"), _WGR: (("act", "err"), "err")}


@dataclass
class _TcOpCosts:
    """Per tensor-core op (`prep.tc_ops`) in one mode: its kind (`_TC_KIND`), mask bytes the
    lanes read before they know what to skip, outputs, SRU drain cycles (0 without `fin`),
    and whether it accumulates, rounds (`fin`) and is a conditional pass."""

    kind: np.ndarray
    meta: np.ndarray
    outs: np.ndarray
    fin: np.ndarray
    acc: np.ndarray
    rounds: np.ndarray
    cond: np.ndarray


def _tc_op_costs(prep: PreparedProgram, masks: SparsityMasks, gating, wsparse) -> _TcOpCosts:
    rows = []
    for op in prep.tc_ops:
        a, d = op.args, op.desc
        kn, cn, pn = a["kn"], a["cn"], a["pn"]
        cond = op.op == "tc.fwd" and TC_PASS.values[a["pass"]] == "cond"
        meta = 0
        if gating and d.gate and (op.op != "tc.fwd" or cond):
            meta += pn * d.ow * -(-kn // masks.channel_group)
        if wsparse and d.wsparse:
            meta += kn * -(-cn // masks.group_in)
        kind = _TC_KIND[op.op]
        if kind == _FWD:
            outs = pn * d.ow * kn
        elif kind == _BWD:
            outs = min(d.h, pn * d.stride) * d.w * cn
        else:
            outs = kn * cn * d.taps
        fin = -(-outs // prep.cfg.sru.units) if a["fin"] else 0
        rows.append((kind, meta, outs, fin, bool(a["acc"]), bool(a["fin"]), cond))
    cols = list(zip(*rows, strict=True))
    return _TcOpCosts(*(np.array(c, np.int64 if j < 4 else bool) for j, c in enumerate(cols)))


def _tc_costs(prep, masks, mode, dur, sev, bank_extra, tail, pre, stream) -> None:
    """Fill tensor-core occupancy (per execution, into dur), its bank-conflict cycles (into
    bank_extra), its SRU drain when that overlaps the next tile (`output_buffers` > 1, into
    tail), the packer's prelude that may run ahead of the cores (policy `dynamic`, into pre;
    the engine schedules it; into stream, for a conditional pass that streams behind the CGU,
    the part that follows the last gate) and events (summed per static instruction, into
    sev). All executions at once, in the order of `prep.tc_ops`."""
    if not prep.tc_ops:
        return
    gating, wsparse, gskip = _FLAGS[mode]
    tcc = prep.cfg.tensor_core
    word = prep.cfg.buffers.mask.word_bytes
    w = _tc_work_flat(prep, masks, mode)
    c = _tc_op_costs(prep, masks, gating, wsparse)
    lens = np.array([len(op.execs) for op in prep.tc_ops])
    e = np.concatenate([op.execs for op in prep.tc_ops])
    meta_words = np.repeat(-(-c.meta // word), lens)  # mask words read
    fin = np.repeat(c.fin, lens)
    deg = prep.bank[e]
    # w.overhead: the dynamic lane distribution's packer and reloads (0 under static)
    t = w.max_steps * deg + w.overhead + tcc.pipeline_depth_cycles + meta_words + fin
    keep = np.ones(len(e), bool)
    if gskip:  # a skipped image's BP/WU op takes one cycle and does nothing
        img = np.concatenate([op.img for op in prep.tc_ops])
        keep = ~(np.repeat(c.kind != _FWD, lens) & masks.skip[img])
    bank_extra[e] = np.where(keep, w.max_steps * (deg - 1), 0)
    t = np.where(keep, t, 1)
    if tcc.output_buffers > 1:  # the SRUs drain a tile while the cores run the next:
        drain = fin * keep  # the drain leaves the cores' occupancy for the output path
        t = t - drain
        tail[e] = drain
    if tcc.lane_distribution == "dynamic":
        # the packer's own work (mask reads, plan) can run ahead of the cores as soon as
        # the tile's masks are written (engine `pre`, `pre_dep`): for a conditional pass
        # only after the CGU has written its gates
        ahead = (w.plan + meta_words) * keep
        t = t - ahead
        pre[e] = ahead
        if tcc.packer_streams_gates:  # lane plan and descriptors after the gates
            cond = np.repeat(c.cond, lens)
            stream[e[cond]] = np.minimum(ahead[cond], tcc.n_tc * (tcc.lanes + 1))
    dur[e] = t
    _tc_events(prep, sev, w, c, keep, lens)


def _tc_events(prep, sev, w: TcWork, c: _TcOpCosts, keep, lens) -> None:
    """Add the tensor-core ops' events of the kept executions to their static rows of sev
    (per column in the order the rows' other terms were added before, so float sums stay
    the same)."""
    tcc = prep.cfg.tensor_core
    at = np.concatenate([[0], np.cumsum(lens)[:-1]])

    def per_op(x):  # exact integer sums, then float
        return np.add.reduceat(x * keep, at).astype(float)

    rows = np.array([op.static for op in prep.tc_ops])
    n_kept = np.add.reduceat(keep.astype(np.int64), at)
    steps = per_op(w.lane_steps)
    kept_outs = (c.outs * n_kept).astype(float)
    reload = per_op(w.reload_bytes)  # dynamic: weights into the lanes
    sev[rows, EVENT_ID["tc_lane_steps"]] += steps
    sev[rows, EVENT_ID["tc_macs"]] += per_op(w.useful_macs)
    sev[rows, EVENT_ID["rf_bytes"]] += steps * tcc.dp_width + reload
    sev[rows, EVENT_ID["sram_rd_wgt"]] += reload
    streamed = steps * tcc.dp_width / tcc.lanes
    for kind, (bufs, _) in _TC_BUFS.items():
        m = c.kind == kind
        for b in bufs:
            sev[rows[m], EVENT_ID[f"sram_rd_{b}"]] += streamed[m]
    for kind, (_, acc_buf) in _TC_BUFS.items():
        m = c.kind == kind
        sev[rows[m], EVENT_ID[f"sram_wr_{acc_buf}"]] += 2 * kept_outs[m]
        m &= c.acc
        sev[rows[m], EVENT_ID[f"sram_rd_{acc_buf}"]] += 2 * kept_outs[m]
    sev[rows, EVENT_ID["sram_rd_msk"]] += c.meta * n_kept.astype(float)
    sev[rows[c.rounds], EVENT_ID["sru_rounds"]] += kept_outs[c.rounds]


def _timeline(unit, start, end, dur, total, bins) -> dict[str, list[float]]:
    edges = np.linspace(0, max(total, 1), bins + 1)
    out = {}
    for u in ("tc", "ld", "st", "sfu"):
        m = unit == UNITS.index(u)
        s = start[m].astype(float)
        f = s + dur[m]
        # Busy time inside each bin: integral of the coverage via clipped overlaps.
        cov = np.zeros(bins)
        lo = np.clip(np.searchsorted(edges, s, "right") - 1, 0, bins - 1)
        hi = np.clip(np.searchsorted(edges, f, "left") - 1, 0, bins - 1)
        width = edges[1] - edges[0]
        same = lo == hi
        np.add.at(cov, lo[same], (f - s)[same])
        d = ~same
        np.add.at(cov, lo[d], edges[lo[d] + 1] - s[d])
        np.add.at(cov, hi[d], f[d] - edges[hi[d]])
        span = hi[d] - lo[d] - 1
        full = np.zeros(bins + 1)
        np.add.at(full, lo[d] + 1, 1)
        np.add.at(full, hi[d], -1)
        cov += np.cumsum(full)[:bins] * width * (span.size > 0)
        out[u] = np.round(np.minimum(cov / width, 1.0), 4).tolist()
    out["time_cycles"] = np.round(edges[:-1], 1).tolist()
    return out


def simulate(
    prep: PreparedProgram,
    masks: SparsityMasks,
    mode: str,
    timeline_bins: int = 200,
    keep_times: bool = False,
) -> TimingResult:
    """Schedule the whole step in `mode` and aggregate per unit, instruction, layer, phase."""
    if mode not in _FLAGS:
        raise SimulationError(f"unknown mode {mode!r}; modes are {', '.join(MODES)}")
    notes = _check_masks(prep, masks)
    whole, prep = prep, for_mode(prep, masks, mode)  # dense MACs count the whole program
    # SFU ops: conflict-free cycles x degree
    bank_extra = np.where(prep.kind == K_UNIT, prep.dur * (prep.bank - 1), 0)
    dur = prep.dur + bank_extra
    bus = prep.bus
    sev = prep.static_events.copy()
    tail = np.zeros(len(dur), np.int64)
    pre = np.zeros(len(dur), np.int64)
    stream = np.full(len(dur), -1, np.int64)
    _tc_costs(prep, masks, mode, dur, sev, bank_extra, tail, pre, stream)
    # a prelude streams only behind the CGU's gates (only tensor-core ops have a prelude)
    tc, dep = prep.tc_pos, prep.mask_dep[prep.tc_pos]
    stream[tc[(dep < 0) | ~prep.static.gate[prep.stream.index[np.maximum(dep, 0)]]]] = -1
    hold = np.zeros(len(dur), np.bool_)
    if prep.tc_pos is not None and prep.tc_touch.shape[1]:
        t_tail = tail[prep.tc_pos]
        for j in range(1, prep.tc_touch.shape[1] + 1):
            hold[prep.tc_pos[j:]] |= prep.tc_touch[j:, j - 1] & (t_tail[:-j] > 0)
    idx = prep.stream.index
    n_static = len(prep.compiled.instructions)
    if _FLAGS[mode][2]:
        at = np.flatnonzero(prep.skippable)
        img = prep.stream.regs[at, 3]
        skip = at[masks.skip[np.clip(img, 0, masks.batch - 1)]]
        dur[skip] = 1
        bank_extra[skip] = 0
        bus = bus.copy()
        bus[skip] = 0  # a skipped image's transfers move nothing
        n_skipped = np.bincount(idx[skip], minlength=n_static).astype(float)
        sev -= n_skipped[:, None] * prep.unit_events
        sev[:, EVENT_ID["instructions"]] += n_skipped  # the skipped op is still issued
    dur[(prep.kind == K_CTRL) | (prep.kind == K_LOOP) | (prep.kind == K_SKIP)] = 1
    dur[prep.kind == K_SYNC] = 0
    cfg = prep.cfg
    released = np.zeros(len(dur), np.int64)
    pre_start = np.zeros(len(dur), np.int64)
    dispatch, start, end, busy, stall, status = schedule(
        prep.kind, prep.unit, prep.wt, prep.sg, dur, bus, tail, hold, pre, prep.mask_dep, stream,
        cfg.dma.dram_latency_cycles, cfg.controller.queue_depth_instructions,
        cfg.tensor_core.output_buffers, released, pre_start, prep.early, prep.follow,
        prep.follow_lag,
    )  # fmt: skip
    if status == 1:
        raise SimulationError(f"deadlock: instruction {len(end)} waits for a token never signalled")
    if status == 2:
        raise SimulationError("a dependency token's outstanding signals overflowed")
    total = int(end.max()) if len(end) else 0
    occ = np.where(bus > 0, bus, dur)
    ahead = np.flatnonzero(pre[: len(end)] > 0)  # the unit's time includes the exposed prelude
    occ[ahead] = released[ahead] - start[ahead]
    static_cycles = np.bincount(idx, weights=occ, minlength=n_static)
    stall_names = [f"wait_{u}" for u in UNITS] + ["dram", "queue_full", "barrier", "drain"]
    assert len(stall_names) == N_STALL and stall_names[ST_DRAM] == "dram"
    assert stall_names[ST_QUEUE] == "queue_full" and stall_names[ST_BARRIER] == "barrier"
    assert stall_names[ST_DRAIN] == "drain"
    unit_stall = {
        u: {stall_names[c]: int(stall[i, c]) for c in range(N_STALL) if stall[i, c]}
        for i, u in enumerate(UNITS)
    }
    # conflict cycles occupy the unit but are stalls on the banks, not work
    bank_cyc = np.bincount(
        prep.unit[: len(end)], weights=bank_extra[: len(end)], minlength=len(UNITS)
    )
    for i, u in enumerate(UNITS):
        if bank_cyc[i]:
            unit_stall[u]["bank"] = int(bank_cyc[i])
    unit_busy = {u: int(busy[i] - bank_cyc[i]) for i, u in enumerate(UNITS)}
    unit_idle = {u: max(0, total - unit_busy[u] - sum(unit_stall[u].values())) for u in UNITS}
    layer_phase = _layer_phase(prep, masks, dispatch, end, static_cycles, sev, whole.tc_ops)
    return TimingResult(
        mode,
        total,
        unit_busy,
        unit_stall,
        unit_idle,
        {e: float(sev[:, j].sum()) for j, e in enumerate(EVENTS)},
        static_cycles,
        sev,
        layer_phase,
        _timeline(prep.unit[: len(start)], start, end, occ[: len(start)], total, timeline_bins),
        int(whole.dense_macs.sum()),
        int(sev[:, EVENT_ID["tc_macs"]].sum()),
        notes,
        (start, end) if keep_times else None,
        released[: len(end)] if keep_times else None,
        pre_start[: len(end)] if keep_times else None,
    )


def _layer_phase(prep, masks, dispatch, end, static_cycles, sev, tc_ops) -> list[dict]:
    """Per (layer, phase) block: wall-clock span, tensor-core busy cycles, MACs, densities.

    A block's executions are contiguous in the executed stream (loops never cross blocks),
    and dispatch times never decrease, so a block spans [first dispatch, last completion]."""
    idx = prep.stream.index[: len(end)]
    n_ph = len(prep.phase_names)
    key = prep.layers[idx] * n_ph + prep.phases[idx]
    cut = np.flatnonzero(np.diff(key)) + 1
    run_start = np.concatenate([[0], cut])
    run_key = key[run_start]
    run_first = dispatch[run_start]
    run_last = np.maximum.reduceat(end, run_start)
    n_keys = len(prep.layer_names) * n_ph
    first = np.full(n_keys, np.iinfo(np.int64).max)
    last = np.zeros(n_keys, np.int64)
    span = np.zeros(n_keys, np.int64)
    np.minimum.at(first, run_key, run_first)
    np.maximum.at(last, run_key, run_last)
    np.add.at(span, run_key, run_last - run_first)
    skey = prep.layers * n_ph + prep.phases
    is_tc = prep.static.is_tc
    tc_busy = np.bincount(skey, weights=static_cycles * is_tc, minlength=n_keys)
    macs = np.bincount(skey, weights=sev[:, EVENT_ID["tc_macs"]], minlength=n_keys)
    dram = np.bincount(skey, weights=sev[:, EVENT_ID["dram_bytes"]], minlength=n_keys)
    dense = np.zeros(n_keys)
    for op in tc_ops:  # the dense step's work, skipped images included
        a = op.args
        dense[skey[op.static]] += (
            len(op.execs) * a["kn"] * a["cn"] * a["pn"] * op.desc.ow * op.desc.taps
        )
    peak = prep.cfg.tensor_core.macs_per_cycle
    # each layer's mask densities once (its masks recur in each of its phases' rows)
    gate_density = {k: float(np.mean(v)) for k, v in masks.gates.items() if v is not None}
    wgroup_density = {k: float(np.mean(v)) for k, v in masks.wgroups.items() if v is not None}
    rows = []
    for k in np.nonzero(last)[0]:
        layer = prep.layer_names[k // n_ph]
        phase = prep.phase_names[k % n_ph]
        rows.append(
            {
                "layer": layer,
                "phase": phase,
                "cycles": int(span[k]),
                "first_cycle": int(first[k]),
                "tc_busy_cycles": int(tc_busy[k]),
                "dense_macs": int(dense[k]),
                "useful_macs": int(macs[k]),
                "dram_bytes": int(dram[k]),
                "utilization": float(macs[k] / (span[k] * peak)) if span[k] else 0.0,
                "gate_density": gate_density.get(layer),
                "weight_group_density": wgroup_density.get(layer),
            }
        )
    rows.sort(key=lambda r: r["first_cycle"])
    return rows
