"""Reading and validating safetensors headers without touching tensor data.

Enforces every rule of the reference reader (huggingface/safetensors) plus duplicate names,
so that a file tiecheck accepts is one ``safe_open`` accepts too.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from tiecheck.checkpoint import TensorRecord
from tiecheck.errors import FormatError
from tiecheck.formats.dtypes import DTYPES, nbytes
from tiecheck.io.source import ByteSource

MAX_HEADER_SIZE = 100_000_000
#: First read: the length prefix and, for typical files, the whole header.
FIRST_READ = 1 << 16
METADATA_KEY = "__metadata__"


@dataclass(frozen=True)
class SafetensorsHeader:
    metadata: Mapping[str, str]
    tensors: tuple[TensorRecord, ...]
    data_start: int


def read_header(source: ByteSource, file_name: str) -> SafetensorsHeader:
    """Parse and validate the header of ``source``; raises :class:`FormatError`."""
    size = source.size
    head = bytes(source.read(0, min(size, FIRST_READ)))
    if len(head) < 8:
        raise FormatError("header-length", f"file is {size} bytes, shorter than the 8-byte header length")
    (length,) = struct.unpack("<Q", head[:8])
    if length > MAX_HEADER_SIZE:
        raise FormatError("header-too-large", f"header length {length:,} exceeds the {MAX_HEADER_SIZE:,}-byte limit")
    if 8 + length > size:
        raise FormatError("header-length", f"header length {length:,} runs past the end of the {size:,}-byte file")
    raw = head[8 : 8 + length]
    if len(raw) < length:
        raw += bytes(source.read(len(head), 8 + length - len(head)))
    return parse_header(raw, size, file_name)


def parse_header(raw: bytes, file_size: int, file_name: str) -> SafetensorsHeader:
    """Validate header bytes ``raw`` of a file of ``file_size`` bytes."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError("header-utf8", f"header is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not text.startswith("{"):
        raise FormatError("header-json", "header does not start with '{'")
    try:
        document = json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
    except _DuplicateName as dup:
        raise FormatError("duplicate-name", "the same name appears twice in the header", dup.name) from None
    except (ValueError, RecursionError) as exc:
        raise FormatError("header-json", f"header is not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise FormatError("header-json", "header is not a JSON object")

    metadata = _parse_metadata(document.pop(METADATA_KEY, None))
    entries = [_parse_entry(name, value) for name, value in document.items()]
    entries.sort(key=lambda e: (e[2], e[3]))
    data_start = 8 + len(raw)
    tensors = []
    expected = 0
    for name, dtype, begin, end, shape in entries:
        if begin != expected or end < begin:
            what = "overlaps the previous tensor" if begin < expected else "leaves a hole after the previous tensor"
            if begin == expected:
                what = "ends before it starts"
            raise FormatError("offsets", f"data_offsets [{begin}, {end}] {what}", name)
        numel = math.prod(shape)
        size = nbytes(dtype, numel)
        if size is None:
            raise FormatError("misaligned", f"{numel} elements of {dtype} do not fill whole bytes", name)
        if end - begin != size:
            raise FormatError(
                "tensor-size",
                f"{end - begin} bytes stored but shape {list(shape)} of {dtype} needs {size}",
                name,
            )
        expected = end
        tensors.append(TensorRecord(name, dtype, shape, file_name, data_start + begin, data_start + end))
    if data_start + expected != file_size:
        raise FormatError(
            "data-end",
            f"tensor data ends at byte {data_start + expected:,} but the file has {file_size:,} bytes",
        )
    return SafetensorsHeader(MappingProxyType(metadata), tuple(tensors), data_start)


class _DuplicateName(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        _require_unicode(key)
        if isinstance(value, str):
            _require_unicode(value)
        if key in result:
            raise _DuplicateName(key)
        result[key] = value
    return result


def _require_unicode(text: str) -> None:
    """Python's json lets lone surrogates through (``"\\ud800"``); the reference rejects them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"string {text!r} holds a lone UTF-16 surrogate") from None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _parse_metadata(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise FormatError("metadata", "__metadata__ must map strings to strings")
    return value


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64


def _parse_entry(name: str, value: object) -> tuple[str, str, int, int, tuple[int, ...]]:
    if not isinstance(value, dict):
        raise FormatError("tensor-entry", "entry is not an object", name)
    dtype = value.get("dtype")
    shape = value.get("shape")
    offsets = value.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise FormatError("dtype", f"unknown dtype {dtype!r}", name)
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise FormatError("shape", f"shape {shape!r} is not a list of non-negative integers", name)
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
        raise FormatError("data_offsets", f"data_offsets {offsets!r} is not a pair of non-negative integers", name)
    return name, dtype, offsets[0], offsets[1], tuple(shape)


def encode_header(tensors: Mapping[str, tuple[str, tuple[int, ...], int]], metadata: Mapping[str, str] | None) -> bytes:
    """Length prefix + JSON header for tensors laid out in the given order.

    ``tensors`` maps names to ``(dtype, shape, nbytes)``. Padded with spaces to a multiple of
    8 bytes, as the reference writer does, so tensor data stays aligned.
    """
    document: dict[str, Any] = {}
    if metadata:
        document[METADATA_KEY] = dict(metadata)
    offset = 0
    for name, (dtype, shape, size) in tensors.items():
        document[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(document, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def write_file(
    path: str | os.PathLike[str],
    tensors: Mapping[str, tuple[str, tuple[int, ...], bytes]],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write a small safetensors file from in-memory bytes (fixtures and tests; the fixer streams)."""
    layout = {name: (dtype, shape, len(data)) for name, (dtype, shape, data) in tensors.items()}
    with open(path, "wb") as out:
        out.write(encode_header(layout, metadata))
        for _, _, data in tensors.values():
            out.write(data)
