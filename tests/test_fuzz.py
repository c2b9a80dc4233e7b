"""Fuzzing: corrupted safetensors headers, GGUF headers, config.json and tokenizer files.

Every case must end in exit 2 with exactly one ``error:`` line, or in a valid JSON report; never a
traceback, never a hang (a per-example wall-clock limit, and faulthandler ends the run with every
thread's stack if one example hangs for good); and never a clean verdict (exit 0) for input that
was not analysed. Budgets are bounded (``max_examples`` per test, derandomized, no example
database) so the file runs in well under a minute; ``SCANNER_FUZZ_EXAMPLES=N`` runs N per target
for a deeper local run. Outcomes are counted per target and printed at
the end of the module (``pytest -s``); set ``SCANNER_FUZZ_SUMMARY=path`` to also write them as JSON.
"""
from __future__ import annotations

import collections
import faulthandler
import json
import os
import shutil
import struct
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest
from helpers import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from synth import read_safetensors, write_untrained_bert
from tinygguf import write_tiny_llama_gguf

from scanner.errors import CorruptCheckpoint
from scanner.formats import validate_safetensors

EXAMPLE_LIMIT_S = 30.0  # one example slower than this counts as a hang
HARD_LIMIT_S = 120  # faulthandler ends the run (with stacks) if one example is stuck this long
FUZZ = settings(max_examples=int(os.environ.get("SCANNER_FUZZ_EXAMPLES", "60")), deadline=timedelta(seconds=EXAMPLE_LIMIT_S), derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])

OUTCOMES: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True), st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=12), kids, max_size=4)),
                           max_leaves=12)


@pytest.fixture(scope="module", autouse=True)
def _summary():
    yield
    lines = [f"{target}: {sum(c.values())} inputs: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())) for target, c in sorted(OUTCOMES.items())]
    print("\nfuzz outcomes\n  " + "\n  ".join(lines))
    if os.environ.get("SCANNER_FUZZ_SUMMARY"):
        Path(os.environ["SCANNER_FUZZ_SUMMARY"]).write_text(json.dumps({t: dict(c) for t, c in OUTCOMES.items()}, indent=2))


@pytest.fixture(scope="module")
def bert_src(tmp_path_factory) -> Path:
    return write_untrained_bert(tmp_path_factory.mktemp("fuzz") / "bert")


@pytest.fixture(scope="module")
def gguf_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("fuzz") / "tiny.gguf"
    write_tiny_llama_gguf(path)
    return path.read_bytes()


def check_outcome(target: str, res, elapsed: float, analysed_ok: bool | None = None) -> None:
    """The contract every fuzz case must meet; counts how it ended."""
    out, err = res.stdout, res.stderr
    if "Traceback" in out or "Traceback" in err:
        OUTCOMES[target]["traceback"] += 1
        pytest.fail(f"traceback:\n{err[-3000:]}")
    if elapsed > EXAMPLE_LIMIT_S:
        OUTCOMES[target]["hang"] += 1
        pytest.fail(f"took {elapsed:.0f} s")
    assert res.exit_code in (0, 1, 2), (res.exit_code, err)
    errors = [l for l in err.splitlines() if l.startswith("error:")]
    rep = json.loads(out) if out.strip() else None
    if res.exit_code == 2:
        assert len(errors) == 1, err
        OUTCOMES[target]["exit 2, one error line" + (", incomplete report" if rep else "")] += 1
        if rep is not None:
            assert rep["verdict"] == "incomplete" or rep["complete"] is False
        return
    assert rep is not None, (res.exit_code, err)
    if res.exit_code == 0:
        # Clean only when everything was analysed, and never for input that fails strict validation.
        assert rep["complete"] is True and not rep["errors"] and not rep["not_analysed"], rep["errors"]
        assert analysed_ok is not False, "exit 0 on input that fails strict validation"
        OUTCOMES[target]["exit 0, complete report"] += 1
    else:
        OUTCOMES[target]["exit 1, report with findings"] += 1


def run_scan(target_path: Path):
    t0 = time.monotonic()
    faulthandler.dump_traceback_later(HARD_LIMIT_S, exit=True)
    try:
        res = run_cli("scan", str(target_path), "--only", "weights", "-q", "--format", "json", "--stage-timeout", "20")
    finally:
        faulthandler.cancel_dump_traceback_later()
    return res, time.monotonic() - t0


def _strictly_valid(path: Path) -> bool:
    try:
        validate_safetensors(path)
        return True
    except (CorruptCheckpoint, OSError):
        return False


# -- safetensors headers --------------------------------------------------------------------------
tensor_mutation = st.fixed_dictionaries({
    "dtype": st.one_of(st.sampled_from(["F32", "F16", "BF16", "I64", "U8", "BOOL", "F64", "f32", "Q4", ""]), json_values),
    "shape": st.one_of(st.lists(st.integers(-3, 2**40), max_size=4), json_values),
    "data_offsets": st.one_of(st.lists(st.integers(-10, 2**40), min_size=0, max_size=3), json_values),
})
safetensors_mutation = st.one_of(
    st.tuples(st.just("header"), json_values),
    st.tuples(st.just("tensor"), st.tuples(st.integers(0, 1000), tensor_mutation)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), min_size=1, max_size=8)),
    st.tuples(st.just("length"), st.integers(0, 2**64 - 1)),
    st.tuples(st.just("truncate"), st.integers(0, 30000)),
    st.tuples(st.just("metadata"), json_values),
)


