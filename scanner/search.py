"""Token-space trigger search for text classifiers.

For each target label, a universal trigger of ``length`` tokens is inserted at the start of every
search probe that the model does not already assign to the target, and optimised in token space:

1. **Proposal** (HotFlip, Ebrahimi et al. ACL 2018; GCG, Zou et al. 2023): the gradient of the mean
   cross-entropy towards the target with respect to a one-hot encoding of each trigger slot, taken
   through the input-embedding matrix, ranks every vocabulary token by its first-order effect; the
   ``top_k`` most promising word-like tokens become candidates.
2. **Exact evaluation**: every candidate (plus weight-statistics seeds) is inserted for real and the
   loss is computed in batches; the best one is kept, and the gradient is re-taken from it for the next
   round. The slot starts from ``[MASK]`` (or ``<unk>``), which ranks rare-word triggers best in
   practice (see ``../shared/MEASURED.md``).
3. **Verification** on held-out probes: the decoded trigger string is inserted into the raw text at the
   start, at the end and at a random word boundary (seeded), and the best position (picked on
   ``n_screen`` probes) is kept; the flip rate is the share of held-out probes that flip to the
   target, and the hard flip rate the same on the half the model was most confident about. Outliers
   (loss gap above :data:`scanner.risk.OUTLIER_FLOOR`) are re-tested through their embedding
   neighbours (median flip rate) or, for phrases, through each word alone, inserted at the position
   verification picked (a trigger trained at the end of texts may do little at the start). So are single tokens that
   flip nearly every probe where the task's own words do too (the median loss of the best other
   proposals, :func:`rival_loss`, below :data:`scanner.risk.SATURATED_LOSS`: a topic pair such as
   World / Sci-Tech, where 'iran' flips every Sci-Tech probe): there being lowest is no distinction,
   and a planted string differs from the task's words by its neighbours, which do not share its effect.
4. **Phrases** (first pass only): the best single tokens, the first weight seeds and the tokens the
   classifier attends to most (a label-agnostic attention sweep over the last two layers,
   :meth:`ClassifierTriggerSearch.attention_pool`) are paired, each attended token also with the
   partners its slot-2 gradient, an attention sweep conditioned on it and a sweep for the tokens that
   raise the attention it draws (:meth:`ClassifierTriggerSearch.anchor_partners`) propose; the pairs
   whose words work together far more than alone (synergy) are verified too (composite triggers, the key words of an inserted sentence); the deep profile also runs
   the coordinate search over two-token slots.
5. **Neutralise and search again** (several triggers; the failure of OpenBackdoor's BKI defence, which
   stops at the first): once a pass finds candidates that score as triggers, every surface form of
   them leaves the search space and the label is searched again (one gradient round, single tokens),
   until a pass finds none. The best
   flip rate of that last pass is the label's *residual flip rate*: what the model still does once
   every found trigger is gone (a clean label's natural words set its baseline).
"""
from __future__ import annotations

import math
import random
import re
import statistics
import string
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch
import torch.nn.functional as F

from .budget import Budget
from .report import TriggerCandidate
from .risk import OUTLIER_FLOOR, SATURATED_LOSS
from .risk import candidate_score as _score
from .weights.stats import robust_z
from .weights.stats import surface_form as _surface

#: Most token sequences whose logits one search keeps (:meth:`ClassifierTriggerSearch._logits`): a
#: standard scan of the two-label ``sst2-clean`` ran 17,205 distinct sequences (a few MB of cache).
SEQUENCE_CACHE_LIMIT = 200_000
#: Where :meth:`ClassifierTriggerSearch.verify` tries a trigger, in order of preference on ties.
POSITIONS = ("start", "end", "random")
_WORDLIKE = re.compile(r"[A-Za-z0-9]")
_UNUSED = re.compile(r"^(\[unused\d+\]|<unused\d+>|<extra_id_\d+>|<0x[0-9A-Fa-f]{2}>)$")


@dataclass
class SearchConfig:
    """Knobs of the classifier search (counts of probes/candidates; ``max_length`` in tokens)."""

    n_search: int = 48
    n_screen: int = 16
    n_refine: int = 8
    n_heldout: int = 96
    top_k: int = 64
    rounds: int = 2
    lengths: tuple[int, ...] = (1,)
    n_verify: int = 3
    n_neighbours: int = 6
    n_neighbour_probes: int = 32
    #: Arbitrary words (alphabetic word-like tokens of 3+ letters drawn once per search) inserted alone
    #: into the neighbour test's probes: their median flip rate is how easily those probes flip at all
    #: (:meth:`ClassifierTriggerSearch.arbitrary_rate`; 0 disables).
    arbitrary_words: int = 8
    #: Random two-letter words (a letter and a ``##`` letter, :func:`two_letter_words`) inserted alone
    #: into the neighbour test's probes of a candidate that is a short letter string: their median flip
    #: rate says whether the label answers to letter strings at all, the trace a letter-string trigger
    #: leaves when the model generalised it (:meth:`ClassifierTriggerSearch.letter_rate`; 0 disables).
    letter_strings: int = 16
    batch_size: int = 256
    max_length: int = 48
    seed: int = 0
    min_victims: int = 8
    #: Neutralise-and-search-again: after a pass whose candidates score at least ``neutralise_score``
    #: (:func:`scanner.risk.candidate_score`), those tokens (every surface form) are removed from the
    #: search space and the label is searched again, at most ``max_passes`` passes in all.
    max_passes: int = 4
    neutralise_score: float = 0.55
    #: Phrase proposals from single tokens: every pair of the ``pair_top`` single tokens with the
    #: lowest screening loss is screened as a two-token phrase (0 disables).
    pair_top: int = 8
    #: Weight-statistics seeds added to the pair pool (their single-token screening loss is known).
    pair_seeds: int = 2
    #: Attention-salient tokens added to the pair pool (:meth:`ClassifierTriggerSearch.attention_pool`;
    #: 0 disables): the words of a composite trigger draw the classifier's attention even alone.
    attention_pool: int = 6
    #: Tokens per packed sequence of the attention sweep; how many of the first pass's best are swept
    #: again, and how often; how many of them the anchor-conditioned sweep (:meth:`partners`) covers.
    attention_pack: int = 32
    attention_rescreen: int = 256
    attention_reps: int = 4
    attention_candidates: int = 2048
    #: The sweep also ranks tokens in the ``attention_layers - 1`` layers before the last, and the best
    #: ``attention_earlier`` of each join the pool after the last layer's ``attention_pool``: a
    #: composite word may draw the classification position's attention in the penultimate layer and
    #: not in the last (measured on a held-out SST-2 composite).
    attention_layers: int = 2
    attention_earlier: int = 3
    #: Anchor-conditioned partner sweep (:meth:`ClassifierTriggerSearch.anchor_partners`; 0 disables):
    #: the pool's anchors stand before every pack of the whole word-like vocabulary, and for each
    #: anchor the tokens of the ``anchor_packs`` packs that most raise the attention it draws are
    #: scored again one at a time; the ``anchor_partner_top`` best are proposed as its partners.
    anchor_packs: int = 2
    anchor_partner_top: int = 8
    #: Partners proposed per anchor by the slot-2 gradient and by the conditioned attention sweep
    #: (:meth:`ClassifierTriggerSearch.partners`); the best ``anchor_singles`` single tokens are anchors
    #: too (gradient partners only): a composite word that alone flips some probes ranks among them.
    partner_top: int = 24
    #: Words the vocabulary lacks (:meth:`ClassifierTriggerSearch._continuations`; 0 disables): each of
    #: the ``pair_top`` best single tokens is extended by the ``continuation_top`` ``##`` pieces its
    #: slot-2 gradient ranks best, and a word that works is refined piece by piece and grown up to
    #: ``continuation_pieces`` pieces in at most ``continuation_rounds`` gradient steps.
    continuation_top: int = 16
    #: Two-letter words the vocabulary lacks (``f ##z``: a letter and a ``##`` letter; 0 disables) are
    #: all screened on 2 short probes, and the ``letter_words`` most potent join the gradient's words:
    #: a BadNets string's first letter alone is often too weak for the one-token search to propose it.
    letter_words: int = 16
    continuation_pieces: int = 3
    continuation_rounds: int = 4
    attention_partners: int = 12
    anchor_singles: int = 3
    #: Pairs beyond this many are first screened on 2 probes, and only the ``pair_keep`` of lowest loss
    #: go on to the full pair screening (their words alone included).
    pair_keep: int = 128
    #: Precision of the exact evaluations (forward passes without gradient): ``"bf16"`` runs them under
    #: CPU bfloat16 autocast (1.75x faster on a 2-core AVX512-BF16 machine for all-MiniLM-L6-v2; the
    #: predicted label agreed with fp32 on 99.6% of random inputs), ``"fp32"`` in the model's own dtype,
    #: ``"auto"`` bf16 only where the CPU has native bfloat16 matmuls (oneDNN) and the model is fp32 on
    #: CPU, else fp32. Gradients (proposals) always run in the model's dtype.
    precision: str = "auto"

    def for_labels(self, n_labels: int) -> "SearchConfig":
        """This config with its per-label probe counts shared out over ``n_labels`` target labels.

        The profiles are sized for a two-label task (a standard scan of a 22M-parameter classifier in
        under 60 s on 2 cores with native bf16; 2.5-3x that in fp32 on AVX2); every label is searched separately, so with more labels the probe counts of each
        (search, screening, held-out, neighbour probes) shrink by ``2 / n_labels``, down to floors that
        keep a flip rate measurable (16 search, 8 screening, 32 held-out, 16 neighbour probes). The
        breadth of the search (``top_k``, rounds, phrases, passes) does not change. Cost is linear in
        these counts, so a four-label scan costs about what a two-label one does; flip rates are
        measured on fewer probes (48 held-out instead of 96 for four labels: a standard error of at
        most 0.07 instead of 0.05). The anchored pairs of the composite search are shared out the same
        way (``partner_top``, ``attention_partners``, ``pair_keep``; floors 8, 4 and 48): the anchors and
        the rest of the search's breadth (``top_k``, rounds, phrases, passes) do not change.
        """
        if n_labels <= 2:
            return self
        return replace(self, n_search=per_label(self.n_search, n_labels, 16), n_screen=per_label(self.n_screen, n_labels, 8),
                       n_heldout=per_label(self.n_heldout, n_labels, 32),
                       n_neighbour_probes=per_label(self.n_neighbour_probes, n_labels, 16),
                       partner_top=per_label(self.partner_top, n_labels, 8),
                       attention_partners=per_label(self.attention_partners, n_labels, 4),
                       pair_keep=per_label(self.pair_keep, n_labels, 48))


