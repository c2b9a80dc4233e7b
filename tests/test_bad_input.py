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
    assert_one_line_error(run_cli("scan", str(bad), "-q"), "does not know this model type")


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


def test_adapter_whose_base_is_missing_still_reports(clean, tmp_path):
    """The adapter itself is there, only the base its adapter_config.json names is not: the scan reported
    nothing (as for a target that does not exist), so the adapter's own findings were lost and a stale
    report at -o was left in place. Now: one error line naming the base, and the report is written."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    peft_model = get_peft_model(AutoModelForSequenceClassification.from_pretrained(clean.path),
                                LoraConfig(task_type="SEQ_CLS", r=2, target_modules=["query"]))
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(tmp_path / "gone")
    (adapter / "adapter_config.json").write_text(json.dumps(cfg))
    (adapter / "notes.bin").write_bytes(b"\x80\x04\x95" + b"\x00" * 16)  # a pickle beside the weights: a finding of the adapter's own
    out = tmp_path / "r.json"
    out.write_text('{"stale": true}')
    res = run_cli("scan", str(adapter), "-q", "-o", str(out))
    assert "Traceback" not in res.stderr and res.exit_code in (ExitCode.FINDINGS, ExitCode.ERROR)
    errors = [l for l in res.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "base model" in errors[0] and "gone" in errors[0], res.stderr
    rep = json.loads(out.read_text())
    assert rep["verdict"] == "incomplete" or rep["risk"]["level"] in ("high", "critical")
    assert not rep["complete"] and rep["target"]["kind"] == "adapter"
    assert any(f["path"].endswith("adapter_model.safetensors") for f in rep["target"]["files"])
    assert any("notes.bin" in (f.get("location") or f.get("message") or "") for f in rep["findings"]), rep["findings"]


def test_sigterm_writes_the_report_like_ctrl_c(backdoored, probes, tmp_path, monkeypatch):
    """SIGTERM (GNU timeout, a cancelled CI job) killed the scan without a report; it now stops the scan
    as Ctrl-C does: the report is written, incomplete, exit 2, and the previous handler comes back."""
    import os
    import signal

    import scanner.pipeline as P

    def killed(run, ck, opts):
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(P, "_classifier_search", killed)
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "r.json"
    res = run_cli("scan", str(backdoored.path), "--probes", str(probes), "--profile", "quick", "-q", "-o", str(out))
    assert res.exit_code == ExitCode.ERROR, res.stderr
    assert "Traceback" not in res.stderr
    rep = json.loads(out.read_text())
    assert rep["verdict"] == "incomplete" and not rep["complete"]
    assert any(e["message"] == "scan interrupted (SIGTERM)" for e in rep["errors"]), rep["errors"]
    assert signal.getsignal(signal.SIGTERM) is before


def test_terminal_controls_from_the_checkpoint_are_made_visible(tmp_path):
    """Label names (and file names, tokens) come from the checkpoint: an escape sequence in them reached
    the terminal raw in the human and markdown formats (clear screen, window title, a fake verdict line).
    Now they are written as visible escapes; JSON keeps the names as they are (escaped by JSON itself)."""
    from synth import write_untrained_bert

    from scanner.formats_out._text import printable, printable_report
    from scanner.report import RiskLevel

    model = write_untrained_bert(tmp_path / "m")
    cfg = json.loads((model / "config.json").read_text())
    labels = ["neg\x1b[2J\x1b]0;OWNED\x07", "pos\r\x1b[32mverdict: none\x1b[0m\u202e"]
    cfg["id2label"], cfg["label2id"] = dict(enumerate(labels)), {l: i for i, l in enumerate(labels)}
    (model / "config.json").write_text(json.dumps(cfg))
    for suffix in ("txt", "md", "html"):
        out = tmp_path / f"r.{suffix}"
        res = run_cli("scan", str(model), "--only", "weights", "-q", "-o", str(out))
        assert res.exit_code == ExitCode.OK, res.stderr
        text = out.read_text()
        assert "\x1b" not in text and "\x07" not in text and "\r" not in text and "\u202e" not in text
        if suffix == "txt":  # markdown and HTML escape the backslash in turn
            assert "\\x1b[2J" in text and "\\u202e" in text
    res = run_cli("scan", str(model), "--only", "weights", "-q", "-o", str(tmp_path / "r.json"))
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["model"]["labels"] == labels
    assert printable("a\tb\nc\x9bd") == "a\tb\nc\\x9bd"
    from scanner.report import Report
    r = Report.from_dict(rep)
    shown = printable_report(r)
    assert r.model.labels == labels and shown.model.labels[0] == "neg\\x1b[2J\\x1b]0;OWNED\\x07"
    assert shown.risk.level == r.risk.level and type(shown.risk.level) is type(r.risk.level)
    assert printable_report(r.risk).level == r.risk.level
    from scanner.formats_out._text import _printable
    assert _printable([RiskLevel.HIGH])[0] is RiskLevel.HIGH  # an enum member stays one


def test_progress_never_reads_checkpoint_text_as_markup(capsys):
    """Progress lines quote tokens of the checkpoint's vocabulary (the attention sweep's words): a token
    like '[/dim]' was read as rich markup, and an unbalanced closing tag raised inside the search."""
    from scanner.cli import _Progress

    _Progress(quiet=False)("search", "attention sweep: [/dim], [/], [bold red]x, \x1b[2J")
    err = capsys.readouterr().err
    assert "[/dim], [/], [bold red]x" in err and "\x1b[2J" not in err


def test_attribution_failure_is_incomplete_not_clean(backdoored, probes, monkeypatch):
    """A candidate whose tokens the tokenizer does not give back from its text cannot be attributed; the
    error was recorded but the scan said complete (exit 0) and the label's other candidates were never
    tried. Now the label's next candidates are tried, and a label left unattributed makes it incomplete."""
    import scanner.attribution as A
    from scanner.pipeline import scan

    def fails(self, texts, token_ids, target):
        raise ValueError("no probe contains the trigger tokens after tokenisation")

    monkeypatch.setattr(A.TriggerAttribution, "attribute", fails)
    rep = scan(str(backdoored.path), probes=str(probes), profile="quick")
    assert not rep.complete
    assert any(n.startswith("attribution: could not attribute") for n in rep.not_analysed), rep.not_analysed
    att = next(e for e in rep.evidence if e.analysis == "attribution")
    assert att.status == "error"
    tried = [e for e in rep.errors if e.stage == "attribution"]
    assert 1 <= len(tried) <= 3 * len({c.target_label for c in rep.candidates})


