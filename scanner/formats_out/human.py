"""The terminal rendering (:mod:`scanner.render`) as plain text, for ``--format human --output FILE``."""
from __future__ import annotations

import io

from rich.console import Console

from ..render import render as render_console
from ..report import Report


def render(report: Report, width: int = 120) -> str:
    """The rich tables of :func:`scanner.render.render` as plain text (no colour codes)."""
    buf = io.StringIO()
    render_console(report, Console(file=buf, width=width, no_color=True, force_terminal=False, highlight=False, color_system=None))
    return buf.getvalue()
