"""Robust statistics shared by the weight checks: robust z-scores, ``z = (x - median) /
(1.4826 * MAD)``, the median/MAD form of Iglewicz & Hoaglin (1993) as used by Neural Cleanse's
anomaly index (Wang et al., S&P 2019).
"""
from __future__ import annotations

from typing import Any

import torch


def robust_z(x: torch.Tensor) -> torch.Tensor:
    """Robust z-scores of a 1-D tensor (median/MAD); shape preserved. A zero MAD falls back to the
    mean absolute deviation, then to 1."""
    med = x.median()
    mad = (x - med).abs().median() * 1.4826
    if float(mad) == 0.0:
        mad = (x - med).abs().mean() * 1.2533 or torch.tensor(1.0)
    return (x - med) / (mad if float(mad) > 0 else 1.0)


def valid_rows(tokenizer: Any, vocab_size: int) -> torch.Tensor:
    """Mask ``[vocab_size]`` of rows that belong to a real token of the tokenizer (padding rows of
    an embedding matrix rounded up to a multiple of 64 are excluded)."""
    mask = torch.zeros(vocab_size, dtype=torch.bool)
    ids = [i for i in tokenizer.get_vocab().values() if i < vocab_size] if tokenizer is not None else list(range(vocab_size))
    mask[ids] = True
    return mask


def surface_form(token: str) -> str:
    """A token's word without subword markers (WordPiece ``##``, BPE ``Ġ``, SentencePiece ``▁``) or
    case, so that surface forms of one word compare equal."""
    return str(token).lstrip("#").lstrip("\u0120\u2581").lower()