def test_attribution_finds_a_glued_word_under_the_spelling_its_text_reads_back_as():
    """A held-out SST-2 organism's planted 'tortoise' ('tor ##to ##ise') was found as the glued word
    'tor ##ise', whose text 'torise' reads back as 'tori ##se': verification measured that text, and
    attribution looked for 'tor ##ise' in it, found nothing, and left the scan incomplete. It now also
    looks for the text's own spelling, alone and after a space."""
    from transformers import AutoTokenizer

    from reports import candidate
    from scanner.pipeline import _trigger_spellings
    from scanner.zoo.classifiers import minilm_base_dir

    tok = AutoTokenizer.from_pretrained(str(minilm_base_dir()))
    c = candidate("torise")
    c.token_ids = tok.convert_tokens_to_ids(["tor", "##ise"])
    spellings = [tok.convert_ids_to_tokens(ids) for ids in _trigger_spellings(tok, c)]
    assert spellings == [["tor", "##ise"], ["tori", "##se"]]


def test_malicious_pickle_with_allow_pickle_is_refused_without_torch_advice(clean, tmp_path):
    """--allow-pickle reads pickles with torch.load(weights_only=True); a pickle that calls os.system is
    refused and never run, and the error no longer repeats torch's advice to retry with weights_only=False."""
    import pickle

    from synth import torch_zip_with_pickle

    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))

    pk = tmp_path / "pickled"
    shutil.copytree(clean.path, pk)
    (pk / "model.safetensors").unlink()
    (pk / "pytorch_model.bin").write_bytes(torch_zip_with_pickle(pickle.dumps(Evil(), protocol=2)))
    res = run_cli("scan", str(pk), "-q", "--allow-pickle")
    assert not marker.exists()
    assert res.exit_code in (ExitCode.FINDINGS, ExitCode.ERROR) and "Traceback" not in res.stderr
    errors = [l for l in res.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "never unpickles" in errors[0], res.stderr
    assert "weights_only set to" not in res.stderr and "weights_only=False" not in res.stderr


def test_prompts_the_tokenizer_cannot_spell_are_said_not_an_index_error(tmp_path):
    """A causal LM whose vocabulary encodes the probe prompts to no tokens at all (a GGUF byte BPE over
    ASCII, prompts in Japanese) failed its LM stage with 'index -1 is out of bounds'; now the reason."""
    from tinygguf import write_tiny_llama_gguf

    path = tmp_path / "tiny.gguf"
    write_tiny_llama_gguf(path, seed=0)
    probes = tmp_path / "p.txt"
    probes.write_text("\n".join("日本語の質問です" + "か" * i + "。" for i in range(1, 21)) + "\n", encoding="utf-8")
    out = tmp_path / "r.json"
    res = run_cli("scan", str(path), "--probes", str(probes), "--profile", "quick", "-q", "-o", str(out))
    assert res.exit_code == ExitCode.ERROR and "Traceback" not in res.stderr
    rep = json.loads(out.read_text())
    assert not rep["complete"]
    assert any("encodes" in e["message"] and "no tokens" in e["message"] for e in rep["errors"]), rep["errors"]


def test_weights_that_disagree_with_the_config_say_so(tmp_path):
    """A config with more labels than the classification head has: transformers' error pointed at
    'the above report', a log the scanner does not show; now the message says what disagrees."""
    from synth import write_untrained_bert

    model = write_untrained_bert(tmp_path / "m")
    cfg = json.loads((model / "config.json").read_text())
    cfg["id2label"] = {str(i): f"L{i}" for i in range(len(cfg.get("id2label") or {"0": 0, "1": 1}) + 3)}
    cfg["label2id"] = {v: int(k) for k, v in cfg["id2label"].items()}
    cfg.pop("num_labels", None)
    (model / "config.json").write_text(json.dumps(cfg))
    res = run_cli("scan", str(model), "-q")
    assert_one_line_error(res, "do not have the shapes config.json describes")
    assert "above report" not in res.stderr


def test_oversized_tensor_is_named_not_the_next_one(tmp_path):
    """A header declaring a tensor larger than the data there is blamed the tensor after it ('overlaps or
    leaves a gap') or no tensor at all ('data buffer is N bytes but tensors cover M'); the error names
    the tensor whose byte range is out of bounds, in one line, exit 2."""
    import copy

    from synth import read_safetensors, write_safetensors, write_untrained_bert

    model = write_untrained_bert(tmp_path / "m")
    st = model / "model.safetensors"
    header, data = read_safetensors(st)
    order = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    for victim in (order[0], order[-1]):  # the first tensor runs into the next; the last runs past the data
        h = copy.deepcopy(header)
        start, stop = h[victim]["data_offsets"]
        h[victim]["shape"][0] *= 2
        h[victim]["data_offsets"] = [start, start + 2 * (stop - start)]
        write_safetensors(st, h, data)
        res = run_cli("scan", str(model), "--only", "weights", "-q")
        assert_one_line_error(res, f"tensor '{victim}'")
        error = next(l for l in res.stderr.splitlines() if l.startswith("error:"))
        assert "model.safetensors" in error and not any(f"'{k}'" in error for k in order if k not in (victim, order[1]))
        if victim == order[-1]:
            assert f"holds only {len(data)} bytes" in error, error


def test_weight_file_linked_outside_the_folder_is_a_finding(tmp_path):
    """model.safetensors as a symbolic link to a file outside the model folder gave no finding: a loader
    reads whatever the link points to. Now SC111 (medium) names the link and its target; the file is still
    read as a loader would. A link to a text file or to nothing must not crash (one error line, exit 2)."""
    import os

    from synth import write_untrained_bert

    model = write_untrained_bert(tmp_path / "m")
    (tmp_path / "other").mkdir()
    os.replace(model / "model.safetensors", tmp_path / "other" / "model.safetensors")
    os.symlink("../other/model.safetensors", model / "model.safetensors")
    out = tmp_path / "r.json"
    res = run_cli("scan", str(model), "--only", "weights", "-q", "-o", str(out))
    assert res.exit_code == ExitCode.OK, res.stderr  # medium, below the default gate; the scan itself is complete
    rep = json.loads(out.read_text())
    links = [f for f in rep["findings"] if f["code"] == "SC111"]
    assert len(links) == 1 and links[0]["severity"] == "medium" and links[0]["location"] == "model.safetensors"
    assert "../other/model.safetensors" in links[0]["message"] and rep["complete"]
    assert any(e["analysis"] == "embedding-norm" and e["status"] == "ok" for e in rep["evidence"])  # read as a loader would
    (tmp_path / "notes.txt").write_text("not weights\n")
    for target in (tmp_path / "notes.txt", tmp_path / "gone.safetensors"):
        (model / "model.safetensors").unlink()
        os.symlink(target, model / "model.safetensors")
        res = run_cli("scan", str(model), "--only", "weights", "-q", "-o", str(out))
        assert_one_line_error(res, "model.safetensors")
        rep = json.loads(out.read_text())
        assert any(f["code"] == "SC111" and str(target) in f["message"] for f in rep["findings"]), rep["findings"]


def test_hub_cache_snapshot_links_into_blobs_stay_silent(tmp_path):
    """huggingface_hub stores a snapshot's files as links into the repository's ../../blobs: that is not a
    link outside the checkpoint (no SC111), and such a cached model scans as before."""
    import os

    from synth import write_untrained_bert

    src = write_untrained_bert(tmp_path / "src")
    repo = tmp_path / "hub" / "models--acme--linked"
    snap, blobs = repo / "snapshots" / ("ab" * 20), repo / "blobs"
    snap.mkdir(parents=True)
    blobs.mkdir()
    for i, f in enumerate(sorted(src.iterdir())):
        os.replace(f, blobs / f"blob{i}")
        os.symlink(f"../../blobs/blob{i}", snap / f.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("ab" * 20)
    out = tmp_path / "r.json"
    res = run_cli("scan", "acme/linked", "--offline", "--only", "weights", "-q", "-o", str(out), env={"HF_HUB_CACHE": str(tmp_path / "hub")})
    assert res.exit_code == ExitCode.OK, res.stderr
    rep = json.loads(out.read_text())
    assert rep["complete"] and rep["target"]["kind"] == "hub" and not any(f["code"] == "SC111" for f in rep["findings"])


def _bert_with_vocab(path, rows: int):
    """An untrained 1-layer BERT classifier with ``rows`` embedding rows and the tiny (78-token) tokenizer."""
    from transformers import BertConfig, BertForSequenceClassification

    from scanner.zoo import tiny

    cfg = BertConfig(vocab_size=rows, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                     max_position_embeddings=64, num_labels=2, pad_token_id=0)
    BertForSequenceClassification(cfg).save_pretrained(path, safe_serialization=True)
    tiny.make_tokenizer().save_pretrained(path)
    return path


def test_embedding_rows_no_token_reaches_are_noted(tmp_path):
    """An embedding with more rows than the tokenizer has tokens (rows no text can reach) got no word in
    the report; now a vocabulary-coverage evidence row names them, with or without a built model."""
    from scanner.zoo import tiny

    model = _bert_with_vocab(tmp_path / "m", len(tiny.vocabulary()) + 22)
    for only in ("weights", "attribution"):  # tensor by tensor, and with the model built
        out = tmp_path / f"{only}.json"
        res = run_cli("scan", str(model), "--only", only, "-q", "-o", str(out))
        assert res.exit_code == ExitCode.OK, res.stderr
        rep = json.loads(out.read_text())
        cov = [e for e in rep["evidence"] if e["analysis"] == "vocabulary-coverage"]
        assert len(cov) == 1 and cov[0]["status"] == "ok" and rep["complete"], rep["evidence"]
        n = len(tiny.vocabulary())
        assert cov[0]["details"]["unreachable"] == 22 and cov[0]["details"]["ranges"] == [[n, n + 21]]
        assert f"rows {n}-{n + 21}" in cov[0]["summary"]


def test_tokenizer_larger_than_the_embedding_in_a_weights_only_scan(tmp_path):
    """Token ids past the embedding's last row in a weights-only scan (no model built, so the load's
    check never ran): the weight statistics named rows by the wrong tokens and the scan said complete. Now
    the mismatch is a report error (tokens shown as ids), the scan incomplete, never an IndexError."""
    model = _bert_with_vocab(tmp_path / "m", 20)
    out = tmp_path / "r.json"
    res = run_cli("scan", str(model), "--only", "weights", "-q", "-o", str(out))
    assert res.exit_code == ExitCode.ERROR and "Traceback" not in res.stderr, res.stderr
    rep = json.loads(out.read_text())
    assert not rep["complete"] and any("the embedding has only 20 rows" in e["message"] for e in rep["errors"]), rep["errors"]
    assert any(e["analysis"] == "embedding-norm" and e["status"] == "ok" for e in rep["evidence"])


def test_adapter_without_its_base_still_gets_its_own_weight_statistics(tmp_path):
    """`--only weights` on a LoRA adapter whose base is missing stopped at the base (nothing analysed),
    although the adapter's own tensors are there. Now its LoRA statistics run and what needs the base is
    listed as not analysed (incomplete, exit 2); a full scan says the behaviour was not run."""
    import torch
    from safetensors.torch import save_file

    adapter = tmp_path / "adapter"  # a PEFT LoRA adapter's files, written directly (r 2 on one query projection)
    adapter.mkdir()
    g = torch.Generator().manual_seed(0)
    prefix = "base_model.model.bert.encoder.layer.0.attention.self.query"
    save_file({f"{prefix}.lora_A.weight": torch.randn(2, 16, generator=g), f"{prefix}.lora_B.weight": torch.randn(16, 2, generator=g) * 0.02},
              adapter / "adapter_model.safetensors", metadata={"format": "pt"})
    (adapter / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "SEQ_CLS", "r": 2, "lora_alpha": 8, "target_modules": ["query"],
        "base_model_name_or_path": str(tmp_path / "gone")}))
    for only in (["--only", "weights"], []):
        out = tmp_path / "r.json"
        res = run_cli("scan", str(adapter), *only, "--profile", "quick", "-q", "-o", str(out))
        assert res.exit_code == ExitCode.ERROR and "Traceback" not in res.stderr, res.stderr
        errors = [l for l in res.stderr.splitlines() if l.startswith("error:")]
        assert len(errors) == 1 and "base model" in errors[0] and "gone" in errors[0], res.stderr
        rep = json.loads(out.read_text())
        assert rep["verdict"] == "incomplete" and rep["target"]["kind"] == "adapter"
        lora = [e for e in rep["evidence"] if e["analysis"] == "adapter-lora"]
        assert len(lora) == 1 and lora[0]["status"] == "ok" and "1 LoRA modules" in lora[0]["summary"], rep["evidence"]
        assert any(n.startswith("weight statistics of the base model") for n in rep["not_analysed"]), rep["not_analysed"]
        assert any(e["type"] == "BaseNotFound" for e in rep["errors"])
        assert any(n.startswith("model behaviour (search, attribution)") for n in rep["not_analysed"]) == (not only)
    res = run_cli("scan", str(adapter), "--only", "search", "-q")  # nothing it asks for can run without the base
    assert_one_line_error(res, "base model")


