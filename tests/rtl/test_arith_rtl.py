"""Multiplier, SRU and dot-product RTL against simulator.numerics, under Icarus and Verilator.

Each test builds its bench in its own temporary directory (xdist runs two at once). Verilator
checks every parameter set on 100,000 random rows plus the edge rows; Icarus checks the
representative subset (rtl/checks/registry.py) on 20,000 random rows plus the edge rows.
"""

from __future__ import annotations

import pytest

from rtl.checks.bench import run_bench
from rtl.checks.registry import bench_for
from rtl.checks.run import DEFAULT_VECTORS
from tests.rtl.conftest import require


@pytest.mark.parametrize("sim", ["icarus", "verilator"])
@pytest.mark.parametrize("name", ["fp8_mul", "sru", "dot_product", "prng"])
def test_bench_bit_exact(name: str, sim: str, tmp_path) -> None:
    require(sim)
    bench = bench_for(name, subset=sim == "icarus")
    results = run_bench(bench, sim, DEFAULT_VECTORS[sim], tmp_path, seed=11)
    assert len(results) == len(bench.variants) > 0
    for r in results:
        assert r.mismatches == 0, (r.params, r.examples)
        assert r.vectors >= DEFAULT_VECTORS[sim]


def test_a_wrong_reference_is_caught(tmp_path) -> None:
    """The comparison can fail: e5m2 hardware judged by the e4m3 reference must mismatch."""
    require("icarus")
    bench = bench_for("fp8_mul")
    right = {v.params["fmt"]: v for v in bench.variants}
    right["e5m2"].check = right["e4m3"].check
    bench.variants = [right["e5m2"]]
    (r,) = run_bench(bench, "icarus", 1000, tmp_path)
    assert r.mismatches > 1000
