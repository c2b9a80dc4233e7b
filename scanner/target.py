"""Resolve a scan target spec into local files.

Accepted specs: a Hugging Face model ID ``org/name`` with optional ``@revision`` (resolved through
huggingface_hub's cache and download path; only safetensors, GGUF, config and tokenizer files are ever
fetched), a local folder (single or sharded safetensors), a single ``.gguf`` file, or a PEFT LoRA
adapter folder (``adapter_config.json``).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .budget import BudgetExceeded
from .errors import TargetNotFound
from .formats import sniff

#: Files the scanner may download from a hub: weights it can load without unpickling, configs, tokenizers.
HUB_ALLOW_PATTERNS = [
    "*.safetensors", "*.safetensors.index.json", "*.json", "*.gguf", "tokenizer*", "*.model",
    "vocab.txt", "merges.txt", "*.jinja", "*.py",  # *.py only so that shipped remote code is reported
]
_HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<rev>[\w./-]+))?$")


@dataclass
class ResolvedTarget:
    """A target resolved to local files.

    ``kind`` is ``hub``, ``folder``, ``gguf`` or ``adapter``; ``path`` the local folder or file;
    ``revision`` the commit sha for hub targets; ``gguf_file`` the GGUF file name inside ``path``'s
    folder when the target is (or contains) one.
    """

    spec: str
    kind: str
    path: Path
    revision: str | None = None
    gguf_file: str | None = None


def offline_mode(flag: bool = False) -> bool:
    """True if ``--offline`` was given or ``HF_HUB_OFFLINE`` is set to a true value."""
    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return flag or env in {"1", "true", "yes", "on"}


def hub_cache_dir() -> str | None:
    """The hub cache folder from ``HF_HUB_CACHE`` or ``HF_HOME``, read at call time (None: library default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def resolve(spec: str, *, revision: str | None = None, offline: bool = False) -> ResolvedTarget:
    """Resolve ``spec`` to local files.

    Args:
        spec: local path, ``.gguf`` file, or hub ID ``org/name[@revision]``.
        revision: hub revision (branch, tag or commit), the same as ``@revision`` in ``spec``.
        offline: use only the local hub cache (also on when ``HF_HUB_OFFLINE=1``).

    Raises:
        TargetNotFound: ``spec`` is empty, the path does not exist or holds no checkpoint, a revision is
            given for a local path or differs from the one in ``spec``, or the hub ID/revision cannot be resolved (not cached in offline
            mode, unknown repository, network failure).
    """
    if not spec.strip():
        raise TargetNotFound("empty target; give a hub model ID org/name[@revision], a model folder or a .gguf file")
    path = Path(spec).expanduser()
    if path.exists():
        if revision:  # a local path has no revisions: scanning it anyway would claim a revision that was never read
            raise TargetNotFound(f"{spec}: is a local path; --revision {revision} applies only to hub model IDs")
        return _resolve_local(spec, path)
    m = _HUB_ID.match(spec)
    if m and not spec.startswith((".", "/", "~")):
        if revision and m.group("rev") and revision != m.group("rev"):  # which one was meant cannot be guessed
            raise TargetNotFound(f"{spec}: names revision {m.group('rev')!r} but --revision {revision!r} was given; give one of them")
        return _resolve_hub(spec, m.group("repo"), revision or m.group("rev"), offline_mode(offline))
    raise TargetNotFound(f"{spec}: no such file or folder, and not a hub model ID of the form org/name[@revision]")


def _resolve_local(spec: str, path: Path) -> ResolvedTarget:
    if path.is_file():
        if sniff(path) == "gguf" or path.suffix == ".gguf":
            return ResolvedTarget(spec, "gguf", path.parent.resolve(), gguf_file=path.name)
        raise TargetNotFound(f"{spec}: a single file must be a .gguf checkpoint; pass the model folder instead")
    if (path / "adapter_config.json").is_file():
        return ResolvedTarget(spec, "adapter", path.resolve())
    if (path / "config.json").is_file():
        return ResolvedTarget(spec, "folder", path.resolve())
    ggufs = sorted(p.name for p in path.glob("*.gguf"))
    if len(ggufs) == 1:
        return ResolvedTarget(spec, "gguf", path.resolve(), gguf_file=ggufs[0])
    if len(ggufs) > 1:
        raise TargetNotFound(f"{spec}: folder holds several .gguf files ({', '.join(ggufs)}); pass one file")
    raise TargetNotFound(f"{spec}: folder has no config.json, adapter_config.json or .gguf file")


def _resolve_hub(spec: str, repo_id: str, revision: str | None, offline: bool) -> ResolvedTarget:
    from huggingface_hub import snapshot_download
    from huggingface_hub import errors as hf_errors

    where = f"{repo_id}@{revision}" if revision else repo_id
    try:
        folder = Path(
            snapshot_download(
                repo_id,
                revision=revision,
                cache_dir=hub_cache_dir(),
                local_files_only=offline,
                allow_patterns=HUB_ALLOW_PATTERNS,
            )
        )
    except (hf_errors.LocalEntryNotFoundError, hf_errors.OfflineModeIsEnabled):
        raise TargetNotFound(
            f"{where}: not in the local Hugging Face cache and offline mode is on (or the hub is unreachable)"
        ) from None
    except hf_errors.RevisionNotFoundError:
        raise TargetNotFound(f"{where}: revision not found on the hub") from None
    except hf_errors.RepositoryNotFoundError:
        raise TargetNotFound(f"{repo_id}: repository not found on the hub (or gated/private without a token)") from None
    except hf_errors.HFValidationError as exc:
        raise TargetNotFound(f"{spec}: invalid hub model ID ({str(exc).splitlines()[0]})") from None
    except BudgetExceeded:  # the watchdog stopped a download at the time budget: not a missing target
        raise
    except Exception as exc:  # network errors come in many types
        raise TargetNotFound(f"{where}: could not resolve on the hub ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    local = _resolve_local(spec, folder)
    # A snapshot folder is named after the commit sha it holds.
    sha = folder.name if re.fullmatch(r"[0-9a-f]{40}", folder.name) else None
    return ResolvedTarget(spec, "hub" if local.kind == "folder" else local.kind, local.path, revision=sha, gguf_file=local.gguf_file)
