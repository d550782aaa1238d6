"""Every RTL bench against simulator.numerics, under Icarus and Verilator.

Each test builds its bench in its own temporary directory (xdist runs two at once). Verilator
checks the default variant set on 100,000 random rows plus the edge rows; Icarus checks the
representative subset on fewer random rows plus the edge rows (rtl/checks/registry.py says
which). The opt-in long mode checks every variant on 10 million random rows.
"""

from __future__ import annotations

import pytest

from rtl.checks.bench import run_bench
from rtl.checks.registry import BENCHES, bench_for
from rtl.checks.run import default_vectors
from tests.rtl.conftest import require


@pytest.mark.parametrize("sim", ["icarus", "verilator"])
@pytest.mark.parametrize("name", list(BENCHES))
def test_bench_bit_exact(name: str, sim: str, tmp_path) -> None:
    require(sim)
    bench = bench_for(name, "icarus" if sim == "icarus" else "default")
    n = default_vectors(sim, name)
    results = run_bench(bench, sim, n, tmp_path, seed=11)
    assert len(results) == len(bench.variants) > 0
    for r in results:
        assert r.mismatches == 0, (r.params, r.examples)
        assert r.vectors >= n


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BENCHES))
def test_long_mode_verilator(name: str, tmp_path) -> None:
    """10 million random rows per bench, every variant (run with `pytest -m slow`)."""
    require("verilator")
    bench = bench_for(name, "full")
    n = 10_000_000 if not bench.sequential else 2_000_000
    results = run_bench(bench, "verilator", n, tmp_path, seed=12, depth=1 << 20, optimize=True)
    for r in results:
        assert r.mismatches == 0, (r.params, r.examples)


def test_a_wrong_reference_is_caught(tmp_path) -> None:
    """The comparison can fail: e5m2 hardware judged by the e4m3 reference must mismatch."""
    require("icarus")
    bench = bench_for("fp8_mul")
    right = {v.params["fmt"]: v for v in bench.variants}
    right["e5m2"].check = right["e4m3"].check
    bench.variants = [right["e5m2"]]
    (r,) = run_bench(bench, "icarus", 1000, tmp_path)
    assert r.mismatches > 1000


def test_prng_default_run_covers_a_full_period_up_to_16_bits() -> None:
    from rtl.checks.prng import FULL_PERIOD_ROWS

    widths = {v.params["width"] for v in bench_for("prng", "default").variants if v.block == "lfsr"}
    assert set(range(2, 17)) <= widths
    assert FULL_PERIOD_ROWS >= (1 << 16) - 1
