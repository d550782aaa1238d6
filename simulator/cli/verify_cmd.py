"""`fp8sim verify`: one training step on the functional simulator against the independent
PyTorch reference (identical FP8 weight codes) and float32 autograd (gradient cosine)."""

from __future__ import annotations

import json

import click

from isa.spec import RANDOM_SOURCE
from simulator.cli.options import threads_option


@click.command("verify")
@click.option("--model", "model", required=True, help="Model name (workloads.models), e.g. vgg7.")
@click.option("--batch", default=2, show_default=True, type=int, help="Images in the step.")
@click.option("--seed", default=0, show_default=True, type=int, help="Weights and image choice.")
@click.option(
    "--rounding",
    type=click.Choice(["rne", "sr", "sr_half", "sr_corrected"]),
    default="rne",
    show_default=True,
    help="SRU rule of every stream (stochastic: the reference uses the SRUs' random words; "
    "with --source tensor_bits it takes them from its own values).",
)
@click.option(
    "--source",
    type=click.Choice(RANDOM_SOURCE.values),
    default=None,
    help="SRUs' random source (default: the configuration's, lfsr); tensor_bits: each SRU lane "
    "takes the bits its neighbour lane's rounding discards.",
)
@click.option(
    "--mode",
    type=click.Choice(["dense", "gating", "weight_sparsity", "grad_skip", "all"]),
    default="dense",
    show_default=True,
    help="Sparsity mechanisms the units apply (masks computed by the CGU, WSU and GSU).",
)
@click.option(
    "--gate-threshold", default=0.0, show_default=True, type=float, help="Gated layers' threshold."
)
@threads_option()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify_cmd(
    model: str,
    batch: int,
    seed: int,
    rounding: str,
    source: str | None,
    mode: str,
    gate_threshold: float,
    threads: int | str | None,
    as_json: bool,
) -> None:
    """Run one training step functionally and compare it per layer with the PyTorch
    reference; exits non-zero when any updated weight's or momentum's FP8 code differs."""
    from isa.compiler import CompileError
    from simulator.functional import FunctionalError, VerifyError, verify

    try:
        res = verify(
            model,
            batch,
            rounding,
            seed,
            mode,
            gate_threshold,
            progress=True,
            source=source,
            threads=threads,
        )
    except (VerifyError, FunctionalError, CompileError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps(res, indent=1))
    else:
        click.echo(
            f"{res['model']} batch {res['batch']}, rounding {res['rounding']} "
            f"({res['source']}), mode "
            f"{res['mode']}: {res['executed_instructions']:,} instructions executed in "
            f"{res['simulator_s']:.2f} s (reference {res['reference_s']:.2f} s)"
        )
        click.echo(
            f"{'layer':<20}{'weights':>9}{'changed':>9}{'mismatch':>9}{'mom.mism':>9}"
            f"{'cos(sim,f32)':>14}{'cos(ref16,f32)':>16}"
        )
        for la in res["layers"]:
            click.echo(
                f"{la['layer']:<20}{la['weights']:>9}{la['changed_codes']:>9}"
                f"{la['mismatched_codes']:>9}{la['mismatched_momentum_codes']:>9}"
                f"{la['cos_sim_update_vs_f32']:>14.4f}"
                f"{la['cos_ref_fp16_grad_vs_f32']:>16.4f}"
            )
        click.echo("OK: updated FP8 weights and momentum identical" if res["ok"] else "MISMATCH")
    if not res["ok"]:
        raise SystemExit(1)
