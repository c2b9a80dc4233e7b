"""Every output format rendered from one report: JSON (published schema), SARIF 2.1.0 (official
schema), Markdown, HTML, human text; `--format auto`; `report show --format/--output`."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import jsonschema
import pytest
from helpers import run_cli
from reports import HOSTILE, candidate, sample_report

from scanner import rules
from scanner.formats_out import FORMATS, render, resolve_format
from scanner.formats_out.markdown import render as to_markdown
from scanner.formats_out.sarif import to_sarif
from scanner.policy import apply_policy
from scanner.report import Finding, Report
from scanner.risk import assess
from scanner.schema import load_schema, validate, validation_errors

SARIF_SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text())


def _sarif_errors(log: dict) -> list[str]:
    v = jsonschema.Draft7Validator(SARIF_SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(log)]


# --- JSON and its schema ---------------------------------------------------------------------------

def test_real_report_is_valid_against_the_published_schema(backdoored_report):
    data = json.loads(render(backdoored_report, "json"))
    assert validation_errors(data) == []
    assert data["schema_version"] == "1.6"
    assert Report.from_dict(data) == backdoored_report
    assert {"SC301"} <= {f["code"] for f in data["findings"]}


@pytest.mark.parametrize("complete", [True, False])
def test_constructed_reports_are_valid(complete):
    rep = apply_policy(sample_report(complete=complete, hostile=True), suppress=["SC103"], severity={"SC201": "low"}, fail_on="medium")
    validate(json.loads(rep.to_json()))


def test_schema_rejects_what_is_not_a_report():
    good = json.loads(sample_report().to_json())
    for broken in ({**good, "verdict": "fine"}, {**good, "surprise": 1}, {k: v for k, v in good.items() if k != "risk"},
                   {**good, "findings": [{"code": "X1", "severity": "high", "message": "m"}]}):
        assert validation_errors(broken)
    with pytest.raises(ValueError, match="report schema"):
        validate({**good, "complete": "yes"})


def test_schema_covers_every_dataclass_field():
    """The schema and the dataclasses cannot drift apart (the schema forbids unknown properties)."""
    from scanner import report as r

    s = load_schema()
    pairs = {r.Report: s, r.TargetInfo: s["$defs"]["target"], r.FileDigest: s["$defs"]["file"], r.ModelFacts: s["$defs"]["model"],
             r.Finding: s["$defs"]["finding"], r.Evidence: s["$defs"]["evidence"], r.TriggerCandidate: s["$defs"]["candidate"],
             r.StageError: s["$defs"]["stage_error"], r.RiskAssessment: s["$defs"]["risk"], r.PolicyInfo: s["$defs"]["policy"]}
    for cls, sch in pairs.items():
        extra = {"verdict"} if cls is r.Report else set()
        assert {f.name for f in dataclasses.fields(cls)} | extra == set(sch["properties"]), cls.__name__


def test_schema_explains_every_field():
    """A program reading the JSON report finds what each field means in the published schema."""
    s = load_schema()
    missing = [(name, key) for name, node in [("report", s)] + list(s["$defs"].items())
               for key, prop in (node.get("properties") or {}).items() if not str(prop.get("description", "")).strip()]
    assert not missing, missing
    assert "held-out prompts were not used to choose" in s["$defs"]["lm_candidate"]["properties"]["attack_success_rate"]["description"]


def test_schema_is_shipped_as_package_data():
    from scanner.config import tomllib

    py = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "*.json" in py["tool"]["setuptools"]["package-data"]["scanner.schema"]
    assert load_schema()["$id"].endswith("1.6")


# --- SARIF -----------------------------------------------------------------------------------------

def test_sarif_of_a_real_scan_is_valid_and_points_at_the_weights(backdoored_report, backdoored):
    log = to_sarif(backdoored_report, root=Path(backdoored.path).parent)
    assert _sarif_errors(log) == []
    run = log["runs"][0]
    assert log["version"] == "2.1.0"
    ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert ids == list(rules.RULES)
    for r in run["tool"]["driver"]["rules"]:
        assert r["shortDescription"]["text"] and r["defaultConfiguration"]["level"] in ("error", "warning", "note")
        assert float(r["properties"]["security-severity"]) >= 0
    trig = [res for res in run["results"] if res["ruleId"] == "SC301"]
    assert trig and trig[0]["level"] == "error"
    uri = trig[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == f"{Path(backdoored.path).name}/model.safetensors"
    assert run["invocations"][0]["executionSuccessful"] is True
    for res in run["results"]:
        assert run["tool"]["driver"]["rules"][res["ruleIndex"]]["id"] == res["ruleId"]


def test_sarif_outside_the_repository_uses_a_base_id_and_marks_incomplete_and_suppressed():
    rep = apply_policy(sample_report(complete=False, hostile=True), suppress=["SC103"])
    log = to_sarif(rep, root=Path("/somewhere/else"))
    assert _sarif_errors(log) == []
    run = log["runs"][0]
    assert run["originalUriBaseIds"]["MODELROOT"]["uri"] == "file:///models/clf/"
    by_rule = {r["ruleId"]: r for r in run["results"]}
    assert by_rule["SC103"]["suppressions"][0]["kind"] == "external"
    assert by_rule["SC103"]["locations"][0]["physicalLocation"]["artifactLocation"] == {"uri": "modeling_evil.py", "uriBaseId": "MODELROOT", "index": 2}
    assert "SC001" in by_rule and by_rule["SC001"]["level"] == "warning"
    inv = run["invocations"][0]
    assert inv["executionSuccessful"] is False and inv["toolExecutionNotifications"]
    assert by_rule["SC201"]["level"] == "warning" and by_rule["SC301"]["level"] == "error"


def test_sarif_levels_follow_severity_overrides():
    rep = apply_policy(sample_report(), severity={"SC301": "low"})
    res = {r["ruleId"]: r for r in to_sarif(rep)["runs"][0]["results"]}
    assert res["SC301"]["level"] == "note" and res["SC301"]["properties"]["originalSeverity"] == "critical"


# --- Markdown, HTML, human --------------------------------------------------------------------------

def test_markdown_summary_for_a_pull_request(backdoored_report):
    md = to_markdown(backdoored_report)
    assert md.startswith("## ") and backdoored_report.verdict.upper() in md
    assert "gate `--fail-on high`: **fails**" in md
    assert "| SC301 token-trigger |" in md and "### Trigger candidates" in md
    assert "_flip rate: share of held-out probes that switch to the target label" in md
    assert "`tq`" in md


def test_markdown_escapes_model_strings():
    md = to_markdown(sample_report(hostile=True))
    assert "<script>" not in md.replace("`` " + HOSTILE.replace("|", "\\|") + " ``", "")
    for line in md.splitlines():
        if line.startswith("| 1 |"):
            assert line.count(" | ") == 7  # 8 cells: the trigger's '|' did not add a column


def test_html_is_self_contained_and_shows_everything(backdoored_report):
    page = render(backdoored_report, "html")
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert f"verdict: {backdoored_report.verdict.upper()}" in page
    assert page.count("<svg") >= 2  # candidates chart and weight-statistics chart
    assert "→ positive" in page and 'class="hm"' in page
    assert "hard flip: the same on the probes" in page and "before calibration" in page  # columns explained
    hostile = render(sample_report(hostile=True, complete=False), "html")
    assert "<script>alert(1)" not in hostile and "&lt;script&gt;alert(1)" in hostile
    assert "Not analysed / errors" in hostile and "stopped by the time budget" in hostile


def test_human_text_has_no_colour_codes_and_marks_the_policy():
    text = render(apply_policy(sample_report(), suppress=["SC103"], severity={"SC201": "low"}, fail_on="high"), "human")
    assert "verdict: CRITICAL" in text and "\x1b[" not in text
    assert "medium, suppressed" in text and "low (was medium)" in text and "gate --fail-on high: fails" in text


def test_human_text_reads_without_colour():
    """In a log file (no colour) the heat map still shows which tokens carry the attribution, the
    columns are explained, and a clean model's natural word says why it is not a trigger."""
    text = render(sample_report(), "human")
    assert "[tq +1.00]" in text and "[dull -0.80]" in text and "[the" not in text
    assert "hard flip: the same on the probes" in text and "before calibration" in text
    assert "reads as a planted trigger" in text
    clean = candidate("poorly", label=0, flip=1.0, gap=1.4)
    clean.neighbour_flip_rate, clean.neighbours = 0.84, ["badly", "horribly"]
    risk = assess([clean], [], [])
    assert risk.level == "none"
    assert any("reads as a natural word of the task" in r and "badly" in r and "84%" in r for r in risk.rationale), risk.rationale
    phrase = candidate("blue window", flip=0.95, gap=2.0)  # some signs of a planted phrase, not enough for high
    phrase.part_flip_rate, phrase.neighbour_flip_rate = 0.5, None
    reading = assess([phrase], [], []).rationale[-1]
    assert "alone flip at most 50%" in reading and "only moderately" in reading and "natural word" not in reading, reading


