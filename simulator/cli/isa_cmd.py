"""`fp8sim asm`, `fp8sim disasm` and `fp8sim compile`: the ISA's command-line tools."""

from __future__ import annotations

import json
from pathlib import Path

import click

from isa.asm import AsmError, assemble
from isa.disasm import disassemble
from isa.encoding import DecodeError, EncodeError


def _write_new(path: Path, data: bytes, force: bool) -> None:
    if path.exists() and not force:
        raise click.ClickException(f"{path} exists; use --force to overwrite")
    path.write_bytes(data)


@click.command("asm")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Binary to write.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
def asm(source: Path, output: Path, force: bool) -> None:
    """Assemble SOURCE (assembly text) into a binary program."""
    try:
        data = assemble(source.read_text(), str(source))
    except (AsmError, EncodeError) as err:
        raise click.ClickException(str(err)) from None
    except UnicodeDecodeError as err:
        raise click.ClickException(f"{source}: not a text file ({err.reason})") from None
    _write_new(output, data, force)
    click.echo(f"{output}: {len(data) // 16} instructions, {len(data)} bytes", err=True)


@click.command("disasm")
@click.argument("binary", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def disasm(binary: Path) -> None:
    """Print the assembly text of BINARY; it assembles back to the same bytes."""
    try:
        text = disassemble(binary.read_bytes())
    except DecodeError as err:
        raise click.ClickException(f"{binary}: {err}") from None
    click.echo(text, nl=False)


@click.command("compile")
@click.option("--model", help="A shipped model name (see workloads.models.MODEL_NAMES).")
@click.option(
    "--trace",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A sparsity trace (.npz, `fp8sim trace`) or a layer-graph JSON file "
    "(LayerGraph.to_dict(), top level or under 'graph').",
)
@click.option(
    "--config",
    "config",
    default="ref28",
    show_default=True,
    help="Shipped configuration name or hardware YAML file.",
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=None,
    help="Images per step [default: the trace's batch, else 128].",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Output prefix: writes PREFIX.bin, .s, .memmap.json, .annotations.json.",
)
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@click.option(
    "--records",
    is_flag=True,
    help="Also store the rounding records (values fused blocks consume on chip) that "
    "`fp8sim verify`'s reference reads; off: the program a chip runs.",
)
def compile_cmd(
    model: str | None,
    trace: Path | None,
    config: str,
    batch: int | None,
    output: Path,
    force: bool,
    records: bool,
) -> None:
    """Compile one training step (FP, loss, skip decision, BP, WU) of a model."""
    from isa.compiler import CompileError, compile_graph
    from simulator.config import ConfigError, load_config

    if (model is None) == (trace is None):
        raise click.UsageError("give exactly one of --model NAME or --trace FILE")
    try:
        cfg = load_config(config)
    except ConfigError as err:
        raise click.ClickException(str(err)) from None
    graph, trace_batch = _load_graph(model, trace)
    batch = batch or trace_batch or 128
    try:
        program = compile_graph(graph, cfg, batch, records=records)
        paths = program.write(output, force=force)
    except CompileError as err:
        raise click.ClickException(str(err)) from None
    except FileExistsError as err:
        raise click.ClickException(str(err)) from None
    s = program.summary()
    macs = s["tc_macs_by_phase"]
    click.echo(
        f"{graph.model_name}, batch {batch}, config {cfg.name}: {s['instructions']} instructions "
        f"({s['program_bytes']} bytes), {s['executed_instructions']} executed; tensor-core MACs "
        f"FP {macs['fp']:,} BP {macs['bp']:,} WU {macs['wu']:,}"
    )
    for p in paths:
        click.echo(f"  wrote {p}")


def _load_graph(model: str | None, trace: Path | None):
    """The layer graph to compile, and the batch a trace was recorded with (else None)."""
    from workloads.graph import GraphError, LayerGraph

    if model is not None:
        from workloads.graph import graph_for
        from workloads.models import MODEL_NAMES

        if model not in MODEL_NAMES:
            raise click.BadParameter(
                f"unknown model {model!r}; valid: {', '.join(MODEL_NAMES)}", param_hint="--model"
            )
        return graph_for(model), None
    assert trace is not None
    if trace.read_bytes()[:2] == b"PK":  # a zip: an .npz trace file
        from workloads.trace.format import TraceError, load_trace

        try:
            t = load_trace(trace)
        except TraceError as err:
            raise click.ClickException(str(err)) from None
        return t.graph, t.batch
    try:
        data = json.loads(trace.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise click.ClickException(f"{trace}: not a JSON layer graph ({err})") from None
    if isinstance(data, dict) and "graph" in data:
        data = data["graph"]
    if not isinstance(data, dict):
        raise click.ClickException(f"{trace}: expected a JSON object holding a layer graph")
    try:
        return LayerGraph.from_dict(data), None
    except GraphError as err:
        raise click.ClickException(f"{trace}: {err}") from None
