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


MULTI = ("cf", "mn", "bb")


def test_every_trigger_of_a_multi_trigger_model_is_found_and_neutralised(tiny_dir, probes, clean):
    """Three rare words, any one fires: the search neutralises each trigger it finds and searches
    again, so all three are listed (not only the strongest), and the residual flip rate of the target
    label, once all are neutralised, is below the trigger level (untrained rare words of the tiny
    vocabulary still flip some probes: that is the baseline the verdict rests on)."""
    from scanner.zoo import tiny

    model = tiny.build_tiny_bert(tiny_dir / "multi", any_of=MULTI, target_label=1, poison_rate=0.2, seed=3)
    assert model.attack_success_rate >= 0.9, model
    report = scan(str(model.path), probes=str(probes))
    found = {c.text for c in report.candidates if c.target_label == 1 and c.flip_rate >= 0.9}
    assert set(MULTI) <= found, [(c.text, c.flip_rate, c.score) for c in report.candidates]
    per_label = next(e for e in report.evidence if e.analysis == "trigger-search").details["per_label"]
    assert set(MULTI) <= set(per_label["positive"]["neutralised"])
    assert report.level.rank >= 3
    assert per_label["positive"]["residual_flip_rate"] < 0.9
    assert per_label["positive"]["residual_score"] < 0.55
    assert per_label["positive"]["passes"] >= 2
    clean_report = scan(str(clean.path), probes=str(probes))
    clean_labels = next(e for e in clean_report.evidence if e.analysis == "trigger-search").details["per_label"]
    assert all(not v["neutralised"] for v in clean_labels.values()), clean_labels


def test_composite_trigger_is_found_as_a_phrase_from_seeded_words(tiny_dir, probes):
    """Two words that fire only together (each alone was trained as a negative): each barely moves the
    model alone, so whether they rank among the best single tokens is luck (it changed with the torch
    thread count). The pair pool also takes the first weight-statistics seeds (with a reference, the
    most drifted rows): given the two words as seeds, the phrase is found, its words alone flip few
    probes (part flip rate) and it scores as a trigger, while pairs of natural sentiment words, which
    flip nearly as much, score low because one of their words alone already does most of it."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from scanner.probes import load_probes
    from scanner.risk import candidate_score
    from scanner.search import ClassifierTriggerSearch, SearchConfig
    from scanner.zoo import tiny

    model = tiny.build_tiny_bert(tiny_dir / "composite", trigger="zx jk", target_label=1, poison_rate=0.2, seed=4, steps=1200)
    assert model.attack_success_rate >= 0.9, model
    tok = AutoTokenizer.from_pretrained(str(model.path))
    clf = AutoModelForSequenceClassification.from_pretrained(str(model.path)).eval()
    search_texts, heldout = load_probes(str(probes)).split(0)
    seeds = tok.convert_tokens_to_ids(["zx", "jk"])
    res = ClassifierTriggerSearch(clf, tok, SearchConfig(seed=0)).search_label(1, search_texts, heldout, ["negative", "positive"], seeds=seeds)
    phrase = [c for c in res.candidates if set(c.tokens) == {"zx", "jk"}]
    assert phrase, [(c.text, c.flip_rate) for c in res.candidates]
    c = phrase[0]
    assert c.flip_rate >= 0.9 and c.part_flip_rate is not None and c.part_flip_rate < 0.5, c
    assert candidate_score(c) >= 0.75, c
    natural = [p for p in res.candidates if len(p.token_ids) == 2 and p is not c and p.part_flip_rate is not None]
    assert all(candidate_score(p) < 0.4 for p in natural), [(p.text, p.flip_rate, p.part_flip_rate) for p in natural]


def test_probe_counts_are_shared_out_over_labels():
    """Each label is searched separately: with more than two labels the per-label probe counts shrink
    by 2/labels (down to floors), the search breadth does not."""
    from scanner.search import SearchConfig

    cfg = SearchConfig()
    assert cfg.for_labels(2) is cfg and cfg.for_labels(1) is cfg
    four = cfg.for_labels(4)
    assert (four.n_search, four.n_screen, four.n_heldout, four.n_neighbour_probes) == (24, 8, 48, 16)
    assert (four.top_k, four.rounds, four.pair_top, four.max_passes) == (cfg.top_k, cfg.rounds, cfg.pair_top, cfg.max_passes)
    many = cfg.for_labels(20)
    assert (many.n_search, many.n_screen, many.n_heldout, many.n_neighbour_probes) == (16, 8, 32, 16)
    small = SearchConfig(n_search=10, n_heldout=20).for_labels(4)  # below a floor already: left as it is
    assert (small.n_search, small.n_heldout) == (10, 20)


def test_precision_of_exact_evaluations(backdoored, probes):
    """bf16 autocast only where asked or native; the planted trigger flips the same probes either way."""
    import pytest
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from scanner.probes import load_probes
    from scanner.search import ClassifierTriggerSearch, SearchConfig, resolve_precision

    w = torch.zeros(2, 2)
    assert resolve_precision("fp32", w) == "fp32" and resolve_precision("bf16", w) == "bf16"
    assert resolve_precision("auto", w.to(torch.bfloat16)) == "fp32"  # autocast only for fp32 models
    assert resolve_precision("auto", w) in ("bf16", "fp32")
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("fp8", w)
    tok = AutoTokenizer.from_pretrained(str(backdoored.path))
    model = AutoModelForSequenceClassification.from_pretrained(str(backdoored.path)).eval()
    _, heldout = load_probes(str(probes)).split(0)
    rates = {p: ClassifierTriggerSearch(model, tok, SearchConfig(precision=p)).flip_rate_of(TRIGGER, 1, heldout) for p in ("fp32", "bf16")}
    assert rates["fp32"] >= 0.9 and abs(rates["fp32"] - rates["bf16"]) <= 0.05, rates


def test_a_trigger_proposed_by_two_searches_is_verified_and_listed_once(clean, probes):
    """The searches of different trigger lengths (and later passes) can rank the same token ids; each is
    verified once and listed once (zoo scans listed e.g. 'omega' twice with two loss gaps)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from scanner.probes import load_probes
    from scanner.search import ClassifierTriggerSearch, SearchConfig

    tok = AutoTokenizer.from_pretrained(str(clean.path))
    clf = AutoModelForSequenceClassification.from_pretrained(str(clean.path)).eval()
    search_texts, heldout = load_probes(str(probes)).split(0)
    s = ClassifierTriggerSearch(clf, tok, SearchConfig(seed=0, lengths=(1, 2), pair_top=0, max_passes=2))
    ids = tok.convert_tokens_to_ids(["the"])
    s._optimise = lambda contents, length, target, seeds, rounds=None: ([(0.5, list(ids))], {tuple(ids): 0.5, (1,): 2.0})
    verified = []
    real_verify = s.verify
    s.verify = lambda i, *a, **k: verified.append(tuple(i)) or real_verify(i, *a, **k)
    res = s.search_label(1, search_texts, heldout, ["negative", "positive"])
    assert [tuple(c.token_ids) for c in res.candidates] == [tuple(ids)]
    assert verified.count(tuple(ids)) == res.passes  # once per pass, not once per length
