"""The checkpoint data model: what tiecheck knows about a checkpoint after reading its headers.

Everything here is immutable. Readers build it, rules read it, the fixer (later) plans from it.
Tensor bytes are never held here, only where they are (file and byte range).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

from tiecheck.formats.dtypes import DTYPES


def view_reach(shape: tuple[int, ...], stride: tuple[int, ...]) -> int:
    """Storage elements a strided view spans, from its first element to its last (0 when it has none)."""
    if math.prod(shape) == 0:
        return 0
    return 1 + sum((size - 1) * step for size, step in zip(shape, stride, strict=True))


@dataclass(frozen=True)
class TensorRecord:
    """One stored tensor: its name, type, shape and absolute byte range in its file."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    file: str
    start: int
    end: int
    storage: str | None = None
    """Pickle checkpoints only: the storage key it views. Tensors of one file with the same key alias."""
    storage_offset: int = 0
    """Offset into the storage, in elements."""
    stride: tuple[int, ...] | None = None
    """Element strides; None means C-contiguous. When not contiguous, ``start``/``end`` span ``nbytes``
    from the first element but are not the tensor's bytes: compare such tensors element by element."""

    @property
    def contiguous(self) -> bool:
        if self.stride is None:
            return True
        expected = 1
        for size, step in zip(reversed(self.shape), reversed(self.stride), strict=True):
            if size != 1 and step != expected:
                return False
            expected *= size
        return True

    def same_storage(self, other: TensorRecord) -> bool:
        """Both view one storage of one pickle file (the pickle's shared "storage pointer")."""
        return self.storage is not None and (self.file, self.storage) == (other.file, other.storage)

    def aliases(self, other: TensorRecord) -> bool:
        """The very same elements: one storage, offset, dtype, shape and stride. Identical by construction."""
        return self.same_storage(other) and (self.storage_offset, self.dtype, self.shape, self.stride) == (
            other.storage_offset,
            other.dtype,
            other.shape,
            other.stride,
        )

    def byte_runs(self, chunk: int) -> Iterator[tuple[int, int]]:
        """``(offset, length)`` runs of the tensor's bytes in C order, none longer than ``chunk``.

        A contiguous tensor is one run; a strided view (a saved transpose) yields one run per
        innermost contiguous block, so a reader or writer can stream it without materialising it.
        """
        if self.numel == 0:
            return
        if self.contiguous or self.stride is None:
            for offset in range(0, self.nbytes, chunk):
                yield self.start + offset, min(chunk, self.nbytes - offset)
            return
        itemsize = DTYPES[self.dtype].bits // 8
        stride = self.stride
        outer, run = len(self.shape), 1
        while outer > 0 and (self.shape[outer - 1] == 1 or stride[outer - 1] == run):
            run *= self.shape[outer - 1]
            outer -= 1
        length = run * itemsize
        for index in itertools.product(*(range(d) for d in self.shape[:outer])):
            base = self.start + sum(i * s for i, s in zip(index, stride[:outer], strict=True)) * itemsize
            for offset in range(0, length, chunk):
                yield base + offset, min(chunk, length - offset)

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
    MEMORY = "memory"
    """Tensors in memory (a state dict laid out as one virtual file by :mod:`tiecheck.live`)."""


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
    quant_method: str | None = None
    """``quantization_config.quant_method`` (``gptq``, ``awq``, ``bitsandbytes``, ``fp8``...), lower case."""
    custom_code: bool = False
    """``auto_map`` is set: the repo's own modeling code builds the model, and ties come from a guess."""
    tie_levels: Mapping[str, bool] = field(default_factory=lambda: MappingProxyType({}))
    """The effective ``tie_word_embeddings`` of each config level ("" outer, "text_config", ...) after the
    config class's defaults, when the model_type is known."""
    legacy_tie_levels: Mapping[str, bool] = field(default_factory=lambda: MappingProxyType({}))
    """The same as transformers 4.x computes it."""
    written_tie_levels: frozenset[str] = frozenset()
    """The levels at which config.json itself writes a tie flag ("" outer, "text_config", ...): what the saver
    stated, as opposed to a config class's default."""
    sizes: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """Every integer of config.json by its dotted key (``vocab_size``, ``text_config.num_hidden_layers``...),
    nested objects up to three levels deep: what the stored shapes are checked against."""
    token_ids: frozenset[int] = frozenset()
    """Integers config.json gives under a key naming a token (``image_token_id``, ``eos_token_id: [1, 107]``), at
    any depth: ids the model code knows, which some architectures map before the embedding lookup."""
    composite: bool = False
    """Encoder and decoder are models of their own, each with its config (``EncoderDecoderModel``,
    ``VisionEncoderDecoderModel``...): each half may have its own vocabulary and tokenizer."""


@dataclass(frozen=True)
class LoadIssue:
    """A problem with the checkpoint's JSON files (index, config), found while loading."""

    rule: str
    file: str
    detail: str
    fixable: bool | None = None
    """Whether ``tiecheck fix`` can repair it; None: as the rule's catalogue entry says."""


@dataclass(frozen=True)
class AddedToken:
    """A token the tokenizer saved beside the weights adds to its vocabulary (``tokenizer.add_tokens``)."""

    id: int
    content: str
    file: str
    """The tokenizer file that declares it."""


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
    generation_evidence: tuple[str, ...] = ()
    """For a base-model config: files beside the weights that say a text generator was meant."""
    adapter_config: str | None = None
    """``adapter_config.json`` when the folder holds a PEFT adapter (that file, and no config.json): weights meant
    to go on a base model."""
    added_tokens: tuple[AddedToken, ...] = ()
    """The tokenizer files' added tokens, by id: each needs a row of the input embedding."""

    @property
    def tensors(self) -> tuple[TensorRecord, ...]:
        return tuple(t for f in self.files for t in f.tensors)

    def stored_once(self) -> tuple[TensorRecord, ...]:
        """Every tensor, except those sharing a pickle storage with an earlier one (stored, and counted, once)."""
        seen: set[tuple[str, str]] = set()
        result = []
        for tensor in self.tensors:
            if tensor.storage is not None:
                key = (tensor.file, tensor.storage)
                if key in seen:
                    continue
                seen.add(key)
            result.append(tensor)
        return tuple(result)

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
