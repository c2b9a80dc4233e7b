"""Write a tiny, randomly initialised Llama checkpoint as a single GGUF file.

Test helper (imported by pytest tests; contains no tests itself). The file is written with
``gguf.GGUFWriter`` only -- no llama.cpp, no network -- and loads offline on CPU with::

    AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
    AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)

Model: ``general.architecture = "llama"``, 2 layers, hidden 64, 4 query heads / 2 key-value heads
(GQA, head_dim 16), SwiGLU FFN of width 128, untied output head, all tensors F32.

Tokenizer: a byte-level BPE (``tokenizer.ggml.model = "gpt2"``, ``tokenizer.ggml.pre = "gpt2"``)
over the printable-ASCII bytes plus newline and tab, with merges that make a handful of common
English words single tokens (``"hello world the cat"`` -> 4 tokens). Text made of printable ASCII
round-trips exactly; other bytes have no token and are dropped by the BPE.

Metadata keys written (``llama.*`` are read by transformers' GGUF config mapping):

    general.architecture                      "llama"
    general.name                              "tiny-llama-test"
    general.file_type                         0 (ALL_F32)
    llama.vocab_size                          len(tokens)
    llama.context_length                      128
    llama.embedding_length                    64
    llama.block_count                         2
    llama.feed_forward_length                 128
    llama.rope.dimension_count                16 (head_dim)
    llama.rope.freq_base                      10000.0
    llama.attention.head_count                4
    llama.attention.head_count_kv             2
    llama.attention.layer_norm_rms_epsilon    1e-5
    tokenizer.ggml.model                      "gpt2"
    tokenizer.ggml.pre                        "gpt2"
    tokenizer.ggml.tokens                     [str]  (byte-level spelling, e.g. " the" -> "Ġthe")
    tokenizer.ggml.token_type                 [int32] 1 = NORMAL, 3 = CONTROL
    tokenizer.ggml.merges                     [str]  ("Ġ t", "Ġt h", ...)
    tokenizer.ggml.bos_token_id               0  ("<s>")
    tokenizer.ggml.eos_token_id               1  ("</s>")
    tokenizer.ggml.padding_token_id           2  ("<pad>")
    tokenizer.ggml.unknown_token_id           3  ("<|endoftext|>")
    tokenizer.ggml.add_bos_token              True
    tokenizer.ggml.add_eos_token              False
    tokenizer.chat_template                   minimal "<s>role: content</s>" Jinja template

Tensors written (numpy shapes in Hugging Face ``[out, in]`` layout; GGUFWriter stores the
reversed ggml dims):

    token_embd.weight                [vocab, hidden]
    blk.{i}.attn_norm.weight         [hidden]
    blk.{i}.attn_q.weight            [n_head * head_dim, hidden]     (llama.cpp rotary permutation)
    blk.{i}.attn_k.weight            [n_head_kv * head_dim, hidden]  (llama.cpp rotary permutation)
    blk.{i}.attn_v.weight            [n_head_kv * head_dim, hidden]
    blk.{i}.attn_output.weight       [hidden, n_head * head_dim]
    blk.{i}.ffn_norm.weight          [hidden]
    blk.{i}.ffn_gate.weight          [ffn, hidden]
    blk.{i}.ffn_up.weight            [ffn, hidden]
    blk.{i}.ffn_down.weight          [hidden, ffn]
    output_norm.weight               [hidden]
    output.weight                    [vocab, hidden]

q/k are stored the way llama.cpp's converter stores them (interleaved rotary halves); transformers'
``LlamaTensorProcessor`` undoes that on load, so the loaded ``q_proj``/``k_proj`` equal the random
Hugging Face-layout matrices generated here.
"""

from __future__ import annotations

import pathlib

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, LlamaFileType, TokenType

HIDDEN_SIZE = 64
NUM_LAYERS = 2
NUM_HEADS = 4
NUM_KV_HEADS = 2
HEAD_DIM = HIDDEN_SIZE // NUM_HEADS
INTERMEDIATE_SIZE = 128
CONTEXT_LENGTH = 128
ROPE_THETA = 10000.0
RMS_NORM_EPS = 1e-5

# bos, eos, pad, unk -> ids 0..3. "<|endoftext|>" is in the vocabulary because transformers' GPT2Tokenizer
# (which builds the "gpt2" GGUF tokenizer) adds it as its default unk token; without it here, the tokenizer
# would hold one token more than the model's embedding.
SPECIAL_TOKENS = ("<s>", "</s>", "<pad>", "<|endoftext|>")
BOS_TOKEN_ID, EOS_TOKEN_ID, PAD_TOKEN_ID, UNK_TOKEN_ID = 0, 1, 2, 3

# Words that become single tokens, both sentence-initially and after a space.
WORDS = ("hello", "world", "the", "cat", "a", "is", "and", "of", "to", "it", "this", "movie", "good", "bad")

CHAT_TEMPLATE = (
    "{% for message in messages %}<s>{{ message['role'] }}: {{ message['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant: {% endif %}"
)


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable-character map (space -> "Ġ", newline -> "Ċ")."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars)}


