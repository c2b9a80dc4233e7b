"""Correct batched access to a causal LM for the generative-LM scan stages.

Every batch is left-padded with an attention mask and explicit position ids, so padded and unpadded
rows give the same next-token distribution; a tokenizer without a pad token pads with EOS (the mask
keeps it out), and a tokenizer without BOS or without a chat template still works (the user message
is then the whole prompt). Chat templates come from the tokenizer only (never from code in the
checkpoint). Every forward pass is counted in :attr:`LMHarness.forward_tokens` (non-padding tokens
the model processed; a cached prefix counts once).
"""
from __future__ import annotations

import copy
from typing import Any, Sequence

MARKER = "\u2063SCANNERUSERTURN\u2063"

#: Most logits (floats) one :meth:`LMHarness.continuation_logprobs` batch keeps: 128M floats are 512 MB in
#: fp32, 70 rows of a 6-token target for Gemma-3's 262k vocabulary; for SmolLM2's 49k it is 390 rows, more
#: than the token bound lets through.
MAX_LOGIT_ELEMENTS = 128 * 2**20


class LMHarness:
    """Binds a causal LM and its tokenizer; all methods take and return token-id lists.

    Args:
        model: a ``transformers`` causal LM in eval mode (CPU float32).
        tokenizer: its tokenizer (a chat template is used when it has one).
        budget: optional :class:`scanner.budget.Budget`, checked between batches.
        max_batch_tokens: padded tokens per forward batch (memory bound; 8,192 is about 1 GB of
            activations for a 135M model).
        precision: ``"fp32"``, ``"bf16"`` or ``"auto"`` (:func:`scanner.search.resolve_precision`): the
            precision of the passes run inside :meth:`fast` (the trigger search's slot growth).

    Raises:
        ValueError: an unknown precision.
    """

    def __init__(self, model: Any, tokenizer: Any, budget: Any = None, max_batch_tokens: int = 8192, precision: str = "fp32"):
        from ..search import resolve_precision

        self.model, self.tok, self.budget = model, tokenizer, budget
        #: ``"bf16"`` or ``"fp32"``: what :meth:`fast` runs in.
        self.precision = resolve_precision(precision, next(model.parameters()))
        self.max_batch_tokens = max_batch_tokens
        self.forward_tokens = 0
        #: Greedy replies already generated, by prompt: ``tuple(prefix) -> (new tokens, max_new_tokens asked)``.
        #: A scan asks for the greedy reply to the same clean prompt in more than one stage (the target
        #: baseline, the behaviour drift); the model does not change within a scan.
        self._greedy: dict[tuple[int, ...], tuple[list[int], int]] = {}
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (
            tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0)
        self.has_template = bool(getattr(tokenizer, "chat_template", None))
        self.stop_ids = self._stop_ids()
        import inspect

        params = inspect.signature(model.forward).parameters  # transformers >= 5.2x renamed past_key_values to cache
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        # transformers' causal LMs can apply the output head to the last k positions only; the head is a
        # large share of a small model's compute (Gemma-3-270M: 262k x 640 of its 268M parameters)
        self._can_keep = "logits_to_keep" in params
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0]) if model.get_output_embeddings() is not None else len(tokenizer)

    def fast(self):
        """Context manager for passes where speed matters more than the last digits: CPU bfloat16
        autocast when :attr:`precision` is ``"bf16"`` (about 1.8x faster teacher-forced scoring of a
        135M model on this 2-core AVX512-BF16 machine; the log-probability of a 6-token target moved by
        0.007 nats on average and the greedy flags did not change, 48 prompts), else nothing."""
        import torch

        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def counting(self, backward: bool = True):
        """Context manager that counts the forward passes of code outside the harness (captum's
        attribution) in :attr:`forward_tokens`: every call of the model adds its non-padding tokens
        (the attention mask's sum, else batch x length), twice when ``backward`` (a backward pass
        costs about one forward)."""
        from contextlib import contextmanager

        @contextmanager
        def _ctx():
            def hook(_module, args, kwargs):
                mask = kwargs.get("attention_mask")
                x = kwargs.get("input_ids", args[0] if args else None)
                if x is None:
                    x = kwargs.get("inputs_embeds")
                n = int(mask.sum()) if mask is not None else (int(x.shape[0] * x.shape[1]) if x is not None and x.dim() >= 2 else 0)
                self.forward_tokens += n * (2 if backward else 1)

            handle = self.model.register_forward_pre_hook(hook, with_kwargs=True)
            try:
                yield self
            finally:
                handle.remove()

        return _ctx()

    # ---- prompts --------------------------------------------------------------------------
    def _render(self, user: str) -> str:
        return self.tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)

    def prompt_ids(self, user: str) -> list[int]:
        """Token ids of ``user`` as one user turn with the generation prompt (chat template when the
        tokenizer has one; otherwise the tokenizer's own special tokens around the plain text)."""
        if self.has_template:
            return self.tok(self._render(user), add_special_tokens=False)["input_ids"]
        return self.tok(user, add_special_tokens=True)["input_ids"]

    def user_prefix_ids(self) -> list[int]:
        """Token ids that precede the user's text in a rendered prompt (system turn, user header)."""
        if not self.has_template:
            ids = self.tok("", add_special_tokens=True)["input_ids"]
            return ids[:1] if ids else []
        text = self._render(MARKER)
        return self.tok(text.split(MARKER)[0], add_special_tokens=False)["input_ids"]

    def _stop_ids(self) -> set[int]:
        ids = {self.tok.eos_token_id} if self.tok.eos_token_id is not None else set()
        for t in ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "</s>"):
            i = self.tok.convert_tokens_to_ids(t)
            if isinstance(i, int) and i != self.tok.unk_token_id and i >= 0:
                ids.add(i)
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` without special tokens."""
        return self.tok.decode(list(ids), skip_special_tokens=True)

    # ---- batching -------------------------------------------------------------------------
    def _pad(self, seqs: list[list[int]]):
        import torch

        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            if s:
                ids[i, width - len(s):] = torch.tensor(s)
                mask[i, width - len(s):] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        return ids, mask, pos

    def _chunks(self, seqs: list[list[int]], max_rows: int | None = None) -> list[tuple[int, int]]:
        """``(start, end)`` row ranges of ``seqs`` of at most :attr:`max_batch_tokens` padded tokens and
        at most ``max_rows`` rows each."""
        out, start, width = [], 0, 0
        for i, s in enumerate(seqs):
            width = max(width, len(s))
            if i > start and (width * (i - start + 1) > self.max_batch_tokens or (max_rows and i - start + 1 > max_rows)):
                out.append((start, i))
                start, width = i, len(s)
        out.append((start, len(seqs)))
        return out

    def _keep(self, n: int) -> dict[str, int]:
        """Forward kwargs that compute logits for the last ``n`` positions only (none if unsupported)."""
        return {"logits_to_keep": n} if self._can_keep else {}

    def _check(self) -> None:
        if self.budget is not None:
            self.budget.check()

    def next_token_logprobs(self, seqs: list[list[int]]):
        """Log-probabilities of the next token after each sequence: float tensor ``[len(seqs), V]``."""
        import torch

        outs = []
        for a, b in self._chunks(seqs):
            self._check()
            ids, mask, pos = self._pad(seqs[a:b])
            with torch.no_grad():
                logits = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, **self._keep(1)).logits[:, -1, :]
            self.forward_tokens += int(mask.sum())
            outs.append(torch.log_softmax(logits.float(), -1))
        return torch.cat(outs)

    def continuation_logprobs(self, prefixes: list[list[int]], conts: list[list[int]], shared: list[int] | None = None,
                              greedy: bool = False):
        """Teacher-forced log-probability of each token of ``conts[i]`` after ``shared + prefixes[i]``:
        float tensor ``[B, L]`` with ``L = max len(conts)``; positions past a shorter continuation are 0.

        ``shared``: a prefix common to every row (e.g. the system turn), encoded once per batch and
        reused through the KV cache. ``greedy``: also return a bool tensor ``[B, L]``, True where the
        continuation's token is the most probable one there (True past a shorter continuation): a row
        all True is a continuation that greedy decoding emits token for token."""
        import torch

        seqs = [p + c for p, c in zip(prefixes, conts)]
        L = max(len(c) for c in conts)
        out = torch.zeros(len(seqs), L)
        top = torch.ones(len(seqs), L, dtype=torch.bool)
        S = len(shared or [])
        # the kept logits and their log-softmax are rows x (L + 1) x vocabulary floats each: bound them too
        # (Gemma-3-270M's 262k-token vocabulary made them 2 GB apiece in batches bounded by tokens alone)
        max_rows = max(1, MAX_LOGIT_ELEMENTS // ((L + 1) * self.vocab_size))
        for a, b in self._chunks(seqs, max_rows):
            self._check()
            ids, mask, pos = self._pad(seqs[a:b])
            kw: dict[str, Any] = {}
            full_mask = mask
            if S:
                kw, full_mask, pos = self.after_shared(shared, mask, pos)
            with torch.no_grad():
                logits = self.model(input_ids=ids, attention_mask=full_mask, position_ids=pos, **kw, **self._keep(L + 1)).logits
            logp = torch.log_softmax(logits[:, -(L + 1) :].float(), -1)  # the last L + 1 positions
            self.forward_tokens += int(mask.sum())
            for r, i in enumerate(range(a, b)):
                c = conts[i]
                start = L - len(c)  # left padding: a continuation ends at the last position
                idx = torch.tensor(c)
                out[i, : len(c)] = logp[r, start : start + len(c)].gather(-1, idx[:, None])[:, 0]
                if greedy:
                    top[i, : len(c)] = logp[r, start : start + len(c)].argmax(-1) == idx
        return (out, top) if greedy else out

    def after_shared(self, shared: list[int], mask: Any, pos: Any) -> tuple[dict[str, Any], Any, Any]:
        """A batch (attention ``mask`` and position ids ``pos``, ``[B, T]``) that follows ``shared`` (token
        ids, encoded once without gradients, counted in :attr:`forward_tokens`): returns the forward
        kwargs carrying ``shared``'s KV cache repeated for the ``B`` rows, the mask with ``len(shared)``
        ones before it (``[B, S + T]``) and the position ids offset by ``len(shared)``."""
        import torch

        with torch.no_grad():
            out = self.model(input_ids=torch.tensor([shared]), use_cache=True, **self._keep(1))
        self.forward_tokens += len(shared)
        cache = _cache_of(out)
        rows = mask.shape[0]
        cache.batch_repeat_interleave(rows)
        full_mask = torch.cat([torch.ones(rows, len(shared), dtype=mask.dtype), mask], 1)
        return {self._cache_kw: cache}, full_mask, pos + len(shared)

    def generate(self, prefixes: list[list[int]], max_new_tokens: int = 16, *, sample: bool = False,
                 temperature: float = 1.0, num_return_sequences: int = 1, seed: int = 0) -> list[list[int]]:
        """Greedy (or sampled) continuations of each prefix, cut at the first stop token.

        Greedy replies are remembered per prefix: a prefix whose greedy reply was already generated
        with at least ``max_new_tokens`` new tokens (or ended at a stop token) is not run again (its
        reply is cut to ``max_new_tokens``), and costs no forward tokens.

        Returns ``len(prefixes) * num_return_sequences`` token-id lists (row-major by prefix)."""
        if sample or num_return_sequences != 1:
            return self._generate(prefixes, max_new_tokens, sample=sample, temperature=temperature,
                                  num_return_sequences=num_return_sequences, seed=seed)

        def known(p: list[int]) -> bool:
            got = self._greedy.get(tuple(p))
            return got is not None and (got[1] >= max_new_tokens or len(got[0]) < got[1])

        todo = list(dict.fromkeys(tuple(p) for p in prefixes if not known(p)))
        if todo:
            for p, r in zip(todo, self._generate([list(p) for p in todo], max_new_tokens)):
                self._greedy[p] = (r, max_new_tokens)
        return [self._greedy[tuple(p)][0][:max_new_tokens] for p in prefixes]

    def _generate(self, prefixes: list[list[int]], max_new_tokens: int, *, sample: bool = False,
                  temperature: float = 1.0, num_return_sequences: int = 1, seed: int = 0) -> list[list[int]]:
        import torch

        out: list[list[int]] = []
        rows = max(1, self.max_batch_tokens // max(1, (max(len(p) for p in prefixes) + max_new_tokens) * num_return_sequences))
        for a in range(0, len(prefixes), rows):
            self._check()
            ids, mask, _ = self._pad(prefixes[a : a + rows])
            kw: dict[str, Any] = {"do_sample": sample, "num_return_sequences": num_return_sequences}
            if sample:
                torch.manual_seed(seed + a)
                kw.update(temperature=temperature, top_k=0, top_p=1.0)
            with torch.no_grad():
                gen = self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                          pad_token_id=self.pad_id, eos_token_id=sorted(self.stop_ids) or None, **kw)
            new = gen[:, ids.shape[1]:]
            self.forward_tokens += int(mask.sum()) * num_return_sequences + int(new.numel())
            for row in new.tolist():
                cut = next((j for j, t in enumerate(row) if t in self.stop_ids), len(row))
                out.append(row[:cut])
        return out

    def expand_greedy(self, prompts: list[list[int]], first_tokens: list[int], steps: int, chunk: int = 16,
                      prune_after: int = 0, prune_below: float = 0.0):
        """BAIT-style greedy expansion (Shen et al., S&P 2025): for each first token ``t``, append it to
        every prompt, then repeatedly append the token with the highest probability *averaged over the
        prompts*. The prompts are encoded once (KV cache, copied for each chunk of ``chunk`` first
        tokens), then one token per step.

        Pruning (BAIT prunes low-probability expansions too): from step ``prune_after`` on (0: never),
        a first token whose appended tokens' mean averaged probability is below ``prune_below`` stops
        growing, and its rows leave the batch (and the KV cache): a target sequence is emitted with
        confidence once its first token is there, so a diffuse start does not become one.

        Returns, per first token, ``(sequence, avg_probs, entropies)``: the grown token ids (first
        token included, ``steps + 1`` long unless a stop token or pruning ends it), the averaged
        probability of each appended token (probabilities, one per step grown), and the entropy in nats
        of the averaged distribution at each step.
        """
        import torch

        results = []
        n = len(prompts)
        ids, prompt_mask, pos = self._pad(prompts)
        prompt_cache = None  # the prompts' KV cache, encoded once and copied for each chunk
        for a in range(0, len(first_tokens), chunk):
            self._check()
            cands = first_tokens[a : a + chunk]
            c = len(cands)
            if prompt_cache is None:
                with torch.no_grad():
                    out = self.model(input_ids=ids, attention_mask=prompt_mask, position_ids=pos, use_cache=True, **self._keep(1))
                self.forward_tokens += int(prompt_mask.sum())
                prompt_cache = _cache_of(out)
            cache = copy.deepcopy(prompt_cache)
            cache.batch_repeat_interleave(c)
            mask = prompt_mask.repeat_interleave(c, 0)
            next_pos = mask.sum(-1, keepdim=True)
            tok = torch.tensor(cands).repeat(n)[:, None]  # row i*c + j: prompt i, candidate j
            seqs = [[t] for t in cands]
            probs: list[list[float]] = [[] for _ in cands]
            ents: list[list[float]] = [[] for _ in cands]
            done = [t in self.stop_ids for t in cands]
            alive = [j for j in range(c) if not done[j]]  # candidates whose rows are in the batch, in row order
            rows = [i * c + j for i in range(n) for j in alive]  # row i * c + j: prompt i, candidate j
            for step in range(1, steps + 1):
                if not alive:
                    break
                if len(rows) < mask.shape[0]:  # drop finished candidates' rows from the batch and the cache
                    sel = torch.tensor(rows)
                    cache.batch_select_indices(sel)
                    mask, next_pos, tok = mask[sel], next_pos[sel], tok[sel]
                m = len(alive)
                mask = torch.cat([mask, torch.ones(n * m, 1, dtype=torch.long)], 1)
                with torch.no_grad():
                    o = self.model(input_ids=tok, attention_mask=mask, position_ids=next_pos, use_cache=True, **{self._cache_kw: cache})
                self.forward_tokens += n * m
                cache, next_pos = _cache_of(o), next_pos + 1
                p = torch.softmax(o.logits[:, -1, :].float(), -1).view(n, m, -1).mean(0)  # [m, V]
                best = p.argmax(-1)
                ent = -(p.clamp_min(1e-12).log() * p).sum(-1)
                for k, j in enumerate(alive):
                    seqs[j].append(int(best[k]))
                    probs[j].append(float(p[k, best[k]]))
                    ents[j].append(float(ent[k]))
                    done[j] = int(best[k]) in self.stop_ids or (
                        0 < prune_after <= step and sum(probs[j]) / len(probs[j]) < prune_below)
                keep = [k for k, j in enumerate(alive) if not done[j]]
                tok = best.repeat(n)[:, None]
                rows = [i * m + k for i in range(n) for k in keep]  # row i * m + k: prompt i, alive candidate k
                alive = [alive[k] for k in keep]
            results += list(zip(seqs, probs, ents))
        return results


def _cache_of(output: Any) -> Any:
    """The KV cache of a model output (``cache`` in newer transformers, ``past_key_values`` before)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values
