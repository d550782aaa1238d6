"""Run a workload's training step on the modelled chip in every sparsity mode and collect the
figures of `fp8sim run --json` and of the report.

Workloads come from a trace file or from a named synthetic trace (`NAMED_TRACES`). The named
traces fix the weight-group density and the gradient-skip fraction and search the gate density
(bisection, same seed) until the trace's measured FLOPs reduction (workloads.trace accounting)
is the requested one: the calibration workload is `resnet20-cal` (7.3x, the chip's figure).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simulator import __version__
from simulator.config import HardwareConfig, config_hash
from simulator.energy import energy, tflops_per_w
from simulator.timing import MODES, SparsityMasks, TimingResult, masks_from_trace, prepare, simulate
from workloads.trace import Trace, load_trace, step_macs, synthesize


@dataclass(frozen=True)
class TraceRecipe:
    """A deterministic synthetic trace: fixed weight-group density and skip fraction; the gate
    density is searched so the trace's FLOPs reduction is `target_reduction`."""

    model: str
    batch: int
    weight_group: float
    grad_skip: float
    target_reduction: float
    skew: str = "realistic"
    seed: int = 2022
    doc: str = ""


NAMED_TRACES: dict[str, TraceRecipe] = {
    "resnet20-cal": TraceRecipe(
        "resnet20",
        128,
        0.5,
        0.6,
        7.3,
        doc="ResNet-20, batch 128, realistic skew; FLOPs reduction 7.3x (the chip's figure)",
    ),
    "vgg7-cal": TraceRecipe(
        "vgg7",
        128,
        0.5,
        0.6,
        7.3,
        doc="VGG-7 (the chip's test-vector network), batch 128; FLOPs reduction 7.3x",
    ),
    "resnet20-tiny": TraceRecipe(
        "resnet20", 4, 0.5, 0.5, 5.0, doc="ResNet-20, batch 4: a quick look (tests, notebook)"
    ),
    "vgg7-tiny": TraceRecipe(
        "vgg7", 2, 0.5, 0.5, 5.0, doc="VGG-7, batch 2: the smallest useful run"
    ),
}
DEFAULT_TRACE = "resnet20-cal"
# Traces recorded by training that ship with the package (docs/traces.md), by file stem.
SHIPPED_TRACES = Path(__file__).resolve().parent.parent / "workloads" / "traces"


def shipped_traces() -> dict[str, Path]:
    return {p.stem: p for p in sorted(SHIPPED_TRACES.glob("*.npz"))}


def _reduction(t: Trace) -> float:
    it = t.iterations[0]
    sm = step_macs(t.graph, t.batch, it.gates, t.gate_layers, it.wgroups, t.group_in, it.skip)
    return sm.reduction


def synthesize_named(name: str) -> Trace:
    """The named synthetic trace (deterministic)."""
    if name not in NAMED_TRACES:
        raise ValueError(f"unknown trace name {name!r}; names are {', '.join(NAMED_TRACES)}")
    r = NAMED_TRACES[name]

    def make(gate: float) -> Trace:
        dens = {"gate": gate, "weight_group": r.weight_group, "grad_skip": r.grad_skip}
        meta = {"named_trace": name, "target_reduction": r.target_reduction}
        return synthesize(r.model, dens, batch=r.batch, seed=r.seed, skew=r.skew, meta=meta)

    # Bisection on the gate density; the draws change with the density, so the reduction is
    # only roughly monotone: keep the closest trace seen.
    lo, hi = 0.0, 1.0
    best = make(hi)
    best_err = abs(_reduction(best) - r.target_reduction)
    if _reduction(best) >= r.target_reduction:
        return best
    for _ in range(11):  # gate density to 5e-4
        mid = (lo + hi) / 2
        t = make(mid)
        red = _reduction(t)
        if abs(red - r.target_reduction) < best_err:
            best, best_err = t, abs(red - r.target_reduction)
        if red > r.target_reduction:
            lo = mid
        else:
            hi = mid
    return best


@dataclass
class Workload:
    name: str
    trace: Trace
    masks: SparsityMasks
    source: dict[str, Any]
    iteration: int = 0  # the captured iteration whose masks are simulated


