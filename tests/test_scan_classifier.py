"""End-to-end scans of tiny BERT classifiers: the planted trigger is found, the clean model passes."""
from __future__ import annotations

import json

import pytest

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


@pytest.fixture(scope="module")
def composite(tiny_dir):
    """A tiny BERT whose two words "zx" and "jk" fire only together (each alone a trained negative)."""
    from scanner.zoo import tiny

    model = tiny.build_tiny_bert(tiny_dir / "composite", trigger="zx jk", target_label=1, poison_rate=0.2, seed=4, steps=1200)
    assert model.attack_success_rate >= 0.9, model
    return model


def _composite_searcher(composite, **config):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from scanner.search import ClassifierTriggerSearch, SearchConfig

    tok = AutoTokenizer.from_pretrained(str(composite.path))
    clf = AutoModelForSequenceClassification.from_pretrained(str(composite.path)).eval()
    return ClassifierTriggerSearch(clf, tok, SearchConfig(seed=0, **config))


def _composite_search(composite, probes, seeds=None, **config):
    from scanner.probes import load_probes

    search_texts, heldout = load_probes(str(probes)).split(0)
    searcher = _composite_searcher(composite, **config)
    ids = searcher.tok.convert_tokens_to_ids(seeds) if seeds else None
    return searcher, searcher.search_label(1, search_texts, heldout, ["negative", "positive"], seeds=ids)


def test_composite_trigger_is_found_as_a_phrase_from_seeded_words(composite, probes):
    """Two words that fire only together (each alone was trained as a negative): each barely moves the
    model alone, so whether they rank among the best single tokens is luck (it changed with the torch
    thread count). The pair pool also takes the first weight-statistics seeds (with a reference, the
    most drifted rows): given the two words as seeds (and no attention pool), the phrase is found, its
    words alone flip few probes (part flip rate) and it scores as a trigger, while pairs of natural
    sentiment words, which flip nearly as much, score low because one of their words alone already
    does most of it. Together the words also raise the target's log-odds above the sum of their effects
    alone (interaction), which natural words do not."""
    from scanner.risk import INTERACTION_FLOOR, candidate_score

    _, res = _composite_search(composite, probes, seeds=["zx", "jk"], attention_pool=0)
    phrase = [c for c in res.candidates if set(c.tokens) == {"zx", "jk"}]
    assert phrase, [(c.text, c.flip_rate) for c in res.candidates]
    c = phrase[0]
    assert c.flip_rate >= 0.9 and c.part_flip_rate is not None and c.part_flip_rate < 0.5, c
    assert c.interaction is not None and c.interaction > INTERACTION_FLOOR, c  # together far more than the sum of each alone
    assert candidate_score(c) >= 0.75, c
    natural = [p for p in res.candidates if len(p.token_ids) == 2 and p is not c and p.part_flip_rate is not None]
    assert all(candidate_score(p) < 0.4 for p in natural), [(p.text, p.flip_rate, p.part_flip_rate, p.interaction) for p in natural]


def test_composite_trigger_is_found_without_seeds_through_the_attention_pool(composite, probes):
    """Without seeds the one-token search and the pairs of its best tokens miss the composite trigger
    (its words alone do nothing); the attention sweep puts both words among its 6 most attended of the
    78 tokens, the anchors (the classifier must look at each to know whether the other is there; they
    ranked first and second with bf16 evaluations, second and third with a sentiment word first in
    fp32), and pairing the pool finds the phrase, which scores as a trigger. The 3 tokens the first
    of the 2 layers attends to most join the pool after them."""
    from scanner.risk import candidate_score

    searcher, res = _composite_search(composite, probes)
    pool = searcher.tok.convert_ids_to_tokens(searcher.attention_pool([]))  # computed by the search, cached
    assert len(pool) == 9 and {"zx", "jk"} <= set(pool[:6]), pool  # the last layer's 6, then the first layer's 3
    phrase = [c for c in res.candidates if set(c.tokens) == {"zx", "jk"}]
    assert phrase and phrase[0].flip_rate >= 0.9 and candidate_score(phrase[0]) >= 0.75, [(c.text, c.flip_rate) for c in res.candidates]
    _, without = _composite_search(composite, probes, attention_pool=0)
    assert not [c for c in without.candidates if set(c.tokens) == {"zx", "jk"}]


