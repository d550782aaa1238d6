"""Calibration study: where the gap between the trace's FLOPs reduction and the simulated
speedup comes from, measured by removing one mechanism at a time (what-if configurations and
traces; ref28 itself is never changed). `python -m simulator.report.calibration [-o FILE]`.

Rows: the calibration workload on ref28; the same with the two parameters that calibration
chose put back to their earlier values (the `static` lane work distribution, a 16-wide SFU),
which shows what each choice is worth; with the CGU reading the base sums only after the
base pass (what `cgu.streams_base_sums` is worth); with the DRAM interface on the core clock
instead of its own (what `dma.dram_clock: memory` is worth at the slow, efficient operating
points); with a faster DRAM channel (how memory-bound the program is); with uniform instead of
realistic mask skew (how much lane imbalance costs); and the chip's own test-vector network
(VGG-7). Every row prints cycles dense/all, speedup, the
executed-MAC reduction, tensor-core busy cycles against the balanced ideal (lane steps / lanes:
what the busiest lane costs), DMA and SFU busy cycles, and the efficiency at its best operating
point (simulated at that point) with the speedup there. docs/simulator.md ("Calibration") reads
the gap from these numbers.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from simulator.config import HardwareConfig, canonical_json, load_config, validate_config
from simulator.run import NAMED_TRACES, Workload, run_workload, synthesize_named
from simulator.timing import masks_from_trace


def _with(cfg: HardwareConfig, section: str, field: str, value, tag: str) -> HardwareConfig:
    """`cfg` with one parameter changed (a what-if; validated like a user's file), named
    `<cfg.name>-<tag>`."""
    d = json.loads(canonical_json(cfg))
    d[section][field] = value
    d["name"] = f"{cfg.name}-{tag}"
    return validate_config(d)


def _with_dram(cfg: HardwareConfig, bytes_per_cycle: int) -> HardwareConfig:
    return _with(cfg, "dma", "dram_bytes_per_cycle", bytes_per_cycle, f"dram{bytes_per_cycle}")


def _with_dram_clock(cfg: HardwareConfig, clock: str) -> HardwareConfig:
    """The DRAM interface on another clock (`core`: fixed bytes per core cycle)."""
    return _with(cfg, "dma", "dram_clock", clock, f"dram-{clock}")


def _with_lanes(cfg: HardwareConfig, policy: str) -> HardwareConfig:
    """Another lane work-distribution policy (an assumed design alternative)."""
    return _with(cfg, "tensor_core", "lane_distribution", policy, policy)


def _with_sfu(cfg: HardwareConfig, elements_per_cycle: int) -> HardwareConfig:
    return _with(
        cfg, "sfu", "throughput_elements_per_cycle", elements_per_cycle, f"sfu{elements_per_cycle}"
    )


def _with_cgu_stream(cfg: HardwareConfig, on: bool) -> HardwareConfig:
    """The CGU streaming behind the base pass, or reading its sums after it (`false`)."""
    return _with(cfg, "cgu", "streams_base_sums", on, "cgu-stream" if on else "cgu-after")


def _workload(name: str, skew: str | None = None) -> Workload:
    if skew is not None:
        NAMED_TRACES[f"{name}-{skew}"] = replace(NAMED_TRACES[name], skew=skew)
        name = f"{name}-{skew}"
    t = synthesize_named(name)
    return Workload(name, t, masks_from_trace(t), {"kind": "named synthetic", "name": name})


def study() -> list[dict]:
    ref = load_config("ref28")
    base = _workload("resnet20-cal")
    uniform = _workload("resnet20-cal", "uniform")
    vgg = _workload("vgg7-cal")
    before = _with_sfu(_with_lanes(ref, "static"), 16)
    cases = [
        ("ref28, resnet20-cal (realistic skew)", ref, base),
        ("static lane distribution", _with_lanes(ref, "static"), base),
        ("SFU 16 elements/cycle", _with_sfu(ref, 16), base),
        ("static lanes + SFU 16 (ref28 before calibration)", before, base),
        ("CGU after the base pass (cgu.streams_base_sums false)",
         _with_cgu_stream(ref, False), base),
        ("DRAM on the core clock (16 B/cycle at every point)",
         _with_dram_clock(ref, "core"), base),
        ("DRAM 2x (32 B/cycle at 400 MHz)", _with_dram(ref, 32), base),
        ("DRAM 4x (64 B/cycle at 400 MHz)", _with_dram(ref, 64), base),
        ("DRAM unlimited (4096 B/cycle)", _with_dram(ref, 4096), base),
        ("uniform mask skew", ref, uniform),
        ("VGG-7 (vgg7-cal) on ref28", ref, vgg),
        ("VGG-7, DRAM unlimited", _with_dram(ref, 4096), vgg),
    ]  # fmt: skip
    rows = []
    for label, cfg, w in cases:
        res = run_workload(w, cfg)
        s = res.summary
        busy = s["units_report"]
        lanes = cfg.tensor_core.n_tc * cfg.tensor_core.lanes
        rows.append(
            {
                "case": label,
                "lane_distribution": cfg.tensor_core.lane_distribution,
                "sfu_elements_per_cycle": cfg.sfu.throughput_elements_per_cycle,
                "dram_bytes_per_cycle": cfg.dma.dram_bytes_per_cycle,
                "dram_clock": cfg.dma.dram_clock,
                "dram_gb_per_s": round(cfg.dram_gb_per_s(), 1),
                "flops_reduction_trace": round(s["flops_reduction"], 2),
                "mac_reduction_executed": round(s["flops_reduction_executed"]["all"], 2),
                "cycles_dense": s["cycles"]["dense"],
                "cycles_all": s["cycles"]["all"],
                "speedup_all": round(s["speedup"]["all"], 2),
                "tc_busy_dense": busy["dense"]["busy"]["tc"],
                "tc_busy_all": busy["all"]["busy"]["tc"],
                "tc_balanced_all": round(res.timings["all"].events["tc_lane_steps"] / lanes),
                "tc_ideal_all": round(
                    res.timings["all"].useful_macs / cfg.tensor_core.macs_per_cycle
                ),
                "dma_busy_dense": busy["dense"]["busy"]["ld"] + busy["dense"]["busy"]["st"],
                "dma_busy": busy["all"]["busy"]["ld"] + busy["all"]["busy"]["st"],
                "sfu_busy_all": busy["all"]["busy"]["sfu"],
                "tflops_per_w_dense_eq": round(s["tflops_per_w"]["dense_equivalent"], 2),
                "best_point": s["tflops_per_w"]["operating_point"],
                "speedup_at_best_point": round(s["tflops_per_w"]["speedup"], 2),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str]) -> int:
    rows = study()
    if len(argv) == 2 and argv[0] == "-o":
        Path(argv[1]).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
