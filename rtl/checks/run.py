"""Run the cross-check benches under one simulator (what `fp8sim rtl check` and the tests call)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from rtl.checks.bench import VariantResult, run_bench
from rtl.checks.registry import BENCHES, bench_for

#: random rows per bench in a default run, per simulator (edge rows come on top).
DEFAULT_VECTORS = {"icarus": 20_000, "verilator": 100_000}
REPO_ROOT = Path(__file__).resolve().parents[2]


def default_build_root() -> Path:
    return REPO_ROOT / "build" / "rtl"


def run_checks(
    sim: str,
    vectors: int | None = None,
    benches: Iterable[str] | None = None,
    build_root: Path | None = None,
    seed: int = 1,
    full: bool | None = None,
    on_bench: Callable[[str], None] | None = None,
) -> list[VariantResult]:
    """Check every bench (or the named ones); `full` forces all variants under Icarus too."""
    n = DEFAULT_VECTORS[sim] if vectors is None else vectors
    if n < 0:
        raise ValueError("vectors must be >= 0")
    subset = (sim == "icarus") if full is None else not full
    root = build_root or default_build_root()
    depth = 1 << 17 if n <= (1 << 17) else 1 << 20
    results: list[VariantResult] = []
    for name in benches or BENCHES:
        if on_bench is not None:
            on_bench(name)
        bench = bench_for(name, subset=subset)
        results += run_bench(bench, sim, n, root / sim / name, seed=seed, depth=depth)
    return results
