"""Run the cross-check benches under one simulator (what `fp8sim rtl check` and the tests call)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from rtl.checks.bench import VariantResult, run_bench
from rtl.checks.registry import BENCHES, bench_for

#: random rows per bench in a default run, per simulator (edge rows come on top).
DEFAULT_VECTORS = {"icarus": 10_000, "verilator": 100_000}
#: a sequential bench runs as one chunk held in memory: its cycles are capped at this.
SEQUENTIAL_MAX = 2_000_000
#: Icarus benches whose rows are costly get fewer random rows by default.
ICARUS_VECTORS = {"dot_product": 3_000, "sparsity": 3_000, "prng": 5_000}


def default_vectors(sim: str, bench: str) -> int:
    if sim == "icarus":
        return ICARUS_VECTORS.get(bench, DEFAULT_VECTORS[sim])
    return DEFAULT_VECTORS[sim]


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
    """Check every bench (or the named ones) at the simulator's default level, or every
    variant with `full`."""
    if vectors is not None and vectors < 0:
        raise ValueError("vectors must be >= 0")
    level = "full" if full else ("icarus" if sim == "icarus" else "default")
    root = build_root or default_build_root()
    results: list[VariantResult] = []
    for name in benches or BENCHES:
        n = default_vectors(sim, name) if vectors is None else vectors
        bench = bench_for(name, level)
        if bench.sequential:
            n = min(n, SEQUENTIAL_MAX)
        depth = 1 << 17 if n <= (1 << 17) else 1 << 20
        if on_bench is not None:
            on_bench(name)
        results += run_bench(
            bench, sim, n, root / sim / name, seed=seed, depth=depth, optimize=n > (1 << 20)
        )
    return results
