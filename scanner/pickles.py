"""Static analysis of pickle-based files with picklescan: the imports a pickle stream would make,
without ever unpickling it.

picklescan (https://github.com/mmaitre314/picklescan) disassembles pickle streams (raw pickles,
torch's zip and legacy formats, numpy object arrays, pickles inside zip archives) and classes every
imported global as innocuous, suspicious (not on its allow-list) or dangerous (can run code).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from . import rules
from .report import Finding

_LOGGER = "picklescan"


@dataclass
class PickleScan:
    """Result for one file: ``findings`` (SC107 dangerous / SC108 suspicious imports) and ``problems``:
    one-line messages for what picklescan could not parse (the file is then not fully analysed)."""

    findings: list[Finding] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    dangerous: int = 0
    suspicious: int = 0


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if record.levelno >= logging.ERROR or "could not parse" in msg or msg.startswith("Invalid file"):
            self.messages.append((msg.splitlines() or [""])[0][:200])


def scan_pickle_file(path: Path, rel: str, claimed_suffix: str | None = None) -> PickleScan:
    """Scan ``path`` (shown as ``rel``) with picklescan; never unpickles, never raises for bad input.

    Args:
        path: the file.
        rel: its path relative to the checkpoint, used in messages.
        claimed_suffix: suffix that selects picklescan's torch-format handling (``.bin``, ``.pt``...);
            None lets picklescan judge the bytes (zip or raw pickle).
    """
    from picklescan.scanner import SafetyLevel, scan_bytes

    out = PickleScan()
    log = logging.getLogger(_LOGGER)
    handler = _Collect()
    old_propagate, old_level = log.propagate, log.level
    log.addHandler(handler)
    log.propagate = False  # library code never prints: picklescan's warnings become report entries
    log.setLevel(logging.DEBUG)
    try:
        with open(path, "rb") as fh:
            result = scan_bytes(fh, rel, claimed_suffix)
    except Exception as exc:  # picklescan raises assorted errors on malformed archives
        out.problems.append(f"{rel}: picklescan could not analyse it ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]})")
        return out
    finally:
        log.removeHandler(handler)
        log.propagate, log.level = old_propagate, old_level
    if result.scan_err:
        out.problems.append(f"{rel}: pickle stream only partly parsed; imports after the parse error were not seen")
    out.problems += [f"{rel}: picklescan: {m}" for m in handler.messages
                     if "FOUND" not in m and not (result.scan_err and m.startswith("ERROR: parsing pickle"))]
    seen: set[tuple[str, str, str]] = set()
    for g in result.globals:
        key = (g.module, g.name, g.safety.value)
        if key in seen or g.safety == SafetyLevel.Innocuous:
            continue
        seen.add(key)
        if g.safety == SafetyLevel.Dangerous:
            rule = rules.DANGEROUS_PICKLE_IMPORT
            out.dangerous += 1
        else:
            rule = rules.SUSPICIOUS_PICKLE_IMPORT
            out.suspicious += 1
        out.findings.append(Finding(rule.code, rule.severity.value,
                                    f"{rel}: pickle imports {g.module}.{g.name} ({g.safety.value}); never unpickled", rel))
    return out
