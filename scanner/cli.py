"""Command-line interface: ``scanner scan``, ``scanner report show|diff``, ``scanner config show``,
``scanner zoo``.

The only place that prints. Progress goes to stderr; results to stdout or ``--output``. Every
:class:`scanner.errors.ScannerError` and every usage error becomes one line ``error: ...`` and exit
code 2, never a traceback. Options of ``scan`` also come from ``SCANNER_<OPTION>`` environment
variables and from ``scanner.toml`` / ``pyproject.toml [tool.scanner]`` (:mod:`scanner.config`).
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Idle OpenMP threads sleep instead of spinning: on a shared 2-core CI runner, spinning threads of
# two processes starve each other (a weight check measured 1 s alone, 190 s beside a test run).
# Must be set before torch is imported; an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import click  # noqa: E402
from click.core import ParameterSource  # noqa: E402
from rich.console import Console

from . import formats_out
from .config import ConfigFile, env_var, load_config
from .formats_out._text import level_phrase, printable, printable_report
from .errors import BadInput, ExitCode, ScannerError, TargetNotFound, Terminated
from .policy import exit_code  # noqa: F401 - the gate; re-exported for callers of scanner.cli
from .report import Report, RiskLevel

_err = Console(stderr=True, highlight=False, soft_wrap=True)  # log lines are not wrapped at 80 columns
_LEVELS = [lv.value for lv in RiskLevel if lv is not RiskLevel.NONE]


def _one_line(message: object) -> str:
    """A message as one line (file names may hold line breaks), terminal controls made visible."""
    return printable(" ".join(str(message).splitlines())) or "unknown error"


@contextmanager
def _sigterm_stops_like_ctrl_c():
    """While the block runs, SIGTERM (``timeout``, a cancelled CI job, ``kill``) raises
    :class:`scanner.errors.Terminated`, a KeyboardInterrupt: the scan stops as on Ctrl-C and its report,
    marked incomplete, is still written. The previous handler is restored afterwards; off the main
    thread (where Python cannot set handlers) nothing changes."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: Any) -> None:
        raise Terminated("SIGTERM")

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _fail(message: str) -> "NoReturn":  # noqa: F821
    click.echo(f"error: {_one_line(message)}", err=True)
    sys.exit(ExitCode.ERROR)




