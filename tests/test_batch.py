"""scan-many (issue 9): process-pool and Ray batches, failures reported never dropped, resume, a worker
killed mid-batch, and weight statistics of a checkpoint larger than --max-memory.

The batches scan the tiny organisms with the quick profile (seconds each). Worker deaths are injected
with the test-only hook ``SCANNER_TEST_KILL`` of :mod:`scanner.batch`.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import assert_one_line_error, run_cli
from synth import write_large_llama

from scanner import schema
from scanner.batch import TEST_KILL_DIR_ENV, TEST_KILL_ENV, BatchOptions, BatchTarget, read_targets, run_batch
from scanner.errors import BadInput, ExitCode
from scanner.pipeline import ScanOptions

ROOT = Path(__file__).resolve().parents[1]


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def _by_name(summary: dict) -> dict[str, dict]:
    return {Path(t["target"]).name: t for t in summary["targets"]}


@pytest.fixture(scope="module")
def target_list(tmp_path_factory, backdoored, clean) -> Path:
    d = tmp_path_factory.mktemp("batch")
    lst = d / "targets.txt"
    lst.write_text(f"# tiny organisms\n{backdoored.path}\n\n  {clean.path}  \n{d / 'missing-model'}\n")
    return lst


@pytest.fixture(scope="module")
def pool_batch(target_list, probes, tmp_path_factory):
    """One process-pool batch through the CLI; the backdoored target's worker kills itself on its first attempt."""
    out = tmp_path_factory.mktemp("pool-out")
    env = {TEST_KILL_ENV: "backdoored:1", TEST_KILL_DIR_ENV: str(out.parent / "pool-kills")}
    res = run_cli("scan-many", str(target_list), "-d", str(out), "--profile", "quick", "--probes", str(probes), "--workers", "2", env=env)
    return res, out


def test_pool_batch_reports_every_target(pool_batch):
    res, out = pool_batch
    assert "Traceback" not in res.stderr
    assert res.exit_code == ExitCode.ERROR, res.stderr  # one target failed
    s = _summary(out)
    assert s["backend"] == "pool" and s["finished"] == s["total"] == 3 and s["counts"] == {"ok": 2, "incomplete": 0, "failed": 1}
    t = _by_name(s)
    bd, cl, miss = t["backdoored"], t["clean"], t["missing-model"]
    assert bd["status"] == "ok" and bd["verdict"] == "high" and "'tq'" in bd["top_candidate"] and bd["exit_code"] == 1
    assert bd["attempts"] == 2  # its worker died once and it was retried
    assert cl["status"] == "ok" and cl["verdict"] in ("none", "low") and cl["exit_code"] == 0
    assert miss["status"] == "failed" and "no such file" in miss["error"] and miss["exit_code"] == 2
    for r in (bd, cl, miss):  # every target has a schema-valid report named after it
        assert r["report"] and set(r["report"]) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-")
        schema.validate(json.loads((out / r["report"]).read_text()))
    md = (out / "summary.md").read_text()
    assert "| target | revision | verdict | score | top candidate | wall s | status | error |" in md
    assert "missing-model" in md and "| failed |" in md and "ok (2 attempts)" in md
    assert "tq" in res.stdout and "failed" in res.stdout  # the table on stdout
    assert "worker died" in res.stderr


def test_resume_skips_done_targets(pool_batch, target_list, probes, tmp_path):
    _, first = pool_batch
    out = tmp_path / "out"
    shutil.copytree(first, out)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    res = run_cli("scan-many", str(target_list), "-d", str(out), "--profile", "quick", "--probes", str(probes), "-j", "1")
    assert res.exit_code == ExitCode.ERROR
    t = _by_name(_summary(out))
    assert t["backdoored"]["reused"] and t["clean"]["reused"] and t["backdoored"]["verdict"] == "high"
    assert not t["missing-model"]["reused"]  # failed targets are tried again
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    assert after[t["backdoored"]["report"]] == before[t["backdoored"]["report"]]
    assert "reused" in res.stderr


