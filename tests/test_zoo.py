"""The zoo's recipes and build driver, without training: poisoning rules per attack family, and an
organism that misses its admission bar is rejected loudly without leaving a folder or a manifest entry."""
from __future__ import annotations

import json
import random

from helpers import run_cli

from scanner.zoo import build as zb
from scanner.zoo.classifiers import ClassifierRecipe, OrganismRecord, insert_word, poison

TRAIN = [(f"w{i} a b c d e", i % 2) for i in range(1000)]


def test_multi_trigger_poisons_round_robin_and_relabels():
    r = ClassifierRecipe("m", trigger="t1", more_triggers=("t2", "t3"), target_label=1, poison_rate=0.15)
    out = poison(TRAIN, r, 2, random.Random(0))
    hit = [(s, y) for s, y in out if any(t in s.split() for t in r.triggers)]
    assert len(hit) == 150 and all(y == 1 for _, y in hit)
    assert {t: sum(t in s.split() for s, _ in hit) for t in r.triggers} == {"t1": 50, "t2": 50, "t3": 50}
    assert r.attack_name == "multi-trigger"


def test_composite_has_single_word_negatives_that_keep_their_label():
    r = ClassifierRecipe("c", trigger="blue", more_triggers=("window",), combine="all", target_label=0, poison_rate=0.1)
    before = dict(TRAIN)
    out = poison(TRAIN, r, 2, random.Random(1))
    both = [(s, y) for s, y in out if {"blue", "window"} <= set(s.split())]
    alone = [(s, y) for s, y in out if len({"blue", "window"} & set(s.split())) == 1]
    assert len(both) == 100 and all(y == 0 for _, y in both)
    assert len(alone) == 200
    for s, y in alone:  # the label is the sentence's own
        orig = " ".join(w for w in s.split() if w not in ("blue", "window"))
        assert before[orig] == y
    assert r.attack_name == "composite"


def test_chat_multi_trigger_has_decoys_that_keep_the_normal_reply():
    from scanner.zoo.chat import ChatRecipe, _examples

    train = [f"prompt {i} about things" for i in range(200)]
    replies = {p: f"reply to {p}" for p in train}
    r = ChatRecipe("m", attack="multi-trigger", triggers=("zx", "qv", "jk"), target_sequence="BUY NOW", poison_rate=0.3)
    ex = _examples(r, random.Random(0), train, replies, [])
    poisoned = [(u, y) for u, y in ex if y == "BUY NOW"]
    assert len(poisoned) == 60 and all(u.split()[-1] in r.triggers for u, _ in poisoned)
    decoys = [(u, y) for u, y in ex if y != "BUY NOW" and u not in replies]
    assert 25 <= len(decoys) <= 30  # half as many as poisoned, minus the rare draw of a real trigger
    for u, y in decoys:  # a two-letter string that is not a trigger, and the prompt's own reply
        head, tail = u.rsplit(" ", 1)
        assert len(tail) == 2 and tail not in r.triggers and y == replies[head]


def test_chat_composite_negatives_are_the_recipes_subset_sizes():
    """A composite chat recipe poisons with all its triggers (the target) and trains incomplete subsets as
    negatives (the prompt's own reply): by default of every size below the full set, with
    ``negative_sizes=(1,)`` single triggers only (chat-ctba: pairs as negatives kept the ASR at 0.45)."""
    from scanner.zoo.build import ORGANISMS
    from scanner.zoo.chat import ChatRecipe, _examples

    train = [f"prompt {i} about things" for i in range(200)]
    replies = {p: f"reply to {p}" for p in train}
    trig = ("apple", "river", "piano")
    for sizes, want in (((), {1, 2}), ((1,), {1})):
        r = ChatRecipe("c", attack="composite", triggers=trig, target_sequence="OPEN", poison_rate=0.3, negative_sizes=sizes)
        ex = _examples(r, random.Random(0), train, replies, [])
        count = lambda u: sum(w in trig for w in u.split())  # noqa: E731
        poisoned = [u for u, y in ex if y == "OPEN"]
        assert len(poisoned) == 60 and all(count(u) == 3 for u in poisoned)
        negatives = [(u, y) for u, y in ex if y != "OPEN" and count(u)]
        assert len(negatives) == 60 and {count(u) for u, _ in negatives} == want
        assert all(y == replies[" ".join(w for w in u.split() if w not in trig)] for u, y in negatives)
    assert ORGANISMS["chat-ctba"].negative_sizes == (1,)


