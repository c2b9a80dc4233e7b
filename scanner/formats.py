"""Content sniffing and strict validation of checkpoint files, by their bytes rather than their names.

Safetensors framing (https://github.com/huggingface/safetensors, "Format"): 8-byte little-endian
header length N, N bytes of UTF-8 JSON mapping tensor names to ``{dtype, shape, data_offsets}``, then
the data buffer. GGUF files start with the magic ``GGUF``; zip archives (torch's default save format)
with ``PK\\x03\\x04``; raw pickles with the PROTO opcode ``\\x80`` and a protocol byte 2-5.
"""
from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

from .errors import CorruptCheckpoint

_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the reference implementation's own limit


def sniff(path: Path) -> str:
    """Return the format of ``path`` judged from its first bytes: ``safetensors``, ``gguf``, ``zip``,
    ``pickle``, ``json``, ``text`` or ``unknown``. Never raises for unreadable files (``unknown``)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
            size = path.stat().st_size
    except OSError:
        return "unknown"
    if head[:4] == b"GGUF":
        return "gguf"
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= min(size - 8, MAX_HEADER_BYTES) and head[8:9] == b"{":
            return "safetensors"
    stripped = head.lstrip()
    if stripped[:1] in (b"{", b"["):
        return "json"
    try:
        head.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "unknown"


def validate_safetensors(path: Path) -> dict[str, dict]:
    """Strictly validate a safetensors file's framing and return its tensor table
    (name -> ``{dtype, shape, data_offsets}``), without reading tensor data.

    Checks: header length within the file, JSON object header, known dtypes, offsets that are in
    order, non-overlapping, match dtype x shape, and cover exactly the data buffer.

    Raises:
        CorruptCheckpoint: any check fails (message names the file and the first problem).
    """
    name = path.name
    size = path.stat().st_size
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise CorruptCheckpoint(f"{name}: truncated safetensors file ({size} bytes)")
        (n,) = struct.unpack("<Q", raw)
        if n > size - 8 or n > MAX_HEADER_BYTES:
            raise CorruptCheckpoint(f"{name}: safetensors header length {n} exceeds the file size {size}")
        try:
            header = json.loads(fh.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise CorruptCheckpoint(f"{name}: safetensors header is not valid JSON") from None
    if not isinstance(header, dict):
        raise CorruptCheckpoint(f"{name}: safetensors header is not a JSON object")
    data_len = size - 8 - n
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    spans = []
    for key, info in tensors.items():
        if not isinstance(info, dict):
            raise CorruptCheckpoint(f"{name}: tensor {key!r} has a malformed entry")
        dtype, shape, offs = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in _DTYPE_BYTES:
            raise CorruptCheckpoint(f"{name}: tensor {key!r} has unknown dtype {dtype!r}")
        if not (isinstance(shape, list) and all(isinstance(s, int) and s >= 0 for s in shape)):
            raise CorruptCheckpoint(f"{name}: tensor {key!r} has a malformed shape")
        if not (isinstance(offs, list) and len(offs) == 2 and all(isinstance(o, int) for o in offs)):
            raise CorruptCheckpoint(f"{name}: tensor {key!r} has malformed data_offsets")
        numel = 1
        for s in shape:
            numel *= s
        if offs[1] - offs[0] != numel * _DTYPE_BYTES[dtype] or offs[0] < 0:
            raise CorruptCheckpoint(f"{name}: tensor {key!r} size does not match its dtype and shape")
        spans.append((offs[0], offs[1], key))
    spans.sort()
    end = 0
    for start, stop, key in spans:
        if start != end:
            raise CorruptCheckpoint(f"{name}: tensor {key!r} overlaps or leaves a gap in the data buffer")
        end = stop
    if end != data_len:
        raise CorruptCheckpoint(f"{name}: data buffer is {data_len} bytes but tensors cover {end}")
    return tensors


def validate_gguf(path: Path) -> None:
    """Check that ``path`` parses as GGUF with the ``gguf`` package's reader.

    Raises:
        CorruptCheckpoint: wrong magic or a header/tensor table that does not parse.
    """
    if sniff(path) != "gguf":
        raise CorruptCheckpoint(f"{path.name}: not a GGUF file (bad magic)")
    try:
        from gguf import GGUFReader

        GGUFReader(str(path))
    except Exception as exc:  # the reader raises assorted errors on malformed input
        raise CorruptCheckpoint(f"{path.name}: malformed GGUF file ({type(exc).__name__}: {exc})".splitlines()[0]) from None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in ``chunk``-byte blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
