"""Options more than one command takes, defined once."""

from __future__ import annotations

import click


def threads_option(applies: str = ""):
    """`--threads N`: numba threads of the functional model's large tensor-core tiles
    (`simulator.functional.tree.tile_threads`); `applies` says when, for commands where it
    does not always."""
    return click.option(
        "--threads",
        type=click.IntRange(min=1),
        default=None,
        help=f"{applies}Numba threads for the large tensor-core tiles (default: FP8SIM_THREADS, "
        "else 1). Results are identical; more threads pay on a machine with idle cores, and "
        "cost on a busy one.",
    )
