"""THE instruction-set definition: every opcode, field, width and enumeration, in one table.

Everything else is derived from this module: the encoder and decoder (`isa.encoding`), the
assembler and disassembler (`isa.asm`, `isa.disasm`), the reference `docs/isa.md`
(`python -m isa.docgen`), the compiler's instruction builders and the simulator's decoder.
Nothing about the ISA is restated elsewhere by hand.

Layout of every instruction (fixed width, little-endian, bit 0 = least significant bit of byte
0): the common header `opcode` (bits 0-7), `wt` (bits 8-11) and `sg` (bits 12-15), then the
opcode's operand fields packed in declaration order from bit 16 upwards. Bits above the last
field are reserved and must be zero.

Execution model. The controller dispatches instructions in program order into one in-order queue
per unit (`unit` of each opcode; `ctrl` instructions execute in the controller itself). `wt`
names a dependency token (a counting semaphore, 1..15; 0 = none): an instruction whose `wt` is
set waits at the head of its queue until the token's count is positive, then decrements it.
`sg` names a token incremented when the instruction completes. A unit completes its
instructions in order. `sync` puts a marker in one unit's queue, to wait for a token there or to
signal once everything before it in that unit has completed. Ops read their register operands
and their layer descriptor at dispatch. Buffer tensors are laid out pixel-major with channels
innermost ([row][col][channel]); weight tiles [k][kh][kw][c]; masks hold one byte per entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

INSTRUCTION_BITS: Final = 128
INSTRUCTION_BYTES: Final = INSTRUCTION_BITS // 8
OPCODE_BITS: Final = 8
TOKEN_BITS: Final = 4
HEADER_BITS: Final = OPCODE_BITS + 2 * TOKEN_BITS
REGISTER_BITS: Final = 4
N_REGISTERS: Final = 1 << REGISTER_BITS


class Kind(StrEnum):
    """How a field's bits are read and written in assembly text."""

    UINT = "uint"  # unsigned integer
    SINT = "sint"  # two's-complement signed integer
    ENUM = "enum"  # one of a named list; text is the name
    REG = "reg"  # scalar register r0..r15; r0 always reads 0
    F32 = "f32"  # IEEE binary32 bits; text is a decimal float (or 0x bits if not finite)
    LABEL = "label"  # forward distance in instructions; text is a label name


@dataclass(frozen=True)
class Enumeration:
    """A named list of values; an encoding outside the list is invalid."""

    name: str
    values: tuple[str, ...]
    doc: str

    @property
    def bits(self) -> int:
        return max(1, (len(self.values) - 1).bit_length())


@dataclass(frozen=True)
class FieldSpec:
    """One operand field of an instruction."""

    name: str
    kind: Kind
    bits: int
    doc: str
    enum: Enumeration | None = None
    min_value: int | None = None  # smallest valid value (unsigned kinds)
    max_value: int | None = None  # largest valid value, where below the field's capacity

    def __post_init__(self) -> None:
        if (self.kind is Kind.ENUM) != (self.enum is not None):
            raise ValueError(f"field {self.name}: an enum field needs exactly one Enumeration")
        if self.enum is not None and self.enum.bits > self.bits:
            raise ValueError(f"field {self.name}: {self.bits} bits cannot hold {self.enum.name}")

    @property
    def lo(self) -> int:
        """Smallest valid encoded value, as a Python int (signed for SINT)."""
        if self.kind is Kind.SINT:
            return -(1 << (self.bits - 1))
        return self.min_value or 0

    @property
    def hi(self) -> int:
        """Largest valid value."""
        if self.kind is Kind.SINT:
            return (1 << (self.bits - 1)) - 1
        if self.kind is Kind.ENUM:
            assert self.enum is not None
            return len(self.enum.values) - 1
        if self.max_value is not None:
            return self.max_value
        return (1 << self.bits) - 1


