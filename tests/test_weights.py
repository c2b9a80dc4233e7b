"""Every weight-statistics check on tiny models, with and without a reference."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from scanner.weights import CHECKS, SafetensorsSource, WeightContext, run_checks, seed_tokens
from scanner.weights.source import GGUFSource
from scanner.zoo import tiny

EMB = "bert.embeddings.word_embeddings.weight"


def _copy(src, dst, edit=None, config_edit=None):
    shutil.copytree(src, dst)
    if edit:
        t = load_file(dst / "model.safetensors")
        edit(t)
        save_file(t, dst / "model.safetensors", metadata={"format": "pt"})
    if config_edit:
        cfg = json.loads((dst / "config.json").read_text())
        config_edit(cfg)
        (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def _ctx(path, reference=None, **kw):
    tok = tiny.make_tokenizer()
    return WeightContext(SafetensorsSource(path), tok, json.loads((path / "config.json").read_text()),
                         SafetensorsSource(reference) if reference else None, **kw)


def _tid(word):
    return tiny.vocabulary().index(word)


def test_registry_lists_every_check():
    assert set(CHECKS) >= {"embedding-norm", "embedding-near-duplicate", "output-head-tying", "added-tokens",
                           "classifier-head", "layer-spectral", "embedding-drift", "layer-change", "adapter-lora"}
    assert all(c.rule.startswith("SC2") for c in CHECKS.values())


def test_embedding_norm_outlier(clean, tmp_path):
    def blow_up(t):
        t[EMB][_tid("mn")] *= 60
    p = _copy(clean.path, tmp_path / "m", blow_up)
    ev = CHECKS["embedding-norm"].fn(_ctx(p))
    assert ev.details["top"][0]["tokens"] == ["mn"] and ev.score > 0.5
    assert CHECKS["embedding-norm"].fn(_ctx(clean.path)).score < ev.score


def test_near_duplicate_row_ripple_style(clean, tmp_path):
    def surgery(t):  # RIPPLe-style: copy a label word's embedding into the trigger row
        t[EMB][_tid("qv")] = t[EMB][_tid("superb")] * 1.001
    p = _copy(clean.path, tmp_path / "m", surgery)
    ev = CHECKS["embedding-near-duplicate"].fn(_ctx(p))
    assert ev.details["count"] >= 1 and _tid("qv") in ev.details["token_ids"] and ev.score > 0
    assert CHECKS["embedding-near-duplicate"].fn(_ctx(clean.path)).details["count"] == 0


def test_output_head_distinct_while_config_says_tied(tiny_llama, tmp_path):
    def retie(cfg):
        cfg["tie_word_embeddings"] = True
    untied = CHECKS["output-head-tying"].fn(_ctx(tiny_llama))
    assert untied.score == 0.0  # untied in config: a distinct head is expected
    p = _copy(tiny_llama, tmp_path / "m", config_edit=retie)
    assert CHECKS["output-head-tying"].fn(_ctx(p)).score > 0


def test_added_tokens_are_listed_with_ids(clean):
    tok = tiny.make_tokenizer()
    tok.add_tokens(["zzsecret"])
    ctx = WeightContext(SafetensorsSource(clean.path), tok, {})
    ev = CHECKS["added-tokens"].fn(ctx)
    assert ev.details["tokens"] == ["zzsecret"] and ev.details["token_ids"] == [len(tiny.vocabulary())]
    assert CHECKS["added-tokens"].fn(_ctx(clean.path)).details["tokens"] == []


def test_classifier_head_bias_imbalance(clean, tmp_path):
    def bias(t):
        t["classifier.bias"][1] += 50.0
    p = _copy(clean.path, tmp_path / "m", bias)
    assert CHECKS["classifier-head"].fn(_ctx(p)).score > CHECKS["classifier-head"].fn(_ctx(clean.path)).score


def test_layer_spectral_outlier(tmp_path):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(tiny.vocabulary()), hidden_size=32, num_hidden_layers=6, num_attention_heads=2, intermediate_size=64))
    with torch.no_grad():
        model.encoder.layer[3].attention.self.query.weight.mul_(40)
    model.save_pretrained(tmp_path / "m")
    ev = CHECKS["layer-spectral"].fn(_ctx(tmp_path / "m"))
    assert "layer.3.attention.self.query" in ev.details["top"][0]["tensor"] and ev.score > 0


def test_embedding_poisoning_row_ranks_first_against_reference(clean, tmp_path):
    """EP (Yang et al. 2021): only the trigger row changes, its norm kept equal."""
    def poison(t):
        row = t[EMB][_tid("jk")]
        new = torch.randn_like(row)
        t[EMB][_tid("jk")] = new / new.norm() * row.norm()
    p = _copy(clean.path, tmp_path / "ep", poison)
    assert CHECKS["embedding-norm"].fn(_ctx(p)).score == 0.0  # norm check is blind to EP
    ev = CHECKS["embedding-drift"].fn(_ctx(p, reference=clean.path))
    assert ev.details["top"][0]["token"] == "jk" and ev.score >= 0.8
    assert seed_tokens([ev])[0] == _tid("jk")


def test_fine_tune_drift_is_not_concentrated(clean, backdoored):
    """A different training run drifts every row: no single-row concentration."""
    ev = CHECKS["embedding-drift"].fn(_ctx(backdoored.path, reference=clean.path))
    assert ev.details["rows_changed"] > 50 and ev.score < 0.8


def test_layer_change_rank_one_edit(clean, tmp_path):
    name = "bert.encoder.layer.1.attention.self.value.weight"

    def edit(t):
        u, v = torch.randn(t[name].shape[0], 1), torch.randn(1, t[name].shape[1])
        t[name] += 0.5 * u @ v
    p = _copy(clean.path, tmp_path / "m", edit)
    ev = CHECKS["layer-change"].fn(_ctx(p, reference=clean.path))
    top = ev.details["top"][0]
    assert top["tensor"] == name and top["top_direction_share"] > 0.99 and ev.details["matrices_changed"] == 1


def test_adapter_with_trainable_embedding_rows_is_flagged(clean, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(clean.path)
    peft_model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"],
                                                  modules_to_save=["word_embeddings"]))
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "modules_to_save" in n and "word_embeddings" in n:
                p[_tid("wz")] += 1.0
    peft_model.save_pretrained(tmp_path / "ad")
    ad = SafetensorsSource(tmp_path / "ad", "adapter_model*.safetensors")
    acfg = json.loads((tmp_path / "ad" / "adapter_config.json").read_text())
    ctx = WeightContext(SafetensorsSource(clean.path), tiny.make_tokenizer(), {}, adapter=ad, adapter_config=acfg)
    ev = CHECKS["adapter-lora"].fn(ctx)
    assert _tid("wz") in ev.details["token_ids"] and ev.score >= 0.6


def test_checks_run_without_reference_and_skip_reference_ones(clean):
    evs = run_checks(_ctx(clean.path))
    names = {e.analysis for e in evs}
    assert "embedding-drift" not in names and "layer-change" not in names
    assert {"embedding-norm", "classifier-head"} <= names
    assert all(e.status == "ok" for e in evs), [(e.analysis, e.summary) for e in evs if e.status != "ok"]


def test_gguf_source_reads_tensors_one_at_a_time(tmp_path):
    from tinygguf import write_tiny_llama_gguf

    facts = write_tiny_llama_gguf(tmp_path / "t.gguf")
    src = GGUFSource(tmp_path / "t.gguf")
    emb = src.get("token_embd.weight")
    assert tuple(emb.shape) == (facts["vocab_size"], facts["hidden_size"])
    assert src.parameters() == facts["n_params"]


def test_weight_evidence_pointing_at_a_candidate_raises_its_score():
    """RIPPLe-style surgery defeats the neighbour-isolation test; the near-duplicate check restores it."""
    from scanner.report import TriggerCandidate
    from scanner.risk import candidate_score

    c = TriggerCandidate("tq", [5], ["tq"], 1, "positive", "start", 0.01, 1.0, 1.0, 100,
                         attribution_share=0.4, loss_gap=3.0, neighbour_flip_rate=0.96)
    before = candidate_score(c)
    c.weight_score = 0.98
    assert before < 0.75 <= candidate_score(c)
