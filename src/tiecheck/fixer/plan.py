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
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any

from tiecheck.checkpoint import Checkpoint, FileFormat, TensorRecord
from tiecheck.content import ContentReader
from tiecheck.errors import FixRefused, FormatError
from tiecheck.findings import Finding, Severity
from tiecheck.fixer.jsonedit import set_value
from tiecheck.formats.jsonfiles import parse_config
from tiecheck.formats.safetensors import read_header
from tiecheck.io.source import CheckpointStore
from tiecheck.loader import SHARD_PATTERN
from tiecheck.scan import Report
from tiecheck.ties.resolve import ResolvedTie

#: Findings that mean the checkpoint cannot be laid out again safely: fix those by hand first.
BLOCKING = ("TC001", "TC002", "TC003", "TC008", "TC011", "TC012")


class RefusedError(FixRefused):
    """The fix would lose or corrupt something (a differing duplicate...): nothing is touched."""


class ActionKind(str, Enum):
    DROP_TENSOR = "drop-tensor"
    REWRITE_SHARD = "rewrite-shard"
    REMOVE_SHARD = "remove-shard"
    RENAME_SHARD = "rename-shard"
    REWRITE_INDEX = "rewrite-index"
    EDIT_CONFIG = "edit-config"
    DELETE_ORPHAN = "delete-orphan"
    ADD_TO_INDEX = "add-to-index"
    CONVERT_SHARD = "convert-shard"
    """``--to-safetensors``: a pickle file's tensors written as a safetensors shard."""


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    file: str
    reason: str
    tensor: str | None = None
    bytes_saved: int = 0
    new_name: str | None = None
    codes: tuple[str, ...] = ()
    """Finding codes this action resolves."""


@dataclass(frozen=True)
class KeptNote:
    """A tensor (or file) that looks redundant but stays, and why."""

    subject: str
    code: str
    reason: str


@dataclass(frozen=True)
class Options:
    drop_duplicates: bool = False
    tie_head: bool = False
    to_safetensors: bool = False


@dataclass(frozen=True)
class Dropped:
    """A stored copy the fix removes, and the byte-identical tensor a loader reads instead."""

    record: TensorRecord
    partner: TensorRecord
    via_tie: bool
    """True: a tie rule restores it from ``partner`` (the config must declare the tie).
    False: ``partner`` is another stored copy of the same name."""
    code: str


@dataclass(frozen=True)
class OutputFile:
    """One weight file of the fixed checkpoint."""

    name: str
    tensors: tuple[TensorRecord, ...]
    """Source ranges, in output order."""
    metadata: Mapping[str, str]
    source: str | None = None
    """Set when the file is a whole, unchanged source file (kept, or renamed): no rewrite needed."""


@dataclass(frozen=True)
class ConfigEdit:
    key: str
    value: bool
    reason: str


FindingKey = tuple[str, frozenset[str]]


@dataclass(frozen=True)
class Plan:
    location: str
    options: Options
    files: tuple[OutputFile, ...]
    index_name: str | None
    index_text: str | None
    """The new index, or None when there is no index (single file)."""
    config_name: str | None
    config_text: str | None
    """The new config, or None when it is not edited."""
    removed: tuple[str, ...]
    """Old weight files that the fixed checkpoint no longer has (emptied, deleted orphans, renamed away)."""
    dropped: tuple[Dropped, ...]
    actions: tuple[Action, ...]
    kept: tuple[KeptNote, ...]
    fixed: frozenset[FindingKey] = field(default_factory=frozenset)
    """Keys (see :func:`finding_key`) of the findings this plan resolves."""
    old_index_files: frozenset[str] = field(default_factory=frozenset)
    """Weight files the current index (or single-file layout) makes loaders read."""
    deleted_orphans: frozenset[str] = field(default_factory=frozenset)
    """Orphans the fix deletes (some may be overwritten by a renumbered shard instead)."""

    @property
    def bytes_saved(self) -> int:
        return sum(a.bytes_saved for a in self.actions)

    @property
    def empty(self) -> bool:
        return not self.actions

    @property
    def dropped_names(self) -> frozenset[str]:
        return frozenset(d.record.name for d in self.dropped)

    def changed_files(self) -> tuple[OutputFile, ...]:
        """Output files whose bytes or name differ from the source."""
        return tuple(f for f in self.files if f.source != f.name)


