"""``tiecheck diff A B``: compare two checkpoints tensor by tensor, by name and content hash.

Lets a user see for themselves that a fix lost nothing: a tensor B no longer stores but whose
tie partner in B holds the same bytes (and B's config declares the tie) is marked
*restorable*, not removed.

Either side may be a local checkpoint or a Hub repo (``hf://ORG/NAME[@REV]``). Bytes are read
through the store's byte-range interface (:class:`~tiecheck.io.source.CheckpointStore`), so a
remote side costs range requests: headers always; tensor bytes as ``content`` says.

- ``"full"`` (the default when both sides are local): every tensor present on both sides is
  hashed in full (xxh3-128, in C order, in chunks; never loaded whole).
- ``"sample"`` (the default when a side is remote): every such tensor is compared by its
  fingerprint, the xxh3-128 of four 4 KiB blocks spread over it (the whole tensor when it is
  16 KiB or smaller); a difference outside the blocks goes unseen. At most four range requests
  per tensor and remote side.
- ``"header"``: names, dtypes and shapes only; no tensor byte is read.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import xxhash

from tiecheck._bytes import CHUNK
from tiecheck.checkpoint import Checkpoint, TensorRecord
from tiecheck.content import ContentReader
from tiecheck.io.source import ByteSource, CheckpointStore
from tiecheck.loader import load_checkpoint, store_for
from tiecheck.scan import Transferred
from tiecheck.ties.resolve import ResolvedTie, resolve_ties

#: How much of each tensor a diff reads (see the module documentation).
ContentMode = Literal["full", "sample", "header"]


class Status(str, Enum):
    """What happened to one tensor name between A and B."""

    SAME = "same"
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"
    RESTORABLE = "restorable"
    """Not stored in B, but B declares a tie that restores it from a partner holding A's bytes."""


@dataclass(frozen=True)
class TensorDiff:
    """One tensor name of A or B: its :class:`Status`, a one-line ``detail``, and its record on each side."""

    name: str
    status: Status
    detail: str
    a: TensorRecord | None
    b: TensorRecord | None


