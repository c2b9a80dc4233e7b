"""Attack-target inversion for causal LMs, after BAIT (Shen et al., "BAIT: Large Language Model
Backdoor Scanning by Inverting Attack Target", IEEE S&P 2025), with a restricted first-token set.

BAIT's observation: once the first token of a backdoor's target sequence is forced after a clean
prompt, a backdoored model continues with the rest of the target with high probability *whatever the
prompt*, while a clean model's continuations depend on the prompt. BAIT enumerates every vocabulary
token as the first token (cost linear in the vocabulary: 49,152 expansions for SmolLM2). We expand
only a restricted candidate set:

* the tokens most probable as the first reply token, averaged over the probe prompts and at their
  maximum over single prompts (a target that leaks without its trigger);
* tokens whose first-token probability rose most against the reference model, when one is known;
* tokens pointed at by the weight statistics (embedding or output-head drift/anomalies);
* the first tokens of leakage motifs: token n-grams that recur, at any position, in replies sampled
  from several different prompts.

Each candidate is grown greedily over the prompts' averaged next-token distribution
(:meth:`scanner.lm.harness.LMHarness.expand_greedy`); its *target score* is the mean averaged
probability of the grown tokens (a probability in [0, 1]), and the entropy of the averaged
distribution is recorded (entropy collapse). Generic reply openings ("Sure! Here is") also score high
on a clean chat model, so every target is then checked for how often it appears *without* any trigger
(its baseline rate) and, when a reference model is given, scored on the reference too.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from .harness import LMHarness

#: Vocabularies up to this size are enumerated in full (BAIT's own setting); larger ones are restricted.
FULL_ENUMERATION_VOCAB = 2048

#: A first token whose first PRUNE_AFTER grown tokens average below PRUNE_BELOW (mean averaged
#: probability) stops growing (:meth:`scanner.lm.harness.LMHarness.expand_greedy`): once its first
#: token is forced, a backdoor's target continues near-deterministically (BAIT), while most expanded
#: first tokens continue diffusely; their grown tokens were most of the inversion's cost.
PRUNE_AFTER, PRUNE_BELOW = 4, 0.3


@dataclass
class TargetCandidate:
    """A candidate attack target sequence.

    ``score``: mean over the grown tokens of the probability averaged over prompts (0-1);
    ``entropy``: mean entropy (nats) of the averaged next-token distributions; ``first_prob``: the
    first token's averaged probability at the reply start; ``sources``: why the first token was tried;
    ``baseline_rate``: share of probe prompts whose greedy reply already starts with it (no trigger);
    ``reference_score``: the same sequence's teacher-forced score on the reference model (None: no
    reference)."""

    token_ids: list[int]
    text: str
    score: float
    entropy: float
    first_prob: float
    sources: list[str] = field(default_factory=list)
    baseline_rate: float | None = None
    reference_score: float | None = None
    trigger_hints: list[list[int]] = field(default_factory=list)


def word_like(text: str) -> bool:
    """A token text worth trying as a target start or trigger piece: printable, at least one
    letter, digit or symbol other than whitespace."""
    t = text.strip()
    return bool(t) and t.isprintable() and len(t) <= 24


def first_token_candidates(h: LMHarness, prompts: list[list[int]], *, k: int = 24, seeds: list[int] | None = None,
                           ref: LMHarness | None = None, replies: list[list[int]] | None = None) -> tuple[list[int], dict[int, list[str]], Any]:
    """The restricted first-token set (see module docstring).

    Args:
        h: the model under scan. prompts: chat-formatted probe prompts (token ids).
        k: tokens taken from each source. seeds: token ids from the weight statistics.
        ref: harness of the reference model (same tokenizer), or None.
        replies: sampled replies (token ids), mined for recurring motifs.

    Returns:
        ``(token_ids, sources, avg_first)``: candidate ids, why each was chosen, and the averaged
        first-token distribution (float tensor ``[V]``).
    """
    import torch

    logp = h.next_token_logprobs(prompts)
    p = logp.exp()
    avg, mx = p.mean(0), p.max(0).values
    sources: dict[int, list[str]] = {}

    def add(ids: list[int], why: str) -> None:
        for t in ids:
            if t in h.stop_ids or t == h.pad_id:
                continue
            if not word_like(h.tok.decode([t])):
                continue
            sources.setdefault(int(t), [])
            if why not in sources[int(t)]:
                sources[int(t)].append(why)

    if p.shape[-1] <= FULL_ENUMERATION_VOCAB:  # a small vocabulary is enumerated in full, as BAIT does
        add(list(range(p.shape[-1])), "full enumeration (small vocabulary)")
    add(avg.topk(k).indices.tolist(), "first-token average")
    add(mx.topk(k).indices.tolist(), "first-token maximum")
    if ref is not None:
        rp = ref.next_token_logprobs(prompts).exp().mean(0)
        ratio = (avg + 1e-6).log() - (rp + 1e-6).log()
        ratio[avg < 1e-4] = -1e9
        add(ratio.topk(k).indices.tolist(), "rose against the reference")
    if seeds:
        add(list(seeds[:k]), "weight statistics")
    if replies:
        add([m[0] for m in recurring_motifs(replies, n_min=2)[:k]], "recurring reply motif")
    return list(sources), sources, avg


def recurring_motifs(samples: list[list[int]], n_min: int = 2, n_max: int = 4, min_docs: int = 3) -> list[tuple[int, ...]]:
    """Token n-grams (``n_min``..``n_max`` tokens) found in at least ``min_docs`` different samples,
    most widespread first; an n-gram contained in a longer one with the same spread is dropped."""
    df: Counter = Counter()
    for s in samples:
        seen = {tuple(s[i : i + n]) for n in range(n_min, n_max + 1) for i in range(len(s) - n + 1)}
        df.update(seen)
    common = [(g, c) for g, c in df.items() if c >= min_docs]
    common.sort(key=lambda gc: (-gc[1], -len(gc[0])))
    kept: list[tuple[int, ...]] = []
    for g, c in common:
        if any(len(o) > len(g) and df[o] == c and _contains(o, g) for o in kept):
            continue
        kept.append(g)
    return kept


def _contains(big: tuple[int, ...], small: tuple[int, ...]) -> bool:
    return any(big[i : i + len(small)] == small for i in range(len(big) - len(small) + 1))


def invert_targets(h: LMHarness, prompts: list[list[int]], *, steps: int = 10, k: int = 24, seeds: list[int] | None = None,
                   ref: LMHarness | None = None, replies: list[list[int]] | None = None, top: int = 6,
                   progress: Callable[[str], None] | None = None) -> tuple[list[TargetCandidate], int]:
    """Run the restricted BAIT inversion; return the ``top`` target candidates (highest score first)
    and the number of first tokens expanded.

    Raises:
        scanner.budget.BudgetExceeded: the scan's time budget ran out.
    """
    progress = progress or (lambda m: None)
    cands, sources, avg = first_token_candidates(h, prompts, k=k, seeds=seeds, ref=ref, replies=replies)
    progress(f"target inversion: expanding {len(cands)} first tokens x {len(prompts)} prompts x {steps} steps")
    grown = h.expand_greedy(prompts, cands, steps, prune_after=PRUNE_AFTER, prune_below=PRUNE_BELOW)
    out = []
    for t, (seq, probs, ents) in zip(cands, grown):
        if not probs or sum(ch.isalnum() for ch in h.decode(seq)) < 3:  # runs of newlines, spaces, symbols
            continue
        out.append(TargetCandidate(seq, h.decode(seq), sum(probs) / len(probs), sum(ents) / len(ents),
                                   float(avg[t]), sources[t]))
    out.sort(key=lambda c: -c.score)
    # A grown sequence whose tail is another candidate's sequence: its first token, once in the reply,
    # sets the target off, i.e. it acts as a trigger (observed when the trigger token itself is expanded).
    # Keep the inner target and remember the token as a trigger hint.
    absorbed: set[int] = set()
    for i, c in enumerate(out):
        for o in out:
            if o is not c and len(o.token_ids) >= 3 and c.token_ids[1 : 1 + len(o.token_ids) - 1] == o.token_ids[: len(o.token_ids) - 1]:
                o.trigger_hints.append(c.token_ids[:1])
                o.sources.append(f"also grown after '{h.decode(c.token_ids[:1]).strip()}'")
                absorbed.add(i)
                break
    out = [c for i, c in enumerate(out) if i not in absorbed]
    # A first token the model would never start a reply with (averaged probability < 1e-3) that is
    # followed by a confident sequence: the token acts as a trigger for the rest. Report the rest as the
    # target, the token as a trigger hint.
    for j, c in enumerate(out):
        if c.first_prob < 1e-3 and len(c.token_ids) >= 4 and c.score >= 0.8:
            tail = c.token_ids[1:]
            out[j] = TargetCandidate(tail, h.decode(tail), c.score, c.entropy, float(avg[tail[0]]),
                                     c.sources + [f"grown after the unlikely first token '{h.decode(c.token_ids[:1]).strip()}'"],
                                     trigger_hints=[c.token_ids[:1]] + c.trigger_hints)
    # keep distinct targets: drop one whose text is inside a better one's
    kept: list[TargetCandidate] = []
    for c in out:
        if any(c.text.strip() and c.text.strip() in o.text for o in kept):
            continue
        kept.append(c)
        if len(kept) == top:
            break
    return kept, len(cands)