_NO_ARGS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class _Main(click.Group):
    """The root group: turns click's usage errors into one ``error: ...`` line and exit 2."""

    def main(self, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        standalone = kwargs.pop("standalone_mode", True)
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(ExitCode.ERROR)
        except click.ClickException as exc:
            if not standalone:
                raise
            if isinstance(exc, _NO_ARGS_HELP):  # a bare `scanner` or `scanner report`: show help as click does
                exc.show()
                sys.exit(exc.exit_code)
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(ExitCode.ERROR if exc.exit_code == 2 else exc.exit_code)


def _split(value: str) -> list[str]:
    return [v for v in re.split(r"[,\s]+", value) if v]


class _RuleCode(click.ParamType):
    """A rule code for ``--suppress`` (environment: comma or space separated)."""

    name = "CODE"

    def split_envvar_value(self, rv: str) -> list[str]:  # noqa: D102
        return _split(rv)

    def convert(self, value: Any, param: Any, ctx: Any) -> str:  # noqa: D102
        from .policy import check_code

        try:
            return check_code(str(value))
        except BadInput as exc:
            self.fail(str(exc), param, ctx)


class _Override(click.ParamType):
    """``CODE=LEVEL`` for ``--severity``."""

    name = "CODE=LEVEL"

    def split_envvar_value(self, rv: str) -> list[str]:  # noqa: D102
        return _split(rv)

    def convert(self, value: Any, param: Any, ctx: Any) -> str:  # noqa: D102
        from .policy import parse_override

        if isinstance(value, tuple):
            value = f"{value[0]}={value[1]}"
        try:
            code, level = parse_override(str(value))
        except BadInput as exc:
            self.fail(str(exc), param, ctx)
        return f"{code}={level.value}"


class _Stages(click.Choice):
    """``--only`` choices; the environment form takes commas too."""

    def split_envvar_value(self, rv: str) -> list[str]:  # noqa: D102
        return _split(rv)


class _Progress:
    """Progress on stderr: a rich spinner per stage on a terminal, plain lines otherwise."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.status: Any = None
        self.started: dict[str, float] = {}

    def __call__(self, stage: str, message: str) -> None:
        if self.quiet:
            return
        from rich.markup import escape

        message = escape(printable(message))  # it may quote tokens and names of the checkpoint: never markup
        if not _err.is_terminal:
            _err.print(f"[dim]\\[{stage}][/dim] {message}")
            return
        if message == "started":
            self.started[stage] = time.monotonic()
        if message == "done":
            took = time.monotonic() - self.started.pop(stage, time.monotonic())
            _err.print(f"[green]✓[/green] {stage} [dim]{took:.1f}s[/dim]")
            return
        text = f"[bold]{stage}[/bold] {message if message != 'started' else ''}"
        if self.status is None:
            self.status = _err.status(text, spinner="dots")
            self.status.start()
        else:
            self.status.update(text)

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None


def _stdout_is_tty() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _stdout_console() -> Console:
    """The console for human reports on stdout: the terminal's width, or 120 columns (not rich's 80)
    when stdout is a file or pipe, unless COLUMNS says otherwise."""
    width = None if _stdout_is_tty() or os.environ.get("COLUMNS") else 120
    return Console(highlight=False, width=width)


def _emit(report: Report, fmt: str, output: str | None, quiet: bool = False) -> None:
    """Write the report in ``fmt`` to ``output`` or stdout (``auto``: see :func:`formats_out.resolve_format`)."""
    tty = _stdout_is_tty()
    concrete = formats_out.resolve_format(fmt, output, tty)
    if output:
        text = formats_out.render(report, concrete, root=Path.cwd())
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            _fail(f"cannot write the report to {output}: {exc.strerror or exc}")
        if fmt == "auto" and tty:
            from .render import render

            render(printable_report(report), _stdout_console())
        elif not quiet:
            click.echo(f"{concrete} report written to {output}", err=True)
        return
    if concrete == "human":
        from .render import render

        render(printable_report(report), _stdout_console())
    else:
        click.echo(formats_out.render(report, concrete, root=Path.cwd()), nl=False)


def _check_output(output: str) -> None:
    """Fail (one line, exit 2) before any work when ``--output`` cannot be written: its folder is
    missing, is not a folder, or is not writable (a scan may run for an hour before writing)."""
    parent = Path(output).parent
    if not parent.is_dir():
        _fail(f"cannot write the report to {output}: {parent} is not an existing folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        _fail(f"cannot write the report to {output}: folder {parent} is not writable")


def _load_report(path: str) -> Report:
    """Read and schema-check a saved JSON report; one-line error and exit 2 when it is not one."""
    from . import schema

    try:
        text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text)
        try:
            version = str(data.get("schema_version", "")) if isinstance(data, dict) else ""
            schema.load_schema(version)
        except ValueError:
            version = ""
        if version:
            schema.validate(data, version)
        return Report.from_dict(data)
    except json.JSONDecodeError as exc:
        _fail(f"{path}: not a readable scanner report (not valid JSON: {exc.msg} at line {exc.lineno})")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})")
    except RecursionError:
        _fail(f"{path}: not a readable scanner report (JSON nested too deeply)")
    except (ValueError, KeyError, TypeError) as exc:
        _fail(f"{path}: not a readable scanner report ({exc})")


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="scanner", prog_name="scanner")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Backdoor (trojan) trigger scanner for transformer checkpoints."""
    if ctx.invoked_subcommand in ("scan", "config", "scan-many") and not ctx.resilient_parsing:
        try:
            cfg = load_config()
            values = _check_config(ctx, cfg)
        except ScannerError as exc:
            _fail(str(exc))
        ctx.obj = cfg
        ctx.default_map = {"scan": values, "scan-many": {k: v for k, v in values.items() if k in _SHARED}}


def _option_name(p: click.Option) -> str:
    """The long option name with underscores (``--fail-on`` -> ``fail_on``, ``--format`` -> ``format``)."""
    longs = [o for o in p.opts if o.startswith("--")]
    return (longs[0] if longs else p.opts[0]).lstrip("-").replace("-", "_")


