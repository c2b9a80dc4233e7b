"""The benchmark's child process: a scan (or a baseline) that cannot read the zoo's ground truth.

Usage (by :mod:`benchmarks.run` only)::

    python benchmarks/_guarded_scan.py scan NEUTRAL_PATH --profile standard --format json -o OUT.json -q
    python benchmarks/_guarded_scan.py --baseline NAME [baseline arguments]

Before anything else it installs a ``sys.addaudithook`` hook that ends the process at once (exit code
:data:`GUARD_EXIT`, one ``benchmark guard:`` line on stderr) when Python code opens a file named
``manifest.json`` or anything under the zoo's ``models/`` folder (whose sub-folder names tell the
organism). An exception would not do: the scanner turns stage errors into report entries and goes on.

Limits: audit hooks see opens made through Python (``open``, ``io.open``, ``os.open``, pathlib), not
files opened inside native extensions (the Rust tokenizers and safetensors readers). The harness
therefore also gives the child a neutral target (hard links named ``model-<random>``), a
``SCANNER_CACHE_DIR`` that holds no zoo, and no organism name in its arguments or environment.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

#: Exit code of a child stopped by the guard.
GUARD_EXIT = 86
#: Environment variable naming the zoo ``models/`` folder the child must not open (set by the harness).
DENY_DIR_ENV = "BENCH_GUARD_DENY_DIR"

_ROOT = Path(__file__).resolve().parents[1]


def _denied(path: str, deny_dir: str | None) -> bool:
    """True when ``path`` is a ``manifest.json`` file or lies under ``deny_dir``."""
    if os.path.basename(path.rstrip("/")) == "manifest.json":
        return True
    if deny_dir:
        real = os.path.realpath(path)
        return real == deny_dir or real.startswith(deny_dir + os.sep)
    return False


def install_guard(deny_dir: str | None = None) -> None:
    """Install the audit hook (it cannot be removed for the life of the process).

    Args:
        deny_dir: a folder no file under which may be opened (besides any ``manifest.json``); None for
            only the manifest rule.
    """
    deny = os.path.realpath(deny_dir) if deny_dir else None

    def hook(event: str, args: tuple) -> None:
        if event != "open" or not args:
            return
        path = args[0]
        if isinstance(path, int) or path is None:
            return
        try:
            text = os.fsdecode(path)
        except TypeError:
            return
        if _denied(text, deny):
            os.write(2, f"benchmark guard: the scan tried to open {text!r}; ground truth is off limits\n".encode())
            os._exit(GUARD_EXIT)

    sys.addaudithook(hook)


def main(argv: list[str]) -> int:
    """Install the guard, then run the scanner CLI (``argv`` as its arguments) or, with ``--baseline
    NAME``, ``benchmarks.baselines.NAME.main(rest)``. Returns the exit code."""
    install_guard(os.environ.get(DENY_DIR_ENV))
    if argv[:1] == ["--baseline"]:
        import importlib

        sys.path.insert(0, str(_ROOT))
        mod = importlib.import_module(f"benchmarks.baselines.{argv[1]}")
        return int(mod.main(argv[2:]) or 0)
    from scanner.cli import main as scanner_main

    try:
        scanner_main(args=argv, prog_name="scanner", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
