"""The report's tables as rows (lists of dicts), shared by the Markdown, HTML and CSV writers."""

from __future__ import annotations

from typing import Any

PHASE_ORDER = ("setup", "fp", "loss", "bp", "wu", "end")


def headline(summary: dict) -> list[dict[str, Any]]:
    rows = []
    for m, c in summary["cycles"].items():
        rows.append(
            {
                "mode": m,
                "cycles": c,
                "speedup_x": summary["speedup"][m],
                "energy_uJ": summary["energy_pj"][m] / 1e6,
                "energy_on_chip_uJ": summary["energy_on_chip_pj"][m] / 1e6,
                "edp_uJ_ms": summary["edp_pj_s"][m] / 1e6 * 1e3,
                "tc_utilization": summary["utilization"][m],
                "flops_reduction_executed_x": summary["flops_reduction_executed"][m],
            }
        )
    return rows


def per_layer(summary: dict) -> list[dict[str, Any]]:
    """Per MAC layer (FP + BP + WU summed): cycles dense / all, MACs, densities, speedups."""
    agg: dict[str, dict] = {}
    for r in summary["layers"]:
        if not r["dense_macs"]:
            continue
        a = agg.setdefault(
            r["layer"],
            {
                "layer": r["layer"],
                "cycles_dense": 0,
                "cycles_all": 0,
                "dense_macs": 0,
                "useful_macs_all": 0,
                "dram_bytes_all": 0,
                "gate_density": r["gate_density"],
                "weight_group_density": r["weight_group_density"],
            },
        )
        a["cycles_dense"] += r["cycles"].get("dense", 0)
        a["cycles_all"] += r["cycles"].get("all", 0)
        a["dense_macs"] += r["dense_macs"]
        a["useful_macs_all"] += r["useful_macs"].get("all", 0)
        a["dram_bytes_all"] += r["dram_bytes"].get("all", 0)
    out = []
    for a in agg.values():
        a["ideal_speedup_x"] = (
            a["dense_macs"] / a["useful_macs_all"] if a["useful_macs_all"] else None
        )
        a["achieved_speedup_x"] = a["cycles_dense"] / a["cycles_all"] if a["cycles_all"] else None
        out.append(a)
    return out


def per_phase(summary: dict) -> list[dict[str, Any]]:
    """Cycles per phase (all layers, including non-GEMM work) per mode."""
    modes = list(summary["cycles"])
    acc: dict[str, dict[str, float]] = {}
    for r in summary["layers"]:
        row = acc.setdefault(r["phase"], {m: 0 for m in modes})
        for m in modes:
            row[m] += r["cycles"].get(m, 0)
    out = []
    for ph in sorted(acc, key=lambda p: PHASE_ORDER.index(p) if p in PHASE_ORDER else 99):
        out.append({"phase": ph, **{f"cycles_{m}": int(acc[ph][m]) for m in modes}})
    return out


def units(summary: dict, mode: str) -> list[dict[str, Any]]:
    rep = summary["units_report"][mode]
    rows = []
    for u, busy in rep["busy"].items():
        stalls = rep["stall"].get(u, {})
        top = sorted(stalls.items(), key=lambda kv: -kv[1])[:3]
        rows.append(
            {
                "unit": u,
                "busy": busy,
                "stalled": sum(stalls.values()),
                "idle": rep["idle"][u],
                "main_stalls": ", ".join(f"{k} {v}" for k, v in top),
            }
        )
    return rows


CHIP_SPEEDUP = 4.7  # reference-chip.md section 1 (published)
CHIP_TFLOPS_PER_W = 16.4


def gap_analysis(summary: dict) -> list[dict[str, Any]]:
    """Where the trace's FLOPs reduction is lost on the way to the end-to-end speedup, in the
    simulation's own numbers (mode `all` against `dense`), and the efficiency against the
    chip's published figures. Needs both modes in the summary."""
    if not {"dense", "all"} <= set(summary["cycles"]):
        return []
    busy = {m: summary["units_report"][m]["busy"] for m in ("dense", "all")}
    dma = {m: busy[m]["ld"] + busy[m]["st"] for m in ("dense", "all")}
    dram = {m: sum(r["dram_bytes"].get(m, 0) for r in summary["layers"]) for m in dma}
    bank = sum(s.get("bank", 0) for s in summary["units_report"]["all"]["stall"].values())
    eff = summary["tflops_per_w"]
    best = next(p for p in summary["operating_points"] if p["name"] == eff["operating_point"])
    dyn = best["energy_on_chip_pj"] - best["leakage_pj"]
    dense_macs = summary["manifest"]["dense_macs"]
    executed = summary["flops_reduction_executed"]["all"]
    leak_share = best["leakage_pj"] / best["energy_on_chip_pj"]
    point = eff["operating_point"]
    rows = [
        ("FLOPs reduction of the trace's masks (trace accounting)", summary["flops_reduction"]),
        ("MAC reduction the program executes (mode all)", executed),
        ("tensor-core busy cycles, dense / all", busy["dense"]["tc"] / max(1, busy["all"]["tc"])),
        ("SFU busy cycles, dense / all", busy["dense"]["sfu"] / max(1, busy["all"]["sfu"])),
        ("DRAM MB per step, dense", dram["dense"] / 1e6),
        ("DRAM MB per step, all (skipped images move no BP/WU data)", dram["all"] / 1e6),
        ("bound from DMA alone: cycles dense / DMA busy cycles in mode all",
         summary["cycles"]["dense"] / max(1, dma["all"])),
        ("buffer bank-conflict stall cycles, all units, mode all", bank),
        (f"simulated speedup, all over dense, at {summary['operating_point']}",
         summary["speedup"]["all"]),
        (f"simulated speedup, all over dense, at {point} (its own DRAM cycles)",
         best.get("speedup")),
        ("chip's published speedup", CHIP_SPEEDUP),
        (f"TFLOPS/W dense-equivalent at {point} (on chip)", eff["dense_equivalent"]),
        ("leakage share of on-chip energy at that point", leak_share),
        ("TFLOPS/W dense-equivalent from dynamic energy alone (no leakage)",
         2 * dense_macs / (dyn * 1e-12) / 1e12 if dyn > 0 else None),
        ("chip's published TFLOPS/W", CHIP_TFLOPS_PER_W),
    ]  # fmt: skip
    return [{"quantity": q, "value": v} for q, v in rows]
