"""Stable rule codes for every kind of finding, each with a default severity and a one-line explanation.

Codes never change meaning once released; new kinds of findings get new codes. ``SC1xx`` are static
(serialization and structure) findings, ``SC2xx`` weight-statistics evidence, ``SC3xx`` behavioural
(trigger) evidence.
"""
from __future__ import annotations

from dataclasses import dataclass

from .report import RiskLevel


@dataclass(frozen=True)
class Rule:
    """A rule: stable ``code``, short ``name``, default ``severity`` and one-line ``description``."""

    code: str
    name: str
    severity: RiskLevel
    description: str


RULES: dict[str, Rule] = {}


def register(code: str, name: str, severity: RiskLevel, description: str) -> Rule:
    """Add a rule to :data:`RULES`. Raises ValueError on a duplicate code."""
    if code in RULES:
        raise ValueError(f"duplicate rule code {code}")
    RULES[code] = Rule(code, name, severity, description)
    return RULES[code]


PICKLE_DISGUISED = register("SC101", "pickle-disguised-as-safetensors", RiskLevel.CRITICAL,
                            "A file named .safetensors holds a pickle or zip archive; loading it could run code.")
PICKLE_FILE = register("SC102", "pickle-file", RiskLevel.MEDIUM,
                       "A pickle-based weight file is present; it is never unpickled by the scanner.")
PYTHON_CODE = register("SC103", "python-code-shipped", RiskLevel.MEDIUM,
                       "The checkpoint ships Python files; the scanner never executes them.")
REMOTE_CODE = register("SC104", "remote-code-auto-map", RiskLevel.MEDIUM,
                       "config.json has auto_map (custom model code); trust_remote_code stays off.")
EMBEDDING_NORM = register("SC201", "embedding-norm-outlier", RiskLevel.LOW,
                          "An embedding row's norm is an extreme robust outlier.")
EMBEDDING_DRIFT = register("SC202", "embedding-drift", RiskLevel.LOW,
                           "Embedding drift against the reference model is concentrated in a few rows.")
TOKEN_TRIGGER = register("SC301", "token-trigger", RiskLevel.HIGH,
                         "A short token string flips held-out inputs to one label and behaves like a planted trigger.")
