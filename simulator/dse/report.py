"""Tables, plots and the Markdown summary of a finished (or partly finished) sweep."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from simulator.dse.config import SweepConfig


def flatten(row: dict[str, Any]) -> dict[str, Any]:
    """One CSV row: the point's identity, then every figure with its section as prefix."""
    point = row["point"]
    src = point.get("source") or {}
    flat: dict[str, Any] = {
        "key": row["key"],
        "label": row["label"],
        "format": point["format"],
        "rounding": point["rounding"],
        "r": point["r"],
        "source": _source_label(src),
        "apply_to": "+".join(point["apply_to"]),
    }
    for section in ("numeric", "training", "hardware"):
        for name, value in (row.get(section) or {}).items():
            if not isinstance(value, (list, dict)):
                flat[f"{section}.{name}"] = value
    flat["seconds"] = row.get("seconds")
    return flat


def _source_label(src: dict[str, Any]) -> str:
    if not src:
        return "none"
    if src["kind"] == "lfsr":
        extra = "" if src.get("combine", "none") == "none" else f"-{src['combine']}"
        shared = "" if src.get("sharing", "per_lane") == "per_lane" else f"-shared{src['lanes']}"
        return f"lfsr{src['width']}{'g' if src.get('form') == 'galois' else ''}{extra}{shared}"
    if src["kind"] == "network":
        return f"net-{src['tensor']}"
    return str(src["kind"])


def pareto_front(rows: Sequence[dict[str, Any]], cost: str, benefit: str) -> list[dict[str, Any]]:
    """Rows not dominated on (lower cost, higher benefit); rows missing either are ignored."""
    usable = [r for r in rows if _num(r.get(cost)) is not None and _num(r.get(benefit)) is not None]
    front = []
    for r in usable:
        dominated = any(
            o[cost] <= r[cost]
            and o[benefit] >= r[benefit]
            and (o[cost] < r[cost] or o[benefit] > r[benefit])
            for o in usable
        )
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: r[cost])


def _num(v: Any) -> float | None:
    return (
        float(v)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        else None
    )


