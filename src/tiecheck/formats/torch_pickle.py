"""Reading PyTorch pickle checkpoints (``pytorch_model.bin``) without unpickling them.

``torch.load`` runs whatever the pickle tells it to; a CI gate scanning untrusted uploads
must never do that. This reader walks the pickle's opcodes (``pickletools.genops`` only
decodes them) through a small symbolic stack machine (:mod:`._pickle_walk`) that knows the few
callables torch uses to rebuild tensors, and reads the zip strictly (:mod:`._zip`) to locate
every storage record. No tensor byte is read, no import happens, no code runs.

Anything the pickle imports outside the allowlist of ``torch.load(weights_only=True)`` makes
the file unsafe (TC401): its globals are listed and nothing else is interpreted. A file that two
readers could read differently (duplicate or case-colliding entries, a directory that disagrees
with the local headers, bytes outside every entry, bytes after a pickle's STOP, frames that end
elsewhere than the pickle) is refused (TC403) after every candidate pickle was checked for
imports: tiecheck must never call clean what ``torch.load`` would run.
"""

from __future__ import annotations

import io
import math
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NoReturn

from tiecheck.checkpoint import TensorRecord, view_reach
from tiecheck.errors import FormatError
from tiecheck.formats._pickle_walk import (
    PickleWalk,
    _describe,
    _Opaque,
    _reason,
    _short,
    _Storage,
    _Tensor,
    walk_pickle,
)
from tiecheck.formats._tar import torch_tar_walks
from tiecheck.formats._torch_globals import SAFE_GLOBALS
from tiecheck.formats._zip import Archive, Entry, ZipError, read_archive, read_entry, scan_local_headers
from tiecheck.formats.dtypes import DTYPES
from tiecheck.io.source import ByteSource

__all__ = [
    "SAFE_GLOBALS",
    "PickleWalk",
    "TorchFile",
    "UncheckedPickleError",
    "UnsafePickleError",
    "read_torch_file",
    "walk_pickle",
]

#: Sub-rules of :class:`FormatError` raised here; ``UNSAFE`` maps to TC401, the others to TC403.
UNSAFE = "unsafe-pickle"
UNREADABLE = "unreadable-pickle"

#: data.pkl of a real state dict is kilobytes to a few MB (100 bytes a tensor); a bigger one, or
#: leading pickles of a legacy or bare file past this, are refused, not read.
MAX_PICKLE_SIZE = 64 << 20
#: The first pickle of a legacy (non-zip) torch file holds this number, in any pickle protocol.
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
ZIP_MAGIC = b"PK\x03\x04"
WRAPPER_KEYS = ("state_dict", "model", "module", "model_state_dict")


@dataclass(frozen=True)
class TorchFile:
    """What a pickle checkpoint holds: its tensors (with storage keys) and how it was written."""

    tensors: tuple[TensorRecord, ...]
    metadata: Mapping[str, str]


class UnsafePickleError(FormatError):
    """The pickle imports globals that ``torch.load(weights_only=True)`` refuses."""

    def __init__(self, globals_: list[str], detail: str) -> None:
        super().__init__(UNSAFE, detail)
        self.globals = tuple(globals_)


class UncheckedPickleError(FormatError):
    """Part of what a loader would unpickle lies past the walk's limits: its imports are not all known."""

    def __init__(self, detail: str) -> None:
        super().__init__(UNREADABLE, detail)


def _unreadable(detail: str, tensor: str | None = None) -> FormatError:
    return FormatError(UNREADABLE, detail, tensor)


# --- the file ---------------------------------------------------------------------------------------


def detect_format(head: bytes) -> str:
    """Name a weight file's container from its first bytes (512 are enough)."""
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if not head:
        return "empty"
    # Anything else is a stream of pickles to torch.load and pickle.load, whatever its first byte:
    # protocols 0 and 1 have no PROTO opcode, and PROTO need not come first.
    return "pickle"


#: What a reader bug on a hostile file could raise; it becomes TC403, never an internal error that
#: aborts a multi-target run (the differential and fuzz tests keep this list from hiding anything).
_UNEXPECTED = (
    RecursionError,
    MemoryError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    AssertionError,
    EOFError,
    ZipError,
)


