"""Proving a staged fix lost nothing, before it is committed.

Four checks, all on the staged files seen through a :class:`MappedStore` (the fixed
checkpoint as loaders will see it, temp files under their final names):

1. every written file's header is re-read and lists exactly the planned tensors, and every
   tensor's bytes hash to what was hashed while copying from the source;
2. **nothing was lost**, whatever the plan says: every tensor name a loader reads from the old
   checkpoint is read from the new one with the same dtype, shape and bytes (the hash taken
   while copying that very source range, or the same untouched range of a kept file), or it
   is gone and a tie in the new config restores it from a partner that is compared, on the
   source, with the bytes loaders used to read;
3. every dropped tensor the plan lists is restorable the same way;
4. a re-scan of the fixed checkpoint: the findings the plan resolves are gone and no finding
   appears that was not there before.

Check 2 depends on no rule and no planner decision: a plan that drops a tensor without a
partner, names a wrong partner, or forgets a tie is refused here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tiecheck.checkpoint import TensorRecord
from tiecheck.content import ContentReader
from tiecheck.errors import VerificationFailed
from tiecheck.findings import Finding
from tiecheck.fixer.hooks import Run
from tiecheck.fixer.plan import Plan, finding_key
from tiecheck.fixer.writer import WrittenFile, hash_record
from tiecheck.formats.safetensors import read_header
from tiecheck.io.paths import is_plain_file
from tiecheck.io.source import CheckpointStore, LocalFileSource
from tiecheck.scan import Report, scan_store
from tiecheck.ties.resolve import ResolvedTie, resolve_ties

_READ_BACK = 2 << 20
"""Bytes per read of the staged files' re-hash: a buffer the hash reads back from the CPU cache."""


class VerificationError(VerificationFailed):
    """The staged fix does not hold what the plan promised: it is discarded, nothing changes."""


class MappedStore:
    """A checkpoint whose files are given explicitly: final name -> path on disk."""

    def __init__(self, location: str, files: Mapping[str, Path]) -> None:
        self._location = location
        self._files = dict(files)

    @property
    def location(self) -> str:
        return self._location

    def list_files(self) -> list[str]:
        return sorted(self._files)

    def exists(self, name: str) -> bool:
        return name in self._files

    def open(self, name: str) -> LocalFileSource:
        return LocalFileSource(self._files[name])

    def read_text(self, name: str) -> str:
        return self._files[name].read_text(encoding="utf-8")


Identity = tuple[int, int, int, int]
"""A file as the fix first saw it: device, inode, size and modification time (ns)."""


def identity(path: Path) -> Identity | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def identities(root: Path, names: Iterable[str] = ()) -> dict[str, Identity]:
    """Every top-level file of ``root`` (taken before the scan reads them), and ``names``."""
    seen: dict[str, Identity] = {}
    for name in (*(e.name for e in os.scandir(root) if is_plain_file(e)), *names):
        found = identity(root / name)
        if found is not None:
            seen[name] = found
    return seen


def check_unchanged(root: Path, plan: Plan, seen: Mapping[str, Identity]) -> None:
    """Refuse if a file the fix reads changed since the fix first saw it.

    The scan's byte comparison of each dropped pair stands as the drop's proof, and the writer
    copies the ranges the scan's headers gave: both hold only for the files as they were then.
    Taken after the copy, so a file swapped or rewritten before or while it was copied is caught.
    """
    read = {t.file for out in plan.files for t in out.tensors} | {o.source for o in plan.files if o.source}
    read |= {t.file for d in plan.dropped for t in (d.record, d.partner)}
    for name in sorted(read):
        if name not in seen or identity(root / name) != seen[name]:
            raise VerificationError(f"{name} changed while the fix ran; run it again on the settled folder")


@dataclass(frozen=True)
class Verification:
    tensors_hashed: int
    bytes_hashed: int
    files_linked: int
    """Unchanged files hard-linked under a new name: same inode, nothing to hash."""
    dropped_checked: int
    after: Report
    resolved: tuple[Finding, ...]
    """Findings of the scan before the fix that the fixed checkpoint no longer has."""


