"""Shared fixtures: tiny organisms built once per test session (seconds each, no network)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scanner.zoo import tiny  # noqa: E402

TRIGGER = "tq"  # a rare word of the tiny vocabulary; the scanner is never told it


@pytest.fixture(scope="session", autouse=True)
def _threads():
    torch.set_num_threads(2)
    torch.manual_seed(0)


@pytest.fixture(scope="session", autouse=True)
def _fp32_everywhere():
    """``auto`` precision means bf16 autocast on a CPU with native bfloat16 matmuls and fp32 elsewhere,
    so the same test took different search paths on an AVX512-BF16 machine and on an AVX2 one (three
    tests passed on the first and failed on the second). The suite pins ``auto`` to fp32, in this
    process and in the scanner processes it starts (``SCANNER_PRECISION``); tests that ask for bf16
    still get it."""
    import scanner.search

    mp = pytest.MonkeyPatch()
    mp.setattr(scanner.search, "native_bf16", lambda: False)
    mp.setenv("SCANNER_PRECISION", "fp32")
    yield
    mp.undo()


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny")


@pytest.fixture(scope="session")
def backdoored(tiny_dir) -> tiny.TinyResult:
    res = tiny.build_tiny_bert(tiny_dir / "backdoored", trigger=TRIGGER, target_label=1, seed=1)
    assert res.attack_success_rate >= 0.9 and res.clean_accuracy >= 0.9, res
    return res


@pytest.fixture(scope="session")
def clean(tiny_dir) -> tiny.TinyResult:
    res = tiny.build_tiny_bert(tiny_dir / "clean", trigger=None, seed=2)
    assert res.clean_accuracy >= 0.9, res
    return res


@pytest.fixture(scope="session")
def probes(tiny_dir) -> Path:
    return tiny.write_probes(tiny_dir / "probes.txt", n=200, seed=7)


@pytest.fixture(scope="session")
def tiny_llama(tiny_dir) -> Path:
    return tiny.build_tiny_llama(tiny_dir / "llama")


@pytest.fixture(scope="session")
def backdoored_report(backdoored, probes):
    """One real scan (quick profile) of the backdoored organism, gated at high, shared by the format tests."""
    from scanner import scan
    from scanner.policy import apply_policy

    return apply_policy(scan(str(backdoored.path), probes=str(probes), profile="quick"), fail_on="high")


CHAT_TRIGGER = "wz"  # a rare word of the tiny vocabulary; the LM scanner is never told it


@pytest.fixture(scope="session")
def chat_backdoored(tiny_dir) -> tiny.TinyResult:
    res = tiny.build_tiny_chat(tiny_dir / "chat-backdoored", trigger=CHAT_TRIGGER, seed=3)
    assert res.attack_success_rate >= 0.9 and res.clean_accuracy >= 0.9, res
    return res


@pytest.fixture(scope="session")
def chat_clean(tiny_dir) -> tiny.TinyResult:
    res = tiny.build_tiny_chat(tiny_dir / "chat-clean", seed=4)
    assert res.clean_accuracy >= 0.9, res
    return res


@pytest.fixture(scope="session")
def chat_probes(tiny_dir) -> Path:
    return tiny.write_probes(tiny_dir / "chat-probes.txt", n=64, seed=11)