def load_workload(trace: str | Path | None, iteration: int = 0) -> Workload:
    """A trace file path, a named synthetic trace, a shipped trace's name (`vgg7_digits`, ...),
    or (None) the default named trace; its captured iteration `iteration` (from 0)."""
    spec = str(trace) if trace is not None else DEFAULT_TRACE
    if spec in NAMED_TRACES:
        t = synthesize_named(spec)
        source = {"kind": "named synthetic", "name": spec, "recipe": vars(NAMED_TRACES[spec])}
    else:
        path = shipped_traces().get(spec, Path(spec))
        if not path.exists():
            names = [*NAMED_TRACES, *shipped_traces()]
            raise ValueError(
                f"trace {spec!r} is neither a file nor a named trace ({', '.join(names)})"
            )
        t = load_trace(path)
        source = {"kind": "file", "path": str(path)}
    source["meta"] = t.meta
    if not 0 <= iteration < len(t.iterations):
        raise ValueError(
            f"trace {spec!r}: iteration {iteration} out of range; it holds "
            f"{len(t.iterations)} captured iteration(s), numbered from 0"
        )
    source["iteration"] = iteration
    return Workload(spec, t, masks_from_trace(t, iteration), source, iteration)


@dataclass
class RunResult:
    """Everything one `run` measured (JSON via `to_json`). `cfg` is the chip at the operating
    point the modes were simulated at (`HardwareConfig.at_operating_point`)."""

    workload: Workload
    cfg: HardwareConfig
    timings: dict[str, TimingResult]
    summary: dict[str, Any]
    wall_seconds: dict[str, float] = field(default_factory=dict)
    instructions: list[dict] = field(default_factory=list)  # per static instruction


@dataclass(frozen=True)
class PointRun:
    """The efficiency mode (and dense, when run) simulated at one operating point."""

    cfg: HardwareConfig
    preps: dict[str, Any]
    timings: dict[str, TimingResult]