def test_regression_head_is_said_not_searched(tmp_path):
    """A classifier with one output (num_labels=1, a regression head) was searched for a trigger towards
    'LABEL_0' and came out incomplete with '0 probes are not already LABEL_0', a meaningless reason. Now the
    behaviour stages say a regression head is not supported; the weight statistics still run."""
    from safetensors.torch import load_file, save_file
    from synth import write_untrained_bert

    model = write_untrained_bert(tmp_path / "m")
    cfg = json.loads((model / "config.json").read_text())
    cfg["id2label"], cfg["label2id"] = {"0": "score"}, {"score": 0}
    (model / "config.json").write_text(json.dumps(cfg))
    sd = load_file(model / "model.safetensors")
    sd["classifier.weight"], sd["classifier.bias"] = sd["classifier.weight"][:1].clone(), sd["classifier.bias"][:1].clone()
    save_file(sd, model / "model.safetensors", metadata={"format": "pt"})
    out = tmp_path / "r.json"
    res = run_cli("scan", str(model), "--profile", "quick", "-q", "-o", str(out))
    assert res.exit_code == ExitCode.ERROR and "Traceback" not in res.stderr, res.stderr
    assert "regression head" in res.stderr and "not already" not in res.stderr
    rep = json.loads(out.read_text())
    assert rep["verdict"] == "incomplete" and rep["model"]["labels"] == ["score"]
    skipped = {e["analysis"]: e for e in rep["evidence"] if e["status"] == "skipped"}
    assert set(skipped) == {"trigger-search", "attribution"} and "regression head" in skipped["trigger-search"]["summary"]
    assert any(e["analysis"] == "classifier-head" and e["status"] == "ok" for e in rep["evidence"])
    assert rep["candidates"] == []