@dataclass(frozen=True)
class Diff:
    """The result of :func:`diff`: every tensor name of A and B, sorted, with what happened to it."""

    a: str
    b: str
    tensors: tuple[TensorDiff, ...]
    bytes_hashed: int
    """Tensor bytes read on both sides to compare contents (headers not counted)."""
    content: ContentMode = "full"
    """How contents were compared: ``"full"`` hashes, ``"sample"`` fingerprints, ``"header"`` not at all."""
    transferred: Transferred | None = None
    """When a side is a Hub repo: requests made and bytes received, both sides together."""
    unread: tuple[str, ...] = ()
    """Weight files whose tensors could not be listed (``"A: name: why"``): an unsafe or broken pickle, an invalid
    or truncated file, a shard the index names that is absent. Their tensors were not compared."""

    def count(self, status: Status) -> int:
        """How many tensors have ``status``."""
        return sum(1 for t in self.tensors if t.status is status)

    @property
    def lossless(self) -> bool:
        """B holds every tensor of A with the same bytes (or restores it by a tie), and nothing else.

        As far as ``content`` looked: with ``"sample"`` the same fingerprints, with ``"header"`` the same
        dtypes and shapes. Never while a side has :attr:`unread` files: what they hold is unknown.
        """
        return not self.unread and all(t.status in (Status.SAME, Status.RESTORABLE) for t in self.tensors)

    def to_dict(self) -> dict[str, Any]:
        """The document ``tiecheck diff -f json`` prints (tensors that are the same are left out)."""
        return {
            "a": self.a,
            "b": self.b,
            "lossless": self.lossless,
            "content": self.content,
            "counts": {s.value: self.count(s) for s in Status},
            "bytes_hashed": self.bytes_hashed,
            "unread": list(self.unread),
            "transferred": None
            if self.transferred is None
            else {"requests": self.transferred.requests, "bytes": self.transferred.bytes},
            "tensors": [
                {"name": t.name, "status": t.status.value, "detail": t.detail}
                for t in self.tensors
                if t.status is not Status.SAME
            ],
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as the JSON text the command line prints."""
        return json.dumps(self.to_dict(), indent=2) + "\n"


#: The name this type had before it was public.
DiffResult = Diff


class _Hasher:
    """Content keys of one side's tensors, read through its store; each distinct byte range once."""

    def __init__(self, store: CheckpointStore, content: ContentMode) -> None:
        self.store = store
        self.content = content
        self.reader = ContentReader(store)
        self.cache: dict[tuple[object, ...], str] = {}
        self.full_bytes = 0

    @property
    def bytes(self) -> int:
        return self.full_bytes + self.reader.bytes_read

    def __call__(self, t: TensorRecord) -> str:
        key = (t.file, t.start, t.end, t.dtype, t.shape, None if t.contiguous else t.stride)
        if key not in self.cache:
            # In C order, as loaders see the tensor: a saved transpose hashes like its converted copy
            # (a fingerprint samples stored bytes, so a strided view is always hashed in full).
            if self.content == "header":
                digest = "-"
            elif self.content == "sample" and (t.contiguous or t.stride is None):
                digest = "sample:" + self.reader.fingerprint(t)
            else:
                digest = self._full(t)
            self.cache[key] = f"{t.dtype}{list(t.shape)}:{digest}"
        return self.cache[key]

    def _full(self, t: TensorRecord) -> str:
        source = self.reader.source(t.file)
        digest = xxhash.xxh3_128()
        for block in _logical_blocks(source, t):
            digest.update(block)
        self.full_bytes += t.nbytes
        return "full:" + digest.hexdigest()

    def close(self) -> None:
        self.reader.close()


def _logical_blocks(source: ByteSource, t: TensorRecord) -> Iterator[bytes | memoryview]:
    """The tensor's bytes in C order. A strided view's many small runs are served from windows of
    :data:`CHUNK` bytes, so a remote source answers them with a request per window, not per run."""
    window_start, window = 0, memoryview(b"")
    for offset, length in t.byte_runs(CHUNK):
        if not window_start <= offset <= offset + length <= window_start + len(window):
            size = length if t.contiguous or t.stride is None else max(length, min(CHUNK, source.size - offset))
            data = source.read(offset, size)
            if len(data) < length:
                raise OSError(f"{t.file}: truncated while reading {t.name}")
            _release(source, window_start, len(window))
            window_start, window = offset, memoryview(data)
        yield window[offset - window_start : offset - window_start + length]
    _release(source, window_start, len(window))


def _release(source: ByteSource, offset: int, length: int) -> None:
    """Drop mapped pages already hashed (local files): memory stays flat however large the tensors."""
    release = getattr(source, "release", None)
    if release is not None and length:
        release(offset, length)


def open_store(target: str | Path, *, offline: bool | None = None) -> CheckpointStore:
    """The store for a local path or an ``hf://ORG/NAME[@REV]`` Hub repo (``hf:/`` as a shell folds it)."""
    text = str(target)
    if text.startswith("hf:/"):
        from tiecheck.io.hub import open_hub
        from tiecheck.targets import hub_repo

        repo = hub_repo(text)
        assert repo is not None  # an explicit hf:// spelling is a repo id or an error
        store: CheckpointStore = open_hub(repo, offline=offline)
        return store
    return store_for(target)


def diff(
    a: str | Path,
    b: str | Path,
    *,
    content: ContentMode | None = None,
    offline: bool | None = None,
) -> Diff:
    """Compare checkpoint ``b`` with ``a``, tensor by tensor (see the module documentation for ``content``)."""
    store_a = open_store(a, offline=offline)
    store_b = open_store(b, offline=offline)
    remote = any(getattr(s, "remote", False) for s in (store_a, store_b))
    mode: ContentMode = content if content is not None else ("sample" if remote else "full")
    if mode not in ("full", "sample", "header"):
        raise ValueError(f"content must be 'full', 'sample' or 'header', not {mode!r}")
    ckpt_a, ckpt_b = load_checkpoint(store_a), load_checkpoint(store_b)
    map_a, map_b = ckpt_a.tensor_map(), ckpt_b.tensor_map()
    ties_b = resolve_ties(ckpt_b, set(map_b) | set(map_a))
    with contextlib.ExitStack() as stack:
        hash_a, hash_b = _Hasher(store_a, mode), _Hasher(store_b, mode)
        stack.callback(hash_a.close)
        stack.callback(hash_b.close)
        tensors = tuple(_compare(map_a, map_b, ties_b, hash_a, hash_b))
    unread = (*_unread("A", ckpt_a), *_unread("B", ckpt_b))
    return Diff(str(a), str(b), tensors, hash_a.bytes + hash_b.bytes, mode, _transferred(store_a, store_b), unread)


def _unread(side: str, ckpt: Checkpoint) -> Iterator[str]:
    """The weight files of one side whose tensors are unknown, and why."""
    for f in ckpt.files:
        if f.problem is not None:
            yield f"{side}: {f.name}: {f.problem}"
    for name in ckpt.missing_files:
        yield f"{side}: {name}: named by the index, absent"


def _transferred(*stores: CheckpointStore) -> Transferred | None:
    counters = [c for s in stores if (c := getattr(s, "transfer", None)) is not None]
    if not counters:
        return None
    return Transferred(sum(c.requests for c in counters), sum(c.bytes for c in counters))


def _compare(
    map_a: dict[str, TensorRecord],
    map_b: dict[str, TensorRecord],
    ties_b: tuple[ResolvedTie, ...],
    hash_a: _Hasher,
    hash_b: _Hasher,
) -> Iterator[TensorDiff]:
    for name in sorted(set(map_a) | set(map_b)):
        ta, tb = map_a.get(name), map_b.get(name)
        if ta is not None and tb is not None:
            if (ta.dtype, ta.shape) != (tb.dtype, tb.shape):
                yield TensorDiff(
                    name, Status.CHANGED, f"{ta.dtype}{list(ta.shape)} -> {tb.dtype}{list(tb.shape)}", ta, tb
                )
            elif hash_a(ta) != hash_b(tb):
                yield TensorDiff(name, Status.CHANGED, "same dtype and shape, different bytes", ta, tb)
            else:
                yield TensorDiff(name, Status.SAME, "", ta, tb)
        elif ta is not None:
            partner = None
            for tie in ties_b:
                if tie.tied and name in tie.group.restored and tie.group.kept in map_b:
                    partner = map_b[tie.group.kept]
            if partner is not None and hash_a(ta) == hash_b(partner):
                yield TensorDiff(name, Status.RESTORABLE, f"tied to the identical {partner.name}", ta, None)
            else:
                yield TensorDiff(name, Status.REMOVED, "", ta, None)
        else:
            yield TensorDiff(name, Status.ADDED, "", None, tb)
