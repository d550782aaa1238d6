"""`fp8sim sweep sru CONFIG -o DIR`: design-space sweeps of stochastic rounding units."""

from __future__ import annotations

from pathlib import Path

import click

from simulator.dse.config import SweepConfigError, load_sweep_config
from simulator.dse.report import write_report
from simulator.dse.runner import SweepInterruptedError, run_sweep
from simulator.dse.store import ResultStore, SweepStoreError


@click.group()
def sweep() -> None:
    """Design-space sweeps (results written as each point finishes; resumable)."""


@sweep.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Results directory (created; never overwritten without --resume).",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the sweep in OUT: compute only points not finished there.",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="Run on an existing Dask distributed cluster (e.g. tcp://host:8786) "
    "instead of the local process pool.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=None,
    help="Local worker processes (default: one per CPU).",
)
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def sru(
    config: Path,
    out_dir: Path,
    resume: bool,
    scheduler: str | None,
    workers: int | None,
    no_progress: bool,
) -> None:
    """Sweep SRU designs (format, rounding variant, random bits, random source) in CONFIG.

    Each point gets its numerical quality (bias in target ULPs against the analytic value,
    variance, autocorrelation, NIST SP 800-22). OUT receives points.jsonl (one line per
    finished point), results.csv/json, bias_vs_r.png, pareto.png (when hardware costs exist)
    and summary.md.
    """
    try:
        cfg = load_sweep_config(config)
    except SweepConfigError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        outcome = run_sweep(
            cfg,
            out_dir,
            resume=resume,
            scheduler=scheduler,
            workers=workers,
            progress=not no_progress,
        )
    except (SweepStoreError, SweepInterruptedError) as exc:
        raise click.ClickException(str(exc)) from None
    summary = write_report(cfg, outcome.results, ResultStore(out_dir).failures(), out_dir)
    click.echo(
        f"{outcome.computed} point(s) computed, {outcome.reused} reused from an earlier "
        f"run, {len(outcome.failed)} failed; summary: {summary}"
    )
    if outcome.failed:
        raise click.ClickException(
            f"{len(outcome.failed)} point(s) failed (see {out_dir / 'failures.jsonl'}); "
            "rerun with --resume to retry them"
        )
