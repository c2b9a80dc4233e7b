"""Small helpers shared by the text formats (verdict wording, escaping)."""
from __future__ import annotations

import copy
import dataclasses
import re
from enum import Enum
from typing import Any

from ..report import Report, RiskLevel

#: Characters a checkpoint could use to take over a terminal or disguise text: C0 controls but tab and
#: newline (ESC starts colour, cursor and window-title sequences), DEL, C1 controls (``\x9b`` is an 8-bit
#: CSI) and the bidirectional overrides of "Trojan Source" (Boucher and Anderson, USENIX Security 2023).
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")

#: What the columns of the candidate tables mean (printed under each table).
CLASSIFIER_COLUMNS = (
    "flip: share of held-out probes (not already the target) that switch to the target label with the trigger inserted; "
    "hard flip: the same on the probes the model was most sure of; loss gap: how far (nats) the candidate's search loss "
    "lies below the other proposals' median (planted triggers are outliers); nbr/part flip: flip rate of its nearest "
    "words in embedding space, or of its words alone for a phrase (a natural word's synonyms flip too); attr. share: "
    "share of integrated-gradients attribution on the trigger tokens; ref. flip: flip rate on the reference model; "
    "score: the calibrated candidate score (high at {high:.2f})."
)
LM_COLUMNS = (
    "inversion score: mean probability of the target's tokens once its first is forced (BAIT); without trigger: share "
    "of held-out prompts whose reply starts with the target anyway; ref. score: inversion score on the reference model; "
    "trigger: recovered trigger (… is the user's message); ASR: attack success rate, share of held-out prompts whose "
    "reply starts with the target with the trigger; partial: ASR with its first half only; ref. ASR: ASR on the "
    "reference; attr. share: share of the target's attribution on the trigger tokens; score: calibrated (high at {high:.2f})."
)
#: What the evidence table's score means (printed under it).
EVIDENCE_NOTE = ("score: each analysis's own statistic in [0, 1], before calibration (a clean model's best word can "
                 "flip every probe); the verdict comes from the risk score at the top")


def gate_state(report: Report) -> str | None:
    """``fails`` / ``passes`` / ``incomplete`` for the gate recorded in ``report.policy.fail_on``
    (None when the report was not gated), mirroring the CLI's exit code."""
    if not report.policy.fail_on:
        return None
    if report.level.rank >= RiskLevel(report.policy.fail_on).rank:
        return "fails"
    return "incomplete" if not report.complete else "passes"


def level_phrase(report: Report, digits: int = 2) -> str:
    """The risk level and score, saying what set the level when the score did not: ``risk score 0.912,
    level critical``, but ``level critical, from finding SC101 (pickle-disguised-as-safetensors); risk
    score 0.000`` when a finding raised the level above the score's, and ``level none, after the policy
    (--suppress/--severity); risk score 0.912`` when the policy lowered it."""
    from .. import rules

    score = report.risk.score
    by_score = RiskLevel.NONE
    for name, threshold in (report.risk.thresholds or {}).items():
        try:
            lv = RiskLevel(name)
        except ValueError:
            continue
        if score >= threshold and lv.rank > by_score.rank:
            by_score = lv
    level, shown = report.level, f"risk score {score:.{digits}f}"
    if level.rank > by_score.rank:
        codes = list(dict.fromkeys(f.code for f in report.findings if not f.suppressed and f.severity == level.value))
        if codes:
            named = ", ".join(f"{c} ({rules.RULES[c].name})" if c in rules.RULES else c for c in codes[:3])
            more = f" and {len(codes) - 3} more" if len(codes) > 3 else ""
            return f"level {level.value}, from finding{'s' if len(codes) > 1 else ''} {named}{more}; {shown}"
    elif level.rank < by_score.rank and (report.policy.suppress or report.policy.severity):
        return f"level {level.value}, after the policy (--suppress/--severity); {shown}"
    return f"{shown}, level {level.value}"


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


def printable(text: str) -> str:
    """``text`` with every terminal control or bidirectional-override character written as a visible
    escape (``\\x1b``, ``\\u202e``): label names, file names and tokens come from the checkpoint."""
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", text)


def printable_report(report: Report) -> Report:
    """A copy of ``report`` whose every string (nested in candidates, findings, evidence details, heat
    maps) went through :func:`printable`, for the formats people read in a terminal; ``report`` itself
    is left as it is (JSON and SARIF escape control characters themselves)."""
    return _printable(report)


def _printable(obj: Any) -> Any:
    if isinstance(obj, Enum):  # RiskLevel is a str: kept as the member it is
        return obj
    if isinstance(obj, str):
        return printable(obj)
    if isinstance(obj, list):
        return [_printable(x) for x in obj]
    if isinstance(obj, tuple):
        return tuple(_printable(x) for x in obj)
    if isinstance(obj, dict):
        return {_printable(k): _printable(v) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        new = copy.copy(obj)
        for f in dataclasses.fields(obj):
            object.__setattr__(new, f.name, _printable(getattr(obj, f.name)))
        return new
    return obj