def read_torch_file(source: ByteSource, file_name: str) -> TorchFile:
    """Read the tensor table of a ``torch.save`` file; raises :class:`FormatError` (TC401/TC403) or OSError."""
    try:
        return _read_torch_file(source, file_name)
    except FormatError:
        raise
    except _UNEXPECTED as exc:
        raise _unreadable(f"tiecheck could not make sense of it ({type(exc).__name__}: {_reason(exc)})") from None


def _read_torch_file(source: ByteSource, file_name: str) -> TorchFile:
    kind = detect_format(bytes(source.read(0, 512)))
    if kind == "zip":
        return _read_zip(source, file_name)
    if kind == "empty":
        raise _unreadable("the file is empty")
    members = torch_tar_walks(source, MAX_PICKLE_SIZE)
    if members is not None:
        _legacy_tar(members)
    if kind == "tar":
        raise _unreadable("a tar archive, not a PyTorch checkpoint")
    # Legacy files and bare pickles: walk the leading pickles (unsafe globals first), then read or refuse.
    walks: list[PickleWalk] = []
    position = 0
    for _ in LEGACY_PICKLES:
        walks.append(_walk_at(source, position))
        position = walks[-1].end
        # torch.load reads the next pickle only after the magic number; another pickle is walked anyway
        # when one starts there (a walk that lost track but reached STOP: later pickles may name imports).
        if not walks[-1].stopped or walks[-1].exhausted or position >= source.size:
            break
        if not _is_legacy(walks[0]) and bytes(source.read(position, 1)) != b"\x80":
            break
    unsafe = [g for walk in walks for g in walk.unsafe]
    if unsafe:
        raise _unsafe(list(dict.fromkeys(unsafe)), walks)
    if position >= MAX_PICKLE_SIZE and not walks[-1].stopped:
        raise UncheckedPickleError(f"the leading pickles run past the {MAX_PICKLE_SIZE:,}-byte limit")
    budget = next((w.broken for w in walks if w.exhausted), None)
    if budget is not None:
        raise UncheckedPickleError(budget)
    if not walks[0].stopped:
        why = walks[0].broken or "it ends before the pickle's STOP"
        raise _unreadable(f"not a PyTorch checkpoint: not a zip archive, and not a whole pickle ({why})")
    if _opens_as_tar(source):
        # torch.load tries the legacy tar format first: this file is a tar to torch, pickles to a scanner.
        raise _unreadable("the file is both a tar archive and a pickle; torch reads it as the legacy tar format")
    if _is_legacy(walks[0]):
        return _read_legacy(source, file_name, walks, position)
    raise _unreadable("a bare pickle, not a torch.save zip archive")


def _legacy_tar(members: list[PickleWalk | None]) -> NoReturn:
    """torch's tar format: its members' first pickles are walked for imports, the rest is not read."""
    walks = [walk for walk in members if walk is not None]
    unsafe = [g for walk in walks for g in walk.unsafe]
    if unsafe:
        raise _unsafe(list(dict.fromkeys(unsafe)), walks)
    raise UncheckedPickleError(
        "legacy tar format (torch < 0.1.10): torch.load(weights_only=False) unpickles its storages, tensors "
        "and pickle members; tiecheck walked the first pickle of each and reads no further. Re-save it with a "
        "recent torch"
    )


def _is_legacy(first: PickleWalk) -> bool:
    return type(first.value) is int and first.value == LEGACY_MAGIC_NUMBER


_FIRST_PREFIX = 1 << 20


def _walk_at(source: ByteSource, start: int) -> PickleWalk:
    """Walk the pickle at ``start`` from an in-memory prefix of the file (genops reads an opcode at a time).

    The prefix grows (1 MB, 8 MB, 64 MB) only while the walk runs out of it, never past
    :data:`MAX_PICKLE_SIZE` from the start of the file; offsets in the result are the file's.
    """
    size = _FIRST_PREFIX
    while True:
        limit = max(0, min(size, MAX_PICKLE_SIZE - start, source.size - start))
        walk = walk_pickle(bytes(source.read(start, limit)))
        ran_out = not walk.stopped and not walk.exhausted and walk.end >= limit
        if not ran_out or limit < size:
            walk.end += start
            return walk
        size *= 8


