"""The benches `fp8sim rtl check` and the tests run, and which variants each run level keeps.

Levels: "full" keeps every variant of a bench (the long mode, `--full`); "default" is the
Verilator default run, and "icarus" a smaller representative subset: Icarus interprets the
design at tens of microseconds per instance and row on this machine, and a Verilator build of
a bench takes a minute or more, so the default test run cannot afford every parameter set in
both simulators within its budget. Every block is exercised under both simulators.
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
LEVELS = ("icarus", "default", "full")

Keep = Callable[[dict[str, object]], bool]

# One r per stochastic mode for every format pair, plus the r sweep ends on one pair.
_SRU_R = {"sr": 8, "sr_half": 3, "sr_corrected": 13}


def _sru_default(p: dict[str, object]) -> bool:
    if p["rounding"] == "rne" or p.get("r") == _SRU_R.get(str(p["rounding"])):
        return True
    return (p["in_fmt"], p["out_fmt"], p["rounding"]) == ("fp32", "e5m2", "sr") and p["r"] in (
        1,
        24,
    )


_KEEP: dict[str, dict[str, Keep]] = {
    "default": {
        "sru": _sru_default,
        "prng": lambda p: p.get("width", 0) <= 16 or "combine" not in p or p["r"] != p["width"],
    },
    "icarus": {
        "sru": lambda p: p["rounding"] in ("rne", "sr") and p.get("r", 8) == 8,
        "dot_product": lambda p: p["rounding"] in ("rne", "sr"),
        "prng": lambda p: p.get("width", 3) in (2, 3, 16) or "low_bit" in p,
        "sparsity": lambda p: p.get("group") in (8, 16),
    },
}


def bench_for(name: str, level: str = "full") -> Bench:
    """A bench by name with the variants its run level keeps (see module doc)."""
    if name not in BENCHES:
        raise KeyError(f"unknown bench {name!r}; benches are: {', '.join(BENCHES)}")
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, not {level!r}")
    bench = BENCHES[name]()
    keep = _KEEP.get(level, {}).get(name)
    if keep is not None:
        bench.variants = [v for v in bench.variants if keep(v.params)]
    return bench
