"""Energy of a simulated step: event counts x the configuration's energy table (pJ per event),
plus leakage over the step's cycles; by unit, buffer, phase and layer; with and without DRAM;
at any operating point (dynamic energy scales with V^2, leakage power with V).

Event -> energy mapping (the table's fields are named in `simulator.config.EnergyConfig`):
- tensor core: per nonzero product one FP8 multiply; per lane step (dp_width - 1) adder-tree
  adds and one FP16 accumulate (a partly filled step still fires the tree); stationary operands
  read from lane register files (register_file_pj_per_byte).
- SRAM: bytes read / written per buffer at the per-byte energy of its bank size class.
- DRAM: bytes moved x dram_pj_per_byte (not voltage-scaled: the DRAM is off chip).
- SRU: one rounding (+ one PRNG step when the rounding variant is stochastic) per FP8 result.
- SFU, CGU and GSU operations at sfu_op_pj; WSU norm elements as a multiply + add.
- control: every executed instruction (including loop iterations' bodies) at
  control_pj_per_instruction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.config import HardwareConfig, OperatingPoint
from simulator.timing import TimingResult
from simulator.timing.costs import EVENT_ID, EVENTS

_BUF_CFG = {"act": "activation", "wgt": "weight", "err": "error", "msk": "mask"}
COMPONENTS = (
    "tc_mul",
    "tc_add_acc",
    "register_file",
    "sram_act",
    "sram_wgt",
    "sram_err",
    "sram_msk",
    "sru",
    "sfu",
    "cgu",
    "wsu",
    "gsu",
    "control",
    "dram",
)


def _component_matrix(cfg: HardwareConfig) -> np.ndarray:
    """(len(EVENTS), len(COMPONENTS)) pJ per event at the reference voltage."""
    e = cfg.energy
    tc = cfg.tensor_core
    m = np.zeros((len(EVENTS), len(COMPONENTS)))
    c = {name: j for j, name in enumerate(COMPONENTS)}

    def put(event: str, comp: str, pj: float) -> None:
        m[EVENT_ID[event], c[comp]] += pj

    put("tc_macs", "tc_mul", e.fp8_mul_pj)
    put("tc_lane_steps", "tc_add_acc", (tc.dp_width - 1) * e.adder_tree_add_pj)
    put("tc_lane_steps", "tc_add_acc", e.fp16_accumulate_pj)
    put("rf_bytes", "register_file", e.register_file_pj_per_byte)
    for b, name in _BUF_CFG.items():
        buf = getattr(cfg.buffers, name)
        put(f"sram_rd_{b}", f"sram_{b}", e.sram_pj_per_byte(buf, write=False))
        put(f"sram_wr_{b}", f"sram_{b}", e.sram_pj_per_byte(buf, write=True))
    # a PRNG steps per stochastic rounding; `tensor_bits` takes the neighbour lane's
    # discarded bits, with no generator
    prng = cfg.sru.variant != "rne" and cfg.sru.random_source != "tensor_bits"
    put("sru_rounds", "sru", e.sru_round_pj + (e.prng_step_pj if prng else 0.0))
    put("sfu_ops", "sfu", e.sfu_op_pj)
    put("cgu_ops", "cgu", e.sfu_op_pj)
    put("gsu_ops", "gsu", e.sfu_op_pj)
    put("wsu_macs", "wsu", e.fp8_mul_pj + e.adder_tree_add_pj)
    put("instructions", "control", e.control_pj_per_instruction)
    put("dram_bytes", "dram", e.dram_pj_per_byte)
    return m


@dataclass(frozen=True)
class EnergyBreakdown:
    """Energy of one step in pJ at one operating point."""

    operating_point: str
    voltage_v: float
    frequency_mhz: float
    by_component: dict[str, float]  # dynamic, per COMPONENTS entry (dram included)
    leakage_pj: float
    by_phase: dict[str, float]  # dynamic on-chip + DRAM, per phase (leakage apart)
    by_layer: dict[str, float]
    seconds: float

    @property
    def total_pj(self) -> float:
        return sum(self.by_component.values()) + self.leakage_pj

    @property
    def on_chip_pj(self) -> float:
        return self.total_pj - self.by_component["dram"]


def energy(
    cfg: HardwareConfig,
    timing: TimingResult,
    static_layers: np.ndarray,
    static_phases: np.ndarray,
    layer_names: tuple[str, ...],
    phase_names: tuple[str, ...],
    point: OperatingPoint | None = None,
) -> EnergyBreakdown:
    """Energy of `timing`'s step at `point` (default: the config's default point)."""
    op = point or cfg.operating_point()
    scale = cfg.energy.dynamic_scale(op.voltage_v)
    m = _component_matrix(cfg)
    comp_scale = np.full(len(COMPONENTS), scale)
    comp_scale[COMPONENTS.index("dram")] = 1.0  # off-chip: not on the chip's supply
    per_static = timing.static_events @ m * comp_scale  # (n_static, components)
    by_comp = per_static.sum(axis=0)
    per_static_total = per_static.sum(axis=1)
    by_phase = np.bincount(static_phases, per_static_total, minlength=len(phase_names))
    by_layer = np.bincount(static_layers, per_static_total, minlength=len(layer_names))
    leak = timing.cycles * cfg.energy.leakage_pj_per_cycle_at(op.voltage_v, op.frequency_mhz)
    return EnergyBreakdown(
        op.name,
        op.voltage_v,
        op.frequency_mhz,
        {c: float(v) for c, v in zip(COMPONENTS, by_comp, strict=True)},
        float(leak),
        {p: float(v) for p, v in zip(phase_names, by_phase, strict=True)},
        {lay: float(v) for lay, v in zip(layer_names, by_layer, strict=True)},
        timing.cycles / (op.frequency_mhz * 1e6),
    )


def tflops_per_w(macs: float, pj: float) -> float:
    """2 FLOPs per MAC over energy: FLOPs/J / 1e12 = TFLOPS/W."""
    return 2.0 * macs / (pj * 1e-12) / 1e12 if pj > 0 else 0.0
