"""The benches `fp8sim rtl check` and the tests run, and the variant subsets per simulator.

Icarus interprets the design (tens of microseconds per instance and row on this machine), so
it runs a representative subset of each bench's variants on fewer random rows; Verilator runs
every variant on the full count. Together they give every parameter set its >= 100,000 random
vectors per default run, and every block is exercised under both simulators.
"""

from __future__ import annotations

from collections.abc import Callable

from rtl.checks.arith import dot_product_bench, multiplier_bench, sru_bench
from rtl.checks.bench import Bench
from rtl.checks.prng import prng_bench
from rtl.checks.sparsity import sparsity_bench

BENCHES: dict[str, Callable[[], Bench]] = {
    "fp8_mul": multiplier_bench,
    "sru": sru_bench,
    "dot_product": dot_product_bench,
    "prng": prng_bench,
    "sparsity": sparsity_bench,
}

# The Icarus subset: a predicate on a variant's parameters.
_ICARUS_KEEP: dict[str, Callable[[dict[str, object]], bool]] = {
    "sru": lambda p: p["rounding"] == "rne" or p.get("r") == {"sr": 8, "sr_half": 3}.get(
        str(p["rounding"]), 13
    ),
    "dot_product": lambda p: p["rounding"] in ("rne", "sr"),
    "sparsity": lambda p: p.get("group") in (8, 16),
    "prng": lambda p: "width" not in p or p["width"] in (2, 3, 4, 5, 8, 13, 16, 24),
}


def bench_for(name: str, subset: bool = False) -> Bench:
    """A bench by name; with `subset`, only its representative variants (see module doc)."""
    if name not in BENCHES:
        raise KeyError(f"unknown bench {name!r}; benches are: {', '.join(BENCHES)}")
    bench = BENCHES[name]()
    keep = _ICARUS_KEEP.get(name)
    if subset and keep is not None:
        bench.variants = [v for v in bench.variants if keep(v.params)]
    return bench