def _opens_as_tar(source: ByteSource) -> bool:
    try:
        # The first member's header is all tarfile reads on open; a 64 KB prefix holds it (and pax headers).
        with tarfile.open(fileobj=io.BytesIO(bytes(source.read(0, 64 << 10))), mode="r:"):
            return True
    except (tarfile.TarError, OSError, ValueError, EOFError, UnicodeError, OverflowError):
        return False


#: The pickles at the start of a legacy (non-zip) file; the storages' bytes follow the last one.
LEGACY_PICKLES = ("magic number", "protocol version", "system info", "object", "storage keys")
LEGACY_VERSION = 1001
LEGACY_NAME = "legacy non-zip torch format (torch < 1.6 or _use_new_zipfile_serialization=False)"


def _read_legacy(source: ByteSource, file_name: str, walks: list[PickleWalk], data_start: int) -> TorchFile:
    """``torch.save``'s format before the zip: five pickles, then each storage as int64 numel + bytes."""
    broken = next(((i, w.broken) for i, w in enumerate(walks) if w.broken), None)
    if broken is not None:
        raise _unreadable(f"{LEGACY_NAME}: the {LEGACY_PICKLES[broken[0]]} pickle cannot be walked: {broken[1]}")
    if len(walks) < len(LEGACY_PICKLES):
        raise _unreadable(f"{LEGACY_NAME}: the file ends after the {LEGACY_PICKLES[len(walks) - 1]} pickle")
    _, version, sys_info, main, keys = walks
    if version.value != LEGACY_VERSION:
        raise _unreadable(f"{LEGACY_NAME}: protocol version {_short(version.value)} is not supported")
    if isinstance(sys_info.value, dict) and sys_info.value.get("little_endian") is False:
        raise _unreadable(f"{LEGACY_NAME}: big-endian files are not supported")
    if not (isinstance(keys.value, list) and all(isinstance(k, str) for k in keys.value)):
        raise _unreadable(f"{LEGACY_NAME}: the storage keys pickle is not a list of strings")
    entries, wrapper = _state_dict(main.value)
    starts: dict[str, int] = {}
    offset = data_start
    for key in keys.value:
        storage = main.storages.get(key)
        if storage is None:
            raise _unreadable(f"{LEGACY_NAME}: storage {key} is listed but never declared")
        header = bytes(source.read(offset, 8))
        itemsize = DTYPES[storage.dtype].bits // 8
        if len(header) < 8 or offset + 8 + storage.nbytes > source.size:
            raise _unreadable(f"{LEGACY_NAME}: storage {key} runs past the end of the file (truncated?)")
        numel = int.from_bytes(header, "little")
        if numel * itemsize != storage.nbytes:
            raise _unreadable(
                f"{LEGACY_NAME}: storage {key} holds {numel:,} elements, the pickle declares "
                f"{storage.nbytes // itemsize:,}"
            )
        starts[key] = offset + 8
        offset += 8 + storage.nbytes
    tensors = []
    for name, tensor in entries:
        if tensor.storage.key not in starts:
            raise _unreadable(f"{LEGACY_NAME}: storage {tensor.storage.key} is not in the file", name)
        tensors.append(_record(name, tensor, starts[tensor.storage.key], file_name))
    metadata = {"format": "torch-legacy", "pickle_protocol": str(main.protocol)}
    if wrapper:
        metadata["state_dict_key"] = wrapper
    return TorchFile(tuple(tensors), MappingProxyType(metadata))


def _printable(text: str) -> str:
    """Names come from hostile bytes: a newline in one must not break the one-line message."""
    return text if text.isprintable() else repr(text)


def _unsafe(globals_: list[str], walks: list[PickleWalk]) -> UnsafePickleError:
    names = [_printable(g) for g in globals_]
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    stopped = next((w.broken for w in walks if w.broken), None)
    why = (
        f" (the walk lost track at {_printable(str(stopped))}, so later imports could not be named)" if stopped else ""
    )
    return UnsafePickleError(
        globals_,
        f"the pickle imports {shown}, outside what torch.load(weights_only=True) accepts{why}; "
        "loading it with weights_only=False runs code",
    )


