"""A scan stopped by the time budget or Ctrl-C still writes its report, marked incomplete, in the
requested format: exit 2, or 1 when a finding at or above --fail-on was already made."""
from __future__ import annotations

import json

import pytest
from helpers import run_cli
from reports import candidate

from scanner.errors import ExitCode
from scanner.report import Report


def test_time_budget_writes_incomplete_report_in_every_requested_format(backdoored, probes, tmp_path):
    for fmt, name in (("json", "r.json"), ("sarif", "r.sarif")):
        out = tmp_path / name
        res = run_cli("scan", str(backdoored.path), "--probes", str(probes), "--time-budget", "0.001", "--format", fmt, "-o", str(out), "-q")
        assert res.exit_code == ExitCode.ERROR, res.stderr
        assert [l for l in res.stderr.splitlines() if l.startswith("error:")][0].startswith("error: scan incomplete")
        if fmt == "json":
            rep = Report.load(out)
            assert not rep.complete and rep.verdict == "incomplete" and any(e.type == "time-budget" for e in rep.errors)
        else:
            run = json.loads(out.read_text())["runs"][0]
            assert run["invocations"][0]["executionSuccessful"] is False
            assert "SC001" in {r["ruleId"] for r in run["results"]}


def _interrupt(*_a, **_k):
    raise KeyboardInterrupt


def test_ctrl_c_after_a_trigger_was_found_exits_1_with_the_report(backdoored, probes, tmp_path, monkeypatch):
    """Ctrl-C during attribution, after the search had found a trigger: the gate already fails."""
    import scanner.pipeline as pl

    def found(run, ck, opts):
        run.report.candidates.append(candidate("tq", heat=False))

    monkeypatch.setattr(pl, "_classifier_search", found)
    monkeypatch.setattr(pl, "_attribution", _interrupt)
    out = tmp_path / "r.md"
    res = run_cli("scan", str(backdoored.path), "--probes", str(probes), "-o", str(out), "-q")
    assert res.exit_code == ExitCode.FINDINGS, res.stderr
    assert "warning: scan incomplete" in res.stderr and "interrupted" in res.stderr
    md = out.read_text()
    assert "**scan incomplete**" in md and "SC301" in md and "interrupted" in md


@pytest.mark.parametrize("fmt", ["json", "html"])
def test_ctrl_c_before_any_finding_exits_2_with_the_report(backdoored, probes, tmp_path, monkeypatch, fmt):
    import scanner.pipeline as pl

    monkeypatch.setattr(pl, "_weights", _interrupt)
    out = tmp_path / f"r.{fmt}"
    res = run_cli("scan", str(backdoored.path), "--probes", str(probes), "--format", fmt, "-o", str(out), "-q")
    assert res.exit_code == ExitCode.ERROR
    text = out.read_text()
    if fmt == "json":
        rep = Report.from_json(text)
        assert rep.verdict == "incomplete" and rep.errors[-1].type == "interrupted" and rep.target.files
    else:
        assert "verdict: INCOMPLETE" in text and "interrupted" in text


def test_label_not_searched_is_incomplete_not_clean(tmp_path):
    """An untrained classifier assigns every probe to one label, so that label has no probe to flip and
    is not searched: the scan did not cover it and must not come out clean (exit 0)."""
    from synth import write_untrained_bert

    from scanner.zoo import tiny

    model = write_untrained_bert(tmp_path / "untrained")
    probes = tiny.write_probes(tmp_path / "p.txt", n=64, seed=7)
    res = run_cli("scan", str(model), "--probes", str(probes), "--only", "search", "--profile", "quick", "--format", "json", "-q")
    assert res.exit_code == ExitCode.ERROR, res.stderr
    rep = Report.from_json(res.stdout)
    assert not rep.complete and rep.verdict == "incomplete"
    assert any("not searched" in n for n in rep.not_analysed), rep.not_analysed
    assert "error: scan incomplete" in res.stderr
