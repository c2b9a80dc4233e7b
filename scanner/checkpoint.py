"""Safe loading of a resolved target into a model, a tokenizer and static findings.

Never executes code from a checkpoint: safetensors and GGUF only by default; pickle files (``*.bin``,
``*.pt``, ...) are scanned statically with picklescan and refused unless ``allow_pickle`` is set, and
even then are read only through ``torch.load(weights_only=True)`` (transformers' own path);
``trust_remote_code`` is always False, and shipped ``*.py`` files or an ``auto_map`` in the config are
reported as findings.

Every file is routed by its bytes (:func:`scanner.formats.sniff_file`), never by its name. Problems
with files the loader does not read (a corrupt extra file, an unparsable pickle) become per-file
errors and the scan goes on, marked incomplete; problems with the weights being loaded (corrupt or
disguised weight file, shard index naming a missing shard or tensors its shard lacks, weights the
model needs but the checkpoint lacks) stop loading. The memory that loading needs is estimated
before loading (:mod:`scanner.resources`).
"""
from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .budget import BudgetExceeded
from .errors import BaseNotFound, CorruptCheckpoint, InsufficientMemory, ScannerError, TargetNotFound, UnsafeCheckpoint, UnsupportedModel
from .formats import CONTAINER_FORMATS, SUFFIX_FORMATS, sha256_file, sniff_file, tensor_elements, validate_gguf, validate_safetensors
from . import rules
from .report import FileDigest, Finding, ModelFacts, StageError
from .resources import check_fits
from .target import ResolvedTarget, resolve

PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib"}
#: Weight files transformers reads from a folder without a shard index.
DEFAULT_WEIGHT_FILES = ("model.safetensors", "adapter_model.safetensors")
TASK_CLASSIFICATION = "sequence-classification"
TASK_CAUSAL_LM = "causal-lm"
TASK_UNSUPPORTED = "unsupported"


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    ``model`` is a ``torch.nn.Module`` in eval mode on CPU (float32) or None when the task is not
    supported; ``tokenizer`` is None when its files could not be loaded (see ``errors``);
    ``reference_spec`` names the model this one derives from when the checkpoint says so (an
    adapter's base), for use as the reference model. ``errors`` and ``not_analysed`` list files or
    parts that could not be analysed (the report is then incomplete). ``model_skipped`` says why the
    model was not built although it was asked for (it does not fit in memory; see ``weights_only_if_too_large``
    of :func:`load_checkpoint`): weight statistics can still run, behavioural analyses cannot.
    ``base_missing`` says why a LoRA adapter's base model was not found (``without_base`` of
    :func:`load_checkpoint`): only the adapter's own weight statistics can run.
    """

    target: ResolvedTarget
    facts: ModelFacts
    files: list[FileDigest] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    model: Any = None
    tokenizer: Any = None
    config: dict = field(default_factory=dict)
    reference_spec: str | None = None
    errors: list[StageError] = field(default_factory=list)
    not_analysed: list[str] = field(default_factory=list)
    model_skipped: str | None = None
    base_missing: str | None = None  #: an adapter's base model could not be found (``without_base``): why


@dataclass
class FolderInspection:
    """Static inspection of a checkpoint folder (:func:`inspect_folder`).

    ``weights``: the safetensors files a loader reads (the shard index's shards, else
    ``model.safetensors`` / ``adapter_model.safetensors``), validated; ``parameters``: tensor
    elements in them; ``errors``: per-file problems (those files were not fully analysed);
    ``fatal``: problems that make the weights unloadable, in the order found (see
    :meth:`raise_for_weights`); ``not_analysed``: files present but outside what is loaded.
    """

    files: list[FileDigest] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    errors: list[StageError] = field(default_factory=list)
    fatal: list[ScannerError] = field(default_factory=list)
    weights: list[str] = field(default_factory=list)
    parameters: int = 0
    not_analysed: list[str] = field(default_factory=list)

    @property
    def has_safetensors(self) -> bool:
        """True when at least one safetensors weight file is there to load."""
        return bool(self.weights)

    def raise_for_weights(self) -> None:
        """Raise the first problem that makes the weights unloadable.

        Raises:
            UnsafeCheckpoint: a weight file named ``.safetensors`` holds a pickle or zip archive.
            CorruptCheckpoint: a weight file fails strict validation, or the shard index is unreadable,
                names a missing shard, or names tensors that its shard lacks.
        """
        if self.fatal:
            raise self.fatal[0]


def _finding(rule: rules.Rule, message: str, location: str | None = None, severity: str | None = None) -> Finding:
    return Finding(rule.code, severity or rule.severity.value, message, location)


def _first_line(exc: BaseException, limit: int = 200) -> str:
    return ((str(exc).strip().splitlines() or [""])[0])[:limit]


def inspect_folder(folder: Path, *, allow_pickle: bool = False, only: set[str] | None = None) -> FolderInspection:
    """Hash and sniff every file of a checkpoint folder (by content), collect static findings, and
    check the shard index both ways.

    Never raises for a bad file: problems are collected in the result (``errors`` and, for the
    weights being loaded, ``fatal``; call :meth:`FolderInspection.raise_for_weights`).

    Args:
        folder: the checkpoint folder.
        allow_pickle: unused by the inspection itself (kept for callers); pickles are never unpickled.
        only: restrict the inspection to these file names (a GGUF target inspects only its file).
    """
    insp = FolderInspection()
    entries = [p for p in folder.rglob("*") if ".cache" not in p.relative_to(folder).parts]
    if only is not None:
        entries = [p for p in entries if p.name in only]
    else:  # a single GGUF file named by the user may be a link to wherever it lives
        _links_outside(folder, entries, insp)
    paths = sorted(p for p in entries if p.is_file())
    # A FIFO, device, socket or dangling link is never read (it could block or never end): listed, not skipped.
    insp.not_analysed += [f"{p.relative_to(folder)}: not a regular file (FIFO, device, socket or broken link); not read"
                          for p in sorted(entries) if not p.is_file() and not p.is_dir()]
    index_names = sorted(str(p.relative_to(folder)) for p in paths if p.name.endswith(".safetensors.index.json"))
    loading_index = next((n for n in ("model.safetensors.index.json", "adapter_model.safetensors.index.json") if n in index_names),
                         index_names[0] if len(index_names) == 1 else None)
    weight_map: dict[str, str] | None = None
    if loading_index is not None:
        weight_map = _read_weight_map(folder / loading_index, insp)
    if weight_map is not None:
        wanted = sorted(set(weight_map.values()))
    else:
        wanted = [n for n in DEFAULT_WEIGHT_FILES if (folder / n).is_file()]
        # the weights file is there but cannot be read (a broken link, a FIFO): said by name, not 'no weight files'
        for n in DEFAULT_WEIGHT_FILES:
            present = (folder / n).is_symlink() or (folder / n).exists()
            if present and n not in wanted and (only is None or n in only):
                insp.fatal.append(CorruptCheckpoint(f"{n}: not a regular file (a broken link, FIFO or device); the weights cannot be read"))
    tables: dict[str, dict[str, dict]] = {}
    for p in paths:
        rel = str(p.relative_to(folder))
        table = _inspect_file(p, rel, insp, is_weight=rel in wanted)
        if table is not None:
            tables[rel] = table
    if loading_index is not None and weight_map is None:
        return insp  # the index is unreadable; its problem is already fatal
    # Shard index -> files: every shard exists and holds the tensors mapped to it.
    by_shard: dict[str, set[str]] = {}
    for tensor, shard in (weight_map or {}).items():
        by_shard.setdefault(shard, set()).add(tensor)
    for shard, names in sorted(by_shard.items()):
        if not (folder / shard).is_file():
            insp.fatal.append(CorruptCheckpoint(f"{loading_index}: names shard {shard}, which is missing"))
            continue
        if shard not in tables and not any(str(p.relative_to(folder)) == shard for p in paths):
            # inside a linked folder, which the walk does not follow: a loader reads it, so it is inspected too
            table = _inspect_file(folder / shard, shard, insp, is_weight=True)
            if table is not None:
                tables[shard] = table
        if shard not in tables:
            continue  # already a fatal problem of that file
        have = set(tables[shard])
        missing = names - have
        if missing:
            insp.fatal.append(CorruptCheckpoint(f"{shard}: lacks {len(missing)} tensor(s) its index names, e.g. {sorted(missing)[0]}"))
        extra = have - names
        if extra:
            insp.findings.append(_finding(rules.UNINDEXED_TENSOR, f"{shard} holds {len(extra)} tensor(s) that {loading_index} does not map to it, e.g. {sorted(extra)[0]}", shard))
    # Files -> shard index: safetensors files that no loader reads were not analysed.
    for rel in sorted(r for r in (str(p.relative_to(folder)) for p in paths) if r.endswith(".safetensors") and r not in wanted):
        where = f"not in {loading_index}" if loading_index else f"not {' or '.join(DEFAULT_WEIGHT_FILES)} and no shard index names it"
        insp.findings.append(_finding(rules.UNINDEXED_SHARD, f"{rel} is {where}; a loader ignores it and its tensors were not analysed", rel))
        insp.not_analysed.append(f"{rel}: safetensors file outside the loaded weights (unindexed shard)")
    if only is None:  # GGUF weights next to a safetensors model are not what is loaded
        insp.not_analysed += [f"{f.path}: GGUF weights outside the loaded model" for f in insp.files if f.format == "gguf"]
    insp.weights = [w for w in wanted if w in tables]
    insp.parameters = sum(tensor_elements(tables[w]) for w in insp.weights)
    return insp


def link_outside(path: Path, folder: Path) -> str | None:
    """Where the symbolic link ``path`` (inside ``folder``) points when that is outside ``folder``, as
    ``'TEXT (RESOLVED)'``; None when ``path`` is no link or stays inside. A link of a Hugging Face cache
    snapshot (``snapshots/<rev>/...``) into that repository's ``blobs`` folder is how huggingface_hub
    stores every file, so it counts as inside."""
    if not path.is_symlink():
        return None
    try:
        text = os.readlink(path)
    except OSError:
        text = "?"
    try:
        resolved = path.resolve()  # the whole chain of links (strict=False: a dangling link still resolves)
        root = folder.resolve()
    except (OSError, RuntimeError):  # a loop of links: listed as not a regular file, and it leads nowhere
        return None
    if resolved == root or root in resolved.parents:
        return None
    if folder.parent.name == "snapshots" and resolved.parent == (folder.parent.parent / "blobs").resolve():
        return None
    return f"{text} ({resolved})" if str(resolved) != text else text


def _links_outside(folder: Path, entries: list[Path], insp: FolderInspection) -> None:
    """SC111 for every entry of ``folder`` that is a symbolic link to a place outside it (see
    :func:`link_outside`). A linked file is still read, as a loader would read it; a linked folder is
    not walked (its files are read only when the shard index names them), which is said."""
    for p in sorted(entries):
        where = link_outside(p, folder)
        if where is None:
            continue
        rel = str(p.relative_to(folder))
        if p.is_dir():
            what = "a folder; not walked, its files were not analysed unless the shard index names them"
            insp.not_analysed.append(f"{rel}: link to a folder outside the checkpoint ({where}); not walked, so only files the shard index names were read from it")
        elif p.is_file():
            what = "read and analysed as a loader would read it"
        else:
            what = "not a regular file or missing; not read"
        insp.findings.append(_finding(rules.LINK_OUTSIDE, f"{rel} is a symbolic link to {where}, outside the checkpoint folder ({what})", rel))


def _read_weight_map(index: Path, insp: FolderInspection) -> dict[str, str] | None:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        if not isinstance(weight_map, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
            raise TypeError
        if any(Path(v).is_absolute() or ".." in Path(v).parts for v in weight_map.values()):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        insp.fatal.append(CorruptCheckpoint(f"{index.name}: shard index is not valid JSON with a weight_map of tensor -> shard file"))
        return None
    return weight_map


def _inspect_file(p: Path, rel: str, insp: FolderInspection, *, is_weight: bool) -> dict[str, dict] | None:
    """Inspect one file into ``insp``; return its safetensors tensor table when it is valid safetensors."""
    try:
        size = p.stat().st_size
        sn = sniff_file(p)
        digest = sha256_file(p)
    except OSError as exc:
        insp.files.append(FileDigest(rel, 0, "", "unreadable"))
        insp.errors.append(StageError("inspect", "unreadable", f"{rel}: cannot read ({exc.strerror or type(exc).__name__}); not analysed"))
        if is_weight:
            insp.fatal.append(CorruptCheckpoint(f"{rel}: cannot read ({exc.strerror or type(exc).__name__})"))
        return None
    insp.files.append(FileDigest(rel, size, digest, sn.format))
    suffix = p.suffix.lower()
    claimed = SUFFIX_FORMATS.get(suffix)
    table = sn.tensors
    if sn.polyglot:
        insp.findings.append(_finding(rules.POLYGLOT, f"{rel} is valid as {' and '.join(sn.formats)}; analysed as each", rel))
    if suffix == ".safetensors" and sn.format in {"pickle", "zip"}:
        insp.findings.append(_finding(rules.PICKLE_DISGUISED, f"{rel} is named .safetensors but holds a {sn.format} archive", rel))
        if is_weight:
            insp.fatal.append(UnsafeCheckpoint(f"{rel}: named .safetensors but its bytes are a {sn.format} archive; refusing to load"))
    elif claimed is not None and sn.format not in claimed:
        insp.findings.append(_finding(rules.NAME_CONTENT_MISMATCH, f"{rel} is named {suffix} but its bytes are {sn.format}", rel))
    elif claimed is None and sn.format in CONTAINER_FORMATS and not rel.endswith(".gguf"):
        insp.findings.append(_finding(rules.NAME_CONTENT_MISMATCH, f"{rel}: its bytes are {sn.format} but its name does not say so", rel))
    if suffix == ".safetensors" and table is None and sn.format not in {"pickle", "zip"}:
        try:
            validate_safetensors(p)
            msg = f"{rel}: not a valid safetensors file"
        except CorruptCheckpoint as exc:
            msg = str(exc)
        except OSError as exc:
            msg = f"{rel}: cannot read ({exc.strerror or type(exc).__name__})"
        insp.errors.append(StageError("inspect", "CorruptCheckpoint", msg if rel in msg else f"{rel}: {msg}"))
        if is_weight:
            insp.fatal.append(CorruptCheckpoint(msg))
    # Pickle analysis by content; a file whose name claims pickle but whose bytes are no other known
    # format goes to picklescan too (what it cannot parse is reported, never passed as clean).
    claims_pickle = suffix in PICKLE_SUFFIXES and sn.format not in {"safetensors", "gguf"}
    if "pickle" in sn.formats or "zip" in sn.formats or claims_pickle:
        if sn.format == "pickle" or (sn.format == "zip" and _zip_has_pickle(p)) or claims_pickle:
            insp.findings.append(_finding(rules.PICKLE_FILE, f"pickle-based file {rel} present; not unpickled", rel))
        _scan_pickle(p, rel, suffix, insp)
    elif suffix == ".py":
        insp.findings.append(_finding(rules.PYTHON_CODE, f"checkpoint ships Python code {rel}; never executed", rel))
    return table


def _scan_pickle(p: Path, rel: str, suffix: str, insp: FolderInspection) -> None:
    from .pickles import scan_pickle_file

    res = scan_pickle_file(p, rel, suffix if suffix in PICKLE_SUFFIXES else None)
    insp.findings.extend(res.findings)
    for msg in res.problems:
        insp.errors.append(StageError("inspect", "pickle-scan", msg))


def _zip_has_pickle(p: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(p) as zf:
            return any(n.endswith((".pkl", ".pickle")) for n in zf.namelist())
    except Exception:  # a malformed archive: picklescan reports it
        return True


@contextlib.contextmanager
def _partial(ck: Checkpoint) -> Iterator[None]:
    """Attach what was inspected so far to a ScannerError raised inside (see ``ScannerError.partial``)."""
    try:
        yield
    except ScannerError as exc:
        if exc.partial is None:
            exc.partial = ck
        raise


def read_config(folder: Path) -> dict:
    """Parse ``config.json``. Raises CorruptCheckpoint when it is missing, unreadable or not a JSON object."""
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        raise CorruptCheckpoint(f"{folder.name}/config.json is not valid JSON") from None
    if not isinstance(cfg, dict):
        raise CorruptCheckpoint(f"{folder.name}/config.json is not a JSON object")
    return cfg


def architecture_of(cfg: dict) -> str | None:
    """The first entry of a config's ``architectures`` when it is a string, else None."""
    arch = cfg.get("architectures")
    if isinstance(arch, list) and arch and isinstance(arch[0], str):
        return arch[0]
    return None


