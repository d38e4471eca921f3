"""``tiecheck diff A B``: compare two checkpoints tensor by tensor, by name and content hash.

Lets a user see for themselves that a fix lost nothing: a tensor B no longer stores but whose
tie partner in B holds the same bytes (and B's config declares the tie) is marked
*restorable*, not removed. Tensors are hashed in chunks (xxh3-128), never loaded whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from tiecheck.checkpoint import Checkpoint, TensorRecord
from tiecheck.fixer.hooks import CHUNK
from tiecheck.fixer.writer import hash_record
from tiecheck.io.source import LocalStore
from tiecheck.loader import load_checkpoint, store_for
from tiecheck.ties.resolve import ResolvedTie, resolve_ties


class Status(str, Enum):
    SAME = "same"
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"
    RESTORABLE = "restorable"


@dataclass(frozen=True)
class TensorDiff:
    name: str
    status: Status
    detail: str
    a: TensorRecord | None
    b: TensorRecord | None


@dataclass(frozen=True)
class DiffResult:
    a: str
    b: str
    tensors: tuple[TensorDiff, ...]
    bytes_hashed: int

    def count(self, status: Status) -> int:
        return sum(1 for t in self.tensors if t.status is status)

    @property
    def lossless(self) -> bool:
        """B holds every tensor of A with the same bytes (or restores it by a tie), and nothing else."""
        return all(t.status in (Status.SAME, Status.RESTORABLE) for t in self.tensors)


class _Hasher:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.fds: dict[str, int] = {}
        self.cache: dict[tuple[object, ...], str] = {}
        self.buffer = memoryview(bytearray(CHUNK))
        self.bytes = 0

    def __call__(self, t: TensorRecord) -> str:
        key = (t.file, t.start, t.end, t.dtype, t.shape, None if t.contiguous else t.stride)
        if key not in self.cache:
            if t.file not in self.fds:
                self.fds[t.file] = os.open(self.root / t.file, os.O_RDONLY)
            # In C order, as loaders see the tensor: a saved transpose hashes like its converted copy.
            self.cache[key] = f"{t.dtype}{list(t.shape)}:" + hash_record(self.fds[t.file], t, self.buffer)
            self.bytes += t.nbytes
        return self.cache[key]

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)


def _load(path: str | Path) -> tuple[Checkpoint, Path]:
    store = store_for(path)
    root = store.root if isinstance(store, LocalStore) else Path(path)
    return load_checkpoint(store), root


def diff(a: str | Path, b: str | Path) -> DiffResult:
    ckpt_a, root_a = _load(a)
    ckpt_b, root_b = _load(b)
    map_a, map_b = ckpt_a.tensor_map(), ckpt_b.tensor_map()
    ties_b = resolve_ties(ckpt_b, set(map_b) | set(map_a))
    hash_a, hash_b = _Hasher(root_a), _Hasher(root_b)
    try:
        tensors = tuple(_compare(map_a, map_b, ties_b, hash_a, hash_b))
    finally:
        hash_a.close()
        hash_b.close()
    return DiffResult(str(a), str(b), tensors, hash_a.bytes + hash_b.bytes)


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
