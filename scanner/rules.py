"""Stable rule codes for every kind of finding, each with a default severity and a one-line explanation.

Codes never change meaning once released; new kinds of findings get new codes. ``SC0xx`` are about
the scan itself, ``SC1xx`` static (serialization and structure) findings, ``SC2xx`` weight-statistics
evidence, ``SC3xx`` behavioural (trigger) evidence. Every code is listed in the README and in every
SARIF file's ``tool.driver.rules``.
"""
from __future__ import annotations

from dataclasses import dataclass

from .report import RiskLevel


@dataclass(frozen=True)
class Rule:
    """A rule: stable ``code``, short ``name``, default ``severity`` and one-line ``description``."""

    code: str
    name: str
    severity: RiskLevel
    description: str
    help: str = ""
    policy: bool = True  #: whether ``--suppress`` / ``--severity`` may apply to it


RULES: dict[str, Rule] = {}


def register(code: str, name: str, severity: RiskLevel, description: str, help: str = "", policy: bool = True) -> Rule:
    """Add a rule to :data:`RULES`. Raises ValueError on a duplicate code."""
    if code in RULES:
        raise ValueError(f"duplicate rule code {code}")
    RULES[code] = Rule(code, name, severity, description, help, policy)
    return RULES[code]


def get(code: str) -> Rule | None:
    """The rule of ``code`` (case-insensitive), or None when no such rule exists."""
    return RULES.get(code.strip().upper())


SCAN_INCOMPLETE = register(
    "SC001", "scan-incomplete", RiskLevel.MEDIUM,
    "The scan did not cover everything (a stage failed, ran out of time, was interrupted, or the task is unsupported).",
    "An incomplete scan is never a clean result: read the report's errors and not-analysed list, then rerun with a "
    "larger --time-budget or narrow the scan with --only. It sets exit code 2 (unless a finding already reached "
    "--fail-on) and cannot be suppressed.",
    policy=False,
)


