"""Lowering of a layer graph to one training step: FP, loss + gradient-skip decision, BP, WU.

Every block (one layer, one phase, one pass) is: write the layer descriptor, load persistent
data, then steps inside a hardware loop over the batch, then drain and a barrier (the next block
may read what this one stored). Tile loops inside an image are unrolled; the batch loop is a
hardware loop whose body steps the per-image DRAM bases and the image register.

DRAM tensors are per image [row][col][channel] (channels innermost), FP8; weights are
[k][kh][kw][c] (FC weights in the activation order of their input, so a flatten is free).
"""

from __future__ import annotations

from isa.compiler.backward import BackwardLowering
from isa.compiler.emitter import (
    Emitter,
)
from isa.compiler.forward import ForwardLowering
from isa.compiler.memmap import MemoryMap
from isa.compiler.plan import f32_bits
from isa.spec import RANDOM_SOURCE as RSRC
from isa.spec import ROUNDING, SHARING, SRU_TARGET


class Lowering(ForwardLowering, BackwardLowering):
    """Builds the program; `run()` returns the emitter and the memory map."""

    # ------------------------------------------------------------ program
    def run(self) -> tuple[Emitter, MemoryMap]:
        """The whole program (see the module docstring); `notes` says what it leaves out."""
        self.preamble()
        for layer in self.g.layers:
            self.forward(layer)
        self.loss()
        for layer in reversed(self.g.layers):
            self.backward(layer)
        self.block("", "end")
        self.e.emit("halt")
        if any(self._gated.values()):
            self.notes.append(
                "gate thresholds are read from DRAM but not trained: the program does not "
                "express their gradient"
            )
        return self.e, self.mm

    def preamble(self) -> None:
        cfg, e = self.cfg, self.e
        self.block("", "setup")
        on = int(self.sparse)
        note = "all sparsity mechanisms enabled" if on else "dense program: no sparsity"
        e.emit("mode", gating=on, wsparse=on, gskip=on, note=note)
        sru = cfg.sru
        variant = ROUNDING.values.index(sru.variant)
        source = RSRC.values.index(
            {
                "lfsr": "lfsr",
                "lfsr_inverted": "lfsr_inverted",
                "lfsr_alternate": "lfsr_alternate",
                "xorshift32": "xorshift32",
                "tensor_bits": "tensor_bits",
            }[sru.random_source]
        )
        for i, target in enumerate(SRU_TARGET.values):
            # one seed per stream, derived from the configured one, never zero
            seed = (sru.seed + 0x9E37 * i) % ((1 << sru.lfsr_width_bits) - 1) + 1
            e.emit(
                "sru",
                target=i,
                r=sru.random_bits,
                variant=variant,
                source=source,
                width=sru.lfsr_width_bits,
                sharing=SHARING.values.index(sru.lfsr_sharing),
                seed=seed,
                note=f"SRU stream {target}",
            )
        e.emit(
            "gscfg",
            criterion=["correct_and_confident", "confident"].index(cfg.gsu.criterion),
            threshold=f32_bits(cfg.gsu.threshold),
        )
        e.emit(
            "wscfg",
            threshold=f32_bits(cfg.wsu.threshold),
            gc=cfg.wsu.group_in_channels,
            gk=cfg.wsu.group_out_channels,
        )
        e.emit(
            "sgdcfg",
            lr=f32_bits(self.train.lr),
            momentum=f32_bits(self.train.momentum),
            wd=f32_bits(self.train.weight_decay),
        )
