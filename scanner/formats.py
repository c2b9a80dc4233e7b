"""Content sniffing and strict validation of checkpoint files, by their bytes rather than their names.

Safetensors framing (https://github.com/huggingface/safetensors, "Format"): 8-byte little-endian
header length N, N bytes of UTF-8 JSON mapping tensor names to ``{dtype, shape, data_offsets}``, then
the data buffer. GGUF files start with the magic ``GGUF``; zip archives (torch's default save format)
with ``PK\\x03\\x04``; raw pickles with the PROTO opcode ``\\x80`` and a protocol byte 2-5.
"""
from __future__ import annotations

import hashlib
import io
import json
import pickletools
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CorruptCheckpoint

_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the reference implementation's own limit


#: Formats that are containers of weights or code; a file valid as two of them is a polyglot.
CONTAINER_FORMATS = ("safetensors", "gguf", "zip", "pickle")
#: What a file name's suffix claims its bytes are (suffixes not listed claim nothing).
SUFFIX_FORMATS: dict[str, frozenset[str]] = {
    ".safetensors": frozenset({"safetensors"}),
    ".gguf": frozenset({"gguf"}),
    ".bin": frozenset({"pickle", "zip"}), ".pt": frozenset({"pickle", "zip"}), ".pth": frozenset({"pickle", "zip"}),
    ".ckpt": frozenset({"pickle", "zip"}), ".pkl": frozenset({"pickle", "zip"}), ".pickle": frozenset({"pickle", "zip"}),
    ".joblib": frozenset({"pickle", "zip"}), ".zip": frozenset({"zip"}), ".npz": frozenset({"zip"}),
}
_PICKLE_PROBE_BYTES = 1 << 20  # protocol 0/1 pickles have no magic: parse at most this many bytes


@dataclass
class Sniffed:
    """What a file's bytes are, judged by content only.

    ``format``: the primary format (``safetensors``, ``gguf``, ``zip``, ``pickle``, ``json``, ``text``
    or ``unknown``); ``formats``: every container format (:data:`CONTAINER_FORMATS`) the bytes are
    valid as, primary first (two or more: a polyglot); ``tensors``: the safetensors tensor table when
    the file passed strict safetensors validation; ``safetensors_error``: why strict validation failed
    for a file whose first bytes are framed like safetensors (None otherwise).
    """

    format: str
    formats: list[str] = field(default_factory=list)
    tensors: dict[str, dict] | None = None
    safetensors_error: str | None = None

    @property
    def polyglot(self) -> bool:
        """True when the bytes are valid as two or more container formats."""
        return len(self.formats) > 1


