"""The typed scan report and its JSON form.

A :class:`Report` is what every stage of the pipeline contributes to and what every output format is
rendered from. JSON round-trips losslessly through :meth:`Report.to_json` / :meth:`Report.from_json`.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

SCHEMA_VERSION = "1.6"


class RiskLevel(str, Enum):
    """Ordered risk levels; ``--fail-on`` takes one of them."""

    NONE = "none"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Position in the order none < low < medium < high < critical."""
        return list(RiskLevel).index(self)


@dataclass
class FileDigest:
    """One file of the checkpoint that the scan read: path relative to the target, size in bytes,
    sha256 hex digest, and the format sniffed from its bytes (``safetensors``, ``gguf``, ``json``...)."""

    path: str
    size: int
    sha256: str
    format: str


@dataclass
class TargetInfo:
    """What was scanned: the user's spec, its kind (``hub``, ``folder``, ``gguf``, ``adapter``), the
    local path it resolved to, and the resolved revision (commit sha for hub IDs, else None)."""

    spec: str
    kind: str
    path: str
    revision: str | None = None
    base: str | None = None
    files: list[FileDigest] = field(default_factory=list)


@dataclass
class ModelFacts:
    """Facts about the loaded model: ``task`` is ``sequence-classification``, ``causal-lm`` or
    ``unsupported``; ``parameters`` counts elements; ``labels`` are the class names in id order."""

    architecture: str | None = None
    model_type: str | None = None
    parameters: int | None = None
    vocab_size: int | None = None
    hidden_size: int | None = None
    num_layers: int | None = None
    task: str = "unsupported"
    labels: list[str] = field(default_factory=list)
    source_format: str | None = None


@dataclass
class Finding:
    """A finding under a stable rule code (:mod:`scanner.rules`): a static one about the checkpoint
    (remote code shipped, pickle file present) or one derived from the analyses (a trigger candidate,
    a weight-statistics outlier).

    ``severity`` is a :class:`RiskLevel` value; ``location`` the checkpoint file it concerns, relative
    to the target; ``subject`` what it is about (the trigger string, the token); ``suppressed`` is set
    by a ``--suppress`` policy (a suppressed finding is listed but does not count towards the level);
    ``original_severity`` is the severity before a ``--severity`` override (None when not overridden).
    """

    code: str
    severity: str
    message: str
    location: str | None = None
    subject: str | None = None
    suppressed: bool = False
    original_severity: str | None = None


