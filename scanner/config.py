"""Configuration files for ``scanner scan``.

Looked up in the current directory only: ``scanner.toml`` (options as top-level keys) or else the
``[tool.scanner]`` table of ``pyproject.toml``. Keys are the long option names, with dashes or
underscores (``fail-on = "medium"``, ``suppress = ["SC103"]``, ``[tool.scanner.severity] SC102 =
"low"``). Precedence: command line > environment (``SCANNER_<OPTION>``, e.g. ``SCANNER_FAIL_ON``) >
file > defaults; the CLI feeds the file to click as its ``default_map`` and names every option's
environment variable, so click applies that order and reports each value's source.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BadInput

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_FILE = "scanner.toml"
PYPROJECT = "pyproject.toml"
ENV_PREFIX = "SCANNER_"


@dataclass
class ConfigFile:
    """Options read from a config file: ``path`` (None when there is none), ``section`` (where in the
    file: ``top level`` or ``[tool.scanner]``), and ``values`` keyed by option name with underscores."""

    path: Path | None = None
    section: str = ""
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``scanner.toml`` / ``pyproject.toml [tool.scanner]`` for messages."""
        if self.path is None:
            return "no config file"
        return self.path.name + (f" {self.section}" if self.section.startswith("[") else "")


def env_var(option: str) -> str:
    """The environment variable of an option name (``fail_on`` -> ``SCANNER_FAIL_ON``)."""
    return ENV_PREFIX + option.upper().replace("-", "_")


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"{path.name}: invalid TOML ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path.name}: cannot read ({exc})") from None


def _normalise(table: dict[str, Any], label: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name == "severity" and isinstance(value, dict):  # [tool.scanner.severity] SC102 = "low"
            value = [f"{code}={level}" for code, level in value.items()]
        if isinstance(value, dict):
            raise BadInput(f"{label}: option {key!r} must be a value or a list, not a table")
        values[name] = value
    return values


def load_config(directory: str | Path | None = None) -> ConfigFile:
    """The config file of ``directory`` (default: the working directory); an empty
    :class:`ConfigFile` when there is none.

    Raises:
        BadInput: the file is not valid TOML, or an option is a table.
    """
    d = Path(directory) if directory is not None else Path.cwd()
    own = d / CONFIG_FILE
    if own.is_file():
        return ConfigFile(own, "top level", _normalise(_read(own), own.name))
    py = d / PYPROJECT
    if py.is_file():
        table = _read(py).get("tool", {}).get("scanner")
        if table is not None:
            if not isinstance(table, dict):
                raise BadInput(f"{py.name}: [tool.scanner] must be a table")
            return ConfigFile(py, "[tool.scanner]", _normalise(table, f"{py.name} [tool.scanner]"))
    return ConfigFile()
