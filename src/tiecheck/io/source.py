"""The one byte-range interface every reader goes through.

Rules and readers never open files themselves; they ask a :class:`CheckpointStore` for a
:class:`ByteSource`. A local folder memory-maps its files; a remote store (HTTP range
requests) only has to implement the same two small protocols.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import stat
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

from tiecheck.io.paths import is_plain_file


class ByteSource(Protocol):
    """Random access to the bytes of one file."""

    @property
    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes | memoryview:
        """Bytes ``[offset, offset + length)``; shorter only at end of file."""
        ...

    def close(self) -> None: ...


class CheckpointStore(Protocol):
    """A set of named files: a local folder today, a Hub repo later."""

    @property
    def location(self) -> str:
        """Human-readable place, used in messages."""
        ...

    def list_files(self) -> list[str]:
        """Relative POSIX paths of every file in the store."""
        ...

    def exists(self, name: str) -> bool: ...

    def open(self, name: str) -> ByteSource: ...

    def read_text(self, name: str) -> str: ...


COMPANION_CONFIG = "config.json"
#: JSON companions (config, index) larger than this are refused rather than read.
MAX_TEXT = 64 << 20


_Self = TypeVar("_Self", bound="Closing")


class Closing:
    """``with`` support for anything that holds open files until ``close()``."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


#: A range split into more stored extents than this is read whole rather than mapped extent by extent.
MAX_EXTENTS = 4096