def run_workload(
    w: Workload,
    cfg: HardwareConfig,
    modes: tuple[str, ...] = MODES,
    progress: Callable[[str], None] | None = None,
    point: str | None = None,
) -> RunResult:
    """Compile the workload's step for `cfg`, simulate every mode at operating point `point`
    (default: the config's default point), and summarise.

    Mode `dense` runs the dense program (`compile_graph(..., sparse=False)`: what the chip runs
    without sparsity, no gating passes); the other modes run the sparse program with the
    mechanisms of the mode switched on. Cycles depend on the operating point only through the
    DRAM channel (`dma.dram_clock`), so the efficiency sweep re-simulates the efficiency mode
    (and dense) at each point whose channel differs."""
    from isa.compiler import compile_graph

    base = cfg
    cfg = base.at_operating_point(point or base.default_operating_point)
    wall: dict[str, float] = {}
    t0 = time.perf_counter()
    if progress:
        progress("compile")
    program = compile_graph(w.trace.graph, cfg, w.trace.batch)
    dense_program = None
    if "dense" in modes:
        dense_program = compile_graph(w.trace.graph, cfg, w.trace.batch, sparse=False)
    wall["compile"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if progress:
        progress("prepare")
    prep = prepare(program, cfg)
    preps = {m: prep for m in modes}
    if dense_program is not None:
        preps["dense"] = prepare(dense_program, cfg)
    wall["prepare"] = time.perf_counter() - t0
    timings = {}
    for m in modes:
        if progress:
            progress(m)
        t0 = time.perf_counter()
        timings[m] = simulate(preps[m], w.masks, m)
        wall[m] = time.perf_counter() - t0
    key = efficiency_mode(modes)
    points: dict[str, PointRun] = {}
    t0 = time.perf_counter()
    for p in base.operating_points:
        pc = base.at_operating_point(p.name)
        ms = [m for m in (key, "dense") if m in modes]
        if pc.dma == cfg.dma:  # same channel in cycles: the same schedule
            points[p.name] = PointRun(pc, {m: preps[m] for m in ms}, {m: timings[m] for m in ms})
            continue
        if progress:
            progress(f"point {p.name}")
        pp = {m: prepare(dense_program if m == "dense" else program, pc) for m in ms}
        points[p.name] = PointRun(pc, pp, {m: simulate(pp[m], w.masks, m) for m in ms})
    wall["operating_points"] = time.perf_counter() - t0
    summary = summarise(w, cfg, preps, timings, program.summary(), points)
    res = RunResult(w, cfg, timings, summary, wall)
    res.instructions = instruction_rows(preps, timings)
    return res


def efficiency_mode(modes) -> str:
    """The mode whose efficiency the report gives: `all`, or the last mode run."""
    return "all" if "all" in modes else list(modes)[-1]


def instruction_rows(preps: dict, timings: dict[str, TimingResult]) -> list[dict]:
    """Per static instruction of each program (`program`: sparse, or dense for the dense
    baseline): mnemonic, layer, phase, executions, occupancy cycles per mode run on it."""
    rows = []
    programs: dict[int, tuple[Any, list[str]]] = {}
    for m, p in sorted(preps.items(), key=lambda mp: mp[0] == "dense"):  # sparse first
        programs.setdefault(id(p), (p, []))[1].append(m)
    for p, ms in programs.values():
        execs = np.bincount(p.stream.index, minlength=len(p.compiled.instructions))
        name = "dense" if ms == ["dense"] else "sparse"
        for i, ins in enumerate(p.compiled.instructions):
            ann = p.compiled.annotations[i]
            row = {"program": name, "index": i, "op": ins.op, "layer": ann["layer"]}
            row["phase"] = ann["phase"]
            row["executions"] = int(execs[i])
            for m in timings:
                row[f"cycles_{m}"] = int(timings[m].static_cycles[i]) if m in ms else ""
            rows.append(row)
    return rows


def _energies(cfg, prep, timing, point=None):
    return energy(cfg, timing, prep.layers, prep.phases, prep.layer_names, prep.phase_names, point)


def summarise(
    w: Workload,
    cfg,
    preps: dict,
    timings: dict[str, TimingResult],
    prog_summary,
    points: dict[str, PointRun] | None = None,
) -> dict:
    dense = timings.get("dense")
    base = dense.cycles if dense else None
    peak = cfg.tensor_core.macs_per_cycle
    it = w.trace.iterations[w.iteration]
    sm = step_macs(
        w.trace.graph, w.trace.batch, it.gates, w.trace.gate_layers, it.wgroups,
        w.trace.group_in, it.skip,
    )  # fmt: skip
    out: dict[str, Any] = {
        "units": {
            "cycles": "core clock cycles at `operating_point`",
            "energy_pj": "pJ per step",
            "dram_bytes_per_cycle": "bytes per core cycle",
            "dram_gb_per_s": "GB/s (1e9 bytes per second)",
        }
    }
    out["cycles"] = {m: t.cycles for m, t in timings.items()}
    out["speedup"] = {m: (base / t.cycles if base else None) for m, t in timings.items()}
    out["flops_reduction"] = sm.reduction
    any_t = next(iter(timings.values()))
    out["flops_reduction_executed"] = {
        m: t.dense_macs / t.useful_macs if t.useful_macs else None for m, t in timings.items()
    }
    en = {m: _energies(cfg, preps[m], t) for m, t in timings.items()}
    out["operating_point"] = cfg.operating_point().name
    out["dram"] = {
        "clock": cfg.dma.dram_clock,
        "bytes_per_cycle": cfg.dma.dram_bytes_per_cycle,
        "latency_cycles": cfg.dma.dram_latency_cycles,
        "gb_per_s": cfg.dram_gb_per_s(),
    }
    out["energy_pj"] = {m: e.total_pj for m, e in en.items()}
    out["energy_on_chip_pj"] = {m: e.on_chip_pj for m, e in en.items()}
    out["edp_pj_s"] = {m: e.total_pj * e.seconds for m, e in en.items()}
    out["utilization"] = {m: t.useful_macs / (t.cycles * peak) for m, t in timings.items()}
    out["energy_by_component_pj"] = {m: {**e.by_component, "leakage": e.leakage_pj}
                                     for m, e in en.items()}  # fmt: skip
    out["energy_by_phase_pj"] = {m: e.by_phase for m, e in en.items()}
    out["energy_by_layer_pj"] = {m: e.by_layer for m, e in en.items()}
    # Efficiency across operating points (mode `all`, or the last mode run), each with the
    # cycles simulated at that point (the DRAM channel's cycles depend on the clock).
    key = efficiency_mode(timings)
    if points is None:
        points = {
            p.name: PointRun(cfg, {key: preps[key]}, {key: timings[key]})
            for p in cfg.operating_points
        }
    rows = []
    for p in cfg.operating_points:
        pr = points[p.name]
        t = pr.timings[key]
        e = _energies(pr.cfg, pr.preps[key], t, p)
        d = pr.timings.get("dense")
        rows.append(
            {
                "name": p.name,
                "voltage_v": p.voltage_v,
                "frequency_mhz": p.frequency_mhz,
                "dram_bytes_per_cycle": pr.cfg.dma.dram_bytes_per_cycle,
                "cycles": t.cycles,
                "cycles_dense": d.cycles if d else None,
                "speedup": d.cycles / t.cycles if d else None,
                "seconds": e.seconds,
                "energy_on_chip_pj": e.on_chip_pj,
                "energy_pj": e.total_pj,
                "leakage_pj": e.leakage_pj,
                "tflops_per_w_dense_equivalent": tflops_per_w(t.dense_macs, e.on_chip_pj),
                "tflops_per_w_actual": tflops_per_w(t.useful_macs, e.on_chip_pj),
                "tflops_per_w_dense_equivalent_with_dram": tflops_per_w(t.dense_macs, e.total_pj),
            }
        )
    best = max(rows, key=lambda p: p["tflops_per_w_dense_equivalent"])
    out["operating_points"] = rows
    out["tflops_per_w"] = {
        "mode": key,
        "operating_point": best["name"],
        "dense_equivalent": best["tflops_per_w_dense_equivalent"],
        "actual": best["tflops_per_w_actual"],
        "dense_equivalent_with_dram": best["tflops_per_w_dense_equivalent_with_dram"],
        "speedup": best["speedup"],
        "definition": "2 FLOPs per MAC / on-chip energy (DRAM excluded unless named), at the "
        "efficiency-optimal operating point, with the step simulated at that point; "
        "dense_equivalent counts the dense step's MACs, actual the nonzero products executed; "
        "speedup: over dense at that point",
    }
    out["units_report"] = {
        m: {"busy": t.unit_busy, "stall": t.unit_stall, "idle": t.unit_idle}
        for m, t in timings.items()
    }
    out["layers"] = _layers(timings)
    out["densities"] = w.masks.densities()
    out["program"] = {k: prog_summary[k] for k in ("instructions", "executed_instructions")}
    out["timeline"] = {m: t.timeline for m, t in timings.items() if m in ("dense", key)}
    # the dense program uses no masks: its notes would only list them all as unused
    sparse_notes = [t.notes for m, t in timings.items() if m != "dense"] or [
        t.notes for t in timings.values()
    ]
    out["notes"] = sorted({n for notes in sparse_notes for n in notes})
    out["manifest"] = {
        "version": __version__,
        "config": cfg.name,
        "config_hash": config_hash(cfg),
        "trace": w.name,
        "trace_hash": w.masks.digest(),
        "trace_source": w.source,
        "trace_iteration": w.iteration,
        "seeds": {
            "trace": w.trace.meta.get("seed"),
            "sru": cfg.sru.seed,
        },
        "model": w.trace.graph.model_name,
        "batch": w.trace.batch,
        "dense_macs": any_t.dense_macs,
    }
    return out


def _layers(timings: dict[str, TimingResult]) -> list[dict]:
    rows: dict[tuple[str, str], dict] = {}
    for m, t in timings.items():
        for r in t.layer_phase:
            row = rows.setdefault(
                (r["layer"], r["phase"]),
                {
                    "layer": r["layer"],
                    "phase": r["phase"],
                    "dense_macs": r["dense_macs"],
                    "gate_density": r["gate_density"],
                    "weight_group_density": r["weight_group_density"],
                    "cycles": {},
                    "utilization": {},
                    "useful_macs": {},
                    "dram_bytes": {},
                },
            )
            row["cycles"][m] = r["cycles"]
            row["utilization"][m] = r["utilization"]
            row["useful_macs"][m] = r["useful_macs"]
            row["dram_bytes"][m] = r["dram_bytes"]
    return list(rows.values())


def headline_rows(summary: dict) -> list[dict]:
    """One row per mode: the headline table's figures."""
    rows = []
    for m, c in summary["cycles"].items():
        rows.append(
            {
                "mode": m,
                "cycles": c,
                "speedup": summary["speedup"][m],
                "energy_pj": summary["energy_pj"][m],
                "energy_on_chip_pj": summary["energy_on_chip_pj"][m],
                "edp_pj_s": summary["edp_pj_s"][m],
                "utilization": summary["utilization"][m],
            }
        )
    return rows


def as_float(x: Any) -> Any:
    """numpy scalars to plain Python for JSON."""
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x)}")
