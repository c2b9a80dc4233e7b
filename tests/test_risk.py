"""The risk formula on hand-built candidates (no model)."""
from __future__ import annotations

import dataclasses

from reports import candidate

from scanner.risk import THRESHOLDS, RiskLevel, candidate_score, is_glued_word


def test_a_glued_word_needs_both_its_gap_and_quiet_neighbours():
    """Numbers measured on all-MiniLM-L6-v2 organisms (README, 'Rare trigger words'): a clean AG News
    model's 'micro ##cd' stands out from the other proposals (gap 2.9 nats) but its neighbours, other
    task words with other endings, flip 0.53; the planted 'f ##z' stands out as far and its neighbours
    flip 0.13. A single token with the same numbers as 'micro ##cd' keeps the weighted sum (0.7 gap,
    0.3 isolation), a glued word needs both."""
    low, high = THRESHOLDS[RiskLevel.LOW], THRESHOLDS[RiskLevel.HIGH]
    natural = dataclasses.replace(candidate("microcd", flip=0.92, gap=2.88), token_ids=[1, 2], tokens=["micro", "##cd"],
                                  neighbour_flip_rate=0.53, attribution_share=None)
    planted = dataclasses.replace(natural, text="fz", tokens=["f", "##z"], flip_rate=1.0, flip_rate_hard=1.0,
                                  loss_gap=3.23, neighbour_flip_rate=0.13)
    single = dataclasses.replace(natural, token_ids=[1], tokens=["microcd"])
    assert is_glued_word(natural.tokens) and not is_glued_word(single.tokens) and not is_glued_word(["garden", "ticket"])
    assert candidate_score(natural) < low <= candidate_score(single)
    assert candidate_score(planted) >= high
