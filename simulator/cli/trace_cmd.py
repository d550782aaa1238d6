"""`fp8sim trace ...`: record sparsity traces from training, synthesise them, inspect them.

Heavy imports (torch) happen inside the commands so `fp8sim --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import click


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that describe a user mistake and become one-line errors."""
    from workloads.data import DataError
    from workloads.models import UnknownModelError
    from workloads.recipe.config import RecipeConfigError
    from workloads.trace.format import TraceError

    return (DataError, UnknownModelError, RecipeConfigError, TraceError, ValueError, OSError)


def _check_output(output: Path, force: bool) -> None:
    if output.exists() and not force:
        raise click.ClickException(f"{output} exists; pass --force to overwrite it")
    if output.exists() and output.is_dir():
        raise click.ClickException(f"{output} is a directory")


def _parse_densities(items: tuple[str, ...]) -> dict[str, float]:
    from workloads.trace.synth import DENSITY_KEYS

    out: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--density")
        if key not in DENSITY_KEYS:
            raise click.BadParameter(
                f"unknown key {key!r}; keys are {', '.join(DENSITY_KEYS)}", param_hint="--density"
            )
        try:
            v = float(value)
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a number", param_hint="--density") from None
        if not 0.0 <= v <= 1.0:
            raise click.BadParameter(f"{key}={v} is outside [0, 1]", param_hint="--density")
        out[key] = v
    return out


@click.group(invoke_without_command=True)
@click.option("--model", help="Model name (see `fp8sim trace models`).")
@click.option("--data", "data_name", help="Data set: digits, shapes or cifar10.")
@click.option("--data-dir", type=click.Path(path_type=Path), help="CIFAR-10 binary directory.")
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="Recipe YAML.")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs (overrides the config).")
@click.option("--steps", type=click.IntRange(min=1), help="Total steps instead of epochs.")
@click.option("--batch", type=click.IntRange(min=1), help="Batch size (overrides the config).")
@click.option("--seed", type=int, help="Seed (overrides the config).")
@click.option("--limit", type=click.IntRange(min=1), help="Use at most this many images.")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Trace file to write.")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def trace(
    ctx: click.Context,
    model: str | None,
    data_name: str | None,
    data_dir: Path | None,
    config_file: Path | None,
    epochs: int | None,
    steps: int | None,
    batch: int | None,
    seed: int | None,
    limit: int | None,
    output: Path | None,
    force: bool,
    quiet: bool,
) -> None:
    """Train a model with the sparse FP8 recipe and record a trace (without a subcommand), or
    synthesise / inspect traces (subcommands). Format: docs/traces.md."""
    if ctx.invoked_subcommand is not None:
        return
    missing = [n for n, v in (("--model", model), ("--data", data_name), ("-o", output)) if not v]
    if missing:
        if not any((model, data_name, output)):
            click.echo(ctx.get_help())
            return
        raise click.UsageError(f"training a trace needs {', '.join(missing)}")
    if epochs is not None and steps is not None:
        raise click.UsageError("give --epochs or --steps, not both")
    assert output is not None and model is not None and data_name is not None
    _check_output(output, force)
    try:
        from workloads.recipe.config import load_config
        from workloads.recipe.train import train
        from workloads.trace.format import save_trace
        from workloads.trace.record import trace_from_training

        overrides: dict = {}
        if epochs is not None:
            overrides["epochs"] = epochs
        if steps is not None:
            overrides["steps"] = steps
        if batch is not None:
            overrides["batch_size"] = batch
        if seed is not None:
            overrides["seed"] = seed
        cfg = load_config(config_file, **overrides)
        parts = ["fp8sim trace", f"--model {model}", f"--data {data_name}"]
        if config_file:
            parts.append(f"--config {config_file}")
        parts += [f"--epochs {cfg.epochs}"] if steps is None else [f"--steps {cfg.steps}"]
        parts += [f"--batch {cfg.batch_size}", f"--seed {cfg.seed}"]
        if limit:
            parts.append(f"--limit {limit}")
        parts.append(f"-o {output.name}")
        result = train(
            model,
            data_name,
            cfg,
            data_root=str(data_dir) if data_dir else None,
            limit=limit,
            progress=not quiet,
            log=click.echo,
        )
        t = trace_from_training(result, " ".join(parts))
        save_trace(t, output)
    except _user_errors() as e:
        raise click.ClickException(str(e)) from None
    click.echo(
        f"wrote {output} ({output.stat().st_size} bytes, test accuracy {result.test_accuracy:.4f})"
    )


@trace.command()
def models() -> None:
    """List the model names."""
    from workloads import models as m

    for name in m.MODEL_NAMES:
        shape = m.default_input_shape(name)
        click.echo(f"{name:20s} {m.family(name):10s} {shape}  {m.describe(name)}")


@trace.command()
@click.option("--model", required=True, help="Model name.")
@click.option(
    "--density",
    "densities",
    multiple=True,
    metavar="KEY=VALUE",
    help="gate, weight_group (fractions of work issued) or grad_skip (fraction of images "
    "skipped); repeatable.",
)
@click.option(
    "--skew",
    type=click.Choice(["uniform", "realistic"]),
    default="uniform",
    show_default=True,
    help="How densities vary across layers and channel groups.",
)
@click.option("--iterations", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True)
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
def synth(
    model: str,
    densities: tuple[str, ...],
    skew: str,
    iterations: int,
    batch: int,
    seed: int,
    output: Path,
    force: bool,
) -> None:
    """Write a synthetic trace with masks drawn at the requested densities."""
    dens = _parse_densities(densities)
    _check_output(output, force)
    try:
        from workloads.trace.format import save_trace
        from workloads.trace.summary import measured
        from workloads.trace.synth import synthesize

        cmd = " ".join(
            ["fp8sim trace synth", f"--model {model}"]
            + [f"--density {k}={v}" for k, v in dens.items()]
            + [
                f"--skew {skew}",
                f"--iterations {iterations}",
                f"--batch {batch}",
                f"--seed {seed}",
                f"-o {output.name}",
            ]
        )
        t = synthesize(model, dens, batch, seed, skew, iterations, meta={"command": cmd})
        save_trace(t, output)
    except _user_errors() as e:
        raise click.ClickException(str(e)) from None
    m = measured(t)
    click.echo(
        f"wrote {output}: gate density {m['gate_density']:.3f}, weight-group density "
        f"{m['weight_group_density']:.3f}, grad skip {m['grad_skip_fraction']:.3f}, "
        f"FLOPs reduction {m['flops_reduction']:.2f}x"
    )


@trace.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def info(file: Path, as_json: bool) -> None:
    """Validate a trace and print its summary."""
    try:
        from workloads.trace.format import load_trace
        from workloads.trace.summary import summary

        s = summary(load_trace(file))
    except _user_errors() as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    meta = s["meta"]
    m = s["measured"]
    click.echo(
        f"trace {file}: model {s['model']}, input {tuple(s['input_shape'])}, batch "
        f"{s['batch']}, {s['iterations']} iteration(s), codes: {s['has_codes']}"
    )
    click.echo(
        f"provenance: {meta.get('kind', '?')}; command: {meta.get('command', '?')}; "
        f"seed {meta.get('seed', '?')}; accuracy {meta.get('accuracy', 'n/a')}"
    )
    click.echo(
        f"dense MACs per image: forward {s['macs_fwd_per_image']:,}, training step "
        f"(FP+BP+WU) {s['macs_train_per_image_dense']:,}"
    )
    click.echo(
        f"measured: gate density {m['gate_density']:.3f}, weight-group density "
        f"{m['weight_group_density']:.3f}, grad skip {m['grad_skip_fraction']:.3f}, "
        f"FLOPs reduction {m['flops_reduction']:.2f}x"
    )
    click.echo(f"{'layer':28s} {'kind':9s} {'in':>16s} {'out':>16s} {'MACs fwd':>13s} density")
    for row in s["layers"]:
        if row["kind"] in ("input", "output"):
            continue
        dens = " ".join(f"{k}={v:.2f}" for k, v in row.get("density", {}).items())
        click.echo(
            f"{row['name']:28s} {row['kind']:9s} {tuple(row['in_shape'])!s:>16s} "
            f"{tuple(row['out_shape'])!s:>16s} {row['macs_fwd']:>13,} {dens}"
        )