@dataclass(frozen=True)
class OpSpec:
    """One instruction: opcode, mnemonic, issuing unit, training phase class, operands, meaning."""

    code: int
    mnemonic: str
    unit: str
    fields: tuple[FieldSpec, ...]
    doc: str
    operand_bits: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "operand_bits", sum(f.bits for f in self.fields))
        if self.unit not in UNIT.values:
            raise ValueError(f"{self.mnemonic}: unknown unit {self.unit!r}")
        if HEADER_BITS + self.operand_bits > INSTRUCTION_BITS:
            raise ValueError(f"{self.mnemonic}: fields need more than {INSTRUCTION_BITS} bits")
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names) or {"wt", "sg"} & set(names):
            raise ValueError(f"{self.mnemonic}: duplicate or reserved field names {names}")

    def offsets(self) -> list[tuple[FieldSpec, int]]:
        """(field, first bit) for every operand field."""
        out, pos = [], HEADER_BITS
        for f in self.fields:
            out.append((f, pos))
            pos += f.bits
        return out


# ---------------------------------------------------------------- enumerations
BUFFER = Enumeration(
    "buffer",
    ("act", "wgt", "err", "msk"),
    "On-chip buffers: activations (and forward partial sums), weights, errors/gradients "
    "(and backward partial sums, weight gradients, momentum), masks (gate masks, Lasso group "
    "masks, max-pool argmax, skip flags; one byte per entry).",
)
ROUNDING = Enumeration(
    "rounding",
    ("rne", "sr", "sr_half", "sr_corrected"),
    "Rounding rule of an SRU (simulator.numerics rounding modes).",
)
RANDOM_SOURCE = Enumeration(
    "random_source",
    ("lfsr", "lfsr_inverted", "lfsr_alternate", "xorshift32", "tensor_bits"),
    "Where an SRU's random bits come from (simulator.numerics.random_sources). `tensor_bits` "
    "has no generator: an op's results go sru.units per cycle in its output order (result i: "
    "lane i mod units, cycle i div units), and lane j rounds with floor(d 2^r) of lane j+1's "
    "result in that cycle, d the fraction that lane's rounding discards (the cycle's last busy "
    "lane takes lane 0's); `width`, `sharing` and `seed` are unused.",
)
SHARING = Enumeration(
    "sharing", ("per_lane", "shared"), "One PRNG per SRU lane, or one shared register (rotated)."
)
SRU_TARGET = Enumeration(
    "sru_target",
    ("act", "err", "wgt", "mom"),
    "Which rounding stream an SRU configuration applies to: activations (FP), errors (BP), "
    "weights and momentum (WU).",
)
LAYER_KIND = Enumeration(
    "layer_kind",
    ("conv", "fc", "maxpool", "avgpool", "add", "norm", "relu", "loss"),
    "Kind of a layer descriptor.",
)
TC_PASS = Enumeration(
    "tc_pass",
    ("full", "base", "cond"),
    "Channel-gating pass of a forward tensor-core op: `full` (no gating), `base` (the first "
    "C/G input channels of every output, always issued), `cond` (the remaining input channels; "
    "lanes skip the (pixel, channel-group) outputs whose gate bit is 0).",
)
SFU_OP = Enumeration(
    "sfu_op",
    (
        "relu_fwd",
        "relu_bwd",
        "maxpool_fwd",
        "maxpool_bwd",
        "avgpool_fwd",
        "avgpool_bwd",
        "add",
        "loss_mse",
        "norm_fwd",
        "norm_bwd",
        "copy",
        "zero",
        "norm_stat",
        "norm_bwd_stat",
    ),
    "Special-function operations. relu_fwd: o = max(a, 0). relu_bwd: o = a where b > 0 else 0 "
    "(b = the forward activation). maxpool_fwd: o = window max of a, argmax to msk at b. "
    "maxpool_bwd: scatter a to the argmax positions read from msk at b. avgpool_fwd: o = the "
    "exact sum of the window's taps (padding taps are zero) divided by kh kw, the quotient "
    "rounded to binary64, then by the SRU. avgpool_bwd: every input's error is the exact sum, "
    "over the windows that contain it, of a / (kh kw) (each quotient rounded to binary64), "
    "then rounded by the SRU. add: o = a + b (residual forward; summing error contributions "
    "backward). loss_mse: o = a - b (MSE error y - t against the one-hot targets at b). "
    "norm_stat: accumulate per-channel sum and sum of squares of a into the FP32 statistics "
    "at o. norm_fwd: normalize a with the statistics at b and gamma, beta at `pa`. "
    "norm_bwd_stat: accumulate the per-channel sums of a x normalized input (b) and of the "
    "error a (the affine parameters' FP16 gradients) at o, statistics at c. norm_bwd: error "
    "a through the normalization, statistics and gradient sums at b, x at c, gamma at `pa`. "
    "copy: o = a. zero: o = 0 (n elements of `esz` bytes). The norm ops are defined in "
    "full under `sfu`.",
)
GSKIP_CRITERION = Enumeration(
    "gskip_criterion",
    ("correct_and_confident", "confident"),
    "Gradient-skip rule: skip an image's BP and WU when its forward prediction is correct and "
    "its top output exceeds the threshold, or (unlabelled tasks) when only the latter holds.",
)
PHASE = Enumeration(
    "phase",
    ("fp", "bp", "wu", "other"),
    "Training phase an instruction belongs to (annotation only; also the tensor-core op's).",
)