def finding_key(f: Finding, dropped: frozenset[str] = frozenset()) -> FindingKey:
    """What identifies a finding across a fix: its code and tensors (less those the fix drops), else its files."""
    names = frozenset(f.tensors) - dropped
    return (f.code, names if f.tensors else frozenset(f.files))


def build_plan(report: Report, store: CheckpointStore, options: Options, content: ContentReader | None = None) -> Plan:
    """The plan for ``report``; ``content``: an open reader on ``store`` whose comparisons are reused."""
    return _Planner(report, store, options).build(content)


class _Planner:
    def __init__(self, report: Report, store: CheckpointStore, options: Options) -> None:
        self.report = report
        self.ckpt: Checkpoint = report.checkpoint
        self.store = store
        self.options = options
        self.tensors = self.ckpt.tensor_map()
        self.drops: dict[tuple[str, str], Dropped] = {}
        self.adds: dict[str, str] = {}
        self.kept: list[KeptNote] = []
        self.fixed: set[FindingKey] = set()
        self.config_edits: list[ConfigEdit] = []
        self.orphans_indexed: list[tuple[str, tuple[TensorRecord, ...], Mapping[str, str]]] = []
        self.orphans_deleted: list[tuple[str, str]] = []
        self.actions: list[Action] = []

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
        blocking = [f for f in self.report.findings if f.code in BLOCKING]
        blocking += [f for f in self.report.findings if f.code == "TC009" and f.severity is Severity.ERROR]
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

    # --- laying out ---------------------------------------------------------------------------

    def _layout(self) -> Plan:
        ckpt = self.ckpt
        index = ckpt.index
        drops = self.drops
        sources: list[tuple[str, tuple[TensorRecord, ...], Mapping[str, str]]] = [
            (f.name, f.tensors, f.metadata) for f in ckpt.files
        ]
        sources += self.orphans_indexed
        kept_files: list[tuple[str, tuple[TensorRecord, ...], Mapping[str, str], bool]] = []
        removed: list[str] = []
        for name, tensors, metadata in sources:
            kept = tuple(t for t in tensors if (t.file, t.name) not in drops)
            if kept:
                kept_files.append((name, kept, metadata, len(kept) == len(tensors)))
            else:
                removed.append(name)
        if not kept_files:
            raise RefusedError(f"{ckpt.location}: the fix would leave no tensor at all")

        names = self._final_names([n for n, *_ in kept_files], index is not None)
        files = tuple(
            OutputFile(final, kept, MappingProxyType(dict(metadata)), source=name if whole else None)
            for (name, kept, metadata, whole), final in zip(kept_files, names, strict=True)
        )
        finals = {f.name for f in files}
        removed += [name for name, _ in self.orphans_deleted]
        removed += [src for (src, *_), final in zip(kept_files, names, strict=True) if src != final]
        removed = sorted({r for r in removed if r not in finals})

        index_text = self._index_text(files) if index is not None else None
        config_text = self._config_text()
        old_index_files = frozenset(index.weight_map.values()) if index else frozenset(f.name for f in ckpt.files)
        self._describe(files, removed, index_text, config_text)
        return Plan(
            location=ckpt.location,
            options=self.options,
            files=files,
            index_name=index.name if index else None,
            index_text=index_text,
            config_name=ckpt.config_file if config_text is not None else None,
            config_text=config_text,
            removed=tuple(removed),
            dropped=tuple(drops.values()),
            actions=tuple(self.actions),
            kept=tuple(self.kept),
            fixed=frozenset(self.fixed),
            old_index_files=old_index_files,
            deleted_orphans=frozenset(name for name, _ in self.orphans_deleted),
        )

    def dropped_names(self) -> set[str]:
        return {name for _, name in self.drops}

    def _final_names(self, names: list[str], indexed: bool) -> list[str]:
        """Renumber ``prefix-0000i-of-0000N`` shards when their count changed; keep other names."""
        matches = [SHARD_PATTERN.match(n) for n in names]
        if not indexed or not all(matches):
            return names
        prefixes = {m.group("prefix") for m in matches if m}
        if len(prefixes) != 1:
            return names
        width = max(len(m.group("part")) for m in matches if m)
        prefix = prefixes.pop()
        total = len(names)
        return [f"{prefix}-{i:0{width}d}-of-{total:0{width}d}.safetensors" for i in range(1, total + 1)]

    def _index_text(self, files: tuple[OutputFile, ...]) -> str:
        index = self.ckpt.index
        assert index is not None
        document: dict[str, Any] = json.loads(self.store.read_text(index.name))
        weight_map = {t.name: f.name for f in files for t in f.tensors}
        metadata = document.get("metadata")
        metadata = dict(metadata) if isinstance(metadata, dict) else {}
        metadata["total_size"] = sum(t.nbytes for f in files for t in f.tensors)
        if "total_parameters" in metadata:
            metadata["total_parameters"] = sum(t.numel for f in files for t in f.tensors)
        document["metadata"] = metadata
        document["weight_map"] = dict(sorted(weight_map.items()))
        return json.dumps(document, indent=2) + "\n"

    def _config_text(self) -> str | None:
        if not self.config_edits:
            return None
        assert self.ckpt.config_file is not None
        text = self.store.read_text(self.ckpt.config_file)
        for edit in self.config_edits:
            text = set_value(text, edit.key, edit.value)
        if parse_config(text).tie_word_embeddings is not True:
            raise RefusedError(f"{self.ckpt.config_file}: editing the tie flag did not make the config tie")
        return text

    def _describe(
        self, files: tuple[OutputFile, ...], removed: list[str], index_text: str | None, config_text: str | None
    ) -> None:
        ckpt = self.ckpt
        add = self.actions.append
        for d in sorted(self.drops.values(), key=lambda d: (d.record.file, d.record.start)):
            why = {
                "TC101": f"tied to {d.partner.name} and byte-identical: loaders restore it",
                "TC104": f"byte-identical to {d.partner.name}; the config edit ties them",
                "TC005": f"a second copy; loaders read the identical one in {d.partner.file}",
                "TC004": f"not indexed, and tied to the identical {d.partner.name}",
            }[d.code]
            add(Action(ActionKind.DROP_TENSOR, d.record.file, why, d.record.name, d.record.nbytes, codes=(d.code,)))
        for name, file in sorted(self.adds.items()):
            add(
                Action(
                    ActionKind.ADD_TO_INDEX,
                    file,
                    "stored but not indexed: loaders never read it",
                    name,
                    codes=("TC004",),
                )
            )
        indexed_orphans = {o for o, *_ in self.orphans_indexed}
        for f in files:
            if f.source == f.name:
                continue
            if f.source is not None:
                codes: tuple[str, ...]
                if f.source in indexed_orphans:
                    why, codes = "an orphan whose tensors are stored nowhere else: indexed", ("TC007",)
                else:
                    why, codes = "shard numbering follows the new shard count", ()
                add(Action(ActionKind.RENAME_SHARD, f.source, why, new_name=f.name, codes=codes))
            else:
                origin = f.tensors[0].file
                why = "rewritten without the dropped tensors (byte ranges streamed)"
                add(Action(ActionKind.REWRITE_SHARD, origin, why, new_name=f.name if f.name != origin else None))
        orphans = dict(self.orphans_deleted)
        sources = {f.source for f in files}
        for name, why in self.orphans_deleted:
            add(Action(ActionKind.DELETE_ORPHAN, name, why, bytes_saved=self._size(name), codes=("TC007",)))
        for name in removed:
            if name not in orphans and name not in sources:
                add(Action(ActionKind.REMOVE_SHARD, name, "every tensor in it was dropped"))
        # Compared as data: a differently formatted but equal index is not worth a rewrite.
        if ckpt.index is not None and index_text and json.loads(index_text) != self._old_index():
            index_codes = tuple(sorted({c for c, _ in self.fixed if c in ("TC004", "TC006", "TC007")}))
            why = "weight_map and metadata.total_size describe the fixed shards"
            add(Action(ActionKind.REWRITE_INDEX, ckpt.index.name, why, codes=index_codes))
        if config_text is not None:
            for edit in self.config_edits:
                why = f"set {edit.key} to {json.dumps(edit.value)}: {edit.reason}"
                add(Action(ActionKind.EDIT_CONFIG, ckpt.config_file or "config.json", why, codes=("TC104",)))

    def _old_index(self) -> object:
        assert self.ckpt.index is not None
        return json.loads(self.store.read_text(self.ckpt.index.name))

    def _size(self, name: str) -> int:
        try:
            source = self.store.open(name)
        except OSError:
            return 0
        try:
            return source.size
        finally:
            source.close()