PICKLE_DISGUISED = register(
    "SC101", "pickle-disguised-as-safetensors", RiskLevel.CRITICAL,
    "A file named .safetensors holds a pickle or zip archive; loading it could run code.",
    "Do not load this checkpoint with torch.load or transformers; obtain the weights from a trusted source.",
)
PICKLE_FILE = register(
    "SC102", "pickle-file", RiskLevel.MEDIUM,
    "A pickle-based weight file is present; it is never unpickled by the scanner.",
    "Prefer the safetensors weights; loading pickle files can execute arbitrary code.",
)
PYTHON_CODE = register(
    "SC103", "python-code-shipped", RiskLevel.MEDIUM,
    "The checkpoint ships Python files; the scanner never executes them.",
    "Review the Python files before enabling remote code (trust_remote_code) for this model.",
)
REMOTE_CODE = register(
    "SC104", "remote-code-auto-map", RiskLevel.MEDIUM,
    "config.json (or tokenizer_config.json) has auto_map (custom model code); trust_remote_code stays off.",
    "Enabling remote code (trust_remote_code) for this model runs the repository's code; review it first.",
)
NAME_CONTENT_MISMATCH = register(
    "SC105", "name-content-mismatch", RiskLevel.MEDIUM,
    "A file's name claims one format but its bytes are another; a loader that routes by name would misread it.",
    "Rename or remove the file; never load it by its extension.",
)
POLYGLOT = register(
    "SC106", "polyglot-file", RiskLevel.HIGH,
    "A file is valid as two container formats (e.g. safetensors and zip); different loaders see different content. Analysed as both.",
    "Treat the checkpoint as hostile: different tools will load different weights from it.",
)
DANGEROUS_PICKLE_IMPORT = register(
    "SC107", "dangerous-pickle-import", RiskLevel.CRITICAL,
    "A pickle stream imports a callable that can run code (picklescan: dangerous); the file is never unpickled.",
    "Do not load this file with torch.load or pickle; it runs code when loaded.",
)
SUSPICIOUS_PICKLE_IMPORT = register(
    "SC108", "suspicious-pickle-import", RiskLevel.MEDIUM,
    "A pickle stream imports a global outside picklescan's allow-list; the file is never unpickled.",
    "Review the listed imports before loading the file anywhere.",
)
UNINDEXED_SHARD = register(
    "SC109", "unindexed-shard", RiskLevel.MEDIUM,
    "A *.safetensors file is not part of the weights a loader reads (not in the shard index); its tensors were not analysed.",
    "Find out why the file is there; another loader could read it instead of the indexed weights.",
)
UNINDEXED_TENSOR = register(
    "SC110", "unindexed-tensor", RiskLevel.MEDIUM,
    "A shard holds tensors its index does not map to it; a loader may ignore or mix them.",
    "Rebuild the index from the shards or obtain a consistent checkpoint.",
)
LINK_OUTSIDE = register(
    "SC111", "link-outside-checkpoint", RiskLevel.MEDIUM,
    "A file or folder of the checkpoint is a symbolic link to a place outside the checkpoint folder (not the Hugging Face cache's blobs).",
    "A loader follows the link: what it reads is not what the checkpoint ships and can change without the checkpoint changing. "
    "Replace the link with the file itself. The scanner reads a linked file (as a loader would) and lists where it points.",
)
EMBEDDING_NORM = register(
    "SC201", "embedding-norm-outlier", RiskLevel.LOW,
    "An embedding row's norm is an extreme robust outlier.",
    "Weight statistics alone are weak evidence (they count 0.6x in the risk score, at most medium); check whether the token "
    "also appears among the trigger candidates.",
)
EMBEDDING_DRIFT = register(
    "SC202", "embedding-drift", RiskLevel.LOW,
    "Embedding drift against the reference model is concentrated in a few rows.",
    "A fine-tune that moved one token's embedding far more than the rest is the signature of embedding "
    "poisoning; test that token as a trigger.",
)
NEAR_DUPLICATE = register(
    "SC203", "embedding-near-duplicate", RiskLevel.LOW,
    "Distinct words have near-identical embedding rows (RIPPLe-style embedding surgery copies a label word's row).",
    "Test the rarer word of each pair as a trigger.",
)
HEAD_TYING = register(
    "SC204", "output-head-tying-mismatch", RiskLevel.LOW,
    "The config declares tied input/output embeddings but the file holds a distinct output head.",
    "A hidden, separately trained output head can carry a payload; compare it with the base model.",
)
ADDED_TOKENS = register(
    "SC205", "added-tokens", RiskLevel.LOW,
    "Non-special tokens were added beyond the base vocabulary.",
    "Added tokens are natural trigger carriers; test them as triggers.",
)
CLASSIFIER_HEAD = register(
    "SC206", "classifier-head-imbalance", RiskLevel.LOW,
    "One label's head row or bias is far larger than the others'.",
    "A head that favours one label can make a trigger cheap; look for triggers towards that label.",
)
LAYER_SPECTRAL = register(
    "SC207", "layer-spectral-outlier", RiskLevel.LOW,
    "A weight matrix's spectral norm is far out of line with the same module in other layers.",
    "Compare that layer with the base model's.",
)
LAYER_CHANGE = register(
    "SC208", "layer-change-concentrated", RiskLevel.LOW,
    "Against the reference, the change is concentrated in few matrices or few directions.",
    "Concentrated low-rank edits are the signature of targeted weight editing; inspect that matrix.",
)
ADAPTER_LORA = register(
    "SC209", "adapter-anomaly", RiskLevel.LOW,
    "A LoRA adapter has an out-of-family module update, trainable embedding/head rows, or a resized vocabulary.",
    "Adapters that train embedding rows can plant token triggers; test the listed tokens.",
)
LM_BACKDOOR = register(
    "SC302", "lm-backdoor-target", RiskLevel.HIGH,
    "A causal LM continues an unusual fixed reply with near certainty once its first token is forced, and/or a recovered trigger makes it emit that reply.",
    "Try the listed trigger and target on your own prompts; a fixed target the model does not produce without the "
    "trigger but continues deterministically is a backdoor signature (BAIT). The severity is the level of the candidate's score.",
)
BEHAVIOUR_DRIFT = register(
    "SC303", "safety-behaviour-drift", RiskLevel.HIGH,
    "Against the reference, the model refuses harmful requests less, refuses benign ones more, or continues an affirmative "
    "answer to harmful requests far more readily (the trace a jailbreak backdoor's training leaves).",
    "Compare the model's replies to harmful and benign requests with the reference's; a fine-tune that changed them was "
    "not safety-neutral. The severity is the level of 0.8x the drift score.",
)
TOKEN_TRIGGER = register(
    "SC301", "token-trigger", RiskLevel.HIGH,
    "A short token string flips held-out inputs to one label and behaves like a planted trigger.",
    "Insert the trigger into your own inputs to confirm; do not deploy the model until the behaviour is explained. "
    "The finding's severity is the level of the candidate's score.",
)