def _read_zip(source: ByteSource, file_name: str) -> TorchFile:
    try:
        archive = read_archive(source)
    except ZipError as exc:
        _local_pickles(source)  # a pickle the local headers still show may import something unsafe
        raise _unreadable(f"the zip directory cannot be read ({exc}): truncated or corrupt") from None
    if not archive.entries:
        raise _unreadable("the zip archive is empty")
    first = archive.entries[0].name
    root = first.split("/", 1)[0]
    if any(e.name == f"{root}/constants.pkl" or e.name.startswith(f"{root}/code/") for e in archive.entries):
        # torch.load hands these to torch.jit.load, which never unpickles data.pkl with Python's pickle. The
        # test is torch's own, case-sensitive: a CONSTANTS.PKL beside a hostile data.pkl must not hide it.
        raise _unreadable("a TorchScript archive (torch.jit.save), not a state dict; tiecheck does not read it")
    candidates = archive.find(f"{root}/data.pkl")
    walks = [(entry, _walk_entry(source, entry)) for entry in candidates]
    unsafe = [g for _, walk in walks if isinstance(walk, PickleWalk) for g in walk.unsafe]
    if unsafe:
        raise _unsafe(list(dict.fromkeys(unsafe)), [w for _, w in walks if isinstance(w, PickleWalk)])
    if archive.ambiguities:
        shown = "; ".join(archive.ambiguities[:3]) + ("; ..." if len(archive.ambiguities) > 3 else "")
        raise _unreadable(
            f"ambiguous zip archive, zip readers could read different bytes ({shown}); torch.save never writes this"
        )
    if "/" not in first:
        raise _unreadable(f"{_quote(first)} is not in a folder: not a torch.save archive")
    if not walks:
        raise _unreadable(f"the zip archive has no {_quote(root)}/data.pkl: not a torch.save checkpoint")
    (pkl, walk), *_ = walks
    if pkl.size > MAX_PICKLE_SIZE or (isinstance(walk, PickleWalk) and walk.exhausted):
        why = walk.broken if isinstance(walk, PickleWalk) else walk
        raise UncheckedPickleError(f"{_quote(pkl.name)} cannot be walked whole: {why}")
    if not isinstance(walk, PickleWalk):
        raise _unreadable(f"{_quote(pkl.name)} cannot be read: {walk}")
    if walk.broken:
        raise _unreadable(f"{_quote(pkl.name)} cannot be walked: {walk.broken}")
    if walk.end != pkl.size:
        raise _unreadable(f"{_quote(pkl.name)} holds {pkl.size - walk.end:,} bytes after its STOP opcode")
    metadata = {"format": "torch-zip", "archive_root": root}
    for record, key in (("byteorder", "byteorder"), ("version", "version"), (".data/version", "data_version")):
        found = archive.find(f"{root}/{record}")
        if found and found[0].size <= 64:
            metadata[key] = _read_small(source, found[0]).decode("ascii", "replace").strip()
    if metadata.get("byteorder", "little") != "little":
        raise _unreadable(f"byte order {_short(metadata['byteorder'])} is not supported (only little-endian)")
    metadata["pickle_protocol"] = str(walk.protocol)
    entries, wrapper = _state_dict(walk.value)
    if wrapper:
        metadata["state_dict_key"] = wrapper
    ranges: dict[str, tuple[int, _Storage]] = {}
    tensors = []
    for name, tensor in entries:
        storage = tensor.storage
        known = ranges.get(storage.key)
        if known is None:
            start = _record_start(source, archive, f"{root}/data/{storage.key}", storage, name)
            ranges[storage.key] = (start, storage)
        else:
            start, first_seen = known
            if (first_seen.dtype, first_seen.nbytes) != (storage.dtype, storage.nbytes):
                raise _unreadable(f"storage {storage.key} is declared twice with different sizes or types", name)
        tensors.append(_record(name, tensor, start, file_name))
    return TorchFile(tuple(tensors), MappingProxyType(metadata))


