"""--suppress / --severity: a pure policy on the report, applied before the exit code."""
from __future__ import annotations

import json

import pytest
from helpers import assert_one_line_error, run_cli
from reports import sample_report

from scanner.cli import exit_code
from scanner.errors import BadInput, ExitCode
from scanner.policy import apply_policy
from scanner.report import RiskLevel
from scanner.risk import level_of_findings


def test_level_is_the_highest_finding_severity():
    rep = sample_report()
    assert rep.risk.level == "critical" == level_of_findings(rep.findings).value
    assert {f.code for f in rep.findings} == {"SC103", "SC201", "SC301"}


def test_suppression_is_pure_and_lowers_the_level():
    rep = sample_report()
    before = rep.to_json()
    out = apply_policy(rep, suppress=["sc301"], fail_on="high")
    assert rep.to_json() == before  # input untouched
    assert out.risk.level == "medium" and out.policy.suppress == ["SC301"] and out.policy.fail_on == "high"
    assert [f.code for f in out.findings if f.suppressed] == ["SC301"]  # listed, not dropped
    assert any("SC301 suppressed" in r for r in out.risk.rationale)
    assert exit_code(out, RiskLevel.HIGH) == ExitCode.OK
    assert exit_code(apply_policy(rep, suppress=["SC301", "SC201", "SC103"]), RiskLevel.LOW) == ExitCode.OK


def test_severity_override_changes_findings_and_level():
    out = apply_policy(sample_report(), severity={"SC301": "low", "SC201": "none", "SC103": "high"})
    sev = {f.code: (f.severity, f.original_severity) for f in out.findings}
    assert sev == {"SC301": ("low", "critical"), "SC201": ("none", "medium"), "SC103": ("high", "medium")}
    assert out.risk.level == "high"
    assert apply_policy(sample_report(), {}, {}).risk.level == "critical"


def test_policy_rejects_unknown_codes_and_sc001():
    with pytest.raises(BadInput, match="unknown rule code"):
        apply_policy(sample_report(), suppress=["SC999"])
    with pytest.raises(BadInput, match="cannot be suppressed"):
        apply_policy(sample_report(), suppress=["SC001"])
    with pytest.raises(BadInput, match="unknown severity"):
        apply_policy(sample_report(), severity={"SC301": "urgent"})


@pytest.fixture
def fake_scan(monkeypatch):
    """Make `scanner scan` return a constructed report (no model), to test the CLI's gate fast."""
    state = {"complete": True}

    def fake(target, opts, progress=None, on_hang=None, **_kw):
        progress("load", "started")
        return sample_report(complete=state["complete"]), None

    monkeypatch.setattr("scanner.pipeline.scan_to_report", fake)
    return state


def test_cli_suppress_and_severity_drive_the_exit_code(fake_scan, tmp_path):
    out = tmp_path / "r.json"
    assert run_cli("scan", "m", "-q", "-o", str(out)).exit_code == ExitCode.FINDINGS
    res = run_cli("scan", "m", "-q", "-o", str(out), "--suppress", "SC301", "--suppress", "SC201")
    assert res.exit_code == ExitCode.OK, res.stderr
    data = json.loads(out.read_text())
    assert data["verdict"] == "medium" and data["policy"] == {"suppress": ["SC201", "SC301"], "severity": {}, "fail_on": "high"}
    assert {f["code"] for f in data["findings"] if f["suppressed"]} == {"SC201", "SC301"}
    res = run_cli("scan", "m", "-q", "--format", "json", "--suppress", "SC301", "--suppress", "SC201", "--severity", "SC103=high")
    assert res.exit_code == ExitCode.FINDINGS and json.loads(res.stdout)["verdict"] == "high"
    res = run_cli("scan", "m", "-q", "--format", "json", env={"SCANNER_SUPPRESS": "SC301, SC201", "SCANNER_SEVERITY": "SC103=low"})
    assert res.exit_code == ExitCode.OK and json.loads(res.stdout)["verdict"] == "low"


def test_cli_incomplete_without_gate_findings_exits_2(fake_scan):
    fake_scan["complete"] = False
    res = run_cli("scan", "m", "-q", "--format", "json", "--suppress", "SC301")
    assert res.exit_code == ExitCode.ERROR
    assert json.loads(res.stdout)["verdict"] == "incomplete"
    assert [l for l in res.stderr.splitlines() if l.startswith("error:")] == [
        "error: scan incomplete: time budget of 1 s exceeded; attribution: stopped by the time budget"]
    res = run_cli("scan", "m", "-q", "--format", "json")  # the trigger was found before the budget ran out
    assert res.exit_code == ExitCode.FINDINGS and "warning: scan incomplete" in res.stderr


def test_cli_rejects_bad_policy_options_in_one_line(fake_scan):
    assert_one_line_error(run_cli("scan", "m", "--suppress", "SC999"), "unknown rule code")
    assert_one_line_error(run_cli("scan", "m", "--severity", "SC102"), "CODE=LEVEL")
    assert_one_line_error(run_cli("scan", "m", "--severity", "SC102=urgent"), "unknown severity")
    assert_one_line_error(run_cli("scan", "m", "--fail-on", "sometimes"), "--fail-on")
