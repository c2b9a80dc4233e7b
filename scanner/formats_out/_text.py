"""Small helpers shared by the text formats (verdict wording, escaping)."""
from __future__ import annotations

from ..report import Report, RiskLevel


def gate_state(report: Report) -> str | None:
    """``fails`` / ``passes`` / ``incomplete`` for the gate recorded in ``report.policy.fail_on``
    (None when the report was not gated), mirroring the CLI's exit code."""
    if not report.policy.fail_on:
        return None
    if report.level.rank >= RiskLevel(report.policy.fail_on).rank:
        return "fails"
    return "incomplete" if not report.complete else "passes"


def model_line(report: Report) -> str:
    """One line of model facts: architecture, task, parameters, labels."""
    m = report.model
    parts = [m.architecture or "unknown architecture", m.task]
    if m.parameters:
        parts.append(f"{m.parameters:,} parameters")
    if m.labels:
        parts.append("labels " + ", ".join(m.labels))
    return " · ".join(parts)


def pct(x: float | None) -> str:
    """A rate as a percentage, ``-`` for None."""
    return "-" if x is None else f"{x:.0%}"
