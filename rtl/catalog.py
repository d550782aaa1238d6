# amaranth: UnusedElaboratable=no
# (a block whose constructor refuses its parameters is never elaborated: no warning for it)
"""Every RTL block by name, with typed parameters: what `fp8sim rtl verilog` and `stats` build."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from amaranth.lib import wiring

from rtl.dot_product import DotProductUnit
from rtl.multiplier import Fp8Multiplier
from rtl.prng import Lfsr, StreamBits, Xorshift32
from rtl.sparsity import ChannelGateComparator, GroupNormZeroDetector
from rtl.sru import StochasticRoundingUnit
from rtl.sru_pair import SruWithSource

BLOCKS: dict[str, Callable[..., wiring.Component]] = {
    "fp8_mul": Fp8Multiplier,
    "dot_product": DotProductUnit,
    "sru": StochasticRoundingUnit,
    "lfsr": Lfsr,
    "xorshift32": Xorshift32,
    "stream_bits": StreamBits,
    "sru_lfsr": SruWithSource,
    "channel_gate": ChannelGateComparator,
    "group_norm": GroupNormZeroDetector,
}


class BlockError(ValueError):
    """A block name or parameter the catalog cannot build (message meant for users)."""


def parameters(block: str) -> dict[str, Any]:
    """Parameter name -> default of a block."""
    if block not in BLOCKS:
        raise BlockError(f"unknown block {block!r}; blocks are: {', '.join(BLOCKS)}")
    sig = inspect.signature(BLOCKS[block])
    return {k: p.default for k, p in sig.parameters.items()}


def _is_int(block: str, key: str, default: Any) -> bool:
    if isinstance(default, int) and not isinstance(default, bool):
        return True
    # No default (or None): read the annotation, a string under postponed evaluation.
    ann = inspect.signature(BLOCKS[block]).parameters[key].annotation
    return str(ann).startswith("int")


def parse_params(block: str, pairs: list[str]) -> dict[str, Any]:
    """Turn ["k=v", ...] into typed keyword arguments (types from the defaults)."""
    known = parameters(block)
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise BlockError(f"parameter {pair!r} must look like name=value")
        if key not in known:
            raise BlockError(
                f"block {block!r} has no parameter {key!r}; parameters: {', '.join(known)}"
            )
        default = known[key]
        if isinstance(default, bool):
            out[key] = text.lower() in ("1", "true", "yes")
        elif _is_int(block, key, default):
            try:
                out[key] = int(text, 0)
            except ValueError:
                raise BlockError(f"parameter {key!r} needs an integer, not {text!r}") from None
        else:
            out[key] = text
    return out


def build(block: str, params: dict[str, Any]) -> wiring.Component:
    """Instantiate a block; constructor errors come back as BlockError."""
    parameters(block)
    try:
        return BLOCKS[block](**params)
    except (ValueError, TypeError) as e:
        raise BlockError(f"{block}: {e}") from None
