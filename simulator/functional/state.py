"""Machine state of the functional model: DRAM, the four on-chip buffers, registers, layer
descriptors and the configuration registers, all as numpy byte arrays and plain values."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from isa.program import DescriptorGeometry
from simulator.config import HardwareConfig


class FunctionalError(RuntimeError):
    """A program the functional model cannot execute (out-of-range access, unsupported op)."""


BUFFERS = ("act", "wgt", "err", "msk")


def f32(bits: int) -> float:
    """The float32 value of an instruction's raw f32 field."""
    return struct.unpack("<f", struct.pack("<I", bits & 0xFFFFFFFF))[0]


@dataclass
class Descriptor(DescriptorGeometry):
    kind: str
    c: int
    k: int
    h: int
    w: int
    kh: int
    kw: int
    stride: int
    pad: int
    groups: int
    gate: bool
    wsparse: bool
    cg_g: int = 4  # cgcfg: base fraction denominator
    cg_group: int = 16  # cgcfg: output channels per gate decision


@dataclass
class Modes:
    """The `mode` instruction's bits; `forced` pins them (a verification run's mode)."""

    gating: bool = False
    wsparse: bool = False
    gskip: bool = False


@dataclass
class Machine:
    """Everything an instruction can read or write."""

    cfg: HardwareConfig
    dram: np.ndarray
    buffers: dict[str, np.ndarray] = field(default_factory=dict)
    regs: list[int] = field(default_factory=lambda: [0] * 16)  # r0 stays 0
    desc: dict[int, Descriptor] = field(default_factory=dict)
    modes: Modes = field(default_factory=Modes)
    forced_modes: Modes | None = None
    ws_threshold: float = 0.0
    ws_gc: int = 8
    ws_gk: int = 1
    gs_criterion: str = "correct_and_confident"
    gs_threshold: float = 0.9
    sgd_lr: float = 0.0
    sgd_momentum: float = 0.0
    sgd_wd: float = 0.0
    # with `record_bits`: per byte of DRAM and of each buffer, the SRU random word that
    # produced it (moved along by the DMA), so a reference can round with the same bits
    bits: dict[str, np.ndarray] | None = None
    # with `record_bits`: (pc, image, ch, words) of every norm_fwd, whose rounded results
    # may be rounded again on chip (a fused add) before they reach DRAM
    norm_words: list = field(default_factory=list)
    pc: int = 0  # the instruction being executed

    @classmethod
    def create(cls, cfg: HardwareConfig, dram_bytes: int, record_bits: bool = False) -> Machine:
        b = cfg.buffers
        sizes = {
            "act": b.activation.size_bytes,
            "wgt": b.weight.size_bytes,
            "err": b.error.size_bytes,
            "msk": b.mask.size_bytes,
        }
        m = cls(
            cfg,
            np.zeros(dram_bytes, np.uint8),
            {k: np.zeros(v, np.uint8) for k, v in sizes.items()},
        )
        if record_bits:
            m.bits = {k: np.zeros(v, np.uint32) for k, v in sizes.items()}
            m.bits["dram"] = np.zeros(dram_bytes, np.uint32)
        return m

    # -- byte views with bounds checks (a wrong address is an error, never a silent wrap)
    def view(self, space: str, addr: int, nbytes: int) -> np.ndarray:
        mem = self.dram if space == "dram" else self.buffers[space]
        if addr < 0 or nbytes < 0 or addr + nbytes > mem.size:
            raise FunctionalError(
                f"{space} access [{addr}, {addr + nbytes}) outside its {mem.size} bytes"
            )
        return mem[addr : addr + nbytes]

    def u16(self, space: str, addr: int, n: int) -> np.ndarray:
        """n little-endian 16-bit words (a view, writable)."""
        if addr % 2:
            raise FunctionalError(f"{space}: 16-bit access at odd address {addr}")
        return self.view(space, addr, 2 * n).view("<u2")

    def f32s(self, space: str, addr: int, n: int) -> np.ndarray:
        if addr % 4:
            raise FunctionalError(f"{space}: 32-bit access at unaligned address {addr}")
        return self.view(space, addr, 4 * n).view("<f4")

    def reg(self, r: int) -> int:
        return self.regs[r]

    @property
    def mode(self) -> Modes:
        return self.forced_modes or self.modes

    def skipped(self, img: int) -> bool:
        """The image's gradient-skip flag (mask buffer byte `img`), where skipping is on."""
        if not self.mode.gskip:
            return False
        msk = self.buffers["msk"]
        if 0 <= img < msk.size:  # (asked before every BP/WU transfer: no view made)
            return bool(msk[img])
        return bool(self.view("msk", img, 1)[0])  # raises, naming the address
