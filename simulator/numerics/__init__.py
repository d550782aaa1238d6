"""The one definition of fp8sim's number formats, rounding modes and random sources.

Every other part of fp8sim (functional simulator, training recipe, RTL reference, tests) calls
these functions; semantics are documented in docs/numerics.md.
"""

from simulator.numerics.codec import decode, encode
from simulator.numerics.formats import PRESETS, FloatFormat, FormatError, InfNan, get_format
from simulator.numerics.quantize import ROUNDING_MODES, STOCHASTIC, quantize

__all__ = [
    "PRESETS",
    "ROUNDING_MODES",
    "STOCHASTIC",
    "FloatFormat",
    "FormatError",
    "InfNan",
    "decode",
    "encode",
    "get_format",
    "quantize",
]
