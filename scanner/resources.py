"""Memory bounds: estimate what loading a model needs before loading it, and refuse when it won't fit.

The estimate is the parameter count times 4 bytes (models are loaded as float32 on CPU), where the
parameter count is the larger of the checkpoint's own tensor table (safetensors headers, GGUF tensor
table) and what the config implies (the model built on torch's ``meta`` device, which allocates
nothing). Activations of the analyses come on top; they are bounded by the batch sizes.
"""
from __future__ import annotations

import re

from .errors import BadInput, InsufficientMemory

BYTES_PER_PARAMETER = 4  # float32
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str) -> int:
    """Parse a memory size such as ``512MiB``, ``8GB``, ``1.5g`` or ``1000000`` into bytes.

    Raises:
        BadInput: not a positive size with a known unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB).
    """
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise BadInput(f"invalid memory size {text!r}; use e.g. 512MiB, 8GB or a number of bytes")
    value = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if value <= 0:
        raise BadInput(f"invalid memory size {text!r}; it must be positive")
    return int(value)


def available_memory() -> int:
    """Bytes of memory available to new allocations now (psutil's ``available``: free plus reclaimable)."""
    import psutil

    return int(psutil.virtual_memory().available)


def format_bytes(n: float) -> str:
    """Human-readable size in binary units (``1.5 GiB``)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def check_fits(parameters: int, what: str, max_memory: int | None = None) -> int:
    """Refuse to load ``what`` when ``parameters`` x 4 bytes exceeds the limit.

    Args:
        parameters: number of model parameters (tensor elements).
        what: name used in the message (file or folder name).
        max_memory: limit in bytes (``--max-memory``); the available memory also applies.

    Returns:
        The estimate in bytes.

    Raises:
        InsufficientMemory: the estimate exceeds ``min(max_memory, available memory)``.
    """
    need = int(parameters) * BYTES_PER_PARAMETER
    avail = available_memory()
    limit, source = avail, "available memory"
    if max_memory is not None and max_memory < avail:
        limit, source = max_memory, "--max-memory"
    if need > limit:
        raise InsufficientMemory(
            f"{what}: loading needs about {format_bytes(need)} ({parameters:,} parameters x {BYTES_PER_PARAMETER} bytes) "
            f"but {source} is {format_bytes(limit)}; refusing to load"
        )
    return need
