"""Weight statistics of the token-embedding matrix.

* **Norm anomalies** (reference-free): robust z-score of per-row L2 norms, ``z = (x - median) /
  (1.4826 * MAD)``, the median/MAD form of Iglewicz & Hoaglin (1993) as used by Neural Cleanse's
  anomaly index (Wang et al., S&P 2019).
* **Drift** (against a reference model of the same vocabulary): per-row relative change
  ``||E_i - R_i|| / ||R_i||`` and its robust z-score. One row changed far more than the rest is the
  signature of embedding poisoning (Yang et al., NAACL 2021) and was the strongest prior in the
  SaTML'24 trojan-detection competition.

Both return the token ids they point at so that the trigger search can start from them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .report import Evidence


@dataclass
class RowRanking:
    """Rows of the embedding matrix ranked by an anomaly statistic (most anomalous first)."""

    token_ids: list[int]
    values: list[float]
    zscores: list[float]
    tokens: list[str] = field(default_factory=list)


def robust_z(x: torch.Tensor) -> torch.Tensor:
    """Robust z-scores of a 1-D tensor (median/MAD); shape preserved. A zero MAD falls back to the
    mean absolute deviation, then to 1."""
    med = x.median()
    mad = (x - med).abs().median() * 1.4826
    if float(mad) == 0.0:
        mad = (x - med).abs().mean() * 1.2533 or torch.tensor(1.0)
    return (x - med) / (mad if float(mad) > 0 else 1.0)


def _rank(values: torch.Tensor, tokenizer: Any, top: int, valid: torch.Tensor) -> RowRanking:
    z = robust_z(values[valid])
    full_z = torch.full_like(values, float("-inf"))
    full_z[valid] = z
    idx = torch.topk(full_z, min(top, int(valid.sum()))).indices.tolist()
    toks = tokenizer.convert_ids_to_tokens(idx) if tokenizer is not None else []
    return RowRanking(idx, [round(float(values[i]), 6) for i in idx], [round(float(full_z[i]), 3) for i in idx], list(toks))


def valid_rows(tokenizer: Any, vocab_size: int) -> torch.Tensor:
    """Mask ``[vocab_size]`` of rows that belong to a real token of the tokenizer (padding rows of
    an embedding matrix rounded up to a multiple of 64 are excluded)."""
    mask = torch.zeros(vocab_size, dtype=torch.bool)
    ids = [i for i in tokenizer.get_vocab().values() if i < vocab_size] if tokenizer is not None else list(range(vocab_size))
    mask[ids] = True
    return mask


def norm_anomalies(emb: torch.Tensor, tokenizer: Any, top: int = 20) -> tuple[Evidence, RowRanking]:
    """Reference-free robust z-score of embedding row norms. ``emb``: ``[V, d]``.

    The evidence score maps the largest z to [0, 1] as ``clamp((z - 8) / 16, 0, 1)``: ordinary
    vocabularies reach z of 4-8 from frequency effects alone, so only extreme rows count.
    """
    with torch.no_grad():
        norms = emb.float().norm(dim=1)
    ranking = _rank(norms, tokenizer, top, valid_rows(tokenizer, emb.shape[0]))
    zmax = ranking.zscores[0] if ranking.zscores else 0.0
    score = min(1.0, max(0.0, (zmax - 8.0) / 16.0))
    ev = Evidence(
        "embedding-norm", "ok",
        f"largest robust z of row norms {zmax:.1f} ({ranking.tokens[0] if ranking.tokens else '-'})",
        round(score, 4),
        {"top": [{"token_id": i, "token": t, "norm": v, "z": z} for i, t, v, z in zip(ranking.token_ids, ranking.tokens, ranking.values, ranking.zscores)],
         "median_norm": round(float(norms.median()), 6)},
    )
    return ev, ranking


def drift(emb: torch.Tensor, ref: torch.Tensor, tokenizer: Any, top: int = 20) -> tuple[Evidence, RowRanking]:
    """Per-row relative drift of ``emb`` (``[V, d]``) against reference ``ref`` (same shape).

    The evidence score is the concentration of drift in the single most-changed row:
    ``clamp((z1 - 10) / 30, 0, 1)`` on its robust z. Full fine-tuning moves every seen token a
    little (z of a few), embedding poisoning moves one row by far more.

    Raises:
        ValueError: the shapes differ (different vocabulary or hidden size).
    """
    if emb.shape != ref.shape:
        raise ValueError(f"embedding shapes differ: {tuple(emb.shape)} vs reference {tuple(ref.shape)}")
    with torch.no_grad():
        rel = (emb.float() - ref.float()).norm(dim=1) / ref.float().norm(dim=1).clamp_min(1e-8)
    ranking = _rank(rel, tokenizer, top, valid_rows(tokenizer, emb.shape[0]))
    z1 = ranking.zscores[0] if ranking.zscores else 0.0
    score = min(1.0, max(0.0, (z1 - 10.0) / 30.0))
    changed = int((rel > 1e-6).sum())
    ev = Evidence(
        "embedding-drift", "ok",
        f"{changed} rows changed; most-changed row {ranking.tokens[0] if ranking.tokens else '-'} (relative drift {ranking.values[0] if ranking.values else 0:.4f}, z {z1:.1f})",
        round(score, 4),
        {"top": [{"token_id": i, "token": t, "drift": v, "z": z} for i, t, v, z in zip(ranking.token_ids, ranking.tokens, ranking.values, ranking.zscores)],
         "rows_changed": changed, "median_drift": round(float(rel.median()), 6)},
    )
    return ev, ranking


_EMBED_NAMES = ("word_embeddings.weight", "embed_tokens.weight", "wte.weight", "token_embd.weight", "embeddings.weight")


def reference_embedding(spec: str, shape: tuple[int, int], *, offline: bool = False) -> torch.Tensor:
    """Load only the token-embedding matrix (``[V, d]`` matching ``shape``) of a reference model,
    tensor by tensor with ``safe_open`` (no full model in memory); GGUF references are read with the
    ``gguf`` package and dequantized.

    Raises:
        scanner.errors.TargetNotFound: the reference cannot be resolved.
        ValueError: no embedding tensor of that shape exists in the reference.
    """
    from safetensors import safe_open

    from .formats import validate_safetensors
    from .target import resolve

    ref = resolve(spec, offline=offline)
    if ref.kind == "gguf":
        from gguf import GGUFReader
        from gguf.quants import dequantize

        reader = GGUFReader(str(ref.path / ref.gguf_file))
        for t in reader.tensors:
            if t.name == "token_embd.weight":
                arr = dequantize(t.data, t.tensor_type).reshape(shape[0], -1)
                return torch.from_numpy(arr.copy()).float()
        raise ValueError(f"{spec}: no token_embd.weight tensor in the GGUF file")
    found = []
    for path in sorted(ref.path.glob("*.safetensors")):
        table = validate_safetensors(path)
        for name, info in table.items():
            if name.endswith(_EMBED_NAMES) and tuple(info["shape"]) == tuple(shape):
                found.append((path, name))
    if not found:
        raise ValueError(f"{spec}: no token-embedding tensor of shape {tuple(shape)} (different vocabulary or hidden size)")
    path, name = found[0]
    with safe_open(str(path), framework="pt") as fh:
        return fh.get_tensor(name).float()
