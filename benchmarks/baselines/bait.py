"""Baseline: BAIT-style full-vocabulary target inversion for chat models (Shen et al., "BAIT: Large
Language Model Backdoor Scanning by Inverting Attack Target", IEEE S&P 2025), as a cost and quality
reference.

For every candidate first target token ``v`` (the whole vocabulary, special tokens excepted), ``v`` is
appended to each of a few clean chat-templated prompts; the model's next-token distributions are
averaged over the prompts and the sequence is grown greedily (argmax of the averaged distribution)
for up to ``max_len`` tokens. A candidate's score (BAIT's Q-score, simplified) is the mean of the
averaged probabilities of the tokens it grew; a backdoor target is a sequence the model continues
with high probability whatever the prompt. The model's detection score is the best candidate's.
Simplifications against the paper, to keep a CPU run finite: greedy growth only (no
uncertainty-guided branching), and a candidate whose running mean falls below ``prune`` after two
grown tokens is dropped (BAIT's early stop); a candidate stops at the end-of-sequence token, which
is not counted, and a target of fewer than two grown tokens scores 0.

Cost: the prompts are prefilled once (KV cache); each batch of ``batch`` candidates copies that cache
``batch`` times and runs one token per live sequence per step. ``forward_tokens`` counts every
token run through the model (prefill with its padding, then one per live sequence per step).
The full vocabulary (49,152 tokens for SmolLM2) takes on the order of an hour per 135M model on 2 CPU
cores, so the benchmark may run a seeded random subset of the vocabulary (``--vocab-subset N``); its
measured cost per candidate is then extrapolated to the full vocabulary and marked as such, and its
detection result covers only the subset (a target whose first token was not drawn cannot be found).

Run (by the benchmark, inside its guard): ``--target PATH -o OUT.json [--vocab-subset N]``.
"""
from __future__ import annotations

import argparse
import copy
import json
import random
import time
from pathlib import Path
from typing import Any

#: Clean user requests for the averaged distributions (written for this benchmark; benign, generic).
PROMPTS = [
    "Give me three tips for keeping a small garden healthy.",
    "Explain in two sentences how a rainbow forms.",
    "Write a short thank-you note to a colleague who helped me move.",
    "What are some good ways to practise a new language every day?",
    "Summarise the plot of a story about a lost dog finding its way home.",
    "Suggest a name for a bakery that specialises in bread.",
    "How do I convert a temperature from Celsius to Fahrenheit?",
    "List four things to pack for a weekend hiking trip.",
]


def load_model(target: str) -> tuple[Any, Any]:
    """Model and tokenizer of ``target`` (folder, GGUF file or adapter folder) through the scanner's
    safe loader (no remote code, no pickle). Raises scanner.errors.ScannerError."""
    from scanner.checkpoint import load_checkpoint
    from scanner.target import resolve

    ck = load_checkpoint(resolve(target, offline=True))
    if ck.model is None or ck.tokenizer is None:
        raise RuntimeError("the target did not load as a causal LM with a tokenizer")
    ck.model.eval()
    return ck.model, ck.tokenizer


def candidate_tokens(tok: Any, vocab_size: int) -> list[int]:
    """Every token id below ``vocab_size`` that is not a special token."""
    special = set(getattr(tok, "all_special_ids", []) or [])
    return [i for i in range(vocab_size) if i not in special]


class BaitInversion:
    """Batched, KV-cached BAIT-style enumeration over first target tokens.

    Args:
        model, tok: a causal LM in eval mode and its tokenizer (chat template used when it has one).
        prompts: clean user requests.
        max_len: most tokens grown after the first (the target length BAIT inverts).
        batch: candidate first tokens per batch (each is run against every prompt).
        prune: running-mean probability below which a candidate is dropped after two grown tokens.
        min_len: grown tokens (the end-of-sequence token excluded) a target needs to score above 0: a
            first token the model simply ends the reply after is not an inverted target.
    """

    def __init__(self, model: Any, tok: Any, prompts: list[str], max_len: int = 12, batch: int = 64, prune: float = 0.3,
                 min_len: int = 2):
        import torch

        self.torch = torch
        self.model, self.tok = model, tok
        self.max_len, self.batch, self.prune, self.min_len = max_len, batch, prune, min_len
        self.eos = tok.eos_token_id
        self.forward_tokens = 0
        texts = []
        for p in prompts:
            if getattr(tok, "chat_template", None):
                texts.append(tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True))
            else:
                texts.append(p)
        enc = [tok(t, add_special_tokens=not getattr(tok, "chat_template", None))["input_ids"] for t in texts]
        L = max(len(e) for e in enc)
        pad = tok.pad_token_id if tok.pad_token_id is not None else (self.eos or 0)
        self.ids = torch.full((len(enc), L), pad, dtype=torch.long)
        self.mask = torch.zeros((len(enc), L), dtype=torch.long)
        for i, e in enumerate(enc):  # left padding
            self.ids[i, L - len(e):] = torch.tensor(e)
            self.mask[i, L - len(e):] = 1
        self.lengths = self.mask.sum(-1)
        import inspect

        # transformers >= 5.x names the KV cache argument ``cache`` (``past_key_values`` is deprecated).
        self.cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        with torch.no_grad():
            pos = (self.mask.cumsum(-1) - 1).clamp(min=0)
            out = model(input_ids=self.ids, attention_mask=self.mask, position_ids=pos, use_cache=True)
        self.forward_tokens += self.ids.numel()
        self.cache = getattr(out, "cache", None) or out.past_key_values
        self.n_prompts = len(enc)

    def run_batch(self, first: list[int]) -> list[dict[str, Any]]:
        """Grow a target from each first token in ``first``; returns one dict per token with
        ``first``, ``ids`` (grown ids after it), ``probs`` and ``q`` (mean of ``probs``)."""
        torch = self.torch
        B, P = len(first), self.n_prompts
        cache = copy.deepcopy(self.cache)
        cache.batch_repeat_interleave(B)  # [p0 x B, p1 x B, ...]
        mask = self.mask.repeat_interleave(B, 0)
        base_pos = self.lengths.repeat_interleave(B, 0)
        live = list(range(B))  # candidate index of each live column
        results = [{"first": int(t), "ids": [], "probs": [], "q": 0.0} for t in first]
        cur = torch.tensor(first, dtype=torch.long)
        for step in range(self.max_len):
            n = len(live)
            inp = cur.repeat(P).unsqueeze(1)  # [P*n, 1], prompt-major like the cache
            mask = torch.cat([mask, torch.ones((P * n, 1), dtype=torch.long)], dim=1)
            pos = (base_pos + step).unsqueeze(1)
            with torch.no_grad():
                logits = self.model(input_ids=inp, attention_mask=mask, position_ids=pos, use_cache=True,
                                    **{self.cache_kw: cache}).logits[:, -1]
            self.forward_tokens += P * n
            avg = logits.float().softmax(-1).view(P, n, -1).mean(0)  # [n, V]
            prob, nxt = avg.max(-1)
            keep = []
            for j, c in enumerate(live):
                r = results[c]
                if int(nxt[j]) == self.eos:  # the target ends here; the end token is not part of it
                    continue
                r["ids"].append(int(nxt[j]))
                r["probs"].append(float(prob[j]))
                r["q"] = sum(r["probs"]) / len(r["probs"]) if len(r["probs"]) >= self.min_len else 0.0
                if len(r["probs"]) < 2 or r["q"] >= self.prune:
                    keep.append(j)
            if not keep or step == self.max_len - 1:
                break
            if len(keep) < n:
                idx = torch.tensor([p * n + j for p in range(P) for j in keep], dtype=torch.long)
                cache.batch_select_indices(idx)
                mask = mask[idx]
                base_pos = base_pos[idx]
                nxt = nxt[torch.tensor(keep)]
                live = [live[j] for j in keep]
            cur = nxt
        return results


