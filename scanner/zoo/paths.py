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