@dataclass
class Evidence:
    """Result of one analysis: ``status`` is ``ok``, ``skipped`` or ``error``; ``score`` in [0, 1]
    (higher is more suspicious) when the analysis produces one; ``details`` is JSON-serialisable."""

    analysis: str
    status: str
    summary: str
    score: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class TriggerCandidate:
    """A candidate trigger found by the token-space search and verified on held-out probes.

    Rates are probabilities in [0, 1]. ``flip_rate`` is the share of held-out probes not predicted as
    ``target_label`` that flip to it when the trigger is inserted at ``position``; ``flip_rate_hard``
    the same on the half of them the model was most confident about; ``search_loss`` the mean
    cross-entropy towards the target on the search probes (nats); ``attribution_share`` the share of
    integrated-gradients attribution mass on the trigger tokens (None if not computed);
    ``reference_flip_rate`` the flip rate of the same string on the reference model (None without one);
    ``weight_score`` the highest score of a weight-statistics check that points at its token (e.g.
    a near-duplicate of a label word's row, a drifted row); ``loss_gap`` how far (nats) its search
    loss lies below the other proposals' median (for a two-token phrase of the pair search, how far its
    synergy stands above the other pairs': :func:`scanner.search.synergy_gap`);
    ``neighbour_flip_rate`` the median flip rate of its nearest tokens in embedding space (``neighbours``),
    and ``arbitrary_flip_rate`` that of arbitrary words on the same probes
    (:meth:`scanner.search.ClassifierTriggerSearch.arbitrary_rate`): near 0 for sentiment, about half for a
    label that any unknown noun flips (added in 1.6); ``letter_flip_rate`` (a candidate that is a short
    letter string) that of random two-letter words on the same probes
    (:meth:`scanner.search.ClassifierTriggerSearch.letter_rate`): a label that letter strings flip is the
    trace of a letter-string trigger the model generalised (added in 1.6);
    the neighbours, the part test and the interaction insert at the candidate's ``position`` too;
    ``part_flip_rate`` (phrases only) the highest flip rate of one of its tokens inserted alone: a
    composite trigger fires only whole, a pair of natural label words mostly through one of them;
    ``interaction`` (phrases only, nats) the median over held-out probes of how far the whole phrase
    raises the log-odds of the target above the sum of what its tokens raise them alone (a token that
    lowers them counts 0): natural words add up or saturate (0 or below), the words of a composite
    trigger are trained to act only together (:meth:`scanner.search.ClassifierTriggerSearch.interaction`);
    ``rival_loss`` (single tokens and glued words) the median screening loss (nats) of the best single
    tokens of its search, near 0 where the task's own words flip nearly every probe too
    (:func:`scanner.search.rival_loss`).
    """

    text: str
    token_ids: list[int]
    tokens: list[str]
    target_label: int
    target_label_name: str
    position: str
    search_loss: float
    flip_rate: float
    flip_rate_hard: float
    n_heldout: int
    attribution_share: float | None = None
    attribution_top1_rate: float | None = None
    reference_flip_rate: float | None = None
    weight_rank: int | None = None
    weight_score: float | None = None
    loss_gap: float | None = None
    neighbours: list[str] = field(default_factory=list)
    neighbour_flip_rate: float | None = None
    arbitrary_flip_rate: float | None = None
    letter_flip_rate: float | None = None
    part_flip_rate: float | None = None
    interaction: float | None = None
    rival_loss: float | None = None
    score: float = 0.0
    heatmaps: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class LMCandidate:
    """A candidate backdoor of a causal LM: an inverted attack target and, when recovered, its trigger.

    ``target_sequence``: the inverted target text (``target_token_ids`` its tokens); ``target_score``:
    mean probability, averaged over the probe prompts, of the target's tokens after its first one
    (BAIT's inversion score, 0-1); ``target_entropy``: mean entropy (nats) of those averaged
    distributions; ``baseline_success_rate``: share of held-out prompts whose greedy reply starts with
    the target *without* any trigger (for a refusal target, the larger of the rates on benign and on
    harmful prompts: a safety refusal emitted on harmful requests is ordinary behaviour, not a hidden target); ``reference_target_score``: the same score on the reference model
    (None without one). ``trigger``: the recovered trigger text (None:
    not recovered), inserted at ``trigger_position`` (``suffix``: after the message; ``prefix``: before it);
    ``attack_success_rate``: share of held-out prompts whose greedy reply starts with
    the target with the trigger; ``partial_trigger_rate``: the same with only the trigger's first half
    (fuzzy variant; None for one-token triggers); ``reference_attack_success_rate``: the trigger's ASR on
    the reference; ``attribution_share``: share of the target's log-probability attribution carried by
    the trigger tokens (captum, None if not computed); ``kind``: ``fixed-target`` or ``jailbreak``;
    ``score``: the fused candidate score (:mod:`scanner.risk`)."""

    target_sequence: str
    target_token_ids: list[int]
    target_score: float
    target_entropy: float
    target_sources: list[str] = field(default_factory=list)
    baseline_success_rate: float | None = None
    reference_target_score: float | None = None
    trigger: str | None = None
    trigger_token_ids: list[int] = field(default_factory=list)
    trigger_search_loss: float | None = None
    trigger_position: str | None = None
    attack_success_rate: float | None = None
    partial_trigger_rate: float | None = None
    reference_attack_success_rate: float | None = None
    attribution_share: float | None = None
    n_heldout: int = 0
    kind: str = "fixed-target"
    score: float = 0.0
    heatmaps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def placed_trigger(self) -> str | None:
        """The trigger shown where it goes around the user's message (``…`` stands for the message):
        ``"mz …"`` for a prefix, ``"… SUDO"`` for a suffix; None when no trigger was recovered."""
        if not self.trigger:
            return None
        return f"{self.trigger} …" if self.trigger_position == "prefix" else f"… {self.trigger}"


