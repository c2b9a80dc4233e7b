"""Typed errors and named exit codes.

Every error the scanner raises on bad input derives from :class:`ScannerError`; the CLI maps each one
to a single-line message and exit code :data:`ExitCode.ERROR` (2), never a traceback.
"""
from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """Exit codes of ``scanner scan`` (as in modelscan and fickling: named, stable)."""

    OK = 0  #: risk below ``--fail-on``
    FINDINGS = 1  #: risk at or above ``--fail-on``
    ERROR = 2  #: bad input, error, or an incomplete scan without findings at or above ``--fail-on``


class ScannerError(Exception):
    """Base class of all expected scanner errors; ``str(err)`` is a one-line message for users.

    ``partial`` holds what was inspected before the failure when the raiser knew it (a
    :class:`scanner.checkpoint.Checkpoint` without a model: files, findings, per-file errors), so
    that a report can still be written for a checkpoint that could not be loaded.
    """

    kind = "error"
    partial: Any = None


class TargetNotFound(ScannerError):
    """The scan target (path, hub ID, revision) could not be resolved."""

    kind = "target not found"


class BaseNotFound(ScannerError):
    """The target exists, but the model it builds on (a LoRA adapter's base, from ``adapter_config.json``
    or ``--base``) could not be resolved; unlike :class:`TargetNotFound`, what was inspected of the
    target (its files and findings) is still reported."""

    kind = "base model not found"


class Terminated(KeyboardInterrupt):
    """The process was asked to stop (SIGTERM: ``timeout``, a cancelled CI job, ``kill``); the CLI raises
    it from its signal handler so that the scan stops as on Ctrl-C and still writes its report."""


class UnsafeCheckpoint(ScannerError):
    """The checkpoint could only be loaded by executing code from it (pickle, remote code)."""

    kind = "unsafe checkpoint"


class CorruptCheckpoint(ScannerError):
    """A checkpoint file is malformed (bad safetensors framing, bad GGUF header, missing shard)."""

    kind = "corrupt checkpoint"


class UnsupportedModel(ScannerError):
    """The architecture or task is not one the scanner can load or analyse."""

    kind = "unsupported model"


class BadInput(ScannerError):
    """A user-supplied option or file (probe set, report file) is invalid."""

    kind = "bad input"


class InsufficientMemory(ScannerError):
    """Loading the model would need more memory than is available or allowed (``--max-memory``)."""

    kind = "insufficient memory"
