"""Run the CLI in-process and check its contract (one-line errors, no tracebacks)."""
from __future__ import annotations

from click.testing import CliRunner

from scanner.cli import main


def run_cli(*args: str, env: dict | None = None):
    """Invoke ``scanner ARGS``; returns click's Result (exit_code, stdout, stderr)."""
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def assert_one_line_error(result, fragment: str = "") -> None:
    """Exit 2, stderr ends in a single ``error: ...`` line that mentions ``fragment``; no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert fragment.lower() in errors[0].lower(), errors[0]