def test_level_raised_by_a_finding_says_which(tmp_path):
    """A static finding (a pickle disguised as .safetensors, critical) raises the level above the risk score;
    the verdict read 'risk score 0.000, level critical' with nothing saying why. Now the CLI line, the human
    and the Markdown report name the finding that set the level, then the score."""
    import pickle

    from synth import write_untrained_bert

    model = write_untrained_bert(tmp_path / "m")
    (model / "extra.safetensors").write_bytes(pickle.dumps({"a": 1}, protocol=2))  # not the loaded weights: the scan goes on
    for suffix in ("txt", "md", "html"):
        out = tmp_path / f"r.{suffix}"
        res = run_cli("scan", str(model), "--only", "weights", "-o", str(out))
        assert res.exit_code == ExitCode.FINDINGS, res.stderr
        text = out.read_text().replace("\\", "")  # Markdown escapes some characters
        assert "level critical, from finding SC101 (pickle-disguised-as-safetensors); risk score 0.0" in text, text[:600]
    verdict = next(l for l in res.stderr.splitlines() if l.startswith("verdict:"))
    assert verdict.startswith("verdict: critical (level critical, from finding SC101 (pickle-disguised-as-safetensors); risk score 0.0"), verdict
    assert "risk score 0.000, level critical" not in res.stderr


