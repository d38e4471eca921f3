"""How the content reader reads bytes: a bounded pool of open files, each tensor in sequential chunks
(holes of sparse files counted, not read; pages released once used), files in parallel with prompt
cancellation, two tensors in lockstep for an exact compare, and a strided tensor in element order.

:class:`ByteReader` is the base of :class:`tiecheck.content.ContentReader`, which decides what to read
for each question; this module only knows how.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from tiecheck._bytes import CHUNK
from tiecheck.checkpoint import TensorRecord
from tiecheck.io.source import ByteSource, CheckpointStore, Closing, SourcePool

PAIR_CHUNK = 2 << 20
"""Bytes per step of an exact pair compare read into buffers: small enough to stay in the CPU cache."""
PAIR_AHEAD = 64 << 20
"""Readahead the pair compare asks for, per tensor, a window ahead: two files read in lockstep from
a cold cache come in at disk speed (1.0 s for 2 x 512 MB, against 1.3 s with 8 MB windows)."""
REMOTE_WORKERS = 8
"""Files sampled at once from a remote store: the work waits on the network, not the CPU."""


class ProgressSink(Protocol):
    """Where a long read reports its progress (a rich bar in the CLI); must accept calls from threads."""

    def begin(self, description: str, total: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def end(self) -> None: ...


class ByteReader(Closing):
    """Reads the bytes of one checkpoint's tensors for a :class:`~tiecheck.content.ContentReader`."""

    def __init__(
        self, store: CheckpointStore, progress: ProgressSink | None = None, workers: int | None = None
    ) -> None:
        self._store = store
        self._sources = SourcePool(store)
        self._progress = progress
        self._remote = bool(getattr(store, "remote", False))
        """Each read is a request: sampled blocks are coalesced, more files run at once."""
        self._workers = workers or (REMOTE_WORKERS if self._remote else max(1, min(4, os.cpu_count() or 1)))
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        """Set when the caller stops waiting (Ctrl-C): workers stop at their next chunk."""
        self.bytes_read = 0

    def source(self, file: str) -> ByteSource:
        return self._sources.get(file)

    def _count(self, n: int) -> None:
        with self._lock:
            self.bytes_read += n
        if self._progress is not None:
            self._progress.advance(n)

    def _release(self, src: ByteSource, offset: int, length: int) -> None:
        release: Callable[[int, int], None] | None = getattr(src, "release", None)
        if release is not None:
            release(offset, length)

    def _chunks(self, tensor: TensorRecord) -> Iterable[memoryview]:
        """The tensor's bytes in sequential chunks; each chunk's pages are dropped once consumed."""
        for chunk in self._chunks_or_holes(tensor, holes=False):
            assert not isinstance(chunk, int)
            yield chunk

    def _chunks_or_holes(self, tensor: TensorRecord, holes: bool = True) -> Iterable[memoryview | int]:
        """Like :meth:`_chunks`, but a chunk lying wholly in a hole of a sparse file (zeros the file system
        stores as nothing) comes as its length, unread: a 10 GB all-zero sparse tensor costs no I/O.
        """
        src = self.source(tensor.file)
        extents: Callable[[int, int], list[tuple[int, int]] | None] | None = getattr(src, "data_extents", None)
        data = extents(tensor.start, tensor.nbytes) if holes and extents is not None else None
        prefetch: Callable[[int, int], None] | None = getattr(src, "prefetch", None)
        for offset in range(tensor.start, tensor.end, CHUNK):
            if self._cancelled.is_set():
                raise _Cancelled
            length = min(CHUNK, tensor.end - offset)
            if data is not None and not any(a < offset + length and offset < b for a, b in data):
                yield length
                continue
            if prefetch is not None and offset + length < tensor.end:
                prefetch(offset + length, min(CHUNK, tensor.end - offset - length))  # read ahead while we hash
            chunk = memoryview(src.read(offset, length))
            if len(chunk) != length:
                raise OSError(f"{tensor.file}: truncated while reading {tensor.name}")
            self._count(length)
            yield chunk
            with contextlib.suppress(BufferError):
                chunk.release()
            self._release(src, offset, length)

    def _per_file(
        self,
        units: Iterable[tuple[TensorRecord, ...]],
        work: Callable[[tuple[TensorRecord, ...]], None],
        label: str,
        size: Callable[[TensorRecord], int] = lambda t: t.nbytes,
        random_access: bool = False,
    ) -> None:
        """Run ``work`` on every unit (one tensor, or a pair read in lockstep).

        Files run in parallel, the tensors of a file in offset order (sequential reads); a pair is its own job.
        """
        jobs: dict[object, list[tuple[TensorRecord, ...]]] = defaultdict(list)
        for i, unit in enumerate(units):
            jobs[unit[0].file if len(unit) == 1 else i].append(unit)
        if not jobs:
            return
        total = sum(size(t) for us in jobs.values() for u in us for t in u)
        if self._progress is not None:
            self._progress.begin(label, total)

        def run(key: object) -> None:
            files = sorted({t.file for u in jobs[key] for t in u})
            # Open files stay bounded (a pool): a job's files are open, and pinned, only while it runs.
            with self._sources.pinned(files):
                for file in files:
                    access_pattern(self.source(file), random_access)
                try:
                    for unit in sorted(jobs[key], key=lambda u: u[0].start):
                        if self._cancelled.is_set():
                            raise _Cancelled
                        work(unit)
                finally:
                    for file in files:
                        access_pattern(self.source(file), False)

        try:
            if len(jobs) == 1 or self._workers == 1 or (not self._remote and total <= CHUNK):
                for key in jobs:  # one job, or less than a chunk of local bytes: threads would only add start-up
                    run(key)
            else:
                from concurrent.futures import ThreadPoolExecutor  # imports logging: only when it will be used

                pool = ThreadPoolExecutor(max_workers=min(self._workers, len(jobs)))
                try:
                    for future in [pool.submit(run, key) for key in jobs]:
                        future.result()
                except BaseException:
                    # Ctrl-C (or a failed job): drop the queued files, stop the running ones at their next
                    # chunk, and wait only for that: no worker is left reading a source about to be closed.
                    self._cancelled.set()
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
                pool.shutdown(wait=True)
        finally:
            if self._progress is not None:
                self._progress.end()

    def _read_back(self, file: str, offset: int, length: int) -> bytes:
        src = self.source(file)
        data = bytes(src.read(offset, length))
        self._count(length)
        self._release(src, offset, length)
        return data

    def _pair_chunks(
        self, a: TensorRecord, b: TensorRecord
    ) -> Iterable[tuple[memoryview | bytearray, memoryview | bytearray]]:
        """Two equal-sized tensors' bytes in lockstep, chunk by chunk (each pair valid until the next).

        Local files are read into two reused, cache-sized buffers, compared with ``memcmp``
        (``bytearray ==``): as fast as numpy on mapped pages, without importing numpy (a fix pays
        for nothing else of it), allocating or mapping pages. Other sources: :meth:`_chunks`.
        """
        sources = self.source(a.file), self.source(b.file)
        readers = [getattr(src, "readinto", None) for src in sources]
        if readers[0] is None or readers[1] is None:
            return zip(self._chunks(a), self._chunks(b), strict=True)
        return self._read_pairs(a, b, sources, (readers[0], readers[1]))

    def _read_pairs(
        self,
        a: TensorRecord,
        b: TensorRecord,
        sources: tuple[ByteSource, ByteSource],
        readers: tuple[Callable[[int, bytearray], int], Callable[[int, bytearray], int]],
    ) -> Iterator[tuple[bytearray, bytearray]]:
        size = min(PAIR_CHUNK, a.nbytes)
        buffers = bytearray(size), bytearray(size)
        for done in range(0, a.nbytes, PAIR_CHUNK):
            if self._cancelled.is_set():
                raise _Cancelled
            if done % PAIR_AHEAD == 0 and done + PAIR_AHEAD < a.nbytes:
                for src, t in zip(sources, (a, b), strict=True):
                    prefetch: Callable[[int, int], None] | None = getattr(src, "prefetch", None)
                    if prefetch is not None:  # keep the disk busy well ahead of the compare
                        prefetch(t.start + done + PAIR_AHEAD, min(PAIR_AHEAD, t.nbytes - done - PAIR_AHEAD))
            if a.nbytes - done < size:
                buffers = bytearray(a.nbytes - done), bytearray(a.nbytes - done)
            for read, t, buffer in zip(readers, (a, b), buffers, strict=True):
                if read(t.start + done, buffer) != len(buffer):
                    raise OSError(f"{t.file}: truncated while reading {t.name}")
            self._count(2 * len(buffers[0]))
            yield buffers

    def logical_chunks(self, t: TensorRecord) -> Iterable[bytes]:
        """The tensor's bytes in C order, in pieces of exactly CHUNK bytes (the last one shorter)."""
        source = self.source(t.file)
        buffer = bytearray()
        for offset, length in t.byte_runs(CHUNK):
            buffer += source.read(offset, length)
            while len(buffer) >= CHUNK:
                yield bytes(buffer[:CHUNK])
                del buffer[:CHUNK]
        yield bytes(buffer)

    # -- lifetime

    def close(self) -> None:
        self._sources.close()


class _Cancelled(Exception):
    """Raised in a worker once the read was cancelled; never seen by callers (they see the original error)."""


def access_pattern(src: ByteSource, random_access: bool) -> None:
    """Tell a source how it is about to be read (no readahead for scattered 4 KB samples)."""
    access: Callable[[bool], None] | None = getattr(src, "access", None)
    if access is not None:
        access(random_access)
