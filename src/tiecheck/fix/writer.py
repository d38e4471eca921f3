"""Streaming shard writer: a new header, then each kept tensor's byte range copied across.

Tensors are never materialised. Each range is copied in fixed-size chunks with
``os.copy_file_range`` (in-kernel; a reflink or server-side copy where the filesystem offers
one), falling back to ``pread``/``write``; the source chunk is read into one reusable buffer
and hashed (xxh3-128) so the verifier can prove the destination holds the same bytes. Peak
memory is the buffer, whatever the shard size.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import xxhash

from tiecheck.checkpoint import TensorRecord
from tiecheck.formats.safetensors import encode_header

#: Bytes per copy/hash step. Tests lower it (``TIECHECK_FIX_CHUNK``) to get many kill points.
CHUNK = int(os.environ.get("TIECHECK_FIX_CHUNK", str(8 << 20)))

_copy_file_range = getattr(os, "copy_file_range", None)


def step(name: str) -> None:
    """A named point of the fix where a test may kill the process (``TIECHECK_FIX_KILL_AT``).

    ``TIECHECK_FIX_TRACE=FILE`` appends each step's number and name to FILE, so a test can
    enumerate them; ``TIECHECK_FIX_KILL_AT=N`` sends SIGKILL to this process at step N.
    """
    _STEPS[0] += 1
    trace = os.environ.get("TIECHECK_FIX_TRACE")
    if trace:
        with open(trace, "a", encoding="utf-8") as out:
            out.write(f"{_STEPS[0]} {name}\n")
    if os.environ.get("TIECHECK_FIX_KILL_AT") == str(_STEPS[0]):
        os.kill(os.getpid(), signal.SIGKILL)


_STEPS = [0]


@dataclass(frozen=True)
class WrittenFile:
    path: Path
    size: int
    digests: Mapping[str, str]
    """Tensor name to the xxh3-128 hex digest of the source bytes copied for it."""
    bytes_copied: int


def hash_record(fd: int, record: TensorRecord, buffer: memoryview) -> str:
    """xxh3-128 of a tensor's bytes in C order (a strided view streamed run by run), as the writer hashes them."""
    digest = xxhash.xxh3_128()
    for start, length in record.byte_runs(len(buffer)):
        done = 0
        while done < length:
            n = os.preadv(fd, [buffer[done:length]], start + done)
            if n <= 0:
                raise OSError(errno.EIO, f"unexpected end of file at byte {start + done}")
            done += n
        digest.update(buffer[:length])
    return digest.hexdigest()


def _write_all(fd: int, data: memoryview | bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class _Copier:
    def __init__(self) -> None:
        self.buffer = memoryview(bytearray(CHUNK))
        self.kernel_copy = _copy_file_range is not None

    def copy(self, src: int, record: TensorRecord, dst: int, label: str) -> str:
        """Append ``record``'s bytes, in C order, to ``dst``; the xxh3-128 of what was copied."""
        digest = xxhash.xxh3_128()
        done = 0
        for start, length in record.byte_runs(len(self.buffer)):
            n = 0
            while n < length:
                got = os.preadv(src, [self.buffer[: length - n]], start + n)
                if got <= 0:
                    raise OSError(errno.EIO, f"unexpected end of file at byte {start + n}")
                chunk = self.buffer[:got]
                digest.update(chunk)
                self._put(src, start + n, chunk, dst)
                n += got
            done += length
            step(f"copy {label} {done}/{record.nbytes}")
        return digest.hexdigest()

    def _put(self, src: int, offset: int, chunk: memoryview, dst: int) -> None:
        if self.kernel_copy:
            assert _copy_file_range is not None
            copied = 0
            try:
                while copied < len(chunk):
                    n = _copy_file_range(src, dst, len(chunk) - copied, offset + copied)
                    if n <= 0:
                        break
                    copied += n
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF):
                    raise
                self.kernel_copy = False
            if copied == len(chunk):
                return
            chunk = chunk[copied:]
        _write_all(dst, chunk)


def write_shard(
    dest: Path,
    tensors: Iterable[TensorRecord],
    metadata: Mapping[str, str] | None,
    open_source: Callable[[str], int],
    sync: bool = True,
) -> WrittenFile:
    """Write a safetensors file at ``dest`` (which must not exist) holding ``tensors``' bytes.

    ``open_source`` maps a source file name to an open file descriptor; the caller owns it.
    ``sync=False`` leaves the fsync to the caller (:func:`fsync_file`), who can overlap it
    with other work.
    """
    records = tuple(tensors)
    header = encode_header({t.name: (t.dtype, t.shape, t.nbytes) for t in records}, metadata)
    copier = _Copier()
    digests: dict[str, str] = {}
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        _write_all(fd, header)
        for t in records:
            digests[t.name] = copier.copy(open_source(t.file), t, fd, f"{dest.name}:{t.name}")
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            dest.unlink()
        raise
    os.close(fd)
    size = len(header) + sum(t.nbytes for t in records)
    return WrittenFile(dest, size, MappingProxyType(digests), sum(t.nbytes for t in records))


def write_text(dest: Path, text: str) -> None:
    """Write and fsync a small text file (index, config, journal) at ``dest``."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make renames and unlinks in ``path`` durable."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
