"""The validated hardware configuration: every parameter of the architecture template.

The sections follow `reference-chip.md` section 3 (tensor cores, CGU, WSU, GSU, SRU, SFU,
buffers, DMA/DRAM, controller, operating points) and section 5 (the energy table). Values live
in YAML files (`ref28.yaml` ships with the package); this module holds the schema, the units,
the provenance of the `ref28` values and the cross-field rules. Cross-field rules raise
`ValueError("field: rule")` so the loader can report `section.field: rule`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator, model_validator

from simulator.config.params import Provenance, StrictModel, param
from simulator.numerics.formats import PRESETS

P, H, A = Provenance.PUBLISHED, Provenance.HINTED, Provenance.ASSUMED

RoundingVariant = Literal["rne", "sr", "sr_half", "sr_corrected"]
RandomSourceKind = Literal["lfsr", "lfsr_inverted", "lfsr_alternate", "xorshift32", "tensor_bits"]
LfsrSharing = Literal["per_lane", "shared"]
GradSkipCriterion = Literal["correct_and_confident", "confident"]
LaneDistribution = Literal["static", "dynamic"]
DramClock = Literal["core", "memory"]


def _check_format(name: str) -> str:
    if name not in PRESETS:
        raise ValueError(f"unknown number format {name!r}; known: {', '.join(PRESETS)}")
    return name


class TensorCoreConfig(StrictModel):
    n_tc: int = param(unit="cores", provenance=A, doc="Number of tensor cores.", gt=0)
    lanes: int = param(
        unit="dot-product units per core",
        provenance=A,
        doc="Dot-product units (lanes) per tensor core; each lane owns one output channel.",
        gt=0,
    )
    dp_width: int = param(
        unit="FP8 products per lane per cycle",
        provenance=H,
        doc="Inputs of one dot-product tree (8 input channels x 1 kernel tap in the group's code).",
        gt=0,
    )
    pipeline_depth_cycles: int = param(
        unit="cycles",
        provenance=A,
        doc="Latency from operand read to accumulator write (multiply, tree, accumulate).",
        gt=0,
    )
    operand_format: str = param(
        unit="format name (simulator.numerics preset)",
        provenance=H,
        doc="FP8 operand format of activations, weights and errors.",
    )
    accumulator_format: str = param(
        unit="format name (simulator.numerics preset)",
        provenance=H,
        doc="Accumulator format, rounded after every dp_width-product step.",
    )
    alignment_width_bits: int = param(
        unit="bits",
        provenance=A,
        doc="Width to which the adder tree aligns products before summing (0 = exact sum, "
        "one rounding).",
        ge=0,
    )

    lane_distribution: LaneDistribution = param(
        unit="enum",
        provenance=A,
        doc="How a tile's work reaches the cores' lanes. `static`: lane groups of consecutive "
        "channels are dealt to the cores interleaved (pixels or outputs split modulo the cores "
        "sharing a group), fixed before the masks are known. `dynamic`: after the tile's masks "
        "are read, a work packer cuts the list of (lane group, pixel or output) items into one "
        "contiguous chunk per core of equal total lane work and plans, within each core, "
        "which lightly loaded lanes take over parts of the busiest lanes' work; it pays its "
        "run measuring (packer_runs_per_cycle), one cycle per lane planned and one per core "
        "descriptor, and every lane or core taking work it does not hold under `static` "
        "reloads its stationary operands and refills the pipeline. The packer keeps the "
        "static plan where its own is not faster; it keeps two descriptor sets, so it reads "
        "a tile's masks and plans it as soon as the tile is in the queue, the previous tile "
        "has started and the tile's masks are written (for a conditional pass: by the CGU "
        "just before it; see packer_streams_gates), also while the cores wait for operands.",
        source="ours (docs/simulator.md, 'Calibration'): the chip's papers do not describe its "
        "work distribution, but publish that its tensor cores are kept highly utilized in all "
        "three phases, which `static` contradicts on Lasso-sparse layers (tensor-core "
        "utilisation 33% in mode `all` of resnet20-cal); ref28 takes `dynamic`, a choice made "
        "in calibration against the chip's 4.7x",
    )
    output_buffers: int = param(
        unit="output register sets per core",
        provenance=A,
        doc="Sets of output (accumulator) registers behind the lanes. 1: after a tile's last "
        "reduction step (`fin`) the cores wait while the SRUs round and write its outputs "
        "(outputs / sru.units cycles). 2 (double-buffered): the finished set is handed to the "
        "SRUs and the cores start the next tile in the other set; the next tile waits only "
        "if the set it needs is still draining (its drain starts after the previous drain), "
        "or if it touches the bytes being drained. Results count as available (tokens, "
        "`sync`, barriers) when their drain ends.",
        source="ours: double-buffered accumulators/output registers are the standard way a "
        "tensor-core design hides its output write-back (the chip's papers do not describe "
        "the output path); ref28 takes 2, which holds for a dense chip alike",
        ge=1,
        le=8,
    )
    packer_streams_gates: bool = param(
        unit="flag",
        provenance=A,
        doc="Policy `dynamic` only: the work packer of a conditional pass reads the gates as "
        "the CGU writes them (following the CGU's write pointer) and builds the runs of all "
        "lane groups as they arrive (packer_runs_per_cycle); so its mask reads and run "
        "measuring may begin when the CGU op begins, and only what of them outlasts the CGU, "
        "plus the lane plan and core descriptors (lanes + 1 cycles per core), follows the "
        "last gate. false: the packer starts on a conditional pass when the CGU has ended.",
        source="ours: the chip's papers do not describe how its scheduler meets the gating "
        "unit; a packer placed behind the CGU in every gated tile would be built to stream "
        "its output, so ref28 takes true",
    )
    packer_runs_per_cycle: int = param(
        unit="runs per cycle",
        provenance=A,
        doc="Policy `dynamic` only: item runs the work packer measures per cycle (a run: one "
        "lane group's pixel or output range whose items cost alike, e.g. one dY pixel's gate "
        "byte in a gated layer's BP). 1: one run per cycle, so a gated 32x32 BP tile's 1024 "
        "runs cost 1024 cycles against its 64 cycles of mask reads. 16: the packer sums one "
        "mask-buffer word (16 one-byte runs) per cycle with an adder tree per lane, keeping "
        "pace with the mask reads.",
        source="ours: the chip's papers do not describe a work packer; one that takes a mask "
        "word per cycle, the rate at which it reads the masks, is the natural width "
        "(buffers.mask.word_bytes = 16), so ref28 takes 16",
        gt=0,
    )

    _fmt = field_validator("operand_format", "accumulator_format")(_check_format)

    @property
    def macs_per_cycle(self) -> int:
        """Peak dense FP8 MACs per cycle of the whole array."""
        return self.n_tc * self.lanes * self.dp_width


class ChannelGatingConfig(StrictModel):
    base_fraction_denominator: int = param(
        unit="G (base path uses 1/G of the input channels)",
        provenance=H,
        doc="The base path computes a partial sum over 1/G of the input channels.",
        gt=0,
    )
    group_size_channels: int = param(
        unit="output channels",
        provenance=H,
        doc="Output channels sharing one gate decision per pixel.",
        gt=0,
    )
    threshold_format: str = param(
        unit="format name (simulator.numerics preset)",
        provenance=A,
        doc="Format of the learned gate threshold and of the normalized base partial sum.",
    )
    streams_base_sums: bool = param(
        unit="flag",
        provenance=A,
        doc="The CGU sits behind the tensor cores' outputs and takes each (pixel, channel "
        "group)'s base partial sums as the lanes finish them: a group's 16 channels are 16 "
        "lanes of one core and complete together. So a `cg.gate` may begin when its base "
        "pass begins and ends no earlier than one output per lane (n_tc x lanes outputs at "
        "the CGU's throughput) after the base pass ends; the conditional pass then waits "
        "for that tail, not for the whole gate op. false: the CGU reads the base sums from "
        "the buffer after the base pass has ended (at the SFU's width).",
        source="ours: the chip's papers call the gating 'hardware-efficient' but do not "
        "describe where the CGU sits; the hint's decision is taken per pixel and 16-channel "
        "group, which is what one core's lanes produce in one step, so ref28 takes true "
        "(calibration 'CGU after the base pass' shows false)",
    )

    _fmt = field_validator("threshold_format")(_check_format)


class WeightSparsityConfig(StrictModel):
    group_out_channels: int = param(
        unit="output channels", provenance=H, doc="Output channels of one Lasso group.", gt=0
    )
    group_in_channels: int = param(
        unit="input channels",
        provenance=H,
        doc="Consecutive input channels of one Lasso group (x k x k taps); 2/4/8/16 explored.",
        gt=0,
    )
    threshold: float = param(
        unit="L2 norm (weight units)",
        provenance=H,
        doc="A group whose L2 norm is below this is zeroed.",
        gt=0,
    )
    update_period_iterations: int = param(
        unit="iterations",
        provenance=A,
        doc="Group norms and the group bitmap are recomputed every this many weight updates.",
        gt=0,
    )
    norm_throughput_elements_per_cycle: int = param(
        unit="weights per cycle",
        provenance=A,
        doc="Squared-weight accumulations per cycle when computing group norms.",
        gt=0,
    )


class GradSkipConfig(StrictModel):
    criterion: GradSkipCriterion = param(
        unit="enum",
        provenance=H,
        doc="Rule for skipping an image's BP/WU: its forward prediction is correct and its "
        "confidence exceeds the threshold (or only the confidence, for unlabelled tasks).",
    )
    threshold: float = param(
        unit="confidence (probability, 0..1)",
        provenance=H,
        doc="Confidence threshold of the skip decision.",
        gt=0,
        le=1,
    )


class SruConfig(StrictModel):
    units: int = param(
        unit="SRUs", provenance=A, doc="Stochastic rounding units (one per output lane).", gt=0
    )
    random_bits: int = param(
        unit="bits (r)", provenance=A, doc="Random bits per rounding.", ge=1, le=32
    )
    variant: RoundingVariant = param(
        unit="enum", provenance=A, doc="Rounding rule (simulator.numerics rounding modes)."
    )
    random_source: RandomSourceKind = param(
        unit="enum", provenance=A, doc="Where the random bits come from."
    )
    lfsr_width_bits: int = param(
        unit="bits", provenance=A, doc="LFSR register width (maximal taps).", ge=2, le=32
    )
    lfsr_sharing: LfsrSharing = param(
        unit="enum", provenance=A, doc="One LFSR per SRU, or one shared register (rotations)."
    )
    seed: int = param(
        unit="LFSR state", provenance=A, doc="Initial nonzero LFSR state of lane 0.", gt=0
    )

    @model_validator(mode="after")
    def _seed_fits(self) -> SruConfig:
        if self.seed >= 1 << self.lfsr_width_bits:
            raise ValueError(
                f"seed: must be below 2**lfsr_width_bits = {1 << self.lfsr_width_bits}"
            )
        return self


class SfuConfig(StrictModel):
    throughput_elements_per_cycle: int = param(
        unit="elements per cycle",
        provenance=A,
        doc="Elements per cycle for ReLU/max-pool/residual add/loss/normalization (the "
        "channel-gating unit compares base sums at the same width).",
        source="ours: one element per dot-product lane (n_tc x lanes = 64), so element-wise "
        "work keeps pace with the tensor cores' output once sparsity removes most MACs; set in "
        "calibration against the chip's 4.7x (on resnet20-cal 16 gives 2.06x, 64 gives 2.34x; "
        "docs/simulator.md, 'Calibration')",
        gt=0,
    )


class BufferConfig(StrictModel):
    size_bytes: int = param(unit="bytes", provenance=A, doc="Capacity.", gt=0)
    banks: int = param(unit="banks", provenance=A, doc="Independently addressed banks.", gt=0)
    word_bytes: int = param(
        unit="bytes per bank access", provenance=A, doc="Width of one bank access.", gt=0
    )

    @model_validator(mode="after")
    def _geometry(self) -> BufferConfig:
        row = self.banks * self.word_bytes
        if self.size_bytes % row:
            raise ValueError(
                f"size_bytes: must be a positive multiple of banks x word_bytes "
                f"({self.banks} x {self.word_bytes} = {row}); got {self.size_bytes}"
            )
        return self


class BuffersConfig(StrictModel):
    activation: BufferConfig
    weight: BufferConfig
    error: BufferConfig
    mask: BufferConfig
    double_buffered: bool = param(
        unit="bool",
        provenance=A,
        doc="Whether the compiler splits each buffer in two halves so DMA overlaps compute.",
    )
    forward_slots: int = param(
        unit="slots",
        provenance=A,
        doc="Most slots the compiler rotates through in a forward conv block where that many "
        "of a step fit in the buffers (2: double buffering everywhere). More slots let the "
        "loads of later images run ahead of an image's long chain (load, normalisation, "
        "base and conditional passes, stores).",
        ge=2,
        le=8,
    )


class DmaConfig(StrictModel):
    dram_bytes_per_cycle: int = param(
        unit="bytes per core cycle",
        provenance=A,
        doc="DRAM bandwidth, in core cycles of the default operating point "
        "(see dram_clock for the other points).",
        gt=0,
    )
    dram_latency_cycles: int = param(
        unit="core cycles",
        provenance=A,
        doc="Latency of a DRAM access (first byte), in core cycles of the default operating "
        "point (see dram_clock).",
        ge=0,
    )
    dram_clock: DramClock = param(
        unit="enum",
        provenance=A,
        doc="What clocks the DRAM interface. `memory`: the DRAM runs on its own clock, so its "
        "bandwidth (GB/s) and latency (ns) are fixed in time; at an operating point of "
        "frequency f the channel moves floor(dram_bytes_per_cycle x f_default / f) bytes per "
        "core cycle and its latency is ceil(dram_latency_cycles x f / f_default) cycles. "
        "`core`: the interface runs at the core clock, so both hold in cycles at every point.",
        source="ref28: `memory`, as for a chip driving a standard DRAM part through its own "
        "PHY; 16 B/cycle at 400 MHz is 6.4 GB/s, one x32 LPDDR3-1600 channel.",
    )
    channels: int = param(
        unit="DMA engines", provenance=A, doc="Concurrent transfers in flight.", gt=0
    )
    dram_bytes: int = param(
        unit="bytes", provenance=A, doc="Addressable DRAM behind the DMA.", gt=0
    )


class ControllerConfig(StrictModel):
    instruction_width_bits: int = param(
        unit="bits", provenance=A, doc="Fixed instruction width of the ISA."
    )
    queue_depth_instructions: int = param(
        unit="instructions", provenance=A, doc="Issue queue depth in front of each unit.", gt=0
    )
    hw_loop_depth: int = param(
        unit="nested loops", provenance=A, doc="Nesting depth of hardware loops.", gt=0
    )
    dependency_tokens: int = param(
        unit="tokens", provenance=A, doc="Dependency tokens (semaphores) between units.", gt=0
    )

    @field_validator("instruction_width_bits")
    @classmethod
    def _width(cls, v: int) -> int:
        if v not in (32, 64, 128, 256):
            raise ValueError("must be one of 32, 64, 128, 256")
        return v


class OperatingPoint(StrictModel):
    name: str = param(unit="label", provenance=A, doc="Name of the operating point.")
    voltage_v: float = param(unit="V", provenance=A, doc="Supply voltage.", gt=0)
    frequency_mhz: float = param(unit="MHz", provenance=A, doc="Clock frequency.", gt=0)


# Sources of the energy defaults. Horowitz's table is for 45 nm at 0.9 V; we scale dynamic energy
# to 28 nm by the feature-size ratio 28/45 = 0.622 (switched capacitance scales roughly with
# feature size; same 0.9 V supply, so no V^2 term). DRAM is not scaled: its energy is in the
# DRAM array and the off-chip interface, not in our logic node.
_HOROWITZ = 'M. Horowitz, "Computing\'s energy problem", ISSCC 2014 (45 nm, 0.9 V)'
_SCALE = "scaled x 28/45 = 0.622 to 28 nm"


class EnergyConfig(StrictModel):
    """Energy per event at `reference_voltage_v`, in pJ (dynamic; leakage per cycle at the
    reference point). Dynamic energy scales with V^2, leakage power with V (see the methods)."""

    reference_voltage_v: float = param(
        unit="V",
        provenance=A,
        doc="Supply voltage at which the table holds.",
        source=f"{_HOROWITZ}: the table's own supply",
        gt=0,
    )
    reference_frequency_mhz: float = param(
        unit="MHz", provenance=A, doc="Clock at which leakage_pj_per_cycle holds.", gt=0
    )
    fp8_mul_pj: float = param(
        unit="pJ",
        provenance=A,
        doc="One FP8 x FP8 multiply (3x3-bit significands + exponent add).",
        source=f"{_HOROWITZ}: 8-bit integer multiply 0.2 pJ as an upper bound, {_SCALE}",
        ge=0,
    )
    adder_tree_add_pj: float = param(
        unit="pJ",
        provenance=A,
        doc="One two-input add of aligned products in the dot-product tree.",
        source=f"{_HOROWITZ}: 32-bit integer add 0.1 pJ (24-bit add + alignment), {_SCALE}",
        ge=0,
    )
    fp16_accumulate_pj: float = param(
        unit="pJ",
        provenance=A,
        doc="One FP16 accumulate (add + round).",
        source=f"{_HOROWITZ}: 16-bit FP add 0.4 pJ, {_SCALE}",
        ge=0,
    )
    sru_round_pj: float = param(
        unit="pJ",
        provenance=A,
        doc="One SRU rounding (add r random bits, truncate).",
        source=f"{_HOROWITZ}: 16-bit integer add 0.05 pJ, {_SCALE}",
        ge=0,
    )
    prng_step_pj: float = param(
        unit="pJ",
        provenance=A,
        doc="One step of a 16-bit LFSR.",
        source=f"ours: taken equal to a 16-bit add of {_HOROWITZ} (0.05 pJ), {_SCALE}",
        ge=0,
    )
    sfu_op_pj: float = param(
        unit="pJ",
        provenance=A,
        doc="One SFU element operation (compare, add or scale).",
        source=f"{_HOROWITZ}: 16-bit FP add 0.4 pJ, {_SCALE}",
        ge=0,
    )
    sram_8kib_bank_read_pj_per_byte: float = param(
        unit="pJ/byte",
        provenance=A,
        doc="Read from a bank of at most 8 KiB.",
        source=f"{_HOROWITZ}: 8 KB SRAM 10 pJ per 64-bit access = 1.25 pJ/byte, {_SCALE}",
        ge=0,
    )
    sram_8kib_bank_write_pj_per_byte: float = param(
        unit="pJ/byte",
        provenance=A,
        doc="Write to a bank of at most 8 KiB.",
        source=f"as the read (Horowitz gives one figure per access), {_SCALE}",
        ge=0,
    )
    sram_32kib_bank_read_pj_per_byte: float = param(
        unit="pJ/byte",
        provenance=A,
        doc="Read from a bank above 8 KiB (the 32 KiB figure; larger banks are underestimated).",
        source=f"{_HOROWITZ}: 32 KB SRAM 20 pJ per 64-bit access = 2.5 pJ/byte, {_SCALE}",
        ge=0,
    )
    sram_32kib_bank_write_pj_per_byte: float = param(
        unit="pJ/byte",
        provenance=A,
        doc="Write to a bank above 8 KiB (as the read).",
        source=f"as the read (Horowitz gives one figure per access), {_SCALE}",
        ge=0,
    )
    dram_pj_per_byte: float = param(
        unit="pJ/byte",
        provenance=A,
        doc="DRAM read or write including the interface.",
        source=f"{_HOROWITZ}: DRAM 1.3-2.6 nJ per 64-bit access; low end, 162.5 pJ/byte, "
        "not scaled",
        ge=0,
    )
    register_file_pj_per_byte: float = param(
        unit="pJ/byte",
        provenance=A,
        doc="Pipeline/register-file access.",
        source=f"{_HOROWITZ}: register-file share (6 pJ) of a 32-bit RISC add instruction, "
        f"3 operands x 4 bytes = 0.5 pJ/byte, {_SCALE}",
        ge=0,
    )
    control_pj_per_instruction: float = param(
        unit="pJ/instruction",
        provenance=A,
        doc="Fetch, decode and issue of one instruction.",
        source=f"{_HOROWITZ}: 70 pJ overhead of one RISC instruction, {_SCALE}",
        ge=0,
    )
    leakage_pj_per_cycle: float = param(
        unit="pJ/cycle",
        provenance=A,
        doc="Whole-chip leakage per cycle at the reference voltage and frequency.",
        source="ours: 10 mW leakage for a few-mm^2 28 nm die at 0.9 V, / 400 MHz; of the "
        "order of published CNN processors' total power (Envision, Moons and Verhelst, JSSC "
        "52(4) 2017: 25-287 mW in 40 nm), see docs/simulator.md; a calibration candidate",
        ge=0,
    )

    def sram_pj_per_byte(self, buffer: BufferConfig, write: bool) -> float:
        """Per-byte access energy of `buffer`: an access touches one bank, so the bank size (not
        the buffer size) picks the size class."""
        if buffer.size_bytes // buffer.banks <= 8 * 1024:
            if write:
                return self.sram_8kib_bank_write_pj_per_byte
            return self.sram_8kib_bank_read_pj_per_byte
        if write:
            return self.sram_32kib_bank_write_pj_per_byte
        return self.sram_32kib_bank_read_pj_per_byte

    def dynamic_scale(self, voltage_v: float) -> float:
        """Factor on every dynamic (per-event) energy at `voltage_v`: (V / Vref)^2."""
        return (voltage_v / self.reference_voltage_v) ** 2

    def leakage_pj_per_cycle_at(self, voltage_v: float, frequency_mhz: float) -> float:
        """Leakage per cycle at an operating point: leakage power scales with V, and a cycle
        lasts 1/f, so energy per cycle = ref x (V/Vref) x (fref/f)."""
        return (
            self.leakage_pj_per_cycle
            * (voltage_v / self.reference_voltage_v)
            * (self.reference_frequency_mhz / frequency_mhz)
        )


class HardwareConfig(StrictModel):
    """The whole chip. Load with `simulator.config.load_config`."""

    name: str = param(unit="label", provenance=A, doc="Name of this configuration.")
    tensor_core: TensorCoreConfig
    cgu: ChannelGatingConfig
    wsu: WeightSparsityConfig
    gsu: GradSkipConfig
    sru: SruConfig
    sfu: SfuConfig
    buffers: BuffersConfig
    dma: DmaConfig
    controller: ControllerConfig
    operating_points: tuple[OperatingPoint, ...]
    default_operating_point: str = param(
        unit="label", provenance=A, doc="Operating point used when none is named."
    )
    energy: EnergyConfig

    @model_validator(mode="after")
    def _cross_rules(self) -> HardwareConfig:
        if not self.operating_points:
            raise ValueError("operating_points: must list at least one operating point")
        names = [p.name for p in self.operating_points]
        if len(set(names)) != len(names):
            raise ValueError(f"operating_points: names must be unique; got {names}")
        if self.default_operating_point not in names:
            raise ValueError(
                f"default_operating_point: must name one of operating_points {names}; "
                f"got {self.default_operating_point!r}"
            )
        tc, wsu = self.tensor_core, self.wsu
        if tc.dp_width % wsu.group_in_channels and wsu.group_in_channels % tc.dp_width:
            raise ValueError(
                f"wsu.group_in_channels: must divide or be a multiple of tensor_core.dp_width "
                f"({tc.dp_width}) so zero groups align with dot-product steps; "
                f"got {wsu.group_in_channels}"
            )
        if self.cgu.group_size_channels % tc.lanes and tc.lanes % self.cgu.group_size_channels:
            raise ValueError(
                f"cgu.group_size_channels: must divide or be a multiple of tensor_core.lanes "
                f"({tc.lanes}) so a gate group maps onto whole lanes; "
                f"got {self.cgu.group_size_channels}"
            )
        f0 = self.operating_point().frequency_mhz
        for p in self.operating_points:
            if self.dram_at(p.name)[0] < 1:
                raise ValueError(
                    f"dma.dram_bytes_per_cycle: with dram_clock `memory` the channel moves less "
                    f"than one byte per cycle at operating point {p.name!r} (operating_points "
                    f"frequency_mhz {p.frequency_mhz:g} against the default point's {f0:g}); "
                    "raise it or use dram_clock `core`"
                )
        if self.sru.units < tc.lanes:
            raise ValueError(
                f"sru.units: must be at least tensor_core.lanes ({tc.lanes}) so every output "
                f"lane can round; got {self.sru.units}"
            )
        return self

    def dram_at(self, name: str | None = None) -> tuple[int, int]:
        """(bytes per core cycle, latency in core cycles) of the DRAM channel at the named
        operating point (default: the default point), following `dma.dram_clock`."""
        d = self.dma
        if d.dram_clock == "core":
            return d.dram_bytes_per_cycle, d.dram_latency_cycles
        f0 = self.operating_point().frequency_mhz
        f = self.operating_point(name).frequency_mhz
        # exact in integers where the frequencies are whole MHz (they are in ref28)
        bw = int(d.dram_bytes_per_cycle * f0 // f)
        lat = -int(-d.dram_latency_cycles * f // f0)
        return bw, lat

    def dram_gb_per_s(self) -> float:
        """The DRAM channel's bandwidth in GB/s (1e9 bytes/s) at the default point."""
        return self.dma.dram_bytes_per_cycle * self.operating_point().frequency_mhz / 1e3

    def at_operating_point(self, name: str) -> HardwareConfig:
        """This chip run at operating point `name`: that point becomes the default and the
        DRAM channel's cycles follow `dma.dram_clock` (the rest is frequency-independent)."""
        bw, lat = self.dram_at(name)
        dma = self.dma.model_copy(update={"dram_bytes_per_cycle": bw, "dram_latency_cycles": lat})
        return self.model_copy(update={"dma": dma, "default_operating_point": name})

    def operating_point(self, name: str | None = None) -> OperatingPoint:
        """The named operating point (default: `default_operating_point`)."""
        want = name or self.default_operating_point
        for p in self.operating_points:
            if p.name == want:
                return p
        raise KeyError(
            f"no operating point {want!r}; known: {[p.name for p in self.operating_points]}"
        )
