"""The scan pipeline: target -> checkpoint -> probe set -> evidence -> candidates -> report.

Each stage is timed, bounded by a :class:`scanner.budget.Watchdog` and isolated: an error inside an
analysis stage becomes an entry of ``report.errors`` and marks the report incomplete, and the scan
goes on. Per-file problems found while inspecting the checkpoint (a corrupt extra file, an
unparsable pickle, an unreadable tokenizer) are report errors too. Errors that leave nothing to
analyse (target not found, corrupt or unsafe weights, unsupported architecture, not enough memory)
propagate from :func:`scan` as :class:`scanner.errors.ScannerError`; callers that need a report
even then (the CLI, for ``--output``) use :func:`scan_to_report`, which records the error in an
incomplete report with everything inspected before it.
"""
from __future__ import annotations

import datetime as _dt
import time
from pathlib import Path
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from . import __version__
from .budget import Budget, BudgetExceeded, Watchdog
from .checkpoint import (TASK_CAUSAL_LM, TASK_CLASSIFICATION, TASK_UNSUPPORTED, Checkpoint, load_checkpoint, tokenizer_mismatch,
                         vocabulary_coverage)
from .errors import BadInput, ScannerError, Terminated, UnsupportedModel
from .probes import ProbeSet, broad_probes, default_probes, load_probes
from .report import Evidence, Report, StageError, TargetInfo
from .risk import analysis_findings, assess
from .target import resolve

Progress = Callable[[str, str], None]

#: Scan profiles: SearchConfig overrides and attribution probes per candidate.
PROFILES: dict[str, dict[str, Any]] = {
    "quick": {"search": {"n_search": 32, "n_screen": 12, "n_heldout": 64, "top_k": 32, "rounds": 1, "n_verify": 2, "n_neighbours": 4,
                         "attention_pool": 0}, "attr_probes": 8},
    "standard": {"search": {}, "attr_probes": 12},
    "deep": {"search": {"n_search": 64, "n_screen": 24, "n_heldout": 160, "top_k": 128, "rounds": 3, "lengths": (1, 2), "n_verify": 4, "n_neighbours": 8,
                        "attention_pool": 16, "partner_top": 48, "attention_partners": 24, "anchor_singles": 6,
                        "continuation_top": 32}, "attr_probes": 24},
}
STAGES = ("weights", "search", "attribution")
PRECISIONS = ("auto", "bf16", "fp32")


