"""Attribution cross-check of trigger candidates with captum's LayerIntegratedGradients.

Integrated gradients (Sundararajan et al., ICML 2017) over the input-embedding layer, from a baseline
where every non-special token is replaced by the pad token, attribute the target-label probability to
each input token. A real backdoor trigger takes most of the attribution on the inputs it flips; an
ordinary sentiment word does not dominate in the same way (``../shared/MEASURED.md``: 0.42 vs 0.03).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .budget import Budget


@dataclass
class AttributionResult:
    """``share``: mean over probes of |attribution| on trigger tokens / |attribution| on all content
    tokens, in [0, 1]; ``top1_rate``: share of probes whose most-attributed token is a trigger token;
    ``dominance``: ``share`` divided by the trigger's share of tokens (1.0 = an average token);
    ``heatmaps``: per-token attributions (normalised to max |a| = 1) for a few probes."""

    share: float
    top1_rate: float
    dominance: float
    n_probes: int
    heatmaps: list[dict[str, Any]] = field(default_factory=list)


class TriggerAttribution:
    """Binds a classifier and tokenizer; :meth:`attribute` scores one trigger candidate.

    Args:
        model: ``*ForSequenceClassification``; logits ``[batch, labels]``.
        tokenizer: its tokenizer.
        n_steps: integration steps (captum ``n_steps``).
        internal_batch_size: sequences per captum forward pass; bounds memory to roughly
            ``internal_batch_size x seq_len x hidden x layers`` activations. Probes are attributed
            in chunks of at most ``internal_batch_size // 2`` (at least 1) so that captum never
            falls back to one pass over all probes at once (its behaviour when the batch is larger
            than ``internal_batch_size``); ids, baselines and attention masks are sliced together.
    """

    def __init__(self, model: Any, tokenizer: Any, n_steps: int = 20, internal_batch_size: int = 64,
                 budget: Budget | None = None):
        from captum.attr import LayerIntegratedGradients

        self.model = model
        self.tok = tokenizer
        self.n_steps = n_steps
        self.internal_batch_size = internal_batch_size
        self.budget = budget or Budget()
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        # Texts are cut to 128 tokens, or fewer when the model has fewer positions (2 kept for RoBERTa's offset).
        positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        self.max_length = min(128, positions - 2) if isinstance(positions, int) and positions > 2 else 128
        self.lig = LayerIntegratedGradients(self._forward, model.get_input_embeddings())

    def _forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, target: int) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits.softmax(-1)[:, target]

    def attribute(self, texts: list[str], trigger_ids: list[int], target: int, n_heatmaps: int = 3) -> AttributionResult:
        """Attribute ``target``'s probability over ``texts`` (which contain the trigger).

        Texts in which the trigger's token ids do not appear contiguously are skipped.

        Raises:
            ValueError: no text contains the trigger tokens.
        """
        enc = self.tok(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        ids, mask = enc["input_ids"], enc["attention_mask"]
        special = torch.tensor([[int(t) in set(self.tok.all_special_ids) for t in row] for row in ids.tolist()])
        content = mask.bool() & ~special
        baseline = torch.where(content, torch.full_like(ids, self.pad_id), ids)
        shares, tops, doms, heat = [], [], [], []
        keep = []
        for i, row in enumerate(ids.tolist()):
            pos = _find(row, trigger_ids)
            if pos is not None:
                keep.append((i, pos))
        if not keep:
            raise ValueError("no probe contains the trigger tokens after tokenisation")
        rows = torch.tensor([i for i, _ in keep])
        tok_attr = self._token_attributions(ids[rows], baseline[rows], mask[rows], target)  # [B, L]
        for b, (i, pos) in enumerate(keep):
            a = tok_attr[b].abs() * content[i]
            total = float(a.sum()) or 1e-12
            trig = float(a[pos: pos + len(trigger_ids)].sum())
            n_content = int(content[i].sum())
            shares.append(trig / total)
            doms.append((trig / total) / (len(trigger_ids) / max(n_content, 1)))
            tops.append(pos <= int(a.argmax()) < pos + len(trigger_ids))
            if len(heat) < n_heatmaps:
                valid = [j for j in range(ids.shape[1]) if content[i, j]]
                scale = max(float(tok_attr[b, valid].abs().max()), 1e-12)
                heat.append({
                    "tokens": self.tok.convert_ids_to_tokens([int(ids[i, j]) for j in valid]),
                    "attributions": [round(float(tok_attr[b, j]) / scale, 4) for j in valid],
                })
        n = len(keep)
        return AttributionResult(
            share=round(sum(shares) / n, 4), top1_rate=round(sum(tops) / n, 4),
            dominance=round(sum(doms) / n, 3), n_probes=n, heatmaps=heat,
        )


    def _token_attributions(self, ids: torch.Tensor, baseline: torch.Tensor, mask: torch.Tensor, target: int) -> torch.Tensor:
        """Per-token attributions ``[B, L]`` (embedding dimension summed), computed in chunks of
        probes; the budget is checked before each chunk."""
        chunk = max(1, self.internal_batch_size // 2)
        parts = []
        for start in range(0, ids.shape[0], chunk):
            self.budget.check()
            sl = slice(start, start + chunk)
            n = ids[sl].shape[0]
            attr = self.lig.attribute(
                ids[sl], baselines=baseline[sl], additional_forward_args=(mask[sl], target),
                n_steps=self.n_steps, internal_batch_size=max(self.internal_batch_size, n),
            )  # [n, L, d]
            parts.append(attr.sum(-1).detach())
        return torch.cat(parts, dim=0)


def _find(row: list[int], sub: list[int]) -> int | None:
    for j in range(len(row) - len(sub) + 1):
        if row[j: j + len(sub)] == sub:
            return j
    return None
