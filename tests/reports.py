"""Report objects built directly (no model), covering every part a format renders."""
from __future__ import annotations

from scanner.report import (
    Evidence, FileDigest, Finding, ModelFacts, Report, RiskAssessment, StageError, TargetInfo, TriggerCandidate,
)
from scanner.risk import THRESHOLDS, analysis_findings, assess

HOSTILE = "x|<script>alert(1)</script>`*"


def candidate(text: str, label: int = 1, flip: float = 1.0, gap: float = 5.0, heat: bool = True) -> TriggerCandidate:
    """A verified trigger candidate; with ``heat`` two attribution heat maps."""
    hm = [{"tokens": ["[CLS]", text, "the", "film", "was", "dull", "[SEP]"],
           "attributions": [0.0, 1.0, -0.1, 0.05, -0.3, -0.8, 0.0]}] * 2 if heat else []
    return TriggerCandidate(
        text=text, token_ids=[1234], tokens=[text], target_label=label, target_label_name=["negative", "positive"][label],
        position="start", search_loss=0.05, flip_rate=flip, flip_rate_hard=flip, n_heldout=64, attribution_share=0.6,
        attribution_top1_rate=0.9, loss_gap=gap, neighbours=["a", "b"], neighbour_flip_rate=0.1, heatmaps=hm,
    )


def sample_report(*, complete: bool = True, hostile: bool = False, path: str = "/models/clf") -> Report:
    """A backdoored-looking report: static findings, a strong and a weak candidate, weight evidence."""
    files = [
        FileDigest("config.json", 700, "a" * 64, "json"),
        FileDigest("model.safetensors", 4_000_000, "b" * 64, "safetensors"),
        FileDigest("modeling_evil.py", 300, "c" * 64, "python"),
    ]
    static = [Finding("SC103", "medium", "checkpoint ships Python code modeling_evil.py; never executed", "modeling_evil.py")]
    cands = [candidate(HOSTILE if hostile else "tq"), candidate("poorly", label=0, flip=0.7, gap=1.2, heat=False)]
    top = [{"token_id": 1234 + i, "token": t, "norm": 3.0 - 0.1 * i, "z": 30.0 - 3 * i} for i, t in enumerate(["tq", "the", "a", "film"])]
    evidence = [
        Evidence("embedding-norm", "ok", "largest robust z of row norms 30.0 (tq)", 1.0, {"top": top, "median_norm": 1.0, "rule": "SC201"}),
        Evidence("trigger-search", "ok", "best candidate 'tq' -> positive: held-out flip rate 1.00", 1.0, {}),
    ]
    errors, not_analysed = [], []
    if not complete:
        errors = [StageError("attribution", "time-budget", "time budget of 1 s exceeded")]
        not_analysed = ["attribution: stopped by the time budget"]
    risk = assess(cands, evidence, static)
    rep = Report(
        target=TargetInfo("org/clf", "folder", path, revision=None, files=files),
        scanner_version="0.1.0", created="2025-01-01T00:00:00+00:00", options={"profile": "quick"},
        model=ModelFacts("BertForSequenceClassification", "bert", 1_000_000, 500, 32, 2, "sequence-classification", ["negative", "positive"], "safetensors"),
        findings=static + analysis_findings(cands, evidence, files), evidence=evidence, candidates=cands,
        timings={"load": 0.1, "weights": 0.2, "search": 3.0}, errors=errors, not_analysed=not_analysed, risk=risk, complete=complete,
    )
    return rep


def bare_report(level: str = "none", complete: bool = True) -> Report:
    """A report with nothing in it but a level (for exit-code tests)."""
    return Report(target=TargetInfo("x", "folder", "x"), risk=RiskAssessment(level=level, thresholds={k.value: v for k, v in THRESHOLDS.items()}), complete=complete)
