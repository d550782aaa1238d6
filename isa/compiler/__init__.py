"""The compiler: a layer graph (from `workloads.graph`) and a hardware configuration to the
program of one training step, its DRAM memory map and per-instruction annotations."""

from isa.compiler.driver import CompiledProgram, compile_graph
from isa.compiler.lower import TrainParams
from isa.compiler.memmap import CompileError, MemoryMap

__all__ = ["CompileError", "CompiledProgram", "MemoryMap", "TrainParams", "compile_graph"]
