"""Probe sets: shipped defaults chosen by label count, user files in every supported format."""
from __future__ import annotations

import json

import pytest

from scanner.errors import BadInput
from scanner.probes import default_probes, load_probes


def test_binary_models_get_sst2_and_topic_models_get_ag_news_too():
    two = default_probes(["negative", "positive"])
    four = default_probes(["World", "Sports", "Business", "Sci/Tech"])
    assert len(two.texts) == 400 and "SST-2" in two.source
    assert len(four.texts) == 600 and "AG News" in four.source
    assert all("#39;" not in t for t in four.texts)  # HTML escapes decoded
    assert set(two.texts) < set(four.texts)


def test_probe_split_is_seeded_and_disjoint():
    p = default_probes()
    a1, b1 = p.split(seed=3)
    a2, b2 = p.split(seed=3)
    assert (a1, b1) == (a2, b2) and not set(a1) & set(b1) and len(a1) + len(b1) == 400


@pytest.mark.parametrize("suffix", [".txt", ".tsv", ".csv", ".jsonl"])
def test_user_probe_files(tmp_path, suffix):
    texts = [f"probe sentence number {i}" for i in range(20)]
    path = tmp_path / f"p{suffix}"
    if suffix == ".jsonl":
        path.write_text("\n".join(json.dumps({"text": t}) for t in texts))
    elif suffix in (".tsv", ".csv"):
        sep = "\t" if suffix == ".tsv" else ","
        path.write_text("sentence" + sep + "label\n" + "\n".join(f"{t}{sep}1" for t in texts))
    else:
        path.write_text("\n".join(texts))
    assert load_probes(path).texts == texts


def test_jsonl_without_a_text_field_is_bad_input(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps({"body": "x"}) for _ in range(20)))
    with pytest.raises(BadInput, match="none of the fields"):
        load_probes(path)


def test_table_text_column_is_found_by_its_header_and_numbers_are_refused(tmp_path):
    """A CSV headed 'label,text' gave its labels ('0', '1', ...) as the probe texts, and one without a
    text column ('id,label') its ids: both scanned silently with numbers as inputs."""
    texts = [f"probe sentence number {i}" for i in range(20)]
    named = tmp_path / "named.csv"
    named.write_text("label,text\n" + "\n".join(f"{i % 2},{t}" for i, t in enumerate(texts)))
    assert load_probes(named).texts == texts
    tsv = tmp_path / "named.tsv"
    tsv.write_text("id\tlabel\tSentence\n" + "\n".join(f"{i}\t1\t{t}" for i, t in enumerate(texts)))
    assert load_probes(tsv).texts == texts
    for header in ("id,label\n", ""):
        ids = tmp_path / "ids.csv"
        ids.write_text(header + "\n".join(f"{i},{i % 2}" for i in range(40)))
        with pytest.raises(BadInput, match="holds numbers"):
            load_probes(ids)


def test_deeply_nested_jsonl_line_is_bad_input(tmp_path):
    """json.loads raises RecursionError (not ValueError) on 100,000 nested arrays: a traceback from
    `scanner scan --probes` once probe files were checked before the scan."""
    path = tmp_path / "deep.jsonl"
    path.write_text("[" * 100_000 + "\n")
    with pytest.raises(BadInput, match="line 1 is not JSON"):
        load_probes(path)


def test_table_over_the_csv_field_limit_is_bad_input(tmp_path):
    """A field over the csv module's 131,072-character limit raised csv.Error through load_probes: a
    traceback from `scanner scan --probes`."""
    for suffix in (".csv", ".tsv"):
        path = tmp_path / f"big{suffix}"
        path.write_text("text\n" + "a" * 200_000 + "\n" + "\n".join(f"sentence {i}" for i in range(20)))
        with pytest.raises(BadInput, match="not a readable"):
            load_probes(path)


def test_fifo_probe_file_is_refused_not_read(tmp_path):
    """A FIFO given as --probes blocked the scan forever (read before any stage's watchdog)."""
    import os

    fifo = tmp_path / "p.txt"
    os.mkfifo(fifo)
    with pytest.raises(BadInput, match="not a regular file"):
        load_probes(fifo)


def test_a_task_the_default_probes_do_not_cover_gets_every_shipped_text():
    """A two-label classifier of another task than sentiment (spam, toxicity, two news topics) may assign
    (nearly) every SST-2 sentence to one label; that label's search is then skipped. thin_labels finds
    such labels, and broad_probes gives every shipped text (SST-2, AG News, self-instruct, AdvBench)."""
    import torch

    from scanner.pipeline import thin_labels
    from scanner.probes import broad_probes, chat_probes
    from scanner.search import SearchConfig

    news = set(default_probes(["a", "b", "c", "d"]).texts) - set(default_probes(["a", "b"]).texts)

    class TopicModel:  # label 1 for a news headline, label 0 for anything else
        def predict_texts(self, texts):
            return torch.tensor([[0.1, 0.9] if t in news else [0.9, 0.1] for t in texts])

    cfg = SearchConfig()
    labels = ["other", "news"]
    sst2 = default_probes(labels)
    assert thin_labels(TopicModel(), *sst2.split(0), labels, cfg) == ["other"]  # no SST-2 sentence is 'news'
    broad = broad_probes()
    chat, harmful = chat_probes()
    assert set(sst2.texts) | news | set(chat.texts) | set(harmful.texts) == set(broad.texts)
    assert thin_labels(TopicModel(), *broad.split(0), labels, cfg) == []

    class SentimentModel:  # half the SST-2 sentences on each side: covered, no fallback
        def predict_texts(self, texts):
            return torch.tensor([[0.9, 0.1] if i % 2 else [0.1, 0.9] for i, _ in enumerate(texts)])

    assert thin_labels(SentimentModel(), *sst2.split(0), labels, cfg) == []
