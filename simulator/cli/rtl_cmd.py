"""`fp8sim rtl ...`: cross-check the RTL against the numerics, write Verilog, count cells."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import click
from rich.table import Table

from simulator.cli.errors import console

SIMS = ("icarus", "verilator")


def _fmt_params(params: dict[str, object]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items())


@click.group()
def rtl() -> None:
    """Amaranth RTL of the arithmetic blocks, checked bit for bit (docs/rtl.md)."""


@rtl.command()
@click.option("--sim", type=click.Choice(SIMS), required=True, help="HDL simulator.")
@click.option(
    "--vectors",
    type=click.IntRange(min=1),
    default=None,
    help="Random vectors per bench (default: 100000 Verilator, fewer for Icarus; edge "
    "vectors come on top).",
)
@click.option(
    "--bench",
    "benches",
    multiple=True,
    help="Only these benches (fp8_mul, sru, dot_product, prng, sparsity); repeatable.",
)
@click.option("--full", is_flag=True, help="All variants under Icarus too (slow).")
@click.option("--seed", type=int, default=1, show_default=True, help="Vector seed.")
@click.option(
    "--build-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Build directory root (default build/rtl).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def check(
    sim: str,
    vectors: int | None,
    benches: tuple[str, ...],
    full: bool,
    seed: int,
    build_dir: Path | None,
    as_json: bool,
) -> None:
    """Simulate every block on edge and random vectors and compare with simulator.numerics.

    Exits with status 1 when any vector mismatches.
    """
    from rtl.checks.registry import BENCHES
    from rtl.checks.run import run_checks

    unknown = [b for b in benches if b not in BENCHES]
    if unknown:
        raise click.BadParameter(
            f"unknown bench {unknown[0]!r}; benches are: {', '.join(BENCHES)}", param_hint="--bench"
        )
    tool = "iverilog" if sim == "icarus" else "verilator"
    if shutil.which(tool) is None:
        raise click.ClickException(f"{tool} is not on PATH (run `make setup`)")

    def note(name: str) -> None:
        click.echo(f"[{sim}] building and running bench {name} ...", err=True)

    try:
        results = run_checks(
            sim,
            vectors=vectors,
            benches=list(benches) or None,
            build_root=build_dir,
            seed=seed,
            full=True if full else None,
            on_bench=note,
        )
    except RuntimeError as e:  # a simulator that failed to build or run
        raise click.ClickException(str(e)) from None
    bad = sum(r.mismatches for r in results)
    if as_json:
        click.echo(json.dumps([r.as_json() for r in results], indent=2))
    else:
        table = Table(title=f"RTL vs simulator.numerics under {sim}")
        for col in ("block", "params", "vectors", "mismatches", "vectors/s"):
            table.add_column(col)
        for r in results:
            rate = r.vectors / r.seconds if r.seconds > 0 else 0.0
            table.add_row(
                r.block, _fmt_params(r.params), str(r.vectors), str(r.mismatches), f"{rate:,.0f}"
            )
        console().print(table)
        click.echo(
            f"{len(results)} parameter sets, {sum(r.vectors for r in results)} vectors, "
            f"{bad} mismatches"
        )
    for r in results:
        for ex in r.examples[:2]:
            click.echo(f"mismatch {r.block} {_fmt_params(r.params)}: {ex}", err=True)
    if bad:
        sys.exit(1)


@rtl.command()
@click.argument("block")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="Block parameter.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Verilog file to write.",
)
def verilog(block: str, params: tuple[str, ...], output: Path) -> None:
    """Write the Verilog of BLOCK (fp8_mul, dot_product, sru, lfsr, stream_bits, sru_lfsr,
    channel_gate, group_norm)."""
    from amaranth.back import verilog as vlog

    from rtl.catalog import BlockError, build, parse_params

    try:
        design = build(block, parse_params(block, list(params)))
    except BlockError as e:
        raise click.BadParameter(str(e)) from None
    text = vlog.convert(design, name=block)
    try:
        output.write_text(text)
    except OSError as e:
        raise click.ClickException(f"cannot write {output}: {e.strerror}") from None
    click.echo(f"wrote {output} ({len(text.splitlines())} lines)")


@rtl.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@click.option("--no-cache", is_flag=True, help="Synthesise again even when cached.")
@click.option(
    "--block", "blocks", multiple=True, help="Only the design points of these blocks; repeatable."
)
@click.option(
    "--cache",
    "cache_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Cache file (default build/rtl/stats-cache.json).",
)
def stats(as_json: bool, no_cache: bool, blocks: tuple[str, ...], cache_file: Path | None) -> None:
    """Yosys cell counts of every block and of the SRU design-space sweep."""
    from tqdm import tqdm

    from rtl.catalog import BLOCKS
    from rtl.stats import design_points, run_stats

    unknown = [b for b in blocks if b not in BLOCKS]
    if unknown:
        raise click.BadParameter(
            f"unknown block {unknown[0]!r}; blocks are: {', '.join(BLOCKS)}", param_hint="--block"
        )
    points = [p for p in design_points() if not blocks or p[0] in blocks]

    def bar(items):  # type: ignore[no-untyped-def]
        return tqdm(items, desc="synthesis", unit="design", file=sys.stderr)

    try:
        rows = run_stats(points, use_cache=not no_cache, progress=bar, cache_file=cache_file)
    except RuntimeError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps([r.as_json() for r in rows], indent=2))
        return
    table = Table(title="Yosys cells (gates = 2-input-gate equivalents, see docs/rtl.md)")
    for col in ("block", "params", "cells", "gates", "by type"):
        table.add_column(col)
    for r in rows:
        by_type = ", ".join(f"{k.strip('$')}:{v}" for k, v in r.cells.items())
        table.add_row(r.block, _fmt_params(r.params), str(r.total), str(r.gates), by_type)
    console().print(table)