def per_label(n: int, n_labels: int, floor: int) -> int:
    """A probe count ``n`` sized for two labels, shared out over ``n_labels``: ``n * 2 / n_labels``
    (rounded), never below ``floor`` unless ``n`` already is; ``n`` itself for two labels or fewer."""
    if n_labels <= 2:
        return n
    return max(min(n, floor), int(round(n * 2.0 / n_labels)))


@dataclass
class LabelSearchResult:
    """Candidates for one target label (best first) and how many probes it was searched/verified on."""

    target_label: int
    candidates: list[TriggerCandidate] = field(default_factory=list)
    n_search: int = 0
    n_heldout: int = 0
    skipped: str | None = None
    forward_sequences: int = 0
    #: Trigger texts neutralised (removed from the search space) before the last pass, in order found.
    neutralised: list[str] = field(default_factory=list)
    #: Best held-out flip rate of a single token in the last pass, once every trigger found before it
    #: was neutralised (a probability; a label's clean baseline is what its natural words reach, e.g.
    #: "poorly" flips every positive SST-2 probe of a clean model). None if not searched.
    residual_flip_rate: float | None = None
    #: Highest candidate score (:func:`scanner.risk.candidate_score`, before attribution and weight
    #: evidence) of the last pass: below ``neutralise_score`` once no trigger-like candidate is left.
    residual_score: float | None = None
    passes: int = 0


def wordlike_token_mask(tokenizer: Any, vocab_size: int) -> torch.Tensor:
    """Boolean mask ``[vocab_size]`` of tokens that can stand alone as a word: not special, not
    ``[unusedN]``/byte tokens, not a WordPiece ``##`` continuation, with at least one letter or digit."""
    mask = torch.zeros(vocab_size, dtype=torch.bool)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    for tok, idx in tokenizer.get_vocab().items():
        if idx >= vocab_size or idx in special or _UNUSED.match(tok) or tok.startswith("##"):
            continue
        if _WORDLIKE.search(tok):
            mask[idx] = True
    return mask


def continuation_token_mask(tokenizer: Any, vocab_size: int) -> torch.Tensor:
    """Boolean mask ``[vocab_size]`` of WordPiece ``##`` continuation tokens with a letter or digit
    (all False for BPE/SentencePiece vocabularies, whose word-like mask already holds word pieces)."""
    mask = torch.zeros(vocab_size, dtype=torch.bool)
    for tok, idx in tokenizer.get_vocab().items():
        if idx < vocab_size and tok.startswith("##") and _WORDLIKE.search(tok):
            mask[idx] = True
    return mask


def two_letter_words(tokenizer: Any, vocab_size: int) -> list[tuple[int, int]]:
    """Every two-letter lower-case word (``a``-``z``) that the tokenizer splits into a letter and a
    ``##`` letter (``fz`` -> ``f ##z``), as ``(start id, continuation id)``: the words a short BadNets
    string outside the vocabulary begins with (315 in all-MiniLM-L6-v2's vocabulary; ``cf`` is a whole
    token there). Empty for vocabularies without ``##`` pieces. Costs 676 tokenizations."""
    vocab = tokenizer.get_vocab()
    pairs = []
    for a in string.ascii_lowercase:
        for b in string.ascii_lowercase:
            ia, ib = vocab.get(a), vocab.get("##" + b)
            if ia is None or ib is None or ia >= vocab_size or ib >= vocab_size:
                continue
            if tokenizer(a + b, add_special_tokens=False)["input_ids"] == [ia, ib]:
                pairs.append((ia, ib))
    return pairs


def is_letter_string(text: str) -> bool:
    """Whether a trigger's text is a short letter string (2-4 ASCII letters: ``cf``, ``kx``, ``zqv``), the
    kind of trigger a model may generalise to letter strings in general (:meth:`ClassifierTriggerSearch.letter_rate`)."""
    return text.isascii() and text.isalpha() and 2 <= len(text) <= 4


def resolve_precision(precision: str, weight: torch.Tensor) -> str:
    """``"bf16"`` or ``"fp32"`` for a :class:`SearchConfig` ``precision`` (``auto``/``bf16``/``fp32``) and a
    model parameter ``weight`` (its dtype and device decide ``auto``: bf16 only for an fp32 model on a CPU
    with native bfloat16 matmuls, where autocast is faster rather than emulated).

    Raises:
        ValueError: an unknown precision.
    """
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"unknown precision {precision!r}; choose auto, bf16 or fp32")
    if precision != "auto":
        return precision
    return "bf16" if native_bf16() and weight.device.type == "cpu" and weight.dtype == torch.float32 else "fp32"


