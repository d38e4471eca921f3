"""Reading tensor bytes, only when a question needs them.

Sources stay open (memory-mapped) for the scan and are compared in bounded chunks, so
comparing two 2 GB embeddings costs two sequential reads and no Python-side copy of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType

from tiecheck.checkpoint import TensorRecord
from tiecheck.io.source import ByteSource, CheckpointStore

CHUNK = 16 << 20


class ContentReader:
    def __init__(self, store: CheckpointStore) -> None:
        self._store = store
        self._sources: dict[str, ByteSource] = {}
        self._buffers: list[bytearray | None] = [None, None]
        self.bytes_read = 0

    def source(self, file: str) -> ByteSource:
        if file not in self._sources:
            self._sources[file] = self._store.open(file)
        return self._sources[file]

    def equal(self, a: TensorRecord, b: TensorRecord) -> bool:
        """Same dtype, shape and bytes. Stops at the first differing chunk."""
        if a.dtype != b.dtype or a.shape != b.shape or a.nbytes != b.nbytes:
            return False
        if a.aliases(b):
            return True  # one storage of a pickle file: the same bytes by construction
        if not (a.contiguous and b.contiguous):
            return self._equal_strided(a, b)
        if (a.file, a.start) == (b.file, b.start):
            return True
        src_a, src_b = self.source(a.file), self.source(b.file)
        for offset in range(0, a.nbytes, CHUNK):
            length = min(CHUNK, a.nbytes - offset)
            chunk_a = self._read(src_a, a.start + offset, length, 0)
            chunk_b = self._read(src_b, b.start + offset, length, 1)
            self.bytes_read += 2 * length
            if chunk_a != chunk_b:
                return False
        return True

    def _equal_strided(self, a: TensorRecord, b: TensorRecord) -> bool:
        """Element order, not byte ranges: a transposed view is compared as the tensor it is."""
        for chunk_a, chunk_b in zip(self._chunks(a), self._chunks(b), strict=True):
            self.bytes_read += len(chunk_a) + len(chunk_b)
            if chunk_a != chunk_b:
                return False
        return True

    def _chunks(self, t: TensorRecord) -> Iterator[bytes]:
        """The tensor's bytes in C order, in pieces of exactly CHUNK bytes (the last one shorter)."""
        source = self.source(t.file)
        buffer = bytearray()
        for offset, length in t.byte_runs(CHUNK):
            buffer += source.read(offset, length)
            while len(buffer) >= CHUNK:
                yield bytes(buffer[:CHUNK])
                del buffer[:CHUNK]
        yield bytes(buffer)

    def _read(self, source: ByteSource, offset: int, length: int, slot: int) -> bytes | bytearray | memoryview:
        """A chunk to compare. Into a reused buffer where the source can (bytearrays compare with
        memcmp; memoryviews byte by byte, ~30x slower), else whatever the source returns."""
        readinto = getattr(source, "readinto", None)
        if readinto is None:
            return source.read(offset, length)
        buffer = self._buffers[slot] if length == CHUNK else bytearray(length)
        if length == CHUNK and buffer is None:
            buffer = self._buffers[slot] = bytearray(CHUNK)
        assert buffer is not None
        n = readinto(offset, buffer)
        return buffer if n == length else buffer[:n]

    def close(self) -> None:
        for source in self._sources.values():
            source.close()
        self._sources.clear()

    def __enter__(self) -> ContentReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
