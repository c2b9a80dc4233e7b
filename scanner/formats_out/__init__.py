"""Output formats of a report, each in its own module, all rendered from the one
:class:`scanner.report.Report`: ``human`` (rich tables as text), ``json`` (the versioned, schema-valid
report), ``sarif`` (SARIF 2.1.0 for code scanning), ``markdown`` (pull-request comment), ``html``
(one self-contained page).

``scanner/formats.py`` is unrelated: it sniffs checkpoint files.
"""
from __future__ import annotations

from pathlib import Path

from ..report import Report

#: Formats that can be written (``auto`` resolves to one of them).
FORMATS = ("human", "json", "sarif", "markdown", "html")
CHOICES = ("auto",) + FORMATS
#: ``--output`` file suffix -> format, used by ``--format auto``.
SUFFIXES = {".json": "json", ".sarif": "sarif", ".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html", ".txt": "human"}


def resolve_format(fmt: str, output: str | None, stdout_is_tty: bool) -> str:
    """The concrete format for ``--format fmt``: ``auto`` is the ``--output`` file's suffix
    (``.sarif``, ``.md``, ``.html``, ``.txt``, else json) when writing a file, else human on a
    terminal and json otherwise."""
    if fmt != "auto":
        return fmt
    if output:
        name = Path(output).name.lower()
        if name.endswith(".sarif.json"):
            return "sarif"
        return SUFFIXES.get(Path(name).suffix, "json")
    return "human" if stdout_is_tty else "json"


def render(report: Report, fmt: str, *, root: Path | None = None) -> str:
    """The report as text in format ``fmt`` (one of :data:`FORMATS`). ``root`` is the directory
    SARIF paths are made relative to.

    Raises:
        ValueError: an unknown format.
    """
    if fmt == "json":
        from .json_report import render as r

        return r(report) + "\n"
    if fmt == "sarif":
        from .sarif import render as r

        return r(report, root) + "\n"
    from ._text import printable_report

    if fmt == "markdown":  # the formats people read: no terminal controls from the checkpoint
        from .markdown import render as r

        return r(printable_report(report))
    if fmt == "html":
        from .html import render as r

        return r(printable_report(report))
    if fmt == "human":
        from .human import render as r

        return r(printable_report(report))
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