def task_of(architectures: Any) -> str:
    """Map a config's ``architectures`` (a list of class names; anything else counts as none) to the
    task the scanner analyses."""
    arch = architectures[0] if isinstance(architectures, list) and architectures and isinstance(architectures[0], str) else ""
    if arch.endswith("ForSequenceClassification"):
        return TASK_CLASSIFICATION
    if arch.endswith("ForCausalLM") or arch.endswith("LMHeadModel"):
        return TASK_CAUSAL_LM
    return TASK_UNSUPPORTED


def _str_or_none(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _remote_code_findings(folder: Path, cfg: dict) -> list[Finding]:
    out = []
    if "auto_map" in cfg:
        out.append(_finding(rules.REMOTE_CODE, "config.json has auto_map (custom remote code); trust_remote_code stays off", "config.json"))
    tc = folder / "tokenizer_config.json"
    if tc.is_file():
        try:
            tcfg = json.loads(tc.read_text())
        except (OSError, ValueError, UnicodeDecodeError, RecursionError):
            tcfg = None  # an unreadable tokenizer config is reported when the tokenizer is loaded
        if isinstance(tcfg, dict) and "auto_map" in tcfg:
            out.append(_finding(rules.REMOTE_CODE, "tokenizer_config.json has auto_map (custom tokenizer code); trust_remote_code stays off", "tokenizer_config.json"))
    return out


def load_checkpoint(target: ResolvedTarget, *, base: str | None = None, allow_pickle: bool = False, offline: bool = False,
                    max_memory: int | None = None, load_model: bool = True, weights_only_if_too_large: bool = False,
                    without_base: bool = False) -> Checkpoint:
    """Load ``target`` safely (see module docstring).

    Args:
        target: from :func:`scanner.target.resolve`.
        base: base model spec for an adapter (overrides ``adapter_config.json``).
        allow_pickle: permit ``*.bin`` weights, read with ``weights_only=True``.
        offline: resolve an adapter's base from the local hub cache only.
        max_memory: refuse to load a model needing more than this many bytes (parameters x 4);
            the available memory always applies.
        load_model: build the model; False loads the tokenizer only (weight-only scans read tensors
            one at a time through :mod:`scanner.weights.source`, so they need no memory bound).
        weights_only_if_too_large: when the model would not fit (``InsufficientMemory``), return the
            checkpoint without a model (tokenizer only, as for ``load_model=False``) and the reason in
            ``model_skipped`` instead of raising, so that the weight statistics still run.
        without_base: for a LoRA adapter whose base model cannot be found, return the adapter's own
            files, findings and tokenizer (no model, no ``reference_spec``) with the reason in
            ``base_missing`` instead of raising :class:`BaseNotFound`, so that the adapter's own weight
            statistics still run.

    Raises:
        CorruptCheckpoint, UnsafeCheckpoint, UnsupportedModel, TargetNotFound, BaseNotFound (an adapter's base), InsufficientMemory.
        Raised errors carry what was inspected before the failure in ``exc.partial``.
    """
    _quiet_transformers()
    if target.kind == "gguf":
        return _load_gguf(target, max_memory=max_memory, load_model=load_model, weights_only_if_too_large=weights_only_if_too_large)
    if target.kind == "adapter":
        return _load_adapter(target, base=base, allow_pickle=allow_pickle, offline=offline, max_memory=max_memory, load_model=load_model,
                             weights_only_if_too_large=weights_only_if_too_large, without_base=without_base)
    folder = target.path
    insp = inspect_folder(folder, allow_pickle=allow_pickle)
    facts = ModelFacts(source_format="safetensors" if insp.has_safetensors else None)
    ck = Checkpoint(target, facts, insp.files, insp.findings, errors=list(insp.errors), not_analysed=list(insp.not_analysed))
    with _partial(ck):
        cfg = read_config(folder)
        ck.config = cfg
        ck.findings.extend(_remote_code_findings(folder, cfg))
        facts.architecture, facts.model_type = architecture_of(cfg), _str_or_none(cfg.get("model_type"))
        facts.task = task_of(cfg.get("architectures"))
        insp.raise_for_weights()
        _check_module_counts(cfg, "config.json")
        if not insp.has_safetensors:
            if not any(f.code == rules.PICKLE_FILE.code for f in ck.findings):
                raise CorruptCheckpoint(f"{folder}: no weight files (*.safetensors) found")
            if not allow_pickle:
                raise UnsafeCheckpoint(
                    f"{folder.name}: weights are only in pickle files; refusing to unpickle (pass --allow-pickle to read them with weights_only=True)"
                )
            facts.source_format = "pickle(weights_only)"
        if facts.task == TASK_UNSUPPORTED or not load_model:
            ck.tokenizer = _tokenizer_only(str(folder), ck)
            _fill_facts(facts, None, cfg)
            return ck
        with _too_large(ck, weights_only_if_too_large):
            ck.model, ck.tokenizer, problems = _from_pretrained(str(folder), facts.task, use_safetensors=insp.has_safetensors,
                                                                max_memory=max_memory, checkpoint_parameters=insp.parameters)
        if ck.model_skipped:
            ck.tokenizer = _tokenizer_only(str(folder), ck)
            _fill_facts(facts, None, cfg)
            return ck
        ck.errors += problems
        _fill_facts(facts, ck.model)
    return ck


@contextlib.contextmanager
def _too_large(ck: Checkpoint, allowed: bool) -> Iterator[None]:
    """With ``allowed``, turn :class:`InsufficientMemory` raised inside into ``ck.model_skipped``."""
    try:
        yield
    except InsufficientMemory as exc:
        if not allowed:
            raise
        ck.model_skipped = str(exc)


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _reraise_control(exc: BaseException) -> None:
    """Re-raise what must never be swallowed: interrupts, exits, budget stops, our own errors."""
    if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit, BudgetExceeded, ScannerError)):
        raise exc


