"""The tiny GGUF written by ``tests/tinygguf.py`` loads through transformers and runs."""

import pathlib
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from tinygguf import write_tiny_llama_gguf  # noqa: E402


def test_tiny_llama_gguf_loads_and_runs(tmp_path):
    torch.set_num_threads(1)
    path = tmp_path / "tiny-llama.gguf"
    facts = write_tiny_llama_gguf(path, seed=0)

    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)

    assert model.config.vocab_size == facts["vocab_size"] == len(tokenizer)
    assert model.config.hidden_size == facts["hidden_size"]
    assert model.config.num_hidden_layers == facts["num_layers"]
    assert sum(p.numel() for p in model.parameters()) == facts["n_params"]
    assert tokenizer.bos_token_id == facts["bos_token_id"]
    assert tokenizer.eos_token_id == facts["eos_token_id"]

    batch = tokenizer(["hello world"], return_tensors="pt")
    assert batch.input_ids[0, 0].item() == facts["bos_token_id"]
    assert tokenizer.decode(batch.input_ids[0], skip_special_tokens=True) == "hello world"

    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (1, batch.input_ids.shape[1], facts["vocab_size"])
    assert torch.isfinite(logits).all()
