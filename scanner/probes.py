"""Probe sets: clean inputs that the trigger search inserts candidates into.

The default classifier probe set is 400 SST-2 sentences (200 per polarity) shipped as package data
(``scanner/data/probes_sst2.tsv``; Socher et al. 2013), plus 200 AG News headlines for models with more
than two labels (``probes_agnews.tsv``); see ``scanner/data/ATTRIBUTION.md``.
``--probes FILE`` replaces it: one text per line (``.txt``), the column of a ``.tsv``/``.csv`` whose header
says ``text``/``sentence``/``prompt``/``instruction``, else its first column (a column of numbers is
refused), or a ``.jsonl`` field named ``text``, ``sentence``, ``prompt`` or ``instruction``.
"""
from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .errors import BadInput

MIN_PROBES = 16
_TEXT_KEYS = ("text", "sentence", "prompt", "instruction")


@dataclass
class ProbeSet:
    """Clean probe texts and where they came from."""

    texts: list[str]
    source: str

    def split(self, seed: int, heldout_fraction: float = 0.5) -> tuple[list[str], list[str]]:
        """Seeded split into (search, held-out) texts; held-out texts only verify candidates."""
        idx = list(range(len(self.texts)))
        random.Random(seed).shuffle(idx)
        k = int(round(len(idx) * (1 - heldout_fraction)))
        return [self.texts[i] for i in idx[:k]], [self.texts[i] for i in idx[k:]]


def _shipped(name: str) -> list[str]:
    return _parse_table(resources.files("scanner.data").joinpath(name).read_text(), "\t")


def default_probes(labels: list[str] | None = None) -> ProbeSet:
    """The shipped probe set for a classifier with these label names.

    Two-label models get the 400 SST-2 sentences (sentiment is the commonest binary task); models
    with more labels get 200 AG News headlines (Zhang et al. 2015) plus the SST-2 sentences, so that
    every label has inputs the model assigns elsewhere.
    """
    sst2 = _shipped("probes_sst2.tsv")
    if labels is None or len(labels) <= 2:
        return ProbeSet(sst2, "scanner/data/probes_sst2.tsv (SST-2 dev, Socher et al. 2013)")
    return ProbeSet(_shipped("probes_agnews.tsv") + sst2,
                    "scanner/data/probes_agnews.tsv + probes_sst2.tsv (AG News dev, Zhang et al. 2015; SST-2 dev)")


def broad_probes() -> ProbeSet:
    """Every shipped text for a classifier whose task the default set does not cover: the 200 AG News
    headlines, the 400 SST-2 sentences, the 64 self-instruct requests and the 48 AdvBench harmful
    requests (712 texts). Used when the default set leaves a label with too few texts the model assigns
    elsewhere (a two-label classifier that is not about sentiment: spam, toxicity, topic pairs), so that
    its label is searched instead of skipped."""
    chat, harmful = chat_probes()
    return ProbeSet(_shipped("probes_agnews.tsv") + _shipped("probes_sst2.tsv") + chat.texts + harmful.texts,
                    "scanner/data/probes_agnews.tsv + probes_sst2.tsv + probes_chat.jsonl + probes_harmful.jsonl "
                    "(AG News, SST-2, self-instruct, AdvBench: the default set left a label without enough probes)")


def chat_probes() -> tuple[ProbeSet, ProbeSet]:
    """Default probe sets for chat models: 64 benign instructions (self-instruct, Wang et al. 2023) and
    48 harmful requests (AdvBench, Zou et al. 2023), shipped as ``scanner/data/probes_chat.jsonl`` and
    ``probes_harmful.jsonl`` (disjoint from the zoo's training prompts)."""
    import json

    def read(name: str) -> list[str]:
        text = resources.files("scanner.data").joinpath(name).read_text()
        return [json.loads(line)["prompt"] for line in text.splitlines() if line.strip()]

    return (ProbeSet(read("probes_chat.jsonl"), "scanner/data/probes_chat.jsonl (self-instruct, Wang et al. 2023)"),
            ProbeSet(read("probes_harmful.jsonl"), "scanner/data/probes_harmful.jsonl (AdvBench, Zou et al. 2023)"))


def load_probes(path: str | Path) -> ProbeSet:
    """Read a probe file (see module docstring).

    Raises:
        BadInput: missing, unreadable or not a regular file, unknown format, a table whose text column holds numbers,
            or fewer than 16 non-empty texts.
    """
    p = Path(path)
    if p.exists() and not p.is_file():  # a FIFO or device would block or never end
        raise BadInput(f"--probes {path}: not a regular file")
    try:
        raw = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"--probes {path}: cannot read ({type(exc).__name__})") from None
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        texts = []
        for n, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError):  # RecursionError: nested too deeply to parse
                raise BadInput(f"--probes {path}: line {n} is not JSON") from None
            text = next((obj[k] for k in _TEXT_KEYS if isinstance(obj, dict) and isinstance(obj.get(k), str)), None)
            if text is None:
                raise BadInput(f"--probes {path}: line {n} has none of the fields {', '.join(_TEXT_KEYS)}")
            texts.append(text)
    elif suffix in {".tsv", ".csv"}:
        try:
            texts = _parse_table(raw, "\t" if suffix == ".tsv" else ",")
        except csv.Error as exc:  # e.g. a field over the csv module's 131,072-character limit
            raise BadInput(f"--probes {path}: not a readable {suffix[1:]} table ({exc})") from None
        if texts and all(_is_number(t) for t in texts[1:] or texts):  # [1:]: an unrecognised header line
            raise BadInput(f"--probes {path}: the text column holds numbers (ids or labels?); put the texts in the first "
                           f"column or name their column {', '.join(_TEXT_KEYS)}")
    else:
        texts = [line.strip() for line in raw.splitlines() if line.strip()]
    texts = [t.strip() for t in texts if t and t.strip()]
    if len(texts) < MIN_PROBES:
        raise BadInput(f"--probes {path}: {len(texts)} texts; at least {MIN_PROBES} are needed")
    return ProbeSet(texts, str(p))


def _parse_table(text: str, delimiter: str) -> list[str]:
    """The texts of a table: the column whose header says ``text``/``sentence``/``prompt``/``instruction``
    (any position; the header line is skipped), else the first column."""
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL))
    col = 0
    if rows and rows[0]:
        header = [c.strip().lower() for c in rows[0]]
        named = next((header.index(k) for k in _TEXT_KEYS if k in header), None)
        if named is not None:
            col, rows = named, rows[1:]
    return [r[col] for r in rows if len(r) > col and r[col].strip()]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