def write_tables(rows: list[dict[str, Any]], out_dir: Path) -> list[dict[str, Any]]:
    flat = [flatten(r) for r in rows]
    columns: list[str] = []
    for f in flat:
        columns += [c for c in f if c not in columns]
    with (out_dir / "results.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(flat)
    (out_dir / "results.json").write_text(json.dumps(rows, indent=1, sort_keys=True))
    return flat


def plot_bias_vs_r(flat: list[dict[str, Any]], out_dir: Path) -> Path | None:
    """Measured bias (markers) and its analytic value (lines) against r, per variant/source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, dict[str, list[tuple[int, float, float, float]]]] = defaultdict(dict)
    for f in flat:
        if f["r"] is None or _num(f.get("numeric.bias_ulp")) is None:
            continue
        key = f"{f['source']} -> {f['format']}"
        sem = math.sqrt(f["numeric.variance_ulp2"] / max(f["numeric.samples"], 1))
        series[f["rounding"]].setdefault(key, []).append(
            (f["r"], f["numeric.bias_ulp"], f["numeric.bias_expected_ulp"], 2 * sem)
        )
    if not series:
        return None
    fig, axes = plt.subplots(1, len(series), figsize=(5.5 * len(series), 4.2), squeeze=False)
    for ax, (rounding, lines) in zip(axes[0], sorted(series.items()), strict=True):
        for label, pts in sorted(lines.items()):
            pts.sort()
            rs = [p[0] for p in pts]
            bars = ax.errorbar(
                rs,
                [p[1] for p in pts],
                yerr=[p[3] for p in pts],
                fmt="o",
                ms=4,
                capsize=2,
                label=f"{label} (measured, +-2 s.e.)",
            )
            color = bars.lines[0].get_color()
            ax.plot(rs, [p[2] for p in pts], "-", lw=1, color=color, alpha=0.6)
        ax.set_yscale("symlog", linthresh=1e-4)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xlabel("random bits r")
        ax.set_ylabel("mean rounding error (target ULP)")
        ax.set_title(f"{rounding}: bias vs r (lines: analytic)")
        ax.legend(fontsize=6)
    fig.tight_layout()
    path = out_dir / "bias_vs_r.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_pareto(
    flat: list[dict[str, Any]],
    out_dir: Path,
    cost: str,
    benefit: str,
    cost_label: str,
    benefit_label: str,
) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    usable = [f for f in flat if _num(f.get(cost)) is not None and _num(f.get(benefit)) is not None]
    if not usable:
        return None
    front = pareto_front(usable, cost, benefit)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    spread = benefit.replace("_mean", "_std")
    yerr = [_num(f.get(spread)) or 0.0 for f in usable] if spread != benefit else None
    ax.errorbar(
        [f[cost] for f in usable],
        [f[benefit] for f in usable],
        yerr=yerr,
        fmt="o",
        ms=4,
        alpha=0.6,
        capsize=2,
        label="designs" + (" (+-1 std over seeds)" if yerr else ""),
    )
    ax.plot(
        [f[cost] for f in front], [f[benefit] for f in front], "r-o", ms=4, label="Pareto front"
    )
    # Front points crowd where accuracy saturates: their labels go in a column, with leaders.
    for i, f in enumerate(sorted(front, key=lambda f: f[cost])):
        ax.annotate(
            f["label"],
            (f[cost], f[benefit]),
            fontsize=6,
            xytext=(0.42, 0.62 - 0.055 * i),
            textcoords="axes fraction",
            arrowprops={"arrowstyle": "-", "lw": 0.4, "alpha": 0.5},
        )
    ax.set_xscale("log")
    ax.set_xlabel(cost_label)
    ax.set_ylabel(benefit_label)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / "pareto.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(
    cfg: SweepConfig, rows: list[dict[str, Any]], failures: list[dict[str, Any]], out_dir: Path
) -> Path:
    """Write results.csv/json, the plots and summary.md; returns the summary's path."""
    out_dir = Path(out_dir)
    flat = write_tables(rows, out_dir)
    for f in flat:  # |bias| as a "benefit" needs a sign flip: less bias is better
        b = _num(f.get("numeric.bias_ulp"))
        f["numeric.neg_abs_bias_ulp"] = -abs(b) if b is not None else None
    plots = [p for p in (plot_bias_vs_r(flat, out_dir),) if p]
    have_accuracy = any(_num(f.get("training.accuracy_mean")) is not None for f in flat)
    have_cost = any(_num(f.get("hardware.gate_equivalents")) is not None for f in flat)
    if have_accuracy and have_cost:
        benefit, benefit_label = "training.accuracy_mean", "final accuracy (mean over seeds)"
    else:
        benefit, benefit_label = "numeric.neg_abs_bias_ulp", "minus abs(bias) (target ULP)"
    pareto_path = None
    if have_cost:
        pareto_path = plot_pareto(
            flat,
            out_dir,
            "hardware.gate_equivalents",
            benefit,
            "gate equivalents (SRU + PRNG, from Yosys)",
            benefit_label,
        )
        if pareto_path:
            plots.append(pareto_path)

    moved = any(block.apply_to for block in cfg.grid)
    lines = [f"# SRU sweep `{cfg.name}`", ""]
    lines.append(
        f"{len(rows)} point(s) finished, {len(failures)} failed. Stochastic rounding "
        f"applied to: {', '.join(cfg.apply_to)}"
        f"{' (labels ending in on ... name other placements)' if moved else ''}. "
        "Numerical figures from "
        f"{cfg.numeric_samples:,} float32 values uniform on [1, 2); errors in target "
        "ULPs."
    )
    lines.append("")
    checked = [f for f in flat if f.get("numeric.bias_matches_analytic") is not None]
    mism = [f for f in checked if not f["numeric.bias_matches_analytic"]]
    lines.append(
        f"Bias vs analytic value (exact word distribution known): {len(checked)} "
        f"point(s) checked, {len(mism)} outside 5 standard errors"
        + (": " + ", ".join(f["label"] for f in mism) if mism else "")
        + "."
    )
    lines.append("")
    if have_cost:
        front = pareto_front(flat, "hardware.gate_equivalents", benefit)
        lines.append(f"## Pareto-optimal designs ({benefit_label} vs gate equivalents)")
        lines.append("")
        lines.append("| design | gate equivalents | " + benefit_label + " |")
        lines.append("|---|---|---|")
        for f in front:
            lines.append(
                f"| {f['label']} | {f['hardware.gate_equivalents']:.0f} | {f[benefit]:.4g} |"
            )
        lines.append("")
    else:
        lines.append("No hardware cost in these results, so no Pareto front was computed.")
        lines.append("")
    lines.append("## All points")
    lines.append("")
    cols = [
        c
        for c in (
            "label",
            "numeric.bias_ulp",
            "numeric.bias_expected_ulp",
            "numeric.variance_ulp2",
            "numeric.autocorr_lag1",
            "numeric.nist_passed",
            "training.accuracy_mean",
            "training.accuracy_std",
            "hardware.gate_equivalents",
        )
        if any(c in f for f in flat)
    ]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for f in flat:
        lines.append("| " + " | ".join(_fmt(f.get(c)) for c in cols) + " |")
    if failures:
        lines += ["", "## Failed points", ""]
        lines += [f"- {x['label']}: {x['error']}" for x in failures]
    lines += ["", "Files: results.csv, results.json, " + ", ".join(p.name for p in plots)]
    path = out_dir / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