class LocalFileSource(Closing):
    """A local file, memory-mapped so that reads of tensor bytes cost no copy into Python."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._size = os.fstat(self._file.fileno()).st_size
        self._map: mmap.mmap | None = None
        if self._size:
            self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes | memoryview:
        if self._map is None or offset >= self._size or length <= 0:
            return b""
        return memoryview(self._map)[offset : min(offset + length, self._size)]

    def pread(self, offset: int, length: int) -> bytes:
        """A small read outside the map (a fingerprint's sample): no mapped page to count or drop after."""
        return os.pread(self._file.fileno(), length, offset) if length > 0 and offset < self._size else b""

    def readinto(self, offset: int, buffer: bytearray) -> int:
        """Read ``[offset, offset + len(buffer))`` into ``buffer`` (no allocation); bytes read, fewer at end of file."""
        view = memoryview(buffer)
        done = 0
        while done < len(buffer):
            n = os.preadv(self._file.fileno(), [view[done:]], offset + done)
            if n <= 0:
                break
            done += n
        return done

    def data_extents(self, offset: int, length: int) -> list[tuple[int, int]] | None:
        """The ranges of ``[offset, offset + length)`` the file system stores; the rest are holes (zeros).

        None when the file system cannot tell (no ``SEEK_DATA``): then every byte must be read.
        """
        seek_data, seek_hole = getattr(os, "SEEK_DATA", None), getattr(os, "SEEK_HOLE", None)
        if seek_data is None or seek_hole is None:
            return None
        end = min(offset + length, self._size)
        extents: list[tuple[int, int]] = []
        position = offset
        fd = self._file.fileno()
        try:
            while position < end and len(extents) < MAX_EXTENTS:
                try:
                    start = os.lseek(fd, position, seek_data)
                except OSError as exc:
                    if exc.errno == errno.ENXIO:  # no data after position: a hole to the end
                        break
                    raise
                if start >= end:
                    break
                stop = min(os.lseek(fd, start, seek_hole), end)
                extents.append((start, stop))
                position = stop
        except OSError:
            return None
        if len(extents) >= MAX_EXTENTS:
            return None  # fragmented beyond use: read it all
        return extents

    def access(self, random_access: bool) -> None:
        """Tell the kernel whether reads are scattered samples (no readahead) or sequential chunks."""
        advice = getattr(mmap, "MADV_RANDOM" if random_access else "MADV_NORMAL", None)
        self._advise(advice, 0, self._size)
        fadvise = getattr(os, "posix_fadvise", None)
        if fadvise is not None:
            with contextlib.suppress(OSError):
                fadvise(self._file.fileno(), 0, 0, os.POSIX_FADV_RANDOM if random_access else os.POSIX_FADV_NORMAL)

    def prefetch(self, offset: int, length: int) -> None:
        """Ask the kernel to start reading a range we are about to need (asynchronous readahead)."""
        self._advise(getattr(mmap, "MADV_WILLNEED", None), offset, length)

    def release(self, offset: int, length: int) -> None:
        """Drop the mapped pages of a range already processed (they stay in the page cache).

        Without this, every page a scan touches counts towards its resident memory until the map closes.
        """
        self._advise(getattr(mmap, "MADV_DONTNEED", None), offset, length)

    def _advise(self, advice: int | None, offset: int, length: int) -> None:
        if self._map is None or advice is None or length <= 0 or offset >= self._size:
            return
        start = offset - offset % mmap.PAGESIZE
        end = min(offset + length, self._size)
        if end > start:
            with contextlib.suppress(OSError, ValueError):
                self._map.madvise(advice, start, end - start)

    def close(self) -> None:
        if self._map is not None:
            # A caller may still hold a view; the mapping is then released with it.
            with contextlib.suppress(BufferError):
                self._map.close()
        self._file.close()


#: Open sources a scan keeps at most (a local file costs two descriptors: the file and its map).
#: A checkpoint of thousands of shards must scan under a low ``ulimit -n``.
MAX_OPEN_SOURCES = 24


class SourcePool(Closing):
    """The sources of one store, at most ``limit`` open: the least recently used idle one is closed first.

    Sources in use by a worker thread are pinned (:meth:`pinned`) and never closed under it; a
    single-threaded caller holding two sources at once (a pair compared in lockstep) is safe because
    the two most recently used are never the ones closed.
    """

    def __init__(self, store: CheckpointStore, limit: int = MAX_OPEN_SOURCES) -> None:
        self._store = store
        self._limit = max(2, limit)
        self._lock = threading.Lock()
        self._open: OrderedDict[str, ByteSource] = OrderedDict()
        self._pins: Counter[str] = Counter()

    def get(self, name: str) -> ByteSource:
        with self._lock:
            source = self._open.get(name)
            if source is None:
                self._evict(self._limit - 1)
                source = self._open[name] = self._store.open(name)
            else:
                self._open.move_to_end(name)
            return source

    @contextlib.contextmanager
    def pinned(self, names: Iterable[str]) -> Iterator[None]:
        names = list(names)
        with self._lock:
            self._pins.update(names)
        try:
            yield
        finally:
            with self._lock:
                self._pins.subtract(names)
                self._evict(self._limit)

    @property
    def open_count(self) -> int:
        return len(self._open)

    def _evict(self, keep: int) -> None:
        for name in list(self._open):
            if len(self._open) <= keep:
                break
            if self._pins[name] <= 0:
                self._open.pop(name).close()

    def close(self) -> None:
        with self._lock:
            for source in self._open.values():
                source.close()
            self._open.clear()


class LocalStore:
    """A checkpoint folder on disk (or a single weight file, seen as a folder holding only it)."""

    def __init__(self, root: Path, only: str | None = None) -> None:
        self.root = root
        self._only = only

    @property
    def location(self) -> str:
        return str(self.root / self._only) if self._only else str(self.root)

    def _path(self, name: str) -> Path:
        return self.root / name

    def list_files(self) -> list[str]:
        names = sorted(_walk(self.root))
        if self._only is not None:
            # A single weight file is read with the config beside it, and nothing else.
            return [n for n in names if n in (self._only, COMPANION_CONFIG)]
        return names

    def exists(self, name: str) -> bool:
        if self._only is not None and name not in (self._only, COMPANION_CONFIG):
            return False
        # Joined as a string, as loaders join it: pathlib would drop a trailing "/" or "/." that no file opens
        # through. A name the index gives may also be longer than the system allows (ENAMETOOLONG).
        try:
            return stat.S_ISREG(os.stat(os.path.join(self.root, name)).st_mode)  # noqa: PTH116, PTH118
        except (OSError, ValueError):
            return False

    def open(self, name: str) -> ByteSource:
        return LocalFileSource(self._path(name))

    def read_text(self, name: str) -> str:
        with self._path(name).open("rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size > MAX_TEXT:
                raise OSError(f"{name} is {size:,} bytes, more than a JSON companion should be")
            return file.read(MAX_TEXT + 1).decode("utf-8")


def _walk(root: Path) -> Iterator[str]:
    """Top-level files only: a checkpoint's weights, index and config live side by side."""
    for entry in os.scandir(root):
        if is_plain_file(entry):
            yield entry.name
