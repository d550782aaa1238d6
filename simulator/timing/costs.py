"""Occupancy (cycles) and energy events of every executed non-tensor-core instruction.

Each function takes the executed instances of one static instruction and returns the cycles
it occupies its unit (`dur`), the DRAM channel cycles (`bus`, DMA only) and event counts.
Throughputs not in the configuration are stated where they are used.
"""

from __future__ import annotations

from isa.spec import BUFFER, SFU_OP

BUFS = tuple(BUFFER.values)  # act, wgt, err, msk
EVENTS = (
    "tc_lane_steps",  # one dot-product step of one lane (adder tree + FP16 accumulate)
    "tc_macs",  # nonzero products actually multiplied
    "rf_bytes",  # lane register-file reads (stationary weights / operands)
    *(f"sram_rd_{b}" for b in BUFS),
    *(f"sram_wr_{b}" for b in BUFS),
    "dram_bytes",
    "sru_rounds",  # FP8 roundings (each also steps a PRNG under stochastic rounding)
    "sfu_ops",
    "cgu_ops",
    "wsu_macs",
    "gsu_ops",
    "instructions",
)
EVENT_ID = {e: i for i, e in enumerate(EVENTS)}

# SFU ops that read a second operand b, and ops whose result is not an FP8 rounding.
SFU_B = {"relu_bwd", "maxpool_bwd", "add", "loss_mse", "norm_fwd", "norm_bwd", "norm_bwd_stat"}
_SFU_NO_ROUND = {"zero", "norm_stat", "norm_bwd_stat", "copy"}
SFU_NAMES = tuple(SFU_OP.values)


def dma_cost(args, bw: int) -> tuple[int, int, dict[str, int]]:
    """(dur, bus, events) of one transfer: every row takes ceil(row_bytes / bw) bus beats."""
    rows, rb = args["rows"], args["row_bytes"]
    beats = rows * -(-rb // bw)
    return beats, beats, {"dram_bytes": rows * rb}


def sfu_cost(args, thr: int) -> tuple[int, dict[str, int]]:
    op = SFU_NAMES[args["op"]]
    n = args["n"]
    ev = {
        "sfu_ops": n,
        f"sram_rd_{BUFS[args['bufa']]}": n,
        f"sram_wr_{BUFS[args['bufo']]}": n,
    }
    if op in SFU_B:
        key = f"sram_rd_{BUFS[args['bufb']]}"
        ev[key] = ev.get(key, 0) + n
    if op == "maxpool_fwd":  # argmax written to the mask buffer
        ev["sram_wr_msk"] = n
    if op not in _SFU_NO_ROUND:
        ev["sru_rounds"] = n
    return -(-n // thr), ev


def sgd_cost(args, thr: int) -> tuple[int, dict[str, int]]:
    """v = m v + g + wd w; w -= lr v: three SFU operations and two roundings per weight."""
    n = args["n"]
    ev = {
        "sfu_ops": 3 * n,
        "sru_rounds": 2 * n,
        "sram_rd_wgt": n,
        "sram_rd_err": 3 * n,  # FP16 gradient (2 bytes) + FP8 momentum
        "sram_wr_wgt": n,
        "sram_wr_err": n,
    }
    return -(-n // thr), ev
