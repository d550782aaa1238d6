"""RTL cross-check throughput: vectors checked per second under each HDL simulator.

Called by `python -m benchmarks` (make bench). Uses the multiplier and SRU benches at their
default levels, a persistent build directory (build/rtl/bench), and prints one line per
simulator: vectors, mismatches, seconds of simulation + comparison, vectors/s. Build time is
reported apart: it is paid once per design.
"""

from __future__ import annotations

import shutil

from rtl.checks.bench import run_bench
from rtl.checks.registry import bench_for
from rtl.checks.run import default_build_root

BENCHES = ("fp8_mul", "sru")
VECTORS = {"icarus": 20_000, "verilator": 200_000}


def run() -> None:
    print("RTL cross-check throughput (vectors per second; one vector = one row x one variant)")
    for sim, tool in (("icarus", "iverilog"), ("verilator", "verilator")):
        if shutil.which(tool) is None:
            print(f"  {sim}: skipped, {tool} not on PATH")
            continue
        level = "icarus" if sim == "icarus" else "default"
        for name in BENCHES:
            bench = bench_for(name, level)
            res = run_bench(bench, sim, VECTORS[sim], default_build_root() / "bench" / sim / name)
            vectors = sum(r.vectors for r in res)
            bad = sum(r.mismatches for r in res)
            secs = res[0].seconds  # one simulation serves every variant of the bench
            print(
                f"  {sim:9s} {name:11s} variants={len(res):3d} vectors={vectors:10d} "
                f"mismatches={bad} run={secs:7.1f}s build={res[0].build_seconds:6.1f}s "
                f"rate={vectors / secs:12,.0f} vectors/s"
            )


if __name__ == "__main__":
    run()
