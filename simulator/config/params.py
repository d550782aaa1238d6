"""Parameter metadata: every hardware parameter carries a unit and a provenance.

A field is declared with `param(...)`, which stores the unit, the provenance of the `ref28` value
and (for assumed numbers) the source in pydantic's per-field JSON-schema extras. `provenance()`
walks a config and lists them, so reports can show where each number came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Provenance(StrEnum):
    """Where the shipped (`ref28`) value of a parameter comes from."""

    PUBLISHED = "published"  # stated in the chip's papers
    HINTED = "hinted"  # read from the group's public training code
    ASSUMED = "assumed"  # ours; documented with a source or rationale


def param(
    *,
    unit: str,
    provenance: Provenance,
    doc: str,
    source: str | None = None,
    **constraints: Any,
) -> Any:
    """A required config field with unit, provenance and (optional) source in its metadata.

    Fields are required (no default in the schema) so that the YAML file is the single place that
    holds values; `extends:` in a YAML file inherits them from a shipped configuration.
    """
    extra: dict[str, Any] = {"unit": unit, "provenance": provenance.value}
    if source is not None:
        extra["source"] = source
    description = f"{doc} [unit: {unit}; {provenance.value}]"
    if source is not None:
        description += f" Source: {source}"
    return Field(..., description=description, json_schema_extra=extra, **constraints)


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class ParamInfo:
    """One parameter of a config, flattened: dotted path, value, unit, provenance and source."""

    path: str
    value: Any
    unit: str
    provenance: str
    source: str | None
    description: str


def provenance(model: BaseModel, prefix: str = "") -> list[ParamInfo]:
    """Every leaf parameter of `model` with its unit and provenance, in declaration order."""
    out: list[ParamInfo] = []
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        path = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            out.extend(provenance(value, path + "."))
            continue
        if isinstance(value, tuple) and value and isinstance(value[0], BaseModel):
            for i, item in enumerate(value):
                out.extend(provenance(item, f"{path}[{i}]."))
            continue
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        out.append(
            ParamInfo(
                path=path,
                value=value.value if isinstance(value, Enum) else value,
                unit=str(extra.get("unit", "")),
                provenance=str(extra.get("provenance", "")),
                source=extra.get("source"),  # type: ignore[arg-type]
                description=(field.description or "").split(" [unit:")[0],
            )
        )
    return out
