"""Markdown summary of a report, sized for a pull-request comment (GitHub-flavoured Markdown).

Model-derived strings (trigger text, token names) are escaped: a checkpoint must not be able to
inject links, HTML or table breaks into the comment.
"""
from __future__ import annotations

import re

from .. import rules
from ..report import Report
from ._text import gate_state, level_phrase, model_line, pct

_ICON = {"none": "🟢", "low": "🟢", "medium": "🟡", "high": "🔴", "critical": "🔴", "incomplete": "🟣"}
_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


def escape(text: str) -> str:
    """Escape Markdown/HTML syntax in ``text`` and fold newlines, for table cells and prose."""
    return _SPECIAL.sub(r"\\\1", str(text)).replace("\r", " ").replace("\n", " ")


def code(text: str) -> str:
    """``text`` as an inline code span that survives backticks and table pipes."""
    t = str(text).replace("\n", " ").replace("|", "\\|")
    fence = "``" if "`" in t else "`"
    return f"{fence} {t} {fence}" if fence == "``" else f"`{t}`"


def render(report: Report, max_candidates: int = 5) -> str:
    """The report as a Markdown summary for a pull-request comment."""
    v = report.verdict
    out = [f"## {_ICON.get(v, '')} scanner: {v.upper()} — {code(report.target.spec)}", ""]
    facts = [f"**Verdict:** {v.upper()}", escape(level_phrase(report)),
             "scan complete" if report.complete else "**scan incomplete**"]
    gate = gate_state(report)
    if gate:
        facts.append(f"gate `--fail-on {report.policy.fail_on}`: **{gate}**")
    out.append(" · ".join(facts))
    out.append("")
    rev = f" @ {code(report.target.revision)}" if report.target.revision else ""
    out.append(f"Target: {code(report.target.spec)} ({report.target.kind}){rev} — {escape(model_line(report))}")
    out.append("")

    if report.findings:
        out += ["### Findings", "", "| rule | severity | finding | file |", "| --- | --- | --- | --- |"]
        for f in sorted(report.findings, key=lambda f: (f.suppressed, f.code)):
            rule = rules.RULES.get(f.code)
            name = f"{f.code} {rule.name}" if rule else f.code
            sev = f.severity + (f" (was {f.original_severity})" if f.original_severity else "")
            msg = escape(f.message)
            if f.suppressed:
                name, sev, msg = f"~~{name}~~", f"{sev}, suppressed", f"~~{msg}~~"
            out.append(f"| {name} | {sev} | {msg} | {code(f.location) if f.location else '-'} |")
        out.append("")
    else:
        out += ["No findings.", ""]

    if report.candidates:
        ranked = sorted(report.candidates, key=lambda c: -c.score)
        out += ["### Trigger candidates", "",
                "| # | trigger | target label | flip rate | hard-probe flip rate | attribution share | reference flip rate | score |",
                "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for i, c in enumerate(ranked[:max_candidates], 1):
            out.append(f"| {i} | {code(c.text)} | {escape(c.target_label_name)} | {pct(c.flip_rate)} | {pct(c.flip_rate_hard)} | "
                       f"{pct(c.attribution_share)} | {pct(c.reference_flip_rate)} | {c.score:.2f} |")
        if len(ranked) > max_candidates:
            out.append(f"\n_{len(ranked) - max_candidates} more candidate(s) in the full report._")
        out += ["", f"_flip rate: share of held-out probes that switch to the target label with the trigger inserted; "
                    f"hard-probe: the same on the probes the model was most sure of; score: calibrated, high at "
                    f"{report.risk.thresholds.get('high', 1):.2f}. A clean model's strongest label words flip most probes "
                    f"too and score low (see the rationale below)._", ""]

    if report.lm_candidates:
        ranked_lm = sorted(report.lm_candidates, key=lambda c: -c.score)
        out += ["### LM backdoor candidates", "",
                "| # | target sequence | inversion score | without trigger | trigger | attack success | score |",
                "| ---: | --- | ---: | ---: | --- | ---: | ---: |"]
        for i, c in enumerate(ranked_lm[:max_candidates], 1):
            out.append(f"| {i} | {code(c.target_sequence[:80])} | {c.target_score:.2f} | {pct(c.baseline_success_rate)} | "
                       f"{code(c.placed_trigger) if c.trigger else '-'} | {pct(c.attack_success_rate)} | {c.score:.2f} |")
        out += ["", "_inversion score: mean probability of the target's tokens once its first is forced (BAIT); without "
                    "trigger: share of held-out prompts whose reply starts with the target anyway; attack success: the "
                    f"same with the trigger (… is the user's message); score: calibrated, high at "
                    f"{report.risk.thresholds.get('high', 1):.2f}._", ""]

    if report.errors or report.not_analysed:
        out += ["### Not analysed / errors", ""]
        out += [f"- **{escape(e.stage)}**: {escape(e.type)}: {escape(e.message)}" for e in report.errors]
        out += [f"- {escape(n)}" for n in report.not_analysed]
        out.append("")

    details = []
    if report.risk.rationale:
        details += ["**Rationale**", ""] + [f"- {escape(r)}" for r in report.risk.rationale] + [""]
    if report.evidence:
        details += ["**Evidence**", "", "| analysis | status | score | summary |", "| --- | --- | ---: | --- |"]
        details += [f"| {escape(e.analysis)} | {e.status} | {'-' if e.score is None else f'{e.score:.2f}'} | {escape(e.summary)} |" for e in report.evidence]
        details.append("")
    if report.target.files:
        details += ["**Files read**", "", "| file | format | size | sha256 |", "| --- | --- | ---: | --- |"]
        details += [f"| {code(f.path)} | {f.format} | {f.size:,} | `{f.sha256}` |" for f in report.target.files]
        details.append("")
    if details:
        out += ["<details><summary>Rationale, evidence and files</summary>", ""] + details + ["</details>", ""]
    out.append(f"<sub>scanner {escape(report.scanner_version)} · report schema {report.schema_version} · {escape(report.created)}</sub>")
    return "\n".join(out) + "\n"
