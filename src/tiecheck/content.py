"""Reading tensor bytes, only when a question needs them, at the speed of the disk.

Every content question goes through :class:`ContentReader`, which decides how little it can read:

* ``equal(a, b)`` (tie rules): metadata, then cached hashes or fingerprints, then an exact chunked
  byte compare. A fix may drop one of the two tensors, so a hash match alone never answers it.
* ``analyse(tensors)`` (content rules): staged duplicate detection. Tensors are grouped by
  (dtype, byte length) and every tensor is fingerprinted (a hash of a few small sampled blocks, which
  also tell whether it may be constant); only fingerprint collisions within a group, and tensors whose
  samples look constant, are read in full.
  With ``deep=True`` every tensor is read once instead: full hash, NaN/Inf counts, constancy.

Bytes are read through memory maps in large sequential chunks, one worker thread per file; the hash
(xxh3-128) and the numpy checks release the GIL. Pages already processed are dropped from the
mapping, so resident memory is bounded by chunk size times workers, whatever the checkpoint size.

A remote store (each read a range request) gets the sampled blocks of a file coalesced: neighbours less
than 64 KiB apart are read by one request (:mod:`tiecheck.io._ranges`), and ``REMOTE_WORKERS`` files at once
(:mod:`tiecheck._reading`, which reads the bytes for this module).
A reader made with ``read=False`` (``--content none``) reads nothing and says so: see :meth:`ContentReader.equal`.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from tiecheck._bytes import (
    CHUNK,
    FLOAT_BITS,
    SMALL,
    numpy_module,
)
from tiecheck._reading import ByteReader, access_pattern
from tiecheck._reading import ProgressSink as ProgressSink  # part of this module's interface
from tiecheck._tensor_state import (
    HASH_NAME,
    SAMPLE,
    SAMPLES,
    Accumulator,
    Fingerprint,
    Sample,
    sample_spans,
)
from tiecheck._tensor_state import TensorContent as TensorContent  # part of this module's results
from tiecheck.checkpoint import TensorRecord
from tiecheck.io._ranges import coalesce
from tiecheck.io.source import CheckpointStore

Location = tuple[str, int, int]


def location(t: TensorRecord) -> Location:
    """Where the bytes are: two records at the same place are one storage, never a duplicate."""
    return (t.file, t.start, t.end)


@dataclass(frozen=True)
class ContentAnalysis:
    """The outcome of :meth:`ContentReader.analyse`."""

    groups: tuple[tuple[TensorRecord, ...], ...]
    """Sets of two or more byte-identical tensors (distinct storage), each sorted by name."""
    contents: Mapping[Location, TensorContent]
    """Every tensor read in full, by location (all of them with ``deep``)."""
    deep: bool

    def content(self, t: TensorRecord) -> TensorContent | None:
        return self.contents.get(location(t))


# --- the reader ------------------------------------------------------------------------------------


class ContentReader(ByteReader):
    """Every content question of one scan: answers are cached, so no tensor is read twice for them."""

    def __init__(
        self,
        store: CheckpointStore,
        progress: ProgressSink | None = None,
        workers: int | None = None,
        *,
        exact: bool = True,
        read: bool = True,
    ) -> None:
        super().__init__(store, progress, workers)
        self._exact = exact
        """False (remote stores by default): tie questions are answered from the fingerprints' samples."""
        self._read = read
        """False (``--content none``): no tensor byte is read; questions that need bytes go unanswered."""
        self.sampled: set[frozenset[str]] = set()
        """Pairs :meth:`equal` called equal from samples only (never byte for byte)."""
        self.unseen: set[frozenset[str]] = set()
        """Pairs :meth:`equal` could not answer without bytes (it returned None)."""
        self._samples: dict[Location, Sample] = {}
        self._contents: dict[Location, TensorContent] = {}
        self._equal: dict[tuple[Location, Location], bool] = {}
        self._analysis: ContentAnalysis | None = None

    # -- stages

    def _sample(self, tensor: TensorRecord) -> None:
        src = self.source(tensor.file)
        state = Fingerprint(tensor)
        spans = sample_spans(tensor)
        pread: Callable[[int, int], bytes] | None = getattr(src, "pread", None)
        for offset, length in spans:
            # Small reads go through pread where the source has it: no mapped pages to release after.
            block = memoryview(
                pread(tensor.start + offset, length) if pread else src.read(tensor.start + offset, length)
            )
            self._count(length)
            state.feed(block)
            if pread is None:
                with contextlib.suppress(BufferError):
                    block.release()
                self._release(src, tensor.start + offset, length)
        self._keep_sample(tensor, state, whole=len(spans) == 1)

    def _sample_runs(self, tensors: tuple[TensorRecord, ...]) -> None:
        """Remote stores: the sampled blocks of these tensors of one file, neighbours read by one request."""
        src = self.source(tensors[0].file)
        states = [Fingerprint(t) for t in tensors]
        blocks = sorted((t.start + o, n, i) for i, t in enumerate(tensors) for o, n in sample_spans(t))
        done = 0
        for start, end, count in coalesce([(o, n) for o, n, _ in blocks]):
            data = memoryview(src.read(start, end - start))
            if len(data) != end - start:
                raise OSError(f"{tensors[0].file}: truncated while sampling")
            self._count(end - start)
            # In file order, so each tensor's blocks arrive in its own order.
            for offset, length, i in blocks[done : done + count]:
                states[i].feed(data[offset - start : offset - start + length])
            done += count
        for t, state in zip(tensors, states, strict=True):
            self._keep_sample(t, state, whole=len(sample_spans(t)) == 1)

    def _keep_sample(self, tensor: TensorRecord, state: Fingerprint, whole: bool) -> None:
        digest = state.hasher.hexdigest()
        full = None
        if whole:  # the sample was the whole tensor: its hash is the content hash
            pattern = state.pattern if state.maybe_constant else None
            full = TensorContent(f"{HASH_NAME}:{digest}", pattern, ends_in_zero=state.ends_in_zero)
            with self._lock:
                self._contents.setdefault(location(tensor), full)
        with self._lock:
            self._samples[location(tensor)] = Sample(digest, state.maybe_constant, full, state.ends_in_zero)

    def _read_full(self, tensor: TensorRecord, deep: bool) -> None:
        acc = Accumulator(tensor, deep)
        for chunk in self._chunks_or_holes(tensor):
            if isinstance(chunk, int):
                acc.feed_zeros(chunk)
            else:
                acc.feed(chunk)
        with self._lock:
            self._contents[location(tensor)] = acc.result()

    def _sample_known(self, tensor: TensorRecord) -> bool:
        """A tensor small enough to be sampled whole takes its sample from a full read already made."""
        content = self._contents.get(location(tensor))
        if content is None or len(sample_spans(tensor)) != 1:
            return False
        digest = content.hash.split(":", 1)[1]
        self._samples[location(tensor)] = Sample(digest, content.constant is not None, content, content.ends_in_zero)
        return True

    def _read_deep(self, unit: tuple[TensorRecord, ...]) -> None:
        if len(unit) == 1:
            self._read_full(unit[0], deep=True)
            return
        a, b = unit
        acc_a, acc_b = Accumulator(a, deep=True), Accumulator(b, deep=True)
        same = True
        for chunk_a, chunk_b in zip(self._chunks(a), self._chunks(b), strict=True):
            same = same and _same(chunk_a, chunk_b)
            acc_a.feed(chunk_a)
            acc_b.feed(chunk_b)
        with self._lock:
            self._contents[location(a)] = acc_a.result()
            self._contents[location(b)] = acc_b.result()
            self._equal[_pair_key(a, b)] = same

    def fingerprint(self, tensor: TensorRecord) -> str:
        if location(tensor) not in self._samples and not self._sample_known(tensor):
            src = self.source(tensor.file)
            access_pattern(src, True)
            try:
                self._sample_runs((tensor,)) if self._remote else self._sample(tensor)
            finally:
                access_pattern(src, False)
        return self._samples[location(tensor)].fingerprint

    def analyse(
        self,
        tensors: Iterable[TensorRecord],
        deep: bool = False,
        pairs: Iterable[tuple[TensorRecord, TensorRecord]] = (),
    ) -> ContentAnalysis:
        """Byte-identical groups and per-tensor content, reading as little as the question allows.

        With ``deep``, ``pairs`` (the tie pairs a rule will ask :meth:`equal` about) are read in lockstep
        and compared byte for byte in the same single pass. The result is computed once per reader.
        """
        if self._analysis is not None and (self._analysis.deep or not deep):
            return self._analysis
        if not self._read:  # --content none: no group and no content can be known
            if deep:
                raise ValueError("a reader that reads no tensor byte cannot read every tensor (deep)")
            self._analysis = ContentAnalysis((), MappingProxyType({}), deep=False)
            return self._analysis
        unique: dict[Location, TensorRecord] = {}
        for t in sorted(tensors, key=lambda r: r.name):
            # A strided view (a transpose saved in a pickle) is not a byte range: it is compared, not hashed.
            if t.contiguous:
                unique.setdefault(location(t), t)
        # Scalars and empty tensors are hashed with --deep but never compared: equal scalars mean nothing.
        records = [t for t in unique.values() if t.numel > 1 and t.nbytes > 0]
        if deep:
            todo = {location(t): t for t in unique.values() if not self._has_full(t, deep=True)}
            units: list[tuple[TensorRecord, ...]] = []
            for a, b in pairs:
                same_place = location(a) == location(b)  # pickle aliases: one read answers both
                if (
                    not same_place
                    and a.dtype == b.dtype
                    and a.shape == b.shape
                    and location(a) in todo
                    and location(b) in todo
                ):
                    units.append((todo.pop(location(a)), todo.pop(location(b))))
            units.extend((t,) for t in todo.values())
            self._per_file(units, self._read_deep, "reading every tensor")
        else:
            unsampled = [t for t in records if location(t) not in self._samples and not self._sample_known(t)]
            by_file: dict[str, list[TensorRecord]] = defaultdict(list)
            for t in unsampled:
                by_file[t.file].append(t)
            self._per_file(
                [tuple(ts) for ts in by_file.values()] if self._remote else [(t,) for t in unsampled],
                self._sample_runs if self._remote else lambda unit: self._sample(unit[0]),
                "sampling",
                size=lambda t: sum(n for _, n in sample_spans(t)),
                random_access=True,  # a 4 KB sample must not pull in megabytes of readahead
            )
            by_fingerprint: dict[tuple[str, int, str], list[TensorRecord]] = defaultdict(list)
            for t in records:
                by_fingerprint[(t.dtype, t.nbytes, self._samples[location(t)].fingerprint)].append(t)
            # Sampled mode: fingerprint collisions are not read in full to confirm them (see _sampled_groups).
            collisions = [ts for ts in by_fingerprint.values() if len(ts) > 1] if self._exact else []
            wanted = {location(t): t for ts in collisions for t in ts}
            wanted.update({location(t): t for t in records if self._samples[location(t)].maybe_constant})
            candidates = [(t,) for loc, t in wanted.items() if loc not in self._contents]
            self._per_file(candidates, lambda unit: self._read_full(unit[0], False), "hashing candidates")
        by_hash: dict[tuple[str, int, str], list[TensorRecord]] = defaultdict(list)
        for t in records:
            content = self._contents.get(location(t))
            if content is not None:
                by_hash[(t.dtype, t.nbytes, content.hash)].append(t)
        found = [tuple(ts) for ts in by_hash.values() if len(ts) > 1]
        if not self._exact and not deep:
            found += self._sampled_groups(records)
        groups = tuple(sorted(found, key=lambda g: g[0].name))
        contents = {loc: self._contents[loc] for loc in unique if loc in self._contents}
        self._analysis = ContentAnalysis(groups, MappingProxyType(contents), deep)
        return self._analysis

    def _sampled_groups(self, records: list[TensorRecord]) -> list[tuple[TensorRecord, ...]]:
        """Tensors not read in full whose samples agree: groups by evidence, recorded in :attr:`sampled`."""
        by_fingerprint: dict[tuple[str, int, str], list[TensorRecord]] = defaultdict(list)
        for t in records:
            if location(t) not in self._contents:
                by_fingerprint[(t.dtype, t.nbytes, self._samples[location(t)].fingerprint)].append(t)
        groups = [tuple(ts) for ts in by_fingerprint.values() if len(ts) > 1]
        for group in groups:
            if group[0].nbytes > SAMPLES * SAMPLE:  # smaller tensors' samples are the whole tensor: exact
                self.sampled.update(frozenset((a.name, b.name)) for a, b in itertools.combinations(group, 2))
        return groups

    def _has_full(self, t: TensorRecord, deep: bool) -> bool:
        content = self._contents.get(location(t))
        return content is not None and (not deep or content.nan is not None or t.dtype not in FLOAT_BITS)

    # -- the tie question

    def equal(self, a: TensorRecord, b: TensorRecord) -> bool | None:
        """Same dtype, shape and bytes, checked byte for byte (a fix may act on the answer).

        A reader made with ``exact=False`` answers from the fingerprints' samples instead and records the
        pair in :attr:`sampled`; ``fix`` never uses such a reader. One made with ``read=False`` answers
        None ("not compared") where only bytes could tell, and records the pair in :attr:`unseen`.
        """
        if a.dtype != b.dtype or a.shape != b.shape or a.nbytes != b.nbytes:
            return False
        if a.aliases(b):
            return True  # one storage of a pickle file, same view: the same bytes by construction
        if location(a) == location(b) and a.contiguous and b.contiguous:
            return True
        if not self._read:
            self.unseen.add(frozenset((a.name, b.name)))
            return None
        if not (a.contiguous and b.contiguous):
            return self._equal_strided(a, b)
        if not self._exact and a.nbytes > SAMPLES * SAMPLE:
            # Sampled: a difference found is certain; agreement is evidence, and is recorded as such.
            if self.fingerprint(a) != self.fingerprint(b):
                return False
            self.sampled.add(frozenset((a.name, b.name)))
            return True
        key = _pair_key(a, b)
        if key not in self._equal:
            self._equal[key] = self._compare(a, b)
        return self._equal[key]

    def differs(self, a: TensorRecord, b: TensorRecord) -> bool:
        """Whether ``a`` and ``b`` certainly hold other values, from what costs no more than samples: dtype,
        shape, a comparison already made, the fingerprints (nothing at all under ``read=False``)."""
        if a.dtype != b.dtype or a.shape != b.shape:
            return True
        if self._equal.get(_pair_key(a, b)) is False:
            return True
        if not self._read or not (a.contiguous and b.contiguous) or a.aliases(b):
            return False
        return self.fingerprint(a) != self.fingerprint(b)

    def _compare(self, a: TensorRecord, b: TensorRecord) -> bool:
        known_a, known_b = self._contents.get(location(a)), self._contents.get(location(b))
        if known_a is not None and known_b is not None and known_a.hash != known_b.hash:
            return False
        if a.nbytes > SAMPLES * SAMPLE and self.fingerprint(a) != self.fingerprint(b):
            return False
        if self._progress is not None:
            self._progress.begin(f"comparing {b.name}", 2 * a.nbytes)
        try:
            return self._compare_bytes(a, b, hash_into=known_a is None or known_b is None)
        finally:
            if self._progress is not None:
                self._progress.end()

    def _compare_bytes(self, a: TensorRecord, b: TensorRecord, hash_into: bool) -> bool:
        """Chunked exact compare, stopping at the first difference; when equal, both hashes come free."""
        acc = Accumulator(a, deep=False) if hash_into else None
        for chunk_a, chunk_b in self._pair_chunks(a, b):
            if not _same(chunk_a, chunk_b):
                return False
            if acc is not None:
                acc.feed(chunk_a)
        if acc is not None:
            content = acc.result()
            with self._lock:
                self._contents.setdefault(location(a), content)
                self._contents.setdefault(location(b), content)
        return True

    def trailing_zeros(self, tensor: TensorRecord) -> tuple[int, bytes]:
        """How many of a contiguous tensor's last bytes are zero, and up to one block of bytes before them.

        Read backwards: the first read is one small block (what a fingerprint sample already pulled in),
        then chunk by chunk until a non-zero byte; a tensor whose last byte is known not to be zero
        needs no read at all. Where a file ends in a cut transfer, this finds the byte where the data
        stops, and the bytes before it show whether what stops there is data.
        """
        if not self._read:
            return 0, b""  # --content none: nothing is known, and nothing is claimed
        sample = self._samples.get(location(tensor))
        content = self._contents.get(location(tensor))
        if (sample is not None and not sample.ends_in_zero) or (content is not None and not content.ends_in_zero):
            return 0, b""
        src = self.source(tensor.file)
        extents: Callable[[int, int], list[tuple[int, int]] | None] | None = getattr(src, "data_extents", None)
        stored = extents(tensor.start, tensor.nbytes) if extents is not None else None
        # Holes of a sparse file are zeros the file system does not store: counted, never read.
        regions = stored if stored is not None else [(tensor.start, tensor.end)]
        zeros = 0
        end = tensor.end
        length = SAMPLE
        for first, last in reversed(regions):
            zeros += end - last
            end = last
            while end > first:
                length = min(length, end - first)
                chunk = self._read_back(tensor.file, end - length, length)
                kept = len(chunk.rstrip(b"\0"))
                zeros += length - kept
                if kept:
                    before = chunk[max(0, kept - SAMPLE) : kept]
                    start = end - length + kept - len(before)
                    if len(before) < SAMPLE and start > tensor.start:
                        more = min(SAMPLE - len(before), start - tensor.start)
                        before = self._read_back(tensor.file, start - more, more) + before
                    return zeros, before
                end -= length
                length = CHUNK
        return zeros + end - tensor.start, b""

    def _equal_strided(self, a: TensorRecord, b: TensorRecord) -> bool:
        """Element order, not byte ranges: a saved transpose is compared as the tensor it is."""
        for chunk_a, chunk_b in zip(self.logical_chunks(a), self.logical_chunks(b), strict=True):
            self._count(len(chunk_a) + len(chunk_b))
            if chunk_a != chunk_b:
                return False
        return True


def _pair_key(a: TensorRecord, b: TensorRecord) -> tuple[Location, Location]:
    return (min(location(a), location(b)), max(location(a), location(b)))


def _same(a: memoryview | bytearray, b: memoryview | bytearray) -> bool:
    """Exact equality at memory speed (memoryview == compares element by element in Python)."""
    if len(a) != len(b):
        return False
    if isinstance(a, bytearray) and isinstance(b, bytearray):
        return a == b  # memcmp
    if len(a) <= SMALL:
        return bytes(a) == bytes(b)
    np = numpy_module()
    body = len(a) - len(a) % 8
    x: Any = np.frombuffer(a, dtype=np.uint64, count=body // 8)
    y: Any = np.frombuffer(b, dtype=np.uint64, count=body // 8)
    return bool(np.array_equal(x, y)) and bytes(a[body:]) == bytes(b[body:])
