"""The HTML report in a real browser: headless Chromium loads it with no console message (no script
error, no blocked network request) and shows the verdict.

Skips only when Chromium is absent outside CI; in CI (``CI`` set) a missing Chromium fails the test
(`.ci/run` installs the Debian package ``chromium``).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from scanner.formats_out import render

CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\]\s*(.*)")


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI for the HTML report test (apt-get install chromium)")
        pytest.skip("chromium not installed (apt-get install chromium); runs in CI")
    return exe


def _load(exe: str, page: Path, profile: Path) -> tuple[str, list[str]]:
    """Open ``page`` headless; return the DOM after load and the console messages."""
    cmd = [exe, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--disable-extensions",
           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout, [m.group(1) for m in CONSOLE.finditer(res.stderr)]


def test_html_report_loads_in_chromium_without_console_errors(backdoored_report, tmp_path):
    exe = _chromium()
    # control: this Chromium does report console errors through the log we read
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><p>x</p><script>undefinedFunction()</script></body></html>")
    _, messages = _load(exe, bad, tmp_path / "profile-control")
    assert any("undefinedFunction" in m for m in messages), messages

    page = tmp_path / "report.html"
    page.write_text(render(backdoored_report, "html"), encoding="utf-8")
    dom, messages = _load(exe, page, tmp_path / "profile")
    assert messages == []
    verdict = re.search(r'<span id="verdict"[^>]*>([^<]*)</span>', dom)
    assert verdict and verdict.group(1) == f"verdict: {backdoored_report.verdict.upper()}"
    assert "<svg" in dom and "Trigger candidates" in dom and "Attribution heat maps" in dom
