"""`fp8sim run` and `fp8sim report`: simulate a workload's training step in every sparsity
mode and print / write the figures. Heavy imports happen inside the commands."""

from __future__ import annotations

import json
from pathlib import Path

import click

from simulator.cli.options import threads_option


def _user_errors() -> tuple[type[BaseException], ...]:
    from isa.compiler import CompileError
    from simulator.config import ConfigError
    from simulator.report import ReportError
    from simulator.timing import SimulationError
    from workloads.trace import TraceError

    return (
        ConfigError, CompileError, SimulationError, TraceError, ReportError, ValueError, OSError
    )  # fmt: skip


def _functional(trace: str | None, config: str, threads: int | str | None = None) -> dict:
    """The functional step of the workload's model and batch (mode all)."""
    from simulator.config import load_config
    from simulator.functional import FunctionalError, VerifyError
    from simulator.functional.compare import run_functional
    from simulator.run import load_workload

    w = load_workload(trace)
    try:
        return run_functional(
            w.trace.graph.model_name, w.trace.batch, load_config(config), threads=threads
        )
    except (FunctionalError, VerifyError) as e:
        raise click.ClickException(f"--mode functional: {e}") from None


def _execute(
    trace: str | None, config: str, quiet: bool, point: str | None = None, iteration: int = 0
):
    from tqdm import tqdm

    from simulator.config import load_config
    from simulator.run import load_workload, run_workload
    from simulator.timing import MODES

    cfg = load_config(config)
    if point is not None and point not in [p.name for p in cfg.operating_points]:
        known = ", ".join(p.name for p in cfg.operating_points)
        raise click.BadParameter(f"{point!r} is not one of {known}", param_hint="--operating-point")
    steps = ["trace", "compile", "prepare", *MODES, *cfg.operating_points]
    with tqdm(total=len(steps), disable=quiet, desc="fp8sim run", unit="step") as bar:
        bar.set_postfix_str("trace")
        w = load_workload(trace, iteration)
        bar.update()

        def progress(stage: str) -> None:
            bar.set_postfix_str(stage)
            bar.update()

        res = run_workload(w, cfg, progress=progress, point=point)
        bar.update(bar.total - bar.n)
    return res.cfg, res


def _hazards(res, quiet: bool) -> dict[str, list[str]]:
    """Memory hazards of every simulated mode's schedule (simulator/timing/hazards.py)."""
    from tqdm import tqdm

    from isa.compiler import compile_graph
    from simulator.timing.hazards import check
    from simulator.timing.model import prepare

    w, cfg = res.workload, res.cfg
    preps = {}
    out = {}
    for m in tqdm(res.timings, disable=quiet, desc="hazard check", unit="mode"):
        sparse = m != "dense"
        if sparse not in preps:
            preps[sparse] = prepare(
                compile_graph(w.trace.graph, cfg, w.trace.batch, sparse=sparse), cfg
            )
        out[m] = [str(h) for h in check(preps[sparse], w.masks, m)]
    return out


def _headline_text(summary: dict) -> str:
    from simulator.report.tables import headline

    d = summary["dram"]
    lines = [
        f"at {summary['operating_point']}; DRAM {d['bytes_per_cycle']} B/cycle "
        f"({d['gb_per_s']:.1f} GB/s, {d['latency_cycles']} cycles latency)",
        f"{'mode':<16}{'cycles':>14}{'speedup':>9}{'energy uJ':>12}{'on-chip uJ':>12}{'util':>7}",
    ]
    for r in headline(summary):
        lines.append(
            f"{r['mode']:<16}{r['cycles']:>14,}{r['speedup_x']:>8.2f}x{r['energy_uJ']:>12.1f}"
            f"{r['energy_on_chip_uJ']:>12.1f}{r['tc_utilization']:>7.3f}"
        )
    e = summary["tflops_per_w"]
    lines.append(
        f"FLOPs reduction (trace) {summary['flops_reduction']:.2f}x; efficiency at "
        f"{e['operating_point']} (mode {e['mode']}): {e['dense_equivalent']:.2f} TFLOPS/W "
        f"dense-equivalent, {e['actual']:.2f} TFLOPS/W actual (on chip)"
        + (f"; speedup there {e['speedup']:.2f}x" if e.get("speedup") else "")
    )
    return "\n".join(lines)


_TRACE_HELP = (
    "Trace file (.npz), a shipped trace (vgg7_digits, resnet20_digits, ...) or a named "
    "synthetic trace (resnet20-cal, vgg7-cal, resnet20-tiny, vgg7-tiny; default resnet20-cal)."
)
_CONFIG_HELP = "Hardware config: a shipped name or a YAML file."