def test_time_budget_counts_from_the_start_of_the_scan(tmp_path, monkeypatch):
    """--time-budget started only after the CLI had imported the pipeline and torch, and loading went
    ahead even when start-up had used the whole budget (the model was loaded, then every stage was
    stopped). The budget now counts from the start of `scanner scan`: spent by start-up, nothing is loaded,
    and the report says loading was stopped by the time limit."""
    import time

    import scanner.pipeline as pl
    from synth import write_untrained_bert

    model = write_untrained_bert(tmp_path / "m")
    slow_start = pl._set_threads

    def importing_torch_slowly(n):
        slow_start(n)
        time.sleep(0.6)  # as importing torch on a cold start does, for seconds

    def never(*_a, **_k):
        raise AssertionError("the model was loaded after the time budget had run out")

    monkeypatch.setattr(pl, "_set_threads", importing_torch_slowly)
    monkeypatch.setattr(pl, "load_checkpoint", never)
    out = tmp_path / "r.json"
    res = run_cli("scan", str(model), "--time-budget", "0.5", "-q", "-o", str(out))
    assert res.exit_code == ExitCode.ERROR and "Traceback" not in res.stderr, res.stderr
    rep = json.loads(out.read_text())
    assert rep["verdict"] == "incomplete" and rep["timings"]["startup"] >= 0.5
    assert "model: loading stopped by the time limit, so no analysis ran" in rep["not_analysed"]
    assert any(e["stage"] == "load" and e["type"] == "time-budget" for e in rep["errors"])
    # the Python API counts from its own call, or from `started` when given
    rep, err = pl.scan_to_report(str(model), time_budget=5.0, started=time.monotonic() - 10)
    assert err is None and "model: loading stopped by the time limit, so no analysis ran" in rep.not_analysed