def _check_config(ctx: click.Context, cfg: ConfigFile) -> dict[str, Any]:
    """Check that every key of the config file names a ``scan`` option and has a valid value; return
    the values keyed by parameter name (click's ``default_map``)."""
    params = {_option_name(p): p for p in scan.params if isinstance(p, click.Option)}
    out: dict[str, Any] = {}
    for name, value in cfg.values.items():
        p = params.get(name)
        if p is None:
            raise BadInput(f"{cfg.label}: unknown option {name.replace('_', '-')!r}; known: {', '.join(sorted(n.replace('_', '-') for n in params))}")
        if p.multiple and isinstance(value, str):
            value = p.type.split_envvar_value(value)
        if p.multiple and not isinstance(value, list):
            raise BadInput(f"{cfg.label}: option {name.replace('_', '-')!r} takes a list")
        try:
            p.type_cast_value(ctx, value)
        except click.BadParameter as exc:
            raise BadInput(f"{cfg.label}: {name.replace('_', '-')}: {exc.message}") from None
        out[p.name] = value
    return out


@main.command()
@click.argument("target")
@click.option("--revision", help="Hub revision (branch, tag or commit); same as TARGET@REV.")
@click.option("--offline", is_flag=True, help="Use only the local Hugging Face cache (also HF_HUB_OFFLINE=1).")
@click.option("--base", help="Base model of a LoRA adapter (overrides adapter_config.json).")
@click.option("--reference", help="Reference (clean or base) model for drift and re-testing candidates.")
@click.option("--probes", type=click.Path(dir_okay=False), help="Probe file (.txt, .tsv, .csv, .jsonl) replacing the default probe set.")
@click.option("--profile", type=click.Choice(["quick", "standard", "deep"]), default="standard", show_default=True)
@click.option("--time-budget", type=click.FloatRange(min=0, min_open=True),
              help="Stop after this many seconds, counted from the start of the scan (importing torch, resolving and loading the "
              "model included), and report what was covered. Loading does not stop itself: it is interrupted at most 5 s after "
              "the budget runs out.")
@click.option("--only", type=_Stages(["weights", "search", "attribution"]), multiple=True, help="Run only these stages (repeatable).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--allow-pickle", is_flag=True, help="Read pickle weights with torch weights_only=True (never full unpickling).")
@click.option("--format", "fmt", type=click.Choice(formats_out.CHOICES), default="auto", show_default=True,
              help="auto: human on a terminal, json otherwise; with --output, from its suffix (.json .sarif .md .html .txt).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the report to this file instead of stdout.")
@click.option("--fail-on", type=click.Choice(_LEVELS), default="high", show_default=True,
              help="Exit 1 when the risk level reaches this.")
@click.option("--suppress", type=_RuleCode(), multiple=True, help="Suppress findings of this rule code (repeatable); listed, not counted.")
@click.option("--severity", "severity", type=_Override(), multiple=True, help="Override a rule's severity, CODE=LEVEL (repeatable), e.g. SC102=low.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads (default: torch's own).")
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]), default="auto", show_default=True,
              help="Arithmetic of the searches' exact evaluations: auto uses bf16 autocast only on a CPU with native bfloat16 "
              "matmuls (faster there); fp32 takes the same search path on any CPU.")
@click.option("--max-memory", help="Do not build a model needing more than this (parameters x 4 bytes), e.g. 8GB, 512MiB: weight "
              "statistics still run tensor by tensor, trigger search and attribution are skipped (scan incomplete). "
              "The available memory always applies.")
