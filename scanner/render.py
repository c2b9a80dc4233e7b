"""Terminal rendering of a :class:`scanner.report.Report` with rich (the CLI's one output layer)."""
from __future__ import annotations

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .formats_out._text import CLASSIFIER_COLUMNS, EVIDENCE_NOTE, LM_COLUMNS, level_phrase
from .report import Report, RiskLevel

_LEVEL_STYLE = {"none": "green", "low": "green", "medium": "yellow", "high": "red", "critical": "bold red", "incomplete": "magenta"}


def heatmap_text(tokens: list[str], values: list[float], plain: bool = False) -> Text:
    """Tokens coloured by attribution (red: towards the target, blue: against), values in [-1, 1].
    ``plain`` (no colour available): tokens carrying more than 15% of the largest attribution are
    written ``[token +0.83]`` instead, so the map still reads in a log file."""
    out = Text()
    for tok, v in zip(tokens, values):
        tok = tok.replace("\n", "\\n").replace("\t", "\\t")  # a chat template's newlines would break the line
        strength = min(1.0, abs(v))
        if plain:
            out.append(f"[{tok} {v:+.2f}]" if strength > 0.15 else tok, style="bold" if strength > 0.15 else "")
        else:
            level = int(55 + 200 * strength)
            colour = f"rgb({level},40,40)" if v >= 0 else f"rgb(40,60,{level})"
            out.append(tok, style=f"bold white on {colour}" if strength > 0.15 else "")
        out.append(" ")
    return out


def render(report: Report, console: Console) -> None:
    """Print the report: verdict panel, model facts, findings, candidates, evidence, errors."""
    verdict = report.verdict
    style = _LEVEL_STYLE.get(verdict, "white")
    head = Text.assemble(("verdict: ", "bold"), (verdict.upper(), style), f"   {level_phrase(report)}")
    lines = [head, Text(f"target: {report.target.spec} ({report.target.kind})" + (f" @ {report.target.revision}" if report.target.revision else ""))]
    m = report.model
    lines.append(Text(f"model: {m.architecture} · {m.task} · {m.parameters or 0:,} parameters · vocab {m.vocab_size} · labels {', '.join(m.labels) or '-'}"))
    for r in report.risk.rationale:
        lines.append(Text(f"· {r}"))
    if report.policy.fail_on:
        gate = "fails" if report.level.rank >= RiskLevel(report.policy.fail_on).rank else ("incomplete" if not report.complete else "passes")
        lines.append(Text(f"gate --fail-on {report.policy.fail_on}: {gate}", style="bold"))
    console.print(Panel(Group(*lines), title="scanner", border_style=style))

    if report.findings:
        t = Table(title="Findings", show_lines=False)
        for col in ("code", "severity", "message", "file"):
            t.add_column(col)
        for f in sorted(report.findings, key=lambda f: f.suppressed):
            sev = Text(f.severity, style=_LEVEL_STYLE.get(f.severity, ""))
            if f.original_severity:
                sev.append(f" (was {f.original_severity})", style="dim")
            if f.suppressed:
                t.add_row(Text(f.code, style="dim strike"), Text(f"{f.severity}, suppressed", style="dim"), Text(f.message, style="dim strike"), f.location or "-")
            else:
                t.add_row(f.code, sev, f.message, f.location or "-")
        console.print(t)

    if report.candidates:
        t = Table(title="Trigger candidates (verified on held-out probes)")
        for col in ("#", "trigger", "token ids", "target", "flip", "hard flip", "loss gap", "nbr/part flip", "attr. share", "ref. flip", "score"):
            t.add_column(col, justify="right" if col not in ("trigger", "target", "token ids") else "left")
        for i, c in enumerate(sorted(report.candidates, key=lambda c: -c.score)[:10], 1):
            t.add_row(
                str(i), c.text, ",".join(map(str, c.token_ids)), c.target_label_name, f"{c.flip_rate:.2f}",
                f"{c.flip_rate_hard:.2f}", "-" if c.loss_gap is None else f"{c.loss_gap:.1f}",
                f"{c.part_flip_rate:.2f} (words)" if c.part_flip_rate is not None
                else "-" if c.neighbour_flip_rate is None else f"{c.neighbour_flip_rate:.2f}",
                "-" if c.attribution_share is None else f"{c.attribution_share:.2f}",
                "-" if c.reference_flip_rate is None else f"{c.reference_flip_rate:.2f}",
                Text(f"{c.score:.2f}", style="red" if c.score >= report.risk.thresholds.get("high", 1) else ""),
            )
        t.caption, t.caption_justify = CLASSIFIER_COLUMNS.format(high=report.risk.thresholds.get("high", 1)), "left"
        console.print(t)
        best = max(report.candidates, key=lambda c: c.score)
        _heatmaps(console, best.text, best.heatmaps)

    if report.lm_candidates:
        t = Table(title="LM backdoor candidates (inverted targets, verified on held-out prompts)")
        for col in ("#", "target sequence", "inversion score", "without trigger", "ref. score", "trigger", "ASR", "partial", "ref. ASR", "attr. share", "score"):
            t.add_column(col, justify="left" if col in ("target sequence", "trigger") else "right")
        f2 = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        for i, c in enumerate(sorted(report.lm_candidates, key=lambda c: -c.score)[:6], 1):
            t.add_row(str(i), c.target_sequence[:60], f"{c.target_score:.2f}", f2(c.baseline_success_rate), f2(c.reference_target_score),
                      c.placed_trigger or "-", f2(c.attack_success_rate), f2(c.partial_trigger_rate), f2(c.reference_attack_success_rate),
                      f2(c.attribution_share), Text(f"{c.score:.2f}", style="red" if c.score >= report.risk.thresholds.get("high", 1) else ""))
        t.caption, t.caption_justify = LM_COLUMNS.format(high=report.risk.thresholds.get("high", 1)), "left"
        console.print(t)
        best = max(report.lm_candidates, key=lambda c: c.score)
        _heatmaps(console, best.trigger or best.target_sequence[:30], best.heatmaps)

    if report.evidence:
        t = Table(title="Evidence", caption=EVIDENCE_NOTE, caption_justify="left")
        for col in ("analysis", "status", "score", "summary"):
            t.add_column(col)
        for e in report.evidence:
            t.add_row(e.analysis, e.status, "-" if e.score is None else f"{e.score:.2f}", e.summary)
        console.print(t)

    if report.errors or report.not_analysed:
        t = Table(title="Not analysed / errors", style="magenta")
        t.add_column("stage")
        t.add_column("what")
        for e in report.errors:
            t.add_row(e.stage, f"{e.type}: {e.message}")
        for n in report.not_analysed:
            t.add_row("-", n)
        console.print(t)
    timing = ", ".join(f"{k} {v:.1f}s" for k, v in report.timings.items())
    console.print(Text(f"timings: {timing}", style="dim"))


def _heatmaps(console: Console, name: str, heatmaps: list[dict]) -> None:
    """Up to two attribution heat maps of the best candidate, with a line saying how to read them."""
    if not heatmaps:
        return
    plain = console.no_color or console.color_system is None
    how = ("[token +x.xx]: the token's attribution, relative to the largest" if plain
           else "red: pushes towards the target, blue: against, brighter is stronger")
    console.print(Text(f"attribution heat map of '{name}' on triggered probes ({how}):", style="dim"))
    for hm in heatmaps[:2]:
        console.print(Text.assemble("  ", heatmap_text(hm["tokens"], hm["attributions"], plain)))