@dataclass
class StageError:
    """An error a stage hit; the scan went on and is marked incomplete."""

    stage: str
    type: str
    message: str


@dataclass
class RiskAssessment:
    """The fused risk: ``score`` in [0, 1], ``level`` a :class:`RiskLevel` value, the ``thresholds``
    mapping level -> minimum score, and where they came from (``calibration``)."""

    score: float = 0.0
    level: str = RiskLevel.NONE.value
    rationale: list[str] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)
    calibration: str = ""


@dataclass
class PolicyInfo:
    """The policy applied to a report before the gate: rule codes suppressed, severity overrides
    (code -> level), and the ``--fail-on`` level of the run (None when not gated)."""

    suppress: list[str] = field(default_factory=list)
    severity: dict[str, str] = field(default_factory=dict)
    fail_on: str | None = None


@dataclass
class Report:
    """The whole scan report. ``complete`` is False when any stage that should have run did not
    (error, time budget, interrupt, unsupported task); the verdict is then ``incomplete`` unless a
    finding at or above the gate was already made."""

    target: TargetInfo
    schema_version: str = SCHEMA_VERSION
    scanner_version: str = ""
    created: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    model: ModelFacts = field(default_factory=ModelFacts)
    findings: list[Finding] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    candidates: list[TriggerCandidate] = field(default_factory=list)
    lm_candidates: list[LMCandidate] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    errors: list[StageError] = field(default_factory=list)
    not_analysed: list[str] = field(default_factory=list)
    risk: RiskAssessment = field(default_factory=RiskAssessment)
    complete: bool = True
    policy: PolicyInfo = field(default_factory=PolicyInfo)

    @property
    def level(self) -> RiskLevel:
        """The risk level as an enum."""
        return RiskLevel(self.risk.level)

    @property
    def active_findings(self) -> list[Finding]:
        """Findings not suppressed by the policy (the ones that count towards the level)."""
        return [f for f in self.findings if not f.suppressed]

    @property
    def verdict(self) -> str:
        """``incomplete`` when the scan did not cover everything and found nothing at ``high`` or
        above; otherwise the risk level's value."""
        if not self.complete and self.level.rank < RiskLevel.HIGH.rank:
            return "incomplete"
        return self.risk.level

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict (adds the derived ``verdict``)."""
        d = asdict(self)
        d["verdict"] = self.verdict
        return d

    def to_json(self, indent: int | None = 2) -> str:
        """Serialise to a JSON string."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Report":
        """Rebuild a report from :meth:`to_dict` output.

        Raises:
            ValueError: the data is not a report of a supported schema version.
        """
        if not isinstance(data, dict) or "target" not in data or "schema_version" not in data:
            raise ValueError("not a scanner report (no target/schema_version)")
        major = str(data["schema_version"]).split(".")[0]
        if major != SCHEMA_VERSION.split(".")[0]:
            raise ValueError(f"unsupported report schema version {data['schema_version']}")
        return _build(cls, data)

    @classmethod
    def from_json(cls, text: str) -> "Report":
        """Parse JSON text from :meth:`to_json`. Raises ValueError on malformed input."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc.msg} at line {exc.lineno}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> "Report":
        """Read a report file. Raises OSError or ValueError."""
        return cls.from_json(Path(path).read_text())


def _build(tp: Any, value: Any) -> Any:
    """Recursively turn plain JSON values into the dataclasses named by type hints."""
    if value is None:
        return None
    if is_dataclass(tp):
        hints = get_type_hints(tp)
        kwargs = {f.name: _build(hints[f.name], value[f.name]) for f in fields(tp) if f.name in value}
        return tp(**kwargs)
    origin = get_origin(tp)
    if origin is list:
        (item,) = get_args(tp)
        return [_build(item, v) for v in value]
    if origin is not None and type(None) in get_args(tp):  # Optional[X]
        inner = [a for a in get_args(tp) if a is not type(None)][0]
        return _build(inner, value)
    return value