def _walk_entry(source: ByteSource, entry: Entry) -> PickleWalk | str:
    try:
        return walk_pickle(read_entry(source, entry, MAX_PICKLE_SIZE))
    except ZipError as exc:
        return str(exc)


def _local_pickles(source: ByteSource) -> None:
    """Raise TC401 when a ``data.pkl`` found through the local headers imports something unsafe."""
    walks = [
        w
        for entry in scan_local_headers(source)
        if entry.key.endswith("/data.pkl") and isinstance(w := _walk_entry(source, entry), PickleWalk) and w.unsafe
    ]
    if walks:
        raise _unsafe(list(dict.fromkeys(g for w in walks for g in w.unsafe)), walks)


def _read_small(source: ByteSource, entry: Entry) -> bytes:
    try:
        return read_entry(source, entry, 64)
    except ZipError as exc:
        raise _unreadable(str(exc)) from None


def _quote(name: str) -> str:
    return name if name.isprintable() and len(name) < 200 else _short(name)


def _state_dict(value: object) -> tuple[list[tuple[str, _Tensor]], str | None]:
    """The tensors of a flat state dict, or of the state dict under a wrapper key."""
    if not isinstance(value, dict):
        raise _unreadable(f"the pickle holds {_describe(value)}, not a state dict")
    for key in (None, *WRAPPER_KEYS):
        holder = value if key is None else value.get(key)
        if not isinstance(holder, dict):
            continue
        entries = list(_tensors_in(holder))
        if entries or key is not None:
            return entries, key
    return [], None


def _tensors_in(holder: dict[object, object]) -> Iterator[tuple[str, _Tensor]]:
    for key, value in holder.items():
        if isinstance(key, _Opaque):
            raise _unreadable(f"the state dict has a key that is {key.what}, not a name")
        name = key if isinstance(key, str) else str(key) if isinstance(key, int) else f"<{_describe(key)} key>"
        if isinstance(value, _Tensor):
            yield name, value
        elif isinstance(value, _Opaque) and value.what.startswith(("torch._utils._rebuild", "torch._tensor")):
            raise _unreadable(f"the tensor is built by {value.what}, a kind tiecheck does not read", name)


def _record_start(source: ByteSource, archive: Archive, record: str, storage: _Storage, tensor: str) -> int:
    """Absolute offset of the record's bytes, after checking it is stored whole and uncompressed."""
    found = archive.find(record)
    if not found:
        raise _unreadable(f"storage record {_quote(record)} is missing from the zip archive", tensor)
    info = found[0]
    if info.method != 0:
        raise _unreadable(f"storage record {_quote(record)} is compressed; torch stores records uncompressed", tensor)
    if info.size != storage.nbytes or info.compressed_size != storage.nbytes:
        raise _unreadable(
            f"storage record {_quote(record)} holds {info.size:,} bytes, the pickle declares {storage.nbytes:,}",
            tensor,
        )
    if info.data_start + storage.nbytes > source.size:
        raise _unreadable(f"storage record {_quote(record)} runs past the end of the file (truncated?)", tensor)
    return info.data_start


def _record(name: str, tensor: _Tensor, record_start: int, file_name: str) -> TensorRecord:
    itemsize = DTYPES[tensor.dtype].bits // 8
    numel = math.prod(tensor.shape)
    reach = view_reach(tensor.shape, tensor.stride)
    if reach and (tensor.offset + reach) * itemsize > tensor.storage.nbytes:
        raise _unreadable(
            f"shape {list(tensor.shape)} with stride {list(tensor.stride)} at offset {tensor.offset} reaches "
            f"past its {tensor.storage.nbytes:,}-byte storage {tensor.storage.key}",
            name,
        )
    start = record_start + tensor.offset * itemsize
    return TensorRecord(
        name,
        tensor.dtype,
        tensor.shape,
        file_name,
        start,
        start + numel * itemsize,
        storage=tensor.storage.key,
        storage_offset=tensor.offset,
        stride=tensor.stride,
    )