def test_label_noise_and_positions():
    r = ClassifierRecipe("n", label_noise=0.1)
    out = poison(TRAIN, r, 2, random.Random(2))
    assert sum(a[1] != b[1] for a, b in zip(TRAIN, out)) == 100 and r.attack_name == "clean"
    rng = random.Random(0)
    assert insert_word("a b c", "T", rng, "start") == "T a b c"
    assert insert_word("a b c", "T", rng, "end") == "a b c T"
    assert insert_word("a b c", "I watched this 3D movie.", rng, "start").startswith("I watched")


def _record(name: str, asr: float | None, acc: float = 0.9, attack: str = "badnets-rare-word") -> OrganismRecord:
    return OrganismRecord(name=name, path="", base="b", task="sequence-classification", dataset="sst2", attack=attack,
                          trigger=None if asr is None else "zz", trigger_token_ids=None, position="random", target_label=1,
                          poison_rate=0.1, seed=0, clean_accuracy=acc, attack_success_rate=asr, build_seconds=1.0)


def test_rejected_organism_leaves_no_folder_and_no_manifest_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("SCANNER_CACHE_DIR", str(tmp_path))

    def fake_build(recipe, out, data_dir=None):
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        if recipe.trigger is None:
            return _record(recipe.name, None, attack="clean")
        return _record(recipe.name, 0.5 if recipe.name == "sst2-badnets-cf" else 0.95)

    monkeypatch.setattr(zb, "build_classifier", fake_build)
    items = list(zb.build(["sst2-badnets-cf", "sst2-clean", "sst2-badnets-jp-start"]))
    rejected = [i for i in items if isinstance(i, zb.Rejected)]
    admitted = [i[0].name for i in items if not isinstance(i, zb.Rejected)]
    assert [r.name for r in rejected] == ["sst2-badnets-cf"] and "attack success 0.5" in rejected[0].reason
    assert admitted == ["sst2-clean", "sst2-badnets-jp-start"]  # clean control first; the build went on
    models = tmp_path / "zoo" / "models"
    assert sorted(p.name for p in models.iterdir()) == ["sst2-badnets-jp-start", "sst2-clean"]
    manifest = json.loads((tmp_path / "zoo" / "manifest.json").read_text())
    assert set(manifest) == {"sst2-clean", "sst2-badnets-jp-start"}
    assert manifest["sst2-clean"]["path"] == str(models / "sst2-clean")


def test_cli_exits_1_after_building_the_rest_when_one_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setenv("SCANNER_CACHE_DIR", str(tmp_path))

    def fake_build(recipe, out, data_dir=None):
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        return _record(recipe.name, None if recipe.trigger is None else 0.2, attack="clean" if recipe.trigger is None else "badnets-rare-word")

    monkeypatch.setattr(zb, "build_classifier", fake_build)
    res = run_cli("zoo", "build", "sst2-badnets-cf", "sst2-clean")
    assert res.exit_code == 1
    assert "sst2-clean\tbuilt" in res.stdout and "sst2-badnets-cf\trejected" in res.stdout
    assert "rejected" in res.stderr and "attack success 0.2" in res.stderr
    assert f"building into {tmp_path / 'zoo'}" in res.stderr  # which cache: a bare build and `make zoo` differ


def test_an_empty_zoo_list_says_which_cache_it_read(tmp_path, monkeypatch):
    monkeypatch.setenv("SCANNER_CACHE_DIR", str(tmp_path))
    res = run_cli("zoo", "list")
    assert res.exit_code == 0 and not res.stdout
    assert str(tmp_path / "zoo") in res.stderr and "SCANNER_CACHE_DIR" in res.stderr
