"""Baseline: AdapterSentry (PyPI ``adaptersentry``), a static scanner for LoRA adapter files.

AdapterSentry 2.x reads ``adapter_model.safetensors`` (and ``adapter_config.json`` beside it) and
compares every module's LoRA update ``s * B @ A`` with its own family inside the adapter; its verdict
is ``allow``, ``review`` or ``block``. It needs no base model and runs no forward pass
(``forward_tokens`` 0). Detection score for the ROC: its ``max_concentration_z`` (the statistic its
``review`` rule thresholds at 14), else ``max_robust_z``, else 1/0.5/0 for block/review/allow.

It is installed outside the project's environment (its wheel also ships a top-level package named
``benchmarks`` that would shadow ours): ``pip install --no-deps --target
$SCANNER_CACHE_DIR/bench/adaptersentry adaptersentry==2.0.2``, which :mod:`benchmarks.run` does once;
its own dependencies (numpy, scipy, scikit-learn, pydantic, rich, safetensors) are already installed.

Run (by the benchmark, inside its guard): ``--target ADAPTER_DIR --lib DIR -o OUT.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

VERSION = "2.0.2"
_ACTION_SCORE = {"allow": 0.0, "review": 0.5, "block": 1.0}


def run(target: Path, lib: Path) -> dict[str, Any]:
    """Scan the adapter folder ``target`` with AdapterSentry installed under ``lib``.

    Returns ``score`` (see module docstring), ``action``, ``level``, ``reasons`` (codes), ``version``,
    ``forward_tokens`` (0) and ``notes``. Raises ImportError when AdapterSentry is not under ``lib``.
    """
    sys.path.append(str(lib))  # after ours: its top-level ``benchmarks`` package must not shadow this one
    from adaptersentry import __version__, scan

    files = sorted(target.glob("adapter_model*.safetensors")) or sorted(target.glob("*.safetensors"))
    if not files:
        return {"score": None, "action": None, "version": __version__, "forward_tokens": 0, "notes": ["no adapter safetensors file"]}
    res = scan(files[0]).model_dump(mode="json")
    verdict = res.get("verdict") or {}
    intra = ((res.get("anomaly") or {}).get("intra") or {})
    score = intra.get("max_concentration_z")
    if score is None:
        score = intra.get("max_robust_z")
    if score is None:
        score = _ACTION_SCORE.get(str(verdict.get("action")), None)
    return {"score": None if score is None else round(float(score), 4), "action": verdict.get("action"), "level": verdict.get("level"),
            "reasons": [r.get("code") for r in verdict.get("reasons", [])], "version": __version__, "forward_tokens": 0,
            "coverage": res.get("coverage"), "notes": []}


def main(argv: list[str] | None = None) -> int:
    """CLI: ``--target ADAPTER_DIR --lib DIR -o OUT.json``; writes the result JSON (with ``seconds``)."""
    ap = argparse.ArgumentParser(description="AdapterSentry baseline")
    ap.add_argument("--target", required=True)
    ap.add_argument("--lib", required=True, help="folder AdapterSentry was pip-installed into with --target")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    res = run(Path(args.target), Path(args.lib))
    res["seconds"] = round(time.perf_counter() - t0, 3)
    Path(args.output).write_text(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
