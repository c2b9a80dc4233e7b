"""Report JSON round trip, `report show`, exit-code mapping, time budget."""
from __future__ import annotations

from helpers import run_cli

from scanner import scan
from scanner.cli import exit_code
from scanner.errors import ExitCode
from scanner.report import Report, RiskAssessment, RiskLevel, TargetInfo


def test_json_round_trip_and_report_show(backdoored, probes, tmp_path):
    out = tmp_path / "r.json"
    res = run_cli("scan", str(backdoored.path), "--probes", str(probes), "--profile", "quick", "-q", "-o", str(out))
    assert res.exit_code == ExitCode.FINDINGS
    rep = Report.load(out)
    assert Report.from_json(rep.to_json()) == rep
    assert rep.candidates and rep.candidates[0].heatmaps is not None
    shown = run_cli("report", "show", str(out))
    assert shown.exit_code == 0
    assert "verdict" in shown.stdout.lower() and rep.verdict.upper() in shown.stdout
    as_json = run_cli("report", "show", str(out), "--format", "json")
    assert Report.from_json(as_json.stdout) == rep


def _report(level: str, complete: bool) -> Report:
    return Report(target=TargetInfo("x", "folder", "x"), risk=RiskAssessment(level=level), complete=complete)


def test_exit_codes_follow_level_gate_and_completeness():
    assert exit_code(_report("none", True), RiskLevel.HIGH) == ExitCode.OK
    assert exit_code(_report("medium", True), RiskLevel.HIGH) == ExitCode.OK
    assert exit_code(_report("medium", True), RiskLevel.MEDIUM) == ExitCode.FINDINGS
    assert exit_code(_report("high", True), RiskLevel.HIGH) == ExitCode.FINDINGS
    assert exit_code(_report("high", False), RiskLevel.HIGH) == ExitCode.FINDINGS
    assert exit_code(_report("low", False), RiskLevel.HIGH) == ExitCode.ERROR
    assert _report("low", False).verdict == "incomplete"


def test_time_budget_stops_cleanly_and_marks_incomplete(backdoored, probes):
    rep = scan(str(backdoored.path), probes=str(probes), time_budget=1e-3)
    assert not rep.complete and rep.verdict == "incomplete"
    assert any(e.type == "time-budget" for e in rep.errors)