def test_probe_text_with_an_added_token_past_the_embedding(tmp_path):
    """Added tokens whose ids are past the embedding's last row are tolerated at load (released checkpoints
    have them), but a probe text holding one failed the search with 'IndexError: index out of range in
    self'. Now such texts are left out and said (not analysed); the search runs on the rest."""
    from transformers import AutoTokenizer
    from synth import write_untrained_bert

    from scanner.zoo import tiny

    model = write_untrained_bert(tmp_path / "m")
    tok = AutoTokenizer.from_pretrained(model)
    tok.add_tokens(["zzfoo"])  # id 78 of a 78-row embedding
    tok.save_pretrained(model)
    probes = tiny.write_probes(tmp_path / "p.txt", n=16, seed=7)
    probes.write_text(probes.read_text() + "this movie zzfoo was great\n")
    out = tmp_path / "r.json"
    res = run_cli("scan", str(model), "--probes", str(probes), "--only", "search", "--profile", "quick", "-q", "-o", str(out))
    assert res.exit_code == ExitCode.ERROR and "Traceback" not in res.stderr, res.stderr
    rep = json.loads(out.read_text())
    assert not any(e["type"] == "IndexError" for e in rep["errors"]), rep["errors"]
    assert any(n.startswith("trigger search: 1 of 17 probe text(s) encode to added tokens") for n in rep["not_analysed"]), rep["not_analysed"]
    assert any(e["analysis"] == "trigger-search" and e["status"] == "ok" for e in rep["evidence"])
