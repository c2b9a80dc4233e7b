"""Every kind of target: local folder, hub ID from a cache layout (offline), GGUF file, LoRA adapter."""
from __future__ import annotations

import shutil

from helpers import assert_one_line_error, run_cli
from tinygguf import write_tiny_llama_gguf

from scanner import scan
from scanner.errors import ExitCode

SHA = "0123456789abcdef0123456789abcdef01234567"


def make_hub_cache(root, repo_id: str, src) -> None:
    """Lay out ``src``'s files as huggingface_hub's cache does: models--org--name/{refs,snapshots}."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / SHA
    snap.mkdir(parents=True)
    for f in src.iterdir():
        shutil.copy(f, snap / f.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SHA)


def test_hub_id_resolves_from_cache_offline(clean, probes, tmp_path):
    cache = tmp_path / "hub"
    make_hub_cache(cache, "acme/tiny-sentiment", clean.path)
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "r.json"
    res = run_cli("scan", "acme/tiny-sentiment@main", "--probes", str(probes), "--profile", "quick", "-q",
                  "--format", "json", "-o", str(out), env=env)
    assert res.exit_code == ExitCode.OK, res.stderr
    from scanner.report import Report

    rep = Report.load(out)
    assert rep.target.kind == "hub" and rep.target.revision == SHA
    res = run_cli("scan", "acme/not-cached", "--offline", "-q", env={"HF_HUB_CACHE": str(cache)})
    assert_one_line_error(res, "not in the local Hugging Face cache")


def test_gguf_file_loads_with_weight_statistics(tmp_path):
    path = tmp_path / "tiny.gguf"
    write_tiny_llama_gguf(path)
    rep = scan(str(path), only=("weights",))
    assert rep.target.kind == "gguf" and rep.model.task == "causal-lm" and rep.model.source_format == "gguf"
    assert any(e.analysis == "embedding-norm" and e.status == "ok" for e in rep.evidence)
    assert rep.complete and rep.level.rank < 3
    assert rep.target.files[0].format == "gguf"
    # A full scan of a GGUF causal LM runs the generative-LM stages (quick profile: no trigger search).
    full = scan(str(path), profile="quick")
    assert full.complete, (full.errors, full.not_analysed)
    assert any(e.analysis == "target-inversion" and e.status == "ok" for e in full.evidence)
    assert any(e.analysis == "lm-cost" for e in full.evidence)


def test_lora_adapter_merges_onto_base_and_is_analysed(clean, probes, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    base = AutoModelForSequenceClassification.from_pretrained(clean.path)
    peft_model = get_peft_model(base, LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"]))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    rep = scan(str(adapter), probes=str(probes), profile="quick")
    assert rep.target.kind == "adapter"
    assert rep.target.base == str(clean.path.resolve())
    assert rep.model.source_format == "safetensors+lora"
    lora = next(e for e in rep.evidence if e.analysis == "adapter-lora")
    assert lora.status == "ok" and len(lora.details["modules"]) == 4  # query+value in 2 layers
    assert rep.complete


def test_local_folder_and_tiny_llama_weights_only(tiny_llama):
    rep = scan(str(tiny_llama), only=("weights",))
    assert rep.model.task == "causal-lm" and rep.model.parameters > 0 and rep.complete


def test_revision_of_a_local_path_and_an_empty_target_are_bad_input(tmp_path, monkeypatch):
    """``--revision`` with a local folder was silently ignored (the folder was scanned as if it were that
    revision); an empty TARGET scanned the working directory. Both: one error line, exit 2, no report."""
    from synth import write_untrained_bert

    model = write_untrained_bert(tmp_path / "m")
    res = run_cli("scan", str(model), "--revision", "v1", "--only", "weights", "-q", "--format", "json")
    assert_one_line_error(res, "applies only to hub model ids")
    assert res.stdout == ""
    # a hub ID's @revision and a different --revision: which was meant cannot be guessed (was: --revision won silently)
    res = run_cli("scan", "acme/tiny@v1.0", "--revision", "main", "--offline", "--only", "weights", "-q", "--format", "json")
    assert_one_line_error(res, "give one of them")
    monkeypatch.chdir(model)  # the working directory is a model: '' must not mean '.'
    for spec in ("", "  "):
        res = run_cli("scan", spec, "--only", "weights", "-q", "--format", "json")
        assert_one_line_error(res, "empty target")
        assert res.stdout == ""


def test_adapter_without_weights_says_so(tmp_path):
    """An adapter folder with adapter_config.json but no weight file at all was refused as 'adapter
    weights are not safetensors; refusing to unpickle', which points at a pickle that is not there."""
    from synth import write_untrained_bert

    base = write_untrained_bert(tmp_path / "base")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(
        '{"peft_type": "LORA", "task_type": "SEQ_CLS", "r": 4, "target_modules": ["query"], "base_model_name_or_path": "%s"}' % base)
    for extra in ((), ("--allow-pickle",)):
        res = run_cli("scan", str(adapter), "-q", *extra)
        assert_one_line_error(res, "no adapter weights")
        assert "unpickle" not in res.stderr
