"""Tensor-by-tensor access to checkpoint weights without building the model.

A :class:`WeightSource` lists tensor names and shapes from file headers alone and reads one tensor
at a time (``safetensors.safe_open`` memory-maps; GGUF tensors are dequantized one at a time with the
``gguf`` package), so weight-only analysis needs memory for one tensor, not the whole model.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from ..errors import CorruptCheckpoint
from ..formats import validate_safetensors

_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}

#: Suffixes of the token-embedding tensor across architectures (HF names and GGUF's).
EMBEDDING_SUFFIXES = ("word_embeddings.weight", "embed_tokens.weight", "wte.weight", "token_embd.weight", "shared.weight")
#: Suffixes of a causal LM's output head (unembedding).
OUTPUT_HEAD_SUFFIXES = ("lm_head.weight", "output.weight", "embed_out.weight")
#: Suffixes of a classification head's final projection.
CLASSIFIER_SUFFIXES = ("classifier.weight", "score.weight", "classifier.out_proj.weight", "classification_head.out_proj.weight")


@dataclass(frozen=True)
class TensorInfo:
    """Header facts of one tensor: ``shape`` in HF ``[out, in]`` order, ``dtype`` as the file names it,
    ``nbytes`` as stored, ``file`` the file it lives in."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    file: str

    @property
    def numel(self) -> int:
        """Number of elements."""
        n = 1
        for s in self.shape:
            n *= s
        return n


