"""A strict reader of a ``torch.save`` zip: every byte belongs to exactly one entry, or it is ambiguous.

Two zip readers can disagree about one file: which of two entries named alike they open, whether
they trust the central directory or the local headers, what a gap between entries holds. A gate
that reads a different entry than ``torch.load`` is fooled. This reader parses the end record, the
central directory and every local header, and lists each disagreement as an *ambiguity*; the caller
refuses an ambiguous archive (never calls it clean) and still looks at every candidate entry for
unsafe imports.

torch (``PyTorchStreamReader``, through miniz) finds a record by a case-insensitive binary search
of the central directory, so ``archive/DATA.PKL`` is read as ``archive/data.pkl``; names are
therefore compared here case-insensitively too.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from tiecheck.io.source import ByteSource

EOCD = struct.Struct("<4s4H2IH")
ZIP64_LOCATOR = struct.Struct("<4sIQI")
ZIP64_EOCD = struct.Struct("<4sQ2H2I4Q")
CENTRAL = struct.Struct("<4s6H3I5H2I")
LOCAL = struct.Struct("<4s5H3I2H")
STORED, DEFLATED = 0, 8
#: A ``torch.save`` zip holds one record per storage plus a few; the pickle's opcode budget allows
#: about 30,000 tensors, so more entries than this cannot be a checkpoint tiecheck reads.
MAX_ENTRIES = 200_000
_MAX_COMMENT = 0xFFFF


class ZipError(Exception):
    """The archive cannot be read at all (no end record, a directory past the end of the file)."""


@dataclass(frozen=True)
class Entry:
    name: str
    method: int
    flags: int
    crc: int
    compressed_size: int
    size: int
    header_offset: int
    data_start: int

    @property
    def data_end(self) -> int:
        return self.data_start + self.compressed_size

    @property
    def key(self) -> str:
        """How torch (miniz) compares names: case-insensitively."""
        return self.name.lower()


@dataclass(frozen=True)
class Archive:
    entries: tuple[Entry, ...]
    """In central-directory order."""
    ambiguities: tuple[str, ...]
    """Every way two readers could read this file differently; empty for what ``torch.save`` writes."""
    by_key: Mapping[str, tuple[Entry, ...]] = field(default_factory=dict)

    def find(self, name: str) -> list[Entry]:
        """Every entry torch could open for ``name`` (more than one is an ambiguity)."""
        return list(self.by_key.get(name.lower(), ()))


def read_archive(source: ByteSource) -> Archive:
    ambiguities: list[str] = []
    size = source.size
    eocd_at, eocd = _end_record(source)
    _, disk, cd_disk, count_disk, count, cd_size, cd_offset, comment = eocd
    if eocd_at + EOCD.size + comment != size:
        ambiguities.append(f"{size - eocd_at - EOCD.size - comment:,} bytes after the end record")
    directory_end = eocd_at
    locator = _unpack(ZIP64_LOCATOR, source, eocd_at - ZIP64_LOCATOR.size)
    if locator is not None and locator[0] == b"PK\x06\x07":
        record = _unpack(ZIP64_EOCD, source, locator[2])
        if record is None or record[0] != b"PK\x06\x06":
            raise ZipError("the zip64 end record is missing or corrupt")
        wide = (record[6], record[7], record[8], record[9])
        for narrow, value, mark in zip(
            (count_disk, count, cd_size, cd_offset), wide, (0xFFFF, 0xFFFF, 2**32 - 1, 2**32 - 1), strict=True
        ):
            if narrow not in (mark, value):
                ambiguities.append("the end record and the zip64 end record disagree")
        count_disk, count, cd_size, cd_offset = wide
        if locator[2] + 12 + record[1] != eocd_at - ZIP64_LOCATOR.size:
            ambiguities.append("bytes between the zip64 end record and its locator")
        directory_end = locator[2]
    elif 0xFFFF in (count_disk, count) or 0xFFFFFFFF in (cd_size, cd_offset):
        raise ZipError("the end record asks for a zip64 record that is not there")
    if disk or cd_disk or count_disk != count:
        raise ZipError("a multi-disk archive")
    if cd_offset + cd_size != directory_end:
        ambiguities.append(
            f"the central directory ({cd_offset:,} + {cd_size:,} bytes) does not end where the end record starts "
            f"({directory_end:,}): bytes outside every entry, or a directory at a moved offset"
        )
    if count > cd_size // CENTRAL.size:
        raise ZipError(f"the end record claims {count:,} entries in a {cd_size:,}-byte directory")
    if count > MAX_ENTRIES:
        raise ZipError(f"{count:,} entries, more than the {MAX_ENTRIES:,} a torch.save checkpoint can need")
    entries = list(_central(source, cd_offset, cd_offset + cd_size, count, ambiguities))
    _check_layout(source, entries, cd_offset, ambiguities)
    by_key: dict[str, list[Entry]] = {}
    for entry in entries:
        alike = by_key.setdefault(entry.key, [])
        if alike:
            first = alike[0].name
            same = "twice" if first == entry.name else f"beside {_quote(first)} (case differs)"
            ambiguities.append(f"{_quote(entry.name)} is stored {same}: zip readers disagree about which is read")
        alike.append(entry)
    index = MappingProxyType({k: tuple(v) for k, v in by_key.items()})
    return Archive(tuple(entries), tuple(dict.fromkeys(ambiguities)), index)


def read_entry(source: ByteSource, entry: Entry, limit: int) -> bytes:
    """The entry's uncompressed bytes (stored or deflated), refusing more than ``limit`` bytes."""
    if entry.flags & 1:
        raise ZipError(f"{_quote(entry.name)} is encrypted")
    if entry.size > limit:
        raise ZipError(f"{_quote(entry.name)} is {entry.size:,} bytes, over the {limit:,}-byte limit")
    raw = bytes(source.read(entry.data_start, entry.compressed_size))
    if len(raw) < entry.compressed_size:
        raise ZipError(f"{_quote(entry.name)} runs past the end of the file")
    if entry.method == STORED:
        data = raw
    elif entry.method == DEFLATED:
        inflater = zlib.decompressobj(-15)
        try:
            data = inflater.decompress(raw, limit + 1)
        except zlib.error as exc:
            raise ZipError(f"{_quote(entry.name)} does not inflate ({exc})") from None
        if len(data) > limit:
            raise ZipError(f"{_quote(entry.name)} inflates past the {limit:,}-byte limit (a zip bomb?)")
    else:
        raise ZipError(f"{_quote(entry.name)} uses compression method {entry.method}, which torch cannot read")
    if len(data) != entry.size or zlib.crc32(data) != entry.crc:
        raise ZipError(f"{_quote(entry.name)} does not match its recorded size and CRC")
    return data