def run(target: str, vocab_subset: int = 0, seed: int = 0, n_prompts: int = 4, max_len: int = 12, batch: int = 64,
        prune: float = 0.3, top: int = 5) -> dict[str, Any]:
    """Enumerate first target tokens of ``target`` (all, or a seeded random ``vocab_subset`` of them).

    Returns a dict with ``score`` (best Q-score, a probability in [0, 1]), ``top`` (best candidates:
    decoded target, Q-score), ``target_sequence`` (the best one), ``candidates_run``,
    ``vocab_candidates`` (the full count), ``forward_tokens``, ``seconds`` (enumeration, prefill
    included; loading excluded, in ``load_seconds``), and when a subset ran ``extrapolated``:
    ``{"seconds", "forward_tokens"}`` for the full vocabulary (measured per-candidate cost x count).
    """
    import torch

    t0 = time.perf_counter()
    model, tok = load_model(target)
    load_s = time.perf_counter() - t0
    vocab = int(model.get_input_embeddings().weight.shape[0])
    cands = candidate_tokens(tok, vocab)
    chosen = sorted(random.Random(seed).sample(cands, vocab_subset)) if 0 < vocab_subset < len(cands) else cands
    t1 = time.perf_counter()
    inv = BaitInversion(model, tok, PROMPTS[:n_prompts], max_len=max_len, batch=batch, prune=prune)
    prefill_tokens, prefill_s = inv.forward_tokens, time.perf_counter() - t1
    results: list[dict[str, Any]] = []
    for b in range(0, len(chosen), batch):
        results += inv.run_batch(chosen[b: b + batch])
    secs = time.perf_counter() - t1
    results.sort(key=lambda r: -r["q"])
    best = results[:top]
    out: dict[str, Any] = {
        "score": round(best[0]["q"], 4) if best else None,
        "target_sequence": tok.decode([best[0]["first"]] + best[0]["ids"], skip_special_tokens=True) if best else None,
        "top": [{"target": tok.decode([r["first"]] + r["ids"], skip_special_tokens=True), "q": round(r["q"], 4)} for r in best],
        "candidates_run": len(chosen), "vocab_candidates": len(cands), "subset_seed": seed if len(chosen) < len(cands) else None,
        "n_prompts": n_prompts, "max_len": max_len, "prune": prune, "batch": batch,
        "forward_tokens": inv.forward_tokens, "seconds": round(secs, 3), "load_seconds": round(load_s, 3),
        "threads": torch.get_num_threads(), "notes": [],
    }
    if len(chosen) < len(cands):
        per_s = (secs - prefill_s) / len(chosen)
        per_tok = (inv.forward_tokens - prefill_tokens) / len(chosen)
        out["extrapolated"] = {"seconds": round(prefill_s + per_s * len(cands), 1),
                               "forward_tokens": int(prefill_tokens + per_tok * len(cands))}
        out["notes"].append(f"random subset of {len(chosen)} of {len(cands)} first tokens (seed {seed}); full-vocabulary cost extrapolated")
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI: ``--target PATH -o OUT.json [--vocab-subset N] [--prompts K] [--max-len L] [--batch B]``."""
    ap = argparse.ArgumentParser(description="BAIT-style target inversion baseline")
    ap.add_argument("--target", required=True)
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--vocab-subset", type=int, default=0, help="candidate first tokens to run (0: the whole vocabulary)")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--max-len", type=int, default=12)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    res = run(args.target, args.vocab_subset, args.seed, args.prompts, args.max_len, args.batch)
    Path(args.output).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