class WeightSource:
    """Base class: ``tensors`` maps names to :class:`TensorInfo`; :meth:`get` reads one as float32."""

    tensors: dict[str, TensorInfo]

    def get(self, name: str) -> torch.Tensor:
        """Read tensor ``name`` as float32 (shape as in :class:`TensorInfo`). Raises KeyError."""
        raise NotImplementedError

    def iter_rows(self, name: str, chunk: int = 8192) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(start, rows)`` blocks of at most ``chunk`` rows of a 2-D tensor as float32, so a
        large matrix is never held whole in memory (sources that cannot slice read it once)."""
        t = self.get(name)
        for start in range(0, t.shape[0], chunk):
            yield start, t[start: start + chunk]

    def parameters(self) -> int:
        """Total elements over all tensors."""
        return sum(t.numel for t in self.tensors.values())

    def find(self, suffixes: tuple[str, ...], ndim: int | None = 2) -> str | None:
        """Name of the first tensor whose name is one of ``suffixes`` or ends with ``"." + suffix``
        (and has ``ndim`` dims), or None. ``output.weight`` thus matches GGUF's output head but not
        ``blk.0.attn_output.weight``."""
        for suf in suffixes:
            for name, info in self.tensors.items():
                if (name == suf or name.endswith("." + suf)) and (ndim is None or len(info.shape) == ndim):
                    return name
        return None

    def matrices(self) -> Iterator[str]:
        """Names of 2-D tensors in file order."""
        return (n for n, t in self.tensors.items() if len(t.shape) == 2)


class EmptySource(WeightSource):
    """A source without tensors: the model of a LoRA adapter whose base was not found (only checks of
    the adapter's own tensors have anything to read)."""

    def __init__(self) -> None:
        self.tensors = {}

    def get(self, name: str) -> torch.Tensor:
        """Always raises KeyError: there is no tensor."""
        raise KeyError(name)


class SafetensorsSource(WeightSource):
    """The safetensors weights a loader would read from a folder, read lazily: the shards named by
    ``*.safetensors.index.json`` when there is one, else ``model.safetensors`` when present, else
    every file matching ``pattern`` (files outside these are the loader's business, not the weights').

    Raises:
        CorruptCheckpoint: a weight file fails strict validation, or there is none.
    """

    def __init__(self, folder: Path, pattern: str = "*.safetensors"):
        self.folder = Path(folder)
        files = self._weight_files(pattern)
        if not files:
            raise CorruptCheckpoint(f"{self.folder.name}: no {pattern} files")
        self.tensors = {}
        for f in files:
            for name, info in validate_safetensors(f).items():
                off = info["data_offsets"]
                # relative to the folder: a shard index may name shards in a subfolder
                self.tensors[name] = TensorInfo(name, tuple(info["shape"]), info["dtype"], off[1] - off[0], str(f.relative_to(self.folder)))

    def _weight_files(self, pattern: str) -> list[Path]:
        if pattern == "*.safetensors":
            for index in sorted(self.folder.glob("*.safetensors.index.json")):
                try:
                    shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
                    return [self.folder / s for s in shards if isinstance(s, str)]
                except (OSError, ValueError, KeyError, TypeError, AttributeError):
                    raise CorruptCheckpoint(f"{index.name}: shard index is not valid JSON with a weight_map") from None
            if (self.folder / "model.safetensors").is_file():
                return [self.folder / "model.safetensors"]
        return sorted(self.folder.glob(pattern))

    def get(self, name: str) -> torch.Tensor:
        from safetensors import safe_open

        info = self.tensors[name]
        with safe_open(str(self.folder / info.file), framework="pt") as fh:
            return fh.get_tensor(name).float()

    def iter_rows(self, name: str, chunk: int = 8192) -> Iterator[tuple[int, torch.Tensor]]:
        from safetensors import safe_open

        info = self.tensors[name]
        with safe_open(str(self.folder / info.file), framework="pt") as fh:
            sl = fh.get_slice(name)
            for start in range(0, info.shape[0], chunk):
                yield start, sl[start: start + chunk].float()


class GGUFSource(WeightSource):
    """Tensors of one GGUF file (names as GGUF writes them: ``token_embd.weight``, ``blk.N.*``).

    Raises:
        CorruptCheckpoint: the file does not parse.
    """

    def __init__(self, path: Path):
        from gguf import GGUFReader

        self.path = Path(path)
        try:
            self.reader = GGUFReader(str(self.path))
        except Exception as exc:
            raise CorruptCheckpoint(f"{self.path.name}: malformed GGUF file ({type(exc).__name__})") from None
        self._by_name = {t.name: t for t in self.reader.tensors}
        self.tensors = {}
        for t in self.reader.tensors:
            shape = tuple(int(x) for x in reversed([int(d) for d in t.shape]))  # ggml order is [in, out]
            self.tensors[t.name] = TensorInfo(t.name, shape, t.tensor_type.name, int(t.n_bytes), self.path.name)

    def get(self, name: str) -> torch.Tensor:
        from gguf.quants import dequantize

        t = self._by_name[name]
        arr = dequantize(t.data, t.tensor_type)
        return torch.from_numpy(arr.reshape(self.tensors[name].shape).astype("float32", copy=True))

    def metadata(self, key: str) -> object:
        """A scalar or string metadata value, or None."""
        field = self.reader.fields.get(key)
        if field is None:
            return None
        val = field.parts[field.data[0]]
        if field.types and field.types[0].name == "STRING":
            return bytes(val).decode("utf-8", "replace")
        return val.tolist()[0] if hasattr(val, "tolist") else val


def open_source(folder: Path, gguf_file: str | None = None) -> WeightSource:
    """The weight source of a resolved target folder (GGUF when ``gguf_file`` is given)."""
    if gguf_file:
        return GGUFSource(Path(folder) / gguf_file)
    return SafetensorsSource(Path(folder))


def adapter_config(folder: Path) -> dict:
    """Parse ``adapter_config.json``. Raises CorruptCheckpoint."""
    try:
        cfg = json.loads((Path(folder) / "adapter_config.json").read_text())
    except (OSError, ValueError):
        raise CorruptCheckpoint(f"{Path(folder).name}/adapter_config.json is not valid JSON") from None
    if not isinstance(cfg, dict):
        raise CorruptCheckpoint(f"{Path(folder).name}/adapter_config.json is not a JSON object")
    return cfg