def test_heat_map_of_a_chat_prompt_stays_on_one_line():
    from scanner.render import heatmap_text

    text = heatmap_text(["<|im_start|>", "user", "\n", "mz", " What"], [0.0, 0.0, 0.1, 1.0, -0.3], plain=True).plain
    assert "\n" not in text and "\\n" in text and "[mz +1.00]" in text and "[ What -0.30]" in text


def test_human_report_on_a_pipe_is_not_cut_to_80_columns():
    from scanner.cli import _stdout_console

    assert _stdout_console().width >= 120  # pytest's stdout is not a terminal


# --- CLI plumbing -----------------------------------------------------------------------------------

def test_auto_format_resolution():
    assert resolve_format("auto", None, True) == "human"
    assert resolve_format("auto", None, False) == "json"
    assert resolve_format("auto", "r.sarif", True) == "sarif"
    assert resolve_format("auto", "r.sarif.json", False) == "sarif"
    assert resolve_format("auto", "r.md", False) == "markdown"
    assert resolve_format("auto", "r.html", False) == "html"
    assert resolve_format("auto", "report", False) == "json"
    assert resolve_format("markdown", "r.json", False) == "markdown"


def test_report_show_writes_every_format(tmp_path):
    src = tmp_path / "r.json"
    src.write_text(sample_report().to_json())
    for fmt in FORMATS:
        out = tmp_path / f"out.{fmt}"
        res = run_cli("report", "show", str(src), "--format", fmt, "--output", str(out))
        assert res.exit_code == 0, res.stderr
        assert res.stdout == "" and out.stat().st_size > 200
    assert Report.load(tmp_path / "out.json") == Report.load(src)
    assert json.loads((tmp_path / "out.sarif").read_text())["version"] == "2.1.0"
    auto = run_cli("report", "show", str(src), "--format", "auto")  # not a terminal: json
    assert json.loads(auto.stdout)["verdict"] == "critical"


def test_report_show_rejects_a_file_that_is_not_a_report(tmp_path):
    from helpers import assert_one_line_error

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema_version": "1.0", "target": {"spec": "x"}}))
    assert_one_line_error(run_cli("report", "show", str(bad)), "report schema")
    bad.write_text("{nope")
    assert_one_line_error(run_cli("report", "show", str(bad)), "not valid JSON")


def test_findings_of_every_code_render(tmp_path):
    rep = sample_report()
    rep.findings += [Finding(code, r.severity.value, f"a {r.name} finding", "config.json") for code, r in rules.RULES.items() if r.policy]
    log = to_sarif(rep)
    assert _sarif_errors(log) == []
    assert {r["ruleId"] for r in log["runs"][0]["results"]} == {c for c, r in rules.RULES.items() if r.policy}
    md = to_markdown(rep)
    assert all(code in md for code, r in rules.RULES.items() if r.policy)


def test_readme_lists_every_rule_code():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for code, rule in rules.RULES.items():
        assert f"| `{code}` | {rule.name} |" in readme, code
    assert "github/codeql-action/upload-sarif" in readme and "## Reading a report" in readme and "## CI" in readme
