"""Proving a staged fix lost nothing, before it is committed.

Three checks, all on the staged files seen through a :class:`MappedStore` (the fixed
checkpoint as loaders will see it, temp files under their final names):

1. every written file's header is re-read and lists exactly the planned tensors, and every
   tensor's bytes hash to what was hashed while copying from the source;
2. every dropped tensor is restorable: its partner is byte-identical (compared again, on the
   source) and, for a tie, the fixed checkpoint's config declares the tie;
3. a re-scan of the fixed checkpoint: the findings the plan resolves are gone and no finding
   appears that was not there before.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tiecheck.content import ContentReader
from tiecheck.errors import TiecheckError
from tiecheck.findings import Finding
from tiecheck.fix.plan import Plan, finding_key
from tiecheck.fix.writer import CHUNK, WrittenFile, hash_record
from tiecheck.formats.safetensors import read_header
from tiecheck.io.source import CheckpointStore, LocalFileSource
from tiecheck.scan import Report, scan_store
from tiecheck.ties.resolve import resolve_ties


class VerificationError(TiecheckError):
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
) -> Verification:
    tensors_hashed = bytes_hashed = 0
    buffer = memoryview(bytearray(CHUNK))
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
        finally:
            os.close(fd)

    after = scan_store(staged, target=plan.location)
    new_map = after.checkpoint.tensor_map()
    ties = resolve_ties(after.checkpoint, set(new_map) | plan.dropped_names)
    with ContentReader(source_store) as content:
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
