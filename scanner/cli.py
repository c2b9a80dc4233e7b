"""Command-line interface: ``scanner scan``, ``scanner report show``, ``scanner zoo``.

The only place that prints. Progress goes to stderr; results to stdout or ``--output``. Every
:class:`scanner.errors.ScannerError` becomes one line ``error: ...`` and exit code 2.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from rich.console import Console

from .errors import ExitCode, ScannerError
from .report import Report, RiskLevel

_err = Console(stderr=True, highlight=False)


def _one_line(message: object) -> str:
    """A message as one line (file names may hold line breaks)."""
    return " ".join(str(message).splitlines()) or "unknown error"


def _fail(message: str) -> "NoReturn":  # noqa: F821
    click.echo(f"error: {_one_line(message)}", err=True)
    sys.exit(ExitCode.ERROR)


def exit_code(report: Report, fail_on: RiskLevel) -> ExitCode:
    """1 when the risk level reaches ``fail_on``; else 2 for an incomplete scan; else 0."""
    if report.level.rank >= fail_on.rank:
        return ExitCode.FINDINGS
    if not report.complete:
        return ExitCode.ERROR
    return ExitCode.OK


def _write(report: Report, fmt: str, output: str | None) -> None:
    try:
        _write_unchecked(report, fmt, output)
    except OSError as exc:
        _fail(f"cannot write the report to {output}: {exc.strerror or type(exc).__name__}")


def _write_unchecked(report: Report, fmt: str, output: str | None) -> None:
    if fmt == "json":
        text = report.to_json()
        if output:
            Path(output).write_text(text + "\n")
        else:
            click.echo(text)
        return
    if output:
        Path(output).write_text(report.to_json() + "\n")
    from .render import render

    render(report, Console(highlight=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="scanner", prog_name="scanner")
def main() -> None:
    """Backdoor (trojan) trigger scanner for transformer checkpoints."""


@main.command()
@click.argument("target")
@click.option("--revision", help="Hub revision (branch, tag or commit); same as TARGET@REV.")
@click.option("--offline", is_flag=True, help="Use only the local Hugging Face cache (also HF_HUB_OFFLINE=1).")
@click.option("--base", help="Base model of a LoRA adapter (overrides adapter_config.json).")
@click.option("--reference", help="Reference (clean or base) model for drift and re-testing candidates.")
@click.option("--probes", type=click.Path(dir_okay=False), help="Probe file (.txt, .tsv, .csv, .jsonl) replacing the default probe set.")
@click.option("--profile", type=click.Choice(["quick", "standard", "deep"]), default="standard", show_default=True)
@click.option("--time-budget", type=click.FloatRange(min=1), help="Stop after this many seconds and report what was covered.")
@click.option("--only", type=click.Choice(["weights", "search", "attribution"]), multiple=True, help="Run only these stages (repeatable).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--allow-pickle", is_flag=True, help="Read pickle weights with torch weights_only=True (never full unpickling).")
@click.option("--format", "fmt", type=click.Choice(["human", "json"]), default="human", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the JSON report to this file.")
@click.option("--fail-on", type=click.Choice([lv.value for lv in RiskLevel if lv is not RiskLevel.NONE]), default="high", show_default=True,
              help="Exit 1 when the risk level reaches this.")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: torch's own).")
@click.option("--max-memory", help="Refuse to load a model needing more than this (parameters x 4 bytes), e.g. 8GB, 512MiB. "
              "The available memory always applies.")
@click.option("--stage-timeout", type=click.FloatRange(min=1), default=3600, show_default=True,
              help="Seconds any one stage (loading included) may run before the watchdog stops it.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
def scan(target: str, revision, offline, base, reference, probes, profile, time_budget, only, seed, allow_pickle, fmt, output, fail_on, threads,
         max_memory, stage_timeout, quiet) -> None:
    """Scan TARGET: a hub ID org/name[@rev], a model folder, a .gguf file, or a LoRA adapter folder.

    Exit codes: 0 risk below --fail-on; 1 at or above; 2 error or incomplete scan.
    """
    from .pipeline import ScanOptions, scan_to_report
    from .resources import parse_size

    def progress(stage: str, message: str) -> None:
        if not quiet:
            _err.print(f"[dim]\\[{stage}][/dim] {message}")

    gate = RiskLevel(fail_on)

    def on_hang(stage: str, partial: Report) -> None:
        # Called from the watchdog thread: the main thread is stuck in native code past its deadline.
        code = ExitCode.ERROR
        try:
            code = exit_code(partial, gate)
            if output or fmt == "json":
                _write_unchecked(partial, "json", output)
        except Exception:  # noqa: BLE001 - the report is best effort here; the exit below is not
            pass
        finally:
            click.echo(f"error: stage {stage} hung past its deadline; scan stopped, report incomplete", err=True)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    try:
        opts = ScanOptions(revision=revision, offline=offline, base=base, reference=reference, probes=probes, profile=profile,
                           time_budget=time_budget, seed=seed, allow_pickle=allow_pickle, only=tuple(only) or None, threads=threads,
                           max_memory=parse_size(max_memory) if max_memory is not None else None, stage_timeout=stage_timeout)
        report, load_error = scan_to_report(target, opts, progress=progress, on_hang=on_hang)
    except ScannerError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted before the model was loaded")
    code = exit_code(report, gate)
    if load_error is not None:
        # Nothing was analysed: the report (with the findings made before the failure) goes only
        # where a machine reads it; people get the one error line.
        if output or fmt == "json":
            _write(report, "json", output)
        click.echo(f"error: {_one_line(load_error)}", err=True)
        sys.exit(code)
    _write(report, fmt, output)
    if code == ExitCode.ERROR:
        click.echo("error: scan incomplete: " + _one_line("; ".join([e.message for e in report.errors] + report.not_analysed))[:400], err=True)
    sys.exit(code)


@main.group()
def report() -> None:
    """Work with saved JSON reports."""


@report.command("show")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["human", "json"]), default="human", show_default=True)
def report_show(path: str, fmt: str) -> None:
    """Render a saved JSON report."""
    try:
        rep = Report.load(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _fail(f"{path}: not a readable scanner report ({exc})")
    _write(rep, fmt, None)


@main.group()
def zoo() -> None:
    """Build and list model organisms with known triggers (ground truth for benchmarks)."""


@zoo.command("build")
@click.argument("names", nargs=-1)
def zoo_build(names: tuple[str, ...]) -> None:
    """Build organisms (default: the demo pair) into the cache; already-built ones are skipped."""
    from .zoo.build import ORGANISMS, build

    unknown = [n for n in names if n not in ORGANISMS]
    if unknown:
        _fail(f"unknown organism(s) {', '.join(unknown)}; known: {', '.join(ORGANISMS)}")
    for rec, built in build(list(names) or None, progress=lambda m: _err.print(f"[dim]\\[zoo][/dim] {m}")):
        state = "built" if built else "cached"
        click.echo(f"{rec.name}\t{state}\tclean_acc={rec.clean_accuracy:.3f}\tasr={rec.attack_success_rate if rec.attack_success_rate is not None else '-'}\t{rec.build_seconds:.0f}s\t{rec.path}")


@zoo.command("list")
def zoo_list() -> None:
    """Print the manifest of built organisms."""
    from .zoo.build import load_manifest

    data = load_manifest()
    if not data:
        click.echo("no organisms built yet (run `scanner zoo build`)", err=True)
        return
    for name, r in sorted(data.items()):
        click.echo(f"{name}\t{r['attack']}\ttrigger={r['trigger']}\ttarget={r['target_label']}\tpoison={r['poison_rate']}\tclean_acc={r['clean_accuracy']}\tasr={r['attack_success_rate']}\t{r['path']}")


if __name__ == "__main__":  # pragma: no cover
    main()
