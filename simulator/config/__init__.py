"""The validated hardware configuration shared by the compiler (`isa.compiler`) and the simulator.

`load_config("ref28")` returns a frozen `HardwareConfig`; `provenance(cfg)` lists every
parameter with its unit and provenance; `config_hash(cfg)` identifies it in report manifests.
"""

from simulator.config.loader import (
    ConfigError,
    canonical_json,
    config_hash,
    load_config,
    shipped_configs,
    validate_config,
)
from simulator.config.model import (
    BufferConfig,
    EnergyConfig,
    HardwareConfig,
    OperatingPoint,
)
from simulator.config.params import ParamInfo, Provenance, provenance

__all__ = [
    "BufferConfig",
    "ConfigError",
    "EnergyConfig",
    "HardwareConfig",
    "OperatingPoint",
    "ParamInfo",
    "Provenance",
    "canonical_json",
    "config_hash",
    "load_config",
    "provenance",
    "shipped_configs",
    "validate_config",
]
