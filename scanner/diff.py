"""What changed between two reports (``scanner report diff OLD.json NEW.json``).

Candidates are matched by (trigger text, target label), findings by (rule code, file, subject or
message), files by path; a file whose sha256 differs is ``changed``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .report import Finding, Report, TriggerCandidate


@dataclass
class CandidateChange:
    """A trigger candidate present in both reports whose score or flip rate moved."""

    text: str
    target_label_name: str
    old_score: float
    new_score: float
    old_flip_rate: float
    new_flip_rate: float


@dataclass
class FileChange:
    """A checkpoint file whose content (sha256) differs between the reports."""

    path: str
    old_sha256: str
    new_sha256: str
    old_size: int
    new_size: int


@dataclass
class ReportDiff:
    """The difference of two reports; ``old_*``/``new_*`` pairs are equal when unchanged."""

    old_target: str
    new_target: str
    old_verdict: str
    new_verdict: str
    old_score: float
    new_score: float
    old_complete: bool
    new_complete: bool
    candidates_added: list[TriggerCandidate] = field(default_factory=list)
    candidates_removed: list[TriggerCandidate] = field(default_factory=list)
    candidates_changed: list[CandidateChange] = field(default_factory=list)
    findings_added: list[Finding] = field(default_factory=list)
    findings_removed: list[Finding] = field(default_factory=list)
    files_added: list[str] = field(default_factory=list)
    files_removed: list[str] = field(default_factory=list)
    files_changed: list[FileChange] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """True when anything that matters for the gate or the checkpoint's identity changed."""
        return bool(
            self.old_verdict != self.new_verdict or abs(self.old_score - self.new_score) > 1e-9 or self.old_complete != self.new_complete
            or self.candidates_added or self.candidates_removed or self.candidates_changed
            or self.findings_added or self.findings_removed or self.files_added or self.files_removed or self.files_changed
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict (candidates reduced to text, label, score and flip rate)."""
        d = asdict(self)
        for key in ("candidates_added", "candidates_removed"):
            d[key] = [{"text": c.text, "target_label_name": c.target_label_name, "score": c.score, "flip_rate": c.flip_rate}
                      for c in getattr(self, key)]
        d["changed"] = self.changed
        return d

    def summary_lines(self) -> list[str]:
        """The differences as short plain-text lines (empty when nothing changed)."""
        out = []
        if self.old_verdict != self.new_verdict:
            out.append(f"verdict: {self.old_verdict} -> {self.new_verdict}")
        if abs(self.old_score - self.new_score) > 1e-9:
            out.append(f"risk score: {self.old_score:.2f} -> {self.new_score:.2f} ({self.new_score - self.old_score:+.2f})")
        if self.old_complete != self.new_complete:
            out.append(f"complete: {self.old_complete} -> {self.new_complete}")
        out += [f"+ candidate '{c.text}' -> {c.target_label_name} (score {c.score:.2f}, flip rate {c.flip_rate:.0%})" for c in self.candidates_added]
        out += [f"- candidate '{c.text}' -> {c.target_label_name} (score {c.score:.2f}, flip rate {c.flip_rate:.0%})" for c in self.candidates_removed]
        out += [f"~ candidate '{c.text}' -> {c.target_label_name}: score {c.old_score:.2f} -> {c.new_score:.2f}, "
                f"flip rate {c.old_flip_rate:.0%} -> {c.new_flip_rate:.0%}" for c in self.candidates_changed]
        out += [f"+ finding {f.code} [{f.severity}] {f.message}" for f in self.findings_added]
        out += [f"- finding {f.code} [{f.severity}] {f.message}" for f in self.findings_removed]
        out += [f"+ file {p}" for p in self.files_added]
        out += [f"- file {p}" for p in self.files_removed]
        out += [f"~ file {c.path}: sha256 {c.old_sha256[:12]}… -> {c.new_sha256[:12]}…" for c in self.files_changed]
        return out


def _cand_key(c: TriggerCandidate) -> tuple[str, str]:
    return (c.text, c.target_label_name)


def _finding_key(f: Finding) -> tuple[str, str, str]:
    return (f.code, f.location or "", f.subject if f.subject is not None else f.message)


def diff_reports(old: Report, new: Report, tolerance: float = 0.005) -> ReportDiff:
    """Compare two reports. Candidate scores or flip rates that moved by less than ``tolerance`` count as unchanged."""
    d = ReportDiff(old.target.spec, new.target.spec, old.verdict, new.verdict, old.risk.score, new.risk.score, old.complete, new.complete)
    oc = {_cand_key(c): c for c in old.candidates}
    nc = {_cand_key(c): c for c in new.candidates}
    d.candidates_added = [c for k, c in nc.items() if k not in oc]
    d.candidates_removed = [c for k, c in oc.items() if k not in nc]
    for k in oc.keys() & nc.keys():
        a, b = oc[k], nc[k]
        if abs(a.score - b.score) >= tolerance or abs(a.flip_rate - b.flip_rate) >= tolerance:
            d.candidates_changed.append(CandidateChange(a.text, a.target_label_name, a.score, b.score, a.flip_rate, b.flip_rate))
    d.candidates_changed.sort(key=lambda c: -abs(c.new_score - c.old_score))
    of = {_finding_key(f): f for f in old.active_findings}
    nf = {_finding_key(f): f for f in new.active_findings}
    d.findings_added = [f for k, f in nf.items() if k not in of]
    d.findings_removed = [f for k, f in of.items() if k not in nf]
    ofiles = {f.path: f for f in old.target.files}
    nfiles = {f.path: f for f in new.target.files}
    d.files_added = sorted(nfiles.keys() - ofiles.keys())
    d.files_removed = sorted(ofiles.keys() - nfiles.keys())
    d.files_changed = [FileChange(p, ofiles[p].sha256, nfiles[p].sha256, ofiles[p].size, nfiles[p].size)
                       for p in sorted(ofiles.keys() & nfiles.keys()) if ofiles[p].sha256 != nfiles[p].sha256]
    return d
