"""Memory-hazard check of a program's schedule: does the timing model let any two instructions
that touch the same bytes run in an order the program does not allow?

The functional executor runs instructions one at a time in program order, so a missing
dependency token in a program cannot change its results there; the timing model instead lets
the units overlap as far as the tokens allow. This check joins the two views: from the ISA
semantics (docs/isa.md) it derives which bytes of which buffer (or of DRAM) every executed
instruction reads and writes, and from a timing schedule when each one runs. For every byte,
a later instruction (program order) of another unit must not start before an earlier one
ends when either writes it (read after write, write after read, write after write).
Instructions of one unit run in order and never conflict with each other, except for the
tensor cores' outputs: with `tensor_core.output_buffers` > 1 a tensor-core op's SRU drain
writes its outputs after the op has released the cores, so the next tensor-core op may run
while they are written. The writes of a tensor-core op with a drain are therefore checked as
those of a separate writer (the output path) that ends when the op ends (its drain included),
against every later instruction, tensor-core ops included, and its reads end when it releases
the cores. Drains are written in program order (one output path), so two drains writing the
same bytes are not a hazard; an op without a drain writes when it releases the cores. A
tensor-core op's mask reads start when its prelude (the work packer, `dynamic` lanes) began,
which may be before the op itself; a prelude that streams behind the CGU
(`tensor_core.packer_streams_gates`) reads each gate after the CGU wrote it (it follows the
CGU's write pointer and ends after the CGU), so its reads are not checked against that one
writer's bytes; likewise a CGU that streams behind its base pass (`cgu.streams_base_sums`)
reads each base sum after the lanes wrote it and ends after them, so its reads are not
checked against that base pass's writes.

Footprints follow the ISA text; operand-dependent reads (masks in modes that do not read
them, skipped images' work) are included regardless of mode, so the check is conservative
for them. DRAM is tracked per 16-byte word.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isa.compiler import CompiledProgram
from isa.spec import BUFFER, BY_MNEMONIC, LAYER_KIND, SFU_OP, TC_PASS
from simulator.timing.masks import SparsityMasks
from simulator.timing.model import PreparedProgram, _descriptor, for_mode, simulate
from simulator.timing.stream import run_control, static_program
from simulator.timing.tensor_core import LayerDesc

BUFS = tuple(BUFFER.values)  # act, wgt, err, msk
DRAM_WORD = 16
REG_FIELDS = tuple(
    sorted({f.name for s in BY_MNEMONIC.values() for f in s.fields if f.kind == "reg"})
)
_SFU_NAMES = tuple(SFU_OP.values)


@dataclass(frozen=True)
class Hazard:
    """Two executed instructions (program order first, second) that overlap in time on a
    byte at least one of them writes."""

    kind: str  # RAW, WAR or WAW
    space: str
    address: int
    first: int  # executed-stream positions
    second: int
    first_op: str
    second_op: str
    first_end: int
    second_start: int

    def __str__(self) -> str:
        return (
            f"{self.kind} on {self.space}[{self.address}]: #{self.first} {self.first_op} ends at "
            f"cycle {self.first_end}, #{self.second} {self.second_op} starts at "
            f"{self.second_start}"
        )


@dataclass
class _Desc:
    """A descriptor slot as the footprints need it: geometry, kind, gate group width."""

    geo: LayerDesc
    kind: str
    group: int = 16

    def __getattr__(self, name: str):
        return getattr(self.geo, name)


Access = tuple[str, np.ndarray | slice, bool]  # space, byte index (array or slice), write


def _rng(space: str, lo: int, n: int, write: bool) -> Access:
    return (space, slice(lo, lo + n), write)


def _rows(space: str, lo: int, rows: int, row_bytes: int, stride: int, write: bool) -> Access:
    if rows == 1 or stride == row_bytes:
        return _rng(space, lo, rows * row_bytes, write)
    idx = (lo + stride * np.arange(rows))[:, None] + np.arange(row_bytes)[None, :]
    return (space, idx.ravel(), write)


def _in_rows(d: _Desc, p0: int, pn: int) -> int:
    """Input rows a tile of output rows [p0, p0 + pn) holds in its buffer."""
    first = p0 * d.stride - d.pad
    last = (p0 + pn - 1) * d.stride - d.pad + d.kh
    return min(d.h, last) - max(0, first)


def footprint(op: str, a: dict, r: dict[str, int], d: _Desc | None, gc: int) -> list[Access]:
    """Bytes an executed instruction reads and writes. `a`: its fields; `r`: its register
    operands' values; `d`: its layer descriptor (if it names one); `gc`: Lasso group width."""
    if op in ("dma.ld", "dma.st"):
        buf, base, dram = BUFS[a["buf"]], r["rbuf"] + a["boff"], r["rdram"]
        rows, rb = a["rows"], a["row_bytes"]
        ld = op == "dma.ld"
        return [
            _rows(buf, base, rows, rb, a["bstride"], ld),
            _rows("dram", dram, rows, rb, a["dstride"], not ld),
        ]
    if op == "sgd":
        n = a["n"]
        return [
            _rng("wgt", r["rw"], n, False),
            _rng("wgt", r["rw"], n, True),
            _rng("err", r["rg"], 2 * n, False),
            _rng("err", r["rv"], n, False),
            _rng("err", r["rv"], n, True),
        ]
    if op == "cg.gate":
        npix = a["pn"] * d.ow
        return [
            _rng("act", r["ra"], 2 * npix * a["kn"], False),
            _rng("wgt", r["rt"], 2, False),
            _rng("msk", r["rm"], npix * (a["kn"] // d.group), True),
        ]
    if op in ("ws.norm", "ws.prune"):
        kn, cn = a["kn"], a["cn"]
        groups = kn * (cn // gc)
        w = kn * d.taps * cn
        if op == "ws.norm":
            return [_rng("wgt", r["rw"], w, False), _rng("err", r["rn"], 4 * groups, True)]
        return [
            _rng("err", r["rn"], 4 * groups, False),
            _rng("wgt", r["rw"], w, False),
            _rng("wgt", r["rw"], w, True),
            _rng("msk", r["rm"], groups, True),
        ]
    if op == "gs.decide":
        n = a["classes"]
        return [
            _rng("act", r["ra"], n, False),
            _rng("act", r["rt"], n, False),
            _rng("msk", r["rm"] + r["rimg"], 1, True),
        ]
    if op in ("tc.fwd", "tc.bwd", "tc.wgr"):
        return _tc(op, a, r, d, gc)
    if op == "sfu":
        return _sfu(_SFU_NAMES[a["op"]], a, r, d)
    return []


def _tc(op: str, a: dict, r: dict[str, int], d: _Desc, gc: int) -> list[Access]:
    kn, cn, pn = a["kn"], a["cn"], a["pn"]
    npix = pn * d.ow
    out: list[Access] = []
    cin = d.group_channels(kn, cn)
    if op == "tc.fwd":
        out += [
            _rng("act", r["ra"], _in_rows(d, r["rp"], pn) * d.w * (cin or d.c), False),
            _rng("wgt", r["rb"], kn * d.taps * (cn if cin else d.c), False),
        ]
        acc_space, acc_bytes = "act", 2 * npix * kn
        gate = d.gate and TC_PASS.values[a["pass"]] == "cond"
        row = d.c
    elif op == "tc.bwd":
        out += [
            _rng("err", r["ra"], npix * kn, False),
            _rng("wgt", r["rb"], kn * d.taps * cn, False),
        ]
        acc_space, acc_bytes = "err", 2 * d.h * d.w * (cin or cn)
        gate, row = d.gate, cn
    else:
        out += [
            _rng("err", r["ra"], npix * kn, False),
            _rng("act", r["rb"], _in_rows(d, r["rp"], pn) * d.w * (cin or cn), False),
        ]
        acc_space, acc_bytes = "err", 2 * kn * d.taps * cn
        gate, row = d.gate, cn
    if gate:
        out.append(_rng("msk", r["rm"], npix * -(-kn // d.group), False))
    if d.wsparse:
        out.append(_rng("msk", a["gm"], kn * -(-row // gc), False))
    if a["acc"]:
        out.append(_rng(acc_space, r["ro"], acc_bytes, False))
    out.append(_rng(acc_space, r["ro"], acc_bytes, True))
    return out


def _sfu(name: str, a: dict, r: dict[str, int], d: _Desc | None) -> list[Access]:
    bufa, bufb, bufo = BUFS[a["bufa"]], BUFS[a["bufb"]], BUFS[a["bufo"]]
    bufc = BUFS[a.get("bufc", 0)]
    n, ch = a["n"], a.get("ch", 0)
    ra, rb, ro, rc = r["ra"], r["rb"], r["ro"], r.get("rc", 0)
    if name == "zero":
        width = a.get("esz", 0) or (2 if d is not None and d.kind in ("conv", "fc") else 1)
        return [_rng(bufo, ro, width * n, True)]
    if name in ("copy", "relu_fwd"):
        return [_rng(bufa, ra, n, False), _rng(bufo, ro, n, True)]
    if name in ("relu_bwd", "add", "loss_mse"):
        return [_rng(bufa, ra, n, False), _rng(bufb, rb, n, False), _rng(bufo, ro, n, True)]
    if name == "norm_stat":
        return [
            _rng(bufa, ra, n, False),
            _rng(bufo, ro, 8 * ch, False),
            _rng(bufo, ro, 8 * ch, True),
        ]
    if name == "norm_fwd":
        return [
            _rng(bufa, ra, n, False),
            _rng(bufb, rb, 8 * ch, False),
            _rng("wgt", a["pa"], 2 * ch, False),
            _rng(bufo, ro, n, True),
        ]
    if name == "norm_bwd_stat":
        return [
            _rng(bufa, ra, n, False),
            _rng(bufb, rb, n, False),
            _rng(bufc, rc, 8 * ch, False),
            _rng(bufo, ro, 4 * ch, False),
            _rng(bufo, ro, 4 * ch, True),
        ]
    if name == "norm_bwd":
        return [
            _rng(bufa, ra, n, False),
            _rng(bufb, rb, 8 * ch + 4 * ch, False),
            _rng(bufc, rc, n, False),
            _rng("wgt", a["pa"], 2 * ch, False),
            _rng(bufo, ro, n, True),
        ]
    if name in ("maxpool_fwd", "avgpool_fwd"):
        cn = n // (d.h * d.w)
        out = [_rng(bufa, ra, n, False), _rng(bufo, ro, cn * d.oh * d.ow, True)]
        if name == "maxpool_fwd":
            out.append(_rng(bufb, rb, cn * d.oh * d.ow, True))
        return out
    if name in ("maxpool_bwd", "avgpool_bwd"):
        cn = n // (d.oh * d.ow)
        out = [_rng(bufa, ra, n, False), _rng(bufo, ro, cn * d.h * d.w, True)]
        if name == "maxpool_bwd":
            out.append(_rng(bufb, rb, n, False))
        return out
    raise ValueError(f"sfu op {name!r} has no footprint rule")


def executed_footprints(
    compiled: CompiledProgram, skipped: np.ndarray | None = None
) -> tuple[np.ndarray, list[list[Access]]]:
    """Static index and footprint of every executed instruction, in program order
    (`skipped`: the images whose `skipimg` regions are not issued, as `stream.unroll`)."""
    prog = compiled.instructions
    sp = static_program(prog)
    cap = np.full((len(prog), len(REG_FIELDS)), -1, np.int64)
    for i, ins in enumerate(prog):
        for j, name in enumerate(REG_FIELDS):
            if name in ins.args and name not in ("rd", "rs"):
                cap[i, j] = ins.args[name]
    idx, regs = run_control(sp, cap, skipped)
    descs: dict[int, _Desc] = {}
    gc = 8
    feet: list[list[Access]] = []
    for e, i in enumerate(idx):
        ins = prog[i]
        a = ins.args
        if ins.op == "layer":
            descs[a["desc"]] = _Desc(_descriptor(a), LAYER_KIND.values[a["kind"]])
        elif ins.op == "cgcfg":
            descs[a["desc"]].group = a["group"]
        elif ins.op == "wscfg":
            gc = a["gc"]
        r = {name: int(regs[e, j]) for j, name in enumerate(REG_FIELDS) if cap[i, j] >= 0}
        d = descs.get(a["desc"]) if "desc" in a else None
        feet.append(footprint(ins.op, a, r, d, gc))
    return idx, feet


def check(prep: PreparedProgram, masks: SparsityMasks, mode: str, limit: int = 20) -> list[Hazard]:
    """Hazards of `prep`'s schedule in `mode` (at most `limit`, the first in program order)."""
    res = simulate(prep, masks, mode, timeline_bins=1, keep_times=True)
    prep = for_mode(prep, masks, mode)  # the stream `simulate` scheduled
    start, end = res.times
    released, pre_start = res.released, res.pre_start
    dep = prep.mask_dep[: len(end)]
    # preludes that began before their mask writer (the CGU) ended: streamed behind it
    streamed = (dep >= 0) & (pre_start < end[np.maximum(dep, 0)])
    follow = prep.follow[: len(end)] if prep.follow is not None else np.full(len(end), -1)
    idx, feet = executed_footprints(prep.compiled, prep.skipped)
    if len(idx) != len(start) or not np.array_equal(idx, prep.stream.index[: len(idx)]):
        raise AssertionError("the footprint walk and the timing stream disagree")
    unit = prep.unit
    ops = prep.sp.ops
    sizes = {b: 1 for b in BUFS}
    for f in feet:
        for space, sel, _ in f:
            if not _nonempty(sel):
                continue
            top = sel.stop if isinstance(sel, slice) else int(sel.max()) + 1
            if space == "dram":
                top = -(-top // DRAM_WORD)
            sizes[space] = max(sizes.get(space, 1), top)
    n_units = int(unit.max()) + 1 if len(unit) else 1
    drain = n_units  # the tensor cores' output path, a writer of its own
    n_units += 1
    # ops whose outputs the output path writes after they released their unit
    drained = np.array([op.startswith("tc.") for op in ops])[idx] & (released < end)
    w_end = {s: np.zeros(n, np.int64) for s, n in sizes.items()}
    w_unit = {s: np.full(n, -1, np.int64) for s, n in sizes.items()}
    w_who = {s: np.full(n, -1, np.int64) for s, n in sizes.items()}
    r_end = {s: np.zeros((n_units, n), np.int64) for s, n in sizes.items()}
    r_who = {s: np.full((n_units, n), -1, np.int64) for s, n in sizes.items()}
    found: list[Hazard] = []

    def report(kind, space, where, first, e):
        addr = int(where) * (DRAM_WORD if space == "dram" else 1)
        pair = (int(first), e, ops[idx[first]], ops[idx[e]], int(end[first]), int(start[e]))
        found.append(Hazard(kind, space, addr, *pair))

    latency = prep.cfg.dma.dram_latency_cycles
    is_st = np.array([op == "dma.st" for op in ops])[idx]
    for e, f in enumerate(feet):
        if not f:
            continue
        e1 = int(end[e])
        # a store has read its buffer rows once the channel took them (before the latency)
        e_read = e1 - latency if is_st[e] else e1
        if drained[e]:
            e_read = int(released[e])
        for space, sel, write in f:
            if space == "dram":
                sel = _words(sel)
            u = drain if write and drained[e] else int(unit[e])
            # the packer reads a tile's masks from when its prelude began
            s0 = int(pre_start[e]) if space == "msk" and not write else int(start[e])
            # read after write / write after write: an earlier writer of another unit
            late = (w_end[space][sel] > s0) & (w_unit[space][sel] != u) & (w_unit[space][sel] >= 0)
            if space == "msk" and not write and streamed[e]:
                late &= w_who[space][sel] != dep[e]
            if not write and follow[e] >= 0:  # reads behind the producer's write pointer
                late &= w_who[space][sel] != follow[e]
            if late.any():
                k = int(np.argmax(late))
                report("WAW" if write else "RAW", space, _at(sel, k), w_who[space][sel][k], e)
            if write:
                # write after read: an earlier reader of another unit still reading
                for v in range(n_units):
                    if v == u:
                        continue
                    busy = r_end[space][v][sel] > s0
                    if busy.any():
                        k = int(np.argmax(busy))
                        report("WAR", space, _at(sel, k), r_who[space][v][sel][k], e)
        if len(found) >= limit:
            break
        for space, sel, write in f:  # effects after the checks (an op may read what it writes)
            if space == "dram":
                sel = _words(sel)
            u = drain if write and drained[e] else int(unit[e])
            if write:
                w_end[space][sel] = e1
                w_unit[space][sel] = u
                w_who[space][sel] = e
                r_end[space][:, sel] = 0
            else:
                r_end[space][u][sel] = np.maximum(r_end[space][u][sel], e_read)
                r_who[space][u][sel] = e
    return found[:limit]


def _nonempty(sel) -> bool:
    return (sel.stop > sel.start) if isinstance(sel, slice) else len(sel) > 0


def _words(sel):
    if isinstance(sel, slice):
        return slice(sel.start // DRAM_WORD, -(-sel.stop // DRAM_WORD))
    return np.unique(sel // DRAM_WORD)


def _at(sel, k: int) -> int:
    return sel.start + k if isinstance(sel, slice) else int(sel[k])