def scan_local_headers(source: ByteSource, limit: int = 1 << 16) -> Iterator[Entry]:
    """Entries found by walking local headers from the start: what is left when the directory is unreadable."""
    offset = 0
    for _ in range(limit):
        fields = _unpack(LOCAL, source, offset)
        if fields is None or fields[0] != b"PK\x03\x04":
            return
        _, _, flags, method, _, _, crc, csize, usize, name_len, extra_len = fields
        name = _decode(bytes(source.read(offset + LOCAL.size, name_len)))
        start = offset + LOCAL.size + name_len + extra_len
        if flags & 8 or csize == 0xFFFFFFFF:
            return  # sizes follow the data: cannot walk on without the directory
        yield Entry(name, method, flags, crc, csize, usize, offset, start)
        offset = start + csize


def _end_record(source: ByteSource) -> tuple[int, tuple[Any, ...]]:
    """The last end-of-central-directory record (where miniz and Python's zipfile both look).

    The common case, a record without comment at the very end, reads 22 bytes, not the tail.
    """
    exact = _unpack(EOCD, source, source.size - EOCD.size)
    if exact is not None and exact[0] == b"PK\x05\x06" and exact[-1] == 0:
        return source.size - EOCD.size, exact
    tail_start = max(0, source.size - EOCD.size - _MAX_COMMENT)
    tail = bytes(source.read(tail_start, source.size - tail_start))
    at = tail.rfind(b"PK\x05\x06")
    while at >= 0 and len(tail) - at < EOCD.size:
        at = tail.rfind(b"PK\x05\x06", 0, at)
    if at < 0:
        raise ZipError("no end-of-central-directory record")
    return tail_start + at, EOCD.unpack_from(tail, at)