def sniff_file(path: Path) -> Sniffed:
    """Judge ``path`` by its bytes (never by its name). Never raises: unreadable files are ``unknown``.

    Strict safetensors validation wins over every magic-number check, so a valid safetensors file
    whose 8-byte header length happens to start with a pickle PROTO opcode (``0x80 0x02..0x05``) is
    routed as safetensors; it is also reported as ``pickle`` only if its bytes really parse as a
    pickle stream up to STOP. A zip central directory at the end of a file of another format (e.g.
    inside a safetensors tensor's data) makes it a ``zip`` as well.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
        size = path.stat().st_size
    except OSError:
        return Sniffed("unknown")
    formats: list[str] = []
    tensors, st_error = None, None
    framed = _framed_like_safetensors(head, size)
    if framed:
        try:
            tensors = validate_safetensors(path)
            formats.append("safetensors")
        except (CorruptCheckpoint, OSError) as exc:
            st_error = str(exc)
        except Exception as exc:  # defence in depth: validation must only ever classify, never crash
            st_error = f"{path.name}: safetensors header could not be validated ({type(exc).__name__})"
    if head[:4] == b"GGUF":
        formats.append("gguf")
    if head[:4] == b"PK\x03\x04":
        formats.append("zip")
    magic_pickle = len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5
    if magic_pickle and "safetensors" not in formats:
        formats.append("pickle")
    elif (magic_pickle or _may_start_pickle(head)) and _parses_as_pickle(path, size):
        formats.append("pickle")
    if "zip" not in formats and _is_zip(path):
        formats.append("zip")
    if formats:
        primary = formats[0]
    elif framed:
        primary = "safetensors"  # framed like safetensors but fails strict validation (see safetensors_error)
    else:
        stripped = head.lstrip()
        after = stripped[1:].lstrip()[:1]  # a JSON array goes on with a value: a BERT vocab.txt's '[PAD]' does not
        if stripped[:1] == b"{" or (stripped[:1] == b"[" and (after in (b'"', b"[", b"{", b"]", b"-", b"t", b"f", b"n", b"") or after.isdigit())):
            primary = "json"
        else:
            try:
                primary = "unknown" if "\x00" in head.decode("utf-8") else "text"  # NUL bytes: binary, not text
            except UnicodeDecodeError:
                primary = "unknown"
    return Sniffed(primary, formats, tensors, st_error if framed and tensors is None else None)


def sniff(path: Path) -> str:
    """Return the primary format of ``path`` judged from its bytes: ``safetensors``, ``gguf``, ``zip``,
    ``pickle``, ``json``, ``text`` or ``unknown`` (see :func:`sniff_file`). Never raises."""
    return sniff_file(path).format


def _framed_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= min(size - 8, MAX_HEADER_BYTES) and head[8:9] == b"{"


def _may_start_pickle(head: bytes) -> bool:
    """Protocol 0/1 pickles start with an opcode; JSON (``{``) and most text do not parse further."""
    return bool(head) and chr(head[0]) in _OPCODE_CHARS and head[:1] != b"{"


def _parses_as_pickle(path: Path, size: int) -> bool:
    """True when the first pickle stream of the file disassembles up to STOP (never unpickled)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(_PICKLE_PROBE_BYTES)
    except OSError:
        return False
    n_ops = 0
    try:
        for _op, _arg, _pos in pickletools.genops(io.BytesIO(data)):
            n_ops += 1
    except Exception as exc:  # pickletools raises assorted errors on non-pickle bytes
        # A large pickle cut off by the probe limit still counts; anything else is not a pickle.
        cut_off = any(m in str(exc) for m in _EOF_MESSAGES)
        return size > len(data) and cut_off and n_ops >= 2
    return n_ops >= 2


_EOF_MESSAGES = ("exhausted", "but only", "not enough data", "no newline found")


def _is_zip(path: Path) -> bool:
    try:
        return zipfile.is_zipfile(path)
    except Exception:
        return False


_OPCODE_CHARS = frozenset(op.code for op in pickletools.opcodes)


def validate_safetensors(path: Path) -> dict[str, dict]:
    """Strictly validate a safetensors file's framing and return its tensor table
    (name -> ``{dtype, shape, data_offsets}``), without reading tensor data.

    Checks: header length within the file, JSON object header, ``__metadata__`` a map of strings,
    known dtypes, non-negative integer shapes and offsets, offsets that are in order,
    non-overlapping, match dtype x shape, and cover exactly the data buffer.

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
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise CorruptCheckpoint(f"{name}: safetensors header is not valid JSON") from None
    if not isinstance(header, dict):
        raise CorruptCheckpoint(f"{name}: safetensors header is not a JSON object")
    data_len = size - 8 - n
    meta = header.get("__metadata__", {})
    if not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise CorruptCheckpoint(f"{name}: safetensors __metadata__ is not a map of strings")
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    spans = []
    for key, info in tensors.items():
        if not isinstance(info, dict):
            raise CorruptCheckpoint(f"{name}: tensor {key[:80]!r} has a malformed entry")
        dtype, shape, offs = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in _DTYPE_BYTES:
            raise CorruptCheckpoint(f"{name}: tensor {key[:80]!r} has unknown dtype {str(dtype)[:40]!r}")
        if not (isinstance(shape, list) and all(_is_uint(s) for s in shape)):
            raise CorruptCheckpoint(f"{name}: tensor {key[:80]!r} has a malformed shape")
        if not (isinstance(offs, list) and len(offs) == 2 and all(_is_uint(o) for o in offs)):
            raise CorruptCheckpoint(f"{name}: tensor {key[:80]!r} has malformed data_offsets")
        numel = 1
        for s in shape:
            numel *= s
        if offs[1] - offs[0] != numel * _DTYPE_BYTES[dtype] or offs[0] < 0:
            raise CorruptCheckpoint(f"{name}: tensor {key[:80]!r} size does not match its dtype and shape")
        spans.append((offs[0], offs[1], key))
    spans.sort()
    # A tensor whose declared bytes run past the data is named itself (not the tensor after it).
    for start, stop, key in spans:
        if stop > data_len:
            raise CorruptCheckpoint(f"{name}: tensor {key[:80]!r} ({tensors[key]['dtype']} {tensors[key]['shape']}) declares bytes "
                                    f"{start}..{stop} of the data buffer, which holds only {data_len} bytes")
    end, prev = 0, None
    for start, stop, key in spans:
        if start < end:
            raise CorruptCheckpoint(f"{name}: tensor {prev[:80]!r} (bytes ..{end}) overlaps tensor {key[:80]!r} (bytes {start}..{stop}) in the data buffer")
        if start > end:
            after = f"after tensor {prev[:80]!r} (ends at byte {end})" if prev is not None else "at the start of the data buffer"
            raise CorruptCheckpoint(f"{name}: {start - end} unused bytes {after}, before tensor {key[:80]!r} (starts at byte {start})")
        end, prev = stop, key
    if end != data_len:
        raise CorruptCheckpoint(f"{name}: data buffer is {data_len} bytes but tensors cover {end} (unused bytes after the last tensor)")
    return tensors


def _is_uint(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def validate_gguf(path: Path) -> int:
    """Check that ``path`` parses as GGUF with the ``gguf`` package's reader.

    Returns:
        The number of tensor elements in its tensor table (the model's parameter count).

    Raises:
        CorruptCheckpoint: wrong magic or a header/tensor table that does not parse.
    """
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise CorruptCheckpoint(f"{path.name}: cannot read ({exc.strerror or type(exc).__name__})") from None
    if magic != b"GGUF":
        raise CorruptCheckpoint(f"{path.name}: not a GGUF file (bad magic)")
    try:
        from gguf import GGUFReader

        reader = GGUFReader(str(path))
        return int(sum(int(t.n_elements) for t in reader.tensors))
    except Exception as exc:  # the reader raises assorted errors on malformed input
        msg = (str(exc).strip().splitlines() or [""])[0][:200]
        raise CorruptCheckpoint(f"{path.name}: malformed GGUF file ({type(exc).__name__}: {msg})") from None


def tensor_elements(tensors: dict[str, dict]) -> int:
    """Number of elements (parameters) in a validated safetensors tensor table."""
    total = 0
    for info in tensors.values():
        n = 1
        for d in info["shape"]:
            n *= d
        total += n
    return total


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in ``chunk``-byte blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
