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
import mmap
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import xxhash

from tiecheck.checkpoint import TensorRecord
from tiecheck.fixer.hooks import Run
from tiecheck.formats.safetensors import encode_header

_copy_file_range = getattr(os, "copy_file_range", None)


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
    def __init__(self, run: Run) -> None:
        self.run = run
        self.buffer = memoryview(bytearray(run.chunk))
        self.kernel_copy = _copy_file_range is not None

    def copy(self, src: int, record: TensorRecord, dst: int, label: str) -> str:
        """Append ``record``'s bytes, in C order, to ``dst``; the xxh3-128 of what was copied."""
        if not record.contiguous and record.numel > 0:
            return self._gather(src, record, dst, label)
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
                self.run.advance(got)
            done += length
            self.run.step(f"copy {label} {done}/{record.nbytes}")
        return digest.hexdigest()

    def _gather(self, src: int, record: TensorRecord, dst: int, label: str) -> str:
        """A strided view (a saved transpose) gathered into C order a block of about one chunk at a time.

        The source is memory-mapped and viewed with the record's strides; each block of whole
        trailing rows is copied out contiguous by numpy, hashed and written. One element per
        system call would take minutes for a 64 MB transpose.
        """
        import numpy as np

        assert record.stride is not None
        itemsize = record.nbytes // record.numel
        # Unsigned integers of the element's width copy with numpy's fast strided loops; void does not.
        element = np.dtype(f"<u{itemsize}") if itemsize in (1, 2, 4, 8) else np.dtype((np.void, itemsize))
        source = mmap.mmap(src, 0, access=mmap.ACCESS_READ)
        digest = xxhash.xxh3_128()
        try:
            view = np.ndarray(
                record.shape,
                element,
                buffer=source,
                offset=record.start,
                strides=tuple(s * itemsize for s in record.stride),
            )
            done = 0
            for block in _blocks(view, max(1, len(self.buffer) // itemsize)):
                data = np.ascontiguousarray(block).data.cast("B")
                digest.update(data)
                _write_all(dst, data)
                done += len(data)
                self.run.advance(len(data))
                self.run.step(f"copy {label} {done}/{record.nbytes}")
            del view
        finally:
            with contextlib.suppress(BufferError):
                source.close()
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


def _blocks(view: Any, elements: int) -> Iterator[Any]:
    """Sub-arrays of ``view`` that together are its elements in C order, each at most ``elements`` large
    (or one innermost row, when a row alone is larger)."""
    if view.size <= elements or view.ndim <= 1:
        if view.ndim <= 1 and view.size > elements:
            for i in range(0, view.shape[0], elements):
                yield view[i : i + elements]
            return
        yield view
        return
    row = view[0].size
    if row <= elements:
        step = elements // row
        for i in range(0, view.shape[0], step):
            yield view[i : i + step]
        return
    for i in range(view.shape[0]):
        yield from _blocks(view[i], elements)


def write_shard(
    dest: Path,
    tensors: Iterable[TensorRecord],
    metadata: Mapping[str, str] | None,
    open_source: Callable[[str], int],
    run: Run,
    sync: bool = True,
    like: Path | None = None,
) -> WrittenFile:
    """Write a safetensors file at ``dest`` (which must not exist) holding ``tensors``' bytes.

    ``open_source`` maps a source file name to an open file descriptor; the caller owns it.
    ``sync=False`` leaves the fsync to the caller (:func:`fsync_file`), who can overlap it
    with other work. ``like``: an existing file whose mode, owner and extended attributes the
    new file takes (the file it replaces); without one, the file is ``0644`` less the umask.
    """
    records = tuple(tensors)
    header = encode_header({t.name: (t.dtype, t.shape, t.nbytes) for t in records}, metadata)
    copier = _Copier(run)
    digests: dict[str, str] = {}
    with _new_file(dest, like) as fd:
        _write_all(fd, header)
        for t in records:
            digests[t.name] = copier.copy(open_source(t.file), t, fd, f"{dest.name}:{t.name}")
        if sync:
            os.fsync(fd)
    size = len(header) + sum(t.nbytes for t in records)
    return WrittenFile(dest, size, MappingProxyType(digests), sum(t.nbytes for t in records))


def write_text(dest: Path, text: str, like: Path | None = None) -> None:
    """Write and fsync a small text file (index, config, journal) at ``dest``, a new name.

    A partly written file is removed (a full disk leaves nothing behind).
    """
    with _new_file(dest, like) as fd:
        _write_all(fd, text.encode("utf-8"))
        os.fsync(fd)


@contextlib.contextmanager
def _new_file(dest: Path, like: Path | None) -> Iterator[int]:
    """``dest`` created (it must not exist) and open for writing, with ``like``'s attributes when given.

    Closed at the end; on any failure (a full disk, Ctrl-C) the partly written file is removed.
    """
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if like is not None else 0o644)
    try:
        if like is not None:
            copy_attributes(like, fd)
        yield fd
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            dest.unlink()
        raise
    os.close(fd)


def copy_attributes(source: Path, fd: int) -> None:
    """Give the open file ``fd`` the permission bits, owner and extended attributes of ``source``.

    A file the fix rewrites keeps who may read it: a ``0600`` shard must not come back ``0644``.
    The owner is kept where the process may set it (root, or the same owner already).
    """
    st = source.stat()
    if hasattr(os, "fchown"):
        with contextlib.suppress(PermissionError):
            os.fchown(fd, st.st_uid, st.st_gid)
    listxattr = getattr(os, "listxattr", None)
    if listxattr is not None:
        try:
            names = listxattr(source)
        except OSError:
            names = []
        for name in names:
            with contextlib.suppress(OSError):
                os.setxattr(fd, name, os.getxattr(source, name))
    os.fchmod(fd, stat.S_IMODE(st.st_mode))


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