def _from_pretrained(path: str, task: str, *, use_safetensors: bool | None = True, max_memory: int | None = None,
                     checkpoint_parameters: int = 0, **kw: Any) -> tuple[Any, Any, list[StageError]]:
    """Load model and tokenizer with transformers, never running remote code.

    The parameter count implied by the config (the model built on the ``meta`` device) and the
    checkpoint's own count are checked against the memory limit before any weights are read; weights
    the model needs but the checkpoint lacks (which transformers would silently initialise at
    random) stop loading. A tokenizer that cannot be loaded is not fatal: it is None and the
    problem is returned.

    Returns:
        ``(model, tokenizer or None, problems)``.

    Raises:
        UnsupportedModel: transformers does not know this architecture (building it would need code from the checkpoint).
        UnsafeCheckpoint: a pickle weight file that torch.load(weights_only=True) refuses.
        CorruptCheckpoint: config or weights do not load, or the checkpoint lacks needed weights.
        InsufficientMemory: see :func:`scanner.resources.check_fits`.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    name = kw.get("gguf_file") or Path(path).name
    cls = AutoModelForSequenceClassification if task == TASK_CLASSIFICATION else AutoModelForCausalLM
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False, local_files_only=True, **kw)
        _check_module_counts(config, name)
        if task == TASK_CLASSIFICATION and getattr(config, "num_labels", 1) < 1:
            raise CorruptCheckpoint(f"{name}: config has no labels (num_labels=0, empty id2label); a sequence classifier needs at least one")
        with torch.device("meta"):
            skeleton = cls.from_config(config, trust_remote_code=False)
        implied = int(sum(p.numel() for p in skeleton.parameters()))
        del skeleton
    except BaseException as exc:  # noqa: BLE001 - transformers raises anything on odd configs
        _reraise_control(exc)
        raise _load_error(name, exc) from None
    check_fits(max(implied, checkpoint_parameters), name, max_memory)
    try:
        model, info = cls.from_pretrained(
            path, config=config, trust_remote_code=False, local_files_only=True, use_safetensors=use_safetensors,
            dtype=torch.float32, output_loading_info=True, **kw,
        )
    except BaseException as exc:  # noqa: BLE001
        _reraise_control(exc)
        raise _load_error(name, exc) from None
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(str(k) for k in (info.get("mismatched_keys") or []))
    if missing or mismatched:
        what = missing or mismatched
        raise CorruptCheckpoint(
            f"{name}: the checkpoint lacks {len(what)} weight(s) the model needs (e.g. {what[0]}); "
            "they would be randomly initialised, refusing to analyse such a model"
        )
    model.eval()
    problems: list[StageError] = []
    bad = _non_finite(model)
    if bad:
        problems.append(StageError("load", "non-finite-weights", f"{name}: {bad[0]:,} weight(s) are NaN or infinite (e.g. in {bad[1]}); "
                                   "the model's outputs are not meaningful, so its behaviour could not be analysed reliably"))
    tok = None
    try:
        tok = _open_tokenizer(path, **kw)
    except BaseException as exc:  # noqa: BLE001 - tokenizers raises anything, even pyo3 panics, on bad files
        _reraise_control(exc)
        tok = None
        problems.append(StageError("load", "tokenizer", f"{name}: tokenizer could not be loaded ({type(exc).__name__}: {_first_line(exc)}); analyses that need it were not run"))
    mismatch = tokenizer_mismatch(tok, int(model.get_input_embeddings().weight.shape[0]), name)
    if mismatch:
        tok = None
        problems.append(StageError("load", "tokenizer", mismatch + "; analyses that need the tokenizer were not run"))
    return model, tok, problems


def tokenizer_mismatch(tok: Any, rows: int, name: str) -> str | None:
    """Why ``tok`` cannot be used with an embedding of ``rows`` rows, or None when it can.

    Ordinary (not added) token ids past the last row make any text fail (model and tokenizer from
    different checkpoints); added tokens past the end are tolerated (the search leaves them out), as
    some released checkpoints have them."""
    if tok is None:
        return None
    added = set(tok.get_added_vocab())
    top = max((i for t, i in tok.get_vocab().items() if t not in added), default=-1)
    if top >= rows:
        return (f"{name}: the tokenizer has token ids up to {top} but the embedding has only {rows} rows "
                "(tokenizer and model do not match)")
    return None


def vocabulary_coverage(tok: Any, rows: int) -> dict[str, Any] | None:
    """The embedding rows that no token of ``tok`` maps to (no text can reach them), or None when every
    row has a token. Returns ``{"rows", "tokens", "unreachable", "ranges"}``: ``tokens`` the distinct
    token ids below ``rows``, ``ranges`` the unreachable rows as up to 8 ``[first, last]`` runs."""
    if tok is None or rows <= 0:
        return None
    ids = {i for i in tok.get_vocab().values() if isinstance(i, int) and 0 <= i < rows}
    if len(ids) >= rows:
        return None
    ranges: list[list[int]] = []
    for i in range(rows):
        if i in ids:
            continue
        if ranges and ranges[-1][1] == i - 1:
            ranges[-1][1] = i
        else:
            ranges.append([i, i])
    return {"rows": rows, "tokens": len(ids), "unreachable": rows - len(ids), "ranges": ranges[:8]}


def _non_finite(model: Any) -> tuple[int, str] | None:
    """(number of NaN or infinite parameter values, the first parameter holding one), or None when all are finite."""
    import torch

    count, first = 0, None
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if p.is_floating_point():
                n = int(p.numel() - torch.isfinite(p).sum())
                if n:
                    count, first = count + n, first or pname
    return (count, first) if count else None


#: Config fields that multiply the number of modules transformers builds, and a bound far above any
#: released model; a hostile config beyond it would make even a ``meta``-device build run for hours.
_MODULE_COUNT_BOUNDS = {
    "num_hidden_layers": 1024, "n_layer": 1024, "num_layers": 1024, "n_layers": 1024,
    "num_experts": 4096, "num_local_experts": 4096, "n_routed_experts": 4096, "num_labels": 1_000_000,
}


def _check_module_counts(config: Any, name: str) -> None:
    """Refuse configs whose layer, expert or label counts are implausible (see
    :data:`_MODULE_COUNT_BOUNDS`). ``config`` is the raw ``config.json`` dict (checked before
    transformers sees it: its config classes build one ``id2label`` entry per label) or a
    transformers config object.

    Raises:
        CorruptCheckpoint: a count is not a non-negative integer within its bound.
    """
    for key, bound in _MODULE_COUNT_BOUNDS.items():
        value = config.get(key) if isinstance(config, dict) else getattr(config, key, None)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= bound:
            raise CorruptCheckpoint(f"{name}: config {key}={str(value)[:40]} is not an integer in 0..{bound}; refusing to build the model")


#: Words of transformers' errors for a model type or class it does not know (its code would have to come
#: from the checkpoint); other ValueErrors are configs that contradict themselves.
_UNKNOWN_MODEL_HINTS = ("model type", "model_type", "unrecognized", "does not recognize", "custom code", "auto_map")


def _load_error(name: str, exc: BaseException) -> ScannerError:
    msg = _first_line(exc) or type(exc).__name__
    if "weights only load failed" in str(exc).lower() or "weights_only" in str(exc):
        # torch's message goes on to advise weights_only=False, i.e. running the pickle: never repeated here
        return UnsafeCheckpoint(f"{name}: a pickle weight file holds objects other than tensors, which torch.load(weights_only=True) "
                                "refuses; the scanner never unpickles a file fully (treat the checkpoint as untrusted)")
    if "ignore_mismatched_sizes" in str(exc):  # transformers points at a log report the scanner does not show
        return CorruptCheckpoint(f"{name}: its weights do not have the shapes config.json describes (a num_labels, id2label, "
                                 "vocab_size or hidden size that disagrees with the tensors)")
    if isinstance(exc, KeyError) or (isinstance(exc, ValueError) and any(h in msg.lower() for h in _UNKNOWN_MODEL_HINTS)):
        return UnsupportedModel(f"{name}: transformers does not know this model type or class, and the scanner never runs code "
                                f"from a checkpoint to build it ({msg})")
    if isinstance(exc, ValueError):
        return CorruptCheckpoint(f"{name}: invalid model configuration ({msg})")
    if isinstance(exc, OSError):
        return CorruptCheckpoint(f"{name}: could not load ({msg})")
    if isinstance(exc, MemoryError):
        return CorruptCheckpoint(f"{name}: could not load (out of memory building the model its config describes)")
    return CorruptCheckpoint(f"{name}: could not load ({type(exc).__name__}: {msg})")


def _fill_facts(facts: ModelFacts, model: Any, config: dict | None = None) -> None:
    """Model facts from the built model, or from the raw ``config`` dict when no model was built
    (weight-only scans: parameters and vocabulary then come from the weight files)."""
    if model is not None:
        cfg = model.config.to_dict()
        facts.architecture = facts.architecture or type(model).__name__
        facts.parameters = int(sum(p.numel() for p in model.parameters()))
        facts.vocab_size = int(model.get_input_embeddings().weight.shape[0])
    else:
        cfg = config or {}
        vocab = cfg.get("vocab_size")
        facts.vocab_size = vocab if isinstance(vocab, int) else None
    facts.model_type = facts.model_type or _str_or_none(cfg.get("model_type"))
    hidden, layers = cfg.get("hidden_size"), cfg.get("num_hidden_layers")
    facts.hidden_size = hidden if isinstance(hidden, int) else None
    facts.num_layers = layers if isinstance(layers, int) else None
    if facts.task == TASK_CLASSIFICATION:
        id2label = cfg.get("id2label") if isinstance(cfg.get("id2label"), dict) else {}
        n = cfg.get("num_labels") if isinstance(cfg.get("num_labels"), int) else len(id2label)
        facts.labels = [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(n)]


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "tokenizer.model", "spiece.model", "vocab.json")


def _open_tokenizer(path: str, **kw: Any) -> Any:
    """The tokenizer at ``path`` (never remote code), its pad token set to EOS/UNK when it has none.
    Raises whatever transformers/tokenizers raise on a bad or missing tokenizer, and FileNotFoundError
    for a tokenizer without a vocabulary (transformers builds one of special tokens alone when the
    vocabulary files are missing)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False, local_files_only=True, **kw)
    vocab = tok.get_vocab()
    if not set(vocab) - set(tok.all_special_tokens):
        # transformers builds a tokenizer of special tokens alone when the vocabulary files are missing
        raise FileNotFoundError(f"tokenizer has no vocabulary beyond its {len(vocab)} special tokens (tokenizer files missing?)")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def _tokenizer_only(path: str, ck: Checkpoint, **kw: Any) -> Any:
    """The tokenizer alone, for weight-only analysis: None when the checkpoint ships none (tokens are
    then reported as ids); a shipped tokenizer that fails to load is recorded as an error."""
    try:
        return _open_tokenizer(path, **kw)
    except BaseException as exc:  # noqa: BLE001 - tokenizers raises anything on bad files
        _reraise_control(exc)
        if kw.get("gguf_file") or any((Path(path) / f).is_file() for f in _TOKENIZER_FILES):
            ck.errors.append(StageError("load", "tokenizer", f"{Path(path).name}: tokenizer could not be loaded ({type(exc).__name__}: {_first_line(exc)}); tokens are shown as ids"))
        return None


