"""scanner report diff OLD NEW."""
from __future__ import annotations

import json

from helpers import run_cli
from reports import candidate, sample_report

from scanner.diff import diff_reports
from scanner.policy import apply_policy


def _pair():
    old = sample_report()
    new = apply_policy(sample_report(), suppress=["SC301"])
    new.candidates = [c for c in new.candidates if c.text != "tq"] + [candidate("zx", flip=0.9)]
    new.candidates[0].score = 0.5
    new.target.files[1].sha256 = "d" * 64
    new.target.files.append(new.target.files.pop(2).__class__("extra.json", 10, "e" * 64, "json"))
    return old, new


def test_diff_lists_what_changed():
    old, new = _pair()
    d = diff_reports(old, new)
    assert d.changed and (d.old_verdict, d.new_verdict) == ("critical", "medium")
    assert [c.text for c in d.candidates_added] == ["zx"] and [c.text for c in d.candidates_removed] == ["tq"]
    assert [(c.text, c.old_score, c.new_score) for c in d.candidates_changed] == [("poorly", old.candidates[1].score, 0.5)]
    assert [f.code for f in d.findings_removed] == ["SC301"]  # suppressed now
    assert [f.path for f in d.files_changed] == ["model.safetensors"]
    assert d.files_added == ["extra.json"] and d.files_removed == ["modeling_evil.py"]
    assert not diff_reports(old, sample_report()).changed


def test_cli_diff(tmp_path):
    old, new = _pair()
    (tmp_path / "a.json").write_text(old.to_json())
    (tmp_path / "b.json").write_text(new.to_json())
    res = run_cli("report", "diff", str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    assert res.exit_code == 0
    assert "verdict: critical -> medium" in res.stdout and "- candidate 'tq'" in res.stdout and "~ file model.safetensors" in res.stdout
    res = run_cli("report", "diff", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--format", "json", "--exit-code")
    assert res.exit_code == 1 and json.loads(res.stdout)["changed"] is True
    same = run_cli("report", "diff", str(tmp_path / "a.json"), str(tmp_path / "a.json"), "--exit-code")
    assert same.exit_code == 0 and "no changes" in same.stdout
    md = run_cli("report", "diff", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--format", "markdown", "-o", str(tmp_path / "d.md"))
    assert md.exit_code == 0 and (tmp_path / "d.md").read_text().startswith("### scanner report diff: critical → medium")
