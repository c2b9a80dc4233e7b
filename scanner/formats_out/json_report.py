"""The JSON report: :meth:`scanner.report.Report.to_json`, valid against the published schema
``scanner/schema/report-<schema_version>.schema.json``."""
from __future__ import annotations

from ..report import Report


def render(report: Report) -> str:
    """The report as indented JSON text (schema version ``report.schema_version``)."""
    return report.to_json()