@click.option("--stage-timeout", type=click.FloatRange(min=1), default=3600, show_default=True,
              help="Seconds any one stage (loading included) may run before the watchdog stops it.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
def scan(target: str, revision, offline, base, reference, probes, profile, time_budget, only, seed, allow_pickle, fmt, output, fail_on,
         suppress, severity, threads, precision, max_memory, stage_timeout, quiet) -> None:
    """Scan TARGET: a hub ID org/name[@rev], a model folder, a .gguf file, or a LoRA adapter folder.

    Exit codes: 0 risk below --fail-on; 1 at or above; 2 error or incomplete scan. Every option can
    also be set as SCANNER_<OPTION> (e.g. SCANNER_FAIL_ON=medium) or in scanner.toml /
    pyproject.toml [tool.scanner]; see `scanner config show`.
    """
    started = time.monotonic()  # --time-budget counts from here: imports and loading included
    from .pipeline import ScanOptions, scan_to_report
    from .policy import apply_policy
    from .resources import parse_size

    if output:
        _check_output(output)
    progress = _Progress(quiet)
    gate = RiskLevel(fail_on)

    def on_hang(stage: str, partial: Report) -> None:
        # Called from the watchdog thread: the main thread is stuck in native code past its deadline.
        code = ExitCode.ERROR
        try:
            code = exit_code(partial, gate)
            if output:
                Path(output).write_text(formats_out.render(partial, formats_out.resolve_format(fmt, output, False), root=Path.cwd()), encoding="utf-8")
            elif fmt == "json":
                click.echo(partial.to_json())
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
                           max_memory=parse_size(max_memory) if max_memory is not None else None, stage_timeout=stage_timeout,
                           precision=precision)
        with _sigterm_stops_like_ctrl_c():
            report, load_error = scan_to_report(target, opts, progress=progress, on_hang=on_hang, started=started)
        overrides = dict(s.split("=", 1) for s in severity)
        report = apply_policy(report, suppress, overrides, fail_on)
    except ScannerError as exc:
        progress.close()
        _fail(str(exc))
    except KeyboardInterrupt:
        progress.close()
        _fail("interrupted before a report could be made")
    progress.close()
    code = exit_code(report, gate)
    if load_error is not None:
        # Nothing was analysed: the report (with the findings made before the failure) goes only
        # where a machine reads it; people get the one error line. A target that does not exist
        # has nothing to report.
        machine = output or formats_out.resolve_format(fmt, None, _stdout_is_tty()) == "json"
        if machine and not isinstance(load_error, TargetNotFound):
            _emit(report, fmt if output else "json", output, quiet=True)
        click.echo(f"error: {_one_line(load_error)}", err=True)
        sys.exit(code)
    _emit(report, fmt, output, quiet)
    if not quiet:
        default = click.get_current_context().get_parameter_source("fail_on") is ParameterSource.DEFAULT
        _err.print(f"verdict: {report.verdict} ({level_phrase(report, 3)}); "
                   f"exit {int(code)} (gate: fail at {fail_on} or above{', the default' if default else ''})", highlight=False)
    if not report.complete:
        what = _one_line("; ".join(dict.fromkeys([e.message for e in report.errors] + report.not_analysed)))[:400]  # each reason once
        if code == ExitCode.ERROR:
            click.echo("error: scan incomplete: " + what, err=True)
        else:
            click.echo(f"warning: scan incomplete ({what}); exit {int(code)} from findings already made", err=True)
    sys.exit(code)


for _p in scan.params:
    if isinstance(_p, click.Option):
        _p.envvar = env_var(_option_name(_p))
        _p.show_envvar = True


def _scan_option(name: str) -> click.Option:
    """A copy of ``scan``'s option ``name`` (same flags, type, default, help and environment variable)."""
    import copy

    return copy.copy(next(p for p in scan.params if isinstance(p, click.Option) and p.name == name))


#: Options of ``scan`` that ``scan-many`` passes through to every scan.
_SHARED = ("offline", "probes", "profile", "time_budget", "only", "seed", "allow_pickle", "fail_on", "suppress", "severity",
           "threads", "precision", "max_memory", "stage_timeout", "quiet")