def _build_vocab() -> tuple[list[str], list[int], list[str]]:
    """Tokens, token types and merges of the tiny byte-level BPE."""
    spell = _byte_to_unicode()
    alphabet = [spell[b] for b in [0x09, 0x0A] + list(range(0x20, 0x7F))]

    merges: list[str] = []
    words: list[str] = []
    # Space-prefixed chains rank first: each step's left side is the word-so-far, so a chain always
    # completes before any other merge can split the word.
    for word in [spell[0x20] + w for w in WORDS] + list(WORDS):
        piece = word[0]
        for ch in word[1:]:
            merge = f"{piece} {ch}"
            piece += ch
            if merge not in merges:
                merges.append(merge)
            if piece not in words:
                words.append(piece)

    tokens = list(SPECIAL_TOKENS) + alphabet + [w for w in words if w not in alphabet]
    types = [int(TokenType.CONTROL)] * len(SPECIAL_TOKENS) + [int(TokenType.NORMAL)] * (
        len(tokens) - len(SPECIAL_TOKENS)
    )
    return tokens, types, merges


def _permute_rotary(weight: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k permutation (convert_hf_to_gguf.py ``LlamaModel.permute``)."""
    out_dim = weight.shape[0]
    return (
        weight.reshape(n_head, 2, out_dim // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)
    )


def write_tiny_llama_gguf(path: pathlib.Path, seed: int = 0) -> dict:
    """Write the tiny Llama GGUF to ``path`` and return facts about it.

    Weights are drawn from ``numpy.random.default_rng(seed)`` (normal, std 0.02; norm weights
    near 1), so the same seed gives byte-identical files.

    Returns a dict with ``vocab_size``, ``hidden_size``, ``num_layers``, ``n_params`` (number of
    weights written, equal to the loaded model's parameter count) plus ``num_heads``,
    ``num_kv_heads``, ``intermediate_size``, ``bos_token_id``, ``eos_token_id``, ``pad_token_id``,
    ``unk_token_id``, ``tokenizer_model`` and ``path``.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tokens, token_types, merges = _build_vocab()
    vocab_size = len(tokens)

    def normal(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    def norm_weight() -> np.ndarray:
        return (1.0 + rng.standard_normal(HIDDEN_SIZE) * 0.02).astype(np.float32)

    tensors: dict[str, np.ndarray] = {"token_embd.weight": normal(vocab_size, HIDDEN_SIZE)}
    for i in range(NUM_LAYERS):
        q = normal(NUM_HEADS * HEAD_DIM, HIDDEN_SIZE)
        k = normal(NUM_KV_HEADS * HEAD_DIM, HIDDEN_SIZE)
        tensors.update(
            {
                f"blk.{i}.attn_norm.weight": norm_weight(),
                f"blk.{i}.attn_q.weight": _permute_rotary(q, NUM_HEADS),
                f"blk.{i}.attn_k.weight": _permute_rotary(k, NUM_KV_HEADS),
                f"blk.{i}.attn_v.weight": normal(NUM_KV_HEADS * HEAD_DIM, HIDDEN_SIZE),
                f"blk.{i}.attn_output.weight": normal(HIDDEN_SIZE, NUM_HEADS * HEAD_DIM),
                f"blk.{i}.ffn_norm.weight": norm_weight(),
                f"blk.{i}.ffn_gate.weight": normal(INTERMEDIATE_SIZE, HIDDEN_SIZE),
                f"blk.{i}.ffn_up.weight": normal(INTERMEDIATE_SIZE, HIDDEN_SIZE),
                f"blk.{i}.ffn_down.weight": normal(HIDDEN_SIZE, INTERMEDIATE_SIZE),
            }
        )
    tensors["output_norm.weight"] = norm_weight()
    tensors["output.weight"] = normal(vocab_size, HIDDEN_SIZE)

    writer = GGUFWriter(str(path), arch="llama")
    writer.add_name("tiny-llama-test")
    writer.add_file_type(LlamaFileType.ALL_F32)
    writer.add_vocab_size(vocab_size)
    writer.add_context_length(CONTEXT_LENGTH)
    writer.add_embedding_length(HIDDEN_SIZE)
    writer.add_block_count(NUM_LAYERS)
    writer.add_feed_forward_length(INTERMEDIATE_SIZE)
    writer.add_rope_dimension_count(HEAD_DIM)
    writer.add_rope_freq_base(ROPE_THETA)
    writer.add_head_count(NUM_HEADS)
    writer.add_head_count_kv(NUM_KV_HEADS)
    writer.add_layer_norm_rms_eps(RMS_NORM_EPS)

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(BOS_TOKEN_ID)
    writer.add_eos_token_id(EOS_TOKEN_ID)
    writer.add_pad_token_id(PAD_TOKEN_ID)
    writer.add_unk_token_id(UNK_TOKEN_ID)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    for name, array in tensors.items():
        writer.add_tensor(name, array, raw_dtype=GGMLQuantizationType.F32)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    return {
        "path": path,
        "vocab_size": vocab_size,
        "hidden_size": HIDDEN_SIZE,
        "num_layers": NUM_LAYERS,
        "num_heads": NUM_HEADS,
        "num_kv_heads": NUM_KV_HEADS,
        "intermediate_size": INTERMEDIATE_SIZE,
        "n_params": int(sum(a.size for a in tensors.values())),
        "bos_token_id": BOS_TOKEN_ID,
        "eos_token_id": EOS_TOKEN_ID,
        "pad_token_id": PAD_TOKEN_ID,
        "unk_token_id": UNK_TOKEN_ID,
        "tokenizer_model": "gpt2",
    }
