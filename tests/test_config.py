"""[tool.scanner] / scanner.toml, SCANNER_* variables and the command line, in that order of strength."""
from __future__ import annotations

import json

import pytest
from helpers import assert_one_line_error, run_cli
from reports import sample_report

from scanner.errors import ExitCode
from scanner.policy import apply_policy


@pytest.fixture
def here(tmp_path, monkeypatch):
    """An empty working directory, no SCANNER_* options in the environment, and a scan that returns
    a medium-level report without a model."""
    monkeypatch.chdir(tmp_path)
    for k in list(__import__("os").environ):
        if k.startswith("SCANNER_") and k != "SCANNER_CACHE_DIR":
            monkeypatch.delenv(k)
    medium = apply_policy(sample_report(), suppress=["SC301", "SC201"])
    monkeypatch.setattr("scanner.pipeline.scan_to_report", lambda target, opts, progress=None, on_hang=None, **_kw: (medium, None))
    return tmp_path


def _show(env=None):
    res = run_cli("config", "show", "--format", "json", env=env)
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


def test_defaults_without_a_file(here):
    cfg = _show()
    assert cfg["config_file"] is None
    assert cfg["options"]["fail-on"] == {"value": "high", "source": "default"}
    assert run_cli("config", "show").stdout.startswith("# config file: none")


def test_precedence_command_line_over_environment_over_file(here):
    (here / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.scanner]\nfail-on = "medium"\nprofile = "quick"\n'
                                         'suppress = ["SC104"]\n\n[tool.scanner.severity]\nSC102 = "low"\n')
    cfg = _show()
    assert cfg["options"]["fail-on"]["value"] == "medium" and cfg["options"]["fail-on"]["source"].startswith("config file")
    assert cfg["options"]["suppress"]["value"] == ["SC104"] and cfg["options"]["severity"]["value"] == ["SC102=low"]
    assert cfg["options"]["format"]["source"] == "default"
    env = {"SCANNER_FAIL_ON": "critical"}
    assert _show(env)["options"]["fail-on"] == {"value": "critical", "source": "environment (SCANNER_FAIL_ON)"}
    text = run_cli("config", "show", env=env).stdout
    assert 'fail-on = "critical"' in text and "environment (SCANNER_FAIL_ON)" in text and 'profile = "quick"' in text
    # the gate follows the same order: the report is at medium
    assert run_cli("scan", "m", "-q", "--format", "json").exit_code == ExitCode.FINDINGS  # file: medium
    assert run_cli("scan", "m", "-q", "--format", "json", env=env).exit_code == ExitCode.OK  # env: critical
    assert run_cli("scan", "m", "-q", "--format", "json", "--fail-on", "medium", env=env).exit_code == ExitCode.FINDINGS  # command line


def test_scanner_toml_wins_over_pyproject(here):
    (here / "pyproject.toml").write_text('[tool.scanner]\nfail-on = "medium"\n')
    (here / "scanner.toml").write_text('fail_on = "low"\nonly = ["weights"]\n')
    cfg = _show()
    assert cfg["config_file"].endswith("scanner.toml")
    assert cfg["options"]["fail-on"]["value"] == "low" and cfg["options"]["only"]["value"] == ["weights"]


def test_environment_lists_take_commas(here):
    cfg = _show({"SCANNER_ONLY": "weights,search", "SCANNER_QUIET": "1", "SCANNER_TIME_BUDGET": "30"})
    assert cfg["options"]["only"]["value"] == ["weights", "search"]
    assert cfg["options"]["quiet"]["value"] is True and cfg["options"]["time-budget"]["value"] == 30.0


@pytest.mark.parametrize("text, fragment", [
    ('fail-on = "sometimes"\n', "scanner.toml: fail-on"),
    ('fial-on = "low"\n', "unknown option 'fial-on'"),
    ("fail-on = \n", "invalid TOML"),
    ('suppress = ["SC999"]\n', "unknown rule code"),
    ('suppress = 3\n', "takes a list"),
])
def test_bad_config_is_one_line_error(here, text, fragment):
    (here / "scanner.toml").write_text(text)
    assert_one_line_error(run_cli("scan", "m"), fragment)
    assert_one_line_error(run_cli("config", "show"), fragment)


def test_precision_reaches_the_scan_from_each_source(here, monkeypatch):
    """``--precision`` (SCANNER_PRECISION, the config file) sets ScanOptions.precision, command line
    over environment over file; an unknown value is refused by click and by ScanOptions."""
    from scanner.errors import BadInput
    from scanner.pipeline import ScanOptions

    seen = []
    report = apply_policy(sample_report(), suppress=["SC301", "SC201"])
    monkeypatch.setattr("scanner.pipeline.scan_to_report", lambda target, opts, progress=None, on_hang=None, **_kw: (seen.append(opts.precision), (report, None))[1])
    run_cli("scan", "m", "-q", "--format", "json")
    run_cli("scan", "m", "-q", "--format", "json", env={"SCANNER_PRECISION": "bf16"})
    (here / "scanner.toml").write_text('precision = "fp32"\n')
    run_cli("scan", "m", "-q", "--format", "json")
    run_cli("scan", "m", "-q", "--format", "json", "--precision", "bf16")
    assert seen == ["auto", "bf16", "fp32", "bf16"]
    assert _show()["options"]["precision"]["value"] == "fp32"
    assert run_cli("scan", "m", "--precision", "fp8").exit_code == ExitCode.ERROR
    with pytest.raises(BadInput, match="unknown precision"):
        ScanOptions(precision="fp8")
