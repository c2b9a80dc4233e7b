"""Small helpers shared by the text formats (verdict wording, escaping)."""
from __future__ import annotations

from ..report import Report, RiskLevel

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