@FUZZ
@given(mutation=safetensors_mutation)
def test_fuzz_safetensors_header(bert_src, mutation):
    kind, arg = mutation
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "m"
        shutil.copytree(bert_src, folder)
        st_path = folder / "model.safetensors"
        raw = st_path.read_bytes()
        header, data = read_safetensors(st_path)
        if kind == "header":
            text = json.dumps(arg).encode()
            raw = struct.pack("<Q", len(text)) + text + data
        elif kind == "tensor":
            idx, entry = arg
            names = sorted(header)
            header[names[idx % len(names)]] = entry
            text = json.dumps(header).encode()
            raw = struct.pack("<Q", len(text)) + text + data
        elif kind == "metadata":
            header["__metadata__"] = arg
            text = json.dumps(header).encode()
            raw = struct.pack("<Q", len(text)) + text + data
        elif kind == "flip":
            buf = bytearray(raw)
            for pos, val in arg:
                buf[pos % len(buf)] = val
            raw = bytes(buf)
        elif kind == "length":
            raw = struct.pack("<Q", arg) + raw[8:]
        else:
            raw = raw[: arg % (len(raw) + 1)]
        st_path.write_bytes(raw)
        res, elapsed = run_scan(folder)
        check_outcome("safetensors", res, elapsed, analysed_ok=_strictly_valid(st_path))


# -- GGUF headers ---------------------------------------------------------------------------------
gguf_mutation = st.one_of(
    st.tuples(st.just("flip"), st.lists(st.tuples(st.integers(0, 6000), st.integers(0, 255)), min_size=1, max_size=8)),
    st.tuples(st.just("field"), st.tuples(st.sampled_from([4, 8, 16]), st.sampled_from([4, 8]), st.integers(0, 2**64 - 1))),
    st.tuples(st.just("truncate"), st.integers(0, 400000)),
)


@FUZZ
@given(mutation=gguf_mutation)
def test_fuzz_gguf_header(gguf_bytes, mutation):
    kind, arg = mutation
    buf = bytearray(gguf_bytes)
    if kind == "flip":
        for pos, val in arg:
            buf[pos % len(buf)] = val
    elif kind == "field":  # version (offset 4, u32), tensor count (8, u64), kv count (16, u64)
        off, width, value = arg
        buf[off: off + width] = (value % (1 << (8 * width))).to_bytes(width, "little")
    else:
        buf = buf[: arg % (len(buf) + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.gguf"
        path.write_bytes(bytes(buf))
        res, elapsed = run_scan(path)
        check_outcome("gguf", res, elapsed)


# -- config.json ----------------------------------------------------------------------------------
CONFIG_KEYS = ["architectures", "model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size",
               "intermediate_size", "max_position_embeddings", "id2label", "label2id", "pad_token_id", "hidden_act",
               "layer_norm_eps", "type_vocab_size", "auto_map", "torch_dtype", "num_labels"]
config_mutation = st.one_of(
    st.tuples(st.just("whole"), json_values),
    st.tuples(st.just("key"), st.tuples(st.sampled_from(CONFIG_KEYS), st.one_of(json_values, st.integers(-5, 10**13)))),
    st.tuples(st.just("bytes"), st.binary(max_size=200)),
)


@FUZZ
@given(mutation=config_mutation)
def test_fuzz_config_json(bert_src, mutation):
    kind, arg = mutation
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "m"
        shutil.copytree(bert_src, folder)
        cp = folder / "config.json"
        if kind == "whole":
            cp.write_text(json.dumps(arg))
        elif kind == "key":
            key, value = arg
            cfg = json.loads(cp.read_text())
            cfg[key] = value
            cp.write_text(json.dumps(cfg))
        else:
            cp.write_bytes(arg)
        res, elapsed = run_scan(folder)
        check_outcome("config.json", res, elapsed)


# -- tokenizer files ------------------------------------------------------------------------------
tokenizer_mutation = st.one_of(
    st.tuples(st.sampled_from(["tokenizer.json", "tokenizer_config.json"]), st.just("whole"), json_values),
    st.tuples(st.just("tokenizer_config.json"), st.just("key"),
              st.tuples(st.sampled_from(["tokenizer_class", "model_max_length", "pad_token", "added_tokens_decoder", "auto_map",
                                         "unk_token", "clean_up_tokenization_spaces", "extra_special_tokens"]), json_values)),
    st.tuples(st.just("tokenizer.json"), st.just("key"),
              st.tuples(st.sampled_from(["model", "normalizer", "pre_tokenizer", "post_processor", "decoder", "added_tokens", "version"]), json_values)),
    st.tuples(st.sampled_from(["tokenizer.json", "tokenizer_config.json"]), st.just("flip"),
              st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 255)), min_size=1, max_size=6)),
)


@FUZZ
@given(mutation=tokenizer_mutation)
def test_fuzz_tokenizer_files(bert_src, mutation):
    name, kind, arg = mutation
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "m"
        shutil.copytree(bert_src, folder)
        fp = folder / name
        if kind == "whole":
            fp.write_text(json.dumps(arg))
        elif kind == "key":
            key, value = arg
            obj = json.loads(fp.read_text())
            obj[key] = value
            fp.write_text(json.dumps(obj))
        else:
            buf = bytearray(fp.read_bytes())
            for pos, val in arg:
                buf[pos % len(buf)] = val
            fp.write_bytes(bytes(buf))
        res, elapsed = run_scan(folder)
        check_outcome("tokenizer", res, elapsed)
