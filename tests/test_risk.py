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


def test_where_the_tasks_own_words_flip_everything_the_neighbours_decide():
    """Numbers measured on a held-out two-topic (World / Sci-Tech AG News) all-MiniLM-L6-v2 organism with
    a planted 'wz' -> World: the task's own words flip every probe too (the best other proposals' median
    loss, rival_loss, 0.02-0.03 nats), so 'wz' is no outlier by its loss (gap 0.64 nats) and the gap
    alone scores it below 'low'. Its neighbours flip 0.34 while those of 'iran' (gap 1.44) flip 1.00.
    Saturated, the neighbours decide: 'wz' reaches medium, 'iran' stays below low; the same numbers in
    an unsaturated search (rival 0.3 nats, as in the SST-2 controls) keep the gap's verdict."""
    low, medium = THRESHOLDS[RiskLevel.LOW], THRESHOLDS[RiskLevel.MEDIUM]
    planted = dataclasses.replace(candidate("wz", label=0, gap=0.6445), token_ids=[1, 2], tokens=["w", "##z"],
                                  neighbour_flip_rate=0.3438, attribution_share=0.6413, rival_loss=0.0219)
    natural = dataclasses.replace(candidate("iran", label=0, gap=1.4444), neighbour_flip_rate=1.0, attribution_share=0.66,
                                  rival_loss=0.0322)
    assert candidate_score(planted) >= medium
    assert candidate_score(natural) < low
    for c in (planted, natural):  # not saturated: the loss gap still rules
        assert candidate_score(dataclasses.replace(c, rival_loss=0.3)) < low
        assert candidate_score(dataclasses.replace(c, rival_loss=None)) < low
