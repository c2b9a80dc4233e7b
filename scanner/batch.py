"""Batch scanning: many targets, one report each, a summary and one exit code (``scanner scan-many``).

Targets come from a list file (:func:`read_targets`): one per line, ``#`` comments and blank lines
ignored, ``org/name@revision`` as for ``scanner scan``; or a hub query saved as JSON / JSON lines
(objects with ``id`` or ``modelId`` and optionally ``sha``, which becomes the revision).

:func:`run_batch` runs every scan in a separate process so that a crash, a hang or an out-of-memory
kill costs one target, never the batch:

* **Process pool** (default): ``workers`` single-process ``concurrent.futures`` executors with the
  ``spawn`` start method, each worker running one scan at a time with ``cores / workers`` torch
  threads. A worker that dies mid-scan is replaced; its target is retried ``retries`` times and then
  reported ``failed`` with the reason (the other workers are not disturbed).
* **Ray** (``ray="auto"``, ``"local"`` or a cluster address; optional dependency ``scanner[ray]``): the
  same scan function as Ray tasks with resource requests (``num_cpus`` = threads per scan, ``memory``
  from ``--max-memory`` or the checkpoint size, ``num_gpus`` when asked), ``max_retries`` for worker
  failure; results are gathered as they finish.

Each finished target's report is written at once to ``OUTPUT_DIR/<key>.json`` and its result to
``OUTPUT_DIR/state/<key>.json``; ``summary.json`` and ``summary.md`` are rewritten after every target,
so an interrupted batch loses at most the scans that were running. A restarted batch with the same
output directory skips targets whose earlier result is ``ok`` or ``incomplete`` for the same
**identity**: the resolved commit sha for hub targets, and for local targets a fingerprint of every
file's relative path, size and modification time (``stat`` only; ``force=True`` rescans). Failed
targets are always scanned again.

Statuses: ``ok`` (complete report), ``incomplete`` (report written, not every stage ran), ``failed``
(the target could not be loaded, the scan raised, or its worker died). Batch exit code: the highest
of the targets' exit codes, i.e. :data:`ExitCode.ERROR` (2) if any target failed or is incomplete
without a finding at ``fail_on``, else :data:`ExitCode.FINDINGS` (1) if any reached ``fail_on``,
else :data:`ExitCode.OK` (0).

Library code: never prints; progress goes to the ``progress`` callback as :class:`BatchEvent`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import BadInput, ExitCode

# Idle OpenMP threads sleep instead of spinning (as in the CLI); inherited by spawned workers.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

STATUSES = ("ok", "incomplete", "failed")
#: Memory a scan process needs besides the model (interpreter, torch, transformers, activations), bytes.
PROCESS_OVERHEAD = 1 << 30
#: Memory assumed for one scan when nothing better is known (a model of ~250M float32 parameters), bytes.
DEFAULT_SCAN_MEMORY = 1 << 30
#: Test-only hook: ``SUBSTRING:N[,SUBSTRING:N]`` makes the worker scanning a target whose spec contains
#: SUBSTRING kill itself with SIGKILL on its first N attempts (counted with marker files in
#: ``$SCANNER_TEST_KILL_DIR``). Used by the tests to simulate a worker dying mid-batch; never set it otherwise.
TEST_KILL_ENV = "SCANNER_TEST_KILL"
TEST_KILL_DIR_ENV = "SCANNER_TEST_KILL_DIR"

_HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<rev>[\w./-]+))?$")
_SHA = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class BatchTarget:
    """One target of a batch: ``spec`` as ``scanner scan`` takes it (``org/name@rev``, a folder, a
    ``.gguf`` file) and the ``line`` of the list file it came from (1-based; 0 when not from a file)."""

    spec: str
    line: int = 0

    @property
    def local(self) -> bool:
        """True when the spec names an existing local file or folder (it then wins over a hub ID)."""
        return Path(self.spec).expanduser().exists()

    @property
    def hub(self) -> tuple[str, str | None] | None:
        """``(repo, revision or None)`` for a hub ID, None for a local path."""
        if self.local or self.spec.startswith((".", "/", "~")):
            return None
        m = _HUB_ID.match(self.spec)
        return (m.group("repo"), m.group("rev")) if m else None

    @property
    def key(self) -> str:
        """The file-name stem of this target's report: safe characters only (``[A-Za-z0-9._@-]``).
        Hub IDs give ``org--name[@rev]``; local paths give their name and a hash of the absolute path
        (two folders of the same name do not collide)."""
        hub = self.hub
        if hub is not None:
            repo, rev = hub
            raw = repo.replace("/", "--") + (f"@{rev}" if rev else "")
            return _safe(raw)
        p = Path(self.spec).expanduser().absolute()
        return f"{_safe(p.name or 'target')}-{hashlib.sha1(str(p).encode()).hexdigest()[:8]}"


def _safe(text: str) -> str:
    out = re.sub(r"[^A-Za-z0-9._@-]+", "_", text).strip("._") or "target"
    return out[:120]


@dataclass
class TargetResult:
    """The outcome of one target.

    ``status`` is ``ok``, ``incomplete`` or ``failed`` (see the module docstring); ``revision`` the
    resolved revision (commit sha for hub targets, None for local ones); ``verdict``, ``level`` and
    ``score`` (risk score in [0, 1]) come from the report (None when there is none); ``top_candidate``
    is the best trigger candidate as ``'text' -> label (flip rate)``; ``wall_seconds`` the scan's wall
    time (0 for a reused result); ``error`` the reason of a failure or what made the scan incomplete;
    ``report`` the report file name inside the output directory; ``exit_code`` what ``scanner scan``
    would have exited with; ``attempts`` how many times the scan was started (None on Ray, which
    retries by itself); ``reused`` True when the result comes from an earlier run of the batch;
    ``identity`` what resume compares (``hub:<sha>`` or ``local:<fingerprint>``).
    """

    target: str
    status: str
    revision: str | None = None
    verdict: str | None = None
    level: str | None = None
    score: float | None = None
    top_candidate: str | None = None
    wall_seconds: float = 0.0
    error: str | None = None
    report: str | None = None
    exit_code: int = int(ExitCode.ERROR)
    attempts: int | None = 1
    reused: bool = False
    identity: str | None = None
    line: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TargetResult":
        """Rebuild from :meth:`to_dict` output (unknown keys ignored). Raises TypeError/KeyError."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class BatchOptions:
    """Options of a batch.

    ``scan``: the :class:`scanner.pipeline.ScanOptions` of every scan (``threads`` None: cores /
    workers); ``fail_on``, ``suppress``, ``severity``: the policy and gate applied to each report, as
    for ``scanner scan``; ``workers``: parallel scans (None: :func:`default_workers`); ``ray``: None
    for the local process pool, else ``auto`` (a running cluster, else a new local one), ``local``
    (always a new local runtime) or a cluster address; ``retries``: extra attempts for a target whose
    worker process died (never for a scan that ran and failed); ``force``: rescan targets already done;
    ``gpus_per_scan``: Ray ``num_gpus`` per task (0: the scanner computes on CPU today).
    """

    scan: Any = None
    fail_on: str = "high"
    suppress: tuple[str, ...] = ()
    severity: dict[str, str] = field(default_factory=dict)
    workers: int | None = None
    ray: str | None = None
    retries: int = 1
    force: bool = False
    gpus_per_scan: float = 0.0


