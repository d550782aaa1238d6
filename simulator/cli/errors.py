"""Turning validation failures into one readable line for the command line."""

from __future__ import annotations

from pydantic import ValidationError
from rich.console import Console


def pydantic_message(exc: ValidationError) -> str:
    """`field.sub: message; other: message` from a pydantic error, without the URL noise."""
    parts = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def console() -> Console:
    """A console that keeps tables readable when output is piped (no terminal width known)."""
    c = Console()
    return c if c.is_terminal else Console(width=160)
