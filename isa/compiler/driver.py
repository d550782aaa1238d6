"""Compile a layer graph for a hardware configuration and write the program's files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from isa.analysis import executed_counts, tc_work_by_phase
from isa.compiler.lower import Lowering
from isa.compiler.memmap import CompileError, MemoryMap
from isa.compiler.plan import TrainParams
from isa.disasm import disassemble_program
from isa.encoding import Instruction, encode
from isa.program import max_loop_depth
from isa.spec import INSTRUCTION_BITS
from simulator.config import HardwareConfig, config_hash
from workloads.graph import LayerGraph


@dataclass(frozen=True)
class CompiledProgram:
    """A training-step program with its memory map and per-instruction annotations."""

    model_name: str
    batch: int
    config_name: str
    config_hash: str
    instructions: list[Instruction]
    annotations: list[dict]  # per instruction: layer, phase, note
    memmap: MemoryMap
    notes: tuple[str, ...] = ()  # what the program leaves out, and why

    @property
    def binary(self) -> bytes:
        return encode(self.instructions)

    def text(self) -> str:
        head = (
            f"; fp8sim training-step program: model {self.model_name}, batch {self.batch}, "
            f"config {self.config_name} ({self.config_hash[:16]})\n"
            f"; {len(self.instructions)} instructions; comments: layer/phase note\n"
        )
        comments = [
            f"{a['layer'] or '-'}/{a['phase']}" + (f" {a['note']}" if a["note"] else "")
            for a in self.annotations
        ]
        return head + disassemble_program(self.instructions, comments)

    def summary(self) -> dict:
        work = tc_work_by_phase(self.instructions)
        by_phase: dict[str, int] = {}
        for a in self.annotations:
            by_phase[a["phase"]] = by_phase.get(a["phase"], 0) + 1
        executed = executed_counts(self.instructions)
        return {
            "model": self.model_name,
            "batch": self.batch,
            "config": self.config_name,
            "config_hash": self.config_hash,
            "instructions": len(self.instructions),
            "program_bytes": len(self.instructions) * INSTRUCTION_BITS // 8,
            "executed_instructions": sum(executed.values()),
            "max_loop_depth": max_loop_depth(self.instructions),
            "instructions_by_phase": by_phase,
            "tc_macs_by_phase": work,
            "dram_bytes": self.memmap.top,
            "notes": list(self.notes),
        }

    def write(self, prefix: str | Path, force: bool = False) -> list[Path]:
        """Write PREFIX.bin, .s, .memmap.json and .annotations.json; refuse to overwrite
        unless `force`."""
        prefix = Path(prefix)
        paths = {
            ext: prefix.with_name(prefix.name + ext)
            for ext in (".bin", ".s", ".memmap.json", ".annotations.json")
        }
        existing = [str(p) for p in paths.values() if p.exists()]
        if existing and not force:
            raise FileExistsError(f"{', '.join(existing)} exist(s); use --force to overwrite")
        paths[".bin"].write_bytes(self.binary)
        paths[".s"].write_text(self.text())
        paths[".memmap.json"].write_text(json.dumps(self.memmap.to_dict(), indent=1) + "\n")
        notes = {"summary": self.summary(), "instructions": self.annotations}
        paths[".annotations.json"].write_text(json.dumps(notes, indent=1) + "\n")
        return list(paths.values())


def compile_graph(
    graph: LayerGraph,
    cfg: HardwareConfig,
    batch: int,
    train: TrainParams | None = None,
    *,
    sparse: bool = True,
    records: bool = False,
) -> CompiledProgram:
    """One training step (FP, loss and skip decision, BP, WU) of `graph` over `batch` images.

    `sparse=False` compiles the dense program of the same step, the baseline the chip runs
    without sparsity: no channel-gating passes (base + conditional), no group masks, every
    mechanism off in its `mode` instruction.

    `records=True` also stores the rounding records (`MemoryMap.records`): values a fused
    block consumes on chip, which only `fp8sim verify`'s reference reads (it looks up the
    SRUs' random words per DRAM byte). Programs that feed the functional simulator's
    reference need them; the timing model and the chip do not (their regions then stay
    allocated but unwritten)."""
    if cfg.controller.instruction_width_bits != INSTRUCTION_BITS:
        raise CompileError(
            f"config {cfg.name}: controller.instruction_width_bits is "
            f"{cfg.controller.instruction_width_bits}, the ISA's is {INSTRUCTION_BITS}"
        )
    lowering = Lowering(graph, cfg, batch, train or TrainParams(), sparse, records)
    emitter, memmap = lowering.run()
    program = emitter.instructions()
    depth = max_loop_depth(program)
    if depth > cfg.controller.hw_loop_depth:
        raise CompileError(
            f"program nests loops {depth} deep; config allows {cfg.controller.hw_loop_depth}"
        )
    notes = [
        {"index": a.index, "layer": a.layer, "phase": a.phase, "note": a.note}
        for a in emitter.notes
    ]
    return CompiledProgram(
        graph.model_name,
        batch,
        cfg.name,
        config_hash(cfg),
        program,
        notes,
        memmap,
        tuple(lowering.notes),
    )
