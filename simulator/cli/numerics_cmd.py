"""`fp8sim numerics ...`: formats, rounding statistics of random sources."""

from __future__ import annotations

import json
from pathlib import Path

import click
from pydantic import ValidationError
from rich.table import Table

from simulator.cli.errors import console, pydantic_message
from simulator.numerics import PRESETS, STOCHASTIC
from simulator.numerics.quantize import ROUNDING_MODES
from simulator.numerics.random_sources import lfsr_word_pmf
from simulator.numerics.source_spec import SourceSpec


@click.group()
def numerics() -> None:
    """Number formats, rounding modes and random sources (docs/numerics.md)."""


@numerics.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def formats(as_json: bool) -> None:
    """List the preset formats with their ranges."""
    rows = [f.describe() for f in PRESETS.values()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="fp8sim number formats (values are exact; ranges in real units)")
    for col in (
        "name",
        "bits",
        "exp_bits",
        "man_bits",
        "bias",
        "subnormals",
        "inf_nan",
        "saturate",
        "max",
        "min_normal",
        "min_subnormal",
    ):
        table.add_column(col)
    for row in rows:
        table.add_row(*(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row.values()))
    console().print(table)


@numerics.command()
@click.option(
    "--format",
    "fmt",
    default="e5m2",
    show_default=True,
    type=click.Choice(list(PRESETS)),
    help="Target format.",
)
@click.option(
    "--rounding",
    default="sr",
    show_default=True,
    type=click.Choice(list(ROUNDING_MODES)),
    help="Rounding mode.",
)
@click.option(
    "-r",
    "--random-bits",
    "r",
    type=click.IntRange(1, 32),
    default=8,
    show_default=True,
    help="Random bits per rounding (stochastic modes).",
)
@click.option(
    "--source",
    "kind",
    default="uniform",
    show_default=True,
    type=click.Choice(["uniform", "lfsr", "xorshift32", "tensor"]),
    help="Random source feeding the rounder.",
)
@click.option("--width", default=16, show_default=True, help="LFSR width in bits (2..32).")
@click.option(
    "--form",
    default="fibonacci",
    show_default=True,
    type=click.Choice(["fibonacci", "galois"]),
    help="LFSR form.",
)
@click.option("--lanes", default=1, show_default=True, help="Lanes fed by the source.")
@click.option(
    "--sharing",
    default="per_lane",
    show_default=True,
    type=click.Choice(["per_lane", "shared"]),
    help="One LFSR per lane, or one shared.",
)
@click.option(
    "--combine",
    default="none",
    show_default=True,
    type=click.Choice(["none", "invert", "alternate"]),
    help="Use the LFSR as is, inverted, or alternating with its inverse.",
)
@click.option(
    "--stream",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Tensor source: a .npy file whose low bits are the random words.",
)
@click.option("--seed", default=1, show_default=True, help="Source seed / initial state.")
@click.option(
    "-n",
    "--samples",
    default=100_000,
    show_default=True,
    type=click.IntRange(1, 100_000_000),
    help="Values rounded.",
)
@click.option(
    "--lags",
    default=8,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Autocorrelation lags reported.",
)
@click.option(
    "--nist/--no-nist",
    default=True,
    show_default=True,
    help="Run the NIST SP 800-22 battery on the words (needs >= 10,000 bits).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def stats(
    fmt,
    rounding,
    r,
    kind,
    width,
    form,
    lanes,
    sharing,
    combine,
    stream,
    seed,
    samples,
    lags,
    nist,
    as_json,
) -> None:
    """Bias, variance, autocorrelation and NIST figures of a rounding mode and random source.

    Inputs are float32 values uniform on [1, 2) (one binade: the ULP is constant), rounded to
    FORMAT; errors are reported in target ULPs. The expected bias is the analytic value from
    the mode's definition with the source's exact word distribution where one is known
    (ideal source; full-period LFSR with r <= width), else with an ideal source.
    """
    from simulator.numerics.stats import rounding_stats

    stochastic = rounding in STOCHASTIC
    try:
        spec = SourceSpec(
            kind=kind,
            seed=seed,
            width=width,
            form=form,
            lanes=lanes,
            sharing=sharing,
            combine=combine,
            stream=stream,
        )
        source = spec.build() if stochastic else None
    except ValidationError as exc:
        raise click.UsageError(f"bad source options: {pydantic_message(exc)}") from None
    except (ValueError, TypeError) as exc:
        raise click.UsageError(str(exc)) from None
    pmf = None
    if stochastic and kind == "lfsr" and r <= width and width <= 24:
        pmf = lfsr_word_pmf(width, r, combine)
    try:
        result = rounding_stats(
            fmt,
            rounding,
            r if stochastic else None,
            source=source,
            n=samples,
            seed=seed,
            lags=lags,
            nist=nist,
            s_pmf=pmf,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    data = result.to_dict()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    table = Table(
        title=f"{rounding} into {fmt}" + (f", r={r}, source {result.source}" if stochastic else "")
    )
    table.add_column("figure")
    table.add_column("value")
    table.add_column("unit")
    table.add_row("samples", str(result.samples), "values")
    table.add_row("bias (measured)", f"{result.bias_ulp:+.6g}", "ULP")
    if result.expected_bias_ulp is not None:
        table.add_row("bias (analytic)", f"{result.expected_bias_ulp:+.6g}", "ULP")
    table.add_row("error variance", f"{result.variance_ulp2:.6g}", "ULP^2")
    for k, v in enumerate(result.autocorrelation, start=1):
        table.add_row(f"autocorrelation lag {k}", f"{v:+.4f}", "-")
    if result.nist is not None:
        table.add_row(
            "NIST SP 800-22 passed",
            f"{result.nist['passed']} / {result.nist['eligible']}",
            f"tests on {result.nist['bits']} bits",
        )
    elif stochastic and nist:
        table.add_row("NIST SP 800-22", "not run", "stream under 10,000 bits")
    console().print(table)