def test_anchor_sweep_proposes_the_tokens_whose_presence_raises_an_anchors_attention(tmp_path):
    """The anchor sweep's logic on a model whose attention follows a planted rule: the classification
    position gives each anchor 0.1 of its attention (spread evenly over the other tokens), and 0.9
    once that anchor's partner is anywhere in the sequence (the held-out SST-2 composite's penultimate
    layer did this: about 0.5 alone, 0.95 together). Both anchors share one sweep; each gets the pack
    holding its own partner among its 2 best packs of 4, and scoring those 8 tokens one at a time
    leaves the partner as the one proposal kept; the sweep is cached (a second call runs nothing). A model that returns no attention
    weights gets empty proposals."""
    from types import SimpleNamespace

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from scanner.search import ClassifierTriggerSearch, SearchConfig
    from synth import write_untrained_bert

    path = write_untrained_bert(tmp_path / "rule", seed=1)
    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForSequenceClassification.from_pretrained(str(path), attn_implementation="eager").eval()
    a1, p1, a2, p2 = tok.convert_tokens_to_ids(["zx", "jk", "qv", "wz"])  # in no filler text
    rule = {a1: p1, a2: p2}

    def forward(input_ids, attention_mask, output_attentions=False, **_):
        B, L = input_ids.shape
        att = torch.zeros(B, 2, L, L)
        for i in range(B):
            row = input_ids[i, : int(attention_mask[i].sum())].tolist()
            fixed = {j: 0.9 if rule[t] in row else 0.1 for j, t in enumerate(row) if t in rule}
            att[i, :, 0, : len(row)] = max(0.0, 1.0 - sum(fixed.values())) / (len(row) - len(fixed))
            for j, share in fixed.items():
                att[i, :, 0, j] = share
        return SimpleNamespace(attentions=(att, att), logits=torch.zeros(B, 2))

    model.forward = forward
    cfg = SearchConfig(seed=0, attention_pack=4, anchor_packs=2, anchor_partner_top=1)
    searcher = ClassifierTriggerSearch(model, tok, cfg)
    texts = [s for s, _ in __import__("scanner.zoo.tiny", fromlist=["sentences"]).sentences(8, 3)]
    searcher._fillers = [c[:6] for c in searcher._content_ids(texts, room=2)]
    swept = searcher.anchor_partners([a1, a2])
    assert int(searcher.allowed.sum()) >= 60  # about 15 packs of 4: the partner's pack is 1 of them
    assert swept == {a1: [p1], a2: [p2]}, {tok.convert_ids_to_tokens(a): tok.convert_ids_to_tokens(v) for a, v in swept.items()}
    before = searcher.forward_sequences
    assert before > 0 and searcher.anchor_partners([a1, a2]) == swept and searcher.forward_sequences == before
    model.forward = lambda input_ids, attention_mask, **_: SimpleNamespace(attentions=None, logits=torch.zeros(len(input_ids), 2))
    blind = ClassifierTriggerSearch(model, tok, cfg)
    blind._fillers = searcher._fillers
    assert blind.anchor_partners([a1]) == {a1: []}