@dataclass
class BatchEvent:
    """Progress of a batch for the ``progress`` callback: ``kind`` is ``start`` (the batch, with
    ``message`` naming the backend), ``reused`` (an earlier result kept), ``scanning`` (a target was
    handed to a worker), ``retry`` (its worker died; tried again), ``done`` (a target finished, with
    ``result``) or ``interrupted``; ``done_count`` of ``total`` targets are finished."""

    kind: str
    target: str = ""
    message: str = ""
    result: TargetResult | None = None
    done_count: int = 0
    total: int = 0


@dataclass
class BatchResult:
    """The batch: one :class:`TargetResult` per distinct target in list order, the batch
    ``exit_code`` (see the module docstring), the ``backend`` (``pool`` or ``ray``), ``workers``
    (parallel scans; Ray: CPUs of the cluster), ``wall_seconds``, the ``summary_json`` /
    ``summary_md`` paths, and ``interrupted`` when it was stopped before every target finished."""

    results: list[TargetResult]
    exit_code: int
    backend: str
    workers: int
    wall_seconds: float
    output_dir: str
    summary_json: str
    summary_md: str
    interrupted: bool = False

    def counts(self) -> dict[str, int]:
        """Number of targets per status (and ``reused``)."""
        out = {s: sum(r.status == s for r in self.results) for s in STATUSES}
        out["reused"] = sum(r.reused for r in self.results)
        return out


Progress = Callable[[BatchEvent], None]


# -- target lists --------------------------------------------------------------------------------

