"""Load, validate and hash hardware configurations.

`load_config("ref28")` reads a shipped YAML file from this package; any other argument is a path.
A YAML file may start from a shipped configuration with `extends: ref28` and override only some
keys (nested mappings merge; lists replace). Every problem becomes a `ConfigError` whose message
names the file, the field (dotted path) and the rule, never a pydantic dump.
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from simulator.config.model import HardwareConfig

# Field-prefixed messages raised by model validators ("seed: must be ...").
_FIELD_MSG = re.compile(r"^([A-Za-z_][\w.]*): (.*)$", re.DOTALL)


class ConfigError(ValueError):
    """A hardware configuration that cannot be read or breaks a rule."""


def shipped_configs() -> list[str]:
    """Names of the configurations shipped in this package."""
    pkg = resources.files("simulator.config")
    return sorted(p.name[:-5] for p in pkg.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(text: str, where: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        pos = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{where}{pos}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must be a YAML mapping of sections, not {type(data).__name__}")
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _raw(name_or_path: str | Path, seen: tuple[str, ...] = ()) -> tuple[dict[str, Any], str]:
    """The merged raw mapping of a config (following `extends:`), and where it came from."""
    key = str(name_or_path)
    if key in seen:
        raise ConfigError(f"{key}: `extends` cycle through {' -> '.join(seen)}")
    if isinstance(name_or_path, str) and key in shipped_configs():
        text = (resources.files("simulator.config") / f"{key}.yaml").read_text()
        where = f"{key} (shipped)"
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(
                f"{key}: no such file, and not a shipped configuration "
                f"(shipped: {', '.join(shipped_configs())})"
            )
        text, where = path.read_text(), str(path)
    data = _read_yaml(text, where)
    base = data.pop("extends", None)
    if base is not None:
        if not isinstance(base, str):
            raise ConfigError(f"{where}: extends: must be the name or path of a configuration")
        if not Path(base).is_absolute() and base not in shipped_configs():
            base = str(Path(where).parent / base)
        parent, _ = _raw(base, (*seen, key))
        data = _merge(parent, data)
    return data, where


def format_validation_error(err: ValidationError, where: str) -> str:
    """One line per problem: `where: section.field: rule`."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        m = _FIELD_MSG.match(msg)
        if m and e["type"] == "value_error":
            loc = f"{loc}.{m.group(1)}" if loc else m.group(1)
            msg = m.group(2)
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        elif e["type"] == "missing":
            msg = "required field is missing"
        else:
            msg = (
                f"{msg} (got {e['input']!r})"
                if "input" in e and e["type"] != "value_error"
                else msg
            )
        lines.append(f"{where}: {loc or '<top>'}: {msg}")
    return "\n".join(lines)


def validate_config(data: dict[str, Any], where: str = "<config>") -> HardwareConfig:
    """Validate a raw mapping into a `HardwareConfig` or raise `ConfigError`."""
    try:
        return HardwareConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, where)) from None


def load_config(name_or_path: str | Path) -> HardwareConfig:
    """A shipped configuration by name (e.g. "ref28") or a YAML file by path."""
    data, where = _raw(name_or_path)
    return validate_config(data, where)


def canonical_json(cfg: HardwareConfig) -> str:
    """The configuration as canonical JSON (sorted keys, no whitespace): the hashed form."""
    return json.dumps(cfg.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def config_hash(cfg: HardwareConfig) -> str:
    """sha256 (hex) of the canonical JSON dump; equal configurations hash equal whatever the
    YAML's key order, comments or `extends` chain."""
    return hashlib.sha256(canonical_json(cfg).encode()).hexdigest()