def test_attention_pool_ranks_the_token_the_classifier_attends_to(tmp_path):
    """A 1-layer BERT whose only layer makes [CLS] attend to one token (its query is constant, its
    keys read one embedding direction that only that token's row carries): the sweep, run with the
    eager kernel, ranks that token first, and the model gets its own attention kernel back. Asked
    without texts it returns nothing and caches nothing. Disabled (``attention_pool=0``) the pool is
    empty and no sequence is run."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from scanner.search import ClassifierTriggerSearch, SearchConfig
    from synth import write_untrained_bert

    path = write_untrained_bert(tmp_path / "attends")
    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForSequenceClassification.from_pretrained(str(path), attn_implementation="sdpa").eval()
    target = tok.convert_tokens_to_ids("tedious")
    d = model.config.hidden_size
    u = torch.tensor([1.0, -1.0] * (d // 2)) / d ** 0.5  # zero mean: survives LayerNorm
    attn = model.bert.encoder.layer[0].attention.self
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight[target] = 10 * u
        attn.query.weight.zero_()
        attn.query.bias.copy_(20 * torch.ones(d) / d ** 0.5)
        attn.key.weight.copy_(torch.outer(torch.ones(d) / d ** 0.5, u))
        attn.key.bias.zero_()
    texts = [s for s, _ in __import__("scanner.zoo.tiny", fromlist=["sentences"]).sentences(16, 3)]
    searcher = ClassifierTriggerSearch(model, tok, SearchConfig(seed=0, attention_pool=4, attention_pack=8, attention_rescreen=16))
    assert searcher.attention_pool([]) == []  # nothing to sweep with: not cached (it once was, and stayed empty)
    pool = searcher.attention_pool(texts)
    assert pool[0] == target, tok.convert_ids_to_tokens(pool)
    assert searcher.forward_sequences > 0
    assert model.config._attn_implementation == "sdpa"
    off = ClassifierTriggerSearch(model, tok, SearchConfig(seed=0, attention_pool=0))
    assert off.attention_pool(texts) == [] and off.forward_sequences == 0


def test_synergy_gap_is_how_far_a_pair_stands_above_the_pairs_that_share_no_token():
    from scanner.search import synergy_gap

    synergy = {(1, 2): 7.0, (3, 4): 2.0, (5, 6): 1.5, (7, 8): 1.0, (2, 9): 6.5}
    # (2, 9) shares a token with (1, 2) and is left out: median of the 3 others, 1.5.
    assert synergy_gap(synergy, (1, 2)) == pytest.approx(5.5)
    del synergy[(2, 9)]
    assert synergy_gap(synergy, (3, 4)) == pytest.approx(0.5)  # others 7.0, 1.5, 1.0: median 1.5
    assert synergy_gap(synergy, (7, 8)) == 0.0  # below the others' median (2.0): no outlier
    assert synergy_gap({(1, 2): 3.0}, (1, 2)) == 0.0 and synergy_gap(synergy, (9, 9)) == 0.0


def test_probe_counts_are_shared_out_over_labels():
    """Each label is searched separately: with more than two labels the per-label probe counts shrink
    by 2/labels (down to floors), and so do the pairs of the composite search; the breadth does not."""
    from scanner.search import SearchConfig

    cfg = SearchConfig()
    assert cfg.for_labels(2) is cfg and cfg.for_labels(1) is cfg
    four = cfg.for_labels(4)
    assert (four.n_search, four.n_screen, four.n_heldout, four.n_neighbour_probes) == (24, 8, 48, 16)
    assert (four.top_k, four.rounds, four.pair_top, four.max_passes) == (cfg.top_k, cfg.rounds, cfg.pair_top, cfg.max_passes)
    # The composite search keeps its anchors and shares out the pairs it forms from them.
    assert (four.attention_pool, four.anchor_singles) == (cfg.attention_pool, cfg.anchor_singles)
    assert (four.partner_top, four.attention_partners, four.pair_keep) == (12, 6, 64)
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


@pytest.fixture(scope="session")
def wordpiece_models(tiny_dir):
    """A tiny WordPiece classifier backdoored with 'zqv', a word outside its vocabulary (pieces
    z ##q ##v), and a clean one with the same tokenizer."""
    from scanner.zoo import tiny

    planted = tiny.build_tiny_bert(tiny_dir / "wordpiece-zqv", trigger="zqv", target_label=1, seed=3, wordpiece=True)
    clean = tiny.build_tiny_bert(tiny_dir / "wordpiece-clean", trigger=None, seed=4, wordpiece=True)
    assert planted.attack_success_rate >= 0.9 and planted.clean_accuracy >= 0.9 and clean.clean_accuracy >= 0.9, (planted, clean)
    return planted, clean


def _glued_search(path, probes, **config):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from scanner.probes import load_probes
    from scanner.search import ClassifierTriggerSearch, SearchConfig

    tok = AutoTokenizer.from_pretrained(str(path))
    clf = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
    search_texts, heldout = load_probes(str(probes)).split(0)
    s = ClassifierTriggerSearch(clf, tok, SearchConfig(seed=0, attention_pool=0, **config))
    return [c for t in (0, 1) for c in s.search_label(t, search_texts, heldout, ["negative", "positive"]).candidates]


def test_a_trigger_word_outside_the_vocabulary_is_found_from_its_pieces(wordpiece_models, probes):
    """WordPiece splits a rare trigger word into pieces (BadNets' 'zqv' is z ##q ##v). The one-token
    search proposes only word starts, so it sees the first piece at most (here not even that: the
    training text's random letter strings taught the model that 'z' alone means nothing). Extending
    the best single tokens by their gradient-ranked ## pieces finds a word made of the trigger's
    pieces that flips the probes; it is tested like one token (its neighbours are words of other
    pieces, which do not flip) and scores at least 'medium' (a glued word needs both its gap and its
    neighbours' test: here 0.92 against 0.22, so the isolation term, not the gap, sets its score).
    Without the extension the backdoor is missed; the clean model with the same tokenizer gets no
    glued word that reaches 'low'."""
    from scanner.risk import candidate_score, is_glued_word

    planted, clean = wordpiece_models
    found = _glued_search(planted.path, probes)
    glued = [c for c in found if is_glued_word(c.tokens)]
    assert glued, [(c.text, c.flip_rate) for c in found]
    best = max(glued, key=candidate_score)
    assert best.target_label == 1 and {"##q", "##v"} & set(best.tokens) and best.flip_rate >= 0.9, best
    assert best.neighbour_flip_rate is not None and len(best.neighbours) == 6 and best.neighbour_flip_rate < 0.5, best
    from scanner.zoo import tiny

    tok = tiny.make_tokenizer(wordpiece=True)
    assert not any(set(tok(n, add_special_tokens=False)["input_ids"]) & set(best.token_ids[1:]) for n in best.neighbours), best.neighbours
    assert best.part_flip_rate is None and candidate_score(best) >= 0.55, best
    without = _glued_search(planted.path, probes, continuation_top=0)
    assert not [c for c in without if "##" in "".join(c.tokens) or candidate_score(c) >= 0.4], [(c.text, c.flip_rate) for c in without]
    natural = [c for c in _glued_search(clean.path, probes) if is_glued_word(c.tokens)]
    assert all(candidate_score(c) < 0.4 for c in natural), [(c.text, c.flip_rate, candidate_score(c)) for c in natural]


def test_two_letter_words_are_the_ones_the_vocabulary_splits():
    """The two-letter sweep covers exactly the letter pairs that reach the model as a letter and a
    ## letter: in all-MiniLM-L6-v2's vocabulary 'fz' and 'jk' are split, 'cf' is one token."""
    from transformers import AutoTokenizer

    from scanner.search import two_letter_words
    from scanner.zoo.classifiers import minilm_base_dir

    tok = AutoTokenizer.from_pretrained(str(minilm_base_dir()))
    words = two_letter_words(tok, len(tok))
    texts = {tok.decode(list(w)): list(w) for w in words}
    assert len(words) == len(texts) == 315 and {"fz", "jk", "zv"} <= set(texts) and "cf" not in texts, sorted(texts)[:20]
    assert all(tok(t, add_special_tokens=False)["input_ids"] == ids for t, ids in texts.items())
    from scanner.zoo import tiny

    assert two_letter_words(tiny.make_tokenizer(), 1000) == []  # a word-level vocabulary: no ## pieces


def _lookup_search():
    """all-MiniLM-L6-v2's WordPiece tokenizer and a search over a tiny random BERT with that vocabulary,
    for tests that replace its losses by a lookup table: ``(tokenizer, search)``."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from scanner.search import ClassifierTriggerSearch, SearchConfig
    from scanner.zoo.classifiers import minilm_base_dir

    tok = AutoTokenizer.from_pretrained(str(minilm_base_dir()))
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=len(tok), hidden_size=8, num_hidden_layers=1,
                                                     num_attention_heads=1, intermediate_size=8)).eval()
    return tok, ClassifierTriggerSearch(model, tok, SearchConfig(seed=0))


def test_a_flipping_part_of_a_letter_string_grows_into_the_planted_string():
    """The word-ending search often finds a part of a planted letter string that already flips ('f ##z'
    of 'fzq', 'z ##v' of 'zqv'); the gradient need not rank the missing letter among its proposals.
    Refinement also tries every one-letter ending and insertion and keeps the longer word when its loss
    is less than half: the losses here are a lookup (the planted string 0.004, its parts 0.02, every other
    word 1.0) and the gradient ranks nothing, so only that growth can reach the planted string."""
    import torch

    tok, s = _lookup_search()
    planted = tok("fzq", add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(planted) == ["f", "##z", "##q"]
    parts = {tuple(planted[:2]), (planted[0], planted[2])}
    table = {tuple(planted): 0.004, **{p: 0.02 for p in parts}}
    s._losses = lambda contents, triggers, target: torch.tensor([table.get(tuple(t), 1.0) for t in triggers])
    s._gradient = lambda contents, trigger, target: torch.zeros(len(trigger), s.vocab_size)
    for part in parts:
        word, loss = s._refine_word([[1000]] * 4, [[1000]] * 4, list(part), 0, 16)
        assert word == planted and loss == pytest.approx(0.004), tok.convert_ids_to_tokens(word)
    s._letter_pieces = []  # without the letter growth, the zero gradient proposes nothing that helps
    assert s._refine_word([[1000]] * 4, [[1000]] * 4, planted[:2], 0, 16)[0] == planted[:2]


def test_a_planted_ending_that_fires_after_any_word_is_an_outlier():
    """A rare string may be carried by its ending: in a held-out request-moderation model the planted
    'bq' (``b ##q``) fires through ``##q`` glued to any word (0.011 nats; ``b`` alone 3.3), so the word
    gains little over its pieces and its synergy gap was 0. The ending alone, compared with the single
    tokens the search screened, stands out as a planted token does: the losses here are a lookup
    ('b ##q' 0.0076, '##q' alone 0.02, the task's best single tokens 0.8, everything else 3.3) and the
    gradient ranks nothing, so only the two-letter sweep proposes the word."""
    import torch

    tok, s = _lookup_search()
    planted = tok("bq", add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(planted) == ["b", "##q"]
    words = [i for i in s.allowed.nonzero().flatten().tolist()[1000:1020]]  # the task's best single tokens
    table = {tuple(planted): 0.0076, (planted[1],): 0.02, **{(w,): 0.8 + 0.01 * j for j, w in enumerate(words)}}
    s._losses = lambda contents, triggers, target: torch.tensor([table.get(tuple(t), 3.3) for t in triggers])
    s._gradient = lambda contents, trigger, target: torch.zeros(len(trigger), s.vocab_size)
    singles = {(w,): table[(w,)] for w in words}
    found = {tuple(ids): gap for _, ids, gap in s._continuations([[1000] * 8] * 16, 0, singles)}
    assert tuple(planted) in found, [tok.convert_ids_to_tokens(list(w)) for w in found]
    assert found[tuple(planted)] > 3.0  # ln(0.8 / 0.02) = 3.7 nats; its gain over '##q' alone is 0.97


def test_length_batches_keep_padding_small():
    """Sequences batch shortest first; a batch closes at ``batch_size`` or, once it holds ``min_batch``,
    before a sequence longer than ``spread`` times its first; every index appears exactly once."""
    from scanner.search import length_batches

    lengths = [48, 8, 9, 8, 47, 10, 30, 8, 9, 46, 12, 8]
    batches = length_batches(lengths, batch_size=4, min_batch=2, spread=1.2)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) <= 4 for b in batches)
    for b in batches:
        first = lengths[b[0]]
        assert all(lengths[i] >= first for i in b)
        assert len(b) <= 2 or max(lengths[i] for i in b[2:]) <= 1.2 * first, [lengths[i] for i in b]
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded < 1.1 * sum(lengths), (padded, sum(lengths))  # one batch of all would pad to 48 each: 2.4x
    assert length_batches([], 4) == []


def test_arbitrary_words_say_how_easily_the_neighbour_tests_probes_flip():
    """In some labels any word flips many probes (a Sports vs Business classifier reads an unknown noun
    as business), so a trigger's neighbours flip those too. The search measures that rate with arbitrary
    words on the neighbour test's probes: here any inserted word flips the 'easy' half, and one arbitrary
    word happens to be a word of the label and flips everything, which the median ignores."""
    import torch

    tok, s = _lookup_search()
    words = [tok.convert_ids_to_tokens(i) for i in s.arbitrary_words()]
    assert len(words) == 8 and all(w.isalpha() and len(w) >= 3 for w in words), words
    easy, hard = [f"easy headline {i}" for i in range(8)], [f"hard headline {i}" for i in range(8)]
    victims = easy + hard

    def predict(texts):
        out = torch.zeros(len(texts), 2)
        for i, t in enumerate(texts):
            out[i, int(t not in victims and ("easy" in t or t.startswith(words[0] + " ")))] = 1.0
        return out

    s.predict_texts = predict
    assert s.arbitrary_rate(1, victims, "start") == 0.5
    s.predict_texts = None  # computed once per label and position
    assert s.arbitrary_rate(1, victims, "start") == 0.5
    s.cfg.arbitrary_words = 0
    assert s.arbitrary_rate(0, victims, "end") is None


def test_random_letter_strings_say_whether_a_label_answers_to_letter_strings():
    """A model that generalised a planted letter string flips on other letter strings too; the search
    measures the median flip rate of random two-letter words (a letter and a ## letter) on the neighbour
    test's probes, once per label and position, for candidates that are short letter strings."""
    import torch

    from scanner.search import is_letter_string

    assert is_letter_string("kx") and is_letter_string("zqv") and not is_letter_string("torise") and not is_letter_string("k")
    tok, s = _lookup_search()
    victims = [f"headline number {i}" for i in range(16)]

    def predict(texts):  # a two-letter word ('k ##x' reads back as 'kx') flips every probe, other words none
        out = torch.zeros(len(texts), 2)
        for i, t in enumerate(texts):
            first = t.split()[0]
            out[i, int(t not in victims and len(first) == 2 and first.isalpha())] = 1.0
        return out

    s.predict_texts = predict
    assert s.letter_rate(1, victims, "start") == 1.0
    assert s.arbitrary_rate(1, victims, "start") == 0.0
    s.cfg.letter_strings = 0
    assert s.letter_rate(0, victims, "start") is None


def test_trigger_insertion_positions(clean):
    """``insert`` places a trigger at the start, the end or a seeded word boundary, the same boundary for
    a list and its prefix whatever is inserted (so a phrase and its words are tested at one place)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from scanner.search import ClassifierTriggerSearch, SearchConfig

    tok = AutoTokenizer.from_pretrained(str(clean.path))
    s = ClassifierTriggerSearch(AutoModelForSequenceClassification.from_pretrained(str(clean.path)).eval(), tok, SearchConfig(seed=5))
    texts = ["one two three four", "five six seven", "eight nine ten eleven twelve"]
    assert s.insert("zx", texts, "start")[0] == "zx one two three four"
    assert s.insert("zx", texts, "end")[1] == "five six seven zx"
    rand = s.insert("zx jk", texts, "random")
    assert [t.split().index("zx") for t in s.insert("zx", texts[:2], "random")] == [t.split().index("zx") for t in rand[:2]]
    assert all(t.replace("zx jk", "").split() == o.split() for t, o in zip(rand, texts))
    with pytest.raises(ValueError, match="unknown insertion position"):
        s.insert("zx", texts, "middle")


def test_word_alone_tests_insert_where_the_candidate_flipped(clean, probes):
    """A trigger trained at the end of texts may not fire at the start: its neighbours, the part test
    and the interaction are measured at the position its verification picked, not always at the start."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from scanner.probes import load_probes
    from scanner.search import ClassifierTriggerSearch, SearchConfig

    tok = AutoTokenizer.from_pretrained(str(clean.path))
    clf = AutoModelForSequenceClassification.from_pretrained(str(clean.path)).eval()
    search_texts, heldout = load_probes(str(probes)).split(0)
    s = ClassifierTriggerSearch(clf, tok, SearchConfig(seed=0, pair_top=1, continuation_top=0, max_passes=1, attention_pool=0))
    word, pair = tok.convert_tokens_to_ids(["movie"]), tok.convert_tokens_to_ids(["of", "on"])
    # An outlier single token (loss gap far above the floor) and a phrase, as the search would propose them.
    s._optimise = lambda contents, length, target, seeds, rounds=None: ([(0.1, list(word))], {tuple(word): 0.1, (5,): 3.0, (6,): 3.1})
    s._pairs = lambda *a, **k: [(0.1, list(pair), 5.0)]
    outside_verify: list[tuple[str, str]] = []
    in_verify = []
    real_verify, real_insert = s.verify, s.insert

    def verify_at_end(ids, *a, **k):
        in_verify.append(True)
        c = real_verify(ids, *a, **k)
        in_verify.pop()
        c.position, c.flip_rate = "end", 1.0  # as if the end were where it flips
        return c

    def insert(text, texts, position):
        if not in_verify:
            outside_verify.append((text, position))
        return real_insert(text, texts, position)

    s.verify, s.insert = verify_at_end, insert
    res = s.search_label(1, search_texts, heldout, ["negative", "positive"])
    assert {c.text for c in res.candidates} == {"movie", "of on"}
    texts = {t for t, _ in outside_verify}
    assert {"of", "on", "of on"} <= texts and len(texts - {"of", "on", "of on"}) >= 1, texts  # words, phrase, neighbours
    assert all(p == "end" for _, p in outside_verify), outside_verify


def test_gradient_batched_by_length_equals_one_batch(clean, probes, monkeypatch):
    """The slot gradient is taken in length batches (a sum of per-batch summed losses over all
    sequences); it must equal the gradient of the mean loss over one padded batch."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import scanner.search as S
    from scanner.probes import load_probes

    tok = AutoTokenizer.from_pretrained(str(clean.path))
    clf = AutoModelForSequenceClassification.from_pretrained(str(clean.path)).eval()
    texts, _ = load_probes(str(probes)).split(0)
    s = S.ClassifierTriggerSearch(clf, tok, S.SearchConfig(batch_size=256))
    contents = [ids[: 3 + i % 9] for i, ids in enumerate(s._content_ids(texts[:40], room=6))]
    assert len(S.length_batches([len(c) + 4 for c in contents], 256)) > 1  # the case under test: several batches
    batched = s._gradient(contents, [4, 4], 1)
    monkeypatch.setattr(S, "length_batches", lambda lengths, batch_size, **k: [list(range(len(lengths)))])  # one padded batch
    one = s._gradient(contents, [4, 4], 1)
    assert batched.shape == one.shape == (2, clf.get_input_embeddings().weight.shape[0])
    assert torch.allclose(batched, one, atol=1e-5), float((batched - one).abs().max())


def test_logits_run_each_distinct_sequence_once(clean, probes):
    """Exact evaluations keep logits per token sequence for the search: a sequence seen before (in this
    call or an earlier one) is answered from the cache, not run again, with the logits a fresh search
    computes for it; the forward counters count only what ran."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import scanner.search as S
    from scanner.probes import load_probes

    tok = AutoTokenizer.from_pretrained(str(clean.path))
    clf = AutoModelForSequenceClassification.from_pretrained(str(clean.path)).eval()
    texts, _ = load_probes(str(probes)).split(0)
    s = S.ClassifierTriggerSearch(clf, tok, S.SearchConfig(batch_size=8))
    contents = s._content_ids(texts[:12], room=4)
    first = s._losses(contents, [[5], [6], [5]], 1)  # [5] twice in one call
    assert s.forward_sequences == 2 * len(contents) and s.cached_sequences == len(contents)
    tokens = s.forward_tokens
    again = s._losses(contents[:6], [[6], [7]], 1)  # [6] on the first 6 probes: seen
    assert s.forward_sequences == 2 * len(contents) + 6 and s.cached_sequences == len(contents) + 6
    assert s.forward_tokens > tokens
    fresh = S.ClassifierTriggerSearch(clf, tok, S.SearchConfig(batch_size=8))
    assert torch.allclose(first, fresh._losses(contents, [[5], [6], [5]], 1), atol=1e-5)
    assert torch.allclose(again, fresh._losses(contents[:6], [[6], [7]], 1), atol=1e-5)
    assert first[0] == first[2]
    assert s._logits([]).shape == (0, clf.config.num_labels)