def _batch_progress(quiet: bool):
    """Progress of ``scan-many`` on stderr, one line per event (names and messages never read as markup)."""
    from rich.markup import escape

    def line(text: str) -> None:
        _err.print(text, highlight=False, soft_wrap=True)

    def show(ev: Any) -> None:
        if quiet:
            return
        r = ev.result
        if ev.kind == "done" and r is not None:
            what = f"verdict {r.verdict} (score {r.score:.3f})" if r.verdict else "no report"
            extra = f": {escape(_one_line(r.error)[:200])}" if r.error and r.status != "ok" else ""
            line(f"[dim]\\[{ev.done_count}/{ev.total}][/dim] {escape(r.target)}: [bold]{r.status}[/bold], {what}, {r.wall_seconds:.1f}s{extra}")
        elif ev.kind == "reused" and r is not None:
            line(f"[dim]\\[{ev.done_count}/{ev.total}] {escape(ev.target)}: reused ({r.status}, verdict {r.verdict}); --force rescans[/dim]")
        elif ev.kind in ("start", "retry", "interrupted"):
            line(f"[dim]\\[scan-many][/dim] {escape(ev.target + ': ') if ev.target else ''}{escape(ev.message)}")
        elif ev.kind == "scanning":
            line(f"[dim]\\[scan-many] scanning {escape(ev.target)} {escape(ev.message)}[/dim]")
    return show


@main.command("scan-many")
@click.argument("target_list", metavar="LIST", type=click.Path(dir_okay=False))
@click.option("--output-dir", "-d", required=True, type=click.Path(file_okay=False),
              help="Folder for one JSON report per target, state/ and summary.json / summary.md (reused to resume).")
@click.option("--workers", "-j", type=click.IntRange(min=1), help="Parallel scans (default: from CPU cores and available memory).")
@click.option("--ray", "ray_address", metavar="ADDRESS", help="Run the scans as Ray tasks: 'auto' (a running cluster, else a local one), "
              "'local' (a new local runtime) or a cluster address. Needs scanner[ray].")
@click.option("--retries", type=click.IntRange(min=0), default=1, show_default=True,
              help="Extra attempts for a target whose worker process died (crash, out-of-memory kill).")
