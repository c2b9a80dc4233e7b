"""Bad input: one-line error, exit code 2, never a traceback, never 'clean'."""
from __future__ import annotations

import json
import shutil
import struct

from helpers import assert_one_line_error, run_cli

from scanner.errors import ExitCode


def test_missing_path(tmp_path):
    res = run_cli("scan", str(tmp_path / "nope"), "-q")
    assert_one_line_error(res, "no such file")
    assert res.stdout == ""  # piped stdout means JSON, but a target that does not exist has no report
    out = tmp_path / "r.json"
    assert_one_line_error(run_cli("scan", str(tmp_path / "nope"), "-q", "--output", str(out)), "no such file")
    assert not out.exists()


def test_corrupt_safetensors(clean, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(clean.path, bad)
    st = bad / "model.safetensors"
    data = st.read_bytes()
    st.write_bytes(data[: len(data) // 2])  # truncated data buffer
    assert_one_line_error(run_cli("scan", str(bad), "-q"), "model.safetensors")
    st.write_bytes(struct.pack("<Q", 10**12) + b"{}")  # header length beyond the file
    assert_one_line_error(run_cli("scan", str(bad), "-q"), "header length")


def test_unsupported_architecture(clean, tmp_path):
    bad = tmp_path / "weird"
    shutil.copytree(clean.path, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["model_type"] = "frobnicator"
    cfg["architectures"] = ["FrobnicatorForSequenceClassification"]
    (bad / "config.json").write_text(json.dumps(cfg))
    assert_one_line_error(run_cli("scan", str(bad), "-q"), "remote code")


def test_unsupported_task_is_incomplete_not_clean(clean, tmp_path):
    enc = tmp_path / "encoder"
    shutil.copytree(clean.path, enc)
    cfg = json.loads((enc / "config.json").read_text())
    cfg["architectures"] = ["BertForMaskedLM"]
    (enc / "config.json").write_text(json.dumps(cfg))
    res = run_cli("scan", str(enc), "-q", "--format", "json")
    assert res.exit_code == ExitCode.ERROR
    assert json.loads(res.stdout)["verdict"] == "incomplete"


def test_pickle_only_checkpoint_is_refused(clean, tmp_path):
    pk = tmp_path / "pickled"
    shutil.copytree(clean.path, pk)
    (pk / "model.safetensors").unlink()
    (pk / "pytorch_model.bin").write_bytes(b"\x80\x04\x95" + b"\x00" * 32)
    assert_one_line_error(run_cli("scan", str(pk), "-q"), "refusing to unpickle")


def test_pickle_renamed_safetensors_is_refused(clean, tmp_path):
    """Refused with one error line; the critical SC101 finding reaches the gate, so exit 1 (not 2)."""
    pk = tmp_path / "disguised"
    shutil.copytree(clean.path, pk)
    (pk / "model.safetensors").write_bytes(b"\x80\x04\x95" + b"\x00" * 64)
    res = run_cli("scan", str(pk), "-q", "--format", "json")
    assert res.exit_code == ExitCode.FINDINGS, res.stderr
    errors = [l for l in res.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "pickle" in errors[0] and "Traceback" not in res.stderr
    rep = json.loads(res.stdout)
    assert rep["verdict"] == "critical" and rep["complete"] is False
    assert "SC101" in {f["code"] for f in rep["findings"]}


def test_remote_code_is_a_finding_and_never_run(clean, probes, tmp_path):
    rc = tmp_path / "remote"
    shutil.copytree(clean.path, rc)
    (rc / "modeling_evil.py").write_text("raise SystemExit('executed!')\n")
    cfg = json.loads((rc / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForSequenceClassification": "modeling_evil.Evil"}
    (rc / "config.json").write_text(json.dumps(cfg))
    res = run_cli("scan", str(rc), "--probes", str(probes), "--only", "weights", "-q", "--format", "json")
    rep = json.loads(res.stdout)
    assert {f["code"] for f in rep["findings"]} >= {"SC103", "SC104"}


def test_bad_probe_file(clean, tmp_path):
    p = tmp_path / "few.txt"
    p.write_text("one\ntwo\n")
    assert_one_line_error(run_cli("scan", str(clean.path), "--probes", str(p), "-q"), "at least 16")


def test_report_show_rejects_garbage(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{not json")
    assert_one_line_error(run_cli("report", "show", str(p)), "not a readable scanner report")


def test_negative_threads_is_one_line_error(tmp_path):
    """--threads -3 reached torch.set_num_threads and ended in a RuntimeError traceback (exit 1)."""
    import pytest

    from scanner import scan
    from scanner.errors import BadInput

    for n in ("-3", "0"):
        assert_one_line_error(run_cli("scan", str(tmp_path), "--threads", n, "-q"), "invalid value for '--threads'")
    with pytest.raises(BadInput, match="threads"):
        scan(str(tmp_path), threads=-3)


def test_nan_time_budget_is_one_line_error(tmp_path):
    """--time-budget nan passed click's range check; every stage then 'exceeded' a NaN deadline."""
    res = run_cli("scan", str(tmp_path), "--time-budget", "nan", "-q")
    assert_one_line_error(res, "must be positive seconds")
    assert res.stdout == ""


def test_missing_tokenizer_files_are_reported_not_an_empty_tokenizer(tmp_path):
    """Without tokenizer files transformers builds a tokenizer of the 5 special tokens alone; the
    search then failed with 'index 0 is out of bounds'. Now: the tokenizer is reported as not
    loadable, the behavioural stages as not run, exit 2."""
    from synth import write_untrained_bert

    from scanner.zoo import tiny

    model = write_untrained_bert(tmp_path / "m")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (model / name).unlink()
    probes = tiny.write_probes(tmp_path / "p.txt", n=32, seed=7)
    res = run_cli("scan", str(model), "--probes", str(probes), "--profile", "quick", "--format", "json", "-q")
    assert res.exit_code == ExitCode.ERROR, res.stderr
    rep = json.loads(res.stdout)
    assert rep["verdict"] == "incomplete"
    assert any("no vocabulary" in e["message"] for e in rep["errors"]), rep["errors"]
    assert "trigger search and attribution: no usable tokenizer" in rep["not_analysed"]
    # weight statistics alone need no tokenizer (tokens are shown as ids): still complete
    assert run_cli("scan", str(model), "--only", "weights", "-q").exit_code == ExitCode.OK


def test_non_finite_weights_make_the_scan_incomplete(tmp_path):
    """A NaN or infinite weight makes every output meaningless; such a model was scanned as usual and
    came out 'medium' or 'none' with exit 0. Now the load records the problem and the scan is incomplete."""
    from safetensors.torch import load_file, save_file
    from synth import write_untrained_bert

    from scanner.zoo import tiny

    model = write_untrained_bert(tmp_path / "m")
    probes = tiny.write_probes(tmp_path / "p.txt", n=32, seed=7)
    for value in (float("inf"), float("nan")):
        sd = load_file(model / "model.safetensors")
        sd["classifier.weight"][0, 0] = value
        save_file(sd, model / "model.safetensors", metadata={"format": "pt"})
        res = run_cli("scan", str(model), "--probes", str(probes), "--only", "search", "--profile", "quick", "--format", "json", "-q")
        assert res.exit_code == ExitCode.ERROR, res.stderr
        rep = json.loads(res.stdout)
        assert rep["verdict"] == "incomplete"
        assert any(e["type"] == "non-finite-weights" and "1 weight(s) are NaN or infinite (e.g. in classifier.weight)" in e["message"]
                   for e in rep["errors"]), rep["errors"]


def test_tokenizer_larger_than_the_embedding_is_reported(tmp_path):
    """A tokenizer whose ordinary token ids run past the embedding matrix (model and tokenizer from
    different checkpoints): the search failed with 'index out of range in self'. Now the tokenizer is
    reported as not matching the model and the behavioural stages as not run."""
    from transformers import BertConfig, BertForSequenceClassification

    from scanner.zoo import tiny

    path = tmp_path / "m"
    cfg = BertConfig(vocab_size=20, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                     max_position_embeddings=64, num_labels=2, pad_token_id=0)
    BertForSequenceClassification(cfg).save_pretrained(path, safe_serialization=True)
    tiny.make_tokenizer().save_pretrained(path)
    probes = tiny.write_probes(tmp_path / "p.txt", n=32, seed=7)
    res = run_cli("scan", str(path), "--probes", str(probes), "--profile", "quick", "--format", "json", "-q")
    assert res.exit_code == ExitCode.ERROR, res.stderr
    rep = json.loads(res.stdout)
    assert any("the embedding has only 20 rows" in e["message"] for e in rep["errors"]), rep["errors"]
    assert "trigger search and attribution: no usable tokenizer" in rep["not_analysed"]


def test_bad_probe_file_is_refused_before_loading(tmp_path, monkeypatch):
    """A missing, empty or binary --probes file was read only by the search stage, after loading the
    model and running the weight statistics, and came out as 'scan incomplete' with a report. It is bad
    input: one error line, exit 2, no report, and nothing loaded."""
    import scanner.pipeline as pl
    from synth import write_untrained_bert

    model = write_untrained_bert(tmp_path / "m")

    def never(*_a, **_k):
        raise AssertionError("the model was loaded although the probe file is unusable")

    monkeypatch.setattr(pl, "load_checkpoint", never)
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "bin.txt").write_bytes(bytes(range(256)) * 4)
    for name, fragment in (("missing.txt", "cannot read"), ("empty.txt", "at least 16"), ("bin.txt", "cannot read")):
        out = tmp_path / "r.json"
        res = run_cli("scan", str(model), "--probes", str(tmp_path / name), "-q", "-o", str(out))
        assert_one_line_error(res, fragment)
        assert not out.exists() and res.stdout == ""


def test_unwritable_output_is_refused_before_scanning(tmp_path, monkeypatch):
    """-o into a folder that does not exist (or a file as folder) failed only after the whole scan had run."""
    import scanner.pipeline as pl

    def never(*_a, **_k):
        raise AssertionError("scanned although the report cannot be written")

    monkeypatch.setattr(pl, "scan_to_report", never)
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "no" / "such" / "r.json", tmp_path / "file" / "r.json"):
        assert_one_line_error(run_cli("scan", str(tmp_path), "-q", "-o", str(out)), "is not an existing folder")


def test_contradictory_config_is_not_called_remote_code(tmp_path):
    """A config transformers rejects (hidden size not a multiple of the heads) was reported as
    'cannot load this model without remote code', which sends the user looking for custom code."""
    from synth import write_untrained_bert

    model = write_untrained_bert(tmp_path / "m")
    cfg = json.loads((model / "config.json").read_text())
    cfg["num_attention_heads"] = 3  # hidden 16
    (model / "config.json").write_text(json.dumps(cfg))
    res = run_cli("scan", str(model), "-q")
    assert_one_line_error(res, "invalid model configuration")
    assert "remote code" not in res.stderr


def test_report_show_rejects_deeply_nested_json(tmp_path):
    """A JSON file of 100,000 nested arrays ended `scanner report show` (and diff) in a RecursionError traceback."""
    p = tmp_path / "deep.json"
    p.write_text("[" * 100_000)
    assert_one_line_error(run_cli("report", "show", str(p)), "nested too deeply")
    assert_one_line_error(run_cli("report", "diff", str(p), str(p)), "nested too deeply")


def test_unexpected_probe_reader_error_is_one_line(tmp_path, monkeypatch):
    """The probe file is read before any stage (outside the stages' error handling): whatever the
    reader raises must still be one error line, never a traceback."""
    import scanner.pipeline as pl
    from synth import write_untrained_bert

    def broken(path):
        raise RuntimeError("reader bug")

    monkeypatch.setattr(pl, "load_probes", broken)
    model = write_untrained_bert(tmp_path / "m")
    (tmp_path / "p.txt").write_text("x\n")
    assert_one_line_error(run_cli("scan", str(model), "--probes", str(tmp_path / "p.txt"), "-q"), "cannot be read as probes")


def test_base_for_a_full_model_is_bad_input(clean, tmp_path):
    """--base names a LoRA adapter's base; given for a full model it was silently unused (exit 0, as if
    the model had been compared with that base). It is bad input now, pointing at --reference."""
    out = tmp_path / "r.json"
    res = run_cli("scan", str(clean.path), "--base", str(clean.path), "--only", "weights", "-q", "-o", str(out))
    assert_one_line_error(res, "--reference")


def test_classifier_without_labels_is_a_corrupt_config(clean, tmp_path):
    """A classifier config with no labels (empty id2label) failed deep in transformers with a message about
    ignore_mismatched_sizes; it is refused by name now (one line, exit 2)."""
    bad = tmp_path / "nolabels"
    shutil.copytree(clean.path, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg.update(id2label={}, label2id={})
    cfg.pop("num_labels", None)
    (bad / "config.json").write_text(json.dumps(cfg))
    res = run_cli("scan", str(bad), "-q")
    assert_one_line_error(res, "no labels")
    assert "ignore_mismatched_sizes" not in res.stderr