def _central(source: ByteSource, offset: int, end: int, count: int, ambiguities: list[str]) -> Iterator[Entry]:
    for _ in range(count):
        fields = _unpack(CENTRAL, source, offset)
        if fields is None or fields[0] != b"PK\x01\x02" or offset >= end:
            raise ZipError(f"the central directory is corrupt at byte {offset:,}")
        flags, method, crc, csize, usize = fields[3], fields[4], fields[7], fields[8], fields[9]
        name_len, extra_len, comment_len, header_offset = fields[10], fields[11], fields[12], fields[16]
        name_raw = bytes(source.read(offset + CENTRAL.size, name_len))
        extra = bytes(source.read(offset + CENTRAL.size + name_len, extra_len))
        usize, csize, header_offset = _zip64(extra, usize, csize, header_offset)
        name = _decode(name_raw)
        local = _unpack(LOCAL, source, header_offset)
        if local is None or local[0] != b"PK\x03\x04":
            raise ZipError(f"the local header of {_quote(name)} is missing or corrupt")
        l_flags, l_method, l_crc, l_csize, l_usize, l_name_len, l_extra_len = local[2:4] + local[6:11]
        local_name = bytes(source.read(header_offset + LOCAL.size, l_name_len))
        if local_name != name_raw or l_method != method or (l_flags ^ flags) & 0x9:
            ambiguities.append(f"the local header of {_quote(name)} disagrees with the central directory")
        elif not flags & 8 and (l_crc, l_csize, l_usize) != (crc, *(min(v, 0xFFFFFFFF) for v in (csize, usize))):
            ambiguities.append(f"the local header of {_quote(name)} records other sizes than the central directory")
        yield Entry(
            name, method, flags, crc, csize, usize, header_offset, header_offset + LOCAL.size + l_name_len + l_extra_len
        )
        offset += CENTRAL.size + name_len + extra_len + comment_len
    if offset != end:
        ambiguities.append("the central directory holds bytes after its last entry")


def _zip64(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    at = 0
    while at + 4 <= len(extra):
        tag, length = struct.unpack_from("<2H", extra, at)
        if tag == 1:
            values = [v for (v,) in struct.iter_unpack("<Q", extra[at + 4 : at + 4 + length - length % 8])]
            if usize == 0xFFFFFFFF and values:
                usize = values.pop(0)
            if csize == 0xFFFFFFFF and values:
                csize = values.pop(0)
            if offset == 0xFFFFFFFF and values:
                offset = values.pop(0)
        at += 4 + length
    return usize, csize, offset


def _check_layout(source: ByteSource, entries: list[Entry], directory: int, ambiguities: list[str]) -> None:
    """Entries must tile the file from byte 0 to the directory: no gap, no overlap, no prefix."""
    position = 0
    for entry in sorted(entries, key=lambda e: e.header_offset):
        if entry.header_offset < position:
            ambiguities.append(f"{_quote(entry.name)} overlaps the entry before it")
        elif entry.header_offset > position:
            ambiguities.append(
                f"{entry.header_offset - position:,} bytes before {_quote(entry.name)} belong to no entry"
            )
        position = max(position, entry.data_end + _descriptor(source, entry))
    if position != directory:
        where = "overlap the central directory" if position > directory else "lie between the last entry and it"
        ambiguities.append(f"entries {where} ({position:,} vs {directory:,})")


def _descriptor(source: ByteSource, entry: Entry) -> int:
    """Length of the data descriptor after the entry's data (``flags & 8``), 0 without one."""
    if not entry.flags & 8:
        return 0
    raw = bytes(source.read(entry.data_end, 24))
    body = raw[4:] if raw[:4] == b"PK\x07\x08" else raw
    skip = len(raw) - len(body)
    for fmt in ("<IQQ", "<III"):
        if len(body) >= struct.calcsize(fmt) and struct.unpack_from(fmt, body) == (
            entry.crc,
            entry.compressed_size,
            entry.size,
        ):
            return skip + struct.calcsize(fmt)
    return 0


def _unpack(layout: struct.Struct, source: ByteSource, offset: int) -> tuple[Any, ...] | None:
    if offset < 0:
        return None
    raw = bytes(source.read(offset, layout.size))
    return layout.unpack(raw) if len(raw) == layout.size else None


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _quote(name: str) -> str:
    return repr(name) if not name.isprintable() or len(name) > 200 else name
