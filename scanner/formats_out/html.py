"""One self-contained HTML page per report: inline CSS and SVG, no script, no network.

A Content-Security-Policy of ``default-src 'none'`` (inline styles and ``data:`` images only) makes
the "no network, no script" promise checkable by the browser. Every string from the report is escaped
(a checkpoint's tokens are untrusted input).
"""
from __future__ import annotations

from html import escape

from .. import rules
from ..report import Evidence, Report, TriggerCandidate
from ._text import CLASSIFIER_COLUMNS, EVIDENCE_NOTE, LM_COLUMNS, gate_state, level_phrase, model_line, pct

_COLOUR = {"none": "#2e7d32", "low": "#558b2f", "medium": "#f9a825", "high": "#c62828", "critical": "#8e0000", "incomplete": "#6a1b9a"}

_CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1f2328; background: #f6f8fa; }
main { max-width: 1100px; margin: 0 auto; padding: 24px; }
section { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 16px 20px; margin: 16px 0; }
h1 { font-size: 20px; margin: 0 0 8px; } h2 { font-size: 16px; margin: 0 0 12px; }
.verdict { display: inline-block; color: #fff; font-weight: 700; padding: 4px 12px; border-radius: 6px; letter-spacing: .04em; }
.muted { color: #57606a; } code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eaeef2; vertical-align: top; }
th { font-weight: 600; background: #f6f8fa; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.suppressed td { color: #8c959f; text-decoration: line-through; }
.sev { font-weight: 600; } .hm { line-height: 2; margin: 6px 0; }
.hm span { padding: 1px 3px; margin: 0 1px; border-radius: 3px; font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12.5px; }
.legend span { display: inline-block; width: 14px; height: 10px; margin: 0 4px -1px 8px; border-radius: 2px; }
svg text { font: 12px system-ui, sans-serif; fill: #1f2328; }
"""


def _sev(level: str) -> str:
    return f'<span class="sev" style="color:{_COLOUR.get(level, "#1f2328")}">{escape(level)}</span>'


def _table(headers: list[str], rows: list[list[str]], num: set[int] = frozenset(), row_class: list[str] | None = None) -> str:
    head = "".join(f'<th{" class=num" if i in num else ""}>{escape(h)}</th>' for i, h in enumerate(headers))
    body = []
    for r, cells in enumerate(rows):
        cls = f' class="{row_class[r]}"' if row_class and row_class[r] else ""
        body.append(f"<tr{cls}>" + "".join(f'<td{" class=num" if i in num else ""}>{c}</td>' for i, c in enumerate(cells)) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def bar_chart(items: list[tuple[str, float, str]], *, title: str, max_value: float = 1.0, fmt: str = "{:.0%}", width: int = 640) -> str:
    """A horizontal SVG bar chart: ``items`` are ``(label, value, colour)``; values scaled to ``max_value``."""
    label_w, bar_w, row_h = 230, width - 230 - 60, 22
    h = row_h * len(items) + 8
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{h}" viewBox="0 0 {width} {h}">',
             f"<title>{escape(title)}</title>"]
    for i, (label, value, colour) in enumerate(items):
        y = 4 + i * row_h
        w = 0 if max_value <= 0 else max(0.0, min(1.0, value / max_value)) * bar_w
        short = label if len(label) <= 34 else label[:33] + "…"
        parts.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{escape(short)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{bar_w}" height="{row_h - 8}" fill="#eaeef2" rx="3"/>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" fill="{colour}" rx="3"><title>{escape(label)}: {escape(fmt.format(value))}</title></rect>')
        parts.append(f'<text x="{label_w + bar_w + 6}" y="{y + 15}">{escape(fmt.format(value))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def heatmap_html(tokens: list[str], values: list[float]) -> str:
    """Tokens as spans coloured by attribution in [-1, 1]: red towards the target label, blue against."""
    spans = []
    for tok, v in zip(tokens, values):
        a = min(1.0, abs(float(v)))
        rgb = "200,30,30" if v >= 0 else "30,80,200"
        fg = "#fff" if a > 0.55 else "#1f2328"
        spans.append(f'<span style="background:rgba({rgb},{a:.2f});color:{fg}" title="{escape(tok)}: {float(v):+.2f}">{escape(tok)}</span>')
    return '<div class="hm">' + "".join(spans) + "</div>"


def _candidate_rows(cands: list[TriggerCandidate], high: float) -> list[list[str]]:
    rows = []
    for i, c in enumerate(cands, 1):
        rows.append([
            str(i), f"<code>{escape(c.text)}</code>", f'<span class="mono">{escape(",".join(map(str, c.token_ids)))}</span>',
            escape(c.target_label_name), pct(c.flip_rate), pct(c.flip_rate_hard),
            "-" if c.loss_gap is None else f"{c.loss_gap:.1f}", pct(c.neighbour_flip_rate), pct(c.attribution_share),
            pct(c.reference_flip_rate), f'<b style="color:{_COLOUR["high"]}">{c.score:.2f}</b>' if c.score >= high else f"{c.score:.2f}",
        ])
    return rows


def _row_label(r: dict) -> tuple[str, str]:
    """(label, id) of a weight-evidence row: a token, a word with its surface forms, or a tensor."""
    label = r.get("token") or r.get("word") or r.get("tensor") or r.get("module") or "?"
    ids = r.get("token_id", r.get("token_ids", ""))
    return str(label), ",".join(map(str, ids)) if isinstance(ids, list) else str(ids)


def _weights_section(evidence: list[Evidence]) -> str:
    parts = []
    for e in evidence:
        top = e.details.get("top") if e.status == "ok" else None
        if not top or not all(isinstance(r, dict) and "z" in r for r in top):
            continue
        rows = top[:10]
        zmax = max((abs(float(r.get("z", 0))) for r in rows), default=1.0) or 1.0
        value_key = next((k for k in ("norm", "drift", "spectral_norm", "relative_change", "frobenius") if k in rows[0]), None)
        items = [(f"{_row_label(r)[0]}" + (f" (id {_row_label(r)[1]})" if _row_label(r)[1] else ""), max(0.0, float(r.get("z", 0))), "#0969da") for r in rows]
        parts.append(f"<h3>{escape(e.analysis)}</h3><p class=muted>{escape(e.summary)}</p>")
        parts.append(bar_chart(items, title=f"{e.analysis}: robust z-score of the top rows", max_value=zmax, fmt="z {:.1f}"))
        parts.append(_table(["row", "id", value_key or "value", "robust z"],
                            [[f"<code>{escape(_row_label(r)[0])}</code>", escape(_row_label(r)[1]),
                              f"{float(r.get(value_key, 0)):.4g}" if value_key else "-", f"{float(r.get('z', 0)):.1f}"] for r in rows],
                            num={1, 2, 3}))
    if not parts:
        return ""
    return "<section id=weights><h2>Weight statistics (top rows)</h2>" + "".join(parts) + "</section>"


def render(report: Report, max_candidates: int = 10) -> str:
    """The report as one self-contained HTML document."""
    v = report.verdict
    colour = _COLOUR.get(v, "#1f2328")
    title = f"scanner: {v.upper()} — {report.target.spec}"
    body: list[str] = []
    gate = gate_state(report)
    rev = f" @ <code>{escape(report.target.revision)}</code>" if report.target.revision else ""
    body.append(
        f'<section id=summary><h1>Backdoor scan of <code>{escape(report.target.spec)}</code></h1>'
        f'<p><span id=verdict class=verdict style="background:{colour}">verdict: {escape(v.upper())}</span> '
        f'&nbsp; {escape(level_phrase(report))} &nbsp; '
        f'{"scan complete" if report.complete else "<b>scan incomplete</b>"}'
        + (f" &nbsp; gate <code>--fail-on {escape(report.policy.fail_on or '')}</code>: <b>{gate}</b>" if gate else "")
        + f'</p><p class=muted>{escape(report.target.kind)}{rev} · {escape(model_line(report))}</p>'
        + ("<ul>" + "".join(f"<li>{escape(r)}</li>" for r in report.risk.rationale) + "</ul>" if report.risk.rationale else "")
        + "</section>"
    )

    if report.findings:
        fs = sorted(report.findings, key=lambda f: (f.suppressed, f.code))
        rows = []
        for f in fs:
            rule = rules.RULES.get(f.code)
            sev = _sev(f.severity) + (f' <span class=muted>(was {escape(f.original_severity)})</span>' if f.original_severity else "")
            rows.append([f"<b>{escape(f.code)}</b> <span class=muted>{escape(rule.name) if rule else ''}</span>",
                         sev + (" <span class=muted>suppressed</span>" if f.suppressed else ""),
                         escape(f.message), f"<code>{escape(f.location)}</code>" if f.location else "-"])
        body.append("<section id=findings><h2>Findings</h2>" + _table(["rule", "severity", "finding", "file"], rows,
                                                                       row_class=["suppressed" if f.suppressed else "" for f in fs]) + "</section>")
    else:
        body.append("<section id=findings><h2>Findings</h2><p>No findings.</p></section>")

    if report.candidates:
        ranked = sorted(report.candidates, key=lambda c: -c.score)[:max_candidates]
        high = report.risk.thresholds.get("high", 1.0)
        chart = bar_chart([(f"'{c.text}' → {c.target_label_name}", c.flip_rate, _COLOUR["high"] if c.score >= high else "#8c959f") for c in ranked],
                          title="held-out flip rate per trigger candidate and target label")
        table = _table(["#", "trigger", "token ids", "target label", "flip rate", "hard flip", "loss gap", "nbr flip", "attr. share", "ref. flip", "score"],
                       _candidate_rows(ranked, high), num={0, 4, 5, 6, 7, 8, 9, 10})
        body.append("<section id=candidates><h2>Trigger candidates</h2><p class=muted>Held-out flip rate per candidate and target label "
                    "(red: score at or above the <i>high</i> threshold).</p>" + chart + table
                    + f"<p class=muted>{escape(CLASSIFIER_COLUMNS.format(high=high))}</p></section>")
        maps = []
        for c in ranked[:3]:
            if c.heatmaps:
                maps.append(f"<h3>'{escape(c.text)}' → {escape(c.target_label_name)}</h3>")
                maps += [heatmap_html(hm.get("tokens", []), hm.get("attributions", [])) for hm in c.heatmaps[:3]]
        if maps:
            legend = ('<p class="muted legend">Integrated-gradients attribution per token:<span style="background:rgba(200,30,30,.9)"></span>towards the '
                      'target label<span style="background:rgba(30,80,200,.9)"></span>against it</p>')
            body.append("<section id=attribution><h2>Attribution heat maps</h2>" + legend + "".join(maps) + "</section>")

    if report.lm_candidates:
        ranked_lm = sorted(report.lm_candidates, key=lambda c: -c.score)[:max_candidates]
        f2 = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        rows = [[str(i), escape(c.target_sequence[:80]), f"{c.target_score:.2f}", f2(c.baseline_success_rate), f2(c.reference_target_score),
                 escape(c.placed_trigger or "-"), f2(c.attack_success_rate), f2(c.attribution_share), f"{c.score:.2f}"]
                for i, c in enumerate(ranked_lm, 1)]
        maps = [heatmap_html(hm.get("tokens", []), hm.get("attributions", [])) for c in ranked_lm[:1] for hm in c.heatmaps[:3]]
        body.append("<section id=lm-candidates><h2>LM backdoor candidates</h2><p class=muted>Inverted target sequences (BAIT-style), "
                    "how often each appears without a trigger, and the recovered trigger's attack success on held-out prompts.</p>"
                    + _table(["#", "target sequence", "inversion score", "without trigger", "ref. score", "trigger", "ASR", "attr. share", "score"],
                             rows, num={0, 2, 3, 4, 6, 7, 8})
                    + f"<p class=muted>{escape(LM_COLUMNS.format(high=report.risk.thresholds.get('high', 1.0)))}</p>"
                    + "".join(maps) + "</section>")

    weights = _weights_section(report.evidence)
    if weights:
        body.append(weights)

    if report.evidence:
        body.append("<section id=evidence><h2>Evidence</h2>" + _table(
            ["analysis", "status", "score", "summary"],
            [[escape(e.analysis), escape(e.status), "-" if e.score is None else f"{e.score:.2f}", escape(e.summary)] for e in report.evidence],
            num={2}) + f"<p class=muted>{escape(EVIDENCE_NOTE)}.</p></section>")

    if report.errors or report.not_analysed:
        rows = [[escape(e.stage), f"{escape(e.type)}: {escape(e.message)}"] for e in report.errors] + [["-", escape(n)] for n in report.not_analysed]
        body.append("<section id=incomplete><h2>Not analysed / errors</h2>" + _table(["stage", "what"], rows) + "</section>")

    if report.target.files:
        body.append("<section id=files><h2>Files read</h2>" + _table(
            ["file", "format", "size", "sha256"],
            [[f"<code>{escape(f.path)}</code>", escape(f.format), f"{f.size:,}", f'<span class="mono">{escape(f.sha256)}</span>'] for f in report.target.files],
            num={2}) + "</section>")

    timing = ", ".join(f"{escape(k)} {v:.1f}s" for k, v in report.timings.items())
    body.append(f'<p class=muted>scanner {escape(report.scanner_version)} · report schema {escape(report.schema_version)} · '
                f'{escape(report.created)}{" · " + timing if timing else ""}</p>')
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )
