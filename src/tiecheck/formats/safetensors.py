"""Reading and validating safetensors headers without touching tensor data.

Enforces every rule of the reference reader (huggingface/safetensors) plus duplicate names,
so that a file tiecheck accepts is one ``safe_open`` accepts too.
"""

from __future__ import annotations

import json
import os
import re
import reprlib
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from tiecheck.checkpoint import TensorRecord
from tiecheck.errors import FormatError
from tiecheck.formats.dtypes import DTYPES, nbytes
from tiecheck.io.source import ByteSource

MAX_HEADER_SIZE = 100_000_000
#: Dimensions a shape may have (torch's own limit); a header of 200,000 huge dimensions is refused, not multiplied.
MAX_RANK = 64
#: First read: the length prefix and, for typical files, the whole header.
FIRST_READ = 1 << 16
METADATA_KEY = "__metadata__"


@dataclass(frozen=True)
class SafetensorsHeader:
    metadata: Mapping[str, str]
    tensors: tuple[TensorRecord, ...]
    data_start: int


#: The problem of a file whose complete header declares more data than the file holds (TC012).
TRUNCATED = "truncated"


def read_header(source: ByteSource, file_name: str) -> SafetensorsHeader:
    """Parse and validate the header of ``source``; raises :class:`FormatError`."""
    size = source.size
    # A source where each read costs a request (a Hub file) may ask for a smaller first read.
    first: int = getattr(source, "first_read", FIRST_READ)
    head = bytes(source.read(0, min(size, first)))
    if len(head) < 8:
        raise FormatError("header-length", f"file is {size} bytes, shorter than the 8-byte header length")
    (length,) = struct.unpack("<Q", head[:8])
    if length > MAX_HEADER_SIZE:
        raise FormatError("header-too-large", f"header length {length:,} exceeds the {MAX_HEADER_SIZE:,}-byte limit")
    if 8 + length > size and head[8:9] == b"{":  # a header that starts well and stops: the file was cut short
        raise FormatError(
            TRUNCATED,
            f"the header alone needs {8 + length:,} bytes but the file has {size:,}: at least "
            f"{8 + length - size:,} bytes are missing",
        )
    if 8 + length > size:
        raise FormatError("header-length", f"header length {length:,} runs past the end of the {size:,}-byte file")
    raw = head[8 : 8 + length]
    if len(raw) < length:
        raw += bytes(source.read(len(head), 8 + length - len(head)))
    try:
        return parse_header(raw, size, file_name)
    except FormatError:
        raise
    except (RecursionError, MemoryError, ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        # A reader bug on a hostile header is a finding (TC001), never an internal error that stops the scan.
        raise FormatError("header", f"tiecheck could not make sense of it ({type(exc).__name__})") from None


def parse_header(raw: bytes, file_size: int, file_name: str) -> SafetensorsHeader:
    """Validate header bytes ``raw`` of a file of ``file_size`` bytes."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError("header-utf8", f"header is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not text.startswith("{"):
        raise FormatError("header-json", "header does not start with '{'")
    try:
        document = json.loads(text, object_pairs_hook=_pairs_hook(text), parse_constant=_reject_constant)
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
        numel = _checked_numel(shape, file_size)
        if numel is None:
            raise FormatError("tensor-size", f"shape of {len(shape)} dimensions holds more bytes than the file", name)
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
    if data_start + expected > file_size:  # the header is whole, the data is not: a download or upload cut short
        raise FormatError(
            TRUNCATED,
            f"the header declares {data_start + expected:,} bytes but the file has {file_size:,}: "
            f"{data_start + expected - file_size:,} bytes are missing",
        )
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


#: A lone surrogate can only enter through a ``\\uD800``-style escape: without one, no string needs checking.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _pairs_hook(text: str) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    """The JSON object hook: a C-speed ``dict`` when nothing needs a closer look (a million entries parse fast)."""
    careful = _SURROGATE_ESCAPE.search(text) is not None

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(pairs)
        if careful or len(result) != len(pairs):
            return _reject_duplicates(pairs)
        return result

    return hook


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


_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxlist, _BRIEF.maxdict, _BRIEF.maxstring, _BRIEF.maxother = 3, 8, 4, 80, 40


def _brief(value: object) -> str:
    """A header value for a message: bounded, whatever its size or nesting."""
    return _BRIEF.repr(value)


def _checked_numel(shape: tuple[int, ...], file_size: int) -> int | None:
    """The product of the dimensions, or None once it exceeds what the file could hold (no huge products)."""
    if 0 in shape:
        return 0
    numel = 1
    for d in shape:
        numel *= d
        if numel > 8 * file_size:  # more elements than even 1-bit elements of the whole file
            return None
    return numel


def _parse_entry(name: str, value: object) -> tuple[str, str, int, int, tuple[int, ...]]:
    if not isinstance(value, dict):
        raise FormatError("tensor-entry", "entry is not an object", name)
    dtype = value.get("dtype")
    shape = value.get("shape")
    offsets = value.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise FormatError("dtype", f"unknown dtype {_brief(dtype)}", name)
    if isinstance(shape, list) and len(shape) > MAX_RANK:
        raise FormatError("shape", f"shape has {len(shape):,} dimensions, more than {MAX_RANK}", name)
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise FormatError("shape", f"shape {_brief(shape)} is not a list of non-negative integers", name)
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
        raise FormatError(
            "data_offsets", f"data_offsets {_brief(offsets)} is not a pair of non-negative integers", name
        )
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
