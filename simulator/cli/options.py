"""Options more than one command takes, defined once."""

from __future__ import annotations

import click


class ThreadsType(click.ParamType):
    """`auto` or a thread count in 1..NUMBA_NUM_THREADS (`tree.parse_threads`)."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        from simulator.functional.tree import parse_threads

        try:
            return parse_threads(value, "--threads")
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def threads_option(applies: str = ""):
    """`--threads N|auto`: numba threads of the functional model's large tensor-core tiles
    (`simulator.functional.tree.tile_threads`); `applies` says when, for commands where it
    does not always."""
    return click.option(
        "--threads",
        type=ThreadsType(),
        default=None,
        help=f"{applies}Numba threads for the large tensor-core tiles: a number, or 'auto' "
        "(default, or FP8SIM_THREADS): as many as the other processes leave CPUs idle. "
        "Results are identical; threads pay only on idle cores.",
    )