def _simulation_options(f):
    """The options `run` and `report` share: which iteration, at which operating point."""
    f = click.option(
        "--operating-point",
        "point",
        help="Simulate at this operating point of the config (default: its default point; "
        "the DRAM channel's cycles depend on the clock, see dma.dram_clock).",
    )(f)
    return click.option(
        "--iteration",
        type=click.IntRange(min=0),
        default=0,
        show_default=True,
        help="Which captured iteration of the trace to simulate (from 0).",
    )(f)


@click.command("run")
@click.option("--trace", "trace", help=_TRACE_HELP)
@click.option("--config", default="ref28", show_default=True, help=_CONFIG_HELP)
@click.option(
    "--mode",
    type=click.Choice(["timing", "functional", "both"]),
    default="timing",
    show_default=True,
    help="timing: cycle-level model. functional: execute the step bit-exactly on the trace's "
    "model with digits images (sparsity masks computed by the units; see docs/functional.md). "
    "both: the two.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), help="Directory to write summary.json into."
)
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@click.option(
    "--check-hazards",
    is_flag=True,
    help="Also check every mode's schedule for memory hazards: two units touching the same "
    "bytes in an order the program's tokens do not allow (about 20 s per mode for ResNet-20 "
    "at batch 128; exit status 1 if any; docs/simulator.md).",
)
@_simulation_options
@threads_option("--mode functional/both: ")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def run_cmd(
    trace: str | None,
    config: str,
    mode: str,
    as_json: bool,
    output: Path | None,
    force: bool,
    check_hazards: bool,
    quiet: bool,
    point: str | None,
    iteration: int,
    threads: int | str | None,
) -> None:
    """Simulate one training step dense, with each sparsity technique and with all of them."""
    target = output / "summary.json" if output is not None else None
    if output is not None and output.exists() and not output.is_dir():
        raise click.ClickException(f"{output} exists and is not a directory")
    if target is not None and target.exists() and not force:
        raise click.ClickException(f"{target} exists; pass --force to overwrite it")
    try:
        if mode == "functional":
            summary = {"functional": _functional(trace, config, threads)}
        else:
            _, res = _execute(trace, config, quiet or as_json, point, iteration)
            summary = res.summary
            if check_hazards:
                summary = {**summary, "hazards": _hazards(res, quiet or as_json)}
            if mode == "both":
                summary = {**summary, "functional": _functional(trace, config, threads)}
    except _user_errors() as e:
        raise click.ClickException(str(e)) from None
    text = json.dumps(summary, indent=1, default=str)
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text + "\n")
    hazards = sum(len(v) for v in summary.get("hazards", {}).values())
    if as_json:
        click.echo(text)
        if hazards:
            raise SystemExit(1)
        return
    if mode != "functional":
        click.echo(_headline_text(summary))
        for n in summary["notes"]:
            click.echo(f"note: {n}")
        for m, found in summary.get("hazards", {}).items():
            click.echo(f"hazards, mode {m}: {len(found) or 'none'}")
            for h in found[:5]:
                click.echo(f"  {h}")
    if mode != "timing":
        f = summary["functional"]
        click.echo(
            f"functional ({f['model']}, batch {f['batch']}, mode {f['mode']}, rounding "
            f"{f['rounding']}): {f['executed_instructions']:,} instructions in "
            f"{f['seconds']:.1f} s; {f['skipped_images']} images skipped"
        )
        for la in f["layers"]:
            click.echo(
                f"  {la['layer']:<20} {la['changed_codes']:>8} of {la['weights']:>8} weight codes "
                f"updated, {la['zero_weights']} zero"
            )
    if hazards:
        raise click.ClickException(f"{hazards} memory hazard(s) in the schedule (listed above)")


@click.command("report")
@click.option("--trace", "trace", help=_TRACE_HELP)
@click.option("--config", default="ref28", show_default=True, help=_CONFIG_HELP)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("report"),
    show_default=True,
    help="Report directory.",
)
@click.option("--force", is_flag=True, help="Overwrite a non-empty report directory.")
@_simulation_options
@click.option("--quiet", is_flag=True, help="No progress bar.")
def report_cmd(
    trace: str | None,
    config: str,
    output: Path,
    force: bool,
    quiet: bool,
    iteration: int,
    point: str | None,
) -> None:
    """Write the speedup/energy report (report.md, report.html, PNGs, CSV/JSON data)."""
    from simulator.report import write_report
    from simulator.report.writer import prepare_dir

    try:
        prepare_dir(output, force)  # fail before minutes of work, not after
        cfg, res = _execute(trace, config, quiet, point, iteration)
        path = write_report(res.summary, cfg, output, force=True, instructions=res.instructions)
    except _user_errors() as e:
        raise click.ClickException(str(e)) from None
    click.echo(_headline_text(res.summary))
    click.echo(f"report: {path} (and {path.with_suffix('.html')})")
