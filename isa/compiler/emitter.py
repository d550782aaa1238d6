"""Instruction emission with annotations, hardware loops, registers and the token protocol.

Register roles are fixed (see `R`). A *step* is the unit of double buffering: loads into the
current slot of each buffer, compute ops, stores; then the slot registers toggle. Tokens:
FREE counts free slots, LOADED/DONE/CHAIN order the units inside a step, PERS orders loads of
persistent data before their consumers, ACC guards a persistent accumulator's reuse.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from isa.encoding import Instruction
from isa.spec import BUFFER, BY_MNEMONIC, SFU_OP, TC_PASS, UNIT

# Registers.
ZERO, IMG, BASE_A, BASE_B, BASE_C, TMP_D = 0, 1, 2, 3, 4, 5
SLOT = {"act": 6, "wgt": 7, "err": 8, "msk": 9}
TMP_A, TMP_B, TMP_O = 10, 11, 12
K_IDX, C_IDX, P_IDX = 13, 14, 15
# Weight-update tile loops keep the tile's weight and group-map offsets in the otherwise
# unused temporaries.
W_OFF, G_OFF, GT_OFF = TMP_A, TMP_B, TMP_O  # GT_OFF: first gate group of the tile
# Forward k-tile loops use the wgt/err slot registers (FP uses only act/msk slots) and TMP_A.
FW_OFF, FG_OFF, FGT_OFF = SLOT["wgt"], SLOT["err"], TMP_A

# Tokens. Each cross-unit edge inside a step has its own token, so two waiters never race for
# one signal.
FREE, LOADED, DONE, PERS, ACC = 1, 2, 3, 5, 6
STAT = 12  # a forward conv's output tile is ready for the statistics pass one image later
# Backward side paths in a data-gradient step (isa.compiler.backward.bp_mac): SIDE (tc) and
# SIDE3 (sfu) hand a result to a store that need not wait for the rest of the step, SIDE2
# releases the accumulators once the SFU has read them.
SIDE, SIDE2, SIDE3 = 13, 14, 15
CHAIN = (4, 7, 8, 9, 10, 11)
# a step's loads that only the SFU work after the tensor cores reads (`step(late=)`); shares
# the last chain token, which such a step never uses
LATE = CHAIN[-1]
# in the same steps: the norm's input x is in (`step(first=)`: the ReLU's backward before the
# norm's starts on the loads before it), and the batch-norm gradient sums after the SFU work on
# dX are done (the slot is free once they and the step's stores are: `BackwardLowering`)
NORM_IN, SUMS = CHAIN[-2], CHAIN[-3]

MAX_ROWS = (1 << 12) - 1  # dma `rows` field


def unit_of(op: str) -> str:
    return BY_MNEMONIC[op].unit


@dataclass
class Op:
    """A mutable instruction under construction (tokens are filled in by `step`)."""

    op: str
    args: dict[str, int]
    wt: int = 0
    sg: int = 0
    note: str = ""


@dataclass
class Annotation:
    index: int
    layer: str
    phase: str
    note: str


@dataclass
class Emitter:
    ops: list[Op] = field(default_factory=list)
    notes: list[Annotation] = field(default_factory=list)
    layer: str = ""
    phase: str = "setup"
    slot_toggle: dict[str, int] = field(default_factory=dict)  # buffer -> xor mask
    # three or more slots (`begin_slots`): buffer -> slot addresses, rotated by `setr`, and
    # the slot of the step being emitted (the image loop is unrolled to keep it static)
    slot_addrs: dict[str, tuple[int, ...]] = field(default_factory=dict)
    slot_pos: int = 0
    loop_depth: int = 0  # hardware loops open where the next instruction is placed
    slot_depth: int = 0  # ... where `begin_slots` was
    # inside a batch loop of a BP/WU block: a step's transfers are the image's (dma `gsk`)
    per_image_backward: bool = False

    # -- basics
    def emit(self, mnemonic: str, wt: int = 0, sg: int = 0, note: str = "", **args: int) -> Op:
        o = Op(mnemonic, dict(args), wt, sg, note)
        self.place(o)
        return o

    def place(self, o: Op) -> Op:
        self.notes.append(Annotation(len(self.ops), self.layer, self.phase, o.note))
        self.ops.append(o)
        return o

    def make(self, mnemonic: str, note: str = "", **args: int) -> Op:
        """An op not yet placed (for `step`)."""
        return Op(mnemonic, dict(args), note=note)

    def instructions(self) -> list[Instruction]:
        return [Instruction(o.op, o.args, o.wt, o.sg) for o in self.ops]

    @contextmanager
    def loop(self, count: int) -> Iterator[None]:
        if count == 1:
            yield
            return
        head = self.emit("loop", count=count, end=1)
        start = len(self.ops)
        self.loop_depth += 1
        try:
            yield
        finally:
            self.loop_depth -= 1
        if len(self.ops) == start:  # empty body: keep it harmless
            self.emit("nop")
        head.args["end"] = len(self.ops) - start + 1

    @contextmanager
    def skip_region(self, rimg: int, inv: bool = False) -> Iterator[None]:
        """The instructions placed inside are one image's BP/WU work: with gradient skipping on
        and image `rimg` skipped, the controller does not issue them (`skipimg`). All of an
        image's regions in a block must signal and wait for each token equally often. `inv`:
        issued only where image `rimg` is skipped."""
        head = self.emit("skipimg", rimg=rimg, end=1, inv=int(inv))
        start = len(self.ops)
        yield
        head.args["end"] = len(self.ops) - start + 1

    def setr(self, reg: int, value: int) -> None:
        self.emit("setr", rd=reg, imm=value)

    def addr(self, rd: int, rs: int, imm: int) -> None:
        self.emit("addr", rd=rd, rs=rs, imm=imm)

    # -- DMA helpers: 2-D transfers split where `rows` exceeds its field
    def dma(
        self,
        kind: str,
        buf: str,
        rbuf: int,
        boff: int,
        rdram: int,
        dram_off: int,
        rows: int,
        row_bytes: int,
        dstride: int,
        bstride: int,
        note: str = "",
    ) -> list[Op]:
        """Ops (not placed) for a strided transfer; `dram_off` is added to register `rdram`
        through TMP_D, each op preceded by the `addr` that forms its address."""
        out: list[Op] = []
        done = 0
        while done < rows:
            n = min(MAX_ROWS, rows - done)
            out.append(self.make("addr", rd=TMP_D, rs=rdram, imm=dram_off + done * dstride))
            out.append(
                self.make(
                    kind,
                    note=note,
                    buf=BUFFER.values.index(buf),
                    rbuf=rbuf,
                    boff=boff + done * bstride,
                    rdram=TMP_D,
                    rows=n,
                    row_bytes=row_bytes,
                    dstride=dstride,
                    bstride=bstride,
                    gsk=0,
                    rimg=ZERO,
                )
            )
            done += n
        return out

    # -- the step protocol
    def step(
        self, loads: list[Op], computes: list[Op], stores: list[Op], late: int = 0, first: int = 0
    ) -> None:
        """Place one double-buffered step with its tokens (`step_tokens`), then toggle the
        slots."""
        self.step_tokens(loads, computes, stores, late, first)
        for o in (*loads, *computes, *stores):
            self.place(o)
        self.toggle_slots()

    def toggle_slots(self) -> None:
        if self.slot_addrs:  # rotation: the next slot's absolute address
            # static only in the unrolled image loop, not inside a loop within it
            assert self.loop_depth <= self.slot_depth + 1, "slot rotation in an inner loop"
            self.slot_pos = (self.slot_pos + 1) % self.rotation
            for buf, addrs in self.slot_addrs.items():
                self.setr(SLOT[buf], addrs[self.slot_pos])
            return
        for buf, mask in self.slot_toggle.items():
            if mask:
                self.emit("xorr", rd=SLOT[buf], rs=SLOT[buf], imm=mask)

    @property
    def rotation(self) -> int:
        """Slots rotated by `setr` (0: none, the block double-buffers by XOR or has one)."""
        return len(next(iter(self.slot_addrs.values()))) if self.slot_addrs else 0

    def prev_slot(self, buf: str) -> int:
        """Under a rotation: the address of the previous step's slot of `buf`."""
        addrs = self.slot_addrs[buf]
        return addrs[(self.slot_pos - 1) % len(addrs)]

    def step_tokens(
        self, loads: list[Op], computes: list[Op], stores: list[Op], late: int = 0, first: int = 0
    ) -> None:
        """The tokens of one double-buffered step (ld -> compute chain -> st), not placed.
        `late`: the last `late` loads are not needed by the first compute op; the load before
        them signals LOADED, the last LATE (the caller makes their consumer wait for it).
        `first`: the first compute op needs only the first `first` loads: the load `first - 1`
        signals LOADED and the last before the late ones NORM_IN (the caller makes their
        consumer wait for it)."""
        lds = [o for o in loads if o.op == "dma.ld"]
        sts = [o for o in stores if o.op == "dma.st"]
        if lds:
            lds[0].wt = FREE
            lds[-1].sg = LOADED
        if late:
            assert 0 < late < len(lds)
            lds[-1 - late].sg, lds[-1].sg = LOADED, LATE
        if first:
            assert 0 < first < len(lds) - late
            lds[first - 1].sg, lds[-1 - late].sg = LOADED, NORM_IN
        chain = [o for o in computes if unit_of(o.op) != "ctrl"]
        edges = 0
        for i, o in enumerate(chain):
            if i == 0:
                o.wt = LOADED if lds else FREE
            elif unit_of(o.op) != unit_of(chain[i - 1].op):
                chain[i - 1].sg = o.wt = CHAIN[edges]
                edges += 1
        if late:
            assert edges < len(CHAIN), "LATE shares the last chain token"
        if first:
            assert edges < len(CHAIN) - 1, "NORM_IN shares a chain token"
        if chain:
            chain[-1].sg = DONE if sts else FREE
        if sts:
            sts[0].wt = DONE if chain else (LOADED if lds else FREE)
            sts[-1].sg = FREE
        if self.per_image_backward:  # a skipped image moves no data (tokens still flow)
            for o in (*lds, *sts):
                o.args["gsk"], o.args["rimg"] = 1, IMG

    def begin_slots(self, bases: dict[str, tuple[int, ...]]) -> int:
        """Set the slot registers: buffer -> (slot 0 address, slot 1 address or equal for
        single buffering), or n > 2 addresses (a rotation: `toggle_slots` sets the next one,
        and `BlockBuilder.batch_loop` unrolls the image loop n times so each step's slot is
        static). Returns the number of slots and pre-signals FREE for each."""
        first = next(iter(bases.values()))
        nslots = (
            len(first) if len(first) > 2 else 2 if all(v[0] != v[1] for v in bases.values()) else 1
        )
        self.slot_toggle = {}
        self.slot_addrs = {b: tuple(v) for b, v in bases.items()} if nslots > 2 else {}
        self.slot_pos, self.slot_depth = 0, self.loop_depth
        for buf, v in bases.items():
            self.setr(SLOT[buf], v[0])
            self.slot_toggle[buf] = (v[0] ^ v[1]) if nslots == 2 else 0
        for _ in range(nslots):
            self.emit("nop", sg=FREE)
        return nslots

    def end_block(self, nslots: int) -> None:
        for _ in range(nslots):
            self.emit("nop", wt=FREE)
        self.emit("barrier")
        self.slot_addrs = {}

    def persistent_load(self, loads: list[Op], units: tuple[str, ...]) -> None:
        """Place loads of persistent data, then make each consumer unit's queue wait until the
        load channel has completed them (a `sync ld` signals, a `sync <unit>` waits)."""
        for o in loads:
            self.place(o)
        for u in units:
            self.emit("sync", sg=PERS, unit=UNIT.values.index("ld"))
            self.emit("sync", wt=PERS, unit=UNIT.values.index(u))


def sfu_code(name: str) -> int:
    return SFU_OP.values.index(name)


def tc_pass(name: str) -> int:
    return TC_PASS.values.index(name)


def buf_code(name: str) -> int:
    return BUFFER.values.index(name)