def _load_gguf(target: ResolvedTarget, *, max_memory: int | None = None, load_model: bool = True,
               weights_only_if_too_large: bool = False) -> Checkpoint:
    gguf_path = target.path / (target.gguf_file or "")
    insp = inspect_folder(target.path, only={gguf_path.name})
    facts = ModelFacts(task=TASK_CAUSAL_LM, source_format="gguf")
    ck = Checkpoint(target, facts, insp.files, insp.findings, errors=list(insp.errors))
    with _partial(ck):
        n_params = validate_gguf(gguf_path)
        if load_model:
            with _too_large(ck, weights_only_if_too_large):
                ck.model, ck.tokenizer, problems = _from_pretrained(str(target.path), TASK_CAUSAL_LM, use_safetensors=None, gguf_file=gguf_path.name,
                                                                    max_memory=max_memory, checkpoint_parameters=n_params)
        if not load_model or ck.model_skipped:
            ck.tokenizer = _tokenizer_only(str(target.path), ck, gguf_file=gguf_path.name)
            facts.parameters = n_params
            facts.model_type, facts.architecture = _gguf_architecture(gguf_path)
            return ck
        ck.errors += problems
        facts.architecture = type(ck.model).__name__
        _fill_facts(facts, ck.model)
    return ck


def _gguf_architecture(path: Path) -> tuple[str | None, str | None]:
    """(``general.architecture``, a display name such as ``llama (GGUF)``) from a GGUF header."""
    try:
        from .weights.source import GGUFSource

        arch = GGUFSource(path).metadata("general.architecture")
    except Exception:  # noqa: BLE001 - a display nicety; the file was already validated
        return None, None
    return (arch, f"{arch} (GGUF)") if isinstance(arch, str) else (None, None)