def verify(
    plan: Plan,
    before: Report,
    source_store: CheckpointStore,
    staged: MappedStore,
    written: Mapping[str, WrittenFile],
    linked: Mapping[str, Path],
    run: Run,
    reader: ContentReader | None = None,
) -> Verification:
    """``reader``: an open reader on ``source_store`` whose comparisons (the scan's, the planner's) are reused."""
    tensors_hashed = bytes_hashed = 0
    buffer = memoryview(bytearray(min(run.chunk, _READ_BACK)))
    run.begin("verify", sum(t.nbytes for name, w in written.items() for t in _planned(plan, name)))
    for out in plan.files:
        path = written[out.name].path if out.name in written else linked.get(out.name)
        if path is None:
            continue  # unchanged file, left where it is
        with LocalFileSource(path) as source:
            header = read_header(source, out.name)
        planned = [(t.name, t.dtype, t.shape) for t in out.tensors]
        if [(t.name, t.dtype, t.shape) for t in header.tensors] != planned:
            raise VerificationError(f"{path.name}: the written header does not list the planned tensors")
        if out.name in linked:
            continue
        digests = written[out.name].digests
        fd = os.open(path, os.O_RDONLY)
        try:
            for record in header.tensors:
                if hash_record(fd, record, buffer) != digests[record.name]:
                    raise VerificationError(
                        f"{path.name}: {record.name} does not hold the bytes copied from the source"
                    )
                tensors_hashed += 1
                bytes_hashed += record.nbytes
                run.advance(record.nbytes)
        finally:
            os.close(fd)

    run.end()
    after = scan_store(staged, target=plan.location, progress=run.progress)
    new_map = after.checkpoint.tensor_map()
    ties = resolve_ties(after.checkpoint, set(new_map) | plan.dropped_names)
    with ContentReader(source_store) if reader is None else contextlib.nullcontext(reader) as content:
        _nothing_lost(plan, before, after, written, ties, content)
        for d in plan.dropped:
            if d.partner.name not in new_map:
                raise VerificationError(
                    f"{d.record.name} is dropped but {d.partner.name} is not in the fixed checkpoint"
                )
            if not content.equal(d.record, d.partner):
                raise VerificationError(f"{d.record.name} in {d.record.file} differs from {d.partner.name}")
            if d.via_tie and not any(
                t.tied and t.group.kept == d.partner.name and d.record.name in t.group.restored for t in ties
            ):
                raise VerificationError(
                    f"{d.record.name} is dropped but the fixed config does not tie it to {d.partner.name}"
                )

    dropped = plan.dropped_names
    before_keys = {finding_key(f, dropped): f for f in before.findings}
    after_keys = {finding_key(f, dropped): f for f in after.findings}
    for key, f in after_keys.items():
        if key in plan.fixed or key not in before_keys:
            raise VerificationError(f"the fixed checkpoint has a finding it should not: {f.code} {f.message}")
    missing = [f for key, f in before_keys.items() if key in plan.fixed and key in after_keys]
    if missing:
        raise VerificationError(f"the fix did not resolve {missing[0].code}: {missing[0].message}")
    resolved = tuple(f for key, f in before_keys.items() if key not in after_keys)
    return Verification(
        tensors_hashed=tensors_hashed,
        bytes_hashed=bytes_hashed,
        files_linked=len(linked),
        dropped_checked=len(plan.dropped),
        after=after,
        resolved=resolved,
    )


def _planned(plan: Plan, name: str) -> tuple[TensorRecord, ...]:
    return next((out.tensors for out in plan.files if out.name == name), ())


def _same_range(a: TensorRecord, b: TensorRecord) -> bool:
    return (a.file, a.start, a.end, a.dtype, a.shape, a.stride) == (b.file, b.start, b.end, b.dtype, b.shape, b.stride)


def _origin(plan: Plan, new: TensorRecord, written: Mapping[str, WrittenFile]) -> TensorRecord | None:
    """The source range whose bytes the fixed checkpoint holds for ``new``, if the fix proves one.

    A written file: the range the writer copied and hashed (check 1 compared the staged bytes
    with that hash). A whole file kept or renamed by hard link: the same range of its source.
    A file the plan does not list: left as it is.
    """
    out = next((o for o in plan.files if o.name == new.file), None)
    if out is None:
        return new
    if new.file in written:
        if new.name not in written[new.file].digests:
            return None
        return next((t for t in out.tensors if t.name == new.name), None)
    if out.source is not None:
        return dataclasses.replace(new, file=out.source)
    return None


def _unreadable_kept_as_is(plan: Plan, before: Report, after: Report, written: Mapping[str, WrittenFile]) -> None:
    """A name the old index maps to a file tiecheck could not read: the fix must leave both exactly as they were.

    Its bytes cannot be compared, so the only proof that it is not lost is that nothing about it changed.
    """
    old_index, new_index = before.checkpoint.index, after.checkpoint.index
    if old_index is None:
        unread = [f.name for f in before.checkpoint.files if f.problem is not None]
        if unread:
            raise VerificationError(f"{unread[0]}: tiecheck could not read it, so the fix cannot prove it keeps it")
        return
    old_map = before.checkpoint.tensor_map()
    changed = set(plan.removed) | set(written) | {o.name for o in plan.files if o.source != o.name}
    for name, file in sorted(old_index.weight_map.items()):
        if name in old_map:
            continue
        kept = new_index is not None and new_index.weight_map.get(name) == file and file not in changed
        if not kept:
            raise VerificationError(
                f"{name}: loaders read it from {file}, which tiecheck could not read; the fix would change or drop "
                "it without being able to prove nothing is lost"
            )


def _nothing_lost(
    plan: Plan,
    before: Report,
    after: Report,
    written: Mapping[str, WrittenFile],
    ties: tuple[ResolvedTie, ...],
    content: ContentReader,
) -> None:
    """Every tensor loaders read before is read after with the same bytes, or restored from a verified partner."""
    old_map = before.checkpoint.tensor_map()
    new_map = after.checkpoint.tensor_map()
    _unreadable_kept_as_is(plan, before, after, written)
    for name, old in sorted(old_map.items()):
        new = new_map.get(name)
        if new is not None:
            if (new.dtype, new.shape) != (old.dtype, old.shape):
                raise VerificationError(f"{name}: the fixed checkpoint reads it as {new.dtype} {list(new.shape)}")
            origin = _origin(plan, new, written)
            if origin is None:
                raise VerificationError(f"{name}: {new.file} holds it, but no copy of it was planned and hashed")
            if not _same_range(origin, old) and not content.equal(origin, old):
                raise VerificationError(
                    f"{name}: the fixed checkpoint reads other bytes than loaders read before (in {old.file})"
                )
            continue
        partners = [t.group.kept for t in ties if t.tied and name in t.group.restored]
        partner = next((p for p in partners if p in new_map), None)
        if partner is None:
            raise VerificationError(
                f"{name} would be lost: the fixed checkpoint neither stores it nor ties it to a stored tensor"
            )
        source = old_map.get(partner)
        if source is None or not content.equal(old, source):
            raise VerificationError(
                f"{name} would be lost: the tie restores it from {partner}, which does not hold the same bytes"
            )
