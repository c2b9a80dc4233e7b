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
                       "config.json (or tokenizer_config.json) has auto_map (custom model code); trust_remote_code stays off.")
NAME_CONTENT_MISMATCH = register("SC105", "name-content-mismatch", RiskLevel.MEDIUM,
                                 "A file's name claims one format but its bytes are another; a loader that routes by name would misread it.")
POLYGLOT = register("SC106", "polyglot-file", RiskLevel.HIGH,
                    "A file is valid as two container formats (e.g. safetensors and zip); different loaders see different content. Analysed as both.")
DANGEROUS_PICKLE_IMPORT = register("SC107", "dangerous-pickle-import", RiskLevel.CRITICAL,
                                   "A pickle stream imports a callable that can run code (picklescan: dangerous); the file is never unpickled.")
SUSPICIOUS_PICKLE_IMPORT = register("SC108", "suspicious-pickle-import", RiskLevel.MEDIUM,
                                    "A pickle stream imports a global outside picklescan's allow-list; the file is never unpickled.")
UNINDEXED_SHARD = register("SC109", "unindexed-shard", RiskLevel.MEDIUM,
                           "A *.safetensors file is not part of the weights a loader reads (not in the shard index); its tensors were not analysed.")
UNINDEXED_TENSOR = register("SC110", "unindexed-tensor", RiskLevel.MEDIUM,
                            "A shard holds tensors its index does not map to it; a loader may ignore or mix them.")
EMBEDDING_NORM = register("SC201", "embedding-norm-outlier", RiskLevel.LOW,
                          "An embedding row's norm is an extreme robust outlier.")
EMBEDDING_DRIFT = register("SC202", "embedding-drift", RiskLevel.LOW,
                           "Embedding drift against the reference model is concentrated in a few rows.")
TOKEN_TRIGGER = register("SC301", "token-trigger", RiskLevel.HIGH,
                         "A short token string flips held-out inputs to one label and behaves like a planted trigger.")
