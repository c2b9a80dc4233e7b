"""Safe loading of a resolved target into a model, a tokenizer and static findings.

Never executes code from a checkpoint: safetensors and GGUF only by default; pickle files (``*.bin``,
``*.pt``, ...) are reported and refused unless ``allow_pickle`` is set, and even then are read only
through ``torch.load(weights_only=True)`` (transformers' own path); ``trust_remote_code`` is always
False, and shipped ``*.py`` files or an ``auto_map`` in the config are reported as findings.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CorruptCheckpoint, TargetNotFound, UnsafeCheckpoint, UnsupportedModel
from .formats import sha256_file, sniff, validate_gguf, validate_safetensors
from . import rules
from .report import FileDigest, Finding, ModelFacts
from .target import ResolvedTarget, resolve

PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}
TASK_CLASSIFICATION = "sequence-classification"
TASK_CAUSAL_LM = "causal-lm"
TASK_UNSUPPORTED = "unsupported"


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    ``model`` is a ``torch.nn.Module`` in eval mode on CPU (float32) or None when the task is not
    supported; ``reference_spec`` names the model this one derives from when the checkpoint says so
    (an adapter's base), for use as the reference model.
    """

    target: ResolvedTarget
    facts: ModelFacts
    files: list[FileDigest] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    model: Any = None
    tokenizer: Any = None
    config: dict = field(default_factory=dict)
    reference_spec: str | None = None


def inspect_folder(folder: Path, *, allow_pickle: bool = False, only: set[str] | None = None) -> tuple[list[FileDigest], list[Finding], bool]:
    """Hash and sniff every file of a checkpoint folder and collect static findings.

    Returns ``(files, findings, has_safetensors_weights)``.

    Raises:
        CorruptCheckpoint: a safetensors file fails strict validation, or a shard index names a
            missing shard or tensors that its shard lacks.
        UnsafeCheckpoint: a ``.safetensors``-named file holds a pickle or zip archive.
    """
    files: list[FileDigest] = []
    findings: list[Finding] = []
    has_st = False
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and ".cache" not in p.relative_to(folder).parts)
    if only is not None:
        paths = [p for p in paths if p.name in only]
    for p in paths:
        rel = str(p.relative_to(folder))
        fmt = sniff(p)
        files.append(FileDigest(rel, p.stat().st_size, sha256_file(p), fmt))
        if p.suffix == ".safetensors":
            if fmt in {"pickle", "zip"}:
                findings.append(Finding(rules.PICKLE_DISGUISED.code, rules.PICKLE_DISGUISED.severity.value, f"{rel} is named .safetensors but holds a {fmt} archive", rel))
                raise UnsafeCheckpoint(f"{rel}: named .safetensors but its bytes are a {fmt} archive; refusing to load")
            validate_safetensors(p)
            has_st = True
        elif p.suffix in PICKLE_SUFFIXES or fmt in {"pickle", "zip"}:
            findings.append(Finding(rules.PICKLE_FILE.code, rules.PICKLE_FILE.severity.value, f"pickle-based file {rel} present; not unpickled", rel))
        elif p.suffix == ".py":
            findings.append(Finding(rules.PYTHON_CODE.code, rules.PYTHON_CODE.severity.value, f"checkpoint ships Python code {rel}; never executed", rel))
    for index in folder.glob("*.safetensors.index.json"):
        _check_index(folder, index)
    return files, findings, has_st


def _check_index(folder: Path, index: Path) -> None:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (ValueError, KeyError, TypeError):
        raise CorruptCheckpoint(f"{index.name}: shard index is not valid JSON with a weight_map") from None
    by_shard: dict[str, set[str]] = {}
    for tensor, shard in weight_map.items():
        by_shard.setdefault(shard, set()).add(tensor)
    for shard, names in by_shard.items():
        sp = folder / shard
        if not sp.is_file():
            raise CorruptCheckpoint(f"{index.name}: names shard {shard}, which is missing")
        missing = names - set(validate_safetensors(sp))
        if missing:
            raise CorruptCheckpoint(f"{shard}: lacks {len(missing)} tensor(s) its index names, e.g. {sorted(missing)[0]}")


def read_config(folder: Path) -> dict:
    """Parse ``config.json``. Raises CorruptCheckpoint when it is not a JSON object."""
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        raise CorruptCheckpoint(f"{folder.name}/config.json is not valid JSON") from None
    if not isinstance(cfg, dict):
        raise CorruptCheckpoint(f"{folder.name}/config.json is not a JSON object")
    return cfg


