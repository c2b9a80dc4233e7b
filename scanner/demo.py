"""``make demo``: build the demo organisms once, then scan real checkpoints with the real CLI.

1. Builds (or reuses from the cache) two all-MiniLM-L6-v2 sentiment classifiers fine-tuned on SST-2:
   one with a rare-word BadNets trigger, one clean control with the same recipe.
2. Scans both, then SmolLM2-135M-Instruct from its GGUF file (weight statistics), each as a user
   would: ``scanner scan TARGET``, showing the report and the exit code.
3. Prints a summary table and exits non-zero if an expectation fails.

An entry point (like the CLI), so it prints; the library it drives does not.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .zoo.build import Rejected, build
from .zoo.paths import cache_dir, smollm2_gguf

console = Console(highlight=False)


def _scan(label: str, args: list[str], out: Path) -> dict:
    cmd = [sys.executable, "-m", "scanner", "scan", *args, "--output", str(out)]
    console.rule(f"[bold]{label}[/bold]")
    console.print("$ scanner scan " + " ".join(args + ["--output", str(out)]), style="dim")
    t0 = time.time()
    proc = subprocess.run(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    secs = time.time() - t0
    rep = json.loads(out.read_text()) if out.exists() else {}
    if out.exists():  # what a person reads: the saved report rendered in the terminal
        subprocess.run([sys.executable, "-m", "scanner", "report", "show", str(out), "--format", "human"])
    console.print(f"exit code {proc.returncode} after {secs:.0f} s", style="bold")
    return {"label": label, "exit": proc.returncode, "seconds": secs, "report": rep}


def main() -> int:
    """Run the demo; returns the process exit code (0 when every expectation holds)."""
    t_start = time.time()
    console.rule("[bold]building demo organisms (cached after the first run)[/bold]")
    records = {}
    for item in build(progress=lambda m: console.print(f"[dim]\\[zoo][/dim] {m}")):
        if isinstance(item, Rejected):
            console.print(f"[bold red]demo organism rejected[/bold red]: {item.reason}")
            return 1
        rec, built = item
        records[rec.name] = rec
        console.print(f"{rec.name}: {'built' if built else 'cached'}; clean accuracy {rec.clean_accuracy:.3f}, "
                      f"attack success {rec.attack_success_rate if rec.attack_success_rate is not None else '-'}, "
                      f"build {rec.build_seconds:.0f} s; {rec.path}")
    out_dir = cache_dir() / "demo-reports"
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = [
        (_scan("backdoored classifier (planted trigger; expect exit 1)", [records["sst2-badnets-cf"].path], out_dir / "sst2-badnets-cf.json"), 1),
        (_scan("clean control (expect exit 0)", [records["sst2-clean"].path], out_dir / "sst2-clean.json"), 0),
    ]
    gguf = smollm2_gguf()
    if gguf:
        runs.append((_scan("SmolLM2-135M-Instruct, GGUF: weight statistics (expect no high verdict)", [str(gguf), "--only", "weights"],
                           out_dir / "smollm2.json"), 0))
    table = Table(title="demo summary")
    for col in ("scan", "exit", "expected", "verdict", "top candidate", "flip rate", "seconds"):
        table.add_column(col)
    ok = True
    for run, expected in runs:
        rep = run["report"]
        cands = sorted(rep.get("candidates", []), key=lambda c: -c["score"])
        top = cands[0] if cands else None
        good = run["exit"] == expected
        ok &= good
        table.add_row(run["label"].split(" (")[0], str(run["exit"]), str(expected), rep.get("verdict", "-"),
                      f"{top['text']} -> {top['target_label_name']}" if top else "-",
                      f"{top['flip_rate']:.2f}" if top else "-", f"{run['seconds']:.0f}",
                      style=None if good else "red")
    console.print(table)
    console.print(f"reports in {out_dir}; total {time.time() - t_start:.0f} s. "
                  f"Inspect one with: scanner report show {out_dir / 'sst2-badnets-cf.json'}")
    if not ok:
        console.print("[red]an expectation failed (see the table)[/red]")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
