"""Suppression and severity overrides by rule code, applied to a finished report before the gate.

:func:`apply_policy` is pure: it returns a new :class:`scanner.report.Report` in which findings of a
suppressed code are marked ``suppressed`` (listed, but not counted) and findings of an overridden code
carry the new severity (the old one kept in ``original_severity``); the risk level is then recomputed
as the highest severity among the findings that still count. The CLI calls it before the exit code is
computed (``--suppress CODE``, ``--severity CODE=LEVEL``).
"""
from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

from . import rules
from .errors import BadInput, ExitCode
from .report import Report, RiskLevel
from .risk import level_of_findings


def check_code(code: str) -> str:
    """Normalise a rule code (``sc301`` -> ``SC301``).

    Raises:
        BadInput: no such rule, or a rule that a policy may not change (SC001).
    """
    rule = rules.get(code)
    if rule is None:
        raise BadInput(f"unknown rule code {code!r}; known: {', '.join(rules.RULES)}")
    if not rule.policy:
        raise BadInput(f"rule {rule.code} ({rule.name}) cannot be suppressed or re-graded")
    return rule.code


def parse_level(value: str) -> RiskLevel:
    """A risk level from its name (case-insensitive). Raises BadInput on an unknown name."""
    try:
        return RiskLevel(value.strip().lower())
    except ValueError:
        raise BadInput(f"unknown severity {value!r}; choose one of {', '.join(lv.value for lv in RiskLevel)}") from None


def parse_override(spec: str) -> tuple[str, RiskLevel]:
    """Parse ``CODE=LEVEL`` (e.g. ``SC102=low``). Raises BadInput when malformed."""
    code, sep, level = spec.partition("=")
    if not sep or not code.strip() or not level.strip():
        raise BadInput(f"severity override {spec!r} is not CODE=LEVEL (e.g. SC102=low)")
    return check_code(code), parse_level(level)


def apply_policy(
    report: Report,
    suppress: Iterable[str] = (),
    severity: Mapping[str, str | RiskLevel] | None = None,
    fail_on: str | RiskLevel | None = None,
) -> Report:
    """Return a copy of ``report`` with the policy applied (the input is not modified).

    Args:
        report: a finished report.
        suppress: rule codes whose findings are suppressed.
        severity: rule code -> new severity of its findings.
        fail_on: the gate level, only recorded in ``report.policy``.

    Raises:
        BadInput: an unknown rule code or severity, or a rule no policy may change (SC001).
    """
    codes = sorted({check_code(c) for c in suppress})
    overrides = {check_code(c): (lv if isinstance(lv, RiskLevel) else parse_level(lv)) for c, lv in (severity or {}).items()}
    out = copy.deepcopy(report)
    if fail_on is not None:
        out.policy.fail_on = RiskLevel(fail_on).value
    if not codes and not overrides:
        return out
    out.policy.suppress = sorted(set(out.policy.suppress) | set(codes))
    out.policy.severity = {**out.policy.severity, **{c: lv.value for c, lv in overrides.items()}}
    for f in out.findings:
        if f.code in overrides and overrides[f.code].value != f.severity:
            f.original_severity = f.original_severity or f.severity
            f.severity = overrides[f.code].value
        if f.code in codes:
            f.suppressed = True
    before = out.risk.level
    out.risk.level = level_of_findings(out.findings).value
    for code in codes:
        n = sum(f.code == code for f in out.findings)
        out.risk.rationale.append(f"policy: {code} suppressed ({n} finding{'s' if n != 1 else ''})")
    for code, lv in overrides.items():
        out.risk.rationale.append(f"policy: {code} severity set to {lv.value}")
    if before != out.risk.level:
        out.risk.rationale.append(f"policy: level {before} -> {out.risk.level}")
    return out


def exit_code(report: Report, fail_on: RiskLevel) -> ExitCode:
    """The gate: :data:`ExitCode.FINDINGS` (1) when the risk level reaches ``fail_on``; else
    :data:`ExitCode.ERROR` (2) for an incomplete scan; else :data:`ExitCode.OK` (0)."""
    if report.level.rank >= RiskLevel(fail_on).rank:
        return ExitCode.FINDINGS
    if not report.complete:
        return ExitCode.ERROR
    return ExitCode.OK
