"""Synthetic hostile and broken inputs for reliability tests (test helper; no tests here).

Everything is built locally in well under a second: an untrained 1-layer BERT classifier over the
tiny vocabulary, pickles written byte by byte (never by pickling a live object, never unpickled),
zip archives shaped like torch's format, and safetensors files with hand-made headers.
"""
from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path

#: Protocol-0 pickle: GLOBAL os.system, MARK, STRING, TUPLE, REDUCE, STOP -- runs a shell command if
#: unpickled. Written as bytes; the tests never unpickle it.
EVIL_PICKLE_P0 = b"cos\nsystem\n(S'echo pwned'\ntR."
#: The same as protocol 2 (PROTO 2 then the same opcodes): starts with the 0x80 0x02 magic.
EVIL_PICKLE_P2 = b"\x80\x02" + EVIL_PICKLE_P0


def write_untrained_bert(path: Path, seed: int = 0, max_shard_size: str | None = None) -> Path:
    """Save an untrained BERT classifier (1 layer, hidden 16) with the tiny tokenizer to ``path``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from scanner.zoo import tiny

    torch.manual_seed(seed)
    tok = tiny.make_tokenizer()
    cfg = BertConfig(vocab_size=len(tiny.vocabulary()), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64, num_labels=2, pad_token_id=0,
                     id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
    model = BertForSequenceClassification(cfg)
    path.mkdir(parents=True, exist_ok=True)
    kw = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(path, safe_serialization=True, **kw)
    tok.save_pretrained(path)
    return path


def torch_zip_with_pickle(pickle_bytes: bytes) -> bytes:
    """A zip archive laid out like ``torch.save``'s (``archive/data.pkl``, ``archive/version``)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", pickle_bytes)
        zf.writestr("archive/version", "3\n")
    return buf.getvalue()


def read_safetensors(path: Path) -> tuple[dict, bytes]:
    """Split a safetensors file into its header dict and data buffer."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8: 8 + n]), raw[8 + n:]


def write_safetensors(path: Path, header: dict, data: bytes, header_len: int | None = None) -> None:
    """Write a safetensors file; with ``header_len`` the JSON header is padded with spaces (allowed by
    the format) to exactly that many bytes."""
    text = json.dumps(header, separators=(",", ":")).encode()
    if header_len is not None:
        assert len(text) <= header_len, (len(text), header_len)
        text += b" " * (header_len - len(text))
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def append_u8_tensor(path: Path, name: str, payload: bytes) -> None:
    """Append a U8 tensor holding ``payload`` at the end of a safetensors file's data buffer."""
    header, data = read_safetensors(path)
    header[name] = {"dtype": "U8", "shape": [len(payload)], "data_offsets": [len(data), len(data) + len(payload)]}
    write_safetensors(path, header, data + payload)


def write_large_llama(path: Path, hidden: int = 256, layers: int = 24, vocab: int = 1000, seed: int = 0) -> Path:
    """A Llama-shaped float32 safetensors checkpoint (config, no tokenizer) of about
    ``layers * 12.4 * hidden**2 * 4`` bytes (76 MiB with the defaults), written one layer at a time, for
    tests of weight statistics on checkpoints larger than ``--max-memory``."""
    import torch
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    inter = int(hidden * 2.6875)
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden, "intermediate_size": inter,
           "num_hidden_layers": layers, "num_attention_heads": max(1, hidden // 64), "num_key_value_heads": max(1, hidden // 64),
           "vocab_size": vocab, "tie_word_embeddings": False, "torch_dtype": "float32"}
    (path / "config.json").write_text(json.dumps(cfg))
    g = torch.Generator().manual_seed(seed)
    shapes = {"self_attn.q_proj": (hidden, hidden), "self_attn.k_proj": (hidden, hidden), "self_attn.v_proj": (hidden, hidden),
              "self_attn.o_proj": (hidden, hidden), "mlp.gate_proj": (inter, hidden), "mlp.up_proj": (inter, hidden),
              "mlp.down_proj": (hidden, inter)}
    weight_map: dict[str, str] = {}
    n_shards = min(4, layers)  # no empty shard (an unindexed file)
    per = -(-layers // n_shards)
    for k in range(n_shards):
        tensors = {}
        if k == 0:
            tensors["model.embed_tokens.weight"] = torch.randn(vocab, hidden, generator=g) * 0.02
        for i in range(k * per, min(layers, (k + 1) * per)):
            for n, shape in shapes.items():
                tensors[f"model.layers.{i}.{n}.weight"] = torch.randn(*shape, generator=g) * 0.02
            tensors[f"model.layers.{i}.input_layernorm.weight"] = torch.ones(hidden)
            tensors[f"model.layers.{i}.post_attention_layernorm.weight"] = torch.ones(hidden)
        if k == n_shards - 1:
            tensors["model.norm.weight"] = torch.ones(hidden)
            tensors["lm_head.weight"] = torch.randn(vocab, hidden, generator=g) * 0.02
        name = f"model-{k + 1:05d}-of-{n_shards:05d}.safetensors"
        save_file(tensors, path / name, metadata={"format": "pt"})
        weight_map.update({n: name for n in tensors})
        del tensors
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return path
