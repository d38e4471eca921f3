"""The fix plan: every change ``tiecheck fix`` would make, decided before anything is written.

A plan is built from a scan :class:`~tiecheck.scan.Report` and options. It holds both the
target layout (which source byte ranges go into which output file, the new index and config
texts) and the human-facing :class:`Action` list derived from it, with the bytes each saves,
plus a note for every redundant-looking tensor it keeps and why.

Output files list :class:`TensorRecord` source ranges, not source files: an output shard can
gather tensors from any files. That is what lets a conversion (``--to-safetensors``, a later
:attr:`ActionKind.CONVERT_SHARD`) reuse the same writer, verifier and transaction.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from tiecheck.checkpoint import FileFormat, TensorRecord
from tiecheck.content import ContentReader
from tiecheck.errors import FormatError
from tiecheck.findings import Finding, Severity
from tiecheck.fixer.layout import _Layout
from tiecheck.fixer.model import (
    Action,
    ActionKind,
    ConfigEdit,
    Dropped,
    FindingKey,
    KeptNote,
    Options,
    OutputFile,
    Plan,
    RefusedError,
    finding_key,
)
from tiecheck.formats.safetensors import read_header
from tiecheck.io.source import CheckpointStore
from tiecheck.scan import BLOCKS_FIX, Report
from tiecheck.ties.resolve import ResolvedTie

#: Findings that mean the checkpoint cannot be laid out again safely: fix those by hand first (TC009 when an
#: error). Defined with the scan, which marks no finding fixable while one of them stands.
BLOCKING = BLOCKS_FIX


def build_plan(report: Report, store: CheckpointStore, options: Options, content: ContentReader | None = None) -> Plan:
    """The plan for ``report``; ``content``: an open reader on ``store`` whose comparisons are reused."""
    return _Planner(report, store, options).build(content)


class _Planner(_Layout):
    """Decides what to drop, add and edit, one handler per finding code; :class:`_Layout` lays it out."""

    def __init__(self, report: Report, store: CheckpointStore, options: Options) -> None:
        self.report = report
        self.ckpt = report.checkpoint
        self.store = store
        self.options = options
        self.tensors = self.ckpt.tensor_map()
        self.drops = {}
        self.adds = {}
        self.kept = []
        self.fixed = set()
        self.config_edits = []
        self.orphans_indexed = []
        self.orphans_deleted = []
        self.actions = []

    # --- deciding -----------------------------------------------------------------------------

    def build(self, reader: ContentReader | None = None) -> Plan:
        self._refuse_unfixable()
        with ContentReader(self.store) if reader is None else contextlib.nullcontext(reader) as content:
            self.content = content
            for f in self.report.findings:
                handler = getattr(self, f"_on_{f.code.lower()}", None)
                if handler is not None:
                    handler(f)
            if any(f.format is FileFormat.PICKLE for f in self.ckpt.files):
                from tiecheck.fixer.convert import conversion_plan

                return conversion_plan(self)
        return self._layout()

    def _refuse_unfixable(self) -> None:
        blocking = [
            f
            for f in self.report.findings
            if f.code in BLOCKING and (f.code != "TC009" or f.severity is Severity.ERROR)
        ]
        if blocking:
            f = blocking[0]
            raise RefusedError(
                f"{self.ckpt.location}: cannot fix a checkpoint with {f.code} ({f.name}) errors; "
                f"repair them first: {f.message}",
                tuple(blocking),
            )
        pickles = [f.name for f in self.ckpt.files if f.format is not FileFormat.SAFETENSORS]
        if pickles and not self.options.to_safetensors:
            raise RefusedError(
                f"{pickles[0]}: pickle checkpoints are only fixed by converting them; add --to-safetensors"
            )
        unsafe = [f for f in self.report.findings if f.code in ("TC401", "TC403")]
        if pickles and unsafe:
            raise RefusedError(
                f"{unsafe[0].files[0] if unsafe[0].files else self.ckpt.location}: cannot convert: "
                f"{unsafe[0].code} ({unsafe[0].name}): {unsafe[0].message}",
                tuple(unsafe),
            )

    def _drop(self, record: TensorRecord, partner: TensorRecord, via_tie: bool, code: str) -> None:
        self.drops[(record.file, record.name)] = Dropped(record, partner, via_tie, code)

    def _copies(self, name: str) -> list[TensorRecord]:
        return [t for t in self.ckpt.tensors if t.name == name]

    def _tie_for(self, name: str) -> ResolvedTie | None:
        return next((t for t in self.report.ties if name in t.group.restored), None)

    def _on_tc005(self, f: Finding) -> None:
        name = f.tensors[0]
        read = self.tensors[name]
        for other in self._copies(name):
            if other.file == read.file:
                continue
            if not self.content.equal(read, other):
                raise RefusedError(
                    f"{other.file}: its copy of {name} differs from the one loaders read in {read.file}; "
                    "dropping it would lose data. Decide which copy is right and delete the other by hand"
                )
            self._drop(other, read, via_tie=False, code="TC005")
        self.fixed.add(finding_key(f))

    def _on_tc004(self, f: Finding) -> None:
        index = self.ckpt.index
        assert index is not None
        file = next(n for n in f.files if n != index.name)
        for name in f.tensors:
            record = next(t for t in self.ckpt.tensors if t.name == name and t.file == file)
            if name in index.weight_map:
                continue  # another copy is indexed: a TC005 duplicate, handled there
            tie = self._tie_for(name)
            partner = self.tensors.get(tie.group.kept) if tie else None
            if tie and tie.tied and partner is not None and self.content.equal(partner, record):
                self._drop(record, partner, via_tie=True, code="TC004")
            else:
                self.adds[name] = file
        self.fixed.add(finding_key(f))

    def _on_tc006(self, f: Finding) -> None:
        self.fixed.add(finding_key(f))

    def _on_tc007(self, f: Finding) -> None:
        shards = [n for n in f.files if not n.endswith(".json")]
        if len(f.files) > 1:
            self._on_shadowed(f, shards)
            return
        orphan = f.files[0]
        verdict, header = self._classify_orphan(orphan)
        if header is None or verdict not in ("redundant", "new"):
            self.kept.append(KeptNote(orphan, "TC007", verdict))
            return
        if verdict == "new":
            self.orphans_indexed.append((orphan, header.tensors, header.metadata))
        else:
            self.orphans_deleted.append((orphan, "every tensor in it is stored, byte-identical, in the indexed shards"))
        self.fixed.add(finding_key(f))

    def _on_shadowed(self, f: Finding, shards: list[str]) -> None:
        """``model.safetensors`` beside an index and its shards: loaders read only the single file.

        The index and its shards go when every tensor they hold is stored, byte-identical, in the
        file loaders read; otherwise all of them stay (deciding which copy is stale is the user's).
        """
        for shard in shards:
            verdict, _ = self._classify_orphan(shard)
            if verdict != "redundant":
                why = verdict if verdict.startswith("kept") else f"kept: {shard} holds tensors the loaded file lacks"
                self.kept.append(KeptNote(", ".join(f.files), "TC007", f"{why}; decide by hand which copy is stale"))
                return
        why = f"shadowed by {self.ckpt.shadowed_by}, which loaders read and which holds every tensor, byte-identical"
        self.orphans_deleted += [(name, why) for name in f.files]
        self.fixed.add(finding_key(f))

    def _classify_orphan(self, orphan: str) -> tuple[str, Any]:
        """("redundant" | "new" | a "kept: ..." reason, the orphan's header or None)."""
        try:
            source = self.store.open(orphan)
            try:
                header = read_header(source, orphan)
            finally:
                source.close()
        except (FormatError, OSError) as exc:
            return f"kept: the orphan cannot be read ({exc}); delete it by hand", None
        redundant: list[str] = []
        new: list[str] = []
        conflicts: list[str] = []
        for record in header.tensors:
            stored = self.tensors.get(record.name)
            tie = self._tie_for(record.name)
            partner = self.tensors.get(tie.group.kept) if tie and tie.tied and stored is None else None
            if stored is not None:
                (redundant if self.content.equal(stored, record) else conflicts).append(record.name)
            elif partner is not None and self.content.equal(partner, record):
                redundant.append(record.name)
            else:
                new.append(record.name)
        if conflicts or (redundant and new):
            what = f"holds {conflicts[0]}, which differs from the copy loaders read" if conflicts else "mixes copies"
            return f"kept: the orphan {what}; decide by hand", header
        return ("new" if new else "redundant"), header

    def _on_tc101(self, f: Finding) -> None:
        restored, kept = f.tensors[0], f.tensors[1]
        if not self.options.drop_duplicates:
            if not any(name == restored for _, name in self.drops):  # else dropped as an unindexed copy (TC004)
                note = "kept: a redundant tied copy; --drop-duplicates removes it"
                self.kept.append(KeptNote(restored, "TC101", note))
            return
        self._drop_tied_copies(restored, kept, "TC101")
        self.fixed.add(finding_key(f))

    def _drop_tied_copies(self, name: str, kept: str, code: str) -> None:
        """Drop every stored copy of ``name``, which a tie restores from ``kept``; refuse if one differs."""
        partner = self.tensors[kept]
        for record in self._copies(name):
            # The scan compared the copy loaders read (that is the finding); other copies are compared here.
            if record != self.tensors[name] and not self.content.equal(partner, record):
                raise RefusedError(f"{record.file}: {name} differs from {kept}; it cannot be dropped")
            self._drop(record, partner, via_tie=True, code=code)

    def _on_tc102(self, f: Finding) -> None:
        self.kept.append(
            KeptNote(f.tensors[0], "TC102", f"kept: differs from {f.tensors[1]}, so a loader cannot restore it")
        )

    def _on_tc202(self, f: Finding) -> None:
        self.kept.append(
            KeptNote(
                f.tensors[0], "TC202", "kept: identical to another tensor, but no tie rule makes a loader restore it"
            )
        )

    def _on_tc104(self, f: Finding) -> None:
        head, kept = f.tensors[0], f.tensors[1]
        config = self.ckpt.config
        if not self.options.tie_head or config is None or self.ckpt.config_file is None:
            why = "--tie-head drops it and sets the tie flag" if config else "no config.json to declare a tie in"
            self.kept.append(KeptNote(head, "TC104", f"kept: the config does not tie it to {kept}; {why}"))
            return
        self._drop_tied_copies(head, kept, "TC104")
        self.config_edits.extend(self._tie_edits())
        self.fixed.add(finding_key(f))

    def _tie_edits(self) -> list[ConfigEdit]:
        assert self.ckpt.config_file is not None
        document = json.loads(self.store.read_text(self.ckpt.config_file))
        text_config = document.get("text_config") if isinstance(document.get("text_config"), dict) else None
        reason = "declare the tie so loaders restore the dropped head from the embedding"
        edits = [
            ConfigEdit(f"{prefix}{key}", True, reason)
            for prefix, holder in (("", document), ("text_config.", text_config or {}))
            for key in ("tie_word_embeddings", "weight_tying")
            if key in holder and holder[key] is not True
        ]
        if not edits and not any(
            key in holder for holder in (document, text_config or {}) for key in ("tie_word_embeddings", "weight_tying")
        ):
            edits.append(ConfigEdit("tie_word_embeddings", True, reason))
        return edits


__all__ = [
    "BLOCKING",
    "Action",
    "ActionKind",
    "ConfigEdit",
    "Dropped",
    "FindingKey",
    "KeptNote",
    "Options",
    "OutputFile",
    "Plan",
    "RefusedError",
    "build_plan",
    "finding_key",
]