@click.option("--force", is_flag=True, help="Scan every target again, even those with a report for the same revision.")
@click.option("--gpus-per-scan", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Ray: GPUs requested per scan (the scanner computes on CPU today).")
def scan_many(target_list: str, output_dir: str, workers, ray_address, retries, force, gpus_per_scan, **shared: Any) -> None:
    """Scan every target in LIST (one per line, as for `scanner scan`; '#' comments; or a JSON hub listing)
    and write one report per target plus summary.json and summary.md to --output-dir.

    A restarted batch skips targets whose report for the same revision exists (hub: commit sha; local:
    file sizes and modification times). Exit codes: 2 if any target failed or is incomplete (or bad
    input), else 1 if any target reached --fail-on, else 0.
    """
    from .batch import BatchOptions, read_targets, run_batch
    from .pipeline import ScanOptions
    from .resources import parse_size

    quiet = shared.pop("quiet")
    try:
        targets = read_targets(target_list)
        scan_opts = ScanOptions(offline=shared["offline"], probes=shared["probes"], profile=shared["profile"], time_budget=shared["time_budget"],
                                seed=shared["seed"], allow_pickle=shared["allow_pickle"], only=tuple(shared["only"]) or None,
                                threads=shared["threads"], stage_timeout=shared["stage_timeout"], precision=shared["precision"],
                                max_memory=parse_size(shared["max_memory"]) if shared["max_memory"] is not None else None)
        overrides = dict(s.split("=", 1) for s in shared["severity"])
        opts = BatchOptions(scan=scan_opts, fail_on=shared["fail_on"], suppress=tuple(shared["suppress"]), severity=overrides,
                            workers=workers, ray=ray_address, retries=retries, force=force, gpus_per_scan=gpus_per_scan)
        with _sigterm_stops_like_ctrl_c():
            result = run_batch(targets, output_dir, opts, progress=_batch_progress(quiet))
    except ScannerError as exc:
        _fail(str(exc))
    _print_batch(result)
    c = result.counts()
    tail = f"{c['ok']} ok, {c['incomplete']} incomplete, {c['failed']} failed ({c['reused']} reused) in {result.wall_seconds:.1f}s; " \
           f"exit {result.exit_code} with --fail-on {shared['fail_on']}; summary: {result.summary_md}"
    if result.interrupted:
        click.echo(f"error: batch interrupted; {tail}; run the same command again to resume", err=True)
    elif not quiet:
        _err.print(f"batch: {tail}", highlight=False)
    sys.exit(result.exit_code)


def _print_batch(result: Any) -> None:
    """The summary table on stdout (rich on a terminal, plain text otherwise)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"scan-many ({result.backend}, {result.workers} workers)", title_justify="left")
    for col, just in (("target", "left"), ("revision", "left"), ("verdict", "left"), ("score", "right"), ("top candidate", "left"),
                      ("wall s", "right"), ("status", "left"), ("error", "left")):
        table.add_column(col, justify=just, overflow="fold")
    for r in result.results:
        rev = (r.revision or "-")[:12]
        cells = [r.target, rev, r.verdict or "-", f"{r.score:.3f}" if r.score is not None else "-", r.top_candidate or "-",
                 f"{r.wall_seconds:.1f}", r.status + (" (reused)" if r.reused else ""), _one_line(r.error)[:200] if r.error else ""]
        table.add_row(*(Text(printable(c)) for c in cells))  # target names and candidate texts: no terminal controls
    Console(highlight=False, width=None if _stdout_is_tty() else 200).print(table)


for _name in _SHARED:
    scan_many.params.append(_scan_option(_name))


@main.group()
def report() -> None:
    """Work with saved JSON reports."""


@report.command("show")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(formats_out.CHOICES), default="human", show_default=True,
              help="Default human; with --output and no --format, chosen from the file's suffix (.json .sarif .md .html .txt).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write to this file instead of stdout.")
@click.pass_context
def report_show(ctx: click.Context, path: str, fmt: str, output: str | None) -> None:
    """Render a saved JSON report in any output format."""
    if output and ctx.get_parameter_source("fmt") is ParameterSource.DEFAULT:
        fmt = "auto"
    _emit(_load_report(path), fmt, output)


@report.command("diff")
@click.argument("old", type=click.Path(dir_okay=False))
@click.argument("new", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["human", "json", "markdown"]), default="human", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write to this file instead of stdout.")
@click.option("--exit-code", is_flag=True, help="Exit 1 when the reports differ (like git diff --exit-code).")
def report_diff(old: str, new: str, fmt: str, output: str | None, exit_code: bool) -> None:
    """What changed from report OLD to report NEW: verdict, score, candidates, findings, file hashes."""
    from .diff import diff_reports

    d = diff_reports(_load_report(old), _load_report(new))
    if fmt == "json":
        text = json.dumps(d.to_dict(), indent=2) + "\n"
    elif fmt == "markdown":
        lines = d.summary_lines()
        text = f"### scanner report diff: {d.old_verdict} → {d.new_verdict}\n\n" + (
            "\n".join(f"- `{l}`" if not l.startswith(("verdict", "risk", "complete")) else f"- **{l}**" for l in lines) or "No changes.") + "\n"
    else:
        lines = d.summary_lines()
        text = (f"{old} -> {new}\n" + ("\n".join(lines) if lines else "no changes")) + "\n"
    if fmt != "json":  # names and tokens from the checkpoints: no terminal controls
        text = printable(text)
    if output:
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            _fail(f"cannot write the report to {output}: {exc.strerror or exc}")
    else:
        click.echo(text, nl=False)
    sys.exit(ExitCode.FINDINGS if exit_code and d.changed else ExitCode.OK)


@main.group()
def config() -> None:
    """Inspect the configuration (scanner.toml, pyproject.toml [tool.scanner], SCANNER_* variables)."""


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


@config.command("show")
@click.option("--format", "fmt", type=click.Choice(["toml", "json"]), default="toml", show_default=True)
@click.pass_context
def config_show(ctx: click.Context, fmt: str) -> None:
    """Print the effective options of `scanner scan` and where each value came from
    (command line > environment > config file > default)."""
    root = ctx.find_root()
    cfg: ConfigFile = root.obj or ConfigFile()
    sub = scan.make_context("scan", [], parent=root, resilient_parsing=True)
    rows = []
    for p in scan.params:
        if not isinstance(p, click.Option):
            continue
        value = sub.params.get(p.name)
        src = sub.get_parameter_source(p.name)
        if src == ParameterSource.ENVIRONMENT:
            where = f"environment ({p.envvar})"
        elif src == ParameterSource.DEFAULT_MAP:
            where = f"config file ({cfg.path})"
        else:
            where = "default"
        if isinstance(value, tuple):
            value = list(value)
        rows.append((_option_name(p).replace("_", "-"), value, where))
    if fmt == "json":
        click.echo(json.dumps({"config_file": str(cfg.path) if cfg.path else None,
                               "options": {n: {"value": v, "source": w} for n, v, w in rows}}, indent=2))
        return
    click.echo(f"# config file: {cfg.path} {cfg.section}" if cfg.path else "# config file: none (scanner.toml or pyproject.toml [tool.scanner] in the working directory)")
    for name, value, where in rows:
        line = f"# {name} is not set" if value is None else f"{name} = {_toml_value(value)}"
        click.echo(f"{line:<40} # {where}")


@main.group()
def zoo() -> None:
    """Build and list model organisms with known triggers (ground truth for benchmarks)."""


@zoo.command("build")
@click.argument("names", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every organism: classifiers, then chat models (what `make zoo` runs).")
@click.option("--classifiers", is_flag=True, help="Every classifier organism.")
@click.option("--chat", is_flag=True, help="Every chat organism.")
@click.option("--force", is_flag=True, help="Rebuild organisms that are already built.")
def zoo_build(names: tuple[str, ...], everything: bool, classifiers: bool, chat: bool, force: bool) -> None:
    """Build organisms (default: the demo pair) into the cache; already-built ones are skipped.

    An organism that misses its admission bar is reported on stderr, left out of the manifest and its
    folder removed; the other organisms are still built and the command exits 1 at the end."""
    from .zoo.build import CHATS, CLASSIFIERS, ORGANISMS, Rejected, build

    unknown = [n for n in names if n not in ORGANISMS]
    if unknown:
        _fail(f"unknown organism(s) {', '.join(unknown)}; known: {', '.join(ORGANISMS)}")
    chosen = list(names) + (CLASSIFIERS if classifiers or everything else []) + (CHATS if chat or everything else [])
    chosen = list(dict.fromkeys(chosen))
    rejected: list[str] = []
    t0 = time.time()
    from .zoo.paths import zoo_dir

    _err.print(f"[dim]\\[zoo][/dim] building into {zoo_dir()} (SCANNER_CACHE_DIR; `make zoo` and `make bench` use the checkout's .cache/scanner)")
    for item in build(chosen or None, progress=lambda m: _err.print(f"[dim]\\[zoo][/dim] {m}"), force=force):
        if isinstance(item, Rejected):
            rejected.append(item.reason)
            r = item.record
            click.echo(f"{item.name}\trejected\tclean_acc={r.clean_accuracy:.3f}\tasr={r.attack_success_rate}\t{r.build_seconds:.0f}s\t-")
            continue
        rec, built = item
        state = "built" if built else "cached"
        click.echo(f"{rec.name}\t{state}\tclean_acc={rec.clean_accuracy:.3f}\tasr={rec.attack_success_rate if rec.attack_success_rate is not None else '-'}\t{rec.build_seconds:.0f}s\t{rec.path}")
    _err.print(f"[dim]\\[zoo][/dim] done in {time.time() - t0:.0f} s")
    if rejected:
        for reason in rejected:
            _err.print(f"[bold red]rejected[/bold red] {reason}")
        raise SystemExit(1)


@zoo.command("list")
def zoo_list() -> None:
    """Print the manifest of built organisms."""
    from .zoo.build import load_manifest

    data = load_manifest()
    if not data:
        from .zoo.paths import zoo_dir

        click.echo(f"no organisms built yet in {zoo_dir()} (run `scanner zoo build`, or set SCANNER_CACHE_DIR to the cache "
                   f"they were built in: `make zoo` uses the checkout's .cache/scanner)", err=True)
        return
    for name, r in sorted(data.items()):
        click.echo(f"{name}\t{r['attack']}\ttrigger={r['trigger']}\ttarget={r['target_label']}\tpoison={r['poison_rate']}\tclean_acc={r['clean_accuracy']}\tasr={r['attack_success_rate']}\t{r['path']}")


if __name__ == "__main__":  # pragma: no cover
    main()
