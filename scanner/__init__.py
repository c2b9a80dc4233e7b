"""scanner: backdoor (trojan) trigger detection for transformer checkpoints.

Python API::

    from scanner import scan
    report = scan("org/model", reference="org/base", profile="standard")
    print(report.verdict, report.risk.score)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .report import Report


def scan(target: str, **options: Any) -> "Report":
    """Scan ``target`` and return its :class:`scanner.report.Report`.

    ``options`` are the fields of :class:`scanner.pipeline.ScanOptions` (``reference``, ``probes``,
    ``profile``, ``time_budget`` in seconds, ``offline``, ``revision``, ``base``, ``only``, ``seed``...).

    Raises:
        scanner.errors.ScannerError: the target cannot be resolved or loaded.
    """
    from .pipeline import scan as _scan

    return _scan(target, **options)


__all__ = ["scan", "__version__"]