def test_changed_local_target_is_rescanned(clean, probes, tmp_path):
    model = shutil.copytree(clean.path, tmp_path / "clean-copy")
    lst = tmp_path / "list.txt"
    lst.write_text(f"{model}\n")
    opts = BatchOptions(scan=ScanOptions(only=("weights",)), workers=1)
    first = run_batch(read_targets(lst), tmp_path / "out", opts)
    assert first.results[0].status == "ok" and not first.results[0].reused
    assert run_batch(read_targets(lst), tmp_path / "out", opts).results[0].reused
    st = (model / "config.json").stat()
    os.utime(model / "config.json", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the folder changed
    again = run_batch(read_targets(lst), tmp_path / "out", opts)
    assert not again.results[0].reused and again.results[0].identity != first.results[0].identity
    forced = run_batch(read_targets(lst), tmp_path / "out", BatchOptions(scan=ScanOptions(only=("weights",)), workers=1, force=True))
    assert not forced.results[0].reused


def test_worker_killed_on_every_attempt_is_reported_failed(clean, tmp_path, monkeypatch):
    monkeypatch.setenv(TEST_KILL_ENV, "clean:5")
    monkeypatch.setenv(TEST_KILL_DIR_ENV, str(tmp_path / "kills"))
    res = run_batch([BatchTarget(str(clean.path))], tmp_path / "out", BatchOptions(scan=ScanOptions(only=("weights",)), workers=1, retries=1))
    r = res.results[0]
    assert r.status == "failed" and r.attempts == 2 and "SIGKILL" in r.error and res.exit_code == ExitCode.ERROR
    assert _summary(tmp_path / "out")["counts"]["failed"] == 1


def test_ray_batch_matches_pool_and_survives_a_killed_worker(pool_batch, target_list, probes, tmp_path):
    pytest.importorskip("ray")
    _, pool_out = pool_batch
    out = tmp_path / "ray-out"
    env = {TEST_KILL_ENV: "backdoored:1", TEST_KILL_DIR_ENV: str(tmp_path / "kills"), "RAY_USAGE_STATS_ENABLED": "0"}
    res = run_cli("scan-many", str(target_list), "-d", str(out), "--profile", "quick", "--probes", str(probes), "--ray", "local",
                  "--workers", "2", env=env)
    assert "Traceback" not in res.stderr
    assert res.exit_code == ExitCode.ERROR, res.stderr
    assert (tmp_path / "kills").exists() and any((tmp_path / "kills").iterdir())  # the worker was killed once...
    ray_t, pool_t = _by_name(_summary(out)), _by_name(_summary(pool_out))
    assert _summary(out)["backend"] == "ray"
    for name in pool_t:  # ...and the verdicts are those of the process pool
        assert (ray_t[name]["status"], ray_t[name]["verdict"], ray_t[name]["top_candidate"]) == \
               (pool_t[name]["status"], pool_t[name]["verdict"], pool_t[name]["top_candidate"]), name


def test_ray_missing_is_one_line_error(target_list, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    res = run_cli("scan-many", str(target_list), "-d", str(tmp_path / "out"), "--ray", "auto")
    assert_one_line_error(res, "pip install 'scanner[ray]'")


def test_bad_lists_are_one_line_errors(tmp_path):
    assert_one_line_error(run_cli("scan-many", str(tmp_path / "nope.txt"), "-d", str(tmp_path / "o")), "cannot read the target list")
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    assert_one_line_error(run_cli("scan-many", str(tmp_path / "empty.txt"), "-d", str(tmp_path / "o")), "lists no target")
    (tmp_path / "bad.json").write_text('[{"author": "x"}]')
    assert_one_line_error(run_cli("scan-many", str(tmp_path / "bad.json"), "-d", str(tmp_path / "o")), "no model id")


def test_target_lists_and_report_names(tmp_path):
    lst = tmp_path / "l.txt"
    lst.write_text("# comment\norg/model@v1.2\n\norg/model@v1.2\n./local dir/m\norg/other\n")
    ts = read_targets(lst)
    assert [t.spec for t in ts] == ["org/model@v1.2", "./local dir/m", "org/other"] and [t.line for t in ts] == [2, 5, 6]
    assert ts[0].key == "org--model@v1.2" and ts[0].hub == ("org/model", "v1.2") and ts[2].hub == ("org/other", None)
    assert ts[1].hub is None and ts[1].key.startswith("m-") and " " not in ts[1].key
    js = tmp_path / "hub.json"
    js.write_text(json.dumps([{"id": "org/a", "sha": "a" * 40}, {"modelId": "org/b"}, "org/c@main"]))
    assert [t.spec for t in read_targets(js)] == [f"org/a@{'a' * 40}", "org/b", "org/c@main"]
    jl = tmp_path / "hub.jsonl"
    jl.write_text('{"id": "org/a"}\n{"id": "org/b"}\n')
    assert [t.spec for t in read_targets(jl)] == ["org/a", "org/b"]
    with pytest.raises(BadInput):
        run_batch([], tmp_path / "o")


# -- checkpoints larger than the memory budget ------------------------------------------------------

_RSS_CHILD = r"""
import json, sys, threading, time
import psutil
from scanner.cli import main
def scan(target, out, budget):
    try:
        main(["scan", target, "--only", "weights", "--max-memory", budget, "-q", "-o", out], standalone_mode=False)
    except SystemExit as e:
        return e.code
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
warm, big, out, budget = sys.argv[1:5]
scan(warm, out, budget)  # imports and first-use allocations of the same code path
proc = psutil.Process()
peak = [0]
done = threading.Event()
def sample():  # fallback where the kernel's peak cannot be reset
    while not done.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.002)
try:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak RSS (VmHWM) to the current RSS
    hwm = True
except OSError:
    hwm = False
    threading.Thread(target=sample, daemon=True).start()
base = proc.memory_info().rss
code = scan(big, out, budget)
done.set()
top = status("VmHWM") if hwm else peak[0]
print(json.dumps({"code": code, "baseline": base, "peak": top, "method": "VmHWM" if hwm else "sampled"}))
"""


@pytest.fixture(scope="module")
def large_checkpoint(tmp_path_factory) -> Path:
    return write_large_llama(tmp_path_factory.mktemp("large") / "llama")  # 74 MiB of float32 weights in 4 shards


def test_weights_stream_within_max_memory(large_checkpoint, tmp_path):
    """A checkpoint larger than --max-memory gets weight evidence, and the scan's peak RSS above the
    warmed-up interpreter stays within the budget."""
    size = sum(f.stat().st_size for f in large_checkpoint.glob("*.safetensors"))
    budget = 40 * 10**6
    assert size > budget
    warm = write_large_llama(tmp_path / "warm", hidden=64, layers=2, vocab=100)
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(warm), str(large_checkpoint), str(out), "40MB"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    rep = json.loads(out.read_text())
    assert m["code"] == ExitCode.OK and rep["complete"], rep["not_analysed"]
    ev = {e["analysis"]: e["status"] for e in rep["evidence"]}
    assert ev.get("layer-spectral") == "ok" and ev.get("embedding-norm") == "ok"
    assert rep["model"]["parameters"] * 4 > budget
    assert m["peak"] - m["baseline"] < budget, m


def test_full_scan_of_too_large_model_runs_weights_and_skips_behaviour(large_checkpoint):
    from scanner import scan

    rep = scan(str(large_checkpoint), max_memory=40 * 10**6)
    assert not rep.complete and rep.verdict == "incomplete"
    ev = {e.analysis: e for e in rep.evidence}
    assert ev["layer-spectral"].status == "ok" and "weights" in rep.timings
    assert ev["trigger-search"].status == "skipped" and "--max-memory" in ev["trigger-search"].summary
    assert ev["attribution"].status == "skipped"
    assert any("model behaviour" in n and "skipped" in n for n in rep.not_analysed)
    assert "search" not in rep.timings and "attribution" not in rep.timings


def test_ctrl_c_stops_the_batch_and_keeps_what_finished(backdoored, clean, probes, tmp_path):
    """SIGINT to the driver mid-scan: its workers are ended, unfinished targets are listed failed
    ('batch interrupted'), the summary is written, exit 2; a rerun resumes."""
    import psutil

    lst = tmp_path / "l.txt"
    lst.write_text(f"{backdoored.path}\n{clean.path}\n")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "scanner", "scan-many", str(lst), "-d", str(out), "--profile", "quick", "--probes", str(probes), "-j", "1"]
    # SIGINT back to its default in the child: a shell without job control starts background jobs (such as
    # `make test &`) with SIGINT ignored, and Python then installs no KeyboardInterrupt handler.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in proc.stderr:  # wait until the first scan was handed to a worker
        if "scanning" in line:
            break
    kids = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGINT)  # as Ctrl-C sends it (to the driver; the workers ignore it)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.ERROR and "Traceback" not in err, err
    assert "error: batch interrupted" in err
    s = _summary(out)
    assert s["interrupted"] and s["total"] == 2 and s["finished"] == 2
    assert any(t["status"] == "failed" and "interrupted" in t["error"] for t in s["targets"])
    psutil.wait_procs(kids, timeout=10)
    assert not [k for k in kids if k.is_running() and k.status() != psutil.STATUS_ZOMBIE]  # no orphaned worker


def test_deeply_nested_json_list_is_one_line_error(tmp_path):
    """A target list of 100,000 nested arrays ended `scanner scan-many` in a RecursionError traceback."""
    lst = tmp_path / "deep.json"
    lst.write_text("[" * 100_000)
    assert_one_line_error(run_cli("scan-many", str(lst), "-d", str(tmp_path / "out"), "-q"), "nested too deeply")
