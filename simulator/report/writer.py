"""Write a report directory: report.md, report.html, PNG figures and the data of every table
and figure as CSV / JSON."""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path
from typing import Any

from simulator.config import provenance
from simulator.report import figures, tables

REPORT_FILES = ("report.md", "report.html", "summary.json")


class ReportError(ValueError):
    """The output directory cannot be written (exists without --force, or is a file)."""


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v == 0:
            return "0"
        return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.4g}"
    return str(v)


def _md_table(rows: list[dict]) -> str:
    if not rows:
        return "(none)\n"
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(out) + "\n"


def _html_table(rows: list[dict]) -> str:
    if not rows:
        return "<p>(none)</p>"
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        if not rows:
            return
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow(
                {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in r.items()}
            )


def prepare_dir(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ReportError(f"{out} exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not force:
        raise ReportError(f"{out} exists and is not empty; pass --force to overwrite")
    out.mkdir(parents=True, exist_ok=True)


def write_report(
    summary: dict, cfg, out: Path, force: bool = False, instructions: list[dict] | None = None
) -> Path:
    """Write the report for `summary` (from simulator.run) into directory `out`;
    `instructions` (RunResult.instructions) adds instructions.csv: cycles per instruction."""
    prepare_dir(out, force)
    if instructions:
        _csv(instructions, out / "instructions.csv")
    man = summary["manifest"]
    prov = (
        f"fp8sim {man['version']} | config {man['config']} {man['config_hash'][:12]} | "
        f"trace {man['trace']} {man['trace_hash'][:12]} | {man['model']} batch {man['batch']} | "
        "simulated"
    )
    head = tables.headline(summary)
    layer_rows = tables.per_layer(summary)
    phase_rows = tables.per_phase(summary)
    unit_rows = tables.units(summary, summary["tflops_per_w"]["mode"])
    points = [
        {k: p[k] for k in ("name", "voltage_v", "frequency_mhz", "dram_bytes_per_cycle",
                           "cycles_dense", "cycles", "speedup", "seconds",
                           "tflops_per_w_dense_equivalent", "tflops_per_w_actual",
                           "tflops_per_w_dense_equivalent_with_dram")}
        for p in summary["operating_points"]
    ]  # fmt: skip
    # every chip parameter with its unit and provenance, so the report says what it assumed
    params = [
        {"parameter": q.path, "value": q.value, "unit": q.unit, "provenance": q.provenance,
         "source": q.source or ""}
        for q in provenance(cfg)
    ]  # fmt: skip
    counts = {
        k: sum(q["provenance"] == k for q in params) for k in ("published", "hinted", "assumed")
    }
    data = {
        "headline": head,
        "per_layer": layer_rows,
        "per_phase": phase_rows,
        "units": unit_rows,
        "operating_points": points,
        "calibration_gap": tables.gap_analysis(summary),
        "config": params,
    }
    for name, rows in data.items():
        _csv(rows, out / f"{name}.csv")
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    for key in ("energy_by_component_pj", "energy_by_phase_pj", "timeline"):
        (out / f"{key}.json").write_text(json.dumps(summary[key], indent=1) + "\n")
    peak = 2 * cfg.tensor_core.macs_per_cycle
    figs = {
        "energy_by_component.png": figures.energy_bars(
            summary, "energy_by_component_pj", out / "energy_by_component.png", prov,
            f"Energy by unit at {summary['operating_point']} (data: energy_by_component_pj.json)",
        ),
        "energy_by_phase.png": figures.energy_bars(
            summary, "energy_by_phase_pj", out / "energy_by_phase.png", prov,
            f"Dynamic energy by phase at {summary['operating_point']}, leakage apart "
            "(data: energy_by_phase_pj.json)",
        ),
        "roofline.png": figures.roofline(
            summary, peak, cfg.dma.dram_bytes_per_cycle, out / "roofline.png", prov
        ),
        "timeline.png": figures.timeline(summary, out / "timeline.png", prov),
        "efficiency.png": figures.efficiency(summary, out / "efficiency.png", prov),
    }  # fmt: skip
    eff = summary["tflops_per_w"]
    intro = [
        f"Workload: {man['model']}, batch {man['batch']}, trace `{man['trace']}` "
        f"(hash {man['trace_hash'][:16]}), config `{man['config']}` "
        f"(hash {man['config_hash'][:16]}), fp8sim {man['version']}.",
        f"Masks: gate density {summary['densities']['gate']:.3f}, weight-group density "
        f"{summary['densities']['weight_group']:.3f}, gradient-skip fraction "
        f"{summary['densities']['grad_skip']:.3f}; the trace's FLOPs reduction "
        f"{summary['flops_reduction']:.2f}x.",
        f"Speedup of `all` over `dense` at {summary['operating_point']}: "
        f"{summary['speedup'].get('all') or 0:.2f}x. "
        f"Efficiency ({eff['mode']}, best point {eff['operating_point']}, simulated there): "
        f"{eff['dense_equivalent']:.2f} TFLOPS/W dense-equivalent, {eff['actual']:.2f} TFLOPS/W "
        f"actual work (on chip); {eff['dense_equivalent_with_dram']:.3f} TFLOPS/W "
        "dense-equivalent with DRAM"
        + (f"; speedup there {eff['speedup']:.2f}x." if eff.get("speedup") else "."),
        f"DRAM channel at {summary['operating_point']}: {summary['dram']['bytes_per_cycle']} "
        f"bytes per cycle ({summary['dram']['gb_per_s']:.1f} GB/s), latency "
        f"{summary['dram']['latency_cycles']} cycles; clock `{summary['dram']['clock']}` "
        "(`memory`: fixed GB/s and ns, so slower operating points see more bytes per cycle; "
        "the operating-points table gives each point's own simulated cycles).",
        "All figures are simulated cycles (chip clock) and pJ/uJ per training step "
        f"at {summary['operating_point']} unless stated; data files beside each figure.",
        f"Chip parameters: {len(params)}, of which {counts['published']} published, "
        f"{counts['hinted']} hinted (the group's public code) and {counts['assumed']} assumed "
        "(section 'Chip parameters', config.csv).",
    ]
    sections = [
        ("Headline (per mode; data: headline.csv)", head),
        ("Units in the efficiency mode: cycles busy / stalled / idle (units.csv)", unit_rows),
        ("Per phase: cycles per mode, all layers incl. non-GEMM work (per_phase.csv)", phase_rows),
        ("Per MAC layer, FP+BP+WU (per_layer.csv)", layer_rows),
        ("Operating points (operating_points.csv)", points),
        (
            "Calibration against the chip: where the FLOPs reduction goes "
            "(calibration_gap.csv; docs/simulator.md explains each line)",
            data["calibration_gap"],
        ),
        (
            "Chip parameters: value, unit and provenance (config.csv; published, hinted from "
            "the group's public code, or assumed, with the source of each choice)",
            params,
        ),
    ]
    md = ["# fp8sim speedup and energy report", ""] + [f"- {s}" for s in intro] + [""]
    for title, rows in sections:
        md += [f"## {title}", "", _md_table(rows)]
    md += ["## Figures", ""] + [f"![{n}]({n})" for n in figs] + [""]
    if summary["notes"]:
        md += ["## Notes", ""] + [f"- {n}" for n in summary["notes"]] + [""]
    md += ["## Manifest", "", "```json", json.dumps(man, indent=1, default=str), "```", ""]
    (out / "report.md").write_text("\n".join(md))
    body = ["<h1>fp8sim speedup and energy report</h1><ul>"]
    body += [f"<li>{html.escape(s)}</li>" for s in intro] + ["</ul>"]
    for title, rows in sections:
        body += [f"<h2>{html.escape(title)}</h2>", _html_table(rows)]
    body += ["<h2>Figures</h2>"] + [f'<p><img src="{n}" alt="{n}"></p>' for n in figs]
    if summary["notes"]:
        body += ["<h2>Notes</h2><ul>"]
        body += [f"<li>{html.escape(n)}</li>" for n in summary["notes"]] + ["</ul>"]
    body += [
        "<h2>Manifest</h2><pre>",
        html.escape(json.dumps(man, indent=1, default=str)),
        "</pre>",
    ]
    style = (
        "body{font-family:sans-serif;max-width:1100px}table{border-collapse:collapse;"
        "font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}"
    )
    (out / "report.html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>fp8sim report</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )
    return out / "report.md"