def task_of(architectures: list[str] | None) -> str:
    """Map a config's ``architectures`` to the task the scanner analyses."""
    arch = (architectures or [""])[0] or ""
    if arch.endswith("ForSequenceClassification"):
        return TASK_CLASSIFICATION
    if arch.endswith("ForCausalLM") or arch.endswith("LMHeadModel"):
        return TASK_CAUSAL_LM
    return TASK_UNSUPPORTED


def load_checkpoint(target: ResolvedTarget, *, base: str | None = None, allow_pickle: bool = False, offline: bool = False,
                    load_model: bool = True) -> Checkpoint:
    """Load ``target`` safely (see module docstring).

    Args:
        target: from :func:`scanner.target.resolve`.
        base: base model spec for an adapter (overrides ``adapter_config.json``).
        allow_pickle: permit ``*.bin`` weights, read with ``weights_only=True``.
        offline: resolve an adapter's base from the local hub cache only.
        load_model: build the model; False loads the tokenizer only (weight-only scans read tensors
            one at a time through :mod:`scanner.weights.source` instead).

    Raises:
        CorruptCheckpoint, UnsafeCheckpoint, UnsupportedModel, TargetNotFound.
    """
    _quiet_transformers()
    if target.kind == "gguf":
        return _load_gguf(target, load_model)
    if target.kind == "adapter":
        return _load_adapter(target, base=base, allow_pickle=allow_pickle, offline=offline, load_model=load_model)
    folder = target.path
    files, findings, has_st = inspect_folder(folder, allow_pickle=allow_pickle)
    cfg = read_config(folder)
    if "auto_map" in cfg:
        findings.append(Finding(rules.REMOTE_CODE.code, rules.REMOTE_CODE.severity.value, "config.json has auto_map (custom remote code); trust_remote_code stays off", "config.json"))
    facts = ModelFacts(
        architecture=(cfg.get("architectures") or [None])[0], model_type=cfg.get("model_type"),
        task=task_of(cfg.get("architectures")), source_format="safetensors" if has_st else None,
    )
    ck = Checkpoint(target, facts, files, findings, config=cfg)
    if not has_st:
        if not any(f.code == rules.PICKLE_FILE.code for f in findings):
            raise CorruptCheckpoint(f"{folder}: no weight files (*.safetensors) found")
        if not allow_pickle:
            raise UnsafeCheckpoint(
                f"{folder.name}: weights are only in pickle files; refusing to unpickle (pass --allow-pickle to read them with weights_only=True)"
            )
        facts.source_format = "pickle(weights_only)"
    if facts.task == TASK_UNSUPPORTED or not load_model:
        ck.tokenizer = _load_tokenizer(str(folder), required=False)
        _fill_facts(facts, None, cfg)
        return ck
    ck.model, ck.tokenizer = _from_pretrained(str(folder), facts.task, use_safetensors=has_st)
    _fill_facts(facts, ck.model, ck.config)
    return ck


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _from_pretrained(path: str, task: str, *, use_safetensors: bool | None = True, tokenizer_only: bool = False, **kw: Any) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    cls = AutoModelForSequenceClassification if task == TASK_CLASSIFICATION else AutoModelForCausalLM
    model = None
    try:
        if not tokenizer_only:
            model = cls.from_pretrained(
                path, trust_remote_code=False, local_files_only=True, use_safetensors=use_safetensors,
                dtype=torch.float32, **kw,
            )
        tok = _load_tokenizer(path, required=not tokenizer_only, **kw)
    except (ValueError, KeyError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsupportedModel(f"{Path(path).name}: transformers cannot load this model without remote code ({msg[:200]})") from None
    except OSError as exc:
        raise CorruptCheckpoint(f"{Path(path).name}: could not load ({str(exc).splitlines()[0][:200]})") from None
    if model is not None:
        model.eval()
    return model, tok


def _load_tokenizer(path: str, required: bool = True, **kw: Any) -> Any:
    """The tokenizer at ``path`` (pad token set to EOS/UNK when missing). When not ``required``
    (weight-only analysis), a tokenizer that fails to load gives None: tokens are then shown as ids."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False, local_files_only=True, **kw)
    except Exception:
        if required:
            raise
        return None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def _fill_facts(facts: ModelFacts, model: Any, config: dict | None = None) -> None:
    """Model facts from the built model, or from ``config`` when the model was not built."""
    cfg = model.config.to_dict() if model is not None else (config or {})
    facts.architecture = facts.architecture or (type(model).__name__ if model is not None else None)
    facts.model_type = facts.model_type or cfg.get("model_type")
    if model is not None:
        facts.parameters = int(sum(p.numel() for p in model.parameters()))
        facts.vocab_size = int(model.get_input_embeddings().weight.shape[0])
    else:
        facts.vocab_size = cfg.get("vocab_size")
    facts.hidden_size = cfg.get("hidden_size")
    facts.num_layers = cfg.get("num_hidden_layers")
    if facts.task == TASK_CLASSIFICATION:
        id2label = cfg.get("id2label") or {}
        n = int(cfg.get("num_labels") or len(id2label) or 0)
        facts.labels = [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(n)]


def _load_gguf(target: ResolvedTarget, load_model: bool = True) -> Checkpoint:
    gguf_path = target.path / (target.gguf_file or "")
    validate_gguf(gguf_path)
    files, findings, _ = inspect_folder(target.path, only={gguf_path.name})
    facts = ModelFacts(task=TASK_CAUSAL_LM, source_format="gguf")
    ck = Checkpoint(target, facts, files, findings)
    try:
        ck.model, ck.tokenizer = _from_pretrained(str(target.path), TASK_CAUSAL_LM, use_safetensors=None,
                                                  tokenizer_only=not load_model, gguf_file=gguf_path.name)
    except (UnsupportedModel, CorruptCheckpoint):
        raise
    except Exception as exc:
        raise UnsupportedModel(f"{gguf_path.name}: cannot load this GGUF model ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    if ck.model is not None:
        facts.architecture = type(ck.model).__name__
        ck.config = ck.model.config.to_dict()
    _fill_facts(facts, ck.model, ck.config)
    return ck


def _load_adapter(target: ResolvedTarget, *, base: str | None, allow_pickle: bool, offline: bool, load_model: bool = True) -> Checkpoint:
    folder = target.path
    files, findings, has_st = inspect_folder(folder, allow_pickle=allow_pickle)
    try:
        acfg = json.loads((folder / "adapter_config.json").read_text())
        assert isinstance(acfg, dict)
    except (OSError, ValueError, AssertionError):
        raise CorruptCheckpoint(f"{folder.name}/adapter_config.json is not a valid JSON object") from None
    base_spec = base or acfg.get("base_model_name_or_path")
    if not base_spec:
        raise TargetNotFound(f"{folder.name}: adapter names no base model; pass --base MODEL")
    if not has_st and not allow_pickle:
        raise UnsafeCheckpoint(f"{folder.name}: adapter weights are not safetensors; refusing to unpickle (--allow-pickle)")
    base_target = resolve(base_spec, offline=offline)
    if base_target.kind not in {"folder", "hub"}:
        raise UnsupportedModel(f"{base_spec}: an adapter's base must be a safetensors model folder or hub ID")
    base_files, base_findings, _ = inspect_folder(base_target.path, allow_pickle=allow_pickle)
    cfg = read_config(base_target.path)
    task_type = str(acfg.get("task_type") or "").upper()
    task = {"SEQ_CLS": TASK_CLASSIFICATION, "CAUSAL_LM": TASK_CAUSAL_LM}.get(task_type) or task_of(cfg.get("architectures"))
    facts = ModelFacts(architecture=(cfg.get("architectures") or [None])[0], model_type=cfg.get("model_type"), task=task, source_format="safetensors+lora")
    ck = Checkpoint(target, facts, files + [FileDigest("base/" + f.path, f.size, f.sha256, f.format) for f in base_files],
                    findings + base_findings, config=cfg, reference_spec=str(base_target.path))
    if task == TASK_UNSUPPORTED:
        return ck
    model, tok = _from_pretrained(str(base_target.path), task, tokenizer_only=not load_model)
    if model is None:
        ck.tokenizer = _tokenizer(folder, tok) if (folder / "tokenizer_config.json").is_file() else tok
        _fill_facts(facts, None, cfg)
        return ck
    try:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(folder), is_trainable=False).merge_and_unload()
    except Exception as exc:
        raise CorruptCheckpoint(f"{folder.name}: adapter does not fit its base {base_spec} ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    model.eval()
    if (folder / "tokenizer_config.json").is_file():
        tok = _tokenizer(folder, tok)
    ck.model, ck.tokenizer = model, tok
    _fill_facts(facts, model, cfg)
    return ck


def _tokenizer(folder: Path, fallback: Any) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False, local_files_only=True)
    except Exception:
        return fallback
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok
