"""The published JSON Schema of the report (``report-<version>.schema.json``, package data).

Validation uses the ``jsonschema`` library (Draft 2020-12).
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from ..report import SCHEMA_VERSION


def schema_name(version: str = SCHEMA_VERSION) -> str:
    """File name of the schema of a report schema version (``report-1.0.schema.json``)."""
    return f"report-{version}.schema.json"


@lru_cache(maxsize=4)
def load_schema(version: str = SCHEMA_VERSION) -> dict[str, Any]:
    """The JSON Schema of report schema ``version`` as a dict.

    Raises:
        ValueError: no schema is shipped for that version.
    """
    try:
        text = resources.files(__name__).joinpath(schema_name(version)).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"no JSON schema for report schema version {version}") from None
    return json.loads(text)


def validation_errors(data: Any, version: str = SCHEMA_VERSION) -> list[str]:
    """Every way ``data`` (a parsed JSON report) violates the schema, as ``path: message`` lines;
    empty when it is valid."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(load_schema(version))
    out = []
    for err in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        out.append(f"{where}: {err.message[:200]}")
    return out


def validate(data: Any, version: str = SCHEMA_VERSION) -> None:
    """Raise ValueError naming the first schema violation (and how many there are) unless ``data``
    is a valid report of schema ``version``."""
    errors = validation_errors(data, version)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ValueError(f"does not match the report schema {version}: {errors[0]}{more}")