def read_targets(path: str | Path) -> list[BatchTarget]:
    """Read a target list.

    Plain text: one target per line (as ``scanner scan`` takes it), blank lines and lines starting
    with ``#`` ignored. JSON (an array) or JSON lines: strings, or objects with ``id``/``modelId``
    (and ``sha``, used as the revision) as a hub model listing saves them. Duplicates are kept once.

    Raises:
        BadInput: the file cannot be read, a JSON entry has no id, or it lists no target.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read the target list ({getattr(exc, 'strerror', None) or exc})") from None
    stripped = text.lstrip()
    entries: list[tuple[str, int]] = []
    if stripped.startswith(("[", "{")):
        entries = _json_targets(path, text)
    else:
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if line and not line.startswith("#"):
                entries.append((line, n))
    seen: set[str] = set()
    out = []
    for spec, n in entries:
        t = BatchTarget(spec, n)
        if t.key in seen:
            continue
        seen.add(t.key)
        out.append(t)
    if not out:
        raise BadInput(f"{path}: lists no target (one per line; '#' starts a comment)")
    return out


def _json_targets(path: str | Path, text: str) -> list[tuple[str, int]]:
    try:
        return _json_entries(path, text)
    except RecursionError:
        raise BadInput(f"{path}: the target list's JSON is nested too deeply") from None


def _json_entries(path: str | Path, text: str) -> list[tuple[str, int]]:
    try:
        data = json.loads(text)
        items = data if isinstance(data, list) else [data]
    except json.JSONDecodeError:
        try:
            items = [json.loads(l) for l in text.splitlines() if l.strip()]
        except json.JSONDecodeError as exc:
            raise BadInput(f"{path}: neither a target per line nor valid JSON / JSON lines ({exc.msg} at line {exc.lineno})") from None
    out = []
    for n, item in enumerate(items, 1):
        if isinstance(item, str) and item.strip():
            out.append((item.strip(), n))
            continue
        ident = item.get("id") or item.get("modelId") if isinstance(item, dict) else None
        if not isinstance(ident, str) or not ident.strip():
            raise BadInput(f"{path}: entry {n} has no model id (a string, or an object with 'id' or 'modelId')")
        sha = item.get("sha")
        out.append((f"{ident.strip()}@{sha}" if isinstance(sha, str) and sha and "@" not in ident else ident.strip(), n))
    return out


# -- sizing --------------------------------------------------------------------------------------

def cpu_cores() -> int:
    """CPU cores this process may run on (its affinity mask; else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_workers(n_targets: int, max_memory: int | None = None) -> int:
    """Parallel scans for this machine: at most one per core, as many as the available memory holds
    at ``max_memory`` (or :data:`DEFAULT_SCAN_MEMORY`) plus :data:`PROCESS_OVERHEAD` each, and no more
    than there are targets; at least 1."""
    from .resources import available_memory

    per = (max_memory or DEFAULT_SCAN_MEMORY) + PROCESS_OVERHEAD
    return max(1, min(cpu_cores(), available_memory() // per, n_targets))


def memory_request(target: BatchTarget, scan: Any) -> int | None:
    """Bytes of memory a scan of ``target`` asks Ray for: :data:`PROCESS_OVERHEAD` plus, for a
    weights-only scan nothing (tensors are read one at a time), else ``max_memory`` when set, else
    twice the local weight files' size (bf16 on disk -> float32 in memory); None for a hub target
    without ``max_memory`` (size unknown before download)."""
    if scan is not None and scan.only and set(scan.only) <= {"weights"}:
        return PROCESS_OVERHEAD
    if scan is not None and scan.max_memory:
        return scan.max_memory + PROCESS_OVERHEAD
    if target.local:
        p = Path(target.spec).expanduser()
        files = [p] if p.is_file() else [f for f in p.glob("*") if f.suffix in (".safetensors", ".gguf", ".bin")]
        return 2 * sum(f.stat().st_size for f in files if f.is_file()) + PROCESS_OVERHEAD
    return None


# -- identity (resume) ---------------------------------------------------------------------------

def identity(target: BatchTarget, offline: bool = False) -> str | None:
    """What resume compares: ``hub:<commit sha>`` for a hub target (a 40-hex revision as given; else
    resolved from the local cache, or the hub when not offline), ``local:<fingerprint>`` for a local
    one (sha256 over every file's relative path, size and modification time), None when it cannot
    be told (then the target is always scanned). Never raises."""
    try:
        if target.local:
            return "local:" + _fingerprint(Path(target.spec).expanduser())
        hub = target.hub
        if hub is None:
            return None
        sha = _hub_sha(hub[0], hub[1], offline)
        return f"hub:{sha}" if sha else None
    except Exception:  # noqa: BLE001 - an unknown identity only means "scan it"
        return None


def _fingerprint(path: Path) -> str:
    if path.is_file():
        files = [path]
        root = path.parent
    else:
        root = path
        files = sorted(f for f in path.rglob("*") if f.is_file() and ".cache" not in f.relative_to(path).parts)
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def _hub_sha(repo: str, revision: str | None, offline: bool) -> str | None:
    if revision and _SHA.fullmatch(revision):
        return revision
    from .target import hub_cache_dir, offline_mode

    if offline_mode(offline):
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(repo, revision=revision, cache_dir=hub_cache_dir(), local_files_only=True))
        return folder.name if _SHA.fullmatch(folder.name) else None
    from huggingface_hub import HfApi

    return HfApi().model_info(repo, revision=revision).sha


# -- the worker side -----------------------------------------------------------------------------

@dataclass
class Job:
    """What a worker needs to scan one target (picklable; sent to a pool process or a Ray task)."""

    spec: str
    key: str
    options: dict[str, Any]
    fail_on: str
    suppress: tuple[str, ...]
    severity: dict[str, str]
    kill_times: int = 0
    kill_marker: str | None = None
    attempt: int = 1
    spool: str | None = None


@dataclass
class Outcome:
    """What a worker returns: the result fields it knows and the report as JSON text (None when the
    scan raised before a report existed)."""

    status: str
    report_json: str | None
    error: str | None
    wall_seconds: float
    exit_code: int


def run_job(job: Job) -> Outcome:
    """Scan one target in this process (pool worker or Ray task) and apply the policy.

    Never raises for a scan problem: a target that cannot be loaded, and any exception, become a
    ``failed`` outcome with the reason."""
    _test_kill(job)
    t0 = time.perf_counter()
    try:
        from .pipeline import ScanOptions, scan_to_report
        from .policy import apply_policy, exit_code
        from .report import RiskLevel

        opts = ScanOptions(**job.options)
        report, load_error = scan_to_report(job.spec, opts, on_hang=lambda stage, partial: _hung(job, stage, partial))
        report = apply_policy(report, job.suppress, job.severity, job.fail_on)
        code = int(exit_code(report, RiskLevel(job.fail_on)))
        if load_error is not None:
            status, error = "failed", _one_line(load_error)
        elif report.complete:
            status, error = "ok", None
        else:
            status = "incomplete"
            error = _one_line("; ".join([e.message for e in report.errors] + report.not_analysed))[:500]
        return Outcome(status, report.to_json(), error, round(time.perf_counter() - t0, 2), code)
    except Exception as exc:  # noqa: BLE001 - one target's bug must not cost the batch
        return Outcome("failed", None, f"scan raised {type(exc).__name__}: {_one_line(exc)[:300]}",
                       round(time.perf_counter() - t0, 2), int(ExitCode.ERROR))


def _hung(job: Job, stage: str, partial: Any) -> None:
    """Watchdog callback: a stage is stuck in native code past its deadline. Leave the partial report
    in ``job.spool`` (pool workers share the driver's disk) and end this process; the driver records
    the target as incomplete from it (Ray: the task fails and is retried, then reported failed)."""
    try:
        if job.spool:
            from .policy import apply_policy, exit_code
            from .report import RiskLevel

            rep = apply_policy(partial, job.suppress, job.severity, job.fail_on)
            Path(job.spool).write_text(json.dumps({"stage": stage, "report": rep.to_json(),
                                                   "exit_code": int(exit_code(rep, RiskLevel(job.fail_on)))}))
    finally:
        os._exit(int(ExitCode.ERROR))


def _test_kill(job: Job) -> None:
    """Test-only (see :data:`TEST_KILL_ENV`): SIGKILL this process on the job's first ``kill_times`` attempts."""
    if job.kill_times <= 0 or not job.kill_marker:
        return
    marker = Path(job.kill_marker)
    marker.parent.mkdir(parents=True, exist_ok=True)
    n = int(marker.read_text() or 0) if marker.exists() else 0
    if n < job.kill_times:
        marker.write_text(str(n + 1))
        os.kill(os.getpid(), signal.SIGKILL)


def _init_worker() -> None:
    """Pool worker start: Ctrl-C goes to the parent only (it stops the batch and kills the workers),
    so that an interrupted scan is never recorded as finished; SIGTERM, which the parent turns into an
    interrupt while the batch runs, kills a worker as usual."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _one_line(message: object) -> str:
    return " ".join(str(message).split()) or "unknown error"


# -- the driver side -----------------------------------------------------------------------------

def run_batch(targets: list[BatchTarget], output_dir: str | Path, options: BatchOptions | None = None,
              progress: Progress | None = None) -> BatchResult:
    """Scan ``targets``, writing one JSON report per target, its result, and the summaries to ``output_dir``.

    Args:
        targets: from :func:`read_targets` (or built by hand).
        output_dir: created if missing; reused for resume.
        options: :class:`BatchOptions`.
        progress: called with a :class:`BatchEvent` as targets start and finish (never prints).

    Returns:
        The :class:`BatchResult`; a Ctrl-C stops the batch, marks unfinished targets ``failed``
        (``batch interrupted``) and still returns it with ``interrupted=True``.

    Raises:
        BadInput: no targets, an unusable output directory, invalid options, or ``ray`` asked for but
            not installed or not reachable.
    """
    from .pipeline import ScanOptions
    from .report import RiskLevel

    opts = options or BatchOptions()
    scan = dataclasses.replace(opts.scan) if opts.scan is not None else ScanOptions()
    try:
        RiskLevel(opts.fail_on)
    except ValueError:
        raise BadInput(f"unknown --fail-on level {opts.fail_on!r}") from None
    if not targets:
        raise BadInput("no targets to scan")
    if opts.workers is not None and opts.workers < 1:
        raise BadInput(f"workers must be at least 1, not {opts.workers}")
    if opts.retries < 0:
        raise BadInput(f"retries must be 0 or more, not {opts.retries}")
    if opts.ray:
        try:
            import ray  # noqa: F401 - only whether it is there; imported for real in _run_ray
        except ImportError:
            raise BadInput("--ray needs the optional dependency ray: pip install 'scanner[ray]'") from None
    out = Path(output_dir)
    try:
        (out / "state").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"{output_dir}: cannot create the output directory ({exc.strerror or exc})") from None
    progress = progress or (lambda ev: None)
    t_start = time.perf_counter()
    results: dict[str, TargetResult] = {}
    identities = {t.key: identity(t, scan.offline) for t in targets}
    todo: list[BatchTarget] = []
    for t in targets:
        prev = None if opts.force else _previous(out, t, identities[t.key])
        if prev is not None:
            results[t.key] = prev
        else:
            todo.append(t)

    backend = "ray" if opts.ray else "pool"
    workers = opts.workers or default_workers(len(todo) or 1, scan.max_memory)
    state = _State(out, targets, results, backend, workers, progress, t_start, identities)
    for t in targets:
        if t.key in results:
            progress(BatchEvent("reused", t.spec, "report for this revision exists", results[t.key], len(results), len(targets)))
    jobs = [_job(t, scan, opts, workers if backend == "pool" else None) for t in todo]
    if backend == "pool":
        for j in jobs:
            j.spool = str(out / "state" / f".{j.key}.hung.json")
    interrupted = False
    if jobs:
        try:
            if backend == "ray":
                state.workers = _run_ray(jobs, todo, scan, opts, state)
            else:
                progress(BatchEvent("start", message=f"{len(jobs)} to scan, {len(results)} reused; process pool of {workers} "
                                                     f"worker(s), {jobs[0].options['threads']} torch thread(s) each", total=len(targets)))
                _run_pool(jobs, workers, opts.retries, state)
        except KeyboardInterrupt:
            interrupted = True
            for t in targets:
                if t.key not in results:
                    results[t.key] = TargetResult(t.spec, "failed", error="batch interrupted before this target finished; run it again to resume",
                                                  identity=identities[t.key], line=t.line, attempts=0)
            progress(BatchEvent("interrupted", message="batch interrupted", done_count=len(results), total=len(targets)))
    return state.finish(interrupted)


def _job(t: BatchTarget, scan: Any, opts: BatchOptions, workers: int | None) -> Job:
    options = dataclasses.asdict(scan)
    if options.get("only") is not None:
        options["only"] = tuple(options["only"])
    if options.get("threads") is None:
        options["threads"] = max(1, cpu_cores() // workers) if workers else 1
    kill_times, marker = _kill_hook(t)
    return Job(t.spec, t.key, options, opts.fail_on, tuple(opts.suppress), dict(opts.severity), kill_times, marker)


def _kill_hook(t: BatchTarget) -> tuple[int, str | None]:
    spec = os.environ.get(TEST_KILL_ENV, "")
    where = os.environ.get(TEST_KILL_DIR_ENV, "")
    if not spec or not where:
        return 0, None
    for part in spec.split(","):
        sub, _, times = part.rpartition(":")
        if sub and sub in t.spec and times.isdigit():
            return int(times), str(Path(where) / f"{t.key}.kills")
    return 0, None


def _previous(out: Path, t: BatchTarget, ident: str | None) -> TargetResult | None:
    """The earlier result of ``t`` when it may be reused: same identity, status ok/incomplete, report present."""
    if ident is None:
        return None
    try:
        prev = TargetResult.from_dict(json.loads((out / "state" / f"{t.key}.json").read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if prev.identity != ident or prev.status == "failed" or not prev.report or not (out / prev.report).is_file():
        return None
    return dataclasses.replace(prev, target=t.spec, line=t.line, reused=True)


class _State:
    """Driver-side bookkeeping: records each outcome at once (report, state file, summaries)."""

    def __init__(self, out: Path, targets: list[BatchTarget], results: dict[str, TargetResult], backend: str,
                 workers: int, progress: Progress, t_start: float, identities: dict[str, str | None]):
        self.out, self.targets, self.results, self.backend = out, targets, results, backend
        self.identities = identities
        self.workers, self.progress, self.t_start = workers, progress, t_start
        self.by_key = {t.key: t for t in targets}

    def record(self, job: Job, outcome: Outcome, attempts: int | None) -> TargetResult:
        """Turn a worker's outcome into a :class:`TargetResult`; write the report, the state file and the summaries."""
        t = self.by_key[job.key]
        res = TargetResult(t.spec, outcome.status, wall_seconds=outcome.wall_seconds, error=outcome.error,
                           exit_code=outcome.exit_code, attempts=attempts, line=t.line)
        if outcome.report_json is not None:
            _atomic_write(self.out / f"{t.key}.json", outcome.report_json if outcome.report_json.endswith("\n") else outcome.report_json + "\n")
            res.report = f"{t.key}.json"
            _fill_from_report(res, json.loads(outcome.report_json))
        # The identity taken before the scan (a local folder changed during its scan is scanned again next
        # time); a hub target whose revision could not be resolved beforehand gets the one its report names.
        res.identity = self.identities.get(t.key)
        if res.identity is None and t.hub is not None and res.revision:
            res.identity = f"hub:{res.revision}"
        _atomic_write(self.out / "state" / f"{t.key}.json", json.dumps(res.to_dict(), indent=2) + "\n")
        self.results[t.key] = res
        self.write_summaries()
        self.progress(BatchEvent("done", t.spec, result=res, done_count=len(self.results), total=len(self.targets)))
        return res

    def ordered(self) -> list[TargetResult]:
        return [self.results[t.key] for t in self.targets if t.key in self.results]

    def exit_code(self) -> int:
        results = self.ordered()
        if len(results) < len(self.targets):
            return int(ExitCode.ERROR)
        return max((r.exit_code for r in results), default=int(ExitCode.ERROR))

    def write_summaries(self, interrupted: bool = False) -> tuple[Path, Path]:
        results = self.ordered()
        wall = round(time.perf_counter() - self.t_start, 2)
        data = {"backend": self.backend, "workers": self.workers, "wall_seconds": wall, "exit_code": self.exit_code(),
                "interrupted": interrupted, "finished": len(results), "total": len(self.targets),
                "counts": {s: sum(r.status == s for r in results) for s in STATUSES},
                "targets": [r.to_dict() for r in results]}
        js, md = self.out / "summary.json", self.out / "summary.md"
        _atomic_write(js, json.dumps(data, indent=2) + "\n")
        _atomic_write(md, summary_markdown(results, data))
        return js, md

    def finish(self, interrupted: bool) -> BatchResult:
        js, md = self.write_summaries(interrupted)
        return BatchResult(self.ordered(), self.exit_code(), self.backend, self.workers, round(time.perf_counter() - self.t_start, 2),
                           str(self.out), str(js), str(md), interrupted)


def _fill_from_report(res: TargetResult, rep: dict[str, Any]) -> None:
    res.verdict = rep.get("verdict")
    risk = rep.get("risk") or {}
    res.level, res.score = risk.get("level"), risk.get("score")
    res.revision = (rep.get("target") or {}).get("revision")
    cands = rep.get("candidates") or []
    if cands:
        c = max(cands, key=lambda c: (c.get("score") or 0.0, c.get("flip_rate") or 0.0))
        res.top_candidate = f"'{c.get('text')}' -> {c.get('target_label_name')} (flip {c.get('flip_rate', 0):.2f})"


def summary_markdown(results: list[TargetResult], data: dict[str, Any]) -> str:
    """The summary table as markdown: target, revision, verdict, score, top candidate, wall s, status, error."""
    def cell(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ") if v not in (None, "") else "-"

    counts = data["counts"]
    lines = [f"# scanner scan-many: {data['finished']}/{data['total']} targets, exit {data['exit_code']}", "",
             f"{counts['ok']} ok, {counts['incomplete']} incomplete, {counts['failed']} failed; backend {data['backend']} "
             f"({data['workers']} workers), {data['wall_seconds']:.1f} s wall" + (" — **interrupted**" if data.get("interrupted") else ""), "",
             "| target | revision | verdict | score | top candidate | wall s | status | error |",
             "| --- | --- | --- | ---: | --- | ---: | --- | --- |"]
    for r in results:
        rev = r.revision[:12] if r.revision and _SHA.fullmatch(r.revision) else r.revision
        score = f"{r.score:.3f}" if r.score is not None else "-"
        status = r.status + (" (reused)" if r.reused else "") + (f" ({r.attempts} attempts)" if r.attempts and r.attempts > 1 else "")
        target = f"[{cell(r.target)}]({r.report})" if r.report else cell(r.target)
        lines.append(f"| {target} | {cell(rev)} | {cell(r.verdict)} | {score} | {cell(r.top_candidate)} | {r.wall_seconds:.1f} | "
                     f"{status} | {cell((r.error or '')[:200])} |")
    return "\n".join(lines) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# -- process pool --------------------------------------------------------------------------------

def _run_pool(jobs: list[Job], workers: int, retries: int, state: _State) -> None:
    """Run ``jobs`` on ``workers`` single-process executors (spawn). A dead worker's executor is
    replaced and only its own job is retried or failed."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")
    queue = deque(jobs)
    slots: list[Any] = [None] * min(workers, len(jobs))
    running: dict[Any, tuple[int, Job]] = {}
    procs: list[list[Any]] = [[] for _ in slots]  # each slot's worker processes, kept to read their exit codes
    try:
        while queue or running:
            busy = {i for i, _ in running.values()}
            for i in range(len(slots)):
                if queue and i not in busy:
                    if slots[i] is None:
                        slots[i] = ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=_init_worker)
                    job = queue.popleft()
                    running[slots[i].submit(run_job, job)] = (i, job)
                    # Held here because the executor forgets its processes once it is broken.
                    procs[i] = list((getattr(slots[i], "_processes", None) or {}).values())
                    state.progress(BatchEvent("scanning", job.spec, f"attempt {job.attempt}" if job.attempt > 1 else "",
                                              done_count=len(state.results), total=len(state.targets)))
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                i, job = running.pop(fut)
                try:
                    outcome = fut.result()
                except BrokenProcessPool:
                    why = _dead_worker(procs[i])
                    _discard(slots[i])
                    slots[i] = None
                    hung = _spooled(job)
                    if hung is not None:  # the watchdog ended it; its report says what was covered
                        state.record(job, hung, job.attempt)
                        continue
                    if job.attempt <= retries:
                        state.progress(BatchEvent("retry", job.spec, f"worker died ({why}); attempt {job.attempt + 1} of {retries + 1}",
                                                  done_count=len(state.results), total=len(state.targets)))
                        queue.appendleft(dataclasses.replace(job, attempt=job.attempt + 1))
                        continue
                    outcome = Outcome("failed", None, f"worker process died during the scan ({why}) on each of {job.attempt} attempt(s)",
                                      0.0, int(ExitCode.ERROR))
                except Exception as exc:  # noqa: BLE001 - e.g. an outcome that could not be sent back
                    outcome = Outcome("failed", None, f"worker error {type(exc).__name__}: {_one_line(exc)[:300]}", 0.0, int(ExitCode.ERROR))
                state.record(job, outcome, job.attempt)
    finally:
        for ex in slots:
            if ex is not None:
                _discard(ex, kill=bool(running))


def _spooled(job: Job) -> Outcome | None:
    """The partial report a worker left before the watchdog ended it (see :func:`_hung`), or None."""
    if not job.spool or not Path(job.spool).is_file():
        return None
    try:
        data = json.loads(Path(job.spool).read_text())
        Path(job.spool).unlink()
        return Outcome("incomplete", data["report"], f"stage {data['stage']} hung past its deadline; the worker was ended",
                       0.0, int(data["exit_code"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _dead_worker(processes: list[Any]) -> str:
    """How a worker process of ``processes`` (``multiprocessing.Process``) ended: exit code or signal, best effort."""
    try:
        for p in processes:
            p.join(timeout=1)
            if p.exitcode is not None and p.exitcode < 0:
                try:
                    name = signal.Signals(-p.exitcode).name
                except ValueError:
                    name = f"signal {-p.exitcode}"
                return f"killed by {name}" + ("; out of memory?" if name == "SIGKILL" else "")
            if p.exitcode is not None:
                return f"exit code {p.exitcode}"
    except Exception:  # noqa: BLE001 - only for the message
        pass
    return "exited unexpectedly"


def _discard(executor: Any, kill: bool = False) -> None:
    """Shut an executor down without waiting; with ``kill`` (an interrupted batch) end its worker first."""
    if kill:
        for p in list(getattr(executor, "_processes", {}).values()):
            try:
                p.kill()
            except Exception:  # noqa: BLE001
                pass
    executor.shutdown(wait=not kill, cancel_futures=True)


# -- Ray -----------------------------------------------------------------------------------------

def _run_ray(jobs: list[Job], todo: list[BatchTarget], scan: Any, opts: BatchOptions, state: _State) -> int:
    """Run ``jobs`` as Ray tasks; returns the cluster's CPU count. Connects to (or starts) Ray and
    shuts down a runtime it started itself.

    Raises:
        BadInput: ray is not installed, or the cluster cannot be reached.
    """
    try:
        import ray
        from ray import exceptions as ray_errors
    except ImportError:
        raise BadInput("--ray needs the optional dependency ray: pip install 'scanner[ray]'") from None
    started = False
    if not ray.is_initialized():
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        address = None if opts.ray == "auto" else opts.ray
        if address == "local" and opts.workers:
            kw["num_cpus"] = opts.workers
        try:
            ray.init(address=address, **kw)
        except Exception as exc:  # noqa: BLE001 - ray raises ConnectionError, ValueError, RuntimeError...
            raise BadInput(f"--ray {opts.ray}: cannot start or reach Ray ({type(exc).__name__}: {_one_line(exc)[:200]})") from None
        started = True
    try:
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        node_cpus = max((n.get("CPU", 0) for n in nodes), default=1) or 1
        node_mem = max((n.get("memory", 0) for n in nodes), default=0)
        total_cpus = int(sum(n.get("CPU", 0) for n in nodes)) or 1
        remote = ray.remote(run_job)
        refs: dict[Any, Job] = {}
        state.progress(BatchEvent("start", message=f"{len(jobs)} to scan, {len(state.results)} reused; Ray with {total_cpus} CPU(s) "
                                                   f"on {len(nodes)} node(s)", total=len(state.targets)))
        for job, t in zip(jobs, todo):
            cpus = min(max(1, int(job.options.get("threads") or 1)), int(node_cpus))
            job.options["threads"] = cpus
            res: dict[str, Any] = {"num_cpus": cpus, "max_retries": opts.retries, "retry_exceptions": False}
            mem = memory_request(t, scan)
            if mem and node_mem and mem > node_mem:
                state.record(job, Outcome("failed", None, f"needs about {mem / 2**30:.1f} GiB of memory; the largest Ray node offers "
                                                          f"{node_mem / 2**30:.1f} GiB", 0.0, int(ExitCode.ERROR)), None)
                continue
            if mem:
                res["memory"] = mem
            if opts.gpus_per_scan:
                res["num_gpus"] = opts.gpus_per_scan
            refs[remote.options(**res).remote(job)] = job
            state.progress(BatchEvent("scanning", job.spec, done_count=len(state.results), total=len(state.targets)))
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                job = refs[ref]
                try:
                    outcome = ray.get(ref)
                except ray_errors.RayError as exc:
                    outcome = Outcome("failed", None, f"Ray task failed after up to {opts.retries + 1} attempt(s): {type(exc).__name__}: "
                                                      f"{_one_line(exc)[:200]}", 0.0, int(ExitCode.ERROR))
                state.record(job, outcome, None)
        return total_cpus
    except KeyboardInterrupt:
        for ref in list(locals().get("refs", {})):
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001
                pass
        raise
    finally:
        if started:
            ray.shutdown()
