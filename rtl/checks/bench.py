"""A bench: several RTL variants fed from shared input fields, one simulator build for all.

Building costs far more than simulating (a Verilator build takes tens of seconds), so every
parameter set of a block sits side by side in one design (`BenchTop`), each variant reading the
bench's fields it needs (a narrower port takes the field's low bits) and checked on its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from amaranth.hdl import Cat, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl.sim.harness import Harness

Vectors = dict[str, np.ndarray]


@dataclass
class Variant:
    """One block with one parameter set.

    `check(inputs, outputs)` returns a boolean array: True where the RTL's outputs (a dict
    port -> uint64 array) disagree with the reference for that row. `valid(inputs)` (optional)
    masks rows the reference does not define; they are not counted.
    """

    block: str
    params: dict[str, object]
    component: Callable[[], wiring.Component]
    check: Callable[[Vectors, Vectors], np.ndarray]
    port_map: dict[str, str | list[str]] = field(default_factory=dict)
    valid: Callable[[Vectors], np.ndarray] | None = None


@dataclass
class Bench:
    name: str
    fields: list[tuple[str, int]]
    variants: list[Variant]
    generate: Callable[[int, np.random.Generator], Vectors]  # edge rows first, then random
    sequential: bool = False  # a sequential bench is checked in one chunk (state carries)


@dataclass
class VariantResult:
    block: str
    params: dict[str, object]
    sim: str
    vectors: int
    mismatches: int
    seconds: float
    build_seconds: float
    examples: list[dict[str, int]] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {
            "block": self.block,
            "params": self.params,
            "vectors": self.vectors,
            "mismatches": self.mismatches,
            "seconds": round(self.seconds, 3),
        }


class BenchTop(wiring.Component):
    """The variants of a bench side by side: shared inputs, outputs named v<i>_<port>."""

    def __init__(self, bench: Bench) -> None:
        self._bench = bench
        self._duts = [v.component() for v in bench.variants]
        sig: dict[str, object] = {name: In(w) for name, w in bench.fields}
        for i, d in enumerate(self._duts):
            for pname, member in d.signature.members.items():
                if member.flow == wiring.Out:
                    sig[f"v{i}_{pname}"] = Out(member.shape)
        super().__init__(sig)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        for i, (v, d) in enumerate(zip(self._bench.variants, self._duts, strict=True)):
            m.submodules[f"v{i}"] = d
            for pname, member in d.signature.members.items():
                port = getattr(d, pname)
                if member.flow == wiring.In:
                    src = v.port_map.get(pname, pname)
                    names = [src] if isinstance(src, str) else src  # a list: low field first
                    value = Cat(*(getattr(self, f) for f in names))
                    m.d.comb += port.eq(value[: len(port)])
                else:
                    m.d.comb += getattr(self, f"v{i}_{pname}").eq(port)
        return m


def run_bench(
    bench: Bench,
    sim: str,
    n_random: int,
    build_dir: Path,
    seed: int = 1,
    depth: int = 1 << 17,
    optimize: bool = False,
) -> list[VariantResult]:
    """Build the bench once, apply its edge rows plus n_random random rows, check each variant.

    Rows go through the simulator in chunks of at most `depth` random rows (the first chunk
    also carries the edge rows); each chunk is checked as it comes back, so memory stays bounded
    however long the run. A sequential bench runs as one chunk (its state carries).
    """
    rng = np.random.default_rng(seed)
    n_edges = len(next(iter(bench.generate(0, np.random.default_rng(0)).values())))
    chunk = max(n_random, 1) if bench.sequential else max(1, min(depth, n_random))
    harness = Harness(
        BenchTop(bench), sim, build_dir, depth=chunk + n_edges + (1 << 16), optimize=optimize
    )
    k = len(bench.variants)
    vectors, mismatches, seconds = [0] * k, [0] * k, [0.0] * k
    examples: list[list[dict[str, int]]] = [[] for _ in range(k)]
    done, first, offset = 0, True, 0
    while first or done < n_random:
        take = min(chunk, n_random - done)
        data = bench.generate(take, rng)
        if not first:  # edge rows only once
            data = {name: a[n_edges:] for name, a in data.items()}
        n = len(next(iter(data.values())))
        res = harness.run(data, n)
        for i, v in enumerate(bench.variants):
            prefix = f"v{i}_"
            outs = {f[len(prefix) :]: a for f, a in res.outputs.items() if f.startswith(prefix)}
            t0 = time.perf_counter()
            ok_rows = np.ones(n, dtype=bool) if v.valid is None else np.asarray(v.valid(data))
            bad = (np.asarray(v.check(data, outs), dtype=bool) | res.unknown) & ok_rows
            seconds[i] += res.run_seconds + time.perf_counter() - t0
            vectors[i] += int(ok_rows.sum())
            mismatches[i] += int(bad.sum())
            for j in np.flatnonzero(bad)[: 5 - len(examples[i])]:
                row = {"row": offset + int(j), **{f: int(a[j]) for f, a in data.items()}}
                examples[i].append(row | {f: int(a[j]) for f, a in outs.items()})
        done += take
        offset += n
        first = False
    return [
        VariantResult(
            v.block,
            v.params,
            sim,
            vectors[i],
            mismatches[i],
            seconds[i],
            harness.build_seconds,
            examples[i],
        )
        for i, v in enumerate(bench.variants)
    ]


def to_signed(values: np.ndarray, width: int) -> np.ndarray:
    """Two's complement reinterpretation of `width`-bit unsigned values."""
    v = values.astype(np.int64)
    return np.where(v >> (width - 1) & 1, v - (1 << width), v)