UNIT = Enumeration(
    "unit",
    ("ctrl", "ld", "st", "tc", "cgu", "wsu", "gsu", "sfu", "sru"),
    "Execution units, each with its own in-order queue (`ld`/`st`: the DMA's load and store "
    "channels).",
)

ENUMERATIONS: Final = (
    UNIT,
    BUFFER,
    ROUNDING,
    RANDOM_SOURCE,
    SHARING,
    SRU_TARGET,
    LAYER_KIND,
    TC_PASS,
    SFU_OP,
    GSKIP_CRITERION,
)


# ---------------------------------------------------------------- field helpers
def u(
    name: str, bits: int, doc: str, min_value: int | None = None, max_value: int | None = None
) -> FieldSpec:
    return FieldSpec(name, Kind.UINT, bits, doc, min_value=min_value, max_value=max_value)


def s(name: str, bits: int, doc: str) -> FieldSpec:
    return FieldSpec(name, Kind.SINT, bits, doc)


def e(name: str, enum: Enumeration, doc: str) -> FieldSpec:
    return FieldSpec(name, Kind.ENUM, enum.bits, doc, enum=enum)


def r(name: str, doc: str) -> FieldSpec:
    return FieldSpec(name, Kind.REG, REGISTER_BITS, doc)


def f32(name: str, doc: str) -> FieldSpec:
    return FieldSpec(name, Kind.F32, 32, doc)


DESC = u("desc", 6, "Layer-descriptor slot (0..63).")

# Operands shared by the three tensor-core ops. A tile is: output channels [k, k+kn) x input
# channels [c, c+cn) (relative to the group for grouped convs) x output rows [p, p+pn) of the
# layer's output, all output columns, all kernel taps, of image `img`. Its dense work is
# kn * cn * pn * OW * R * S multiply-accumulates, whichever the phase.
TC_FIELDS: Final = (
    DESC,
    r("rk", "First output channel k of the tile."),
    u("kn", 16, "Output channels in the tile.", min_value=1),
    r("rc", "First input channel c (within the group)."),
    u("cn", 16, "Input channels in the tile.", min_value=1),
    r("rp", "First output row p."),
    u("pn", 12, "Output rows in the tile.", min_value=1),
    r("rimg", "Image index in the batch (its skip flag gates BP/WU work)."),
    r("ra", "Buffer address of the first operand tile (see the op)."),
    r("rb", "Buffer address of the second operand tile (see the op)."),
    r("ro", "Buffer address of the FP16 accumulator tile / result."),
    u("acc", 1, "1: add to the accumulator tile; 0: start from zero."),
    u("fin", 1, "1: last reduction step: round the accumulators to FP8 through the SRUs."),
    r(
        "rm",
        "Gate mask of the tile's outputs (msk), [pixel][channel group] from the tile's first "
        "pixel and group; read in pass cond, BP and WU when the descriptor's gate is set.",
    ),
    u(
        "gm",
        20,
        "Byte address (msk) of the Lasso group mask of the tile's weights, [k][c group] over "
        "the tile; read when the descriptor's wsparse is set.",
    ),
)