@dataclass
class ScanOptions:
    """Options of one scan (the CLI's flags). ``time_budget`` in seconds (None: unlimited);
    ``only``: subset of :data:`STAGES` to run (None: all); ``max_memory`` in bytes (None: the
    available memory) bounds the model size that is loaded; ``stage_timeout`` in seconds bounds
    each stage, loading included, on top of ``time_budget`` (None: only ``time_budget``); ``precision``
    of the searches' exact evaluations, ``auto`` (bf16 autocast only on a CPU with native bfloat16
    matmuls), ``bf16`` or ``fp32`` (the same search path on any CPU; results then differ between CPUs only by
    the rounding of their fp32 kernels)."""

    revision: str | None = None
    offline: bool = False
    base: str | None = None
    reference: str | None = None
    probes: str | None = None
    profile: str = "standard"
    time_budget: float | None = None
    seed: int = 0
    allow_pickle: bool = False
    only: tuple[str, ...] | None = None
    threads: int | None = None
    max_memory: int | None = None
    stage_timeout: float | None = 3600.0
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.max_memory is not None and (not isinstance(self.max_memory, int) or self.max_memory <= 0):
            raise BadInput(f"max_memory must be a positive number of bytes, not {self.max_memory!r}")
        if self.time_budget is not None and not self.time_budget > 0:  # also NaN, which every comparison rejects
            raise BadInput(f"time_budget must be positive seconds, not {self.time_budget!r}")
        if self.stage_timeout is not None and not self.stage_timeout > 0:
            raise BadInput(f"stage_timeout must be positive seconds, not {self.stage_timeout!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 0):
            raise BadInput(f"threads must be a positive number of torch threads (0 or None: torch's default), not {self.threads!r}")
        if self.profile not in PROFILES:
            raise BadInput(f"unknown profile {self.profile!r}; choose one of {', '.join(PROFILES)}")
        if self.precision not in PRECISIONS:
            raise BadInput(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if isinstance(self.only, str):  # scan(..., only="weights") means one stage, not its letters
            self.only = (self.only,)
        for s in self.only or ():
            if s not in STAGES:
                raise BadInput(f"unknown stage {s!r} in only/--only; choose from {', '.join(STAGES)}")


@dataclass
class _Run:
    report: Report
    budget: Budget
    progress: Progress
    state: dict[str, Any] = field(default_factory=dict)
    stage_timeout: float | None = None
    on_hang: Callable[[str], None] | None = None

    def watchdog(self, name: str) -> Watchdog:
        """A watchdog bounding stage ``name`` by the scan budget and ``stage_timeout``."""
        return Watchdog(self.budget, name, self.stage_timeout, on_hang=self.on_hang)

    def stage(self, name: str, fn: Callable[[], None]) -> None:
        """Run one stage, timed and watched; turn its failure into a report error (the scan goes on)."""
        self.progress(name, "started")
        t0 = time.perf_counter()
        try:
            self.budget.check()
            with self.watchdog(name):
                fn()
        except BudgetExceeded as exc:
            self.report.errors.append(StageError(name, "time-budget", str(exc)))
            self.report.not_analysed.append(f"{name}: stopped by the time budget")
            self.report.complete = False
        except ScannerError as exc:
            self.report.errors.append(StageError(name, type(exc).__name__, str(exc)))
            self.report.complete = False
        except Exception as exc:  # an analysis bug must not lose what was found
            self.report.errors.append(StageError(name, type(exc).__name__, (str(exc).splitlines() or [""])[0][:300]))
            self.report.not_analysed.append(f"{name}: failed")
            self.report.complete = False
        finally:
            self.report.timings[name] = round(time.perf_counter() - t0, 3)
            self.progress(name, "done")


def scan(target: str, options: ScanOptions | None = None, progress: Progress | None = None, **kwargs: Any) -> Report:
    """Scan ``target`` (hub ID ``org/name[@rev]``, folder, ``.gguf`` file, or adapter folder).

    Args:
        target: what to scan.
        options: :class:`ScanOptions`; keyword arguments override its fields.
        progress: callback ``(stage, message)`` for progress reporting (library code never prints).

    Returns:
        The :class:`scanner.report.Report`. A scan interrupted by KeyboardInterrupt or the time
        budget returns what it found, marked incomplete.

    Raises:
        ScannerError: the target cannot be resolved or loaded (nothing to analyse); use
            :func:`scan_to_report` to get an incomplete report instead.
        BadInput: an invalid option or an unusable ``probes`` file (checked before anything is loaded).
    """
    report, error = _scan(target, options, progress, None, kwargs)
    if error is not None:
        raise error
    return report


def scan_to_report(target: str, options: ScanOptions | None = None, progress: Progress | None = None,
                   on_hang: Callable[[str, Report], None] | None = None, started: float | None = None,
                   **kwargs: Any) -> tuple[Report, ScannerError | None]:
    """Like :func:`scan`, but a target that cannot be resolved or loaded still yields a report.

    Args:
        target, options, progress: as for :func:`scan`.
        on_hang: called as ``on_hang(stage, report)`` from the watchdog thread when a stage is stuck
            past its deadline (see :mod:`scanner.budget`); the CLI writes the report and exits.
        started: the ``time.monotonic()`` at which the scan started (the CLI's start), from which
            ``time_budget`` counts; default: the call of this function.

    Returns:
        ``(report, error)``: ``error`` is the :class:`ScannerError` that stopped loading (also recorded
        in ``report.errors``, with the files and findings inspected before it; the report is then
        incomplete), or None.

    Raises:
        BadInput: an invalid option or an unusable ``probes`` file (nothing was scanned).
    """
    return _scan(target, options, progress, on_hang, kwargs, started)


def _scan(target: str, options: ScanOptions | None, progress: Progress | None,
          on_hang: Callable[[str, Report], None] | None, kwargs: dict[str, Any],
          started: float | None = None) -> tuple[Report, ScannerError | None]:
    started = time.monotonic() if started is None else started  # the time budget counts from here
    opts = options or ScanOptions()
    for k, v in kwargs.items():
        if not hasattr(opts, k):
            raise BadInput(f"unknown scan option {k!r}")
        setattr(opts, k, v)
    opts.__post_init__()
    user_probes = None
    if opts.probes and set(opts.only or STAGES) & {"search", "attribution"}:
        try:  # a bad probe file is bad input: refused before anything is loaded, not a stage error later
            user_probes = load_probes(opts.probes)  # read once: the stages take it from run.state
        except ScannerError:
            raise
        except Exception as exc:  # outside any stage: never a traceback
            raise BadInput(f"--probes {opts.probes}: cannot be read as probes ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]})") from None
    progress = progress or (lambda stage, msg: None)
    report = Report(
        target=TargetInfo(spec=target, kind="unknown", path=""),
        scanner_version=__version__,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        options={k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(opts).items()},
    )
    run = _Run(report, Budget(opts.time_budget, start=started), progress, stage_timeout=opts.stage_timeout,
               on_hang=(lambda stage: on_hang(stage, _hung(report, stage))) if on_hang else None)
    run.state["probes"] = user_probes
    _set_threads(opts.threads)  # imports torch: seconds on a cold start, counted as start-up
    report.timings["startup"] = round(run.budget.elapsed(), 3)
    error: ScannerError | None = None
    try:
        _pipeline(run, target, opts)
    except ScannerError as exc:
        error = exc
        _record_load_failure(report, exc)
    except BudgetExceeded as exc:  # a deadline reached outside any stage (e.g. while resolving)
        report.errors.append(StageError("scan", "time-budget", str(exc)))
        report.not_analysed.append("scan stopped by the time limit before all stages ran")
        report.complete = False
    except Exception as exc:  # a scanner bug while loading: still one error line and a report, never a traceback
        error = ScannerError(f"unexpected {type(exc).__name__} while loading ({(str(exc).splitlines() or [''])[0][:200]}); this is a scanner bug")
        _record_load_failure(report, error)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM raised as Terminated by the CLI
        how = "SIGTERM" if isinstance(exc, Terminated) else "KeyboardInterrupt"
        report.errors.append(StageError("scan", "interrupted", f"scan interrupted ({how})"))
        report.not_analysed.append("scan interrupted before all stages ran")
        report.complete = False
    report.risk = assess(report.candidates, report.evidence, report.findings, report.lm_candidates)
    report.findings.extend(analysis_findings(report.candidates, report.evidence, report.target.files, report.lm_candidates))
    return report, error


def _hung(report: Report, stage: str) -> Report:
    """Mark ``report`` as stopped by a stage stuck past its deadline, with its risk assessed so far."""
    report.errors.append(StageError(stage, "watchdog", f"stage {stage} hung past its deadline; the scan was stopped"))
    report.not_analysed.append(f"{stage}: stuck past its deadline; the scan was stopped")
    report.complete = False
    report.risk = assess(report.candidates, report.evidence, report.findings, report.lm_candidates)
    report.findings.extend(analysis_findings(report.candidates, report.evidence, report.target.files, report.lm_candidates))
    return report


def _record_load_failure(report: Report, exc: ScannerError) -> None:
    """Record an error that stopped resolving or loading, with what was inspected before it."""
    ck = exc.partial
    if ck is not None:
        report.target.files, report.findings, report.model = list(ck.files), list(ck.findings), ck.facts
        report.errors.extend(ck.errors)
        report.not_analysed.extend(ck.not_analysed)
    # A problem the inspection found first (a corrupt weight file) is what stopped loading: listed once, as the load error.
    report.errors[:] = [e for e in report.errors if e.message != str(exc)]
    report.errors.append(StageError("load", type(exc).__name__, str(exc)))
    report.not_analysed.append("model: not loaded, so no analysis ran")
    report.complete = False


def _set_threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(n)


def _pipeline(run: _Run, spec: str, opts: ScanOptions) -> None:
    report = run.report
    t0 = time.perf_counter()
    wanted = set(opts.only or STAGES)
    try:
        # Resolving (a download) and loading are bounded like any stage; a budget already spent by
        # start-up (importing torch and transformers) loads nothing.
        with run.watchdog("load"):
            run.progress("load", f"resolving {spec}")
            resolved = resolve(spec, revision=opts.revision, offline=opts.offline)
            report.target.kind, report.target.path, report.target.revision = resolved.kind, str(resolved.path), resolved.revision
            if opts.base and resolved.kind != "adapter":  # silently unused, it would hide that no base comparison ran
                raise BadInput(f"--base {opts.base}: {spec} is not a LoRA adapter (--base names an adapter's base model; "
                               "--reference compares a full model with its base)")
            run.progress("load", f"loading {resolved.path}")
            run.budget.check()
            ck = load_checkpoint(resolved, base=opts.base, allow_pickle=opts.allow_pickle, offline=opts.offline,
                                 max_memory=opts.max_memory, load_model=bool(wanted - {"weights"}), weights_only_if_too_large=True,
                                 without_base="weights" in wanted)
    except BudgetExceeded as exc:
        report.errors.append(StageError("load", "time-budget", str(exc)))
        report.not_analysed.append("model: loading stopped by the time limit, so no analysis ran")
        report.complete = False
        return
    finally:
        report.timings["load"] = round(time.perf_counter() - t0, 3)
    report.target.files, report.findings, report.model = ck.files, list(ck.findings), ck.facts
    report.target.base = ck.reference_spec if resolved.kind == "adapter" else None
    if ck.errors or ck.not_analysed:
        report.errors.extend(ck.errors)
        report.not_analysed.extend(ck.not_analysed)
        report.complete = False
    if ck.base_missing:  # an adapter without its base: its own weight statistics, and the rest said
        _adapter_without_base(run, ck, wanted, opts)
        return
    reference = opts.reference or ck.reference_spec
    if ck.model is not None and ck.tokenizer is not None:
        _vocabulary_note(report, ck.tokenizer, int(ck.model.get_input_embeddings().weight.shape[0]))
    if ck.facts.task == TASK_UNSUPPORTED:
        report.not_analysed.append(
            f"model behaviour: architecture {ck.facts.architecture!r} is neither sequence classification nor a causal LM"
        )
        report.complete = False
        if "weights" in wanted and ck.target.kind != "adapter":
            run.stage("weights", lambda: _weights(run, ck, opts.reference, opts))
        return
    if "weights" in wanted:
        run.stage("weights", lambda: _weights(run, ck, reference, opts))
    if ck.model_skipped and wanted & {"search", "attribution"}:
        _behaviour_skipped(report, wanted, ck.model_skipped)
        return
    if ck.tokenizer is None and wanted & {"search", "attribution"}:
        report.not_analysed.append("trigger search and attribution: no usable tokenizer")
        report.complete = False
        return
    if ck.facts.task == TASK_CLASSIFICATION and wanted & {"search", "attribution"} and _is_regression(ck):
        _regression_head(report, wanted)
        return
    if ck.facts.task == TASK_CLASSIFICATION:
        if "search" in wanted:
            run.stage("search", lambda: _classifier_search(run, ck, opts))
        if "attribution" in wanted:
            run.stage("attribution", lambda: _attribution(run, ck, opts))
        if reference and "search" in wanted and report.candidates:
            run.stage("reference-check", lambda: _reference_check(run, reference, opts))
    elif ck.facts.task == TASK_CAUSAL_LM and wanted & {"search", "attribution"}:
        run.stage("lm-scan", lambda: _lm_scan(run, ck, opts, reference))


def _is_regression(ck: Checkpoint) -> bool:
    """True for a sequence-classification model with a regression head: one output (``num_labels=1``,
    which transformers trains as a regression) or ``problem_type`` ``regression``."""
    config = getattr(ck.model, "config", None)
    n = getattr(config, "num_labels", None) if config is not None else len(ck.facts.labels)
    return n == 1 or getattr(config, "problem_type", None) == "regression"


def _regression_head(report: Report, wanted: set[str]) -> None:
    """A sequence-classification model with a regression head (:func:`_is_regression`): it outputs scores,
    not a label, so there is no label for a trigger to flip. The behavioural stages are reported as not
    supported (a ``skipped`` evidence row each, and not analysed: the scan is incomplete); the weight
    statistics, when asked for, have run as for any model."""
    reason = ("regression head (num_labels=1 or problem_type regression): the model outputs scores, not a label, so there is "
              "no label for a trigger to flip; the trigger search and attribution do not support it"
              + ("; the weight statistics ran" if "weights" in wanted else ""))
    stages = [s for s in ("search", "attribution") if s in wanted]
    for stage, analysis in (("search", "trigger-search"), ("attribution", "attribution")):
        if stage in wanted:
            report.evidence.append(Evidence(analysis, "skipped", reason))
    report.not_analysed.append(f"model behaviour ({', '.join(stages)}): not supported for a regression head (scores, not labels)")
    report.complete = False


def _adapter_without_base(run: _Run, ck: Checkpoint, wanted: set[str], opts: ScanOptions) -> None:
    """A LoRA adapter whose base model was not found: the adapter's own weight statistics run (its LoRA
    updates and saved tensors, read from its files); what needs the base (the base's and the merged
    weights' statistics, every behavioural stage) is listed as not analysed, and the scan is incomplete."""
    report = run.report
    report.errors.insert(0, StageError("load", "BaseNotFound", ck.base_missing or "base model not found"))
    report.complete = False
    run.stage("weights", lambda: _weights(run, ck, opts.reference, opts))
    report.not_analysed.append("weight statistics of the base model and of the merged weights: the adapter's base model was not found "
                               "(only the adapter's own tensors were analysed)")
    behaviour = [s for s in ("search", "attribution") if s in wanted]
    if behaviour:
        report.not_analysed.append(f"model behaviour ({', '.join(behaviour)}): not run, the adapter's base model was not found")


def _behaviour_skipped(report: Report, wanted: set[str], why: str) -> None:
    """Record that the behavioural stages did not run because the model was not built (too large for
    the memory limit): a ``skipped`` evidence row per stage with the reason, and the scan incomplete."""
    reason = (f"{why}. Behavioural stages need the whole model in memory (the gradient search differentiates through "
              "every layer), so they were skipped; the weight statistics were read tensor by tensor")
    for stage, analysis in (("search", "trigger-search"), ("attribution", "attribution")):
        if stage in wanted:
            report.evidence.append(Evidence(analysis, "skipped", reason))
    report.not_analysed.append(f"model behaviour ({', '.join(s for s in ('search', 'attribution') if s in wanted)}): skipped, {why}")
    report.complete = False


def _lm_scan(run: _Run, ck: Checkpoint, opts: ScanOptions, reference: str | None) -> None:
    """Generative-LM stages (:mod:`scanner.lm`): target inversion, trigger search, attribution and
    behaviour drift against the reference when one is known."""
    from .lm.scan import LM_PROFILES, LMBackdoorScan, LMScanConfig
    from .probes import chat_probes

    benign, harmful = chat_probes()
    if opts.probes:
        benign = _user_probes(run, opts)
    sample = benign.texts[:16]
    unread = sum(1 for t in sample if not ck.tokenizer(t, add_special_tokens=False)["input_ids"])
    if sample and unread * 2 > len(sample):  # a vocabulary that cannot spell the prompts: nothing to measure
        raise UnsupportedModel(f"the tokenizer encodes {unread} of {len(sample)} probe prompts to no tokens at all "
                               f"(vocabulary of {len(ck.tokenizer)} tokens), so the generative analyses cannot run")
    ref_pair = None
    if reference:
        run.progress("lm-scan", f"loading reference {reference}")
        try:
            ref = _load_reference(reference, opts)
            if ref.facts.task == TASK_CAUSAL_LM and ref.tokenizer is not None:
                ref_pair = (ref.model, ref.tokenizer)
        except ScannerError as exc:
            run.report.errors.append(StageError("lm-scan", type(exc).__name__, f"reference {reference}: {exc}"))
    cfg = LMScanConfig(**LM_PROFILES[opts.profile], seed=opts.seed, precision=opts.precision)
    lm = LMBackdoorScan(ck.model, ck.tokenizer, cfg, reference=ref_pair, budget=run.budget, progress=lambda m: run.progress("lm-scan", m))
    benign_texts = _inside_embedding(run, ck, benign.texts, lm.h.prompt_ids, "lm-scan")
    harmful_texts = _inside_embedding(run, ck, harmful.texts, lm.h.prompt_ids, "lm-scan (harmful requests)")
    if benign.texts and not benign_texts:
        raise UnsupportedModel("every probe prompt, as the tokenizer (and its chat template) encodes it, holds token ids past the "
                               f"embedding's last row ({int(ck.model.get_input_embeddings().weight.shape[0]) - 1}), so the generative analyses cannot run")
    try:
        lm.run(benign_texts, harmful_texts, seeds=run.state.get("seeds"))
    finally:  # keep what was found even when the budget ran out mid-way
        res = lm.result
        run.report.lm_candidates.extend(res.candidates)
        run.report.evidence.extend(res.evidence)
        run.report.evidence.append(Evidence(
            "lm-cost", "ok", f"{sum(res.forward_tokens.values()):,} forward tokens", None,
            {"forward_tokens": res.forward_tokens, "seconds": res.seconds, "probe_set": benign.source,
             "reference": reference if ref_pair else None,
             "search_precision": lm.h.precision}))  # of the trigger search's slot growth


def _inside_embedding(run: _Run, ck: Checkpoint, texts: list[str], encode: Callable[[str], list[int]], what: str) -> list[str]:
    """``texts`` less those whose encoding holds a token id past the model's last embedding row (added
    tokens past the end are tolerated at load, as some released checkpoints have them, but a text holding
    one fails inside the model with an IndexError); the texts left out are said (not analysed)."""
    rows = int(ck.model.get_input_embeddings().weight.shape[0])
    if max(ck.tokenizer.get_vocab().values(), default=-1) < rows:
        return texts  # every token id has a row: nothing to check
    bad = {t for t in texts if any(i >= rows for i in encode(t))}
    if not bad:
        return texts
    run.report.not_analysed.append(f"{what}: {len(bad)} of {len(texts)} probe text(s) encode to added tokens whose ids are past the "
                                   f"embedding's last row ({rows - 1}); left out, as they cannot run through the model")
    run.report.complete = False
    return [t for t in texts if t not in bad]


def _load_reference(spec: str, opts: ScanOptions) -> Checkpoint:
    return load_checkpoint(resolve(spec, offline=opts.offline), allow_pickle=opts.allow_pickle, offline=opts.offline,
                           max_memory=opts.max_memory)


def _weights(run: _Run, ck: Checkpoint, reference: str | None, opts: ScanOptions) -> None:
    from .weights import WeightContext, open_source, run_checks, seed_tokens
    from .weights.source import EmptySource, SafetensorsSource, adapter_config

    target = ck.target
    adapter = acfg = None
    if target.kind == "adapter":
        # without its base (not found) only the adapter's own tensors are there to read
        source = open_source(Path(ck.reference_spec)) if ck.reference_spec else EmptySource()
        adapter, acfg = SafetensorsSource(target.path, "adapter_model*.safetensors"), adapter_config(target.path)
        reference = opts.reference  # the base itself is the source; drift needs another model
    else:
        source = open_source(target.path, target.gguf_file)
    ref_source = ref_tok = None
    if reference:
        run.progress("weights", f"opening reference {reference}")
        ref = resolve(reference, offline=opts.offline)
        ref_source = open_source(ref.path, ref.gguf_file)
        ref_tok = _reference_tokenizer(ref)
    ctx = WeightContext(source, ck.tokenizer, ck.config, ref_source, ref_tok, adapter, acfg, run.budget)
    emb = ctx.embedding() if ck.model is None and ck.tokenizer is not None else None
    if emb is not None:  # no model was built: the tokenizer is checked against the embedding here
        rows = int(emb[1].shape[0])
        mismatch = tokenizer_mismatch(ck.tokenizer, rows, ck.target.path.name)
        if mismatch:  # its token names would be wrong: ids instead, and said
            ctx.tokenizer = ck.tokenizer = None
            run.report.errors.append(StageError("weights", "tokenizer", mismatch + "; tokens are shown as ids"))
            run.report.complete = False
        else:
            _vocabulary_note(run.report, ck.tokenizer, rows)
    evidence = run_checks(ctx)
    run.report.evidence.extend(evidence)
    if not run.report.model.parameters:
        run.report.model.parameters = source.parameters()
    emb = ctx.embedding()
    if emb is not None and not run.report.model.vocab_size:
        run.report.model.vocab_size = int(emb[1].shape[0])
    seeds = seed_tokens(evidence)
    run.state["seeds"] = seeds
    run.state["weight_rank"] = {t: r for r, t in enumerate(seeds, 1)}


def _vocabulary_note(report: Report, tok: Any, rows: int) -> None:
    """Add a ``vocabulary-coverage`` evidence row when some of the embedding's ``rows`` belong to no token
    of ``tok``: no text reaches them, so the trigger search and the embedding statistics do not look at them
    (a text trigger cannot use them either; an embedding padded to a multiple of 64 is the usual cause)."""
    cov = vocabulary_coverage(tok, rows)
    if cov is None or any(e.analysis == "vocabulary-coverage" for e in report.evidence):
        return
    runs = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in cov["ranges"]) + (", ..." if len(cov["ranges"]) == 8 else "")
    report.evidence.append(Evidence(
        "vocabulary-coverage", "ok",
        f"{cov['unreachable']:,} of the embedding's {rows:,} rows belong to no token of the tokenizer (rows {runs}): no text reaches "
        "them, so neither the trigger search nor the embedding statistics look at them", None, cov))


def _reference_tokenizer(ref: Any) -> Any:
    """The reference's tokenizer, or None when it has none that loads without remote code."""
    from transformers import AutoTokenizer

    try:
        kw = {"gguf_file": ref.gguf_file} if ref.gguf_file else {}
        return AutoTokenizer.from_pretrained(str(ref.path), trust_remote_code=False, local_files_only=True, **kw)
    except Exception:
        return None


def _user_probes(run: _Run, opts: ScanOptions) -> ProbeSet:
    """The ``--probes`` file's probe set, as read before the scan (read here only if it was not)."""
    probes = run.state.get("probes")
    return probes if probes is not None else load_probes(opts.probes)


def _probe_set(run: _Run, opts: ScanOptions, labels: list[str]) -> ProbeSet:
    return _user_probes(run, opts) if opts.probes else default_probes(labels)


def _classifier_search(run: _Run, ck: Checkpoint, opts: ScanOptions) -> None:
    from .search import ClassifierTriggerSearch, SearchConfig

    prof = PROFILES[opts.profile]
    probes = _probe_set(run, opts, ck.facts.labels)
    encode = lambda t: ck.tokenizer(t)["input_ids"]  # noqa: E731
    probes = ProbeSet(_inside_embedding(run, ck, probes.texts, encode, "trigger search"), probes.source)
    search_texts, heldout = probes.split(opts.seed)
    run.state["heldout"] = heldout
    labels = ck.facts.labels or [str(i) for i in range(ck.model.config.num_labels)]
    cfg = SearchConfig(**prof["search"], seed=opts.seed, precision=opts.precision).for_labels(len(labels))
    searcher = ClassifierTriggerSearch(ck.model, ck.tokenizer, cfg, run.budget, lambda m: run.progress("search", m))
    run.state["searcher"] = searcher
    thin = [] if opts.probes else thin_labels(searcher, search_texts, heldout, labels, cfg)
    if thin:  # the shipped set does not cover this task: every shipped text instead
        run.progress("search", f"the default probes leave {', '.join(thin)} with too few texts to flip; using every shipped probe text")
        probes = broad_probes()
        probes = ProbeSet(_inside_embedding(run, ck, probes.texts, encode, "trigger search"), probes.source)
        search_texts, heldout = probes.split(opts.seed)
        run.state["heldout"] = heldout
    details: dict[str, Any] = {"probe_set": probes.source, "n_probes": len(probes.texts), "per_label": {},
                               "probes_per_label": {"search": cfg.n_search, "screen": cfg.n_screen, "heldout": cfg.n_heldout}}
    ev = Evidence("trigger-search", "ok", "", details=details)
    run.report.evidence.append(ev)
    for target in range(len(labels)):
        res = searcher.search_label(target, search_texts, heldout, labels, seeds=run.state.get("seeds"))
        details["per_label"][labels[target]] = {"n_search": res.n_search, "n_heldout": res.n_heldout, "skipped": res.skipped,
                                                "passes": res.passes, "neutralised": res.neutralised,
                                                "residual_flip_rate": res.residual_flip_rate, "residual_score": res.residual_score}
        if res.skipped:  # a label that was not searched was not analysed: the scan is incomplete, never clean
            run.report.not_analysed.append(f"target label {labels[target]}: not searched, {res.skipped}")
            run.report.complete = False
        for c in res.candidates:
            c.weight_rank = run.state.get("weight_rank", {}).get(c.token_ids[0]) if len(c.token_ids) == 1 else None
            c.weight_score = _weight_score(run.report.evidence, c.token_ids)
        run.report.candidates.extend(res.candidates)
    details["forward_sequences"] = searcher.forward_sequences
    details["forward_tokens"] = searcher.forward_tokens  # padded batch x length, forward passes only
    details["cached_sequences"] = searcher.cached_sequences  # evaluated again, answered from the search's cache
    details["forward_tokens_by_part"] = dict(searcher.tokens_by_part)
    # Wall seconds go with the report's other timings (a report is otherwise the same on every run).
    run.report.timings.update({f"search.{k}": round(v, 3) for k, v in searcher.seconds.items()})
    details["precision"] = searcher.precision  # of the exact evaluations (bf16 autocast where the CPU has it natively)
    run.report.candidates.sort(key=lambda c: (-c.flip_rate, c.search_loss))
    best = run.report.candidates[0] if run.report.candidates else None
    ev.summary = (f"best candidate '{best.text}' -> {best.target_label_name}: held-out flip rate {best.flip_rate:.2f}"
                  if best else "no candidate")
    ev.score = best.flip_rate if best else 0.0


def thin_labels(searcher: Any, search_texts: list[str], heldout: list[str], labels: list[str], cfg: Any) -> list[str]:
    """Labels for which the probe set holds fewer than ``cfg.n_search // 2`` search texts or ``cfg.n_heldout // 4``
    held-out texts that the model assigns to another label (the texts a trigger for that label can flip):
    a probe set of another task than the model's (a sentiment model that assigns balanced SST-2 to one label
    at least 88% of the time hardly reads sentiment). Uses ``searcher.predict_texts`` (cached, so the search
    reuses these predictions)."""
    s = searcher.predict_texts(search_texts).argmax(-1)
    h = searcher.predict_texts(heldout).argmax(-1)
    return [name for i, name in enumerate(labels)
            if int((s != i).sum()) < cfg.n_search // 2 or int((h != i).sum()) < cfg.n_heldout // 4]


def _weight_score(evidence: list[Evidence], token_ids: list[int]) -> float | None:
    """Highest score among weight-statistics evidence whose flagged token ids include one of
    ``token_ids`` (None when no check points at them)."""
    scores = [e.score for e in evidence if str(e.details.get("rule", "")).startswith("SC2") and e.score is not None
              and set(token_ids) & set(e.details.get("token_ids", []))]
    return round(max(scores), 4) if scores else None


def _trigger_spellings(tok: Any, c: Any) -> list[list[int]]:
    """The token ids under which candidate ``c`` may appear in a text it was inserted into, in order: its
    own ``token_ids``, then how the tokenizer splits its text alone and after a space (a glued word's
    pieces need not come back from its text: ``tor ##ise`` reads back as ``tori ##se``, and verification
    measured the text; a BPE word inside a sentence carries its leading-space form)."""
    out = [list(c.token_ids)]
    for text in (c.text, " " + c.text):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if ids and ids not in out:
            out.append(ids)
    return out


def _attribution(run: _Run, ck: Checkpoint, opts: ScanOptions) -> None:
    from .attribution import TriggerAttribution

    heldout = run.state.get("heldout")
    searcher = run.state.get("searcher")
    if not run.report.candidates or heldout is None:
        run.report.evidence.append(Evidence("attribution", "skipped", "no trigger candidate to attribute"))
        return
    from .search import POSITIONS, per_label

    # Shared out over the labels like the search probes (SearchConfig.for_labels), at least 6.
    n = per_label(PROFILES[opts.profile]["attr_probes"], len(run.report.model.labels or []) or ck.model.config.num_labels, 6)
    attr = TriggerAttribution(ck.model, ck.tokenizer, n_steps=16, budget=run.budget)
    # Attribute the best candidate of each target label: the best of all always (its heat maps go in
    # the report), another label's only when full attribution could lift it to 'low'.
    from dataclasses import replace

    from .report import RiskLevel
    from .risk import THRESHOLDS, candidate_score

    done: set[int] = set()  # labels whose candidate was attributed
    failed: dict[int, list[str]] = {}  # label -> its candidates that could not be attributed (up to 3 are tried)
    shares = []
    victims_of: dict[int, list[str]] = {}
    for i, c in enumerate(sorted(run.report.candidates, key=candidate_score, reverse=True)):
        if c.target_label in done or (c.target_label in failed and len(failed[c.target_label]) > 2):
            continue
        if i > 0 and candidate_score(replace(c, attribution_share=1.0)) < THRESHOLDS[RiskLevel.LOW]:
            if c.target_label not in failed:  # the label's best needs no attribution; after a failure it stays unattributed
                done.add(c.target_label)
            continue
        k = n
        if c.target_label not in victims_of:
            probs = searcher.predict_texts(heldout)
            victims_of[c.target_label] = [t for t, p in zip(heldout, probs) if int(p.argmax()) != c.target_label]
        where = c.position if c.position in POSITIONS else "start"  # where verification found it flips
        trig = searcher.insert(c.text, victims_of[c.target_label], where)
        flipped = searcher.predict_texts(trig).argmax(-1) == c.target_label
        texts = [t for t, f in zip(trig, flipped) if f][:k] or trig[:k]
        res, error = None, None
        for ids in _trigger_spellings(ck.tokenizer, c):
            try:
                res = attr.attribute(texts, ids, c.target_label)
                break
            except ValueError as exc:  # not in the triggered texts under this spelling: the next one
                error = exc
        if res is None:  # under no spelling: the label's next candidate
            run.report.errors.append(StageError("attribution", "ValueError", f"'{c.text}': {error}"))
            failed.setdefault(c.target_label, []).append(c.text)
            continue
        done.add(c.target_label)
        c.attribution_share, c.attribution_top1_rate, c.heatmaps = res.share, res.top1_rate, res.heatmaps
        shares.append((c.text, res.share, res.dominance))
    unattributed = [tried[0] for label, tried in failed.items() if label not in done]
    if unattributed:  # a label's best candidates could not be attributed: said, never passed over
        run.report.not_analysed.append("attribution: could not attribute " + ", ".join(f"'{t}'" for t in unattributed) +
                                       " (their trigger tokens do not survive tokenisation of the triggered text)")
        run.report.complete = False
    run.report.evidence.append(Evidence(
        "attribution", "error" if unattributed else "ok",
        "; ".join(f"'{t}': share {s:.2f} ({d:.1f}x an average token)" for t, s, d in shares) or "none",
        max((s for _, s, _ in shares), default=0.0),
        {"method": "captum LayerIntegratedGradients on input embeddings, pad baseline, n_steps 16",
         "candidates": [{"text": t, "share": s, "dominance": d} for t, s, d in shares]},
    ))


def _reference_check(run: _Run, reference: str, opts: ScanOptions) -> None:
    from .search import ClassifierTriggerSearch, SearchConfig

    ref = _load_reference(reference, opts)
    if ref.facts.task != TASK_CLASSIFICATION or ref.tokenizer is None or ref.model.config.num_labels != len(run.report.model.labels):
        run.report.evidence.append(Evidence("reference-flip", "skipped", "reference is not a classifier with the same labels"))
        return
    ref_search = ClassifierTriggerSearch(ref.model, ref.tokenizer, SearchConfig(seed=opts.seed), run.budget)
    heldout = run.state["heldout"]
    for c in run.report.candidates:
        c.reference_flip_rate = ref_search.flip_rate_of(c.text, c.target_label, heldout, position=c.position)  # where it flipped this model
    run.report.evidence.append(Evidence("reference-flip", "ok", f"candidates re-tested on reference {reference}",
                                        details={c.text: c.reference_flip_rate for c in run.report.candidates}))
