"""End-to-end scans of tiny BERT classifiers: the planted trigger is found, the clean model passes."""
from __future__ import annotations

import json

from conftest import TRIGGER
from helpers import run_cli

from scanner import scan
from scanner.errors import ExitCode


def test_planted_trigger_is_top_candidate_and_gate_fails(backdoored, probes, tmp_path):
    out = tmp_path / "r.json"
    res = run_cli("scan", str(backdoored.path), "--probes", str(probes), "--format", "json", "-o", str(out), "-q")
    assert res.exit_code == ExitCode.FINDINGS, res.stderr
    rep = json.loads(out.read_text())
    top = max(rep["candidates"], key=lambda c: c["score"])
    assert top["text"] == TRIGGER
    assert top["target_label"] == 1
    assert top["flip_rate"] >= 0.9
    assert top["attribution_share"] is not None and top["attribution_share"] > 0.3
    assert rep["verdict"] in ("high", "critical")
    assert rep["complete"] is True
    assert {f["path"] for f in rep["target"]["files"]} >= {"config.json", "model.safetensors"}
    assert all(len(f["sha256"]) == 64 for f in rep["target"]["files"])


def test_clean_model_stays_below_gate(clean, probes):
    report = scan(str(clean.path), probes=str(probes))
    assert report.complete
    assert report.level.rank < 3, (report.risk, [(c.text, c.score) for c in report.candidates])
    res = run_cli("scan", str(clean.path), "--probes", str(probes), "-q", "--profile", "quick")
    assert res.exit_code == ExitCode.OK, res.stdout + res.stderr


def test_trigger_does_not_flip_clean_model_as_reference(backdoored, clean, probes):
    """With the clean model as reference, the trigger's reference flip rate is low and drift is reported."""
    report = scan(str(backdoored.path), probes=str(probes), reference=str(clean.path))
    top = max(report.candidates, key=lambda c: c.score)
    assert top.text == TRIGGER
    assert top.reference_flip_rate is not None and top.reference_flip_rate < 0.5
    assert any(e.analysis == "embedding-drift" and e.status == "ok" for e in report.evidence)


def test_deep_profile_searches_phrases_without_errors(backdoored, probes):
    """The deep profile adds two-token phrases; a phrase that merely contains the working trigger is
    minimised away, so the single token stays the top candidate."""
    report = scan(str(backdoored.path), probes=str(probes), profile="deep")
    assert report.complete and not report.errors
    assert max(report.candidates, key=lambda c: c.score).text == TRIGGER
    assert not any(len(c.token_ids) > 1 and TRIGGER in c.tokens for c in report.candidates)
    assert any(len(c.token_ids) == 2 for c in report.candidates)
