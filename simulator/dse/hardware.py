"""Hardware cost of one SRU point: Yosys cell counts of the SRU and its random source (from the
RTL in rtl/), and an energy per rounding derived from the configured energy table."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from simulator.dse.config import SruPoint

# The SRU rounds the FP32 result of an update into the point's format (the RTL SRU's widest
# input); rne points are the same block without a random input.
SRU_INPUT_FORMAT = "fp32"


def _source_block(point: SruPoint) -> tuple[str, dict[str, Any]] | None:
    src = point.source
    if src is None or src.kind == "uniform":
        return None  # an ideal source has no hardware
    if src.kind == "xorshift32":
        return "xorshift32", {"r": point.r or 1}
    if src.kind == "lfsr":
        return "lfsr", {"width": src.width, "form": src.form, "combine": src.combine, "r": point.r}
    return "stream_bits", {"r": point.r, "low_bit": 0}


@lru_cache(maxsize=512)
def _cells(block: str, params_json: str) -> tuple[int, int, dict[str, int]]:
    from rtl.stats import run_stats

    (stats,) = run_stats([(block, json.loads(params_json))])
    return stats.total, stats.gates, stats.cells


def _synth(block: str, params: dict[str, Any]) -> tuple[int, int, dict[str, int]]:
    return _cells(block, json.dumps(params, sort_keys=True))


def _sru_params(point: SruPoint) -> dict[str, Any]:
    return {
        "in_fmt": SRU_INPUT_FORMAT,
        "out_fmt": point.format,
        "rounding": point.rounding,
        "r": point.r or 1,
    }


def evaluate_hardware(point: SruPoint, config_name: str = "ref28") -> dict[str, Any]:
    """Cells of SRU + source per lane (a shared LFSR is divided among its lanes), and energy
    per rounding: the table's sru_round_pj + prng_step_pj for the configured SRU, scaled by
    this design's gate equivalents relative to that reference design (an assumption)."""
    from simulator.config import load_config

    cfg = load_config(config_name)
    sru_total, sru_gates, _ = _synth("sru", _sru_params(point))
    src_block = _source_block(point)
    if src_block is None and point.source is not None:
        return {
            "cells_sru": sru_total,
            "cells_total": None,
            "note": f"no RTL for a {point.source.kind} source; cost not computed",
        }
    share = point.source.lanes if (point.source and point.source.sharing == "shared") else 1
    src_total, src_gates = 0, 0
    if src_block is not None:
        src_total, src_gates, _ = _synth(*src_block)
    total = sru_total + src_total / share
    gates = sru_gates + src_gates / share
    ref = cfg.sru
    ref_point = SruPoint(
        format=point.format,
        rounding=ref.variant,
        r=ref.random_bits,
        source=None,
        apply_to=point.apply_to,
    )
    ref_gates = (
        _synth("sru", _sru_params(ref_point))[1]
        + _synth(
            "lfsr",
            {
                "width": ref.lfsr_width_bits,
                "form": "fibonacci",
                "combine": "none",
                "r": ref.random_bits,
            },
        )[1]
    )
    table_pj = cfg.energy.sru_round_pj + cfg.energy.prng_step_pj
    return {
        "cells_sru": sru_total,
        "cells_source": src_total,
        "cells_total": total,
        "gate_equivalents": gates,
        "energy_pj_per_rounding": table_pj * gates / ref_gates,
        "energy_basis": f"{config_name} sru_round_pj + prng_step_pj ({table_pj:.4g} pJ) scaled "
        f"by gate equivalents / {ref_gates} of its r={ref.random_bits} "
        f"LFSR{ref.lfsr_width_bits} SRU (assumed)",
    }