DMA_FIELDS: Final = (
    e("buf", BUFFER, "On-chip buffer."),
    r("rbuf", "Register holding the buffer byte address base."),
    u("boff", 20, "Byte offset added to the buffer base."),
    r("rdram", "Register holding the DRAM byte address of the first row."),
    u("rows", 12, "Rows to move.", min_value=1),
    u("row_bytes", 16, "Bytes per row.", min_value=1),
    u("dstride", 24, "Bytes between row starts in DRAM (transposes and windows use it)."),
    u("bstride", 16, "Bytes between row starts in the buffer."),
    u(
        "gsk",
        1,
        "1: the transfer belongs to the BP/WU work of image `rimg`: with gradient skipping on "
        "and that image's skip flag set (mask-buffer byte rimg, where `gs.decide` with rm = r0 "
        "writes it), no data moves (the op still waits and signals its tokens).",
    ),
    r("rimg", "Image index whose skip flag `gsk` consults (r0 when gsk = 0)."),
)


# ---------------------------------------------------------------- the instructions
OPCODES: Final[tuple[OpSpec, ...]] = (
    # -- control
    OpSpec(0x00, "nop", "ctrl", (), "No operation (its wt/sg tokens still wait/signal)."),
    OpSpec(0x01, "halt", "ctrl", (), "Wait for every unit to drain, then stop."),
    OpSpec(
        0x02,
        "loop",
        "ctrl",
        (
            u("count", 24, "Iterations (at least 1).", min_value=1),
            FieldSpec("end", Kind.LABEL, 16, "First instruction after the body.", min_value=1),
        ),
        "Hardware loop: run the instructions from the next one up to (not including) `end` "
        "`count` times. Loops nest up to the configured depth; a body must lie inside the "
        "enclosing body. Costs no issue slot per iteration.",
    ),
    OpSpec(0x03, "barrier", "ctrl", (), "Issue nothing further until every unit is idle."),
    OpSpec(
        0x07,
        "sync",
        "ctrl",
        (e("unit", UNIT, "Queue that receives the marker."),),
        "Dependency marker in the queue of `unit`: waits there for `wt` (if set) and signals "
        "`sg` once every earlier instruction of that unit has completed.",
    ),
    OpSpec(
        0x04,
        "setr",
        "ctrl",
        (r("rd", "Destination register."), u("imm", 32, "Value.")),
        "rd = imm (r0 stays 0).",
    ),
    OpSpec(
        0x05,
        "addr",
        "ctrl",
        (r("rd", "Destination."), r("rs", "Source."), s("imm", 32, "Signed addend.")),
        "rd = (rs + imm) mod 2^32. Loop bodies step addresses and tile indices with it.",
    ),
    OpSpec(
        0x06,
        "xorr",
        "ctrl",
        (r("rd", "Destination."), r("rs", "Source."), u("imm", 32, "Mask.")),
        "rd = rs xor imm. Toggles between the two halves of a double buffer.",
    ),
    OpSpec(
        0x08,
        "skipimg",
        "ctrl",
        (
            r("rimg", "Image index whose skip flag (mask-buffer byte rimg) is read."),
            FieldSpec("end", Kind.LABEL, 16, "First instruction after the region.", min_value=1),
            u(
                "inv",
                1,
                "1: the opposite region, issued only where image rimg is skipped (gradient "
                "skipping on and its flag set): work placed ahead for a later image.",
            ),
        ),
        "The gradient-skip unit's issue rule (the GSU decides whether an image's BP and WU "
        "are issued): with gradient skipping on and image rimg's skip flag set, the "
        "controller continues at `end`, and the region from the next instruction up to (not "
        "including) `end` is not issued: its instructions move no data, wait for and signal "
        "no tokens and change no register. Otherwise it continues with the next instruction. "
        "With inv = 1 the condition is the opposite: the region is issued only where the "
        "image is skipped (and, as with any region, a program with no image skipped does not "
        "issue it). "
        "The flag is read once every earlier gs.decide has completed. The region lies inside "
        "the innermost enclosing loop body and contains only whole loops; the compiler keeps "
        "the token signals and waits of all of an image's regions in a block balanced, so the "
        "images that are issued pair their tokens as if the skipped ones were not in the "
        "program.",
    ),
    # -- configuration
    OpSpec(
        0x10,
        "layer",
        "ctrl",
        (
            DESC,
            e("kind", LAYER_KIND, "Layer kind."),
            u("c", 16, "Input channels (FC: input features).", min_value=1),
            u("k", 16, "Output channels (FC: output features).", min_value=1),
            u("h", 12, "Input height.", min_value=1),
            u("w", 12, "Input width.", min_value=1),
            u("kh", 4, "Kernel height.", min_value=1),
            u("kw", 4, "Kernel width.", min_value=1),
            u("stride", 4, "Stride (both directions).", min_value=1),
            u("pad", 4, "Zero padding (both directions)."),
            u(
                "groups",
                16,
                "Convolution groups (C for depthwise); norm: images in the batch (B).",
                min_value=1,
            ),
            u("gate", 1, "1: forward output is channel-gated (base/cond passes, gate mask)."),
            u("wsparse", 1, "1: weights carry a Lasso group mask the TC skips."),
        ),
        "Write layer descriptor `desc`. Output size: OH = (h + 2 pad - kh) / stride + 1, "
        "OW likewise. Tensor-core, SFU, gating and pruning ops name a descriptor.",
    ),
    OpSpec(
        0x11,
        "mode",
        "ctrl",
        (
            u("gating", 1, "Channel gating on."),
            u("wsparse", 1, "Weight (group-Lasso) sparsity on."),
            u("gskip", 1, "Gradient skipping on."),
        ),
        "Global sparsity modes. With a mode off the units still compute the masks' inputs but "
        "issue all work dense (the dense baseline runs the same program).",
    ),
    OpSpec(
        0x12,
        "sru",
        "sru",
        (
            e("target", SRU_TARGET, "Rounding stream configured."),
            u("r", 6, "Random bits per rounding.", min_value=1, max_value=32),
            e("variant", ROUNDING, "Rounding rule."),
            e("source", RANDOM_SOURCE, "Random source."),
            u("width", 6, "PRNG register width in bits.", min_value=2, max_value=32),
            e("sharing", SHARING, "PRNG sharing across lanes."),
            u("seed", 32, "Initial PRNG state of lane 0."),
        ),
        "Configure the SRUs of one rounding stream and reseed their random source.",
    ),
    OpSpec(
        0x13,
        "cgcfg",
        "cgu",
        (
            DESC,
            u("g", 6, "Base fraction denominator G: the base pass uses C/G channels.", 1),
            u("group", 8, "Output channels per gate decision.", min_value=1),
        ),
        "Channel-gating parameters of a layer descriptor.",
    ),
    OpSpec(
        0x14,
        "wscfg",
        "wsu",
        (
            f32("threshold", "Group L2-norm threshold."),
            u("gc", 6, "Input channels per group.", min_value=1),
            u("gk", 6, "Output channels per group.", min_value=1),
        ),
        "Group-Lasso parameters: groups are gk outputs x gc consecutive inputs x all taps.",
    ),
    OpSpec(
        0x15,
        "gscfg",
        "gsu",
        (e("criterion", GSKIP_CRITERION, "Skip rule."), f32("threshold", "Confidence.")),
        "Gradient-skip parameters.",
    ),
    OpSpec(
        0x16,
        "sgdcfg",
        "sfu",
        (
            f32("lr", "Learning rate."),
            f32("momentum", "Momentum coefficient."),
            f32("wd", "Weight decay."),
        ),
        "SGD-with-momentum hyper-parameters for following `sgd` ops.",
    ),
    # -- data movement
    OpSpec(
        0x20,
        "dma.ld",
        "ld",
        DMA_FIELDS,
        "DRAM to buffer, 2-D strided: for i < rows: buf[rbuf + boff + i bstride, +row_bytes) = "
        "dram[rdram + i dstride, +row_bytes). Not performed for a skipped image when gsk = 1.",
    ),
    OpSpec(
        0x21,
        "dma.st",
        "st",
        DMA_FIELDS,
        "Buffer to DRAM, 2-D strided: for i < rows: dram[rdram + i dstride, +row_bytes) = "
        "buf[rbuf + boff + i bstride, +row_bytes). Not performed for a skipped image when "
        "gsk = 1.",
    ),
    # -- tensor cores
    OpSpec(
        0x30,
        "tc.fwd",
        "tc",
        (*TC_FIELDS, e("pass", TC_PASS, "Channel-gating pass.")),
        "Forward conv/FC tile (phase FP): acc[p, k] (+)= sum_c,taps W[k, tap, c] X[p + tap, c]. "
        "ra = input rows X (act), [row][col][c], from input row max(0, p stride - pad); rb = "
        "weights of output k (wgt), [k][tap][c] with all input channels of the group; ro = FP16 "
        "accumulators (act), [row][col][k]; with fin the FP8 results replace them, packed "
        "[row][col][k] from ro. Lanes skip zero Lasso groups when wsparse is on, and in pass "
        "`cond` the gated (pixel, group) outputs, which keep their accumulators. Numerics "
        "(all tc ops): each accumulator takes its products in dp_width-wide steps of the "
        "dot-product tree (docs/dot-product.md), rounded into the FP16 accumulator with RNE "
        "after every step; here kernel taps in row-major order, and within a tap the channels "
        "[rc, rc + cn) in chunks of the dp_width-aligned channel blocks (c div dp_width; "
        "zero-padded: a pass starting inside a block takes that block's rest alone); with "
        "wsparse a lane skips its chunks whose weights are all in zero Lasso groups; an op "
        "with acc = 1 appends its steps. fin rounds through the `act` SRU stream. Grouped "
        "convs (descriptor groups > 1; all tc ops): a tile holds whole groups of outputs; ra "
        "(tc.fwd) and rb (tc.wgr) hold the input channels of the tile's groups, (kn / kg) cg "
        "per pixel, and tc.bwd's ro the dX of those groups; each group is reduced as an "
        "ordinary conv of its kg outputs and cg inputs (tc.fwd's aligned blocks and tc.bwd's "
        "k chunks counted from the group's first channel / output). Gating and weight "
        "sparsity do not apply to grouped convs.",
    ),
    OpSpec(
        0x31,
        "tc.bwd",
        "tc",
        TC_FIELDS,
        "Backward data-gradient tile (phase BP), transposed weights, scatter form: "
        "dX[p stride + tap - pad, c] (+)= sum_k W[k, tap, c] dY[p, k] (taps that land in the "
        "padding are computed and dropped). ra = errors dY (err), [row][col][k] of the kn "
        "channels; rb = weights of output k (wgt), [k][tap][c] with cn channels; ro = FP16 dX "
        "accumulators of the whole input image (err), [row][col][c]; fin packs FP8 results "
        "from ro. Skipped if image `rimg` is skipped (its skip flag: mask-buffer byte rimg); "
        "gated outputs have zero error and their work is skipped. Step order per dX pixel: "
        "kernel taps in row-major order (taps without a dY pixel contribute nothing), within "
        "a tap the kn channels in chunks of dp_width; with wsparse, the lanes of one Lasso "
        "group of input channels take, per tap, only the k of their nonzero groups, "
        "compacted in order, per gate group where gating applies (else the whole tile), "
        "each part zero-padded to whole chunks. fin rounds through the `err` stream.",
    ),
    OpSpec(
        0x32,
        "tc.wgr",
        "tc",
        TC_FIELDS,
        "Weight-gradient tile (phase WU): dW[k, tap, c] (+)= sum_p dY[p, k] X[p + tap, c]. "
        "ra = errors dY (err), [row][col][k] of the tile's rows and kn channels; rb = input "
        "rows X (act), [row][col][c] of cn channels, from input row max(0, p stride - pad); "
        "ro = FP16 gradient accumulators (err), [k][tap][c]. Skipped if image `rimg` is "
        "skipped; gated outputs (zero error) and zero groups are skipped. Step order: the "
        "tile's output pixels in row-major order in chunks of dp_width; where gating "
        "applies, each gate group's outputs take only the pixels where it is open, "
        "compacted in order.",
    ),
    # -- sparsity units
    OpSpec(
        0x40,
        "cg.gate",
        "cgu",
        (
            DESC,
            r("rk", "First output channel."),
            u("kn", 16, "Output channels.", min_value=1),
            r("rp", "First output row."),
            u("pn", 12, "Output rows.", min_value=1),
            r("ra", "Base-pass partial sums (act)."),
            r("rt", "Learned threshold of the layer (wgt)."),
            r("rm", "Gate mask (msk), one byte per (pixel, channel group), [pixel][group]."),
        ),
        "Compare the normalized base partial sums with the threshold and write the gate mask "
        "the `cond` pass, BP and WU read: bit (pixel, group) = 1 (compute) iff the mean of the "
        "group's FP16 base sums ([pixel][k] at ra) exceeds the FP16 threshold at rt. Written "
        "in every mode.",
    ),
    OpSpec(
        0x41,
        "ws.norm",
        "wsu",
        (
            DESC,
            r("rk", "First output channel."),
            u("kn", 16, "Output channels.", min_value=1),
            r("rc", "First input channel."),
            u("cn", 16, "Input channels (a multiple of the group size).", min_value=1),
            r("rw", "Weights (wgt)."),
            r("rn", "Group norms out (err)."),
        ),
        "FP32 L2 norms of the Lasso groups of the weight tile (outputs [k, k+kn) x inputs "
        "[c, c+cn), layout [k][tap][c]) at rw, one per group, [k][c group] order (sum of "
        "squares exact, square root rounded to FP32).",
    ),
    OpSpec(
        0x42,
        "ws.prune",
        "wsu",
        (
            DESC,
            r("rk", "First output channel."),
            u("kn", 16, "Output channels.", min_value=1),
            r("rc", "First input channel."),
            u("cn", 16, "Input channels (a multiple of the group size).", min_value=1),
            r("rw", "Weights (wgt), zeroed in place."),
            r("rn", "Group norms (err)."),
            r("rm", "Group mask out (msk), one byte per group."),
        ),
        "Zero the groups of the weight tile whose norm is below the threshold and write the "
        "group mask (one byte per group, 1 = kept) at rm. With weight sparsity off nothing is "
        "zeroed and the mask is all ones (the dense baseline prunes nothing).",
    ),
    OpSpec(
        0x43,
        "gs.decide",
        "gsu",
        (
            r("rimg", "Image index."),
            r("ra", "Network outputs of the image (act)."),
            r("rt", "One-hot target of the image (act)."),
            u("classes", 16, "Output classes.", min_value=1),
            r("rm", "Skip flags (msk), one byte per image; byte rm + rimg is written."),
        ),
        "Gradient-skip decision for one image after its forward pass: skip iff the largest "
        "output exceeds the threshold and (correct_and_confident) its index, the first "
        "largest, is the target's class.",
    ),
    # -- special functions and update
    OpSpec(
        0x50,
        "sfu",
        "sfu",
        (
            e("op", SFU_OP, "Operation."),
            DESC,
            e("bufa", BUFFER, "Buffer of operand a."),
            r("ra", "Address of a."),
            e("bufb", BUFFER, "Buffer of operand b."),
            r("rb", "Address of b (r0 when unused)."),
            e("bufo", BUFFER, "Buffer of the result."),
            r("ro", "Address of the result."),
            r(
                "rimg",
                "Image index (BP ops of a skipped image are not issued: the *_bwd ops and an "
                "add into err).",
            ),
            u("n", 24, "Elements of a.", min_value=1),
            e("bufc", BUFFER, "Buffer of operand c (norm_bwd_stat, norm_bwd)."),
            r("rc", "Address of c (r0 when unused)."),
            u(
                "pa",
                20,
                "norm_fwd, norm_bwd: byte address (wgt) of gamma, ch FP8 values; beta follows "
                "at pa + ch (0 otherwise).",
            ),
            u("ch", 16, "Norm ops: channels of the tile, [pixel][channel] (0 otherwise)."),
            u(
                "esz",
                3,
                "zero: bytes per cleared element (1, 2 or 4); 0: 2 under a conv/fc descriptor "
                "(FP16 accumulators), else 1.",
                max_value=4,
            ),
        ),
        "Element-wise special function of `sfu_op` on n elements; results rounded to FP8 by "
        "the SRU stream of the result's buffer (act: `act`, err: `err`), one random word per "
        "result in output order. Pooling ops take the window from the descriptor and n / "
        "(h w) (forward) or n / (oh ow) (backward) channels, [pixel][channel]; the argmax is "
        "the tap index (row-major) of the first maximum. `zero` clears n elements of `esz` "
        "bytes. "
        "Batch norm (descriptor of kind norm: c channels, h x w pixels per image, groups = B, "
        "the images of the batch; N = B h w values per channel). The op's tensors are "
        "[pixel][channel] with ch channels and n / ch pixels. Statistics: 8 bytes per "
        "channel, FP32 sum then FP32 sum of squares (little-endian), channel j at +8j. "
        "Gradient sums: FP16 (the accumulator format) d_gamma of the ch channels, then d_beta "
        "of the ch channels. gamma, beta: FP8 in wgt at pa, pa + ch. All arithmetic is FP32 "
        "with RNE after every operation, in the order written. norm_stat (a, o): per channel, "
        "pixels in order, s = s + x, q = q + x x (exact). Derived per channel: mean = s / N; "
        "var = max((q / N) - (mean mean), 0); rstd = 1 / sqrt(var + eps), eps = FP32(1e-5), "
        "sqrt and division correctly rounded; xh = (x - mean) rstd. norm_fwd (a = x, b = "
        "statistics, o): o = (xh gamma) + beta, rounded by the SRU. norm_bwd_stat (a = dy, b = "
        "x, c = statistics, o = gradient sums): per channel, starting from the FP16 sums at o, "
        "pixels in order, sg = sg + (dy xh), sb = sb + dy in FP32, each written back once per "
        "op as FP16 (RNE). norm_bwd (a = dy, b = statistics followed by the gradient sums, "
        "c = x, o): dx = (gamma rstd) ((dy - sb / N) - (xh (sg / N))), rounded by the SRU. "
        "The *_bwd ops of a skipped image are not issued (its error is zero). Running "
        "statistics are not kept on chip: the program stores each batch's sums to DRAM.",
    ),
    OpSpec(
        0x51,
        "sgd",
        "sfu",
        (
            r("rw", "Weights (wgt), FP8, updated in place."),
            r("rg", "Weight gradients (err)."),
            r("rv", "Momentum (err), FP8, updated in place."),
            u("n", 24, "Weights.", min_value=1),
        ),
        "SGD with momentum on n parameters: v = momentum v + g + wd w; w = w - lr v; v and w "
        "rounded to FP8 by the `mom` and `wgt` SRU streams. g is FP16 (the tc.wgr accumulators "
        "or the norm_bwd_stat sums). Arithmetic in FP32, one rounding per operation in the "
        "order ((momentum v) + g) + (wd w), then w - (lr v) with the rounded v.",
    ),
)

BY_MNEMONIC: Final[dict[str, OpSpec]] = {op.mnemonic: op for op in OPCODES}
BY_CODE: Final[dict[int, OpSpec]] = {op.code: op for op in OPCODES}
if len(BY_MNEMONIC) != len(OPCODES) or len(BY_CODE) != len(OPCODES):  # pragma: no cover
    raise RuntimeError("duplicate opcode or mnemonic in isa.spec.OPCODES")

# Phase of the tensor-core opcodes, for work accounting.
TC_PHASE: Final = {"tc.fwd": "fp", "tc.bwd": "bp", "tc.wgr": "wu"}