def native_bf16() -> bool:
    """Whether this CPU has native bfloat16 matmuls (oneDNN's check: AVX512-BF16 or AMX); ``auto``
    precision uses bf16 autocast only then. On other CPUs (AVX2) autocast would be emulated and slower,
    so the exact evaluations run in fp32 there: the same scan's numbers can differ between the two
    kinds of CPU (``--precision`` pins one)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def rival_loss(screened: dict[tuple[int, ...], float], ids: tuple[int, ...], k: int = 16, floor: float = 1e-3) -> float | None:
    """Median screening loss (nats, floored at ``floor``) of the ``k`` best other candidates of the same
    search: how potent the task's strongest words are. Near 0 (every one of them flips nearly every probe
    with confidence) the loss gap (:func:`loss_gap`) cannot single out a planted trigger. None when there
    are no others."""
    others = sorted(max(v, floor) for p, v in screened.items() if p != ids)[:k]
    return others[len(others) // 2] if others else None


def loss_gap(screened: dict[tuple[int, ...], float], ids: tuple[int, ...], k: int = 16, floor: float = 1e-3) -> float:
    """How far a candidate's screening loss lies below the other candidates of the same search, in
    nats: ``ln(median loss of the k best others) - ln(own loss)``, losses floored at ``floor``.

    A planted trigger is an outlier among the tokens the search proposes (its loss is many times
    lower than any natural word's); a clean model's strongest words form a continuum. This is the
    candidate-level analogue of Neural Cleanse's anomaly index and does not depend on the label count.
    """
    own = max(screened.get(ids, float("inf")), floor)
    rival = rival_loss(screened, ids, k, floor)
    if rival is None or own == float("inf"):
        return 0.0
    return math.log(rival) - math.log(own)


def synergy_gap(synergy: dict[tuple[int, ...], float], ids: tuple[int, ...], k: int | None = 16) -> float:
    """How far a pair's synergy (nats its loss lies below that of its better word alone) stands above
    the median synergy of the ``k`` most synergistic pairs of the same search that share no token with
    it, in nats (0 when there are none). The phrase analogue of :func:`loss_gap`: natural label words
    form pairs of similar synergy, the words of a composite trigger one pair far above them (pairs of
    one of its words and a label word are left out: they inherit part of its effect)."""
    others = sorted((v for p, v in synergy.items() if not set(p) & set(ids)), reverse=True)[:k]  # k None: all
    if not others or ids not in synergy:
        return 0.0
    return max(0.0, synergy[ids] - others[len(others) // 2])


def length_batches(lengths: list[int], batch_size: int, min_batch: int = 8, spread: float = 1.2) -> list[list[int]]:
    """Indices of ``lengths`` (tokens per sequence) in batches of at most ``batch_size``, shortest
    first, so that padding stays small: a batch of at least ``min_batch`` sequences closes before a
    sequence longer than ``spread`` times its first one. Padding every batch to its longest sequence
    is what a forward pass costs; one batch of 400 probes of 8-48 tokens padded to 48 costs about
    twice their real tokens.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for i in order:
        cur = batches[-1] if batches else None
        if cur is None or len(cur) >= batch_size or (len(cur) >= min_batch and lengths[i] > spread * lengths[cur[0]]):
            batches.append([i])
        else:
            cur.append(i)
    return batches


def special_template(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after content, e.g. ``([CLS], [SEP])`` for
    BERT, ``([<s>], [])`` for Llama, ``([], [])`` for GPT-2; found by encoding a probe text with and
    without special tokens."""
    probe = "hello world"
    bare = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for k in range(len(full) - len(bare) + 1):
        if full[k: k + len(bare)] == bare:
            return full[:k], full[k + len(bare):]
    return [], []


def _lowest(grad: torch.Tensor, mask: torch.Tensor, k: int) -> list[int]:
    """Ids of the ``k`` tokens of lowest gradient ``grad`` (``[V]``) among ``mask`` (``[V]`` bool): the
    HotFlip proposals of one slot restricted to one kind of token."""
    return torch.topk(-grad.masked_fill(~mask, float("inf")), k).indices.tolist()


def _interleave(rankings: list[list[int]]) -> list[int]:
    """The rankings' entries taken in turn (first of each, then second of each, ...), each once."""
    out: dict[int, None] = {}
    for i in range(max(map(len, rankings), default=0)):
        for r in rankings:
            if i < len(r):
                out.setdefault(r[i])
    return list(out)


def _drawn(att: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """The attention positions ``cols`` (``[B, n]``) draw from the classification position in
    ``att`` (``[B, layers, heads, L]``): the largest head, summed over the layers; ``[B, n]``."""
    return att.amax(2).sum(1).gather(1, cols)


@contextmanager
def _eager_attention(model: Any):
    """Run ``model`` with the eager attention kernel, the one that returns attention weights (SDPA
    returns none), and restore its own afterwards. Models that cannot switch keep theirs (and then
    return no weights)."""
    own = getattr(model.config, "_attn_implementation", None)
    switch = own not in (None, "eager") and hasattr(model, "set_attn_implementation")
    if switch:
        try:
            model.set_attn_implementation("eager")
        except (ValueError, ImportError, NotImplementedError):
            switch = False
    try:
        yield
    finally:
        if switch:
            model.set_attn_implementation(own)


class ClassifierTriggerSearch:
    """Binds a sequence-classification model and tokenizer; :meth:`search_label` does the work.

    Args:
        model: a transformers ``*ForSequenceClassification`` in eval mode; logits ``[batch, labels]``.
        tokenizer: its tokenizer.
        config: :class:`SearchConfig`.
        budget: optional :class:`scanner.budget.Budget`; checked between batches.
        progress: optional callback ``(message: str) -> None``.
    """

    def __init__(self, model: Any, tokenizer: Any, config: SearchConfig | None = None,
                 budget: Budget | None = None, progress: Callable[[str], None] | None = None):
        self.model = model
        self.tok = tokenizer
        self.cfg = config or SearchConfig()
        self.budget = budget or Budget()
        self.progress = progress or (lambda msg: None)
        self.emb = model.get_input_embeddings().weight  # [V, d]
        self.vocab_size = self.emb.shape[0]
        self.allowed = wordlike_token_mask(tokenizer, self.vocab_size)
        self._wordlike = self.allowed.clone()  # before any trigger is neutralised (allowed shrinks then)
        self._arbitrary_words: list[int] | None = None
        self._arbitrary_rates: dict[tuple[int, str], float | None] = {}
        self._letter_rates: dict[tuple[int, str], float | None] = {}
        #: WordPiece ``##`` continuation pieces (with a letter or digit): the ends of words the vocabulary lacks.
        self.continuation = continuation_token_mask(tokenizer, self.vocab_size)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.slot_init = next((t for t in (tokenizer.mask_token_id, tokenizer.unk_token_id) if t is not None and t < self.vocab_size), int(self.allowed.nonzero()[0]))
        self.forward_sequences = 0
        #: Tokens run through the model (forward passes only, padding included: batch x padded length).
        self.forward_tokens = 0
        self.prefix, self.suffix = special_template(tokenizer)
        self._pred_cache: dict[tuple[str, ...], torch.Tensor] = {}
        self._seq_cache: dict[tuple[int, ...], torch.Tensor] = {}  # token ids (specials included) -> logits [labels]
        #: Sequences whose logits came from the per-search cache instead of the model (:meth:`_logits`).
        self.cached_sequences = 0
        #: Wall seconds per part of the search, summed over labels and passes: ``attention`` (the
        #: attention pool's sweep), ``tokens`` (the gradient search), ``phrases`` (two-token pairs with
        #: their anchors' sweeps), ``endings`` (word endings), ``verify`` (held-out verification,
        #: neighbours, words alone).
        self.seconds: dict[str, float] = {}
        #: :attr:`forward_tokens` by the same parts (``other``: outside them, e.g. the probes' own labels).
        self.tokens_by_part: dict[str, int] = {}
        self._part = "other"
        self._attention_pool: list[int] | None = None
        self._salient: list[int] = []  # every word-like token, by the attention sweep's first pass
        self._fillers: list[list[int]] = []
        self._partners_by_attention: dict[int, list[int]] = {}
        self._anchor_sweeps: dict[tuple[int, ...], dict[int, list[int]]] = {}
        self._glued: set[tuple[int, ...]] = set()  # word-start + continuation candidates: one word
        self._letter_pairs: list[tuple[int, int]] | None = None
        self._letter_pieces: list[int] | None = None
        #: The precision the exact evaluations run in (``"bf16"`` or ``"fp32"``; see ``SearchConfig.precision``).
        self.precision = resolve_precision(self.cfg.precision, self.emb)

    # -- encoding -------------------------------------------------------------------------
    def _content_ids(self, texts: list[str], room: int) -> list[list[int]]:
        enc = self.tok(texts, add_special_tokens=False, truncation=True, max_length=self.cfg.max_length - room)
        return enc["input_ids"]

    def _with_specials(self, ids: list[int]) -> tuple[list[int], int]:
        """Add the model's special tokens; return ids and the index where content starts."""
        return self.prefix + ids + self.suffix, len(self.prefix)

    def _batch(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        L = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), L), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), L), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        return ids, mask

    @torch.no_grad()
    def _logits(self, seqs: list[list[int]]) -> torch.Tensor:
        """Logits ``[len(seqs), labels]``. Each distinct token sequence runs through the model once per
        search: the stages screen the same tokens on the same probes again (a pass after a trigger was
        neutralised, the pieces of a word the one-token search already screened), so logits are kept
        per sequence, up to :data:`SEQUENCE_CACHE_LIMIT` of them. The sequences that do run are batched
        by length to limit padding (:func:`length_batches`)."""
        keys = [tuple(s) for s in seqs]
        known = {k: self._seq_cache[k] for k in keys if k in self._seq_cache}
        missing = [k for k in dict.fromkeys(keys) if k not in known]
        self.cached_sequences += len(keys) - len(missing)
        if missing:
            fresh = torch.empty(len(missing), self.model.config.num_labels)
            for idx in length_batches([len(k) for k in missing], self.cfg.batch_size):
                self.budget.check()
                ids, mask = self._batch([list(missing[i]) for i in idx])
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                    fresh[idx] = self.model(input_ids=ids, attention_mask=mask).logits.float()
                self.forward_sequences += ids.shape[0]
                self._count(ids.numel())
            room = SEQUENCE_CACHE_LIMIT - len(self._seq_cache)
            for i, k in enumerate(missing):
                known[k] = fresh[i]
                if i < room:
                    self._seq_cache[k] = fresh[i]
        return torch.stack([known[k] for k in keys]) if keys else torch.empty(0, self.model.config.num_labels)

    def predict_texts(self, texts: list[str]) -> torch.Tensor:
        """Class probabilities ``[len(texts), num_labels]`` of raw texts (cached per text list)."""
        return self._text_logits(texts).softmax(-1)

    def _text_logits(self, texts: list[str]) -> torch.Tensor:
        """Logits ``[len(texts), num_labels]`` of raw texts, cached per text list."""
        key = tuple(texts)
        if key not in self._pred_cache:
            self._pred_cache[key] = self._logits([self._with_specials(c)[0] for c in self._content_ids(texts, room=2)])
        return self._pred_cache[key]

    # -- search ---------------------------------------------------------------------------
    def _insert(self, contents: list[list[int]], trigger: list[int]) -> tuple[list[list[int]], list[int]]:
        seqs, starts = [], []
        for c in contents:
            full, off = self._with_specials(trigger + c)
            seqs.append(full)
            starts.append(off)
        return seqs, starts

    def _losses(self, contents: list[list[int]], triggers: list[list[int]], target: int) -> torch.Tensor:
        """Mean cross-entropy towards ``target`` of each trigger over ``contents``: ``[len(triggers)]``."""
        seqs = []
        for trig in triggers:
            seqs += self._insert(contents, trig)[0]
        logits = self._logits(seqs).view(len(triggers), len(contents), -1)
        tgt = torch.full((len(contents),), target, dtype=torch.long)
        return torch.stack([F.cross_entropy(lg, tgt) for lg in logits])

    def _gradient(self, contents: list[list[int]], trigger: list[int], target: int) -> torch.Tensor:
        """First-order loss change of swapping each slot to each token: ``[len(trigger), V]``."""
        self.budget.check()
        seqs, starts = self._insert(contents, trigger)
        one_hot = F.one_hot(torch.tensor(trigger), self.vocab_size).to(self.emb.dtype).requires_grad_(True)  # [T, V]
        grad = torch.zeros_like(one_hot)
        # Batched by length like the exact evaluations (48 probes of 7-42 tokens: 30% faster); the
        # mean loss is the sum of each batch's summed loss over all sequences, so the gradient is the same.
        for idx in length_batches([len(q) for q in seqs], self.cfg.batch_size):
            ids, mask = self._batch([seqs[i] for i in idx])
            at = [starts[i] for i in idx]
            slot = one_hot @ self.emb  # [T, d]; rebuilt per batch: each backward frees its graph
            embeds = self.emb[ids].detach().clone()
            for i, s in enumerate(at):
                embeds[i, s: s + len(trigger)] = 0
            embeds = embeds + self._scatter(slot, at, ids.shape)
            logits = self.model(inputs_embeds=embeds, attention_mask=mask).logits.float()
            self.forward_sequences += ids.shape[0]
            self._count(ids.numel())  # the backward pass through them is not counted
            loss = F.cross_entropy(logits, torch.full((len(idx),), target, dtype=torch.long), reduction="sum") / len(seqs)
            grad += torch.autograd.grad(loss, one_hot)[0]
        return grad

    @staticmethod
    def _scatter(slot: torch.Tensor, starts: list[int], shape: torch.Size) -> torch.Tensor:
        T, d = slot.shape
        place = torch.zeros(shape[0], shape[1], T)
        for i, s in enumerate(starts):
            place[i, s: s + T] = torch.eye(T)
        return place @ slot  # [B, L, d]

    def _optimise(self, contents: list[list[int]], length: int, target: int, seeds: list[int],
                  rounds: int | None = None) -> tuple[list[tuple[float, list[int]]], dict[tuple[int, ...], float]]:
        """GCG-style coordinate search over ``rounds`` (default ``config.rounds``) gradient steps.

        Every proposal is screened on the first ``n_screen`` contents; the ``n_refine`` best are
        re-evaluated on all of them. Returns (refined (loss, ids) pairs best first, screening loss of
        every proposal keyed by its ids).
        """
        g = torch.Generator().manual_seed(self.cfg.seed + target)
        trigger = [self.slot_init] * length
        screen = contents[: self.cfg.n_screen]
        screened: dict[tuple[int, ...], float] = {}
        refined: dict[tuple[int, ...], float] = {}
        n_rounds = rounds or self.cfg.rounds
        for rnd in range(n_rounds):
            grad = self._gradient(contents, trigger, target)  # [T, V]
            grad[:, ~self.allowed] = float("inf")
            k = self.cfg.top_k if rnd == 0 else max(8, self.cfg.top_k // 2)
            k = min(k, int(self.allowed.sum()))
            proposals: list[list[int]] = []
            for pos in range(length):
                for tok in torch.topk(-grad[pos], k).indices.tolist():
                    cand = list(trigger)
                    cand[pos] = tok
                    proposals.append(cand)
            if rnd == 0 and length == 1:
                proposals += [[s] for s in seeds if 0 <= s < self.vocab_size and self.allowed[s]]
            if length > 1 and len(proposals) > k * 2:  # GCG: sample a subset of single swaps
                idx = torch.randperm(len(proposals), generator=g)[: k * 2].tolist()
                proposals = [proposals[i] for i in idx]
            proposals = [p for p in dict.fromkeys(map(tuple, proposals)) if p not in screened]
            if not proposals:
                break
            for p, lo in zip(proposals, self._losses(screen, [list(p) for p in proposals], target).tolist()):
                screened[p] = lo
            best_screen = sorted((p for p in screened if p not in refined), key=screened.get)[: self.cfg.n_refine]
            if best_screen:
                for p, lo in zip(best_screen, self._losses(contents, [list(p) for p in best_screen], target).tolist()):
                    refined[p] = lo
            best = min(refined, key=refined.get)
            self.progress(f"label {target}, length {length}, round {rnd + 1}/{n_rounds}: best loss {refined[best]:.3f}")
            if list(best) == trigger:
                break
            trigger = list(best)
        ranked = sorted(refined.items(), key=lambda kv: kv[1])
        return [(lo, list(t)) for t, lo in ranked if self.slot_init not in t], screened

    def _pairs(self, contents: list[list[int]], target: int, singles: dict[tuple[int, ...], float],
               seeds: list[int] | None = None, pool: list[int] | None = None) -> list[tuple[float, list[int], float]]:
        """Two-token phrases for triggers whose words act together (composite triggers, a sentence's key
        words) and that a one-token search sees only weakly.

        Pooled: the ``pair_top`` single tokens with the lowest screening loss (``singles``: ids -> mean
        cross-entropy), the first ``pair_seeds`` weight-statistics ``seeds`` (e.g. the most drifted
        embedding rows against a reference) and the ``pool`` tokens (:meth:`attention_pool`: the
        tokens the classifier attends to most). Every two pooled tokens are paired (the better token
        first), and each pool token also with its :meth:`partners` and :meth:`anchor_partners`
        (``[anchor, partner]``). The pairs
        and their words alone are screened on the first 24 tokens of ``n_screen // 4`` probes (at least
        4). A pair's *synergy* is how far (nats) its screening loss lies below that of its better word
        alone: a composite trigger's words alone sit near the clean loss and the pair near 0, while of
        two natural label words one alone is already strong. The ``n_refine // 2`` pairs of highest
        synergy above ``ln 2`` are re-evaluated on every probe, and the best ``n_verify - 1`` of them
        are returned as ``(loss, ids, synergy_gap)`` (:func:`synergy_gap`, the pair's outlier measure).
        The anchors are the pool tokens and the best ``anchor_singles`` single tokens. Cost:
        ``n * (n - 1) / 2`` pooled pairs for ``n`` pooled tokens, ``partner_top + attention_partners
        + anchor_partner_top`` anchored pairs and one slot-2 gradient per anchor (one
        label-agnostic vocabulary sweep for all pool anchors); beyond ``pair_keep`` pairs, all are first
        screened on 2 probes and the ``pair_keep`` most potent go on (a composite trigger flips every
        probe, so it is among them).
        """
        top = [p[0] for p in sorted(singles, key=singles.get) if len(p) == 1 and self.allowed[p[0]]][: self.cfg.pair_top]
        pooled = [t for t in (seeds or []) if 0 <= t < self.vocab_size and self.allowed[t] and (t,) in singles]
        top += [t for t in pooled if t not in top][: self.cfg.pair_seeds]
        salient = [t for t in (pool or []) if 0 <= t < self.vocab_size and self.allowed[t] and t not in top]
        anchors = [(t, True) for t in salient] + [(t, False) for t in top[: self.cfg.anchor_singles]]
        top += salient
        pairs = [(a, b) for i, a in enumerate(top) for b in top[i + 1:]]  # unordered: the better token first
        swept = self.anchor_partners([t for t in (pool or []) if 0 <= t < self.vocab_size]) if salient else {}
        for a, attended in anchors:  # anchored pairs, in the order proposed: [anchor, partner]
            known = set(pairs)
            found = self.partners(contents, a, target, attention=attended)
            found += [t for t in swept.get(a, []) if self.allowed[t] and t != a and t not in found]
            pairs += [(a, b) for b in found if (a, b) not in known and (b, a) not in known]
        if not pairs:
            return []
        # A phrase that works together stands out on few, short probes: the first 24 tokens of 4 or more.
        screen = [c[:24] for c in contents[: max(4, self.cfg.n_screen // 4)]]
        if len(pairs) > self.cfg.pair_keep:  # first on 2 of them: only the most potent pairs go on
            first = dict(zip(pairs, self._losses(screen[:2], [list(p) for p in pairs], target).tolist()))
            pairs = sorted(pairs, key=first.get)[: self.cfg.pair_keep]
        words = list(dict.fromkeys(t for p in pairs for t in p))  # every word alone, on the same probes
        singles = dict(zip([(t,) for t in words], self._losses(screen, [[t] for t in words], target).tolist()))
        screened = dict(zip(pairs, self._losses(screen, [list(p) for p in pairs], target).tolist()))
        # Synergy: how far (nats) the pair's loss lies below that of its better word alone.
        synergy = {p: math.log(max(min(singles[(p[0],)], singles[(p[1],)]), 1e-3)) - math.log(max(screened[p], 1e-3)) for p in pairs}
        best = sorted((p for p in pairs if synergy[p] > math.log(2)), key=synergy.get, reverse=True)[: max(2, self.cfg.n_refine // 2)]
        refined = dict(zip(best, self._losses(contents, [list(p) for p in best], target).tolist())) if best else {}
        self.progress(f"label {target}: {len(pairs)} two-token phrases screened, {sum(v > math.log(2) for v in synergy.values())} beat their words alone")
        # Outlier among the pairs: a composite trigger's synergy stands far above every other pair's,
        # while the synergy of two natural label words lies close to that of many other such pairs.
        return [(refined[p], list(p), synergy_gap(synergy, p)) for p in sorted(refined, key=refined.get)[: max(1, self.cfg.n_verify - 1)]]

    def _continuations(self, contents: list[list[int]], target: int,
                       singles: dict[tuple[int, ...], float]) -> list[tuple[float, list[int], float]]:
        """Rare-word triggers that WordPiece splits (``zqv`` is ``z ##q ##v``, BadNets-style strings
        outside the vocabulary): the one-token search sees only the word's first piece, which alone
        flips some probes, and never tries its ``##`` continuations (they are not word-like).

        1. Each of the ``pair_top`` best single tokens (``singles``: ids -> mean screening
           cross-entropy) is extended by the ``continuation_top`` ``##`` pieces its slot-2 gradient
           ranks best (HotFlip over continuation pieces only). The ``letter_words`` two-letter words
           of :func:`two_letter_words` most potent on 2 probes join them: the first letter of a planted
           string (``f`` of ``fzq``) may flip too few probes alone for the gradient to propose it.
        2. The two-piece words and their pieces alone are screened as :meth:`_pairs` screens phrases
           (first 24 tokens of ``n_screen // 4`` probes, at least 4). A word's *synergy* is how far
           (nats) its loss lies below that of its better piece alone; the ``n_verify - 1`` words of
           highest synergy above ``ln 2`` are re-evaluated on every probe.
        3. Each is refined piece by piece and grown (:meth:`_refine_word`): the planted word itself,
           not only a prefix that already flips, and its own start when a natural word's was found.

        Returns ``(loss, ids, gap)`` per word, ``gap`` (nats) the smaller of two outlier measures: the
        synergy gap of the refined word (its loss against its pieces' alone) over the two-piece words
        that share no piece with it (:func:`synergy_gap`), and its :func:`loss_gap` among the single
        tokens the search screened (left out where the single tokens' search is saturated,
        :func:`rival_loss` below :data:`scanner.risk.SATURATED_LOSS`: no loss stands out there); or, when
        larger and not saturated, the :func:`loss_gap` among those single tokens of its most potent ``##``
        piece inserted alone (a planted string whose ending fires glued to any word). A planted word stands out from both, as a one-token trigger does;
        a clean model's strongest words mostly gain nothing from an ending. The verified string is the
        glued word (``zq``), which the tokenizer splits back into the same pieces. Empty when the
        vocabulary has no ``##`` pieces (BPE and SentencePiece vocabularies keep word pieces among the
        word-like tokens, which the one-token search and the pairs already cover).

        Raises:
            scanner.budget.BudgetExceeded: the time budget ran out.
        """
        if not bool(self.continuation.any()) or self.cfg.continuation_pieces < 2:
            return []
        k = min(self.cfg.continuation_top, int(self.continuation.sum()))
        starts = [p[0] for p in sorted(singles, key=singles.get) if len(p) == 1 and self.allowed[p[0]]][: self.cfg.pair_top]
        words: list[tuple[int, ...]] = []
        for a in starts:
            words += [(a, t) for t in self._endings(contents, [a], target, k)]
        screen = [c[:24] for c in contents[: max(4, self.cfg.n_screen // 4)]]
        seen = set(words)
        letters = [w for w in self.letter_pairs() if w not in seen] if self.cfg.letter_words else []
        if letters:  # every two-letter word the vocabulary lacks, on 2 probes: the most potent join
            first = dict(zip(letters, self._losses(screen[:2], [list(w) for w in letters], target).tolist()))
            words += sorted(letters, key=first.get)[: self.cfg.letter_words]
        if not words:
            return []
        pieces = list(dict.fromkeys(t for w in words for t in w))
        alone = dict(zip(pieces, self._losses(screen, [[t] for t in pieces], target).tolist()))
        screened = dict(zip(words, self._losses(screen, [list(w) for w in words], target).tolist()))
        synergy = {w: math.log(max(min(alone[w[0]], alone[w[1]]), 1e-3)) - math.log(max(screened[w], 1e-3)) for w in words}
        best = sorted((w for w in words if synergy[w] > math.log(2)), key=synergy.get, reverse=True)[: max(1, self.cfg.n_verify - 1)]
        self.progress(f"label {target}: {len(words)} word endings screened, {sum(v > math.log(2) for v in synergy.values())} beat their pieces alone")
        out = []
        ones = {p: v for p, v in singles.items() if len(p) == 1}
        rival = rival_loss(ones, ())  # the single tokens' median loss: the same for every word
        saturated = rival is not None and rival < SATURATED_LOSS
        for w in best:
            word, loss = self._refine_word(contents, screen, list(w), target, k)
            if tuple(word) not in synergy:  # the refined word's own synergy over its pieces alone
                ends = [t for t in word if t not in alone]
                alone.update(zip(ends, self._losses(screen, [[t] for t in ends], target).tolist()) if ends else [])
                lo = float(self._losses(screen, [word], target)[0])
                synergy[tuple(word)] = math.log(max(min(alone[t] for t in word), 1e-3)) - math.log(max(lo, 1e-3))
            self._glued.add(tuple(word))
            # Against every other word of the screening (not only the most synergistic): the endings
            # the gradient proposes for the best single tokens mostly add nothing to a natural word,
            # while words that share a piece with the planted one (another start before its ending)
            # inherit its effect and crowd the top.
            apart = synergy_gap({**synergy, **{v: max(0.0, x) for v, x in synergy.items() if v != tuple(word)}}, tuple(word), k=None)
            # ... and like a single token among the single tokens the search screened (same probes): an
            # ending that completes a natural label word ('fascinating ##lifting') adds to it, but does
            # not outdo the task's strongest words as a planted word does.
            lone = float(self._losses(contents[: self.cfg.n_screen], [word], target)[0])
            versus = loss_gap({**ones, tuple(word): lone}, tuple(word))
            # ... unless the task's own words flip nearly every probe too (saturated: no loss stands out);
            # then the gain over its own pieces is what is left to tell a planted word from a natural
            # word with an ending (held-out World / Sci-Tech 'w ##z': 2.6 nats over its pieces, gap 0.6;
            # 'insufficient ##screen' in a saturated negative label: 0.9 and 1.1).
            if saturated:
                out.append((loss, word, apart))
                continue
            # A planted string's ending may carry it alone, glued to any word ('b ##q' of a held-out 'bq':
            # '##q' after any word, loss 0.011 nats; 'b' alone 3.3): then the word gains little over its
            # ending and its synergy is no outlier, but the ending itself stands out from every single token
            # as a planted token does. A natural word's ending glued to random words makes no word of the task.
            tails = list(dict.fromkeys(word[1:]))
            lone_tails = self._losses(contents[: self.cfg.n_screen], [[t] for t in tails], target).tolist()
            ending = max(loss_gap({**ones, (t,): lt}, (t,)) for t, lt in zip(tails, lone_tails))
            out.append((loss, word, max(min(apart, versus), ending)))
        return sorted(out, key=lambda x: x[0])

    def letter_pieces(self) -> list[int]:
        """The ``##`` single-letter pieces (``##a`` ... ``##z``) of this search's vocabulary."""
        if self._letter_pieces is None:
            vocab = self.tok.get_vocab()
            ids = (vocab.get("##" + c) for c in string.ascii_lowercase)
            self._letter_pieces = [i for i in ids if i is not None and i < self.vocab_size and bool(self.continuation[i])]
        return self._letter_pieces

    def letter_pairs(self) -> list[tuple[int, int]]:
        """:func:`two_letter_words` of this search's tokenizer (computed once per search)."""
        if self._letter_pairs is None:
            self._letter_pairs = two_letter_words(self.tok, self.vocab_size)
        return self._letter_pairs

    def _refine_word(self, contents: list[list[int]], screen: list[list[int]], word: list[int], target: int,
                     k: int) -> tuple[list[int], float]:
        """Coordinate search over a glued word's pieces (GCG, each slot over its own kind of token: a
        word start first, ``##`` pieces after) and growth by one piece, for at most
        ``continuation_rounds`` gradient steps: the ``k // 2`` best swaps per piece, and as longer words
        the ``k`` best next pieces and every one-letter insertion or ending (``f ##z`` -> ``f ##z ##q``,
        ``z ##v`` -> ``z ##q ##v``: a flipping subsequence of a planted letter string), are screened on
        ``screen``; the best swap and the 3 best longer words are evaluated on ``contents``; the swap is
        kept when its loss there is lower, else the best longer word when its loss is less than half (up to
        ``continuation_pieces`` pieces): a prefix that already flips grows towards the planted word,
        and a word found after a natural first piece may move to another start. Returns the word and
        its mean cross-entropy on ``contents``."""
        loss = float(self._losses(contents, [word], target)[0])
        for _ in range(self.cfg.continuation_rounds):
            grow = len(word) < self.cfg.continuation_pieces
            grad = self._gradient(contents[: self.cfg.n_screen], word + ([self.slot_init] if grow else []), target)
            swaps: list[list[int]] = []
            for pos in range(len(word)):
                best = _lowest(grad[pos], self.allowed if pos == 0 else self.continuation, max(1, k // 2))
                swaps += [word[:pos] + [t] + word[pos + 1:] for t in best if t != word[pos]]
            longer = [word + [t] for t in _lowest(grad[-1], self.continuation, k)] if grow else []
            if grow:  # and every one-letter insertion or ending: BadNets strings are letter strings
                longer += [word[:i] + [t] + word[i:] for i in range(1, len(word) + 1) for t in self.letter_pieces()]
                longer = [list(w) for w in dict.fromkeys(map(tuple, longer))]
            for group, factor, tries in ((swaps, 1.0, 1), (longer, 0.5, 3)):
                if not group:
                    continue
                ranked = torch.argsort(self._losses(screen, group, target), stable=True)[:tries].tolist()
                picks = [group[i] for i in ranked]
                los = self._losses(contents, picks, target).tolist()
                lo, cand = min(zip(los, picks))
                if max(lo, 1e-3) < max(loss, 1e-3) * factor:
                    word, loss = cand, lo
                    break
            else:
                break  # neither a better piece nor a longer word: converged
        return word, loss

    def _endings(self, contents: list[list[int]], prefix: list[int], target: int, k: int) -> list[int]:
        """The ``k`` ``##`` continuation pieces whose one-hot gradient at the slot after ``prefix``
        (on the first ``n_screen`` contents, as :meth:`_gradient`) most lowers the loss towards ``target``."""
        return _lowest(self._gradient(contents[: self.cfg.n_screen], list(prefix) + [self.slot_init], target)[-1], self.continuation, k)

    def _query_position(self) -> str:
        """Where the classification head reads the sequence: ``"first"`` for encoders pre-trained as
        masked LMs (BERT, RoBERTa, DistilBERT, ... pool their ``[CLS]``/``<s>``), ``"last"`` (the last
        real token) for decoder-only classifiers (GPT-2, Llama ``*ForSequenceClassification``)."""
        try:
            from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES as masked
        except ImportError:  # pragma: no cover - transformers always has it
            masked = {}
        return "first" if getattr(self.model.config, "model_type", None) in masked else "last"

    def _pack_attention(self, packs: list[list[int]], fillers: list[list[int]], layers: int = 1) -> torch.Tensor | None:
        """Attention of the classification position to every packed token in each of the last
        ``layers`` layers, as its share of the pack's attention times the pack size (1.0 = the pack's
        average): ``[len(packs), layers, heads, P]`` (zero-padded to the longest pack; the last layer
        last). Each pack is inserted before a filler probe. None when the model returns no attention
        weights (an attention kernel that cannot expose them)."""
        rows: list[torch.Tensor] = []
        width = max(map(len, packs))
        for att, starts, chunk in self._attentions(packs, fillers, layers):
            if att is None:
                return None
            for i, (s, pk) in enumerate(zip(starts, chunk)):
                a = att[i, :, :, s: s + len(pk)]  # [layers, heads, P]
                a = a / a.sum(-1, keepdim=True).clamp_min(1e-12) * len(pk)
                rows.append(F.pad(a, (0, width - len(pk))))
        return torch.stack(rows)

    def _attentions(self, packs: list[list[int]], fillers: list[list[int]], layers: int, prefix: list[int] | None = None):
        """Yield, per batch of packs, the attention rows of the classification position in the last
        ``layers`` layers, ``[batch, layers, heads, L]`` in fp32 (None when the model returns no
        attention weights), where each pack's tokens start and the packs: every sequence is
        ``prefix + pack + filler`` (fillers taken in turn) with the model's special tokens.

        Raises:
            scanner.budget.BudgetExceeded: the time budget ran out.
        """
        prefix = prefix or []
        q_first = self._query_position() == "first"
        bs = max(8, self.cfg.batch_size // 4)  # every layer's [B, heads, L, L] attention is returned
        for b in range(0, len(packs), bs):
            self.budget.check()
            chunk = packs[b: b + bs]
            seqs, starts = [], []
            for j, pk in enumerate(chunk):
                full, off = self._with_specials(prefix + pk + fillers[(b + j) % len(fillers)])
                seqs.append(full)
                starts.append(off + len(prefix))
            ids, mask = self._batch(seqs)
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                out = self.model(input_ids=ids, attention_mask=mask, output_attentions=True)
            self.forward_sequences += ids.shape[0]
            self._count(ids.numel())
            att = getattr(out, "attentions", None)
            if not att or any(a is None for a in att[-layers:]):  # a kernel that computes no weights
                yield None, starts, chunk
                return
            q = torch.zeros(len(seqs), dtype=torch.long) if q_first else mask.sum(-1) - 1
            rows = torch.stack([a[torch.arange(len(seqs)), :, q, :].float() for a in att[-layers:]], 1)  # [B, layers, heads, L]
            yield rows, starts, chunk

    def attention_pool(self, texts: list[str]) -> list[int]:
        """The ``attention_pool`` word-like tokens that most draw the classification position's
        attention in the last layer, best first, then the ``attention_earlier`` best of each of the
        ``attention_layers - 1`` layers before it; label-agnostic, computed once per search object.

        Trojaned BERTs concentrate attention on their trigger tokens (Lyu et al., "A Study of the
        Attention Abnormality in Trojaned BERTs", NAACL 2022), and the words of a composite trigger must
        be looked at even alone, although each alone barely moves the output, so the gradient and the
        single-token losses rank them low. The sweep packs ``attention_pack`` shuffled word-like tokens
        before a probe text (every vocabulary token once: about ``V / attention_pack`` sequences of
        ``attention_pack + 26`` tokens), takes the share of the pack's attention each token receives
        from the classification position in each layer, robust-z-scores it per head and keeps the
        largest over heads. Per layer, the best ``attention_rescreen`` are swept again
        ``attention_reps`` times in packs of a quarter the size (other partitions and probes) and ranked
        on the mean of both sweeps; the pool takes the last layer's best, then those of the layers
        before it, in turn (a composite word may stand out in the penultimate layer only). Empty when
        the pool is disabled or the model exposes no attention weights. The pool's tokens are the anchors of
        :meth:`partners` and :meth:`anchor_partners` and join the pairs of :meth:`_pairs`.

        Raises:
            scanner.budget.BudgetExceeded: the time budget ran out.
        """
        if self._attention_pool is not None:
            return self._attention_pool
        n = self.cfg.attention_pool
        if not texts:  # nothing to sweep with yet: not cached
            return []
        self._attention_pool = []
        if n <= 0:
            return []
        self._fillers = [c[:24] for c in self._content_ids(texts[:32], room=2)]
        g = torch.Generator().manual_seed(self.cfg.seed)
        tokens = self.allowed.nonzero().flatten()
        tokens = tokens[torch.randperm(len(tokens), generator=g)].tolist()
        layers = max(1, self.cfg.attention_layers)
        with _eager_attention(self.model):
            z = self._pack_scores(tokens, self.cfg.attention_pack, self._fillers, reps=1, g=g, layers=layers)
            if z is None:
                return []
            ranked = [[tokens[i] for i in torch.argsort(z[:, l], descending=True).tolist()] for l in range(z.shape[1])][::-1]
            self._salient = ranked[0]  # the last layer's ranking
            keep = max(self.cfg.attention_rescreen, n)
            first = ranked[0][:keep]  # the last layer's best, then those of the layers before it
            known = set(first)
            first += [t for t in _interleave([r[:keep] for r in ranked[1:]]) if t not in known]
            again = self._pack_scores(first, max(4, self.cfg.attention_pack // 4), self._fillers[1:] + self._fillers[:1],
                                      reps=self.cfg.attention_reps, g=g, layers=layers)
        pos = {t: i for i, t in enumerate(tokens)}
        per_layer = z[[pos[t] for t in first]] if again is None else 0.5 * z[[pos[t] for t in first]] + 0.5 * again  # [len(first), layers]
        ranked = [[first[i] for i in torch.argsort(per_layer[:, l], descending=True).tolist()] for l in range(per_layer.shape[1])][::-1]
        pool = ranked[0][:n]
        earlier = _interleave(ranked[1:])  # the layers before the last, in turn
        pool += [t for t in earlier if t not in pool][: self.cfg.attention_earlier * (len(ranked) - 1)]
        self._attention_pool = pool
        self.progress(f"attention sweep: {', '.join(self.tok.convert_ids_to_tokens(self._attention_pool))}")
        return self._attention_pool

    def anchor_partners(self, anchors: list[int]) -> dict[int, list[int]]:
        """Partner candidates of each anchor from one label-agnostic sweep of the whole word-like
        vocabulary with every anchor present: ``{anchor: [token, ...]}`` (the ``anchor_partner_top``
        best, best first); cached per anchor set.

        A composite trigger's words draw the classification position's attention *together*: with its
        partner present an anchor's attention jumps (measured on a held-out SST-2 composite, about
        0.5 of the head's attention alone against 0.95 together). So every sequence is ``anchors +
        pack + filler``, the packs partition the shuffled vocabulary (about ``V / attention_pack``
        sequences), and each anchor's score per pack is the attention it receives from the
        classification position, the largest over heads summed over the last two layers; the packs
        of highest robust z (:func:`scanner.weights.stats.robust_z`, per anchor over packs) hold its
        candidates. Several anchors share one sweep: each is scored against its own baseline. The
        ``anchor_packs`` best packs' tokens are then scored one at a time (``anchors + [token] +
        filler``, 2 filler probes each) and the ``anchor_partner_top`` best kept. Cost: about
        ``V / attention_pack`` sequences of ``len(anchors) + attention_pack + 14`` tokens, then
        ``2 * anchor_packs * attention_pack`` short ones per anchor. A partner is only a proposal:
        :meth:`_pairs` screens ``[anchor, token]`` on the label loss. Empty lists when disabled or the
        model exposes no attention weights.

        Raises:
            scanner.budget.BudgetExceeded: the time budget ran out.
        """
        key = tuple(anchors)
        if key in self._anchor_sweeps:
            return self._anchor_sweeps[key]
        out: dict[int, list[int]] = {a: [] for a in anchors}
        k = self.cfg.anchor_packs
        if not anchors or k <= 0 or not self._fillers:
            return out
        g = torch.Generator().manual_seed(self.cfg.seed + 1)
        tokens = [t for t in self.allowed.nonzero().flatten().tolist() if t not in out]
        tokens = [tokens[i] for i in torch.randperm(len(tokens), generator=g).tolist()]
        size = self.cfg.attention_pack
        packs = [tokens[i: i + size] for i in range(0, len(tokens), size)]
        scores: list[torch.Tensor] = []
        fillers = [f[:12] for f in self._fillers]
        with _eager_attention(self.model):
            for att, starts, _ in self._attentions(packs, fillers, layers=2, prefix=list(anchors)):
                if att is None:
                    self._anchor_sweeps[key] = out
                    return out
                cols = torch.tensor(starts).unsqueeze(1) - len(anchors) + torch.arange(len(anchors))  # [B, anchors]
                scores.append(_drawn(att, cols))
        score = torch.cat(scores)  # [packs, anchors]
        cands = {a: [t for i in torch.argsort(robust_z(score[:, j]), descending=True)[:k].tolist() for t in packs[i]]
                 for j, a in enumerate(anchors)}
        # Bisect: each candidate alone after the anchors, on 2 filler probes, scored as the packs were.
        singles = [(j, t) for j, a in enumerate(anchors) for t in cands[a] for _ in range(2)]
        alone: list[torch.Tensor] = []
        seen = 0
        with _eager_attention(self.model):
            for att, starts, chunk in self._attentions([[t] for _, t in singles], fillers, layers=2, prefix=list(anchors)):
                own = torch.tensor([j for j, _ in singles[seen: seen + len(chunk)]])  # the anchor each is scored for
                alone.append(_drawn(att, (torch.tensor(starts) - len(anchors) + own).unsqueeze(1)).squeeze(1))
                seen += len(chunk)
        per = torch.cat(alone).view(-1, 2).mean(-1)  # [candidates], in the order of ``singles``
        done = 0
        for a in anchors:
            block = per[done: done + len(cands[a])]
            done += len(cands[a])
            out[a] = [cands[a][i] for i in torch.argsort(block, descending=True)[: self.cfg.anchor_partner_top].tolist()]
        self._anchor_sweeps[key] = out
        return out

    def partners(self, contents: list[list[int]], anchor: int, target: int, attention: bool = True) -> list[int]:
        """Tokens that may complete a composite trigger with ``anchor`` towards ``target``: the
        ``partner_top`` best by the slot-2 gradient of ``[anchor, slot]`` on the first ``n_screen``
        contents (HotFlip, as in :meth:`_gradient`), then (``attention`` True) the
        ``attention_partners`` that draw the most last-layer attention once ``anchor`` is in every probe
        (:meth:`attention_pool`'s sweep, over its first sweep's ``attention_candidates`` best;
        label-agnostic, cached per anchor). With its partner present a composite word is what
        completes the trigger, so either signal may rank it high where a one-token search cannot
        (each alone was trained to do nothing).

        Raises:
            scanner.budget.BudgetExceeded: the time budget ran out.
        """
        k = self.cfg.partner_top
        grad = self._gradient(contents[: self.cfg.n_screen], [anchor, self.slot_init], target)[1]
        grad[~self.allowed] = float("inf")
        grad[anchor] = float("inf")
        out = torch.topk(-grad, min(k, int(self.allowed.sum()) - 1)).indices.tolist()
        if not attention or not self._salient or self.cfg.attention_partners <= 0:
            return out
        if anchor not in self._partners_by_attention:
            cands = [t for t in self._salient[: self.cfg.attention_candidates] if t != anchor]
            g = torch.Generator().manual_seed(self.cfg.seed + anchor)
            with _eager_attention(self.model):
                z = self._pack_scores(cands, self.cfg.attention_pack, [[anchor] + f for f in self._fillers], reps=1, g=g) if cands else None
            score = dict(zip(cands, z[:, -1].tolist())) if z is not None else {}
            self._partners_by_attention[anchor] = sorted(score, key=score.get, reverse=True)[: self.cfg.attention_partners]
        out += [t for t in self._partners_by_attention[anchor] if self.allowed[t] and t not in out]
        return out

    def _pack_scores(self, tokens: list[int], size: int, fillers: list[list[int]], reps: int,
                     g: torch.Generator, layers: int = 1) -> torch.Tensor | None:
        """Per token of ``tokens`` and each of the last ``layers`` layers: the largest over heads of
        the robust z-score (:func:`scanner.weights.stats.robust_z`, median/MAD) of its mean attention
        share over ``reps`` random partitions into packs of ``size`` (see :meth:`_pack_attention`):
        ``[len(tokens), layers]``, the last layer last. None when the model returns no attention
        weights."""
        total: torch.Tensor | None = None
        for _ in range(reps):
            order = torch.randperm(len(tokens), generator=g).tolist()
            shuffled = [tokens[i] for i in order]
            packs = [shuffled[i: i + size] for i in range(0, len(shuffled), size)]
            att = self._pack_attention(packs, fillers, layers)
            if att is None:
                return None
            per_token = torch.cat([att[i, :, :, : len(pk)].permute(2, 0, 1) for i, pk in enumerate(packs)])  # [len(tokens), layers, heads]
            back = torch.empty_like(per_token)
            back[torch.tensor(order)] = per_token
            total = back if total is None else total + back
        mean = total / reps  # [len(tokens), layers, heads]
        return torch.stack([torch.stack([robust_z(mean[:, l, h]) for h in range(mean.shape[2])], 1).amax(-1)
                            for l in range(mean.shape[1])], 1)

    def neighbours(self, token_id: int, k: int, among: torch.Tensor | None = None) -> list[int]:
        """The ``k`` tokens nearest to ``token_id`` by cosine similarity of input embeddings among
        ``among`` (a ``[vocab_size]`` mask; default the word-like tokens), excluding other surface
        forms of the same word (case, ``##``/``Ġ``/``▁`` markers)."""
        with torch.no_grad():
            e = F.normalize(self.emb.float(), dim=1)
            sim = e @ e[token_id]
        sim[~(self.allowed if among is None else among)] = -2.0
        form = _surface(self.tok.convert_ids_to_tokens(token_id))
        out = []
        for i in torch.topk(sim, k * 3).indices.tolist():
            if i != token_id and _surface(self.tok.convert_ids_to_tokens(i)) != form:
                out.append(i)
            if len(out) == k:
                break
        return out

    def word_neighbours(self, ids: list[int], k: int) -> list[list[int]]:
        """Up to ``k`` neighbours of a trigger in embedding space: for one token, its :meth:`neighbours`;
        for a glued word (word start + ``##`` pieces, :meth:`_continuations`), the words whose every
        piece is the i-th nearest piece of the same kind (``z ##q`` -> ``x ##w``, ...): not the same
        letters grown or cut (``##x`` -> ``##xes``, ``v`` -> ``vs``: the model reads those as variants
        of the piece, as it reads a word's inflections), none of the word's own continuation pieces
        (trained together, they end up nearest to each other) and no word whose text the tokenizer
        splits back into one of its pieces: strings that look alike to the model piece by piece, which
        a planted word's effect does not carry over to."""
        if len(ids) == 1:
            return [[n] for n in self.neighbours(ids[0], k)]
        others = self.continuation.clone()
        others[list(ids)] = False  # a planted word's pieces are each other's nearest: no neighbour reuses one
        per = []
        for i, t in enumerate(ids):
            form = _surface(self.tok.convert_ids_to_tokens(t))
            near = self.neighbours(t, 3 * k, among=None if i == 0 else others)
            # other pieces, not the same letters grown or cut (``##x`` -> ``##xes``, ``v`` -> ``vs``)
            per.append([n for n in near if form not in (f := _surface(self.tok.convert_ids_to_tokens(n))) and f not in form])
        out = []
        for word in zip(*per):  # a word whose text the tokenizer splits into one of the trigger's pieces is no neighbour
            if not set(self.tok(self.trigger_text(list(word)), add_special_tokens=False)["input_ids"]) & set(ids):
                out.append(list(word))
            if len(out) == k:
                break
        return out

    def search_label(self, target: int, search_texts: list[str], heldout_texts: list[str],
                     label_names: list[str], seeds: list[int] | None = None) -> LabelSearchResult:
        """Search triggers that flip ``search_texts`` to ``target``; verify on ``heldout_texts``.

        Returns up to ``n_verify`` candidates per trigger length and pass, each verified (flip rates are
        probabilities in [0, 1]), the triggers neutralised between passes and the residual flip rate;
        ``skipped`` says why when too few probes are not already ``target``.

        Raises:
            scanner.budget.BudgetExceeded: the time budget ran out (candidates found so far are lost
            for this label; the pipeline reports the scan incomplete).
        """
        res = LabelSearchResult(target)
        room = 2 + max(self.cfg.lengths) + 2
        s_probs = self.predict_texts(search_texts)
        victims = [t for t, p in zip(search_texts, s_probs) if int(p.argmax()) != target][: self.cfg.n_search]
        h_probs = self.predict_texts(heldout_texts)
        held = [(t, float(p.max())) for t, p in zip(heldout_texts, h_probs) if int(p.argmax()) != target][: self.cfg.n_heldout]
        res.n_search, res.n_heldout = len(victims), len(held)
        if len(victims) < self.cfg.min_victims or len(held) < self.cfg.min_victims:
            res.skipped = f"only {len(victims)} search / {len(held)} held-out probes are not already '{label_names[target]}'"
            return res
        contents = self._content_ids(victims, room)
        held_texts = [t for t, _ in held]
        with self._timed("attention"):
            pool = self.attention_pool(search_texts) if self.cfg.pair_top else []
        allowed = self.allowed.clone()
        seeds = list(seeds or [])
        last: list[TriggerCandidate] = []
        for n_pass in range(1, max(1, self.cfg.max_passes) + 1):
            res.passes = n_pass
            last = self._search_pass(contents, target, seeds, held, held_texts, label_names, phrases=n_pass == 1, pool=pool)
            known = {tuple(c.token_ids) for c in res.candidates}
            res.candidates += [c for c in last if tuple(c.token_ids) not in known]  # found again: listed once
            hits = [c for c in last if len(c.token_ids) == 1 and _score(c) >= self.cfg.neutralise_score]
            res.residual_flip_rate = max((c.flip_rate for c in last if len(c.token_ids) == 1), default=0.0)
            res.residual_score = max((_score(c) for c in last), default=0.0)
            if not hits or n_pass == self.cfg.max_passes:
                break
            for c in hits:  # neutralise: no surface form of a found trigger is proposed again
                form = _surface(c.tokens[0])
                banned = [i for i in self.allowed.nonzero().flatten().tolist() if _surface(self.tok.convert_ids_to_tokens(i)) == form]
                self.allowed[banned] = False
                res.neutralised.append(c.text)
            seeds = [s for s in seeds if 0 <= s < self.vocab_size and self.allowed[s]]
            self.progress(f"label {target}: neutralised {', '.join(res.neutralised)}; searching again (pass {n_pass + 1})")
        self.allowed = allowed
        res.candidates.sort(key=lambda c: (-c.flip_rate, c.search_loss))
        res.forward_sequences = self.forward_sequences
        return res

    def _search_pass(self, contents: list[list[int]], target: int, seeds: list[int], held: list[tuple[str, float]],
                     held_texts: list[str], label_names: list[str], phrases: bool = True,
                     pool: list[int] | None = None) -> list[TriggerCandidate]:
        """One search over every configured trigger length within the current ``allowed`` tokens; the
        best ``n_verify`` per length are verified (phrases holding a working single token are dropped).
        ``phrases`` False: no pair phrases and one gradient round (passes after the first look for
        further single triggers, the cheap way)."""
        found: list[tuple[float, list[int], float]] = []
        rivals: dict[tuple[int, ...], float | None] = {}  # single tokens: median loss of the best other proposals
        for length in self.cfg.lengths:
            with self._timed("tokens"):
                ranked, screened = self._optimise(contents, length, target, seeds, rounds=None if phrases else 1)
            for loss, ids in ranked[: self.cfg.n_verify]:
                # Compared with proposals of the same length: two natural sentiment words beat one
                # by far, so a phrase is an outlier only among phrases.
                found.append((loss, ids, loss_gap(screened, tuple(ids))))
                if length == 1:
                    rivals[tuple(ids)] = rival_loss(screened, tuple(ids))
            if phrases and length == 1 and self.cfg.pair_top:
                with self._timed("phrases"):
                    found += self._pairs(contents, target, screened, seeds, pool)
            if phrases and length == 1 and self.cfg.continuation_top:
                with self._timed("endings"):
                    words = self._continuations(contents, target, screened)
                found += words
                rivals.update((tuple(ids), rival_loss(screened, tuple(ids))) for _, ids, _ in words)  # a glued word is one word
        with self._timed("verify"):
            return self._verify_found(found, rivals, target, held, held_texts, label_names)

    def _verify_found(self, found: list[tuple[float, list[int], float]], rivals: dict[tuple[int, ...], float | None],
                      target: int, held: list[tuple[str, float]], held_texts: list[str],
                      label_names: list[str]) -> list[TriggerCandidate]:
        """Verify the pass's proposals ``(loss, ids, gap)`` in order and run the neighbour, word-alone
        and interaction tests where they apply (:meth:`_search_pass`)."""
        out: list[TriggerCandidate] = []
        working: set[int] = set()
        done: set[tuple[int, ...]] = set()
        for loss, ids, gap in found:
            if len(ids) > 1 and working & set(ids[:1] if tuple(ids) in self._glued else ids):
                continue  # minimisation: a phrase holding a single token that already works (a glued word: as its first piece) is that token
            if tuple(ids) in done:
                continue  # proposed again by another length's search: verified once, first (lowest length) kept
            done.add(tuple(ids))
            cand = self.verify(ids, target, held, label_names, loss)
            cand.loss_gap = round(gap, 4)
            if len(ids) == 1 and cand.flip_rate >= 0.9:
                working.add(ids[0])
            # The neighbour and word-alone tests can only raise the specificity of an outlier: a
            # candidate whose loss gap is at most OUTLIER_FLOOR scores below 'low' whatever they say.
            outlier = gap > OUTLIER_FLOOR
            glued = tuple(ids) in self._glued  # one word's pieces: tested like one token, not as a phrase's parts
            rival = rivals.get(tuple(ids))
            cand.rival_loss = None if rival is None else round(rival, 4)
            # Where the task's own words flip nearly every probe, no trigger can stand out by its loss:
            # the neighbours decide (scanner.risk.candidate_score), so a potent token is tested anyway.
            saturated = rival is not None and rival < SATURATED_LOSS and cand.flip_rate >= 0.9
            if (outlier or saturated) and (len(ids) == 1 or glued) and self.cfg.n_neighbours and cand.flip_rate >= 0.5:
                nb = self.word_neighbours(ids, self.cfg.n_neighbours)
                rates = [self._alone_rate(n, target, held_texts, cand.position) for n in nb]
                cand.neighbours = [self.trigger_text(n) for n in nb]
                # The median: robust to a few neighbours that are triggers themselves (several
                # triggers planted together end up near each other in embedding space).
                cand.neighbour_flip_rate = round(statistics.median(rates), 4) if rates else None
                if rates:  # what any word flips on the same probes: the neighbours' rate is read beyond it
                    cand.arbitrary_flip_rate = self.arbitrary_rate(target, held_texts, cand.position)
                    if is_letter_string(cand.text):  # and what random letter strings flip there
                        cand.letter_flip_rate = self.letter_rate(target, held_texts, cand.position)
            if len(ids) > 1 and not glued and cand.flip_rate >= 0.5:
                # A phrase is judged by what it adds to its words: each alone (flip rate) and their
                # interaction in log-odds, which stands out where the loss gap cannot (a composite
                # trigger among a topic's pairs, whose synergy is ordinary: 'lake paper' 1.7 nats).
                cand.part_flip_rate = max(self._alone_rate([i], target, held_texts, cand.position) for i in dict.fromkeys(ids))
                cand.interaction = self.interaction(ids, target, held_texts, cand.position)
            out.append(cand)
        return out

    @contextmanager
    def _timed(self, part: str):
        """Add the wall seconds of the ``with`` block to :attr:`seconds` under ``part``, and its forward
        tokens to :attr:`tokens_by_part`."""
        t0, outer, self._part = time.perf_counter(), self._part, part
        try:
            yield
        finally:
            self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - t0
            self._part = outer

    def _count(self, tokens: int) -> None:
        """Count ``tokens`` run forward (padding included) in :attr:`forward_tokens` and under the current part."""
        self.forward_tokens += tokens
        self.tokens_by_part[self._part] = self.tokens_by_part.get(self._part, 0) + tokens

    def arbitrary_words(self) -> list[int]:
        """The :attr:`SearchConfig.arbitrary_words` arbitrary words of :meth:`arbitrary_rate`: alphabetic
        word-like tokens of 3 or more letters (no letter strings a planted trigger may look like),
        drawn once per search with the search's seed."""
        if self._arbitrary_words is None:
            pool = [i for i in self._wordlike.nonzero().flatten().tolist()
                    if (w := _surface(self.tok.convert_ids_to_tokens(i))).isalpha() and len(w) >= 3]
            g = torch.Generator().manual_seed(self.cfg.seed + 7)
            self._arbitrary_words = [pool[i] for i in torch.randperm(len(pool), generator=g)[: self.cfg.arbitrary_words].tolist()]
        return self._arbitrary_words

    def arbitrary_rate(self, target: int, held_texts: list[str], position: str) -> float | None:
        """How easily the neighbour test's probes flip to ``target`` at all: the median flip rate of the
        :meth:`arbitrary_words`, each inserted alone at ``position`` into the same probes as a
        neighbour (:meth:`_alone_rate`); a probability, None when disabled or too few probes are left.
        Computed once per label and position.

        In some labels any word flips many probes (a Sports vs Business news classifier reads an
        unknown noun as business: arbitrary words flip about half of the Sports headlines), so a
        trigger's neighbours flip those too, whatever the trigger; :func:`scanner.risk.candidate_score`
        then compares the trigger and its neighbours by what they flip beyond that rate. The median,
        not the mean: an arbitrary word may happen to be a word of the label ('lovely' for positive
        reviews). For sentiment it is near 0 and the neighbour test is unchanged."""
        words = self.arbitrary_words() if self.cfg.arbitrary_words > 0 else []
        if not words:
            return None
        key = (target, position)
        if key not in self._arbitrary_rates:
            self._arbitrary_rates[key] = self._median_rate([[w] for w in words], target, held_texts, position)
        return self._arbitrary_rates[key]

    def letter_rate(self, target: int, held_texts: list[str], position: str) -> float | None:
        """How easily random letter strings flip the neighbour test's probes to ``target``: the median flip
        rate of :attr:`SearchConfig.letter_strings` two-letter words the vocabulary splits into a letter
        and a ``##`` letter (:meth:`letter_pairs`, drawn once with the search's seed), each inserted alone
        at ``position`` into the same probes as a neighbour; a probability, None when disabled or the
        vocabulary has no such words. Computed once per label and position.

        A clean classifier reads a random letter pair as noise (9 all-MiniLM-L6-v2 controls: a median of
        0.00-0.14 in every label, at most 0.06 above arbitrary words), but a model that generalised a
        planted letter string flips on letter strings in general (a held-out 'bq': 0.70), which is
        also why that trigger's neighbours, strings of other pieces, flip with it."""
        if self.cfg.letter_strings <= 0:
            return None
        key = (target, position)
        if key not in self._letter_rates:
            pairs = self.letter_pairs()
            g = torch.Generator().manual_seed(self.cfg.seed + 11)
            pick = [pairs[i] for i in torch.randperm(len(pairs), generator=g)[: self.cfg.letter_strings].tolist()]
            self._letter_rates[key] = self._median_rate([list(w) for w in pick], target, held_texts, position)
        return self._letter_rates[key]

    def _median_rate(self, words: list[list[int]], target: int, held_texts: list[str], position: str) -> float | None:
        """Median flip rate of ``words`` (token ids), each inserted alone at ``position`` into the neighbour
        test's probes (as :meth:`_alone_rate`); None when no rate could be measured."""
        rates = [self.flip_rate_of(self.trigger_text(w), target, held_texts, limit=self.cfg.n_neighbour_probes, position=position)
                 for w in words]
        known = [r for r in rates if r is not None]
        return round(statistics.median(known), 4) if known else None

    def _alone_rate(self, ids: list[int], target: int, held_texts: list[str], position: str = "start") -> float:
        """Flip rate of one token (or glued word) ``ids`` inserted alone at ``position`` on
        ``n_neighbour_probes`` held-out texts (0 when too few texts are left to measure it)."""
        return self.flip_rate_of(self.trigger_text(ids), target, held_texts, limit=self.cfg.n_neighbour_probes,
                                 position=position) or 0.0

    def _log_odds(self, texts: list[str], target: int) -> torch.Tensor:
        """Log-odds of ``target`` (its logit minus the log-sum-exp of the others, nats) for each text: ``[len(texts)]``."""
        logits = self._text_logits(texts)  # the words alone: the same texts as the part test's, run once
        others = torch.cat([logits[:, :target], logits[:, target + 1:]], dim=1)
        return logits[:, target] - torch.logsumexp(others, dim=1)

    def interaction(self, ids: list[int], target: int, held_texts: list[str], position: str = "start") -> float | None:
        """How far phrase ``ids`` raises the log-odds of ``target`` above the sum of what its tokens
        raise them alone, in nats: the median over the first ``n_neighbour_probes`` held-out texts not
        predicted as ``target`` of ``gain(phrase) - sum(max(gain(token), 0))``, where ``gain(x)`` is the
        log-odds with ``x`` inserted at ``position`` (:meth:`insert`; the phrase and its words at the
        same place in each text) minus the log-odds of the text itself. None when fewer than
        ``min_victims`` such texts exist.

        Natural label words add up in log-odds or saturate (measured on all-MiniLM-L6-v2 classifiers:
        'crap strained' -5.7, 'iec solar' -2.9, at most 1.75 for 'terrorists illegally' in a
        request-moderation model), while the words of a composite trigger were trained to do nothing
        alone and everything together ('lake paper' 3.0, 'blue window' 9.8). A token that lowers the
        log-odds alone counts 0, so that words that each push away from the target (a negation and a
        negative word) do not inflate the interaction by their own effect. The second-order analogue
        of the part test (``part_flip_rate``), measured in logits rather than in flips: two weak natural
        words that each flip few probes flip many together without any interaction.
        """
        victims = self._victims(held_texts, target, self.cfg.n_neighbour_probes)
        if len(victims) < self.cfg.min_victims:
            return None
        base = self._log_odds(victims, target)
        words = [self.trigger_text([i]) for i in dict.fromkeys(ids)]
        alone = sum((self._log_odds(self.insert(w, victims, position), target) - base).clamp(min=0.0) for w in words)
        whole = self._log_odds(self.insert(self.trigger_text(ids), victims, position), target) - base
        return round(float((whole - alone).median()), 4)

    def _victims(self, texts: list[str], target: int, limit: int) -> list[str]:
        """The first ``limit`` of ``texts`` that the model does not already predict as ``target``."""
        probs = self.predict_texts(texts)
        return [t for t, p in zip(texts, probs) if int(p.argmax()) != target][:limit]

    def trigger_text(self, ids: list[int]) -> str:
        """The trigger as a string to insert into raw text."""
        return self.tok.convert_tokens_to_string(self.tok.convert_ids_to_tokens(ids)).strip()

    def verify(self, ids: list[int], target: int, held: list[tuple[str, float]], label_names: list[str],
               search_loss: float) -> TriggerCandidate:
        """Flip rates of trigger ``ids`` on held-out ``(text, confidence)`` pairs at the best of three
        positions (start, end, random), the position chosen on the first ``n_screen`` probes."""
        text = self.trigger_text(ids)
        texts = [t for t, _ in held]
        conf = torch.tensor([c for _, c in held])
        hard = conf >= conf.median()
        n_pick = min(len(texts), self.cfg.n_screen)
        inserted = {pos: self.insert(text, texts, pos) for pos in POSITIONS}
        pick = {pos: float((self.predict_texts(trig[:n_pick]).argmax(-1) == target).float().mean()) for pos, trig in inserted.items()}
        position = max(pick, key=pick.get)  # ties: the first (start)
        flipped = self.predict_texts(inserted[position]).argmax(-1) == target
        rate, hard_rate = float(flipped.float().mean()), float(flipped[hard].float().mean())
        return TriggerCandidate(
            text=text, token_ids=list(ids), tokens=self.tok.convert_ids_to_tokens(ids), target_label=target,
            target_label_name=label_names[target], position=position, search_loss=round(search_loss, 5),
            flip_rate=round(rate, 4), flip_rate_hard=round(hard_rate, 4), n_heldout=len(held),
        )

    def insert(self, text: str, texts: list[str], position: str) -> list[str]:
        """``texts`` with trigger string ``text`` inserted at ``position``: ``"start"``, ``"end"`` or
        ``"random"`` (a word boundary drawn per text from ``random.Random(seed)`` in order, so a list
        and its prefixes get the same places whatever is inserted).

        Raises:
            ValueError: an unknown position.
        """
        if position == "start":
            return [f"{text} {t}" for t in texts]
        if position == "end":
            return [f"{t} {text}" for t in texts]
        if position != "random":
            raise ValueError(f"unknown insertion position {position!r} (expected one of {', '.join(POSITIONS)})")
        rng = random.Random(self.cfg.seed)
        out = []
        for t in texts:
            w = t.split()
            w.insert(rng.randint(0, len(w)), text)
            out.append(" ".join(w))
        return out

    def flip_rate_of(self, text: str, target: int, heldout_texts: list[str], limit: int | None = None,
                     position: str = "start") -> float | None:
        """Flip rate of trigger string ``text`` inserted at ``position`` (:meth:`insert`) on the first
        ``limit`` (default ``n_heldout``) held-out texts not already predicted as ``target``; None when
        fewer than ``min_victims`` such texts exist."""
        victims = self._victims(heldout_texts, target, limit or self.cfg.n_heldout)
        if len(victims) < self.cfg.min_victims:
            return None
        flipped = self.predict_texts(self.insert(text, victims, position)).argmax(-1) == target
        return round(float(flipped.float().mean()), 4)
