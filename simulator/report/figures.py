"""The report's PNG figures (matplotlib, Agg). Every figure names its unit and its inputs."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from simulator.report.tables import per_layer


def _finish(fig, path: Path, provenance: str) -> Path:
    fig.text(0.01, 0.005, provenance, fontsize=6, color="0.35")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def energy_bars(summary: dict, key: str, path: Path, provenance: str, title: str) -> Path:
    """Stacked bars per mode of summary[key][mode][part] (pJ), shown in uJ."""
    data = summary[key]
    modes = list(data)
    parts = sorted({p for m in modes for p in data[m]})
    fig, ax = plt.subplots(figsize=(8, 4.2))
    bottom = [0.0] * len(modes)
    cmap = plt.get_cmap("tab20")
    for i, p in enumerate(parts):
        vals = [data[m].get(p, 0.0) / 1e6 for m in modes]
        ax.bar(modes, vals, bottom=bottom, label=p, color=cmap(i % 20))
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_ylabel("energy per training step (uJ)")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    return _finish(fig, path, provenance)


def roofline(summary: dict, peak_flops_per_cycle: float, bw: float, path: Path, prov: str) -> Path:
    """Per layer (mode all): achieved FLOP/cycle vs operational intensity (FLOP/DRAM byte)."""
    rows = [r for r in per_layer(summary) if r["dram_bytes_all"] and r["cycles_all"]]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [2 * r["useful_macs_all"] / r["dram_bytes_all"] for r in rows]
    ys = [2 * r["useful_macs_all"] / r["cycles_all"] for r in rows]
    lo, hi = min([*xs, 0.1]) / 2, max([*xs, 10 * peak_flops_per_cycle / bw]) * 2

    x = np.logspace(np.log10(lo), np.log10(hi), 100)
    ax.loglog(x, np.minimum(peak_flops_per_cycle, bw * x), "k-", lw=1, label="roof (dense peak)")
    ax.scatter(xs, ys, s=14, c="tab:red", label="layers, mode all (FP+BP+WU)")
    for r, xi, yi in zip(rows, xs, ys, strict=True):
        ax.annotate(r["layer"], (xi, yi), fontsize=5)
    ax.set_xlabel("operational intensity (useful FLOP per DRAM byte)")
    ax.set_ylabel("achieved useful FLOP per cycle")
    ax.set_title(f"Per-layer roofline (peak {peak_flops_per_cycle:.0f} FLOP/cycle, {bw:g} B/cycle)")
    ax.legend(fontsize=7)
    return _finish(fig, path, prov)


def timeline(summary: dict, path: Path, prov: str) -> Path:
    """Busy fraction of the tensor cores, DMA and SFU over the step, per simulated mode."""
    tl = summary["timeline"]
    fig, axes = plt.subplots(len(tl), 1, figsize=(9, 2.4 * len(tl)), squeeze=False)
    for ax, (mode, d) in zip(axes[:, 0], tl.items(), strict=True):
        t = [c / 1e6 for c in d["time_cycles"]]
        for u in ("tc", "ld", "st", "sfu"):
            ax.plot(t, d[u], lw=0.8, label=u)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("busy fraction")
        ax.set_title(f"mode {mode}", fontsize=9)
        ax.legend(fontsize=7, ncol=4, loc="upper right")
    axes[-1, 0].set_xlabel("time (million cycles)")
    return _finish(fig, path, prov)


def efficiency(summary: dict, path: Path, prov: str) -> Path:
    pts = summary["operating_points"]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    names = [p["name"] for p in pts]
    ax.plot(
        names, [p["tflops_per_w_dense_equivalent"] for p in pts], "o-", label="dense-equivalent"
    )
    ax.plot(names, [p["tflops_per_w_actual"] for p in pts], "s-", label="actual work")
    ax.set_ylabel("TFLOPS/W (on chip, DRAM excluded)")
    ax.set_title(f"Efficiency across operating points (mode {summary['tflops_per_w']['mode']})")
    handles, labels = ax.get_legend_handles_labels()
    if all(p.get("speedup") for p in pts):  # each point simulated at its own DRAM cycles
        ax2 = ax.twinx()
        (h,) = ax2.plot(names, [p["speedup"] for p in pts], "^--", color="grey")
        ax2.set_ylabel("speedup over dense (x)")
        ax2.set_ylim(bottom=0)
        handles, labels = [*handles, h], [*labels, "speedup (right axis)"]
    ax.legend(handles, labels, fontsize=7)
    ax.tick_params(axis="x", labelsize=7)
    return _finish(fig, path, prov)