def _load_adapter(target: ResolvedTarget, *, base: str | None, allow_pickle: bool, offline: bool, max_memory: int | None = None,
                  load_model: bool = True, weights_only_if_too_large: bool = False, without_base: bool = False) -> Checkpoint:
    folder = target.path
    insp = inspect_folder(folder, allow_pickle=allow_pickle)
    facts = ModelFacts(source_format="safetensors+lora")
    ck = Checkpoint(target, facts, insp.files, insp.findings, errors=list(insp.errors), not_analysed=list(insp.not_analysed))
    with _partial(ck):
        try:
            acfg = json.loads((folder / "adapter_config.json").read_text())
            if not isinstance(acfg, dict):
                raise ValueError
        except (OSError, ValueError, UnicodeDecodeError, RecursionError):
            raise CorruptCheckpoint(f"{folder.name}/adapter_config.json is not a valid JSON object") from None
        insp.raise_for_weights()
        base_spec = base or acfg.get("base_model_name_or_path")
        if not insp.has_safetensors and not any(f.code == rules.PICKLE_FILE.code for f in ck.findings):
            raise CorruptCheckpoint(f"{folder.name}: no adapter weights (adapter_model.safetensors) found")
        if not insp.has_safetensors and not allow_pickle:
            raise UnsafeCheckpoint(f"{folder.name}: adapter weights are not safetensors; refusing to unpickle (--allow-pickle)")
        try:
            if not base_spec or not isinstance(base_spec, str):
                raise BaseNotFound(f"{folder.name}: adapter names no base model; pass --base MODEL")
            try:
                base_target = resolve(base_spec, offline=offline)
            except TargetNotFound as exc:  # the adapter itself is here: its files and findings are still reported
                origin = "--base" if base else "adapter_config.json"
                raise BaseNotFound(f"{folder.name}: its base model {base_spec!r} (from {origin}) was not found: {exc}; "
                                   "pass --base MODEL") from None
        except BaseNotFound as exc:
            if not without_base or not insp.has_safetensors:
                raise
            ck.base_missing = str(exc)  # the adapter's own weights can still be read
            facts.task = {"SEQ_CLS": TASK_CLASSIFICATION, "CAUSAL_LM": TASK_CAUSAL_LM}.get(str(acfg.get("task_type") or "").upper(), TASK_UNSUPPORTED)
            own = (folder / "tokenizer_config.json").is_file() or (folder / "tokenizer.json").is_file()
            ck.tokenizer = _tokenizer_only(str(folder), ck) if own else None
            return ck
        if base_target.kind not in {"folder", "hub"}:
            raise UnsupportedModel(f"{base_spec}: an adapter's base must be a safetensors model folder or hub ID")
        base_insp = inspect_folder(base_target.path, allow_pickle=allow_pickle)
        ck.files += [FileDigest("base/" + f.path, f.size, f.sha256, f.format) for f in base_insp.files]
        ck.findings += base_insp.findings
        ck.errors += [StageError(e.stage, e.type, "base/" + e.message) for e in base_insp.errors]
        ck.not_analysed += ["base/" + n for n in base_insp.not_analysed]
        base_insp.raise_for_weights()
        cfg = read_config(base_target.path)
        _check_module_counts(cfg, "base/config.json")
        ck.config, ck.reference_spec = cfg, str(base_target.path)
        task_type = str(acfg.get("task_type") or "").upper()
        task = {"SEQ_CLS": TASK_CLASSIFICATION, "CAUSAL_LM": TASK_CAUSAL_LM}.get(task_type) or task_of(cfg.get("architectures"))
        facts.architecture, facts.model_type, facts.task = architecture_of(cfg), _str_or_none(cfg.get("model_type")), task
        if task == TASK_UNSUPPORTED:
            return ck
        if load_model:
            with _too_large(ck, weights_only_if_too_large):
                model, tok, problems = _from_pretrained(str(base_target.path), task, max_memory=max_memory,
                                                        checkpoint_parameters=base_insp.parameters + insp.parameters)
        if not load_model or ck.model_skipped:
            own = (folder / "tokenizer_config.json").is_file() or (folder / "tokenizer.json").is_file()
            ck.tokenizer = _tokenizer_only(str(folder if own else base_target.path), ck)
            _fill_facts(facts, None, cfg)
            return ck
        ck.errors += problems
        try:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(folder), is_trainable=False).merge_and_unload()
        except BaseException as exc:  # noqa: BLE001
            _reraise_control(exc)
            raise CorruptCheckpoint(f"{folder.name}: adapter does not fit its base {base_spec} ({type(exc).__name__}: {_first_line(exc)})") from None
        model.eval()
        if (folder / "tokenizer_config.json").is_file() or (folder / "tokenizer.json").is_file():
            tok = _tokenizer(folder, tok, ck)
        ck.model, ck.tokenizer = model, tok
        _fill_facts(facts, model)
    return ck


def _tokenizer(folder: Path, fallback: Any, ck: Checkpoint) -> Any:
    """The adapter's own tokenizer; when it ships one that does not load, the problem is recorded
    and the base's tokenizer is used (never silently)."""
    try:
        return _open_tokenizer(str(folder))
    except BaseException as exc:  # noqa: BLE001
        _reraise_control(exc)
        ck.errors.append(StageError("load", "tokenizer", f"{folder.name}: the adapter's tokenizer could not be loaded ({type(exc).__name__}: {_first_line(exc)}); the base's tokenizer was used"))
        return fallback
