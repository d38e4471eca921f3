"""The checkpoint data model: what tiecheck knows about a checkpoint after reading its headers.

Everything here is immutable. Readers build it, rules read it, the fixer (later) plans from it.
Tensor bytes are never held here, only where they are (file and byte range).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

from tiecheck.formats.dtypes import DTYPES


@dataclass(frozen=True)
class TensorRecord:
    """One stored tensor: its name, type, shape and absolute byte range in its file."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    file: str
    start: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    @property
    def is_float(self) -> bool:
        return DTYPES[self.dtype].is_float


class FileFormat(str, Enum):
    SAFETENSORS = "safetensors"
    PICKLE = "pickle"


@dataclass(frozen=True)
class FileProblem:
    """Why a weight file could not be read; it becomes a finding, never a crash."""

    rule: str
    detail: str
    tensor: str | None = None

    def __str__(self) -> str:
        where = f" (tensor {self.tensor!r})" if self.tensor else ""
        return f"{self.rule}: {self.detail}{where}"


@dataclass(frozen=True)
class WeightFile:
    """A weight file of the checkpoint, read or not."""

    name: str
    format: FileFormat
    size: int
    tensors: tuple[TensorRecord, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    problem: FileProblem | None = None

    @property
    def readable(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class ShardIndex:
    """``model.safetensors.index.json`` (or the pickle equivalent)."""

    name: str
    weight_map: Mapping[str, str]
    total_size: int | None
    total_parameters: int | None


@dataclass(frozen=True)
class ModelConfig:
    """The parts of ``config.json`` that decide what a loader does with the weights."""

    model_type: str | None
    architectures: tuple[str, ...]
    tie_word_embeddings: bool | None
    """The effective tie flag after defaults; None when nothing (file or table) decides it."""
    tie_basis: str
    """Where the flag came from, for messages: ``"config.json"``, ``"text_config"``, a default..."""
    tie_key: str
    """The key a fix would edit: ``tie_word_embeddings`` or ``text_config.tie_word_embeddings``..."""
    dtype: str | None
    """Declared dtype as a safetensors dtype name (``"BF16"``), or None."""
    dtype_declared: str | None
    quantized: bool = False


@dataclass(frozen=True)
class LoadIssue:
    """A problem with the checkpoint's JSON files (index, config), found while loading."""

    rule: str
    file: str
    detail: str


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint as read from its headers, index and config."""

    location: str
    files: tuple[WeightFile, ...]
    index: ShardIndex | None
    config: ModelConfig | None
    config_file: str | None
    orphans: tuple[str, ...] = ()
    """Weight files that look like shards but that the index does not reference."""
    shadowed_by: str | None = None
    """Set when ``model.safetensors`` sits beside an index: loaders read it and ignore the orphans."""
    missing_files: tuple[str, ...] = ()
    """Files the index references that do not exist."""
    issues: tuple[LoadIssue, ...] = ()

    @property
    def tensors(self) -> tuple[TensorRecord, ...]:
        return tuple(t for f in self.files for t in f.tensors)

    def tensor_map(self) -> dict[str, TensorRecord]:
        """Name to the copy a loader reads: the one the index points at, else the first one stored."""
        result: dict[str, TensorRecord] = {}
        wanted = self.index.weight_map if self.index else {}
        for tensor in self.tensors:
            if tensor.name not in result or wanted.get(tensor.name) == tensor.file:
                result[tensor.name] = tensor
        return result

    def file(self, name: str) -> WeightFile | None:
        return next((f for f in self.files if f.name == name), None)
