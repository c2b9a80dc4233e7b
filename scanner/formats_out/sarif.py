"""SARIF 2.1.0 output (OASIS), in the subset GitHub code scanning reads.

Every rule of :mod:`scanner.rules` is listed in ``tool.driver.rules`` (id, name, shortDescription,
fullDescription, help, defaultConfiguration.level, ``security-severity``); every finding of the report
becomes a result with its ``ruleId``, ``level`` and a location at the checkpoint file it concerns
(``config.json``, ``model.safetensors``...). A suppressed finding keeps its result with an external
suppression. An incomplete scan adds an SC001 result and ``executionSuccessful: false`` with the
stage errors as tool-execution notifications, so an incomplete scan never uploads as "no alerts".
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath
from typing import Any

from .. import __version__, rules
from ..report import Finding, Report

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
MODEL_ROOT = "MODELROOT"

#: risk level -> SARIF result level
LEVELS = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "none": "note"}
#: risk level -> GitHub ``security-severity`` (critical > 9.0, high 7.0-8.9, medium 4.0-6.9, low 0.1-3.9)
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0", "none": "0.0"}


def _rule_descriptor(rule: rules.Rule) -> dict[str, Any]:
    sev = rule.severity.value
    return {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.description},
        "fullDescription": {"text": rule.description + (" " + rule.help if rule.help else "")},
        "help": {"text": rule.help or rule.description, "markdown": f"**{rule.code} {rule.name}**: {rule.description}\n\n{rule.help}".strip()},
        "defaultConfiguration": {"level": LEVELS[sev]},
        "properties": {"tags": ["security", "ml-model", "backdoor"], "security-severity": SECURITY_SEVERITY[sev], "precision": "medium"},
    }


class _Locator:
    """Turns checkpoint-relative paths into SARIF artifact locations: relative to ``root`` (the
    repository, usually the working directory) when the model lies under it, else relative to the
    ``MODELROOT`` base id, which ``originalUriBaseIds`` maps to the model folder."""

    def __init__(self, report: Report, root: Path | None):
        self.model_dir = Path(report.target.path).resolve() if report.target.path else None
        self.prefix: PurePosixPath | None = None
        if self.model_dir is not None and root is not None:
            try:
                self.prefix = PurePosixPath(self.model_dir.relative_to(Path(root).resolve()).as_posix())
            except ValueError:
                self.prefix = None

    def location(self, rel: str | None) -> dict[str, Any]:
        rel = rel or "."
        if self.prefix is not None:
            uri = (self.prefix / rel).as_posix() if rel != "." else (self.prefix.as_posix() or ".") + "/"
            return {"uri": uri}
        return {"uri": rel if rel != "." else "./", "uriBaseId": MODEL_ROOT}

    def base_ids(self) -> dict[str, Any]:
        if self.prefix is not None or self.model_dir is None:
            return {}
        return {MODEL_ROOT: {"uri": self.model_dir.as_uri().rstrip("/") + "/", "description": {"text": "the scanned checkpoint folder"}}}


def _fingerprint(report: Report, f: Finding) -> str:
    key = "|".join([report.target.spec, f.code, f.location or "", f.subject or f.message])
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _result(report: Report, f: Finding, index: dict[str, int], loc: _Locator, artifacts: dict[str, int]) -> dict[str, Any]:
    artifact = loc.location(f.location)
    if f.location in artifacts:
        artifact["index"] = artifacts[f.location]
    res: dict[str, Any] = {
        "ruleId": f.code,
        "ruleIndex": index[f.code],
        "level": LEVELS.get(f.severity, "warning"),
        "message": {"text": f.message},
        "locations": [{"physicalLocation": {"artifactLocation": artifact, "region": {"startLine": 1}}}],
        "partialFingerprints": {"scannerFinding/v1": _fingerprint(report, f)},
        "properties": {"severity": f.severity, **({"subject": f.subject} if f.subject else {}),
                       **({"originalSeverity": f.original_severity} if f.original_severity else {})},
    }
    if f.suppressed:
        res["suppressions"] = [{"kind": "external", "justification": f"suppressed by policy (--suppress {f.code})"}]
    return res


def _incomplete_finding(report: Report) -> Finding:
    files = {f.path for f in report.target.files}
    what = "; ".join([f"{e.stage}: {e.message}" for e in report.errors] + report.not_analysed) or "not every stage ran"
    return Finding(rules.SCAN_INCOMPLETE.code, rules.SCAN_INCOMPLETE.severity.value,
                   f"scan incomplete, so no clean result: {what}"[:1000], "config.json" if "config.json" in files else None)


def to_sarif(report: Report, root: Path | None = None) -> dict[str, Any]:
    """The report as a SARIF 2.1.0 log (a dict ready for ``json.dumps``).

    Args:
        report: the report (after any policy).
        root: the repository root that result paths are made relative to (the CLI passes the
            working directory); a model outside it is addressed through the ``MODELROOT`` base id.
    """
    codes = list(rules.RULES)
    index = {c: i for i, c in enumerate(codes)}
    loc = _Locator(report, root)
    artifacts = {f.path: i for i, f in enumerate(report.target.files)}
    findings = list(report.findings)
    if not report.complete:
        findings.append(_incomplete_finding(report))
    notifications = [
        {"level": "error", "message": {"text": f"{e.stage}: {e.type}: {e.message}"}} for e in report.errors
    ] + [{"level": "warning", "message": {"text": f"not analysed: {n}"}} for n in report.not_analysed]
    invocation: dict[str, Any] = {"executionSuccessful": report.complete}
    if report.created:
        invocation["startTimeUtc"] = report.created
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    run: dict[str, Any] = {
        "tool": {"driver": {
            "name": "scanner",
            "version": report.scanner_version or __version__,
            "semanticVersion": report.scanner_version or __version__,
            "rules": [_rule_descriptor(rules.RULES[c]) for c in codes],
        }},
        "invocations": [invocation],
        "artifacts": [
            {"location": loc.location(f.path), "length": f.size, "hashes": {"sha-256": f.sha256}, "properties": {"format": f.format}}
            for f in report.target.files
        ],
        "results": [_result(report, f, index, loc, artifacts) for f in findings],
        "properties": {
            "verdict": report.verdict,
            "riskLevel": report.risk.level,
            "riskScore": report.risk.score,
            "complete": report.complete,
            "target": {"spec": report.target.spec, "kind": report.target.kind, "revision": report.target.revision},
            "rationale": report.risk.rationale,
            "reportSchemaVersion": report.schema_version,
        },
    }
    base = loc.base_ids()
    if base:
        run["originalUriBaseIds"] = base
    return {"$schema": SARIF_SCHEMA_URI, "version": SARIF_VERSION, "runs": [run]}


def render(report: Report, root: Path | None = None) -> str:
    """The SARIF log as indented JSON text."""
    return json.dumps(to_sarif(report, root), indent=2)

