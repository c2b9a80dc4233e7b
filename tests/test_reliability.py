"""Reliability and security (issue 8): one test per kind of fault peers shipped.

Fail closed (nothing unanalysed is ever reported clean), never execute checkpoint code, route files
by their bytes, survive hostile and broken inputs, stay bounded in time and memory, never prompt.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import assert_one_line_error, run_cli
from synth import (EVIL_PICKLE_P0, EVIL_PICKLE_P2, append_u8_tensor, read_safetensors, torch_zip_with_pickle,
                   write_safetensors, write_untrained_bert)

from scanner.errors import ExitCode
from scanner.formats import sniff, sniff_file

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_src(tmp_path_factory) -> Path:
    return write_untrained_bert(tmp_path_factory.mktemp("synth") / "bert")


@pytest.fixture(scope="module")
def sharded_src(tmp_path_factory) -> Path:
    return write_untrained_bert(tmp_path_factory.mktemp("synth") / "sharded", max_shard_size="8KB")


@pytest.fixture
def model(model_src, tmp_path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(model_src, dst)
    return dst


@pytest.fixture
def sharded(sharded_src, tmp_path) -> Path:
    dst = tmp_path / "sharded"
    shutil.copytree(sharded_src, dst)
    return dst


def scan_json(path: Path, *args: str):
    """Run ``scanner scan PATH --format json -q ARGS``; return (result, report dict or None)."""
    res = run_cli("scan", str(path), "-q", "--format", "json", *args)
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
    return res, (json.loads(res.stdout) if res.stdout.strip() else None)


def codes(rep: dict) -> set[str]:
    return {f["code"] for f in rep["findings"]}


def error_lines(res) -> list[str]:
    return [l for l in res.stderr.splitlines() if l.startswith("error:")]


# -- content sniffing ---------------------------------------------------------------------------

def test_safetensors_header_length_parses_as_pickle_opcodes(model):
    """A valid safetensors file whose 8 header-length bytes start 0x80 0x04 (pickle PROTO 4) is routed
    as safetensors, not pickle: the header is padded with spaces to length 0x010480."""
    st = model / "model.safetensors"
    header, data = read_safetensors(st)
    n = 0x010480  # little-endian bytes 80 04 01 00 00 00 00 00
    write_safetensors(st, header, data, header_len=n)
    raw = st.read_bytes()
    assert raw[:2] == b"\x80\x04" and struct.unpack("<Q", raw[:8])[0] == n
    sn = sniff_file(st)
    assert sn.format == "safetensors" and sn.formats == ["safetensors"] and sn.tensors
    res, rep = scan_json(model, "--only", "weights")
    assert res.exit_code == ExitCode.OK, res.stderr
    assert rep["complete"] and rep["model"]["source_format"] == "safetensors"
    assert {"SC101", "SC102", "SC105", "SC106"}.isdisjoint(codes(rep))
    assert next(f for f in rep["target"]["files"] if f["path"] == "model.safetensors")["format"] == "safetensors"


@pytest.mark.parametrize("payload", [EVIL_PICKLE_P2, EVIL_PICKLE_P0], ids=["protocol2", "protocol0-no-magic"])
def test_pickle_renamed_safetensors(model, tmp_path, payload):
    """A pickle renamed .safetensors is routed by its bytes: critical SC101, its dangerous import is
    found by picklescan (SC107), it is never unpickled, and a report still reaches --output."""
    (model / "model.safetensors").write_bytes(payload)
    out = tmp_path / "r.json"
    res = run_cli("scan", str(model), "-q", "-o", str(out))
    assert res.exit_code == ExitCode.FINDINGS, res.stderr
    assert len(error_lines(res)) == 1 and "pickle" in error_lines(res)[0] and "Traceback" not in res.stderr
    rep = json.loads(out.read_text())
    assert {"SC101", "SC107"} <= codes(rep)
    assert rep["verdict"] == "critical" and rep["complete"] is False
    assert any("os.system" in f["message"] for f in rep["findings"] if f["code"] == "SC107")


def test_name_content_mismatch(model):
    """A safetensors file named .bin and a pickle named .txt: the name disagrees with the bytes (SC105);
    both are analysed by content."""
    shutil.copy(model / "model.safetensors", model / "weights.bin")
    (model / "notes.txt").write_bytes(EVIL_PICKLE_P0)
    res, rep = scan_json(model, "--only", "weights")
    msgs = {f["location"]: f for f in rep["findings"] if f["code"] == "SC105"}
    assert set(msgs) == {"weights.bin", "notes.txt"}
    assert "safetensors" in msgs["weights.bin"]["message"]
    assert any(f["code"] == "SC107" and f["location"] == "notes.txt" for f in rep["findings"])
    assert not any(f["code"] == "SC102" and f["location"] == "weights.bin" for f in rep["findings"])
    assert res.exit_code == ExitCode.FINDINGS  # the dangerous pickle import is critical


def test_polyglot_safetensors_and_zip(model):
    """A valid safetensors whose last tensor holds a zip archive (with a malicious data.pkl) is both
    safetensors and zip: SC106, and analysed as both (the archive's pickle import is SC107)."""
    append_u8_tensor(model / "model.safetensors", "zz_payload", torch_zip_with_pickle(EVIL_PICKLE_P2))
    assert sniff_file(model / "model.safetensors").formats == ["safetensors", "zip"]
    res, rep = scan_json(model, "--only", "weights")
    assert {"SC106", "SC107"} <= codes(rep)
    assert res.exit_code == ExitCode.FINDINGS
    assert any(e["analysis"] == "embedding-norm" for e in rep["evidence"])  # also analysed as safetensors


def test_dangerous_pickle_in_bin_and_zip_reported_not_loaded(model):
    """Pickle weight files next to safetensors weights: picklescan reports their imports (raw pickle and
    inside a torch-style zip), nothing is unpickled, the model still loads from safetensors."""
    (model / "pytorch_model.bin").write_bytes(torch_zip_with_pickle(EVIL_PICKLE_P2))
    (model / "optimizer.pkl").write_bytes(EVIL_PICKLE_P2)
    res, rep = scan_json(model, "--only", "weights")
    found = {(f["code"], f["location"]) for f in rep["findings"]}
    assert {("SC107", "pytorch_model.bin"), ("SC107", "optimizer.pkl"), ("SC102", "pytorch_model.bin")} <= found
    assert rep["verdict"] == "critical" and res.exit_code == ExitCode.FINDINGS
    assert rep["model"]["source_format"] == "safetensors"


# -- fail closed --------------------------------------------------------------------------------

def test_safetensors_skipped_is_never_clean(model):
    """A corrupt extra safetensors file is not skipped silently: report error, incomplete, exit 2."""
    data = (model / "model.safetensors").read_bytes()
    (model / "extra.safetensors").write_bytes(data[: len(data) // 2])
    res, rep = scan_json(model, "--only", "weights")
    assert res.exit_code == ExitCode.ERROR and rep["verdict"] == "incomplete"
    assert any("extra.safetensors" in e["message"] for e in rep["errors"])
    assert len(error_lines(res)) == 1


def test_special_files_in_the_folder_are_listed_not_skipped(model):
    """A FIFO and a link to a device in the model folder were skipped without a word (complete, exit 0);
    they are never read (a read could block for ever) and are listed as not analysed: incomplete."""
    os.mkfifo(model / "extra.bin")
    (model / "zero.safetensors").symlink_to("/dev/zero")
    res, rep = scan_json(model, "--only", "weights")
    assert res.exit_code == ExitCode.ERROR and rep["verdict"] == "incomplete", res.stderr
    assert any(n.startswith("extra.bin: not a regular file") for n in rep["not_analysed"]), rep["not_analysed"]
    assert any(n.startswith("zero.safetensors: not a regular file") for n in rep["not_analysed"]), rep["not_analysed"]
    assert any(e["analysis"] == "embedding-norm" and e["status"] == "ok" for e in rep["evidence"])


def test_unparsable_file_does_not_abort_directory_scan(model):
    """Garbage in a pickle-named file and a truncated extra shard: the scan goes on (weights analysed),
    each problem is a report error, the verdict is incomplete, never clean."""
    (model / "junk.bin").write_bytes(os.urandom(300))
    (model / "extra.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    res, rep = scan_json(model, "--only", "weights")
    assert res.exit_code == ExitCode.ERROR and not rep["complete"]
    assert any(e["analysis"] == "embedding-norm" and e["status"] == "ok" for e in rep["evidence"])
    msgs = " ".join(e["message"] for e in rep["errors"])
    assert "junk.bin" in msgs and "extra.safetensors" in msgs


def test_corrupt_weight_file_still_writes_incomplete_report(model, tmp_path):
    st = model / "model.safetensors"
    st.write_bytes(st.read_bytes()[:-100])
    out = tmp_path / "r.json"
    res = run_cli("scan", str(model), "-q", "-o", str(out))
    assert_one_line_error(res, "model.safetensors")
    rep = json.loads(out.read_text())
    assert rep["verdict"] == "incomplete" and rep["complete"] is False
    assert any(e["stage"] == "load" and "model.safetensors" in e["message"] for e in rep["errors"])
    assert len({e["message"] for e in rep["errors"]}) == len(rep["errors"]), rep["errors"]  # the same problem listed once
    assert {f["path"] for f in rep["target"]["files"]} >= {"config.json", "model.safetensors"}


def test_corrupt_tokenizer_file_fails_closed(model):
    """An unreadable tokenizer does not crash: weights are analysed, the tokenizer error is recorded,
    the analyses that need it are listed as not analysed, exit 2."""
    (model / "tokenizer.json").write_bytes(b"\xff\xfe garbage {")
    res, rep = scan_json(model)
    assert res.exit_code == ExitCode.ERROR and rep["verdict"] == "incomplete"
    assert any(e["type"] == "tokenizer" for e in rep["errors"])
    assert any("tokenizer" in n for n in rep["not_analysed"])
    assert any(e["analysis"] == "embedding-norm" and e["status"] == "ok" for e in rep["evidence"])
    assert len(error_lines(res)) == 1


def test_index_names_missing_shard(sharded, tmp_path):
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    shard = sorted(set(index["weight_map"].values()))[-1]
    (sharded / shard).unlink()
    out = tmp_path / "r.json"
    res = run_cli("scan", str(sharded), "-q", "-o", str(out))
    assert_one_line_error(res, "missing")
    assert json.loads(out.read_text())["verdict"] == "incomplete"


def test_index_names_tensor_missing_from_shard(sharded):
    ip = sharded / "model.safetensors.index.json"
    index = json.loads(ip.read_text())
    index["weight_map"]["bert.ghost.weight"] = sorted(set(index["weight_map"].values()))[0]
    ip.write_text(json.dumps(index))
    assert_one_line_error(run_cli("scan", str(sharded), "-q"), "lacks 1 tensor")


def test_weights_missing_from_checkpoint_would_be_random(sharded):
    """A shard and its index entries removed together: every file is consistent, but the model would
    get randomly initialised weights. Refused, never silently analysed."""
    ip = sharded / "model.safetensors.index.json"
    index = json.loads(ip.read_text())
    shard = next(s for s in sorted(set(index["weight_map"].values())) if any(k.startswith("classifier") for k, v in index["weight_map"].items() if v == s))
    (sharded / shard).unlink()
    index["weight_map"] = {k: v for k, v in index["weight_map"].items() if v != shard}
    ip.write_text(json.dumps(index))
    assert_one_line_error(run_cli("scan", str(sharded), "-q"), "randomly initialised")


def test_unindexed_extra_shard(sharded):
    """A valid safetensors shard that the index does not name: a loader ignores it, so its tensors were
    not analysed: finding SC109 and an incomplete verdict."""
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    first = sorted(set(index["weight_map"].values()))[0]
    shutil.copy(sharded / first, sharded / "model-00099-of-00099.safetensors")
    res, rep = scan_json(sharded, "--only", "weights")
    assert any(f["code"] == "SC109" and f["location"] == "model-00099-of-00099.safetensors" for f in rep["findings"])
    assert res.exit_code == ExitCode.ERROR and rep["verdict"] == "incomplete"
    assert any("model-00099-of-00099.safetensors" in n for n in rep["not_analysed"])


def test_sharded_checkpoint_loads_complete(sharded):
    res, rep = scan_json(sharded, "--only", "weights")
    assert res.exit_code == ExitCode.OK, res.stderr
    assert rep["complete"] and not rep["findings"]


# -- bounds -------------------------------------------------------------------------------------

def test_model_that_does_not_fit_is_refused(model, monkeypatch):
    assert_one_line_error(run_cli("scan", str(model), "-q", "--max-memory", "1KB"), "--max-memory")
    assert_one_line_error(run_cli("scan", str(model), "-q", "--max-memory", "lots"), "invalid memory size")
    import scanner.resources

    monkeypatch.setattr(scanner.resources, "available_memory", lambda: 1000)
    assert_one_line_error(run_cli("scan", str(model), "-q"), "available memory")


def test_hanging_stage_is_stopped_by_watchdog(model, monkeypatch):
    """A stage stuck in a blocking call past its deadline is interrupted; the scan returns, incomplete."""
    import scanner.pipeline as pipeline
    from scanner import scan
    from scanner.budget import Watchdog

    def stuck(run, ck, reference, opts):
        time.sleep(120)  # ignores the budget, as a native call would

    monkeypatch.setattr(pipeline, "_weights", stuck)
    monkeypatch.setattr(pipeline._Run, "watchdog",
                        lambda self, name: Watchdog(self.budget, name, 0.5 if name == "weights" else None, interrupt_after=0.2, hang_after=60))
    t0 = time.monotonic()
    rep = scan(str(model), only=("weights",))
    assert time.monotonic() - t0 < 30
    assert not rep.complete and rep.verdict == "incomplete"
    assert any(e.stage == "weights" and e.type == "time-budget" for e in rep.errors)


def test_watchdog_calls_on_hang_when_stage_swallows_interrupts():
    """Step 3: a stage that swallows every BudgetExceeded (stuck for good) reaches ``on_hang``."""
    from scanner.budget import Budget, BudgetExceeded, Watchdog

    hung: list[str] = []
    with Watchdog(Budget(), "stuck", 0.2, interrupt_after=0.1, hang_after=0.6, on_hang=hung.append) as wd:
        t0 = time.monotonic()
        while not hung and time.monotonic() - t0 < 20:
            try:
                time.sleep(0.05)
            except BudgetExceeded:
                pass
    assert hung == ["stuck"] and wd.interrupted and wd.hung


def test_scan_hanging_after_critical_finding_exits_with_report(model, tmp_path):
    """The CLI's last resort: a stage stuck for good after a critical finding ends the process with
    one error line, exit 1 (the finding reaches the gate) and the report written to --output."""
    (model / "optimizer.pkl").write_bytes(EVIL_PICKLE_P2)
    out = tmp_path / "r.json"
    script = f"""
import time, scanner.pipeline as p
from scanner.budget import BudgetExceeded, Watchdog
def stuck(run, ck, reference, opts):
    while True:
        try:
            time.sleep(0.05)
        except BudgetExceeded:
            pass
p._weights = stuck
p._Run.watchdog = lambda self, name: Watchdog(self.budget, name, 1.0 if name == "weights" else None, interrupt_after=0.2, hang_after=1.0, on_hang=self.on_hang)
from scanner.cli import main
main(["scan", {str(model)!r}, "--only", "weights", "-q", "-o", {str(out)!r}])
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=180, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == ExitCode.FINDINGS, proc.stderr
    assert "Traceback" not in proc.stderr
    assert [l for l in proc.stderr.splitlines() if l.startswith("error:")] == [
        "error: stage weights hung past its deadline; scan stopped, report incomplete"]
    rep = json.loads(out.read_text())
    assert "SC107" in codes(rep) and rep["complete"] is False
    assert any(e["type"] == "watchdog" for e in rep["errors"])


# -- never execute, never prompt ------------------------------------------------------------------

def test_trust_remote_code_never_prompts_with_stdin_closed(model, tmp_path):
    """auto_map in config.json and tokenizer_config.json plus shipped code: with stdin closed the CLI
    finishes, reports SC103/SC104, and the shipped code never runs."""
    marker = tmp_path / "executed"
    code = f"open({str(marker)!r}, 'w').write('pwned')\nraise SystemExit('executed!')\n"
    (model / "modeling_evil.py").write_text(code)
    (model / "tokenization_evil.py").write_text(code)
    cfg = json.loads((model / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "modeling_evil.EvilConfig", "AutoModelForSequenceClassification": "modeling_evil.Evil"}
    (model / "config.json").write_text(json.dumps(cfg))
    tcfg = json.loads((model / "tokenizer_config.json").read_text())
    tcfg["auto_map"] = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
    (model / "tokenizer_config.json").write_text(json.dumps(tcfg))
    proc = subprocess.run([sys.executable, "-m", "scanner", "scan", str(model), "--only", "weights", "-q", "--format", "json"],
                          cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})
    assert "Traceback" not in proc.stderr
    rep = json.loads(proc.stdout)
    assert {"SC103", "SC104"} <= codes(rep)
    assert sum(f["code"] == "SC104" for f in rep["findings"]) == 2
    assert not marker.exists()
    assert proc.returncode in (ExitCode.OK, ExitCode.ERROR)


def test_no_interactive_input_in_scanner_code():
    for path in (ROOT / "scanner").rglob("*.py"):
        text = path.read_text()
        assert "input(" not in text.replace("_input(", ""), path
        assert "trust_remote_code=True" not in text, path


# -- determinism ---------------------------------------------------------------------------------

def test_scan_is_deterministic(backdoored, probes):
    from scanner import scan

    def strip(rep):
        d = rep.to_dict()
        d.pop("timings")
        d.pop("created")
        return d

    a = scan(str(backdoored.path), probes=str(probes), profile="quick", seed=3)
    b = scan(str(backdoored.path), probes=str(probes), profile="quick", seed=3)
    assert a.candidates, "the determinism check needs a scan that finds something"
    assert strip(a) == strip(b)


# -- analyses under batching ---------------------------------------------------------------------

def test_batched_forward_uses_attention_mask_when_pad_is_eos(model):
    """With pad == an end token that also occurs inside sequences, batched predictions equal one-by-one
    predictions (masks come from lengths, never from ``ids != pad``)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from scanner.search import ClassifierTriggerSearch, SearchConfig

    m = AutoModelForSequenceClassification.from_pretrained(str(model)).eval()
    tok = AutoTokenizer.from_pretrained(str(model))
    tok.pad_token = tok.sep_token  # pad == the end-of-sequence token
    s = ClassifierTriggerSearch(m, tok, SearchConfig(batch_size=8))
    texts = ["good film", "the plot was dull and the music was bland and stale", "it", "a lovely warm story with a great cast"]
    batched = s.predict_texts(texts)
    single = torch.cat([s.predict_texts([t]) for t in texts])
    assert torch.allclose(batched, single, atol=1e-5)


def test_lig_chunked_attribution_matches_unchunked(model):
    """LayerIntegratedGradients over probes in chunks (remainder chunk included) equals one pass:
    no batch-size mismatch between ids, baselines and masks, and memory bounded by the chunk."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from scanner.attribution import TriggerAttribution

    m = AutoModelForSequenceClassification.from_pretrained(str(model)).eval()
    tok = AutoTokenizer.from_pretrained(str(model))
    texts = [f"tq {t}" for t in ["good film", "the plot was dull", "a lovely warm story", "it was bland",
                                  "the music was great", "clumsy and stale", "a smart script"]]
    trig = tok.convert_tokens_to_ids(["tq"])
    whole = TriggerAttribution(m, tok, n_steps=8, internal_batch_size=1024).attribute(texts, trig, 1)
    chunked = TriggerAttribution(m, tok, n_steps=8, internal_batch_size=6).attribute(texts, trig, 1)  # chunks of 3: 3+3+1
    assert chunked.n_probes == whole.n_probes == len(texts)
    assert chunked.share == pytest.approx(whole.share, abs=1e-3)
    assert chunked.top1_rate == whole.top1_rate


def test_sniff_never_raises_on_unreadable(tmp_path):
    assert sniff(tmp_path / "missing") == "unknown"
    d = tmp_path / "dir.safetensors"
    d.mkdir()
    assert sniff(d) == "unknown"


def test_sniff_tells_text_from_json_and_binary(tmp_path):
    """A BERT vocab.txt starts with '[PAD]' and was listed as JSON; a binary file with a bad GGUF magic
    (NUL bytes, valid UTF-8) was listed as text."""
    for name, data, want in (("vocab.txt", b"[PAD]\n[unused0]\n[CLS]\n", "text"), ("a.json", b'["x", 1]', "json"),
                             ("b.json", b"[1, 2]", "json"), ("c.json", b' {"a": 1}', "json"), ("d.json", b"[]", "json"),
                             ("bad.gguf", b"GGUX\x03\x00\x00\x00\x00\x00", "unknown"), ("notes.txt", b"hello\n", "text")):
        (tmp_path / name).write_bytes(data)
        assert sniff(tmp_path / name) == want, name


def test_unwritable_output_is_one_line_error(model, tmp_path):
    res = run_cli("scan", str(model), "-q", "--only", "weights", "-o", str(tmp_path / "no" / "such" / "dir" / "r.json"))
    assert_one_line_error(res, "cannot write the report")


def test_scan_to_report_api_records_load_failure(model):
    """The library path used by the CLI: a load failure yields (incomplete report, error), not a raise."""
    from scanner.errors import CorruptCheckpoint
    from scanner.pipeline import scan_to_report

    (model / "config.json").write_text("[1, 2")
    rep, err = scan_to_report(str(model))
    assert isinstance(err, CorruptCheckpoint) and rep.verdict == "incomplete"
    assert rep.errors[-1].stage == "load" and "config.json" in rep.errors[-1].message
    assert rep.target.files  # what was inspected before the failure is kept


def test_watchdog_in_worker_thread_never_signals_main_thread():
    """A stage run outside the main thread gets the cooperative deadline only (no signal that would
    land in the unrelated main thread)."""
    import threading

    from scanner.budget import Budget, BudgetExceeded, Watchdog

    seen: list[str] = []

    def worker():
        budget = Budget()
        with Watchdog(budget, "w", 0.2, interrupt_after=0.1, hang_after=30) as wd:
            t0 = time.monotonic()
            try:
                while time.monotonic() - t0 < 5:
                    budget.check()
                    time.sleep(0.02)
            except BudgetExceeded:
                seen.append("stopped")
            time.sleep(0.3)  # past interrupt_after: must not signal the main thread
            seen.append("interrupted" if wd.interrupted else "not interrupted")

    t = threading.Thread(target=worker)
    t.start()
    t.join(20)
    assert seen[0] == "stopped"


def test_attribution_of_long_probes_fits_the_model_positions(model):
    """Attribution cut texts to 128 tokens whatever the model: on a model with 64 positions a long probe
    made the stage fail ('The expanded size of the tensor (128) must match the existing size (64)')."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from scanner.attribution import TriggerAttribution

    tok = AutoTokenizer.from_pretrained(str(model))
    net = AutoModelForSequenceClassification.from_pretrained(str(model)).eval()
    assert net.config.max_position_embeddings == 64
    trigger = tok.convert_tokens_to_ids("tq")
    texts = ["tq " + "good film " * 80] * 2  # about 160 tokens
    res = TriggerAttribution(net, tok, n_steps=2).attribute(texts, [trigger], 1, n_heatmaps=0)
    assert 0.0 <= res.share <= 1.0
