"""Baseline detectors run by the benchmark next to the scanner, each in its own guarded child process:

* :mod:`benchmarks.baselines.embedding_drift` -- per-token embedding drift against the base (SaTML'24, 2nd place);
* :mod:`benchmarks.baselines.bait` -- BAIT-style first-token target inversion for chat models (Shen et al., S&P'25);
* :mod:`benchmarks.baselines.adaptersentry` -- the PyPI LoRA-adapter scanner AdapterSentry.

Each writes one JSON object with at least ``score`` (higher is more suspicious; None when it does not
apply), ``forward_tokens`` and ``notes``.
"""
