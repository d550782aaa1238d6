"""Run every benchmark module (`python -m benchmarks [NAME ...]`); each prints its own figures."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import benchmarks


def main(argv: list[str]) -> int:
    names = sorted(
        m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_")
    )
    chosen = [n for n in names if not argv or n.removeprefix("bench_") in argv or n in argv]
    if argv and not chosen:
        print(f"no benchmark named {' '.join(argv)}; have: {', '.join(names)}", file=sys.stderr)
        return 2
    for name in chosen:
        print(f"== {name} ==", flush=True)
        start = time.perf_counter()
        importlib.import_module(f"benchmarks.{name}").run()
        print(f"   ({time.perf_counter() - start:.1f} s)\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
